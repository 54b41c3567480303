"""The operator console at /admin over HTTP, on SQLite and PostgreSQL: accounts from the CLI,
login (wrong, unknown, lockout, TOTP), the session cookie, CSRF, roles, suspend / resume /
delete, the CSV export, and every page rendered with data in it."""

from __future__ import annotations

import csv
import io
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta

import pyotp
import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from papermail.db import session_scope
from papermail.models import (
    BounceEvent,
    BounceKind,
    Delivery,
    DeliveryStatus,
    Digest,
    DigestItem,
    JobRun,
    Operator,
    OperatorRole,
    Rating,
    SavedPaper,
    Subscriber,
)
from papermail.services import operators
from papermail.web.admin.charts import bar_chart, nice_top
from papermail.web.admin.session import Seal, seal, unseal
from tests.conftest import make_settings
from tests.test_cli import PAPERMAIL, clean_env
from tests.test_web_support import add_confirmed, client_for, csrf_of, seed_papers

PASSWORD = "correct horse battery staple"
REFUSED = "Wrong username or password."
LOCKED = "Too many failed logins"


def add_operator(engine, name: str, role=OperatorRole.admin, *, totp: bool = False) -> Operator:
    with session_scope(engine) as session:
        return operators.create_operator(
            session, username=name, password=PASSWORD, role=role, totp=totp
        )


def login(client: TestClient, username: str, password: str = PASSWORD):
    form = client.get("/admin/login")
    assert form.status_code == 200
    data = {
        "username": username,
        "password": password,
        "csrf": csrf_of(form.text),
        "next": "/admin",
    }
    return client.post("/admin/login", data=data, follow_redirects=False)


def signed_in(settings, engine, name: str, role=OperatorRole.admin) -> TestClient:
    add_operator(engine, name, role)
    client = client_for(settings, engine)
    assert login(client, name).status_code == 303
    return client


def post(client: TestClient, path: str, page: str, **data: str):
    """POST a console form with the CSRF token of `page` (the page it sits on)."""
    csrf = csrf_of(client.get(page).text)
    return client.post(path, data={"csrf": csrf, **data}, follow_redirects=False)


def row(engine, model, ident):
    with Session(engine) as session:
        return session.get(model, ident)


@contextmanager
def ops_console(tmp_path, database_url, **overrides) -> Iterator[tuple[Engine, TestClient]]:
    """The console on settings of its own (`overrides`) over a fresh database holding the
    operator "ops": its engine and a client, for a block."""
    from papermail.db import create_tables, make_engine

    settings = make_settings(tmp_path, database_url=database_url, **overrides)
    engine = make_engine(settings)
    create_tables(engine)
    try:
        add_operator(engine, "ops")
        yield engine, client_for(settings, engine)
    finally:
        engine.dispose()


# --- Accounts from the command line ---------------------------------------------------------


