"""The day's job end to end, through the code beat runs, on real services:
``python -m bench.e2e [--subscribers 10000] [--workers N] [--database postgres|sqlite] [--json]``.

It starts a private redis-server, a private PostgreSQL database (dropped afterwards; or a SQLite
file), an aiosmtpd server that counts messages by Message-ID (``bench.smtp_sink``) and
``celery -A workers.app worker --concurrency=N`` with its settings in the environment, as
production does. It seeds N subscribers whose keywords are phrases of
real paper titles (``bench.world``), then runs beat's two jobs through the worker: ``ingest_daily``
(the sample pages) and ``send_due`` (the dispatcher: scoring batches, stored digests, send
chunks), and waits until every stored digest's mail has arrived.

Where the time goes comes from three places: the stages' wall times seen from here, the task
run times the worker logs (per task name), and CPU seconds per process (/proc) for the worker
and its pool, the sink, Redis and PostgreSQL. Extrapolation to more subscribers is linear per
stage (ingest does not grow with subscribers; the rest is proportional to them), which holds
while one stage's work per subscriber stays flat: scoring batches are SCORE_BATCH_SIZE each
and send chunks SEND_CHUNK_SIZE each, so it does, up to the database growing its indexes.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Protocol

import redis
import sqlalchemy
from celery.result import AsyncResult
from rich.console import Console
from rich.table import Table
from sqlalchemy import func, insert
from sqlmodel import Session, col, select

from bench.__main__ import machine
from bench.smtp_sink import Sink, free_port
from bench.world import build_world, sample_files
from papermail.db import create_tables, make_engine
from papermail.models import Delivery, DeliveryStatus, Digest, Interest, Subscriber, utcnow
from papermail.settings import Settings
from papermail.sources.detect import read_path

PG_URL = os.environ.get("PAPERMAIL_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/test")
CELERY = Path(sys.executable).with_name("celery")
SCALES = (100_000, 1_000_000)
_TASK_DONE = re.compile(r"Task (workers\.tasks\.\w+)\[[^\]]+\] succeeded in ([0-9.]+)s")
_CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Options:
    subscribers: int = 10_000
    workers: int = os.cpu_count() or 2
    database: str = "postgres"  # or "sqlite"
    seed: int = 20261123
    timeout: float = 600.0  # for the whole run to deliver everything


class MailSink(Protocol):
    """A real SMTP server that can say how many copies of each Message-ID it received."""

    host: str
    port: int

    def distinct(self) -> int:
        """How many different Message-IDs arrived so far (cheap: polled)."""
        ...

    def message_ids(self) -> Counter[str]: ...


@dataclass
class Services:
    redis_url: str
    database_url: str
    mail: MailSink
    redis_pid: int | None = None  # for its CPU, when this run started it
    sink_pid: int | None = None


@dataclass
class Stage:
    name: str
    seconds: float
    items: int
    unit: str
    grows: bool = True  # with the number of subscribers
    note: str = ""

    @property
    def per_item(self) -> float:
        return self.seconds / self.items if self.items else 0.0

    def at(self, subscribers: int, measured: int) -> float:
        """Linear extrapolation to `subscribers` from a run with `measured` of them."""
        return self.seconds * subscribers / measured if self.grows else self.seconds


@dataclass
class Result:
    options: Options
    machine: str
    papers: int = 0
    expected: int = 0  # stored digests with a delivery: the mail that must arrive
    received: int = 0
    duplicates: int = 0  # copies beyond the first of a Message-ID
    missing: int = 0
    unexpected: int = 0  # Message-IDs no delivery has
    total: float = 0.0
    stages: list[Stage] = field(default_factory=list)
    tasks: dict[str, dict[str, float]] = field(default_factory=dict)  # name -> count, seconds
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds in the run
    timeline: dict[str, float] = field(default_factory=dict)  # event -> seconds after start
    extrapolated: dict[int, float] = field(default_factory=dict)
    bottleneck: str = ""

    @property
    def ok(self) -> bool:
        return self.received >= self.expected and not (self.duplicates or self.missing)


# --- processes and their CPU ------------------------------------------------------------------


def _stat_fields(pid: str) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return text.rsplit(")", 1)[1].split()  # after "pid (comm)": state, ppid, pgrp, ...


def _cpu(fields: list[str]) -> float:
    """utime + stime + the same of waited-for children, in seconds."""
    return sum(int(v) for v in fields[11:15]) / _CLOCK_TICKS


def group_cpu(pgid: int) -> float:
    """CPU seconds of every live process in a process group (a worker and its pool)."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        fields = _stat_fields(pid)
        if fields and int(fields[2]) == pgid:
            total += _cpu(fields)
    return total


