"""Job runs (`JobRun`): the real ingest, dispatcher tick, scoring and sending each leave their
rows, a failing source or relay says so, and a run costs one INSERT and one UPDATE; on SQLite
and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy import event
from sqlmodel import Session, col, select

from papermail.db import session_scope
from papermail.models import JobRun
from papermail.services.ingest import ingest_sources
from papermail.services.jobs import Stage, job_run
from papermail.services.subscriptions import Preferences, add_subscriber
from tests.conftest import free_port, make_settings
from tests.test_schedule import add_three_zones, in_process_tasks

NOW = datetime(2026, 11, 23, tzinfo=UTC)
SLOT = "2026-11-23T09:00:00+00:00"  # 09:00 UTC, 18:00 in Tokyo, 04:00 in New York


def runs(engine, stage: str | None = None) -> list[JobRun]:
    with Session(engine) as session:
        query = select(JobRun).order_by(col(JobRun.id))
        if stage is not None:
            query = query.where(JobRun.stage == stage)
        return list(session.exec(query))


def test_ingest_records_one_run_per_source_and_a_failing_one(engine, settings, seeds_dir, tmp_path):
    missing = tmp_path / "no-such-page.txt"
    page = seeds_dir / "daily-papers-1.txt"
    reports = ingest_sources(engine, settings, [str(page), str(missing), str(seeds_dir)], now=NOW)

    rows = runs(engine)
    assert [(r.stage, r.source) for r in rows] == [
        ("ingest", str(page)),
        ("ingest", str(missing)),
        ("ingest", str(seeds_dir)),
    ]
    first, failed, folder = rows
    assert first.ok is True and first.error is None
    assert first.counts["inserted"] == reports[0].inserted > 0
    assert first.counts["parsed"] == reports[0].parsed
    assert failed.ok is False
    assert failed.error and str(missing) in failed.error
    assert failed.counts["inserted"] == 0
    # The folder is one source: its files' counts add up, and the page seen before is unchanged.
    assert folder.ok is True
    assert folder.counts["unchanged"] >= first.counts["inserted"]
    assert folder.counts["parsed"] == sum(r.parsed for r in reports[2:])
    for row in rows:
        assert row.finished_at is not None and row.started_at <= row.finished_at


def test_dispatch_tick_records_dispatch_score_and_send(engine, settings, seeds_dir):
    from workers import tasks

    ingest_sources(engine, settings, [str(seeds_dir / "daily-papers-1.txt")], now=NOW)
    add_three_zones(engine)
    with in_process_tasks(settings):
        first = tasks.send_due.apply(kwargs={"now": SLOT}).get()
        second = tasks.send_due.apply(kwargs={"now": SLOT}).get()
    assert (first["due"], second["due"]) == (2, 0)

    dispatch = runs(engine, "dispatch")
    assert [(r.ok, r.counts["due"]) for r in dispatch] == [(True, 2), (True, 0)]
    assert dispatch[0].counts["batches"] == 1
    score = runs(engine, "score")
    assert len(score) == 1 and score[0].ok is True
    assert score[0].counts["to_send"] == 2
    assert score[0].counts["issue_date"] == "2026-11-23"
    send = runs(engine, "send")
    assert send and all(r.ok for r in send)
    assert sum(r.counts["sent"] for r in send) == 2
    assert len(list(settings.resolved_outbox_dir.glob("*.eml"))) == 2
    # Each stage ran after the one that fed it.
    assert dispatch[0].started_at <= score[0].started_at <= send[0].started_at


def test_a_send_chunk_whose_relay_is_down_records_the_failure(engine, tmp_path, database_url):
    from papermail.services import delivery, digests

    down = make_settings(
        tmp_path, database_url=database_url, mail_backend="smtp", smtp_port=free_port()
    )
    with session_scope(engine) as session:
        subscriber = add_subscriber(
            session,
            email="ada@example.org",
            prefs=Preferences(keywords=("attention",)),
            confirmed=True,
        )
    down = down.model_copy(update={"send_empty_digests": True, "smtp_timeout": 2.0})
    stored = digests.score_day(engine, down, issue_date=NOW.date(), subscriber_ids=[subscriber.id])
    assert len(stored.to_send) == 1
    report = delivery.send_digests(engine, down, stored.to_send)
    assert report.sent == 0 and report.retry_ids == stored.to_send

    (send,) = runs(engine, "send")
    assert send.ok is False
    assert send.error and "Connection refused" in send.error
    assert send.counts["retry"] == 1 and send.counts["sent"] == 0


def test_an_exception_is_the_runs_error_and_a_run_costs_two_statements(engine):
    statements: list[str] = []

    def seen(conn, cursor, statement, *args) -> None:
        statements.append(statement.split()[0].upper())

    event.listen(engine, "before_cursor_execute", seen)
    try:
        with job_run(engine, Stage.ingest, source="hf") as run:
            run.count(inserted=3)
        with pytest.raises(RuntimeError), job_run(engine, Stage.score):
            raise RuntimeError("the ranking blew up")
    finally:
        event.remove(engine, "before_cursor_execute", seen)
    assert statements == ["INSERT", "UPDATE", "INSERT", "UPDATE"]

    ok, broken = runs(engine)
    assert (ok.stage, ok.source, ok.ok, ok.counts, ok.error) == (
        "ingest",
        "hf",
        True,
        {"inserted": 3},
        None,
    )
    assert (broken.stage, broken.ok) == ("score", False)
    assert broken.error == "RuntimeError: the ranking blew up"
    assert broken.finished_at is not None
