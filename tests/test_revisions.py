"""A new arXiv version of a paper someone already had comes back as "updated", never as new."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from email import message_from_bytes, policy
from pathlib import Path

from sqlmodel import Session, select

from papermail.models import Digest, DigestItem, Interest, Paper
from papermail.services import digests
from papermail.services.ingest import ingest_result
from papermail.sources import PaperRecord, ParseResult
from papermail.sources.arxiv import parse_arxiv_atom
from papermail.sources.records import arxiv_version
from tests.test_digests import subscribe

RSS = Path(__file__).parent / "data" / "arxiv_rss.atom"
API = Path(__file__).parent / "data" / "arxiv_api.atom"
DAY1 = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
PAPER = "2411.00001"


def record(version: int | None, *, title: str = "Routing Tokens in Sparse Mixture-of-Experts"):
    return PaperRecord(
        title=title,
        abstract="We study mixture-of-experts routing and load balancing in sparse transformers.",
        source="arxiv",
        arxiv_id=PAPER,
        version=version,
        url=f"https://arxiv.org/abs/{PAPER}",
    )


def other_paper(n: int) -> PaperRecord:
    return PaperRecord(
        title=f"Protein folding study {n}",
        abstract="Structural biology with molecular dynamics, unrelated to language models.",
        source="arxiv",
        arxiv_id=f"2411.1000{n}",
        version=1,
    )


def ingest(engine, *, records=(), revisions=(), now: datetime):
    report = ingest_result(
        engine, "test", ParseResult(records=list(records), revisions=list(revisions)), now=now
    )
    assert report.ok
    return report


def score(engine, settings, day: datetime):
    return digests.score_day(engine, settings, issue_date=day.date(), now=day)


def items(engine, subscriber_id: int) -> list[tuple[date, str, bool, int | None]]:
    with Session(engine) as session:
        rows = session.exec(
            select(
                Digest.issue_date, DigestItem.paper_id, DigestItem.revised, DigestItem.paper_version
            )
            .join(Digest, Digest.id == DigestItem.digest_id)
            .where(Digest.subscriber_id == subscriber_id)
            .order_by(Digest.issue_date, DigestItem.rank)
        )
        return [tuple(r) for r in rows]


def test_versions_are_read_from_arxiv_ids():
    assert arxiv_version("http://arxiv.org/abs/2401.01234v2") == 2
    assert arxiv_version("oai:arXiv.org:hep-th/9901001v3") == 3
    assert arxiv_version("2401.01234") is None
    assert arxiv_version("a title ending in v2") is None
    api = parse_arxiv_atom(API.read_bytes())
    assert [r.version for r in api.records] == [2, 3]


def test_rss_replacements_become_revisions_not_new_papers():
    feed = parse_arxiv_atom(RSS.read_bytes())
    assert [r.arxiv_id for r in feed.records] == ["2410.01502", "2410.01777"]
    assert [(r.arxiv_id, r.version) for r in feed.revisions] == [
        ("2407.11111", 3),
        ("2405.02020", 2),
    ]


def test_a_revision_updates_a_known_paper_and_never_adds_an_unknown_one(engine):
    ingest(engine, records=[record(1)], now=DAY1)
    later = DAY1 + timedelta(days=1)
    report = ingest(
        engine,
        revisions=[record(2, title="Routing Tokens in Sparse MoE (revised)"), other_paper(1)],
        now=later,
    )
    assert (report.revised, report.inserted) == (1, 0)
    with Session(engine) as session:
        paper = session.get(Paper, PAPER)
        assert paper is not None
        assert paper.version == 2 and paper.title.endswith("(revised)")
        assert paper.revised_at == later and paper.first_seen_at == DAY1
        assert session.get(Paper, "2411.10001") is None
    again = ingest(engine, revisions=[record(2)], now=later + timedelta(hours=1))
    assert again.revised == 0, "the same version twice is not a revision"


def test_learning_a_version_is_not_a_revision(engine):
    ingest(engine, records=[record(None)], now=DAY1)  # say, from Hugging Face: no version
    report = ingest(engine, records=[record(3)], now=DAY1 + timedelta(hours=2))
    assert report.revised == 0
    with Session(engine) as session:
        paper = session.get(Paper, PAPER)
        assert paper is not None and paper.version == 3 and paper.revised_at is None


def test_v2_is_shown_as_updated_to_those_who_had_v1_and_new_to_nobody(engine, settings):
    early = subscribe(engine, "early@example.org", "mixture of experts")
    late = subscribe(engine, "late@example.org", "protein folding")
    ingest(engine, records=[record(1), other_paper(1)], now=DAY1 - timedelta(hours=1))
    score(engine, settings, DAY1)
    assert items(engine, early) == [(DAY1.date(), PAPER, False, 1)]
    assert PAPER not in [i[1] for i in items(engine, late)]
    with Session(engine) as session:  # interested only from now on
        session.add(Interest(subscriber_id=late, phrase="mixture of experts"))
        session.commit()

    day2 = DAY1 + timedelta(days=1)
    ingest(engine, records=[other_paper(2)], now=day2 - timedelta(hours=2))
    ingest(engine, revisions=[record(2)], now=day2 - timedelta(hours=1))
    report = score(engine, settings, day2)

    assert items(engine, early)[-1] == (day2.date(), PAPER, True, 2)
    assert [i for i in items(engine, late) if i[1] == PAPER] == [], (
        "someone who never had v1 gets no 'update' of a paper older than their last digest"
    )

    assert digests.send_digests(engine, settings, report.to_send).sent == 2
    messages = [
        message_from_bytes(path.read_bytes(), policy=policy.default)
        for path in settings.resolved_outbox_dir.glob("*.eml")
    ]
    [message] = [m for m in messages if m["To"] == "early@example.org"]
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "[Updated: v2] Routing Tokens in Sparse Mixture-of-Experts" in text
    assert "Updated: now version 2" in html
    assert "in the title" in text, "the explanation says where each term matched"

    day3 = day2 + timedelta(days=1)
    ingest(engine, records=[record(2)], now=day3 - timedelta(hours=1))  # seen again, same v2
    score(engine, settings, day3)
    assert [i for i in items(engine, early) if i[1] == PAPER] == [
        (DAY1.date(), PAPER, False, 1),
        (day2.date(), PAPER, True, 2),
    ], "each version reaches a subscriber at most once"
