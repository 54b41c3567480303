"""Issue 15.1: a deleted subscriber's old links must never open someone else's account.

SQLite reused the highest rowid after a delete, and tokens carried only (id, version): Alice
deleted her data, Bob signed up with her id, and Alice's old manage link showed Bob's settings,
her feed link served his feed and her one-click unsubscribe unsubscribed him. Ids are never
reused now (AUTOINCREMENT), and every token carries a random nonce stored with the row."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy
from fastapi.testclient import TestClient
from sqlmodel import Session, select

from papermail.db import make_engine, session_scope
from papermail.migrate import upgrade
from papermail.models import Interest, Subscriber
from papermail.services import subscriptions
from papermail.tokens import Purpose, make_token
from tests.test_web_support import add_confirmed, client_for, seed_papers, token_for

ONE_CLICK = {"List-Unsubscribe": "One-Click"}


@pytest.fixture
def client(settings, engine) -> Iterator[TestClient]:
    seed_papers(engine)
    with client_for(settings, engine) as test_client:
        yield test_client


def _alice_links(settings, alice: Subscriber) -> dict[str, str]:
    return {
        "manage": f"/manage/{token_for(settings, Purpose.manage, alice)}",
        "feed": f"/feed/{token_for(settings, Purpose.feed, alice)}.atom",
        "unsubscribe": f"/unsubscribe/{token_for(settings, Purpose.unsubscribe, alice)}",
    }


def _assert_links_do_nothing_to(client, engine, links: dict[str, str], bob_id: int) -> None:
    manage = client.get(links["manage"])
    assert manage.status_code in (404, 410) and "bob@example.org" not in manage.text
    feed = client.get(links["feed"])
    assert feed.status_code in (404, 410) and "bob@example.org" not in feed.text
    page = client.get(links["unsubscribe"])
    assert page.status_code in (404, 410) and "bob@example.org" not in page.text
    client.post(links["unsubscribe"], data=ONE_CLICK)
    with Session(engine) as session:
        bob = session.get(Subscriber, bob_id)
        assert bob is not None and bob.unsubscribed_at is None, "Alice's link unsubscribed Bob"


def test_deleted_subscribers_links_do_nothing_to_the_next_one(client, engine, settings):
    alice = add_confirmed(engine, "alice@example.org", "linear attention")
    links = _alice_links(settings, alice)
    assert client.get(links["manage"]).status_code == 200
    with session_scope(engine) as session:
        subscriptions.delete_subscriber(session, session.get(Subscriber, alice.id))
    bob = add_confirmed(engine, "bob@example.org", "state space models")
    assert bob.id != alice.id, "a deleted subscriber's id was given to a new one"
    _assert_links_do_nothing_to(client, engine, links, bob.id)


def test_a_row_that_gets_an_old_id_anyway_is_not_opened_by_old_links(client, engine, settings):
    """Even if an id comes back (a restore, a hand-made row), the nonce tells rows apart."""
    alice = add_confirmed(engine, "alice@example.org", "linear attention")
    links = _alice_links(settings, alice)
    with session_scope(engine) as session:
        subscriptions.delete_subscriber(session, session.get(Subscriber, alice.id))
    with session_scope(engine) as session:
        bob = Subscriber(id=alice.id, email="bob@example.org", confirmed=True)
        session.add(bob)
        session.flush()
        subscriptions.set_interests(session, bob.id, ["state space models"], [])
    _assert_links_do_nothing_to(client, engine, links, alice.id)
    # Bob's own links work.
    with Session(engine) as session:
        bob = session.get(Subscriber, alice.id)
        assert client.get(f"/manage/{token_for(settings, Purpose.manage, bob)}").status_code == 200


def test_old_format_links_work_only_for_subscribers_from_before_the_upgrade(
    client, engine, settings
):
    """Links mailed before the nonce existed keep working for the subscribers who had them;
    a subscriber created after the upgrade never accepts one."""
    secret = settings.secret_key.get_secret_value()
    new = add_confirmed(engine, "new@example.org", "linear attention")
    with session_scope(engine) as session:
        old = Subscriber(email="old@example.org", confirmed=True, legacy_links=True)
        session.add(old)
        session.flush()
        subscriptions.set_interests(session, old.id, ["state space models"], [])
    for sub, expected in ((old, 200), (new, 404)):
        legacy = make_token(secret, Purpose.manage, sub.id, version=sub.token_version)
        assert client.get(f"/manage/{legacy}").status_code == expected, sub.email


def test_upgrade_keeps_rows_fills_nonces_and_never_reuses_ids(tmp_path):
    """The migration rebuilds the SQLite table (AUTOINCREMENT) without cascading deletes into
    interests, gives every row its own nonce, and marks them as having old-format links."""
    url = f"sqlite:///{tmp_path / 'old.db'}"
    raw = sqlalchemy.create_engine(url)
    upgrade(raw, "0002")
    with raw.begin() as conn:
        for i in (1, 2, 3):
            conn.exec_driver_sql(
                "insert into subscriber (id, email, confirmed, timezone, send_hour, frequency,"
                " weekly_day, max_papers, token_version, hard_bounces, created_at) values"
                f" ({i}, 'u{i}@example.org', 1, 'UTC', 7, 'daily', 0, 10, 0, 0,"
                " '2026-01-01 00:00:00')"
            )
            conn.exec_driver_sql(
                f"insert into interest (subscriber_id, phrase, weight, negative)"
                f" values ({i}, 'topic {i}', 1.0, 0)"
            )
        conn.exec_driver_sql("delete from interest where subscriber_id = 3")
        conn.exec_driver_sql("delete from subscriber where id = 3")
    raw.dispose()

    from tests.conftest import make_settings

    engine = make_engine(make_settings(tmp_path, database_url=url))  # foreign keys ON
    upgrade(engine)
    with Session(engine) as session:
        subs = session.exec(select(Subscriber).order_by(Subscriber.id)).all()
        assert [s.email for s in subs] == ["u1@example.org", "u2@example.org"]
        assert all(s.legacy_links for s in subs)
        nonces = {s.link_nonce for s in subs}
        assert len(nonces) == 2 and all(len(n) >= 16 for n in nonces)
        assert len(session.exec(select(Interest)).all()) == 2, "interests survived the rebuild"
    with session_scope(engine) as session:
        session.delete(session.get(Subscriber, 2))
    with session_scope(engine) as session:
        fresh = Subscriber(email="fresh@example.org")
        session.add(fresh)
        session.flush()
        assert fresh.id is not None and fresh.id > 2
        assert not fresh.legacy_links and fresh.link_nonce not in nonces
    engine.dispose()
