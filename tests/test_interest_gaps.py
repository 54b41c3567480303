"""The web side of named interests, last gaps (issue 13): seed papers removable on the interest
page (found and not found listed apart), the preview of an interest with seed papers ranks with
them (no keywords needed), the sign-up form's visible time zone checked on the server, and a
rating, mute or save from a digest counting for the interest the paper was shown under; on
SQLite and PostgreSQL."""

from __future__ import annotations

import re
from datetime import timedelta
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from papermail import ranking
from papermail.db import session_scope
from papermail.models import Digest, DigestItem, Interest, Paper, Rating, SavedPaper, Subscriber
from papermail.services import interests
from papermail.tokens import Purpose
from tests.test_web_feedback import NOW
from tests.test_web_feedback import client as client_fixture
from tests.test_web_support import add_confirmed, csrf_of, token_for

LINEAR = ("2611.00000", "2611.00001")  # "Linear Attention Transformers...", "Gated Linear..."


client = client_fixture  # test_web_feedback's: the sample papers listed on NOW's day


@pytest.fixture
def ada(engine) -> Subscriber:
    return add_confirmed(engine, "ada@example.org", "mixture of experts")


def add_interest(engine, subscriber: Subscriber, name: str, **given) -> int:
    with session_scope(engine) as session:
        sub = session.get(Subscriber, subscriber.id)
        topic_id = interests.save_interest(session, sub, name, **given).topic.id
    assert topic_id is not None
    return topic_id


def first_interest(engine, subscriber: Subscriber) -> int:
    with Session(engine) as session:
        return interests.list_interests(session, subscriber.id)[0].id


def seeds(engine, topic_id: int) -> list[tuple[str, bool]]:
    with Session(engine) as session:
        return [(s.given, s.found) for s in interests.seeds_of(session, topic_id)]


def section(html: str, start: str) -> str:
    """The unescaped HTML of the page from `start` to the end of its card."""
    text = unescape(html)
    begin = text.index(start)
    return text[begin : text.index("</section>", begin)]


# --- 1. Seed papers are removable, found and not found listed apart ---------------------------


def test_seed_papers_are_listed_found_and_not_found_and_each_can_be_removed(
    client, engine, settings, ada
):
    topic = add_interest(
        engine, ada, "Attention", seeds=[*LINEAR, "A Paper Nobody Collected"], follow=["A. Turing"]
    )
    manage = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    path = f"{manage}/interests/{topic}"
    page = client.get(path)
    seed_card = section(page.text, 'id="seeds-title"')
    found, missing = seed_card.split('id="seeds-missing"')
    assert "Found among the collected papers (2)" in found
    assert "Linear Attention Transformers Scale to Long Context" in found
    assert "Gated Linear Attention for Language Modeling" in found
    assert "Not found yet (1)" in missing and "A Paper Nobody Collected" in missing
    assert seed_card.count("Remove seed paper") == 3, "a remove button per seed"
    assert 'aria-label="Stop following A. Turing"' in page.text, "authors are removable too"
    csrf = csrf_of(page.text)

    forged = client.post(path + "/seeds/remove", data={"csrf": "forged", "seed": LINEAR[0]})
    assert forged.status_code == 403 and len(seeds(engine, topic)) == 3
    gone = client.post(
        path + "/seeds/remove", data={"csrf": csrf, "seed": LINEAR[0]}, follow_redirects=False
    )
    assert gone.status_code == 303 and gone.headers["location"].startswith(path + "?n=seed_removed")
    assert seeds(engine, topic) == [(LINEAR[1], True), ("A Paper Nobody Collected", False)]
    client.post(path + "/seeds/remove", data={"csrf": csrf, "seed": "A Paper Nobody Collected"})
    after = client.get(path + "?n=seed_removed")
    text = unescape(after.text)
    assert "Seed paper removed" in text and "Not found yet" not in text
    assert "Found among the collected papers (1)" in text
    assert seeds(engine, topic) == [(LINEAR[1], True)]
    client.post(path + "/unfollow", data={"csrf": csrf, "author": "A. Turing"})
    assert "Stop following" not in client.get(path).text

    unknown = client.post(path + "/seeds/remove", data={"csrf": csrf, "seed": "no such seed"})
    assert unknown.status_code == 200 and seeds(engine, topic) == [(LINEAR[1], True)]
    bob = add_confirmed(engine, "bob@example.org", "state space models")
    bobs = add_interest(engine, bob, "Bob's", seeds=[LINEAR[0]])
    other = client.post(
        f"{manage}/interests/{bobs}/seeds/remove", data={"csrf": csrf, "seed": LINEAR[0]}
    )
    assert other.status_code == 404 and seeds(engine, bobs) == [(LINEAR[0], True)]


# --- 2. A seeds-only interest previews what its seeds bring -----------------------------------