def process_cpu(pid: int | None) -> float:
    fields = _stat_fields(str(pid)) if pid else None
    return _cpu(fields) if fields else 0.0


def named_cpu(name: str) -> float:
    """CPU seconds of every process called `name` (all PostgreSQL backends, for one)."""
    total = 0.0
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            comm = Path(f"/proc/{pid}/comm").read_text().strip()
        except OSError:
            continue
        fields = _stat_fields(pid) if comm == name else None
        total += _cpu(fields) if fields else 0.0
    return total


def machine_busy() -> float:
    """CPU seconds all cores spent not idle since boot (other users of the machine too)."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(values) - values[3] - values[4]) / _CLOCK_TICKS


def cpu_snapshot(services: Services, worker_pgid: int) -> dict[str, float]:
    return {
        "workers (celery + pool)": group_cpu(worker_pgid),
        "SMTP sink": process_cpu(services.sink_pid),
        "redis-server": process_cpu(services.redis_pid),
        "postgres (all backends)": named_cpu("postgres"),
        "this process": time.process_time(),
        "machine, all cores": machine_busy(),
    }


# --- services -----------------------------------------------------------------------------------


@contextmanager
def private_redis(workdir: Path) -> Iterator[tuple[str, int]]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise SystemExit("needs redis-server on PATH (apt-get install redis-server)")
    port = free_port()
    command = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", ""]
    command += ["--appendonly", "no", "--dir", str(workdir), "--loglevel", "warning"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis.from_url(url).ping()
                break
            except redis.ConnectionError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"redis-server on port {port} did not start") from None
                time.sleep(0.05)
        yield url, proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextmanager
def private_postgres(base_url: str) -> Iterator[str]:
    """A database of its own on the server of `base_url`, dropped afterwards."""
    admin = sqlalchemy.create_engine(base_url, isolation_level="AUTOCOMMIT")
    name = f"papermail_e2e_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'CREATE DATABASE "{name}"'))
    except sqlalchemy.exc.OperationalError as exc:
        message = f"needs PostgreSQL at {base_url} (set PAPERMAIL_TEST_PG): {exc.orig}"
        raise SystemExit(message) from None
    try:
        yield sqlalchemy.make_url(base_url).set(database=name).render_as_string(False)
    finally:
        with admin.connect() as conn:
            conn.execute(sqlalchemy.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def private_services(options: Options, workdir: Path) -> Iterator[Services]:
    with ExitStack() as stack:
        redis_url, redis_pid = stack.enter_context(private_redis(workdir))
        if options.database == "sqlite":
            database_url = f"sqlite:///{workdir / 'papermail.db'}"
        else:
            database_url = stack.enter_context(private_postgres(PG_URL))
        sink = stack.enter_context(Sink())
        yield Services(redis_url, database_url, sink, redis_pid, sink.process.pid)


# --- the world ----------------------------------------------------------------------------------


def seed_subscribers(engine: sqlalchemy.Engine, samples: Path, options: Options) -> None:
    """N confirmed daily subscribers in UTC, due from midnight, keywords from paper titles."""
    papers = len({r.paper_id for path in sample_files(samples) for r in read_path(path).records})
    world = build_world(samples, papers=papers, subscribers=options.subscribers, seed=options.seed)
    rows = [
        {"email": s.email, "confirmed": True, "confirmed_at": utcnow(), "send_hour": 0}
        for s in world.subscribers
    ]
    values = [Subscriber(**row).model_dump(exclude={"id"}) for row in rows]
    with Session(engine) as session:
        ids = session.scalars(
            insert(Subscriber).returning(Subscriber.id, sort_by_parameter_order=True), values
        ).all()
        interests = [
            {"subscriber_id": sid, "phrase": k.phrase, "weight": k.weight, "negative": k.negative}
            for sid, s in zip(ids, world.subscribers, strict=True)
            for k in s.keywords
        ]
        session.execute(insert(Interest), interests)
        session.commit()


# --- the worker ---------------------------------------------------------------------------------


def worker_environment(values: dict[str, object]) -> dict[str, str]:
    """This process's environment with `values` as settings (lists as JSON, as pydantic reads)."""
    env = dict(os.environ)
    for name, value in values.items():
        env[name.upper()] = json.dumps(value) if isinstance(value, list) else str(value)
    return env