def test_admin_cli_creates_lists_resets_and_deletes_operators(tmp_path, database_url):
    env = clean_env(tmp_path, DATABASE_URL=database_url)

    def papermail(*args: str, stdin: str = "") -> str:
        result = subprocess.run(
            [str(PAPERMAIL), "admin", *args],
            cwd=tmp_path, env=env, input=stdin, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    out = papermail(
        "create-user", "Ops", "--role", "admin", "--totp", "--password-stdin", stdin=PASSWORD
    )
    assert "created operator 'ops' (admin)" in out
    secret = re.search(r"secret: ([A-Z2-7]{32})", out).group(1)  # type: ignore[union-attr]
    assert f"otpauth://totp/papermail:ops?secret={secret}&issuer=papermail" in out
    out = papermail("create-user", "viewer", "--password-stdin", stdin=PASSWORD + "\n")
    assert "created operator 'viewer' (read-only)" in out
    short = subprocess.run(
        [str(PAPERMAIL), "admin", "create-user", "x2", "--password-stdin"],
        cwd=tmp_path, env=env, input="short", capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert short.returncode == 1 and "at least 12 characters" in short.stderr
    listed = papermail("list-users")
    assert "ops\tadmin\tTOTP\tlast login never" in listed
    assert "viewer\tread-only\tpassword only" in listed

    settings = make_settings(tmp_path, database_url=database_url)
    from papermail.db import make_engine

    engine = make_engine(settings)
    try:
        with Session(engine) as session:
            ops = operators.get_operator(session, "ops")
            assert ops is not None and ops.totp_secret == secret
            assert ops.password_hash.startswith("$argon2id$")
            assert PasswordHasher().verify(ops.password_hash, PASSWORD)
            old_hash = ops.password_hash
        assert "new password set for 'ops'" in papermail(
            "reset-password", "ops", "--password-stdin", stdin="another long password\n"
        )
        with Session(engine) as session:
            ops = operators.get_operator(session, "ops")
            assert ops is not None and ops.password_hash != old_hash
            assert PasswordHasher().verify(ops.password_hash, "another long password")
        assert "deleted operator 'viewer'" in papermail("delete-user", "viewer")
        with Session(engine) as session:
            assert [o.username for o in operators.list_operators(session)] == ["ops"]
    finally:
        engine.dispose()


# --- Logging in -----------------------------------------------------------------------------


def test_login_wrong_unknown_right_and_logout(settings, engine):
    add_operator(engine, "ops")
    # An old, cheaper hash is replaced at the next login.
    weak = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1).hash(PASSWORD)
    with session_scope(engine) as session:
        ops = operators.get_operator(session, "ops")
        assert ops is not None
        ops.password_hash = weak
        session.add(ops)
    client = client_for(settings, engine)
    assert client.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"
    wrong = login(client, "ops", "not the password")
    unknown = login(client, "nobody", PASSWORD)
    assert wrong.status_code == unknown.status_code == 401
    assert REFUSED in wrong.text and REFUSED in unknown.text
    assert "pm_admin" not in client.cookies

    right = login(client, "ops")
    assert right.status_code == 303 and right.headers["location"] == "/admin"
    cookie = right.headers["set-cookie"]
    assert cookie.startswith("pm_admin=")
    for attribute in ("HttpOnly", "Path=/admin", "SameSite=strict", "Secure", "Max-Age=43200"):
        assert attribute.lower() in cookie.lower(), cookie
    page = client.get("/admin")
    assert page.status_code == 200 and "Today’s job" in page.text
    assert page.headers["cache-control"] == "no-store"  # no copy in a shared cache
    assert page.headers["x-frame-options"] == "DENY"
    ops = row(engine, Operator, 1)
    assert ops.last_login_at is not None and ops.failed_logins == 0
    assert ops.password_hash != weak and not PasswordHasher().check_needs_rehash(ops.password_hash)

    out = post(client, "/admin/logout", "/admin")
    assert out.status_code == 303 and out.headers["location"] == "/admin/login?n=out"
    assert client.get("/admin", follow_redirects=False).status_code == 303
    # A deep link survives the login.
    back = client.get("/admin/sources", follow_redirects=False)
    assert back.headers["location"] == "/admin/login?next=%2Fadmin%2Fsources"


def test_lockout_after_max_failed_logins_same_for_unknown_users(tmp_path, database_url):
    with ops_console(tmp_path, database_url, admin_max_failed_logins=3) as (engine, client):
        for name in ("ops", "ghost"):
            assert login(client, name, "wrong one").status_code == 401
            assert login(client, name, "wrong two").status_code == 401
            third = login(client, name, "wrong three")
            assert third.status_code == 429 and LOCKED in third.text, name
            locked = login(client, name, PASSWORD)
            assert locked.status_code == 429 and LOCKED in locked.text, name
        assert "pm_admin" not in client.cookies
        ops = row(engine, Operator, 1)
        assert ops.locked_until is not None and ops.locked_until > datetime.now(UTC)
        # The lock ends (here: moved into the past); the right password works again.
        with session_scope(engine) as session:
            ops = session.get(Operator, 1)
            ops.locked_until = datetime.now(UTC) - timedelta(seconds=1)
            session.add(ops)
        assert login(client, "ops").status_code == 303
        assert row(engine, Operator, 1).locked_until is None


def test_totp_is_required_and_checked(settings, engine):
    ops = add_operator(engine, "ops", totp=True)
    client = client_for(settings, engine)
    first = login(client, "ops")
    assert first.status_code == 303
    assert first.headers["location"] == "/admin/login/code?next=%2Fadmin"
    # The password alone opens nothing.
    assert client.get("/admin", follow_redirects=False).headers["location"] == "/admin/login"
    page = client.get("/admin/login/code?next=/admin")
    assert page.status_code == 200 and 'autocomplete="one-time-code"' in page.text
    csrf = csrf_of(page.text)
    totp = pyotp.TOTP(ops.totp_secret)
    wrong = str((int(totp.now()) + 500_000) % 1_000_000).zfill(6)
    refused = client.post("/admin/login/code", data={"csrf": csrf, "code": wrong})
    assert refused.status_code == 401 and "code is not right" in refused.text
    assert row(engine, Operator, ops.id).failed_logins == 1
    used = totp.now()
    done = client.post(
        "/admin/login/code",
        data={"csrf": csrf, "code": used, "next": "/admin"},
        follow_redirects=False,
    )
    assert done.status_code == 303 and done.headers["location"] == "/admin"
    assert client.get("/admin").status_code == 200
    assert row(engine, Operator, ops.id).failed_logins == 0
    # A code works once: replayed (after logging out and in again), it is refused.
    assert post(client, "/admin/logout", "/admin").status_code == 303
    assert login(client, "ops").status_code == 303
    csrf = csrf_of(client.get("/admin/login/code").text)
    replayed = client.post("/admin/login/code", data={"csrf": csrf, "code": used})
    assert replayed.status_code == 401
    assert client.get("/admin", follow_redirects=False).status_code == 303


def test_session_cookie_is_signed_and_expires():
    value = seal("k" * 40, Seal(1, "stamp", "nonce", "in"))
    assert unseal("k" * 40, value, max_age=60) == Seal(1, "stamp", "nonce", "in")
    assert unseal("other-secret-key", value, max_age=60) is None
    assert unseal("k" * 40, value[:-2] + "xx", max_age=60) is None
    import time

    time.sleep(1.1)
    assert unseal("k" * 40, value, max_age=0) is None


def test_csrf_refused_on_login_and_console_forms(settings, engine):
    add_operator(engine, "ops")
    client = client_for(settings, engine)
    client.get("/admin/login")
    forged = client.post(
        "/admin/login", data={"username": "ops", "password": PASSWORD, "csrf": "1.abc"}
    )
    assert forged.status_code == 403 and "pm_admin" not in client.cookies
    assert login(client, "ops").status_code == 303
    ada = add_confirmed(engine, "ada@example.org", "linear attention")
    refused = client.post(
        f"/admin/subscribers/{ada.id}/suspend", data={"csrf": "1.abc"}, follow_redirects=False
    )
    assert refused.status_code == 403
    assert row(engine, Subscriber, ada.id).suspended_at is None
    # A token from another operator's session does not work either.
    other = signed_in(settings, engine, "other")
    token = csrf_of(other.get(f"/admin/subscribers/{ada.id}").text)
    stolen = client.post(f"/admin/subscribers/{ada.id}/suspend", data={"csrf": token})
    assert stolen.status_code == 403
    assert row(engine, Subscriber, ada.id).suspended_at is None


# --- Roles and actions ----------------------------------------------------------------------


def test_read_only_sees_but_cannot_act(settings, engine):
    ada = add_confirmed(engine, "ada@example.org", "linear attention")
    client = signed_in(settings, engine, "viewer", OperatorRole.viewer)
    page = client.get(f"/admin/subscribers/{ada.id}")
    assert page.status_code == 200 and "ada@example.org" in page.text
    assert "Suspend" not in page.text and "read-only" in page.text
    refused = post(client, f"/admin/subscribers/{ada.id}/suspend", f"/admin/subscribers/{ada.id}")
    assert refused.status_code == 403 and "Admins only" in refused.text
    assert row(engine, Subscriber, ada.id).suspended_at is None
    assert client.get("/admin/subscribers.csv").status_code == 403
    assert client.get(f"/admin/subscribers/{ada.id}/delete").status_code == 403
    gone = post(client, f"/admin/subscribers/{ada.id}/delete", f"/admin/subscribers/{ada.id}")
    assert gone.status_code == 403 and row(engine, Subscriber, ada.id) is not None


def test_admin_suspends_resumes_and_deletes(settings, engine):
    ada = add_confirmed(engine, "ada@example.org", "linear attention")
    with session_scope(engine) as session:
        stored = session.get(Subscriber, ada.id)
        stored.hard_bounces, stored.bounce_score, stored.last_bounce_on = 2, 1.5, date.today()
        session.add(stored)
    client = signed_in(settings, engine, "ops")
    here = f"/admin/subscribers/{ada.id}"
    done = post(client, f"{here}/suspend", here)
    assert done.status_code == 303 and done.headers["location"] == f"{here}?n=suspended"
    assert row(engine, Subscriber, ada.id).suspended_at is not None
    page = client.get(done.headers["location"])
    assert "Suspended: no digests are sent" in page.text
    assert "Suspended after bounces since" in page.text  # why no digest today, in its words
    assert "Resume digests" in page.text

    assert post(client, f"{here}/resume", here).status_code == 303
    resumed = row(engine, Subscriber, ada.id)
    assert resumed.suspended_at is None
    assert (resumed.hard_bounces, resumed.bounce_score, resumed.last_bounce_on) == (0, 0.0, None)

    confirm = client.get(f"{here}/delete")
    assert confirm.status_code == 200 and "Delete ada@example.org?" in confirm.text
    deleted = post(client, f"{here}/delete", f"{here}/delete")
    assert deleted.headers["location"] == "/admin/subscribers?n=deleted"
    assert row(engine, Subscriber, ada.id) is None
    assert client.get(here).status_code == 404


def test_csv_export_filters_and_holds_no_link_secrets(settings, engine):
    ada = add_confirmed(engine, "ada@example.org", "linear attention", excluded=("diffusion",))
    add_confirmed(engine, "=cmd@example.org", "state space models")
    add_confirmed(engine, "grace@example.org", "mixture of experts", frequency="paused")
    client = signed_in(settings, engine, "ops")
    response = client.get("/admin/subscribers.csv")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert "attachment" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["email"] for r in rows] == [
        "ada@example.org",
        "'=cmd@example.org",
        "grace@example.org",
    ]
    first = rows[0]
    assert first["state"] == "active" and first["keywords"] == "linear attention; NOT diffusion"
    assert first["interests"] == "linear attention" and first["timezone"] == "UTC"
    assert rows[2]["state"] == "paused"
    secrets = {row(engine, Subscriber, ada.id).link_nonce}
    assert not any(s in response.text for s in secrets)
    assert "nonce" not in response.text and "token" not in response.text

    paused = client.get("/admin/subscribers.csv?state=paused&q=grace")
    assert [r["email"] for r in csv.DictReader(io.StringIO(paused.text))] == ["grace@example.org"]


