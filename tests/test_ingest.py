"""Ingesting into the database: idempotent, updating, and all-or-nothing per source."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlmodel import Session, func, select

from papermail.models import Paper
from papermail.services.ingest import ingest_paths, ingest_result
from papermail.sources import PaperRecord, ParseResult
from papermail.sources.detect import read_path


def _count(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Paper)).one()


def test_seed_pages_ingest_once_and_reingest_changes_nothing(engine, seeds_dir):
    files = sorted(seeds_dir.glob("*.txt"))
    unique_ids = {r.paper_id for f in files for r in read_path(f).records}

    first = ingest_paths(engine, files)
    assert all(r.ok for r in first)
    assert sum(r.inserted for r in first) == len(unique_ids) == _count(engine)

    again = ingest_paths(engine, files)
    assert sum(r.inserted for r in again) == 0
    assert sum(r.updated for r in again) == 0
    assert _count(engine) == len(unique_ids)


def test_new_upvote_count_updates_the_row(engine):
    record = PaperRecord(
        title="A Paper", abstract="About things.", source="t", arxiv_id="2401.01234v1", upvotes=3
    )
    ingest_result(engine, "t", ParseResult(records=[record]))
    bumped = PaperRecord(
        title="A Paper", abstract="About things.", source="t", arxiv_id="2401.01234v2", upvotes=41
    )
    report = ingest_result(engine, "t", ParseResult(records=[bumped]))
    assert (report.inserted, report.updated) == (0, 1)
    with Session(engine) as session:
        paper = session.get(Paper, "2401.01234")
        assert paper is not None and paper.upvotes == 41
        assert _count(engine) == 1


def test_broken_source_writes_nothing_and_others_still_land(engine, seeds_dir, tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"paper": {"id": "2401.0', encoding="utf-8")
    html = tmp_path / "page.html"
    html.write_text("<!doctype html><html><body>Rate limited</body></html>", encoding="utf-8")
    good = seeds_dir / "daily-papers-3.txt"
    reports = ingest_paths(engine, [broken, html, good])
    assert [r.ok for r in reports] == [False, False, True]
    assert reports[0].error and reports[1].error
    assert _count(engine) == reports[2].inserted == 48


def test_first_seen_is_kept_on_update(engine):
    record = PaperRecord(title="Stable", abstract="Text.", source="t", arxiv_id="2402.00001")
    early, late = datetime(2026, 1, 1, tzinfo=UTC), datetime(2026, 1, 5, tzinfo=UTC)
    ingest_result(engine, "t", ParseResult(records=[record]), now=early)
    ingest_result(
        engine,
        "t",
        ParseResult(
            records=[
                PaperRecord(
                    title="Stable", abstract="Text.", source="t", arxiv_id="2402.00001", upvotes=9
                )
            ]
        ),
        now=late,
    )
    with Session(engine) as session:
        paper = session.get(Paper, "2402.00001")
        assert paper is not None
        assert (paper.first_seen_at, paper.updated_at) == (early, late)
