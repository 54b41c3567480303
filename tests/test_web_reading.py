"""Reading: a sent digest in the browser, the public daily-papers pages and the private Atom
feed (parsed with feedparser), on SQLite and PostgreSQL."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape

import feedparser
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from papermail.db import session_scope
from papermail.models import Paper, Subscriber
from papermail.services import digests
from papermail.tokens import Purpose, read_token
from tests.test_web_support import (
    BASE,
    PAPERS,
    add_confirmed,
    client_for,
    outbox,
    seed_papers,
    text_of,
    token_for,
)

NOW = datetime.now(UTC).replace(microsecond=0)


@pytest.fixture
def client(settings, engine) -> Iterator[TestClient]:
    seed_papers(engine, now=NOW)
    with client_for(settings, engine) as test_client:
        yield test_client


def send_day(engine, settings, day: datetime) -> list[int]:
    report = digests.score_day(engine, settings, issue_date=day.date(), now=day)
    digests.send_digests(engine, settings, report.to_send)
    return report.to_send


def test_view_in_browser_shows_the_mailed_digest(client, engine, settings):
    ada = add_confirmed(engine, "ada@example.org", "linear attention")
    bob = add_confirmed(engine, "bob@example.org", "mixture of experts")
    send_day(engine, settings, NOW)
    mail = next(m for m in outbox(settings) if m["To"] == "ada@example.org")
    view = re.search(re.escape(BASE) + r"(/digest/[\w.\-]+)", text_of(mail)).group(1)
    page = client.get(view)
    assert page.status_code == 200
    assert "Gated Linear Attention for Language Modeling" in unescape(page.text)
    csp = page.headers["content-security-policy"]
    assert "script-src" not in csp and "default-src 'none'" in csp, "inline styles, no script"

    bobs_mail = next(m for m in outbox(settings) if m["To"] == "bob@example.org")
    bobs_digest = re.search(r"/digest/([\w.\-]+)", text_of(bobs_mail)).group(1)
    bobs_id = read_token(settings.secret_key.get_secret_value(), Purpose.view, bobs_digest)
    foreign = token_for(settings, Purpose.view, ada, d=bobs_id.extra["d"])
    assert client.get(f"/digest/{foreign}").status_code == 404, "ada cannot read bob's digest"
    assert (
        client.get(f"/digest/{token_for(settings, Purpose.view, bob, d=999999)}").status_code == 404
    )
    assert client.get(f"/digest/{token_for(settings, Purpose.view, bob)}").status_code == 404
    assert client.get(f"/digest/{token_for(settings, Purpose.manage, bob)}").status_code == 400


def test_daily_papers_by_upvotes_then_title_with_day_navigation(client, engine):
    yesterday = NOW - timedelta(days=1)
    with session_scope(engine) as session:
        session.add(
            Paper(
                id="old-1",
                title="Zeta paper",
                abstract="a",
                listing_day=yesterday.date(),
                upvotes=3,
            )
        )
        session.add(
            Paper(
                id="old-2",
                title="alpha paper",
                abstract="b",
                listing_day=yesterday.date(),
                upvotes=3,
            )
        )
        session.add(
            Paper(
                id="old-3",
                title="Most liked",
                abstract="c",
                listing_day=yesterday.date(),
                upvotes=40,
            )
        )
        session.add(
            Paper(
                id="seen-1", title="Unlisted, seen yesterday", abstract="d", first_seen_at=yesterday
            )
        )
    latest = client.get("/papers")
    assert latest.status_code == 200 and "public" in latest.headers["cache-control"]
    titles = re.findall(r'class="paper-title"[^>]*>([^<]+)<', unescape(latest.text))
    assert titles == [title for title, _ in PAPERS], "most upvoted first"
    assert f'href="/papers/{yesterday.date().isoformat()}"' in latest.text

    older = client.get(f"/papers/{yesterday.date().isoformat()}")
    titles = re.findall(r'class="paper-title"[^>]*>([^<]+)<', unescape(older.text))
    assert titles == ["Most liked", "alpha paper", "Zeta paper", "Unlisted, seen yesterday"]
    assert f'href="/papers/{NOW.date().isoformat()}"' in older.text

    assert client.get("/papers/2001-01-01").status_code == 200
    missing = client.get("/papers/not-a-day")
    assert missing.status_code == 404 and "Days look like" in missing.text


def test_daily_papers_page_without_papers(settings, engine):
    with client_for(settings, engine) as client:
        page = client.get("/papers")
    assert page.status_code == 200 and "No papers yet" in page.text


def test_private_feed_is_valid_atom_with_one_entry_per_digest(client, engine, settings):
    ada = add_confirmed(engine, "ada@example.org", "linear attention", "<b>bold</b>")
    assert send_day(engine, settings, NOW)
    assert send_day(engine, settings, NOW + timedelta(days=1)) == [], "nothing new: no digest"
    with session_scope(engine) as session:
        title = "Linear attention, again & <better>"
        later = NOW + timedelta(days=1, hours=1)
        session.add(Paper(id="n1", title=title, abstract="linear attention", first_seen_at=later))
    assert send_day(engine, settings, NOW + timedelta(days=2))

    path = f"/feed/{token_for(settings, Purpose.feed, ada)}.atom"
    answer = client.get(path)
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("application/atom+xml")
    feed = feedparser.parse(answer.content)
    assert not feed.bozo, feed.get("bozo_exception")
    assert feed.feed.title == "papermail: your paper digests"
    assert "<b>bold</b>" in feed.feed.subtitle
    assert feed.feed.id.startswith("tag:papermail.test,")
    assert len(feed.entries) == 2
    newest, oldest = feed.entries
    assert newest.title.endswith(": 1 paper") and oldest.title.endswith("papers")
    assert "Linear attention, again &amp; &lt;better&gt;" in newest.content[0].value
    assert "Why: matched" in oldest.content[0].value
    assert len({e.id for e in feed.entries}) == 2
    view = newest.link.removeprefix(BASE)
    assert client.get(view).status_code == 200

    with Session(engine) as session:
        sub = session.get(Subscriber, ada.id)
        sub.token_version += 1
        session.add(sub)
        session.commit()
    assert client.get(path).status_code == 410
    assert client.get(f"/feed/{token_for(settings, Purpose.view, ada)}.atom").status_code == 400


def test_a_long_day_is_split_into_pages(client, engine):
    day = NOW - timedelta(days=3)
    with session_scope(engine) as session:
        for i in range(60):
            session.add(
                Paper(
                    id=f"p{i}",
                    title=f"Paper {i:02d}",
                    abstract="x",
                    listing_day=day.date(),
                    upvotes=i,
                )
            )
    first = client.get(f"/papers/{day.date().isoformat()}")
    assert "60 papers, most upvoted first · page 1 of 2" in first.text
    assert first.text.count('class="paper"') == 50 and "Paper 59" in first.text
    second = client.get(f"/papers/{day.date().isoformat()}?page=2")
    assert second.text.count('class="paper"') == 10 and "Paper 00" in second.text
    assert client.get(f"/papers/{day.date().isoformat()}?page=0").status_code == 400


def titles_on(page) -> list[str]:
    return re.findall(r'class="paper-title"[^>]*>([^<]+)<', unescape(page.text))


def test_papers_search_sort_links_and_tldr(client, engine):
    with session_scope(engine) as session:
        paper = session.get(Paper, "2611.00002")
        paper.code_url, paper.code_stars = "https://github.com/lab/moe", 12
        paper.ai_summary = "Sparse routing for experts, summarised."
        paper.ai_keywords = ["routing", "experts"]
    found = client.get("/papers", params={"q": "linear ATTENTION"})
    assert found.status_code == 200
    assert titles_on(found) == [
        "Linear Attention Transformers Scale to Long Context",
        "Gated Linear Attention for Language Modeling",
        "Diffusion Models for Video Generation",  # in its abstract
    ]
    assert 'value="linear ATTENTION"' in found.text and "<main" in found.text
    by_title = client.get("/papers", params={"q": "linear attention", "sort": "title"})
    assert titles_on(by_title) == sorted(titles_on(found), key=str.casefold)
    day = client.get("/papers", params={"sort": "title"})
    assert titles_on(day) == sorted((t for t, _ in PAPERS), key=str.casefold)
    assert client.get("/papers", params={"sort": "nonsense"}).status_code == 200

    moe = unescape(client.get("/papers", params={"q": "mixture"}).text)
    assert 'href="https://arxiv.org/abs/2611.00002"' in moe  # the paper page, not a search
    assert 'href="https://arxiv.org/pdf/2611.00002"' in moe and ">Code ★12<" in moe
    assert "AI summary" in moe and "Sparse routing for experts, summarised." in moe
    assert "Keywords: routing, experts" in moe
    plain = unescape(client.get("/papers", params={"q": "reward"}).text)
    assert ">Code" not in plain and "from the abstract" in plain
    assert "Calibrating reward models for preference learning." in plain

    none = client.get("/papers", params={"q": "%_ nothing like this"})
    assert none.status_code == 200 and titles_on(none) == []
    assert "No paper matches" in unescape(none.text) and 'href="/papers"' in none.text