# --- Every page with data -------------------------------------------------------------------


def seed_console(engine, now: datetime) -> dict[str, int]:
    """A day of pipeline: two subscribers with digests (sent, retrying, bounced), ratings and
    saves, job runs of every stage, and bounce reports."""
    seed_papers(engine, now=now)
    ada = add_confirmed(engine, "ada@example.org", "linear attention")
    bob = add_confirmed(engine, "bob@example.org", "mixture of experts")
    cy = add_confirmed(engine, "cy@example.org", "segmentation")
    yesterday = now - timedelta(days=1)
    with session_scope(engine) as session:
        digests = {}
        for who, day, status, attempts in (
            (ada, now, DeliveryStatus.sent, 1),
            (bob, now, DeliveryStatus.pending, 2),
            (cy, now, DeliveryStatus.bounced, 1),
            (ada, yesterday, DeliveryStatus.sent, 1),
            (bob, yesterday, DeliveryStatus.failed, 3),
        ):
            digest = Digest(
                subscriber_id=who.id, issue_date=day.date(), scanned=8, covered_until=day
            )
            session.add(digest)
            session.flush()
            digests[(who.email, day.date())] = digest.id
            session.add(DigestItem(digest_id=digest.id, paper_id="2611.00000", rank=1, score=0.5))
            session.add(
                Delivery(
                    digest_id=digest.id,
                    message_id=f"<{digest.id}@papermail.test>",
                    status=status,
                    attempts=attempts,
                    last_error="452 mailbox full" if status == DeliveryStatus.pending else
                    "550 5.1.1 no such user" if status == DeliveryStatus.bounced else None,
                    sent_at=day if status == DeliveryStatus.sent else None,
                )
            )  # fmt: skip
        session.add(Rating(subscriber_id=ada.id, paper_id="2611.00000", value=1, created_at=now))
        session.add(Rating(subscriber_id=ada.id, paper_id="2611.00001", value=1, created_at=now))
        session.add(Rating(subscriber_id=bob.id, paper_id="2611.00002", value=-1, created_at=now))
        session.add(SavedPaper(subscriber_id=ada.id, paper_id="2611.00000", created_at=now))
        start = now - timedelta(hours=1)
        for stage, source, ok, counts, error in (
            ("ingest", "hf", True, {"fetched": 8, "new": 8}, None),
            ("ingest", "arxiv:cs.LG", False, {}, "HTTP 503 from export.arxiv.org"),
            ("score", None, True, {"subscribers": 3, "digests": 3}, None),
            ("dispatch", None, True, {"queued": 3}, None),
            ("send", None, True, {"sent": 1, "bounced": 1}, None),
        ):
            session.add(
                JobRun(
                    stage=stage, source=source, started_at=start,
                    finished_at=start + timedelta(seconds=12), ok=ok, counts=counts, error=error,
                )
            )  # fmt: skip
        session.add(
            JobRun(
                stage="ingest", source="hf", started_at=yesterday, finished_at=yesterday, ok=True
            )
        )
        reports = (
            (BounceKind.hard, "dsn", cy),
            (BounceKind.complaint, "arf", ada),
            (BounceKind.soft, "ses", None),
        )
        for i, (kind, source, who) in enumerate(reports):
            session.add(
                BounceEvent(
                    fingerprint=f"{i:064d}", source=source, kind=kind,
                    recipient=who.email if who else "stranger@example.net",
                    subscriber_id=who.id if who else None, status_code="5.1.1",
                    detail=f"report {i}", action="suspended" if who else "ignored",
                    received_at=now - timedelta(minutes=i),
                )
            )  # fmt: skip
    return {"ada": ada.id, "bob": bob.id, "cy": cy.id}