@contextmanager
def celery_worker(
    values: dict[str, object], workdir: Path, concurrency: int
) -> Iterator[tuple[subprocess.Popen, Path]]:
    """`celery -A workers.app worker`, in its own process group and a folder with no .env."""
    from workers.app import celery_app

    node = f"e2e-{os.getpid()}"
    log_path = workdir / "worker.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                *(str(CELERY), "-A", "workers.app", "worker", "--loglevel=INFO"),
                *(f"--concurrency={concurrency}", "--hostname", f"{node}@%h"),
                *("--without-gossip", "--without-mingle", "--without-heartbeat"),
            ],
            cwd=workdir,
            env=worker_environment(values),
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        hostname = f"{node}@{socket.gethostname()}"
        deadline = time.monotonic() + 60
        while not celery_app.control.ping(destination=[hostname], timeout=0.5):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the celery worker did not start:\n{log_path.read_text()}")
        yield proc, log_path
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def task_times(log: str) -> dict[str, dict[str, float]]:
    """Count and total run time of each task name, from the worker's "succeeded in" lines."""
    times: dict[str, dict[str, float]] = {}
    for name, seconds in _TASK_DONE.findall(log):
        entry = times.setdefault(name.removeprefix("workers.tasks."), {"count": 0, "seconds": 0})
        entry["count"] += 1
        entry["seconds"] += float(seconds)
    return times


# --- the run ------------------------------------------------------------------------------------


def _open_deliveries(engine: sqlalchemy.Engine) -> int:
    unfinished = [DeliveryStatus.pending, DeliveryStatus.sending]
    with Session(engine) as session:
        return session.exec(select(func.count()).where(col(Delivery.status).in_(unfinished))).one()


def _wait_for_mail(
    engine: sqlalchemy.Engine, mail: MailSink, expected: int, deadline: float
) -> float:
    """Until `expected` Message-IDs arrived and no delivery is left to send, or the deadline;
    returns when the last one arrived, then waits a moment more so that a late duplicate would
    still be counted."""
    arrived = time.monotonic()
    while time.monotonic() < deadline:
        if mail.distinct() >= expected:
            arrived = time.monotonic()
            if not _open_deliveries(engine):
                break
        time.sleep(0.1)
    time.sleep(1.0)
    return arrived


def _since(start: datetime, moment: datetime | None) -> float:
    return (moment - start).total_seconds() if moment else float("nan")


def run(options: Options, services: Services, workdir: Path) -> Result:
    """Seed, start a worker, run ingest and the dispatcher through it, count what arrives."""
    from workers import runtime
    from workers.app import celery_app, configure

    values: dict[str, object] = {
        "var_dir": workdir,
        "database_url": services.database_url,
        "redis_url": services.redis_url,
        "mail_backend": "smtp",
        "smtp_host": services.mail.host,
        "smtp_port": services.mail.port,
        "secret_key": "bench-secret-key",
        "base_url": "https://papermail.example.org",
        "mail_from": "papermail <digest@papermail.example.org>",
    }
    settings = Settings(_env_file=None, **values)  # type: ignore[arg-type]
    values["daily_sources"] = [str(settings.samples_dir)]  # what beat's ingest_daily reads
    result = Result(options, machine())
    engine = make_engine(settings)
    try:
        create_tables(engine)
        seed_subscribers(engine, settings.samples_dir, options)
        previous = runtime.settings()
        configure(celery_app, settings)  # this process queues tasks on the run's Redis
        try:
            with celery_worker(values, workdir, options.workers) as (proc, log_path):
                _drive(engine, services, proc.pid, result)
                time.sleep(0.5)  # the last "succeeded" lines
                result.tasks = task_times(log_path.read_text(errors="replace"))
        finally:
            configure(celery_app, previous)
        with Session(engine) as session:
            expected = set(session.exec(select(Delivery.message_id)))
    finally:
        engine.dispose()
    copies = services.mail.message_ids()
    result.expected = len(expected)
    result.received = sum(copies.values())
    result.duplicates = sum(n - 1 for n in copies.values() if n > 1)
    result.missing = len(expected - copies.keys())
    result.unexpected = len(copies.keys() - expected)
    _stages(result)
    return result


