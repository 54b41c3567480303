"""Helpers shared by the bounce tests: the samples, subscribers, a CLI environment."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, time
from pathlib import Path

from sqlmodel import Session

from papermail.bounces import parse_report
from papermail.db import session_scope
from papermail.models import Delivery, Digest, Subscriber
from papermail.services.subscriptions import Preferences, add_subscriber
from papermail.settings import Settings

SAMPLES = Path(__file__).parent / "data" / "bounces"
DOMAIN = "bounce.papermail.test"
SECRET = "test-secret-key"  # conftest's make_settings; the samples' VERP tokens use it
PAPERMAIL = Path(sys.executable).with_name("papermail")


def sample_bytes(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def subscribe(engine, *emails: str) -> list[int]:
    with session_scope(engine) as session:
        rows = [
            add_subscriber(session, email=e, prefs=Preferences(keywords=("llm",)), confirmed=True)
            for e in emails
        ]
        session.flush()
        return [row.id for row in rows]


def sent_digest(engine, subscriber_id: int, sample: str, day: date = date(2026, 12, 1)) -> int:
    """A digest we sent to the subscriber under the Message-ID that `sample` quotes: what a
    report without a VERP token must name to be believed."""
    original = parse_report(sample_bytes(sample), secret=SECRET)[0].message_id
    assert original, sample
    with session_scope(engine) as session:
        digest = Digest(
            subscriber_id=subscriber_id,
            issue_date=day,
            covered_until=datetime.combine(day, time(6), UTC),
        )
        session.add(digest)
        session.flush()
        session.add(Delivery(digest_id=digest.id, message_id=original, status="sent"))
        return digest.id


def subscriber(engine, subscriber_id: int) -> Subscriber:
    with Session(engine) as session:
        return session.get(Subscriber, subscriber_id)


def cli_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The test's settings for a `papermail` subprocess; nothing of the caller's own."""
    names = {name.upper() for name in Settings.model_fields}
    env = {k: v for k, v in os.environ.items() if k not in names}
    env.update(
        VAR_DIR=str(settings.var_dir),
        DATABASE_URL=settings.database_url,
        SECRET_KEY=settings.secret_key.get_secret_value(),
        BOUNCE_DOMAIN=DOMAIN,
        MAIL_BACKEND="outbox",
        **extra,
    )
    return env


def papermail(
    args: list[str], env: dict[str, str], cwd: Path, stdin: bytes | None = None
) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(
        [str(PAPERMAIL), *args],
        input=stdin,
        env=env,
        cwd=cwd,
        capture_output=True,
        timeout=120,
    )
    return subprocess.CompletedProcess(
        result.args, result.returncode, result.stdout.decode(), result.stderr.decode()
    )
