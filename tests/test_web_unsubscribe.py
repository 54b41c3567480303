"""Unsubscribing: a GET never does it, RFC 8058 one-click POSTs do it at once, the page's button
needs its CSRF token, and nothing is mailed afterwards, even a digest already scored."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from papermail.models import Delivery, DeliveryStatus, Digest, Subscriber
from papermail.services import digests
from papermail.tokens import Purpose
from tests.test_web_support import (
    add_confirmed,
    client_for,
    csrf_of,
    outbox,
    seed_papers,
    token_for,
)

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def client(settings, engine) -> Iterator[TestClient]:
    seed_papers(engine)
    with client_for(settings, engine) as test_client:
        yield test_client


@pytest.fixture
def ada(engine) -> Subscriber:
    return add_confirmed(engine, "ada@example.org", "linear attention")


def unsubscribed_at(engine, subscriber_id: int) -> datetime | None:
    with Session(engine) as session:
        sub = session.get(Subscriber, subscriber_id)
        assert sub is not None
        return sub.unsubscribed_at


def test_a_get_shows_a_button_and_never_unsubscribes(client, engine, settings, ada):
    path = f"/unsubscribe/{token_for(settings, Purpose.unsubscribe, ada)}"
    for _ in range(3):  # scanners, previews, a person
        page = client.get(path)
        assert page.status_code == 200
        assert 'method="post"' in page.text and "Unsubscribe ada@example.org?" in page.text
    assert client.head(path).status_code in (200, 405)
    assert unsubscribed_at(engine, ada.id) is None


def test_one_click_post_unsubscribes_at_once_even_from_an_old_mail(client, engine, settings, ada):
    old_link = f"/unsubscribe/{token_for(settings, Purpose.unsubscribe, ada)}"
    with Session(engine) as session:  # "invalidate old links" happened since that mail
        sub = session.get(Subscriber, ada.id)
        sub.token_version += 1
        session.add(sub)
        session.commit()
    answer = client.post(old_link, data=ONE_CLICK)
    assert answer.status_code == 200 and answer.text == "unsubscribed\n"
    assert answer.headers["content-type"].startswith("text/plain")
    first = unsubscribed_at(engine, ada.id)
    assert first is not None
    assert client.post(old_link, data=ONE_CLICK).status_code == 200, "idempotent"
    assert unsubscribed_at(engine, ada.id) == first
    multipart = client.post(old_link, files={"List-Unsubscribe": (None, "One-Click")})
    assert multipart.status_code == 200, "RFC 8058 allows multipart/form-data too"


def test_the_page_button_needs_its_csrf_token_then_offers_undo(client, engine, settings, ada):
    path = f"/unsubscribe/{token_for(settings, Purpose.unsubscribe, ada)}"
    page = client.get(path)
    assert client.post(path).status_code == 403
    assert client.post(path, data={"csrf": "1.x"}).status_code == 403
    assert unsubscribed_at(engine, ada.id) is None
    done = client.post(path, data={"csrf": csrf_of(page.text)})
    assert done.status_code == 200 and "will receive no more digests" in done.text
    assert unsubscribed_at(engine, ada.id) is not None
    again = client.get(path)
    assert "Subscribe again" in again.text

    back = client.post(f"{path}/resubscribe", data={"csrf": csrf_of(done.text)})
    assert back.status_code == 200 and "Welcome back" in back.text
    assert unsubscribed_at(engine, ada.id) is None


def test_undo_needs_a_current_link(client, engine, settings, ada):
    path = f"/unsubscribe/{token_for(settings, Purpose.unsubscribe, ada)}"
    csrf = csrf_of(client.get(path).text)
    client.post(path, data=ONE_CLICK)
    with Session(engine) as session:
        sub = session.get(Subscriber, ada.id)
        sub.token_version += 1
        session.add(sub)
        session.commit()
    refused = client.post(f"{path}/resubscribe", data={"csrf": csrf})
    assert refused.status_code == 410
    assert unsubscribed_at(engine, ada.id) is not None


def test_forged_tokens_change_nothing_and_deleted_subscribers_count_as_done(
    client, engine, settings, ada
):
    good = token_for(settings, Purpose.unsubscribe, ada)
    for bad in (good[:-3] + "abc", token_for(settings, Purpose.manage, ada), "nonsense"):
        answer = client.post(f"/unsubscribe/{bad}", data=ONE_CLICK)
        assert answer.status_code == 400 and "not valid" in answer.text
    assert unsubscribed_at(engine, ada.id) is None
    with Session(engine) as session:
        session.delete(session.get(Subscriber, ada.id))
        session.commit()
    assert client.post(f"/unsubscribe/{good}", data=ONE_CLICK).status_code == 200
    assert client.get(f"/unsubscribe/{good}").status_code == 404


def test_nothing_is_mailed_after_unsubscribing_not_even_a_scored_digest(
    client, engine, settings, ada
):
    now = datetime.now(UTC)
    report = digests.score_day(engine, settings, issue_date=now.date(), now=now)
    assert len(report.to_send) == 1, "a digest waits to be sent"
    client.post(f"/unsubscribe/{token_for(settings, Purpose.unsubscribe, ada)}", data=ONE_CLICK)

    sent = digests.send_digests(engine, settings, report.to_send)
    assert sent.sent == 0 and outbox(settings) == []
    with Session(engine) as session:
        delivery = session.exec(select(Delivery)).one()
        assert delivery.status == DeliveryStatus.cancelled
        assert delivery.last_error == "unsubscribed before sending"
    tomorrow = now + timedelta(days=1)
    later = digests.score_day(engine, settings, issue_date=tomorrow.date(), now=tomorrow)
    assert later.to_send == []
    with Session(engine) as session:
        assert len(session.exec(select(Digest)).all()) == 1