def _drive(engine: sqlalchemy.Engine, services: Services, worker_pgid: int, result: Result) -> None:
    """Beat's two jobs through the worker, timed; fills the result's timeline and CPU."""
    from workers import tasks

    timeout = result.options.timeout
    before = cpu_snapshot(services, worker_pgid)
    started_at, start = utcnow(), time.monotonic()
    reports = tasks.ingest_daily.delay().get(timeout=timeout)
    ingested = time.monotonic()
    result.papers = sum(r["parsed"] for r in reports)
    tick = tasks.send_due.delay().get(timeout=timeout)
    for task_id in tick["scoring"]:
        AsyncResult(task_id).get(timeout=timeout)
    scored = time.monotonic()
    with Session(engine) as session:
        expected = session.exec(select(func.count()).select_from(Delivery)).one()
    arrived = _wait_for_mail(engine, services.mail, expected, start + timeout)
    after = cpu_snapshot(services, worker_pgid)
    with Session(engine) as session:
        stored = session.exec(select(func.min(Digest.created_at), func.max(Digest.created_at)))
        first_stored, last_stored = stored.one()
        first_sent = session.exec(select(func.min(Delivery.sent_at))).one()
    result.timeline = {
        "papers ingested": ingested - start,
        "first digest stored": _since(started_at, first_stored),
        "last digest stored": _since(started_at, last_stored),
        "scoring tasks done": scored - start,
        "first mail sent": _since(started_at, first_sent),
        "last mail arrived": arrived - start,
    }
    result.cpu = {name: after[name] - before[name] for name in before}


def _stages(result: Result) -> None:
    """Stage rows from the timeline, linear extrapolation, and the bottleneck named."""
    t, n = result.timeline, result.options.subscribers
    result.total = t["last mail arrived"]
    sending_from = t["first mail sent"]
    result.stages = [
        Stage("ingest (ingest_daily task)", t["papers ingested"], result.papers, "paper", False),
        Stage(
            "scoring + storing (send_due, score_and_send)",
            t["scoring tasks done"] - t["papers ingested"],
            n,
            "subscriber",
            note=f"digests stored {t['first digest stored']:.1f}-{t['last digest stored']:.1f} s",
        ),
        Stage(
            "sending (send_digests chunks)",
            t["last mail arrived"] - sending_from,
            result.expected,
            "message",
            note=f"first mail at {sending_from:.1f} s, overlapping scoring",
        ),
    ]
    overlap = max(0.0, t["scoring tasks done"] - sending_from)
    for scale in SCALES:
        # Stages summed, minus the overlap seen here scaled too: the observed schedule, grown.
        result.extrapolated[scale] = (
            sum(stage.at(scale, n) for stage in result.stages) - overlap * scale / n
        )
    cpu = {k: v for k, v in result.cpu.items() if k not in ("machine, all cores", "this process")}
    busiest = max(cpu, key=cpu.__getitem__)
    slowest = max(result.stages, key=lambda s: s.at(SCALES[-1], n))
    used = result.cpu["machine, all cores"] / max(result.total, 1e-9)
    result.bottleneck = (
        f"{slowest.name} ({slowest.per_item * 1e3:.2f} ms per {slowest.unit}); CPU: {busiest} "
        f"{cpu[busiest]:.1f} s of {result.cpu['machine, all cores']:.1f} s used by the machine "
        f"({used:.2f} of {os.cpu_count()} cores busy on average)"
    )


