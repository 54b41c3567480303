"""The manage page: preferences with errors by field, the live preview (HTML and JSON), snooze,
invalidating links, resubscribing and deleting every row, on SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from papermail.models import Digest, Frequency, Interest, Subscriber
from papermail.services import digests
from papermail.tokens import Purpose
from tests.test_web_support import (
    PAPERS,
    add_confirmed,
    client_for,
    csrf_of,
    seed_papers,
    token_for,
)


@pytest.fixture
def client(settings, engine) -> Iterator[TestClient]:
    seed_papers(engine)
    with client_for(settings, engine) as test_client:
        yield test_client


@pytest.fixture
def ada(engine) -> Subscriber:
    return add_confirmed(engine, "ada@example.org", "linear attention", excluded=("diffusion",))


def fresh(engine, subscriber_id: int) -> Subscriber | None:
    with Session(engine) as session:
        return session.get(Subscriber, subscriber_id)


def phrases(engine, subscriber_id: int) -> list[tuple[str, bool]]:
    with Session(engine) as session:
        rows = session.exec(select(Interest).where(Interest.subscriber_id == subscriber_id))
        return sorted((i.phrase, i.negative) for i in rows)


def form_of(page_text: str, **changes: str) -> dict[str, str]:
    values = {
        "csrf": csrf_of(page_text),
        "keywords": "linear attention",
        "excluded": "diffusion",
        "frequency": "daily",
        "weekly_day": "0",
        "send_hour": "7",
        "timezone": "UTC",
        "max_papers": "10",
    }
    values.update(changes)
    return values


def test_page_shows_settings_and_a_server_rendered_preview(client, settings, ada):
    page = client.get(f"/manage/{token_for(settings, Purpose.manage, ada)}")
    assert page.status_code == 200
    text = unescape(page.text)
    assert ">linear attention</textarea>" in text and ">diffusion</textarea>" in text
    assert "Gated Linear Attention for Language Modeling" in text
    assert "<mark>linear attention</mark>" in text
    assert "Diffusion Models for Video Generation" not in text, "excluded keyword honoured"
    assert '<option value="Europe/Berlin">' in text and '<optgroup label="America">' in text
    assert "Active: digests every day at 07:00 UTC." in text
    assert "/feed/" in text and ".atom" in text


def test_saving_changes_preferences_and_the_preview(client, engine, settings, ada):
    path = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    changes = {
        "keywords": "mixture of experts\nstate space models",
        "excluded": "",
        "frequency": "weekly",
        "weekly_day": "2",
        "send_hour": "6",
        "timezone": "Europe/Berlin",
        "max_papers": "5",
    }
    saved = client.post(path, data=form_of(client.get(path).text, **changes))
    assert saved.status_code == 200 and "Saved." in saved.text
    sub = fresh(engine, ada.id)
    assert (sub.frequency, sub.weekly_day, sub.send_hour) == (Frequency.weekly, 2, 6)
    assert (sub.timezone, sub.max_papers) == ("Europe/Berlin", 5)
    assert phrases(engine, ada.id) == [("mixture of experts", False), ("state space models", False)]
    assert "Sparse Mixture of Experts Routing" in saved.text
    assert "every Wednesday at 06:00 Europe/Berlin" in saved.text


@pytest.mark.parametrize(
    ("change", "field", "message"),
    [
        ({"keywords": " \n , "}, "keywords", "at least one keyword"),
        ({"timezone": "Mars/Olympus"}, "timezone", "unknown time zone"),
        ({"max_papers": "many"}, "max_papers", "whole number"),
        ({"max_papers": "500"}, "max_papers", "between 1 and 100"),
        ({"send_hour": "25"}, "send_hour", "between 0 and 23"),
        ({"frequency": "hourly"}, "frequency", "daily, weekly or paused"),
        ({"excluded": "x" * 201}, "excluded", "longer than 200"),
    ],
)
def test_refused_input_is_shown_next_to_its_field(
    client, engine, settings, ada, change, field, message
):
    path = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    page = client.post(path, data=form_of(client.get(path).text, **change))
    assert page.status_code == 400
    assert f'id="{field}-error"' in page.text and message in page.text
    assert phrases(engine, ada.id) == [("diffusion", True), ("linear attention", False)]
    assert fresh(engine, ada.id).max_papers == 10


def test_live_preview_json_follows_the_typed_keywords(client, settings, ada):
    path = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    csrf = csrf_of(client.get(path).text)
    answer = client.post(f"{path}/preview", json={"csrf": csrf, "keywords": "mixture of experts"})
    assert answer.status_code == 200
    data = answer.json()
    assert data["items"][0]["title"] == "Sparse Mixture of Experts Routing"
    assert data["items"][0]["matched"] and data["summary"].startswith("1 of 8")
    both = client.post(
        f"{path}/preview", json={"csrf": csrf, "keywords": "linear attention", "excluded": ""}
    ).json()
    without = client.post(
        f"{path}/preview",
        json={"csrf": csrf, "keywords": "linear attention", "excluded": "video"},
    ).json()
    titles = {i["title"] for i in both["items"]} - {i["title"] for i in without["items"]}
    assert titles == {"Diffusion Models for Video Generation"}
    empty = client.post(f"{path}/preview", json={"csrf": csrf, "keywords": ""}).json()
    assert empty["items"] == [] and "Add a keyword" in empty["summary"]

    refused = client.post(f"{path}/preview", json={"keywords": "moe"})
    assert refused.status_code == 403 and "error" in refused.json()
    bad = client.post(
        f"{path}/preview", content=b"{not json", headers={"content-type": "application/json"}
    )
    assert bad.status_code == 400 and "error" in bad.json()
    forged = client.post("/manage/forged/preview", json={"csrf": csrf, "keywords": "moe"})
    assert forged.status_code == 400 and forged.json()["error"] == "This link is not valid"


def test_snooze_for_weeks_then_resume(client, engine, settings, ada):
    path = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    csrf = csrf_of(client.get(path).text)
    page = client.post(f"{path}/snooze", data={"csrf": csrf, "weeks": "2"})
    today = datetime.now(UTC).date()
    assert fresh(engine, ada.id).snoozed_until == today + timedelta(weeks=2)
    assert "Snoozed until" in page.text and "Resume now" in page.text
    with Session(engine) as session:
        due = digests.active_subscribers(session, issue_date=today + timedelta(days=3))
        assert ada.id not in {s.id for s in due}
    client.post(f"{path}/snooze", data={"csrf": csrf, "weeks": "0"})
    assert fresh(engine, ada.id).snoozed_until is None
    assert client.post(f"{path}/snooze", data={"csrf": csrf, "weeks": "99"}).status_code == 400
    assert client.post(f"{path}/snooze", data={"weeks": "2"}).status_code == 403
    assert fresh(engine, ada.id).snoozed_until is None


def test_invalidating_old_links_keeps_unsubscribe_working(client, engine, settings, ada):
    old = {
        p: token_for(settings, p, ada) for p in (Purpose.manage, Purpose.feed, Purpose.unsubscribe)
    }
    path = f"/manage/{old[Purpose.manage]}"
    moved = client.post(
        f"{path}/invalidate", data={"csrf": csrf_of(client.get(path).text)}, follow_redirects=False
    )
    assert moved.status_code == 303
    new_path = moved.headers["location"].split("?")[0]
    assert new_path != path and fresh(engine, ada.id).token_version == 1
    assert client.get(moved.headers["location"]).status_code == 200
    for url in (path, f"/feed/{old[Purpose.feed]}.atom"):
        gone = client.get(url)
        assert gone.status_code == 410 and "replaced" in gone.text
    assert client.get(f"/unsubscribe/{old[Purpose.unsubscribe]}").status_code == 200


def test_a_forged_or_foreign_csrf_token_changes_nothing(client, engine, settings, ada):
    bob = add_confirmed(engine, "bob@example.org", "segmentation")
    path = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    bobs_csrf = csrf_of(client.get(f"/manage/{token_for(settings, Purpose.manage, bob)}").text)
    page = client.post(
        path, data={**form_of(client.get(path).text), "csrf": bobs_csrf, "keywords": "x"}
    )
    assert page.status_code == 403 and "expired" in page.text
    assert ">x</textarea>" in page.text, "the typed values come back for another try"
    for action in ("invalidate", "delete", "resubscribe"):
        assert client.post(f"{path}/{action}", data={"csrf": bobs_csrf}).status_code == 403
    sub = fresh(engine, ada.id)
    assert sub is not None and sub.token_version == 0
    assert phrases(engine, ada.id) == [("diffusion", True), ("linear attention", False)]


def test_delete_my_data_asks_first_then_removes_every_row(client, engine, settings, ada):
    now = datetime.now(UTC)
    report = digests.score_day(engine, settings, issue_date=now.date(), now=now)
    assert report.to_send, "there is history to delete"
    path = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    ask = client.get(f"{path}/delete")
    assert ask.status_code == 200 and "Delete everything" in ask.text
    assert fresh(engine, ada.id) is not None, "the GET only asks"
    assert client.post(f"{path}/delete").status_code == 403
    done = client.post(f"{path}/delete", data={"csrf": csrf_of(ask.text)})
    assert done.status_code == 200 and "deleted" in done.text
    assert fresh(engine, ada.id) is None
    with Session(engine) as session:
        assert session.exec(select(Interest)).all() == []
        assert session.exec(select(Digest)).all() == []
    assert client.get(path).status_code == 404


def test_resubscribe_from_the_manage_page(client, engine, settings, ada):
    path = f"/manage/{token_for(settings, Purpose.manage, ada)}"
    unsub = f"/unsubscribe/{token_for(settings, Purpose.unsubscribe, ada)}"
    client.post(unsub, data={"List-Unsubscribe": "One-Click"})
    page = client.get(path)
    assert "Subscribe again" in page.text and "Unsubscribed" in page.text
    back = client.post(f"{path}/resubscribe", data={"csrf": csrf_of(page.text)})
    assert back.status_code == 200 and "Welcome back" in back.text
    assert fresh(engine, ada.id).unsubscribed_at is None


def test_preview_agrees_with_ranking_and_refits_after_an_ingest(engine, settings):
    from papermail import ranking
    from papermail.models import Paper
    from papermail.web.preview import PreviewCache

    seed_papers(engine)
    cache = PreviewCache(settings)
    with Session(engine) as session:
        newest_first = select(Paper).order_by(Paper.first_seen_at.desc(), Paper.id)
        papers = list(session.exec(newest_first))
        shown = cache.preview(session, keywords=["linear attention"], excluded=["video"])
        again = cache.preview(session, keywords=["linear attention"], excluded=["video"])
    texts = [ranking.PaperText(p.title, p.abstract) for p in papers]
    expected = ranking.rank_one(
        ranking.RelevanceModel.fit(texts),
        texts,
        [ranking.Keyword("linear attention"), ranking.Keyword("video", negative=True)],
        min_score=settings.min_score,
        limit=10,
        upvotes=[p.upvotes for p in papers],
    )
    assert [(i.title, i.matched) for i in shown.items] == [
        (papers[m.index].title, m.matched) for m in expected
    ]
    assert again == shown and shown.scanned == len(PAPERS)
    seed_more = datetime.now(UTC) + timedelta(seconds=1)
    with Session(engine) as session:
        session.add(
            Paper(
                id="x1",
                title="Linear attention at scale",
                abstract="Linear attention.",
                first_seen_at=seed_more,
            )
        )
        session.commit()
        assert cache.preview(session, keywords=["linear attention"]).scanned == len(PAPERS) + 1