SEEDS = [  # two papers a reader has, on linear attention: they bring the others on it
    ("2611.10000", "Kernelized Linear Attention for Long Context Transformers",
     "We replace softmax attention with kernelized linear attention, so transformers scale "
     "linearly with context length on long documents."),
    ("2611.10001", "Chunked Linear Attention Speeds Up Long Context Language Models",
     "Linear attention with a chunked recurrence lets long context language models train "
     "faster than softmax transformers."),
]  # fmt: skip


def test_an_interest_with_seed_papers_and_no_keywords_previews_what_they_bring(
    client, engine, settings, ada
):
    with session_scope(engine) as session:
        for pid, title, abstract in SEEDS:
            session.add(
                Paper(id=pid, arxiv_id=pid, title=title, abstract=abstract, first_seen_at=NOW)
            )
    topic = add_interest(engine, ada, "Attention", seeds=[pid for pid, _, _ in SEEDS])
    manage = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    path = f"{manage}/interests/{topic}"
    page = client.get(path)
    preview = section(page.text, 'class="card preview"')
    assert "Add a keyword" not in preview
    summary = re.search(r'class="preview-summary"[^>]*>([^<]+)<', preview).group(1)
    assert summary.startswith("Based on 2 seed papers, "), summary
    titles = re.findall(r'class="paper-title"[^>]*>([^<]+)<', preview)
    assert titles[:2] == [
        "Linear Attention Transformers Scale to Long Context",
        "Gated Linear Attention for Language Modeling",
    ]
    assert not {t for _, t, _ in SEEDS} & set(titles), "the seed papers themselves are left out"
    assert f"Matched <mark>{ranking.FEEDBACK_LABEL}</mark>" in preview
    assert f'data-preview-url="{path}/preview"' in page.text

    csrf = csrf_of(page.text)
    data = client.post(path + "/preview", json={"csrf": csrf, "keywords": ""}).json()
    assert data["summary"] == summary and [i["title"] for i in data["items"]] == titles
    assert all(i["score"] >= settings.min_score for i in data["items"]), data["items"]
    typed = client.post(
        path + "/preview", json={"csrf": csrf, "keywords": "mixture of experts"}
    ).json()
    assert typed["summary"].startswith("Based on your keywords and 2 seed papers, ")
    assert typed["items"][0]["title"] == "Sparse Mixture of Experts Routing"
    assert client.post(path + "/preview", json={"csrf": "x"}).status_code == 403
    too_long = client.post(path + "/preview", json={"csrf": csrf, "keywords": "x" * 300})
    assert too_long.status_code == 400 and too_long.json()["field"] == "keywords"

    first = first_interest(engine, ada)  # keywords only: as before
    plain = unescape(client.get(f"{manage}/interests/{first}").text)
    assert "Based on" not in plain and "<mark>mixture of experts</mark>" in plain


def test_an_interest_whose_seeds_are_not_collected_yet_still_asks_for_a_keyword(
    client, engine, settings, ada
):
    topic = add_interest(engine, ada, "Later", seeds=["2612.99999"])
    path = f"/manage/{token_for(settings, Purpose.manage, ada)}/interests/{topic}"
    preview = section(client.get(path).text, 'class="card preview"')
    assert "Add a keyword to see which recent papers it brings." in preview
    assert 'class="paper-title"' not in preview


# --- 3. The sign-up form's time zone without JavaScript ---------------------------------------


def test_the_subscribe_form_has_a_visible_time_zone_checked_on_the_server(client, engine):
    page = client.get("/")
    select_tag = re.search(r"<select id=\"timezone\" name=\"timezone\"[^>]*>", page.text)
    assert select_tag and "data-auto-timezone" in select_tag.group(0), "JS may guess"
    assert '<label for="timezone">Time zone</label>' in page.text
    assert "Digests come at 07:00 in this time zone" in page.text
    assert '<option value="UTC" selected>' in page.text, "the server's default"
    assert '<option value="Europe/Berlin">Europe/Berlin</option>' in page.text
    assert '<option value="America/Argentina/Buenos_Aires">' in page.text
    csrf = csrf_of(page.text)
    typed = {"csrf": csrf, "email": "ada@example.org", "keywords": "linear attention",
             "excluded": "diffusion", "frequency": "weekly"}  # fmt: skip

    wrong = client.post("/subscribe", data={**typed, "timezone": "Mars/Olympus_Mons"})
    assert wrong.status_code == 400
    text = unescape(wrong.text)
    assert "unknown time zone 'Mars/Olympus_Mons': choose yours from the list" in text
    assert 'aria-invalid="true"' in re.search(r"<select id=\"timezone\"[^>]*>", text).group(0)
    assert 'value="ada@example.org"' in text and ">linear attention</textarea>" in text
    assert ">diffusion</textarea>" in text and 'value="weekly" checked' in text
    with Session(engine) as session:
        assert session.exec(select(Subscriber)).all() == [], "nothing stored"

    shown = client.post("/subscribe", data={**typed, "timezone": "Asia/Tokyo", "action": "preview"})
    assert '<option value="Asia/Tokyo" selected>' in shown.text
    assert "data-auto-timezone" not in shown.text, "a zone the reader chose stays chosen"

    done = client.post("/subscribe", data={**typed, "timezone": "Asia/Tokyo"})
    assert done.status_code == 200
    without = client.post("/subscribe", data={**typed, "email": "bob@example.org"})
    assert without.status_code == 200, "a form without the field still works"
    with Session(engine) as session:
        zones = {s.email: s.timezone for s in session.exec(select(Subscriber))}
    assert zones == {"ada@example.org": "Asia/Tokyo", "bob@example.org": "UTC"}


