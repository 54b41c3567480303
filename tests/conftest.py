"""Shared fixtures: real services (SMTP, Redis, PostgreSQL), never mocks of them.

A service that cannot be had fails the test that needs it with a clear message; nothing skips.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from threading import Lock

import pytest
import redis
import sqlalchemy
from aiosmtpd.controller import Controller

from papermail.settings import Settings

REPO = Path(__file__).resolve().parents[1]


def free_port() -> int:
    """aiosmtpd and redis-server want a concrete port: ask the kernel for a free one."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def seeds_dir() -> Path:
    """The sample daily-papers pages shipped in the package (the demo's): tests need nothing
    outside this repository."""
    from papermail.settings import default_samples_dir

    samples = default_samples_dir()
    if not sorted(samples.glob("daily-papers-*.txt")):
        pytest.fail(f"sample pages missing from the package at {samples}")
    return samples


@dataclass
class ReceivedMail:
    mail_from: str
    rcpt_tos: list[str]
    data: bytes

    @property
    def message(self) -> EmailMessage:
        return message_from_bytes(self.data, policy=policy.default)  # type: ignore[return-value]


@dataclass
class CollectingHandler:
    """An aiosmtpd handler that keeps every message it accepts."""

    messages: list[ReceivedMail] = field(default_factory=list)
    lock: Lock = field(default_factory=Lock)

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.messages.append(
                ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), envelope.content)
            )
        return "250 Message accepted for delivery"


@dataclass
class SMTPServer:
    host: str
    port: int
    handler: CollectingHandler

    @property
    def messages(self) -> list[ReceivedMail]:
        with self.handler.lock:
            return list(self.handler.messages)


@contextmanager
def running_smtp(handler: CollectingHandler) -> Iterator[SMTPServer]:
    """A real SMTP server (aiosmtpd) on a free local port with `handler`, for a block."""
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield SMTPServer("127.0.0.1", port, handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[SMTPServer]:
    """A real SMTP server (aiosmtpd) on a free local port, collecting what it receives."""
    with running_smtp(CollectingHandler()) as server:
        yield server


# --- Redis, PostgreSQL and papermail settings over them -------------------------------------

PG_URL = os.environ.get("PAPERMAIL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory) -> Iterator[str]:
    """A private redis-server on a free port; REDIS_URL is used only when there is no binary."""
    binary = shutil.which("redis-server")
    if binary is None:
        url = os.environ.get("REDIS_URL")
        if not url:
            pytest.fail(
                "needs Redis: install redis-server (apt-get install redis-server) or set REDIS_URL"
            )
        try:
            redis.Redis.from_url(url).ping()
        except redis.RedisError as exc:
            pytest.fail(f"REDIS_URL={url} does not answer: {exc}")
        yield url
        return
    port = free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [
            binary,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(workdir),
            "--daemonize",
            "no",
            "--loglevel",
            "warning",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    url = f"redis://127.0.0.1:{port}/0"
    client = redis.Redis.from_url(url)
    deadline = time.monotonic() + 10
    while True:
        try:
            client.ping()
            break
        except redis.ConnectionError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"private redis-server on port {port} did not start")
            time.sleep(0.05)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.fixture(scope="session")
def pg_engine() -> Iterator[sqlalchemy.Engine]:
    engine = sqlalchemy.create_engine(PG_URL, isolation_level="AUTOCOMMIT")
    try:
        with engine.connect() as conn:
            conn.execute(sqlalchemy.text("select 1"))
    except sqlalchemy.exc.OperationalError as exc:
        pytest.fail(f"needs PostgreSQL at {PG_URL} (set PAPERMAIL_TEST_PG): {exc.orig}")
    yield engine
    engine.dispose()


@pytest.fixture
def pg_database_url(pg_engine) -> Iterator[str]:
    """A fresh schema per test, reached through search_path, dropped afterwards."""
    schema = f"pm_{uuid.uuid4().hex[:12]}"
    with pg_engine.connect() as conn:
        conn.execute(sqlalchemy.text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{PG_URL}?options=-csearch_path%3D{schema}"
    finally:
        with pg_engine.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP SCHEMA "{schema}" CASCADE'))


def make_settings(tmp_path: Path, **overrides) -> Settings:
    """Settings for a test: everything under tmp_path, nothing read from the environment."""
    values = {
        "var_dir": tmp_path / "var",
        "database_url": "",
        "redis_url": "",
        "mail_backend": "outbox",
        "secret_key": "test-secret-key",
        "base_url": "https://papermail.test",
        "lookback_days": 7,
    }
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request, tmp_path) -> str:
    """Each test using this runs on SQLite and on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'papermail.db'}"
    return request.getfixturevalue("pg_database_url")


@pytest.fixture
def settings(tmp_path, database_url) -> Settings:
    return make_settings(tmp_path, database_url=database_url)


@pytest.fixture
def engine(settings) -> Iterator[sqlalchemy.Engine]:
    from papermail.db import create_tables, make_engine

    engine = make_engine(settings)
    create_tables(engine)
    yield engine
    engine.dispose()