# --- output ------------------------------------------------------------------------------------


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:.2f} ms"


def table(result: Result) -> Table:
    o, n = result.options, result.options.subscribers
    grid = Table(
        title=f"papermail end to end: {n:,} subscribers, {o.workers} worker processes, "
        f"{o.database}, aiosmtpd",
        caption=result.machine,
        title_justify="left",
        caption_justify="left",
    )
    grid.add_column("stage", no_wrap=True)
    grid.add_column("wall", justify="right")
    grid.add_column("items", justify="right")
    grid.add_column("per item", justify="right")
    for scale in SCALES:
        grid.add_column(f"at {scale:,}", justify="right")
    grid.add_column("notes")
    for stage in result.stages:
        grid.add_row(
            stage.name,
            f"{stage.seconds:.2f} s",
            f"{stage.items:,} {stage.unit}s",
            _ms(stage.per_item),
            *(f"{stage.at(scale, n):,.0f} s" for scale in SCALES),
            stage.note or ("does not grow with subscribers" if not stage.grows else ""),
        )
    grid.add_section()
    verdict = "met" if result.total <= 60 else "NOT met"
    grid.add_row(
        "[bold]total, first task queued to last mail arrived[/bold]",
        f"[bold]{result.total:.2f} s[/bold]",
        f"{result.expected:,} mails",
        _ms(result.total / max(result.expected, 1)),
        *(f"{result.extrapolated[scale]:,.0f} s" for scale in SCALES),
        f"target 10,000 in ≤ 60 s: {verdict}" if n == 10_000 else "",
    )
    return grid


def details(result: Result) -> Table:
    grid = Table(title="where the time goes", title_justify="left")
    grid.add_column("measure", no_wrap=True)
    grid.add_column("value", justify="right")
    grid.add_column("per mail", justify="right")
    mails = max(result.expected, 1)
    for name, seconds in result.cpu.items():
        grid.add_row(f"CPU: {name}", f"{seconds:.2f} s", _ms(seconds / mails))
    grid.add_section()
    for name, task in sorted(result.tasks.items()):
        label, seconds = f"task {name} x {task['count']:.0f}", task["seconds"]
        grid.add_row(label, f"{seconds:.2f} s", _ms(seconds / mails))
    grid.add_section()
    for event, at in result.timeline.items():
        grid.add_row(f"at: {event}", f"{at:.2f} s", "")
    return grid


def summary(result: Result) -> str:
    return (
        f"mails expected {result.expected:,}, received {result.received:,}, duplicates "
        f"{result.duplicates}, missing {result.missing}, unexpected {result.unexpected}; "
        f"{result.options.subscribers - result.expected:,} subscribers had no paper over "
        "MIN_SCORE (no mail). "
        f"Extrapolation is linear per stage. Bottleneck: {result.bottleneck}"
    )


def parse_args(argv: list[str] | None) -> tuple[Options, bool]:
    parser = argparse.ArgumentParser(prog="python -m bench.e2e", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=Options.subscribers)
    parser.add_argument(
        "--workers", type=int, default=Options.workers, help="worker processes (default: cores)"
    )
    parser.add_argument("--database", choices=("postgres", "sqlite"), default=Options.database)
    parser.add_argument("--seed", type=int, default=Options.seed)
    parser.add_argument("--timeout", type=float, default=Options.timeout)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    args = parser.parse_args(argv)
    json_out = args.json
    del args.json
    return Options(**vars(args)), json_out


def main(argv: list[str] | None = None) -> int:
    options, as_json = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="papermail-e2e-") as tmp:
        workdir = Path(tmp)
        with private_services(options, workdir) as services:
            result = run(options, services, workdir)
    if as_json:
        payload = asdict(result) | {"ok": result.ok}
        payload["stages"] = [asdict(s) | {"per_item": s.per_item} for s in result.stages]
        print(json.dumps(payload, indent=2, default=str))
    else:
        console = Console(width=None if sys.stdout.isatty() else 160)
        console.print(table(result))
        console.print(details(result))
        console.print(summary(result))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
