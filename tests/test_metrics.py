"""Prometheus metrics: GET /metrics after a real delivery through a real SMTP server (one recipient
refused at RCPT), the queue depth read from a private Redis at scrape time, the bearer token,
and a real prefork Celery worker whose pool processes' counts its own endpoint adds up."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families
from sqlmodel import Session, select

from papermail.db import create_tables, make_engine
from papermail.models import JobRun
from papermail.services import delivery, digests
from papermail.services.ingest import ingest_sources
from tests.conftest import CollectingHandler, SMTPServer, free_port, make_settings, running_smtp
from tests.test_celery_worker import running_worker, smtp_worker_settings
from tests.test_web_support import add_confirmed, client_for, seed_papers

NOW = datetime.now(UTC).replace(microsecond=0)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


class RefusingHandler(CollectingHandler):
    """Accepts mail, but refuses one mailbox at RCPT as a real server does for a user it lacks."""

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options) -> str:
        if address.startswith("bob@"):
            return "550 5.1.1 <bob@example.org>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"


@pytest.fixture
def refusing_smtp() -> Iterator[SMTPServer]:
    with running_smtp(RefusingHandler()) as server:
        yield server


@pytest.fixture
def smtp_settings(tmp_path, database_url, refusing_smtp, redis_url):
    return make_settings(
        tmp_path,
        database_url=database_url,
        redis_url=redis_url,
        mail_backend="smtp",
        smtp_host=refusing_smtp.host,
        smtp_port=refusing_smtp.port,
    )


@pytest.fixture
def smtp_engine(smtp_settings):
    engine = make_engine(smtp_settings)
    create_tables(engine)
    yield engine
    engine.dispose()


QUEUE_KEYS = ("celery", "celery\x06\x163")


def test_scrape_after_a_real_delivery(smtp_settings, smtp_engine, refusing_smtp, seeds_dir):
    settings, engine = smtp_settings, smtp_engine
    seed_papers(engine, now=NOW)
    ada = add_confirmed(engine, "ada@example.org", "linear attention")
    bob = add_confirmed(engine, "bob@example.org", "linear attention")
    queue = redis.Redis.from_url(settings.redis_url)
    queue.delete(*QUEUE_KEYS)
    with client_for(settings, engine) as client:
        before = parse(client.get("/metrics").text)

        ingest_sources(engine, settings, [str(seeds_dir / "daily-papers-2.txt")], now=NOW)
        stored = digests.score_day(
            engine, settings, issue_date=NOW.date(), subscriber_ids=[ada.id, bob.id]
        )
        assert len(stored.to_send) == 2
        report = delivery.send_digests(engine, settings, stored.to_send)
        assert (report.sent, report.bounced) == (1, 1)
        assert [m.rcpt_tos for m in refusing_smtp.messages] == [["ada@example.org"]]
        queue.rpush("celery", b"task-1", b"task-2", b"task-3")
        queue.rpush("celery\x06\x163", b"task-4")
        try:
            response = client.get("/metrics")
        finally:
            queue.delete(*QUEUE_KEYS)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=")
    after = parse(response.text)

    def moved(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert moved("papermail_digests_sent_total") == 1
    assert moved("papermail_digests_bounced_total", reason="550") == 1
    assert moved("papermail_digests_failed_total") == 0
    assert moved("papermail_send_seconds_count") == 1  # the accepted message's time
    assert moved("papermail_send_seconds_sum") > 0
    assert moved("papermail_scoring_seconds_count") == 1
    assert moved("papermail_subscribers_scored_total") == 2
    inserted = moved("papermail_ingest_papers_total", source="file", outcome="inserted")
    with Session(engine) as session:
        (ingest,) = session.exec(select(JobRun).where(JobRun.stage == "ingest"))
    assert inserted == ingest.counts["inserted"] > 0
    assert value(after, "papermail_queue_depth", queue="celery") == 4
    assert value(after, "papermail_redis_up") == 1


def test_metrics_token_and_redis_down(tmp_path, database_url):
    settings = make_settings(
        tmp_path,
        database_url=database_url,
        metrics_token="scrape-token-0123456789",
        redis_url=f"redis://127.0.0.1:{free_port()}/0",  # nothing listens there
    )
    engine = make_engine(settings)
    create_tables(engine)
    try:
        with client_for(settings, engine) as client:
            for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic x"}):
                response = client.get("/metrics", headers=headers)
                assert response.status_code == 401
                assert response.headers["WWW-Authenticate"].startswith("Bearer")
                assert "papermail_" not in response.text
            good = {"Authorization": "Bearer scrape-token-0123456789"}
            response = client.get("/metrics", headers=good)
    finally:
        engine.dispose()
    assert response.status_code == 200
    samples = parse(response.text)
    assert value(samples, "papermail_redis_up") == 0  # the scrape still answers
    assert ("papermail_digests_sent_total", ()) in samples


def test_prefork_worker_serves_its_pool_processes_counts(
    tmp_path, redis_url, smtp_server, seeds_dir
):
    from workers import tasks

    metrics_dir = tmp_path / "prometheus"
    metrics_dir.mkdir()
    port = free_port()
    settings = smtp_worker_settings(
        tmp_path,
        redis_url,
        smtp_server,
        worker_metrics_port=port,
        prometheus_multiproc_dir=str(metrics_dir),
    )
    engine = make_engine(settings)
    create_tables(engine)
    seed_papers(engine, now=NOW)
    ada = add_confirmed(engine, "ada@example.org", "linear attention")
    grace = add_confirmed(engine, "grace@example.org", "mixture of experts")
    stored = digests.score_day(
        engine, settings, issue_date=NOW.date(), subscriber_ids=[ada.id, grace.id]
    )
    assert len(stored.to_send) == 2
    with running_worker(settings, tmp_path, concurrency=2):
        for digest_id in stored.to_send:  # two tasks: the pool may run them in two processes
            tasks.send_digests.delay([digest_id]).get(timeout=60)
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
    engine.dispose()
    assert response.status_code == 200
    samples = parse(response.text)
    assert value(samples, "papermail_digests_sent_total") == 2
    assert value(samples, "papermail_send_seconds_count") == 2
    assert ("papermail_queue_depth", (("queue", "celery"),)) in samples
    assert len(smtp_server.messages) == 2
    assert list(metrics_dir.glob("counter_*.db"))  # the pool processes wrote their counts there


def test_a_worker_start_drops_value_files_of_an_earlier_run(tmp_path):
    """prometheus_client wants the multiprocess directory empty at start: files of processes of
    an earlier run would be added to this run's counts. This process's own files stay."""
    import os

    from papermail.metrics import clear_multiprocess_dir

    folder = tmp_path / "prometheus"
    settings = make_settings(tmp_path, prometheus_multiproc_dir=str(folder))
    clear_multiprocess_dir(settings)  # creates it
    earlier = [folder / "counter_4242.db", folder / "histogram_4243.db"]
    mine = folder / f"counter_{os.getpid()}.db"
    for path in [*earlier, mine]:
        path.write_bytes(b"\0" * 8)
    (folder / "notes.txt").write_text("not ours")
    clear_multiprocess_dir(settings)
    assert sorted(p.name for p in folder.iterdir()) == sorted([mine.name, "notes.txt"])
