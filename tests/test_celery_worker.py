"""A real Celery worker process on a real Redis broker runs the daily job end to end."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlmodel import Session, select

from papermail.db import create_tables, make_engine, session_scope
from papermail.models import Delivery, DeliveryStatus
from papermail.services.subscriptions import Preferences, add_subscriber
from tests.conftest import make_settings

CELERY = Path(sys.executable).with_name("celery")
SUBSCRIBERS = {
    "ada@example.org": ("linear attention",),
    "grace@example.org": ("mixture of experts", "language models"),
    "alan@example.org": ("medical image segmentation",),
    "kay@example.org": ("sparse autoencoders", "interpretability"),
}


def settings_env(settings) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "REDIS", "DATABASE"))}
    env.update(
        DATABASE_URL=settings.database_url,
        REDIS_URL=settings.redis_url,
        MAIL_BACKEND=settings.mail_backend,
        SMTP_HOST=settings.smtp_host,
        SMTP_PORT=str(settings.smtp_port),
        SECRET_KEY=settings.secret_key.get_secret_value(),
        BASE_URL=settings.base_url,
        VAR_DIR=str(settings.var_dir),
    )
    return env


@pytest.fixture
def worker_settings(tmp_path, redis_url, smtp_server):
    return make_settings(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'papermail.db'}",
        redis_url=redis_url,
        mail_backend="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
    )


@pytest.fixture
def celery_worker(worker_settings, tmp_path):
    """`celery -A workers.app worker` as a subprocess, exactly as in production."""
    log = (tmp_path / "worker.log").open("w")
    proc = subprocess.Popen(
        [
            str(CELERY),
            "-A",
            "workers.app",
            "worker",
            "--loglevel=INFO",
            "--concurrency=2",
            "--hostname",
            f"test-{os.getpid()}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=tmp_path,
        env=settings_env(worker_settings),
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    from workers.app import celery_app, configure

    configure(celery_app, worker_settings)
    deadline = time.monotonic() + 60
    while not celery_app.control.ping(timeout=0.5):
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail("celery worker did not start:\n" + (tmp_path / "worker.log").read_text())
    try:
        yield proc
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        configure(celery_app, make_settings(tmp_path))  # back to in-process tasks


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