# --- 4. Feedback counts for the interest the paper was shown under ----------------------------


def digest_with(engine, subscriber_id: int, day: int, items: list[tuple[str, int, str]]) -> int:
    """A stored digest `day` days ago: (paper, interest, matched term) per rank."""
    with session_scope(engine) as session:
        when = NOW - timedelta(days=day)
        digest = Digest(subscriber_id=subscriber_id, issue_date=when.date(), covered_until=when)
        session.add(digest)
        session.flush()
        for rank, (paper, topic, term) in enumerate(items, start=1):
            session.add(
                DigestItem(
                    digest_id=digest.id,
                    paper_id=paper,
                    rank=rank,
                    score=0.5,
                    matched=[term],
                    matched_where=["title"],
                    topic_id=topic,
                    section=str(topic),
                )
            )
        assert digest.id is not None
        return digest.id


def press(client: TestClient, path: str):
    page = client.get(path)
    assert page.status_code == 200, page.text
    return page, client.post(path, data={"csrf": csrf_of(page.text)})


def test_ratings_mutes_and_saves_count_for_the_interest_the_paper_was_shown_under(
    client, engine, settings, ada
):
    first = first_interest(engine, ada)
    experts = add_interest(engine, ada, "Experts", keywords=["sparse routing"])
    moe, video, ssm = "2611.00002", "2611.00003", "2611.00006"
    older = digest_with(
        engine, ada.id, 2, [(moe, experts, "sparse routing"), (video, experts, "video")]
    )
    # The same paper came again later under the first interest: the older mail's links still
    # name the interest it was shown under there.
    digest_with(engine, ada.id, 1, [(moe, first, "mixture of experts"), (ssm, first, "state")])
    links = f"/f/{token_for(settings, Purpose.feedback, ada, d=older)}"

    page, done = press(client, f"{links}/1/more")
    assert "It counts for your interest “Experts”" in unescape(page.text)
    assert done.status_code == 200 and "It counts for your interest “Experts”" in unescape(
        done.text
    )
    press(client, f"{links}/2/less")
    with Session(engine) as session:
        ratings = {r.paper_id: (r.value, r.topic_id) for r in session.exec(select(Rating))}
    assert ratings == {moe: (1, experts), video: (-1, experts)}

    page, done = press(client, f"{links}/1/mute/0")
    asked = unescape(page.text)
    assert "under your interest “Experts”, the one this paper was shown under" in asked
    assert "“sparse routing” is one of this interest's keywords" in asked
    assert "It is this interest's only keyword" in asked
    assert done.status_code == 200 and "“sparse routing” is muted" in unescape(done.text)
    with Session(engine) as session:
        rows = {(i.phrase, i.negative, i.topic_id) for i in session.exec(select(Interest))}
    assert ("sparse routing", True, experts) in rows, "muted in the interest shown under"
    assert ("sparse routing", False, experts) not in rows
    assert ("mixture of experts", False, first) in rows, "the first interest is untouched"
    assert not any(neg and topic == first for _, neg, topic in rows)
    manage = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    assert f'href="{manage}/interests/{experts}"' in done.text, "undo on that interest's page"
    assert "is muted" in client.get(f"{links}/1/mute/0").text, "a second visit: done"

    _, saved = press(client, f"{links}/2/save")
    assert "“more like this” for your interest “Experts”" in unescape(saved.text)
    with Session(engine) as session:
        kept = session.exec(select(SavedPaper)).one()
        rating = session.exec(select(Rating).where(Rating.paper_id == video)).one()
    assert (kept.paper_id, kept.topic_id) == (video, experts)
    assert (rating.value, rating.topic_id) == (1, experts)


def test_with_one_interest_the_pages_name_none_and_mute_goes_to_it(client, engine, settings, ada):
    only = first_interest(engine, ada)
    digest = digest_with(engine, ada.id, 1, [("2611.00003", only, "video")])
    links = f"/f/{token_for(settings, Purpose.feedback, ada, d=digest)}"
    page, done = press(client, f"{links}/1/mute/0")
    assert "your interest" not in unescape(page.text) + unescape(done.text)
    _, rated = press(client, f"{links}/1/more")
    assert "It counts for" not in unescape(rated.text)
    with Session(engine) as session:
        muted = session.exec(select(Interest).where(Interest.negative)).one()
        rating = session.exec(select(Rating)).one()
    assert (muted.phrase, muted.topic_id) == ("video", only)
    assert rating.topic_id == only
