"""Issue 15 #13: issue dates follow the subscriber's local date everywhere. `run-daily` at 02:00
UTC must not store a digest dated today (UTC) for a Los Angeles subscriber, whose local date is
still yesterday: that early, empty digest left their real day with nothing."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from sqlalchemy import create_engine, text
from sqlmodel import Session, select

from papermail.models import Digest
from papermail.services import digests
from papermail.services.ingest import ingest_result
from papermail.sources import PaperRecord, ParseResult
from tests.test_digests import seed, subscribe

PAPERMAIL = Path(sys.executable).with_name("papermail")
SAMPLES = Path(__file__).parents[1] / "src" / "papermail" / "samples"


def issues(engine, subscriber_id: int) -> dict[date, int]:
    """Issue date -> number of papers, for one subscriber."""
    with Session(engine) as session:
        rows = session.exec(select(Digest).where(Digest.subscriber_id == subscriber_id)).all()
        return {d.issue_date: d.scanned for d in rows}


def test_run_daily_follows_each_subscribers_local_date(engine, settings, seeds_dir):
    first_run = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # Los Angeles: Nov 23, 18:00
    seed(engine, seeds_dir, when=first_run - timedelta(hours=3))
    ada = subscribe(engine, "ada@example.org", "linear attention")  # UTC
    lee = subscribe(engine, "lee@example.org", "linear attention", timezone="America/Los_Angeles")

    report = digests.score_day(engine, settings, issue_date=first_run.date(), now=first_run)
    assert set(issues(engine, ada)) == {date(2026, 11, 24)}
    assert set(issues(engine, lee)) == {date(2026, 11, 23)}, "Lee is still on Nov 23"
    assert sorted(report.issue_dates) == [date(2026, 11, 23), date(2026, 11, 24)]
    assert len(report.to_send) == 2

    # Papers of Lee's Nov 24 arrive; the next run (Los Angeles: Nov 24, 18:00) brings them.
    new = PaperRecord(
        title="Linear attention, once more", abstract="A linear attention study.", source="t"
    )
    ingest_result(
        engine, "t", ParseResult(records=[new]), now=datetime(2026, 11, 24, 12, tzinfo=UTC)
    )
    second_run = first_run + timedelta(days=1)
    digests.score_day(engine, settings, issue_date=second_run.date(), now=second_run)
    assert set(issues(engine, lee)) == {date(2026, 11, 23), date(2026, 11, 24)}
    assert issues(engine, lee)[date(2026, 11, 24)] >= 1, "Lee's own day has the new paper"
    assert set(issues(engine, ada)) == {date(2026, 11, 24), date(2026, 11, 25)}


def test_weekly_subscribers_count_on_their_own_weekday(engine, settings, seeds_dir):
    now = datetime(2026, 11, 24, 2, 0, tzinfo=UTC)  # Tuesday in UTC, Monday in Los Angeles
    seed(engine, seeds_dir, when=now - timedelta(hours=3))
    monday = subscribe(
        engine,
        "mo@example.org",
        "linear attention",
        timezone="America/Los_Angeles",
        frequency="weekly",
        weekly_day=0,
    )
    digests.score_day(engine, settings, issue_date=now.date(), now=now)
    assert set(issues(engine, monday)) == {date(2026, 11, 23)}


def test_the_run_daily_command_stores_no_digest_before_a_subscribers_day(tmp_path):
    """Through `papermail run-daily` (tasks in-process): an issue date after a subscriber's
    local date (as today's UTC date is for Los Angeles at 02:00) gives them their own day's."""
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(VAR_DIR=str(tmp_path / "var"), COLUMNS="200")

    def run(*args: str) -> None:
        done = subprocess.run(
            [str(PAPERMAIL), *args], cwd=tmp_path, env=env, capture_output=True, text=True
        )
        assert done.returncode == 0, done.stderr

    run("subscribers", "add", "ada@example.org", "-k", "linear attention", "--timezone", "UTC")
    today = datetime.now(UTC).date()
    run("run-daily", str(SAMPLES), "--day", (today + timedelta(days=1)).isoformat())
    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'papermail.db'}")
    with engine.connect() as connection:
        dates = connection.execute(text("SELECT issue_date FROM digest")).scalars().all()
    engine.dispose()
    assert [str(d) for d in dates] == [today.isoformat()]
