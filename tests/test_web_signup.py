"""Sign-up that shows value at once (issue 13 item 5): the subscribe page's preview (server-
rendered with the Preview button, JSON for the script), daily/weekly and the browser's time zone,
and the welcome digest sent on confirming through the normal digest/delivery path (once), on
SQLite and PostgreSQL."""

from __future__ import annotations

from collections.abc import Iterator
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from papermail.models import Delivery, DeliveryStatus, Digest, Frequency, Subscriber, utcnow
from papermail.services.status import day_status
from papermail.services.today import TodayKind, today_of
from tests.test_web_support import client_for, csrf_of, link_in, outbox, seed_papers, subscribe


@pytest.fixture
def client(settings, engine) -> Iterator[TestClient]:
    seed_papers(engine)
    with client_for(settings, engine) as test_client:
        yield test_client


def test_the_subscribe_page_previews_without_and_with_script(client, settings):
    page = client.get("/")
    text = unescape(page.text)
    assert (
        "What this week would have brought" in text
        and 'data-preview-url="/subscribe/preview"' in text
    )
    assert "Add a keyword to see which recent papers it brings." in text
    assert 'name="frequency" value="weekly"' in text and "data-auto-timezone" in text
    csrf = csrf_of(page.text)
    shown = client.post(
        "/subscribe",
        data={"csrf": csrf, "email": "", "keywords": "linear attention", "excluded": "diffusion",
              "action": "preview", "frequency": "weekly"},
    )  # fmt: skip
    assert shown.status_code == 200
    text = unescape(shown.text)
    assert "<mark>linear attention</mark>" in text and "Gated Linear Attention" in text
    assert "Diffusion Models for Video Generation" not in text
    assert ">linear attention</textarea>" in text, "the typed keywords stay"
    assert 'value="weekly" checked' in text
    assert outbox(settings) == [], "a preview sends nothing"

    data = client.post(
        "/subscribe/preview", json={"csrf": csrf, "keywords": "mixture of experts"}
    ).json()
    assert data["items"][0]["title"] == "Sparse Mixture of Experts Routing"
    assert data["summary"].endswith(":")
    forged = client.post("/subscribe/preview", json={"csrf": "x", "keywords": "moe"})
    assert forged.status_code == 403


def test_confirming_sends_the_welcome_digest_at_once_and_only_once(client, engine, settings):
    answer = subscribe(
        client, "ada@example.org", "linear attention", timezone="Europe/Berlin", frequency="weekly"
    )
    assert answer.status_code == 200
    with Session(engine) as session:
        sub = session.exec(select(Subscriber)).one()
        assert (sub.timezone, sub.frequency) == ("Europe/Berlin", Frequency.weekly)
    [confirmation] = outbox(settings)
    confirm = link_in(confirmation, "/confirm/")
    page = client.get(confirm)
    done = client.post(confirm, data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert done.status_code == 303
    mails = outbox(settings)
    assert len(mails) == 2, "the welcome digest went out with the answer"
    welcome = mails[-1]
    assert welcome["To"] == "ada@example.org" and "List-Unsubscribe" in welcome
    body = welcome.get_body(preferencelist=("plain",)).get_content()
    assert "Gated Linear Attention for Language Modeling" in body
    with Session(engine) as session:
        digest = session.exec(select(Digest)).one()
        delivery = session.exec(select(Delivery)).one()
        assert delivery.status == DeliveryStatus.sent
        sub = session.get(Subscriber, digest.subscriber_id)
        assert today_of(session, sub, utcnow()).kind is TodayKind.sent
        assert day_status(session, digest.issue_date).counts["sent"] == 1
    manage = client.get(done.headers["location"])
    assert "A first digest with the best recent papers is on its way" in unescape(manage.text)
    assert 'data-today="sent"' in manage.text

    client.post(confirm, data={"csrf": csrf_of(page.text)})  # confirming twice
    assert len(outbox(settings)) == 2, "no second welcome digest"