def test_every_page_renders_with_data(settings, engine):
    now = datetime.now(UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    ids = seed_console(engine, now)
    client = signed_in(settings, engine, "viewer", OperatorRole.viewer)

    board = client.get(f"/admin?day={now.date().isoformat()}").text
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", board))
    assert "Papers ingested 8" in text and "Subscribers scored 3" in text
    for state, count in (("Sent", 1), ("Retrying", 1), ("Bounced", 1), ("Failed", 0)):
        assert f"{state} {count}" in text, state
    for stage in ("ingest", "score", "dispatch", "send"):
        assert f">{stage}</th>" in board
    assert "HTTP 503 from export.arxiv.org" in board and "fetched 8, new 8" in board
    assert "550 5.1.1 no such user" in board  # the bounced delivery, with the server's words
    assert board.count('<svg viewBox="0 0 600 180" role="img"') == 4
    assert '<title id="chart-sent-title">Digests sent</title>' in board
    assert "Digests sent, " in board and "2 in all" in board  # the chart's description
    assert "<strong>New subscribers</strong>: 3 in 30 days" in board
    assert (
        f'<th scope="row">{(now - timedelta(days=1)).date().isoformat()}</th><td>1</td><td>1</td>'
        in board
    )

    found = client.get("/admin/subscribers?q=BOB").text
    assert "bob@example.org" in found and "ada@example.org" not in found
    assert "Showing 1–1 of 1 subscriber." in found
    assert "Export CSV" not in found  # read-only
    active = client.get("/admin/subscribers?state=active").text
    assert "Showing 1–3 of 3 subscribers." in active
    assert "No subscriber matches." in client.get("/admin/subscribers?state=suspended").text

    one = client.get(f"/admin/subscribers/{ids['bob']}").text
    assert "mixture of experts" in one
    assert "Delivery retrying: the mail server did not take it yet after 2 attempts" in one
    assert "452 mailbox full" in one and "Less like this</dt><dd>1</dd>" in one
    cy = client.get(f"/admin/subscribers/{ids['cy']}").text
    assert "report 0" in cy and "Bounced: the mail server refused the address" in cy

    bounces = client.get("/admin/bounces").text
    assert bounces.index("report 0") < bounces.index("report 1") < bounces.index("report 2")
    hard = client.get("/admin/bounces?kind=hard").text
    assert "report 0" in hard and "report 1" not in hard
    ses = client.get("/admin/bounces?source=ses").text
    assert "stranger@example.net" in ses and "report 0" not in ses

    feedback = client.get("/admin/feedback").text
    today = now.date().isoformat()
    assert (
        f'<th scope="row">{today}</th><td>1</td><td>2</td><td>1</td><td>1</td>'
        "<td>200.0</td><td>100.0</td><td>100.0</td>" in feedback
    )

    sources = re.sub(r">\s+<", "><", client.get("/admin/sources").text)
    assert "arxiv:cs.LG" in sources and "HTTP 503 from export.arxiv.org" in sources
    hf = sources[sources.index(">hf</th>") :].split("</tr>")[0]
    assert "fetched 8, new 8" in hf and "<td>2</td><td>0</td>" in hf


def test_pages_render_empty(settings, engine):
    client = signed_in(settings, engine, "ops")
    for path, words in (
        ("/admin", "No stage ran on this day (yet)."),
        ("/admin/subscribers", "No subscriber matches."),
        ("/admin/bounces", "No reports yet."),
        ("/admin/feedback", "Feedback per day"),
        ("/admin/sources", "No source has been fetched yet"),
    ):
        page = client.get(path)
        assert page.status_code == 200 and words in page.text, path


def test_chart_scale_and_bars():
    assert [nice_top(n) for n in (0, 1, 2, 3, 7, 10, 11, 120, 4999)] == [
        1, 1, 2, 5, 10, 10, 20, 200, 5000,
    ]  # fmt: skip
    days = [date(2026, 12, 1) + timedelta(days=i) for i in range(3)]
    chart = bar_chart("sent", "Digests sent", list(zip(days, [0, 5, 10], strict=True)))
    assert chart.top == 10 and chart.total == 15
    assert [b.height for b in chart.bars] == [0, 71.0, 142.0]  # 180 - 12 - 26 = 142 px tall
    assert chart.bars[2].y == 12 and chart.bars[0].y == chart.base
    assert (
        chart.description == "Digests sent, 01 Dec to 03 Dec: 15 in all, at most 10 a day (03 Dec)."
    )


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/admin", "/admin\\x"])
def test_login_never_redirects_off_the_console(settings, engine, target):
    add_operator(engine, "ops")
    client = client_for(settings, engine)
    form = client.get("/admin/login")
    data = {"username": "ops", "password": PASSWORD, "csrf": csrf_of(form.text), "next": target}
    done = client.post("/admin/login", data=data, follow_redirects=False)
    assert done.headers["location"] == "/admin"


def test_login_attempts_limited_per_client_ip(tmp_path, database_url):
    with ops_console(tmp_path, database_url, admin_login_limit_per_ip=2) as (engine, client):
        assert login(client, "ops", "wrong").status_code == 401
        assert login(client, "ghost", "wrong").status_code == 401
        refused = login(client, "ops")  # even the right password, from this address
        assert refused.status_code == 429 and "Too many login attempts" in refused.text
        assert "pm_admin" not in client.cookies
        assert row(engine, Operator, 1).failed_logins == 1  # the refused try was not checked


def test_states_filter_like_the_badges_and_pages(engine):
    from papermail.services import roster

    now = datetime.now(UTC)
    made = {}
    for i in range(7):
        made[i] = add_confirmed(engine, f"user{i}@example.org", "attention")
    with session_scope(engine) as session:
        for i, change in (
            (1, {"confirmed": False}),
            (2, {"frequency": "paused"}),
            (3, {"suspended_at": now}),
            (4, {"unsubscribed_at": now, "suspended_at": now}),
            (5, {"snoozed_until": now.date() + timedelta(days=7)}),  # snoozed is still active
        ):
            stored = session.get(Subscriber, made[i].id)
            for name, value in change.items():
                setattr(stored, name, value)
            session.add(stored)
    with Session(engine) as session:
        everyone = session.exec(select(Subscriber)).all()
        by_state = {s.email: roster.state_of(s) for s in everyone}
        for state in roster.State:
            found = roster.search(session, state=state, per_page=100)
            assert {r.subscriber.email for r in found.items} == {
                e for e, s in by_state.items() if s == state
            }, state
        assert by_state["user5@example.org"] == roster.State.active
        counts = roster.state_counts(session)
        assert counts[roster.State.active] == 3 and sum(counts.values()) == 7
        pages = [roster.search(session, query="USER", number=n, per_page=3) for n in (1, 2, 3, 9)]
        assert [len(p.items) for p in pages] == [3, 3, 1, 1]  # page 9 is clamped to the last
        assert pages[3].number == 3 and pages[0].pages == 3 and pages[1].first_item == 4
        seen = [r.subscriber.email for p in pages[:3] for r in p.items]
        assert sorted(seen) == sorted(by_state)
        assert roster.search(session, query="%").total == 0  # LIKE wildcards are literal


def test_hostile_input_gets_an_answer_not_a_500(settings, engine):
    add_operator(engine, "ops")
    client = client_for(settings, engine)  # a server error would raise here
    assert login(client, "ops\x00", PASSWORD).status_code == 401
    assert login(client, "o" * 150, "\x00" * 10).status_code == 401
    assert login(client, "ops").status_code == 303
    for path in (
        "/admin/subscribers?q=%00ada%25_&state=nonsense&page=99999",
        "/admin/subscribers?page=abc",
        "/admin/subscribers/notanumber",
        "/admin/subscribers/999999",
        "/admin/bounces?kind=nonsense&source=%00",
        "/admin?day=2026-02-31",
        "/admin/subscribers.csv?q=%00",
    ):
        assert client.get(path).status_code in (200, 400, 404), path


def test_runs_recorded_by_the_pipeline_show_on_the_console(settings, engine):
    """The rows services.jobs writes (not hand-made ones) on the dashboard and sources page."""
    from papermail.services.jobs import Stage, job_run

    with job_run(engine, Stage.ingest, source="arxiv:cs.CL") as run:
        run.count(fetched=40, inserted=12)
    with pytest.raises(RuntimeError), job_run(engine, Stage.ingest, source="hf"):
        raise RuntimeError("hf answered 502")
    with job_run(engine, Stage.dispatch) as run:
        run.count(queued=0)
    client = signed_in(settings, engine, "viewer", OperatorRole.viewer)
    board = re.sub(r">\s+<", "><", client.get("/admin").text)
    assert '<th scope="row">dispatch</th>' in board and "queued 0" in board
    sources = re.sub(r">\s+<", "><", client.get("/admin/sources").text)
    cl = sources[sources.index(">arxiv:cs.CL</th>") :].split("</tr>")[0]
    assert "fetched 40, inserted 12" in cl and ">ok</span>" in cl
    hf = sources[sources.index(">hf</th>") :].split("</tr>")[0]
    assert "RuntimeError: hf answered 502" in hf and ">error</span>" in hf
    assert "<td>–</td><td>1</td><td>1</td>" in hf  # never succeeded; 1 run, 1 error


def test_a_real_bounce_report_shows_and_the_operator_resumes(settings, engine):
    """A Postfix DSN through the bounce parser and record_reports (not hand-made rows): the
    console lists it, the subscriber page says why mail stopped, an admin resumes them."""
    from papermail.bounces import parse_report, verp_address
    from papermail.services.bounces import record_reports
    from tests.conftest import REPO

    student = add_confirmed(engine, "former.student@uni.example", "linear attention")
    data = (REPO / "tests" / "data" / "bounces" / "postfix_5.1.1.eml").read_bytes()
    secret, domain = settings.secret_key.get_secret_value(), "bounce.papermail.test"
    verp = verp_address(secret, domain, student.id)  # the MTA hands it over as the recipient
    reports = parse_report(data, secret=secret, bounce_domain=domain, envelope_recipients=[verp])
    assert [(r.recipient, r.subscriber_id) for r in reports] == [
        ("former.student@uni.example", student.id)
    ]
    [event] = record_reports(engine, settings, reports)
    assert row(engine, Subscriber, student.id).suspended_at is not None
    client = signed_in(settings, engine, "ops")
    listed = client.get("/admin/bounces?kind=hard&source=dsn").text
    assert "Showing 1–1 of 1 report, newest first." in listed
    assert f'<a href="/admin/subscribers/{student.id}">former.student@uni.example</a>' in listed
    assert event.action in listed and "5.1.1" in listed
    here = f"/admin/subscribers/{student.id}"
    page = client.get(here).text
    assert "Suspended after bounces since" in page and "5.1.1" in page
    assert post(client, f"{here}/resume", here).status_code == 303
    back = row(engine, Subscriber, student.id)
    assert back.suspended_at is None and back.bounce_score == 0 and back.hard_bounces == 0
