"""Named interests (issue 13, issue 12.3) on SQLite and PostgreSQL: the service the CLI and web
app call, ranking per interest, sections, followed authors, seed papers, export and import."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy

import pytest
from sqlmodel import Session, select

from papermail.db import create_tables, make_engine, session_scope
from papermail.models import Digest, DigestItem, Paper, Rating, Topic
from papermail.services import digests, feedback, interests, subscriptions
from papermail.services.ingest import ingest_paths
from papermail.services.subscriptions import InvalidInput, Preferences, add_subscriber
from tests.conftest import make_settings

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
EARLIER = NOW - timedelta(hours=1)


def ingest_samples(engine, seeds_dir) -> None:
    assert all(r.ok for r in ingest_paths(engine, sorted(seeds_dir.glob("*.txt")), now=EARLIER))


def add_paper(engine, pid: str, title: str, authors: list[str], abstract: str = "") -> None:
    with session_scope(engine) as session:
        session.add(
            Paper(
                id=pid,
                arxiv_id=pid,
                title=title,
                abstract=abstract or f"We study {title.lower()}.",
                authors=authors,
                source="hf",
                first_seen_at=EARLIER,
            )
        )


def subscriber(engine, email="ada@example.org", *keywords, **kw):
    with session_scope(engine) as session:
        prefs = Preferences(keywords=keywords or ("linear attention",), **kw)
        return add_subscriber(session, email=email, prefs=prefs, confirmed=True).id


def items(engine, sid: int) -> list[tuple[str, str, int | None, str | None]]:
    with Session(engine) as session:
        rows = session.exec(
            select(DigestItem, Paper.title)
            .join(Paper, Paper.id == DigestItem.paper_id)
            .join(Digest, Digest.id == DigestItem.digest_id)
            .where(Digest.subscriber_id == sid)
            .order_by(DigestItem.rank)
        ).all()
        return [(title, i.section, i.topic_id, i.followed) for i, title in rows]


def test_add_update_list_and_remove_interests(engine):
    sid = subscriber(engine, "ada@example.org", "linear attention", "state space models")
    add_paper(engine, "2401.00001", "Mamba: Selective State Spaces", ["Albert Gu"])
    with session_scope(engine) as session:
        ada = session.get(subscriptions.Subscriber, sid)
        first = interests.list_interests(session, sid)
        assert [(v.name, v.keywords) for v in first] == [
            ("linear attention", ("linear attention", "state space models"))
        ]
        result = interests.save_interest(
            session,
            ada,
            "Efficient LLMs",
            keywords=["mixture of experts", "MoE"],
            excluded=["survey"],
            seeds=[
                "https://arxiv.org/abs/2401.00001v2",
                "mamba selective state spaces",
                "9999.99999",
            ],
            follow=["Tri Dao", "Dao, Tri"],  # one author, spelled twice
            max_papers=4,
        )
        assert result.created
        assert [(s.given, s.found, s.paper_id) for s in result.seeds] == [
            ("2401.00001", True, "2401.00001"),
            ("mamba selective state spaces", True, "2401.00001"),
            ("9999.99999", False, None),
        ]
        # Updating changes only what is given.
        again = interests.save_interest(session, ada, "efficient llms", max_papers=6)
        assert not again.created
    with session_scope(engine) as session:
        views = interests.list_interests(session, sid)
        assert [v.name for v in views] == ["linear attention", "Efficient LLMs"]
        second = views[1]
        assert second.keywords == ("mixture of experts", "MoE")
        assert second.excluded == ("survey",)
        assert second.max_papers == 6 and second.authors == ("Tri Dao",)
        assert [s.found for s in second.seeds] == [True, True, False]
        # `subscribers add -k` keeps editing the first interest only.
        subscriptions.save_subscriber(
            session, email="ada@example.org", changes={"keywords": ("SSM",)}
        )
    with session_scope(engine) as session:
        views = interests.list_interests(session, sid)
        assert [v.keywords for v in views] == [("SSM",), ("mixture of experts", "MoE")]
        ada = session.get(subscriptions.Subscriber, sid)
        assert interests.remove_interest(session, ada, "Efficient LLMs")
        assert not interests.remove_interest(session, ada, "nothing like it")
        with pytest.raises(InvalidInput, match="at least one interest"):
            interests.remove_interest(session, ada, "linear attention")
        with pytest.raises(InvalidInput, match="needs keywords"):
            interests.save_interest(session, ada, "empty")


def test_each_interest_is_a_section_and_a_paper_comes_once(engine, settings, seeds_dir):
    ingest_samples(engine, seeds_dir)
    sid = subscriber(engine, "ada@example.org", "linear attention", max_papers=4)
    with session_scope(engine) as session:
        ada = session.get(subscriptions.Subscriber, sid)
        interests.save_interest(
            session, ada, "Segmentation", keywords=["image segmentation"], max_papers=3
        )
        interests.save_interest(
            session, ada, "Attention again", keywords=["attention"], max_papers=3
        )
        topics = {t.name: t.id for t in session.exec(select(Topic))}
    digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    got = items(engine, sid)
    titles = [t for t, *_ in got]
    assert len(titles) == len(set(titles)), "a paper appears once per digest"
    per_topic = {name: [g for g in got if g[2] == tid] for name, tid in topics.items()}
    assert len(per_topic["linear attention"]) == 4
    assert 1 <= len(per_topic["Segmentation"]) <= 3
    assert all("segment" in t.lower() for t, *_ in per_topic["Segmentation"])
    # Top pick first, then the sections in the interests' order.
    order = [section for _, section, _, _ in got[1:]]
    assert order == sorted(order, key=["linear attention", "Segmentation", "Attention again"].index)
    assert {s for _, s, _, _ in got} <= set(topics)
    with session_scope(engine) as session:
        digest = session.exec(select(Digest)).one()
        mail = digests.compose_stored_digest(session, settings, digest.id)
    assert re.search(r'<h2 class="section"[^>]*>Top pick</h2>', mail.html)
    assert re.search(r'<h2 class="section"[^>]*>Segmentation</h2>', mail.html)
    text = message_from_bytes(mail.data, policy=policy.default).get_body(("plain",)).get_content()
    assert "== Top pick ==" in text and "== Segmentation ==" in text


def test_one_interest_is_grouped_by_the_keyword_each_paper_matched_most(
    engine, settings, seeds_dir
):
    ingest_samples(engine, seeds_dir)
    sid = subscriber(
        engine, "ada@example.org", "linear attention", "image segmentation", max_papers=8
    )
    digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    sections = [s for _, s, _, _ in items(engine, sid)]
    assert {"linear attention", "image segmentation"} <= set(sections)
    with session_scope(engine) as session:
        digest = session.exec(select(Digest)).one()
        mail = digests.compose_stored_digest(session, settings, digest.id)
    assert re.search(r'<h2 class="section"[^>]*>Top pick</h2>', mail.html)


def test_ratings_count_for_the_interest_the_paper_was_shown_under(engine, settings, seeds_dir):
    ingest_samples(engine, seeds_dir)
    sid = subscriber(engine, "ada@example.org", "linear attention", max_papers=3)
    with session_scope(engine) as session:
        ada = session.get(subscriptions.Subscriber, sid)
        seg = interests.save_interest(
            session, ada, "Segmentation", keywords=["image segmentation"], max_papers=3
        ).topic.id
    digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    shown = {t: tid for t, _, tid, _ in items(engine, sid)}
    with session_scope(engine) as session:
        papers = {p.title: p.id for p in session.exec(select(Paper))}
        title = next(t for t, tid in shown.items() if tid == seg)
        feedback.record_rating(session, subscriber_id=sid, paper_id=papers[title], value=1)
    with session_scope(engine) as session:
        rating = session.exec(select(Rating)).one()
        assert rating.topic_id == seg
        first = subscriptions.first_topic(session, sid).id
        given = feedback.load_topic_feedback(session, {sid: [first, seg]})
        assert list(given) == [(sid, seg)] and len(given[(sid, seg)].liked) == 1


def test_followed_author_papers_are_always_in_and_outside_the_quota(engine, settings, seeds_dir):
    ingest_samples(engine, seeds_dir)
    add_paper(engine, "2411.11111", "A study of protein folding kinetics", ["José Müller", "B C"])
    sid = subscriber(engine, "ada@example.org", "linear attention", max_papers=3)
    with session_scope(engine) as session:
        ada = session.get(subscriptions.Subscriber, sid)
        interests.save_interest(session, ada, "linear attention", follow=["Muller, J."])
    digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    got = items(engine, sid)
    assert len(got) == 4, "three ranked papers plus the followed author's"
    followed = [g for g in got if g[3]]
    assert [(t, f) for t, _, _, f in followed] == [
        ("A study of protein folding kinetics", "José Müller")
    ]
    with session_scope(engine) as session:
        digest = session.exec(select(Digest)).one()
        mail = digests.compose_stored_digest(session, settings, digest.id)
    assert "By an author you follow: José Müller" in mail.html


def test_an_interest_seeded_with_papers_and_no_keywords_gets_papers(engine, settings, seeds_dir):
    ingest_samples(engine, seeds_dir)
    with Session(engine) as session:
        papers = list(session.exec(select(Paper)))
    on_topic = [p for p in papers if "segmentation" in p.title.lower()]
    assert len(on_topic) >= 3
    sid = subscriber(engine, "ada@example.org", "zebrafish hydrology", max_papers=5)
    with session_scope(engine) as session:
        ada = session.get(subscriptions.Subscriber, sid)
        result = interests.save_interest(
            session, ada, "From papers", seeds=[p.title for p in on_topic[:3]], max_papers=5
        )
        assert all(s.found for s in result.seeds)
    digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    got = items(engine, sid)
    assert got, "the seeds alone make a profile"
    assert sum("segment" in t.lower() for t, *_ in got) >= 2, got


def test_export_then_import_on_another_papermail_is_idempotent(
    engine, settings, seeds_dir, tmp_path
):
    add_paper(engine, "2401.00001", "Mamba: Selective State Spaces", ["Albert Gu"])
    sid = subscriber(engine, "ada@example.org", "linear attention", excluded=("survey",))
    with session_scope(engine) as session:
        ada = session.get(subscriptions.Subscriber, sid)
        interests.save_interest(
            session,
            ada,
            "SSM",
            keywords=["state space models"],
            seeds=["2401.00001", "an unknown title"],
            follow=["Albert Gu"],
            max_papers=4,
        )
        ssm = interests.topic_named(session, sid, "SSM")
        feedback.record_rating(
            session, subscriber_id=sid, paper_id="2401.00001", value=1, topic_id=ssm.id
        )
        data = interests.export_subscriber(session, ada)
    text = json.dumps(data)
    other = make_engine(make_settings(tmp_path / "other"))
    create_tables(other)
    add_paper(other, "2401.00001", "Mamba: Selective State Spaces", ["Albert Gu"])
    for attempt in range(2):
        with session_scope(other) as session:
            report = interests.import_subscriber(session, json.loads(text))
            assert report.created == (attempt == 0)
            assert report.ratings == 1 and report.interests == 2
        with session_scope(other) as session:
            new = subscriptions.get_by_email(session, "ada@example.org")
            again = interests.export_subscriber(session, new)
        assert again["interests"] == data["interests"]
        assert [(r["paper"], r["value"], r["interest"]) for r in again["ratings"]] == [
            ("2401.00001", 1, "SSM")
        ]
    other.dispose()


def test_a_seed_not_found_is_found_once_a_later_ingest_brings_it(engine, settings, seeds_dir):
    ingest_samples(engine, seeds_dir)
    sid = subscriber(engine, "ada@example.org", "zebrafish hydrology")
    with session_scope(engine) as session:
        ada = session.get(subscriptions.Subscriber, sid)
        result = interests.save_interest(session, ada, "Later", seeds=["arXiv:2411.22222v1"])
        assert [s.found for s in result.seeds] == [False]
    add_paper(engine, "2411.22222", "Linear attention for long documents", ["A B"])
    digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    with session_scope(engine) as session:
        (view,) = [v for v in interests.list_interests(session, sid) if v.name == "Later"]
        assert [(s.given, s.found, s.paper_id) for s in view.seeds] == [
            ("2411.22222", True, "2411.22222")
        ]


def test_a_digest_of_one_section_has_no_headings(engine, settings, seeds_dir):
    ingest_samples(engine, seeds_dir)
    sid = subscriber(engine, "ada@example.org", "linear attention", max_papers=5)
    digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    assert {s for _, s, _, _ in items(engine, sid)} == {"linear attention"}
    with session_scope(engine) as session:
        digest = session.exec(select(Digest)).one()
        mail = digests.compose_stored_digest(session, settings, digest.id)
    assert 'class="section"' not in mail.html and "Top pick" not in mail.html


def test_keywords_stored_without_an_interest_become_the_first_one(engine, settings, seeds_dir):
    """Rows written around the services (bench, old scripts) still rank, and adding a named
    interest keeps them apart from it."""
    from papermail.models import Interest, Subscriber

    ingest_samples(engine, seeds_dir)
    with session_scope(engine) as session:
        loose = Subscriber(email="old@example.org", confirmed=True, max_papers=3)
        session.add(loose)
        session.flush()
        session.add(Interest(subscriber_id=loose.id, phrase="linear attention"))
        sid = loose.id
    digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    assert len(items(engine, sid)) == 3
    with session_scope(engine) as session:
        old = session.get(Subscriber, sid)
        interests.save_interest(session, old, "Vision", keywords=["image segmentation"])
        views = interests.list_interests(session, sid)
    assert [(v.name, v.keywords) for v in views] == [
        ("linear attention", ("linear attention",)),
        ("Vision", ("image segmentation",)),
    ]


def test_a_lone_interest_named_after_its_first_keyword_follows_it(engine):
    sid = subscriber(engine, "ada@example.org", "MoE")
    with session_scope(engine) as session:
        subscriptions.save_subscriber(
            session, email="ada@example.org", changes={"keywords": ("diffusion", "MoE")}
        )
    with session_scope(engine) as session:
        assert [v.name for v in interests.list_interests(session, sid)] == ["diffusion"]
        ada = session.get(subscriptions.Subscriber, sid)
        interests.save_interest(session, ada, "diffusion", keywords=["score matching"])
        interests.save_interest(session, ada, "Named by hand", keywords=["MoE"])
        subscriptions.save_subscriber(
            session, email="ada@example.org", changes={"keywords": ("flow matching",)}
        )
    with session_scope(engine) as session:
        names = [v.name for v in interests.list_interests(session, sid)]
    assert names == ["diffusion", "Named by hand"]  # several interests: names stay
