"""A real Celery worker process on a real Redis broker runs the daily job end to end."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
import redis
from pydantic import SecretStr
from sqlmodel import Session, select

from papermail.db import create_tables, make_engine, session_scope
from papermail.models import Delivery, DeliveryStatus
from papermail.services.subscriptions import Preferences, add_subscriber
from papermail.settings import Settings
from tests.conftest import make_settings

CELERY = Path(sys.executable).with_name("celery")
SUBSCRIBERS = {
    "ada@example.org": ("linear attention",),
    "grace@example.org": ("mixture of experts", "language models"),
    "alan@example.org": ("medical image segmentation",),
    "kay@example.org": ("sparse autoencoders", "interpretability"),
}
SETTING_NAMES = {name.upper() for name in Settings.model_fields}


def settings_env(settings: Settings) -> dict[str, str]:
    """The environment under which a worker subprocess builds exactly these settings."""
    env = {k: v for k, v in os.environ.items() if k.upper() not in SETTING_NAMES}
    for name in Settings.model_fields:
        value = getattr(settings, name)
        if value is None:
            continue
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        elif isinstance(value, list):
            value = json.dumps(value)
        env[name.upper()] = str(value)
    return env


@dataclass
class WorkerProcess:
    """`celery -A workers.app worker` in its own process group, so a kill takes its pool too."""

    proc: subprocess.Popen
    hostname: str
    log_path: Path

    def kill(self) -> None:
        """SIGKILL the worker and its pool processes at once, as a crashed host would."""
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=30)

    def freeze(self, frozen: bool = True) -> None:
        """SIGSTOP (or SIGCONT) the worker and its pool: a still picture of its state."""
        os.killpg(self.proc.pid, signal.SIGSTOP if frozen else signal.SIGCONT)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_worker(
    settings: Settings, workdir: Path, *, name: str = "worker", concurrency: int = 2
) -> WorkerProcess:
    """Start a worker with `settings` (passed through the environment, as in production) and
    wait until it answers a ping; the test process's Celery app is pointed at them too."""
    from workers.app import celery_app, configure

    configure(celery_app, settings)
    node = f"{name}-{os.getpid()}"
    log_path = workdir / f"{name}.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                str(CELERY),
                "-A",
                "workers.app",
                "worker",
                "--loglevel=INFO",
                f"--concurrency={concurrency}",
                "--hostname",
                f"{node}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
            cwd=workdir,
            env=settings_env(settings),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    worker = WorkerProcess(proc, f"{node}@{socket.gethostname()}", log_path)
    deadline = time.monotonic() + 60
    while not celery_app.control.ping(destination=[worker.hostname], timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                worker.kill()
            pytest.fail(f"celery worker did not start:\n{worker.log()}")
    return worker


@contextmanager
def running_worker(settings: Settings, workdir: Path, **kwargs) -> Iterator[WorkerProcess]:
    """A worker for the length of a block; the test's Celery app goes back to in-process."""
    from workers.app import celery_app, configure

    redis.Redis.from_url(settings.redis_url).flushdb()  # no tasks left over from other tests
    worker = start_worker(settings, workdir, **kwargs)
    try:
        yield worker
    finally:
        worker.stop()
        configure(celery_app, make_settings(workdir))


def smtp_worker_settings(tmp_path, redis_url, smtp_server, **overrides) -> Settings:
    """Settings for a real worker: SQLite in tmp_path, the private Redis, mail to smtp_server."""
    return make_settings(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'papermail.db'}",
        redis_url=redis_url,
        mail_backend="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        **overrides,
    )


@pytest.fixture
def worker_settings(tmp_path, redis_url, smtp_server):
    return smtp_worker_settings(tmp_path, redis_url, smtp_server)


@pytest.fixture
def celery_worker(worker_settings, tmp_path):
    """`celery -A workers.app worker` as a subprocess, exactly as in production."""
    with running_worker(worker_settings, tmp_path) as worker:
        yield worker.proc


def test_worker_runs_daily_pipeline_each_subscriber_gets_one_digest(
    worker_settings, celery_worker, smtp_server, seeds_dir
):
    from workers import tasks

    engine = make_engine(worker_settings)
    create_tables(engine)
    with session_scope(engine) as session:
        for email, keywords in SUBSCRIBERS.items():
            add_subscriber(
                session, email=email, prefs=Preferences(keywords=keywords), confirmed=True
            )

    tasks.daily_pipeline.delay("2026-11-23", [str(seeds_dir)]).get(timeout=60)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        with Session(engine) as session:
            statuses = [d.status for d in session.exec(select(Delivery))]
        if len(statuses) == len(SUBSCRIBERS) and set(statuses) == {DeliveryStatus.sent}:
            break
        time.sleep(0.3)
    else:
        pytest.fail(f"deliveries not all sent: {statuses}")
    # Run the whole pipeline again for the same day: nothing is sent twice.
    tasks.daily_pipeline.delay("2026-11-23", [str(seeds_dir)]).get(timeout=60)
    time.sleep(3)
    received = Counter(m.rcpt_tos[0] for m in smtp_server.messages)
    assert received == Counter({email: 1 for email in SUBSCRIBERS})
    for mail in smtp_server.messages:
        assert mail.message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
