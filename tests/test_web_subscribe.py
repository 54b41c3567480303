"""Sign-up with double opt-in, confirmation, and "email me a link", over HTTP on SQLite and
PostgreSQL, with mail read back from the outbox or a real SMTP server."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from html import unescape

import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from papermail.db import create_tables, make_engine
from papermail.models import Interest, RateLimitHit, Subscriber
from papermail.tokens import Purpose, make_token
from tests.conftest import make_settings
from tests.test_web_support import (
    add_confirmed,
    client_for,
    csrf_of,
    link_in,
    outbox,
    subscribe,
    text_of,
    token_for,
)


@pytest.fixture
def client(settings, engine) -> Iterator[TestClient]:
    with client_for(settings, engine) as test_client:
        yield test_client


def subscribers(engine) -> list[Subscriber]:
    with Session(engine) as session:
        return list(session.exec(select(Subscriber)))


def phrases(engine, subscriber_id: int) -> set[tuple[str, bool]]:
    with Session(engine) as session:
        rows = session.exec(select(Interest).where(Interest.subscriber_id == subscriber_id))
        return {(i.phrase, i.negative) for i in rows}


def test_form_page_has_labels_and_a_secure_csrf_cookie(client):
    page = client.get("/")
    assert page.status_code == 200
    for field in ("email", "keywords", "excluded"):
        assert f'<label for="{field}"' in page.text and f'id="{field}"' in page.text
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("pm_csrf=")
    assert "HttpOnly" in cookie and "Secure" in cookie and "samesite=lax" in cookie.lower()


def test_sign_up_mails_a_confirm_link_and_only_a_post_confirms(client, engine, settings):
    answer = subscribe(client, "ada@example.org", "linear attention\nMoE", "diffusion")
    assert answer.status_code == 200 and "Check your inbox" in answer.text
    [sub] = subscribers(engine)
    assert not sub.confirmed
    assert phrases(engine, sub.id) == {
        ("linear attention", False),
        ("MoE", False),
        ("diffusion", True),
    }
    [mail] = outbox(settings)
    assert mail["To"] == "ada@example.org" and "Confirm" in mail["Subject"]
    assert "List-Unsubscribe" not in mail, "a confirmation is not a newsletter"
    confirm = link_in(mail, "/confirm/")

    page = client.get(confirm)  # what a mail scanner's prefetch does
    assert page.status_code == 200 and "Confirm subscription" in page.text
    assert "linear attention" in page.text
    assert not subscribers(engine)[0].confirmed, "a GET confirms nothing"

    done = client.post(confirm, data={"csrf": csrf_of(page.text)}, follow_redirects=False)
    assert done.status_code == 303 and "/manage/" in done.headers["location"]
    [sub] = subscribers(engine)
    assert sub.confirmed and sub.confirmed_at is not None
    manage = client.get(done.headers["location"])
    assert manage.status_code == 200 and "You're subscribed" in unescape(manage.text)

    again = client.get(confirm)
    assert again.status_code == 200 and "Already confirmed" in again.text


def test_confirmation_reaches_a_real_smtp_server(tmp_path, database_url, smtp_server):
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        mail_backend="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
    )
    engine = make_engine(settings)
    create_tables(engine)
    try:
        with client_for(settings, engine) as client:
            assert subscribe(client, "grace@example.org", "mixture of experts").status_code == 200
            [received] = smtp_server.messages
            assert received.rcpt_tos == ["grace@example.org"]
            confirm = link_in(received.message, "/confirm/")
            page = client.get(confirm)
            client.post(confirm, data={"csrf": csrf_of(page.text)})
        assert subscribers(engine)[0].confirmed
    finally:
        engine.dispose()


def test_signing_up_again_reveals_nothing_and_overwrites_nothing(client, engine, settings):
    known = add_confirmed(engine, "known@example.org", "interpretability", excluded=("vision",))
    fresh = subscribe(client, "new@example.org", "linear attention")
    repeat = subscribe(client, "known@example.org", "cooking, <b>gardening</b>")
    assert fresh.status_code == repeat.status_code == 200
    assert fresh.text.replace("new@", "X@") == repeat.text.replace("known@", "X@")
    assert set(fresh.headers) == set(repeat.headers)

    assert len(subscribers(engine)) == 2
    assert phrases(engine, known.id) == {("interpretability", False), ("vision", True)}
    manage_mail = next(m for m in outbox(settings) if m["To"] == "known@example.org")
    assert "settings link" in manage_mail["Subject"]
    assert "Nothing was changed" in text_of(manage_mail)
    manage = client.get(link_in(manage_mail, "/manage/"))
    assert manage.status_code == 200 and "interpretability" in manage.text


def test_an_unconfirmed_sign_up_takes_the_newest_form_and_newest_link(client, engine, settings):
    subscribe(client, "ada@example.org", "first topic")
    subscribe(client, "ada@example.org", "second topic")
    [sub] = subscribers(engine)
    assert phrases(engine, sub.id) == {("second topic", False)}
    first, second = outbox(settings)
    assert "first topic" in text_of(first) and "second topic" in text_of(second)
    old = client.get(link_in(first, "/confirm/"))
    assert old.status_code == 410 and "replaced" in old.text
    new = client.get(link_in(second, "/confirm/"))
    assert new.status_code == 200 and "second topic" in new.text


def test_errors_show_next_to_their_field_and_keep_the_input(client, engine, settings):
    page = subscribe(client, "not-an-address", "linear attention")
    assert page.status_code == 400
    assert 'id="email-error"' in page.text and 'aria-invalid="true"' in page.text
    assert "linear attention" in page.text, "what was typed comes back"
    page = subscribe(client, "ada@example.org", " , ")
    assert page.status_code == 400 and 'id="keywords-error"' in page.text
    page = subscribe(client, "ada@example.org", "x" * 201)
    assert page.status_code == 400 and "longer than 200" in page.text
    assert subscribers(engine) == [] and outbox(settings) == []


def test_hostile_text_is_escaped(client, engine, settings):
    hostile = '<script>alert("x")</script>'
    page = subscribe(client, "bad address " + hostile, hostile)
    assert page.status_code == 400
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text

    assert subscribe(client, "eve@example.org", hostile, hostile + " excluded").status_code == 200
    [mail] = outbox(settings)
    html = mail.get_body(preferencelist=("html",)).get_content()
    assert "<script>" not in html
    confirm = client.get(link_in(mail, "/confirm/"))
    assert "<script>alert" not in confirm.text and "&lt;script&gt;" in confirm.text
    manage = client.post(
        link_in(mail, "/confirm/"), data={"csrf": csrf_of(confirm.text)}, follow_redirects=True
    )
    assert manage.status_code == 200
    assert "<script>alert" not in manage.text and "&lt;script&gt;alert" in manage.text


def test_sign_up_without_a_valid_csrf_token_changes_nothing(client, engine, settings):
    client.get("/")
    data = {"email": "ada@example.org", "keywords": "linear attention"}
    assert client.post("/subscribe", data=data).status_code == 403
    assert client.post("/subscribe", data={**data, "csrf": "123.abc"}).status_code == 403
    with client_for(settings, engine) as other_browser:
        stolen = csrf_of(other_browser.get("/").text)
    refused = client.post("/subscribe", data={**data, "csrf": stolen})
    assert refused.status_code == 403 and "expired" in refused.text
    assert "linear attention" in refused.text, "the form comes back filled in"
    cookieless = TestClient(client.app, base_url=str(client.base_url))
    assert cookieless.post("/subscribe", data={**data, "csrf": stolen}).status_code == 403
    assert subscribers(engine) == [] and outbox(settings) == []


@pytest.fixture
def limited(tmp_path, database_url) -> Iterator[tuple[TestClient, object]]:
    settings = make_settings(
        tmp_path, database_url=database_url, subscribe_limit_per_address=2, subscribe_limit_per_ip=4
    )
    engine = make_engine(settings)
    create_tables(engine)
    with client_for(settings, engine) as client:
        yield client, settings
    engine.dispose()


def test_rate_limits_per_address_and_per_client(limited):
    client, settings = limited
    assert subscribe(client, "ada@example.org", "a").status_code == 200
    assert subscribe(client, "ADA@example.org", "b").status_code == 200
    flood = subscribe(client, "ada@example.org", "c")
    # The address's limit only limits mails, silently: a stranger learns and blocks nothing.
    assert flood.status_code == 200 and "Too many requests" not in flood.text
    assert len(outbox(settings)) == 2, "the inbox got two mails, not three"

    assert subscribe(client, "bob@example.org", "d").status_code == 200
    assert subscribe(client, "cy@example.org", "e").status_code == 429, "4 per client IP"
    assert len(outbox(settings)) == 3
    with Session(make_engine(settings)) as session:
        keys = {hit.key for hit in session.exec(select(RateLimitHit))}
    assert keys and not any("@" in key for key in keys), "addresses are stored hashed"


def test_expired_confirm_link_is_refused_and_changes_nothing(client, engine, settings):
    subscribe(client, "ada@example.org", "linear attention")
    [sub] = subscribers(engine)
    issued = datetime.now(UTC) - timedelta(hours=settings.confirm_max_age_hours + 1)
    old = token_for(settings, Purpose.confirm, sub)
    expired = make_token(
        settings.secret_key.get_secret_value(), Purpose.confirm, sub.id, issued_at=issued
    )
    assert client.get(f"/confirm/{old}").status_code == 200
    page = client.get(f"/confirm/{expired}")
    assert page.status_code == 410 and "expired" in page.text
    csrf = csrf_of(client.get(f"/confirm/{old}").text)
    assert client.post(f"/confirm/{expired}", data={"csrf": csrf}).status_code == 410
    assert not subscribers(engine)[0].confirmed


def test_manage_link_request_answers_the_same_for_any_address(client, engine, settings):
    add_confirmed(engine, "known@example.org", "interpretability")

    def ask(email: str):
        form = client.get("/link")
        return client.post("/link", data={"csrf": csrf_of(form.text), "email": email})

    started = time.perf_counter()
    known = ask("known@example.org")
    unknown = ask("nobody@example.org")
    assert known.status_code == unknown.status_code == 200
    assert known.text.replace("known@", "X@") == unknown.text.replace("nobody@", "X@")
    assert time.perf_counter() - started < 5
    [mail] = outbox(settings)
    assert mail["To"] == "known@example.org"
    assert client.get(link_in(mail, "/manage/")).status_code == 200
