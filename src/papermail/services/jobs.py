"""Record each run of a pipeline stage as a `JobRun` row: the console's "when did it run, what
did it do" and `papermail doctor`'s "is beat alive" read them.

A run costs two statements in their own short transactions, apart from the work's: an INSERT
when it starts (so a run that never finishes shows as started, not missing) and an UPDATE when
it ends. Recording must never stop the pipeline: a failure to record is logged and the work
goes on.

    with job_run(engine, Stage.ingest, source="hf") as run:
        report = ...
        run.count(inserted=report.inserted)
        if report.error:
            run.fail(report.error)
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from papermail.models import JobRun, utcnow

log = logging.getLogger(__name__)

ERROR_CHARS = 2000


class Stage(StrEnum):
    ingest = "ingest"  # one source (`source` holds its spec)
    score = "score"  # one scoring call (a dispatcher batch, run-daily, a welcome digest)
    dispatch = "dispatch"  # one beat `send_due` tick
    send = "send"  # one send_digests chunk


@dataclass
class Run:
    """The run in progress: what it counted and, if it failed, why."""

    id: int | None
    counts: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def count(self, **values: Any) -> None:
        self.counts.update(values)

    def fail(self, error: str) -> None:
        self.error = error[:ERROR_CHARS]


def _start(engine: Engine, stage: Stage, source: str | None) -> int | None:
    table = JobRun.__table__  # type: ignore[attr-defined]
    values = {"stage": str(stage), "source": source, "started_at": utcnow(), "counts": {}}
    try:
        with engine.begin() as connection:
            return connection.execute(insert(table).values(values).returning(table.c.id)).scalar()
    except SQLAlchemyError as exc:
        log.warning("could not record the start of a %s run: %s", stage, exc)
        return None


def _finish(engine: Engine, run: Run) -> None:
    if run.id is None:
        return
    table = JobRun.__table__  # type: ignore[attr-defined]
    values = {
        "finished_at": utcnow(),
        "ok": run.error is None,
        "counts": run.counts,
        "error": run.error,
    }
    try:
        with engine.begin() as connection:
            connection.execute(update(table).where(table.c.id == run.id).values(values))
    except SQLAlchemyError as exc:
        log.warning("could not record the end of job run %s: %s", run.id, exc)


@contextmanager
def job_run(engine: Engine, stage: Stage, *, source: str | None = None) -> Iterator[Run]:
    """Record one run of `stage`; an exception escaping the block is its error (and goes on)."""
    run = Run(id=_start(engine, stage, source))
    try:
        yield run
    except BaseException as exc:
        run.fail(run.error or f"{type(exc).__name__}: {exc}")
        _finish(engine, run)
        raise
    _finish(engine, run)
