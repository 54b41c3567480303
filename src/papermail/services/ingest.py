"""Store parsed papers: one source (one day's page or feed) is one unit of work.

Re-ingesting is safe: rows are keyed on the stable paper id, so a repeat updates what changed
(say, the upvote count) and inserts nothing twice. A source that fails to parse writes nothing.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlalchemy.exc import DBAPIError
from sqlmodel import Session, col, select

from papermail import metrics
from papermail.db import session_scope
from papermail.errors import PapermailError
from papermail.models import Paper, utcnow
from papermail.services.jobs import Run, Stage, job_run
from papermail.settings import Settings
from papermail.sources import PaperRecord, ParseResult
from papermail.sources.arxiv import fetch_arxiv
from papermail.sources.clean import clean_records
from papermail.sources.detect import read_path
from papermail.sources.hf_api import fetch_hf_daily_papers
from papermail.sources.records import DETAIL_FIELDS, detail_values

log = logging.getLogger(__name__)

# Fields a later sighting of the same paper may fill in or refresh.
_MERGED_FIELDS = (
    "authors",
    "author_count",
    "organisation",
    "published",
    "listing_day",
    "upvotes",
    "url",
    "arxiv_id",
    *DETAIL_FIELDS,
)


@dataclass
class IngestReport:
    source: str
    parsed: int = 0
    inserted: int = 0
    updated: int = 0
    unchanged: int = 0
    revised: int = 0  # stored papers that came in a newer version
    skipped: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def merge_duplicates(records: Iterable[PaperRecord]) -> dict[str, PaperRecord]:
    """Fold repeats of one paper within a batch, keeping the most informative values."""
    merged: dict[str, PaperRecord] = {}
    for record in records:
        known = merged.get(record.paper_id)
        if known is None:
            merged[record.paper_id] = record
            continue
        updates = {
            name: getattr(record, name)
            for name in _MERGED_FIELDS
            if getattr(record, name) not in (None, ()) and getattr(known, name) in (None, ())
        }
        if record.upvotes is not None and (known.upvotes or 0) < record.upvotes:
            updates["upvotes"] = record.upvotes
        merged[record.paper_id] = replace(known, **updates) if updates else known
    return merged


def _values(record: PaperRecord) -> dict[str, object]:
    return {
        "title": record.title,
        "abstract": record.abstract,
        "authors": list(record.authors),
        "author_count": record.author_count or (len(record.authors) or None),
        "organisation": record.organisation,
        "published": record.published,
        "listing_day": record.listing_day,
        "upvotes": record.upvotes,
        "url": record.url,
        "source": record.source,
        "version": record.version,
        "arxiv_id": record.arxiv_id,
        **detail_values(record),
    }


def _note_version(paper: Paper, version: int | None, now: datetime) -> bool:
    """Take a newer arXiv version; True if it revises the one we stored. A paper stored without
    a version (say, from Hugging Face) only learns it: what earlier digests showed is unknown."""
    if version is None or (paper.version or 0) >= version:
        return False
    revised = paper.version is not None
    paper.version = version
    if revised:
        paper.revised_at = now
    return revised


def upsert_papers(
    session: Session,
    records: Sequence[PaperRecord],
    report: IngestReport,
    *,
    now: datetime | None = None,
) -> None:
    """Insert new papers, refresh known ones; counts what happened in `report`."""
    now = now or utcnow()
    batch = merge_duplicates(records)
    existing = {
        paper.id: paper
        for paper in session.exec(select(Paper).where(col(Paper.id).in_(list(batch))))
    }
    for pid, record in batch.items():
        values = _values(record)
        paper = existing.get(pid)
        if paper is None:
            session.add(Paper(id=pid, first_seen_at=now, updated_at=now, **values))
            report.inserted += 1
            continue
        versioned = _note_version(paper, record.version, now)
        report.revised += versioned
        changes = {
            name: value
            for name, value in values.items()
            if value not in (None, [], "", {})
            and getattr(paper, name) != value
            and name not in ("source", "listing_day", "version")
        }
        if not changes and not versioned:
            report.unchanged += 1
            continue
        for name, value in changes.items():
            setattr(paper, name, value)
        paper.updated_at = now
        report.updated += 1


def apply_revisions(
    session: Session,
    revisions: Sequence[PaperRecord],
    report: IngestReport,
    *,
    now: datetime | None = None,
) -> None:
    """Newer versions of papers we already store: refresh their text and mark them revised.
    Revisions of papers we never stored are not new work, so they add nothing."""
    now = now or utcnow()
    batch = merge_duplicates(revisions)
    for paper in session.exec(select(Paper).where(col(Paper.id).in_(list(batch)))):
        record = batch[paper.id]
        if _note_version(paper, record.version, now):
            paper.title, paper.abstract = record.title, record.abstract
            report.revised += 1
            report.updated += 1


def ingest_result(
    engine: Engine, source: str, result: ParseResult, *, now: datetime | None = None
) -> IngestReport:
    report = IngestReport(source=source, parsed=len(result.records), skipped=list(result.skipped))
    # Every record is cleaned (NULs, sizes, 32-bit integers) or skipped with its reason before
    # the database sees it: one bad record must not abort the source (issue 15 #9).
    records = clean_records(result.records, report.skipped)
    revisions = clean_records(result.revisions, report.skipped)
    try:
        with session_scope(engine) as session:
            upsert_papers(session, records, report, now=now)
            apply_revisions(session, revisions, report, now=now)
    except DBAPIError as exc:
        # Something the cleaning did not foresee: store record by record, skipping what fails.
        log.warning("%s: storing one record at a time (%s)", source, _first_line(exc))
        report = _ingest_one_by_one(engine, source, result, records, revisions, now=now)
    for reason in report.skipped[len(result.skipped) :]:
        log.warning("%s: skipped %s", source, reason)
    return report


def _first_line(exc: BaseException) -> str:
    return (str(getattr(exc, "orig", None) or exc).strip().splitlines() or ["error"])[0][:200]


def _ingest_one_by_one(
    engine: Engine,
    source: str,
    result: ParseResult,
    records: Sequence[PaperRecord],
    revisions: Sequence[PaperRecord],
    *,
    now: datetime | None,
) -> IngestReport:
    report = IngestReport(source=source, parsed=len(result.records), skipped=list(result.skipped))
    clean_records(result.records, report.skipped)
    clean_records(result.revisions, report.skipped)
    for store, batch in ((upsert_papers, records), (apply_revisions, revisions)):
        for record in batch:
            attempt = IngestReport(source=source)
            try:
                with session_scope(engine) as session:
                    store(session, [record], attempt, now=now)
            except DBAPIError as exc:
                report.skipped.append(f"{record.title[:60]!r}: {_first_line(exc)}")
                continue
            for name in ("inserted", "updated", "unchanged", "revised"):
                setattr(report, name, getattr(report, name) + getattr(attempt, name))
    return report


def ingest_paths(
    engine: Engine,
    paths: Sequence[Path],
    *,
    year: int | None = None,
    now: datetime | None = None,
    strict: bool = False,
) -> list[IngestReport]:
    """Each file is its own transaction: a broken file is reported and the others still land.
    `strict` (files found in a folder): a file that is not a papers file is left out, noted."""
    reports = []
    for path in paths:
        try:
            result = read_path(path, year=year, strict=strict)
        except PapermailError as exc:
            if strict:
                log.warning("ingest: left out %s", exc)
                reports.append(IngestReport(source=str(path), skipped=[str(exc)]))
                continue
            log.error("ingest failed: %s", exc)
            reports.append(IngestReport(source=str(path), error=str(exc)))
            continue
        reports.append(ingest_result(engine, str(path), result, now=now))
    return reports


def expand_paths(paths: Sequence[Path]) -> list[Path]:
    """A folder stands for the files in it, in name order."""
    files: list[Path] = []
    for path in paths:
        files.extend(sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path])
    return files


def fetch_feed(spec: str, settings: Settings, day: date) -> ParseResult | None:
    """Fetch a network source spec; None when the spec is a path instead."""
    if spec == "hf" or spec.startswith("hf:"):
        wanted = date.fromisoformat(spec[3:]) if spec.startswith("hf:") else day
        return fetch_hf_daily_papers(wanted, settings=settings)
    if spec.startswith("arxiv:"):
        return fetch_arxiv(settings=settings, categories=spec.removeprefix("arxiv:").split("+"))
    return None


def ingest_sources(
    engine: Engine,
    settings: Settings,
    specs: Sequence[str],
    *,
    day: date | None = None,
    now: datetime | None = None,
) -> list[IngestReport]:
    """Ingest source specs: `hf` (Hugging Face daily papers of `day`), `arxiv:cs.LG+cs.CL`
    (arXiv's announcement feed), or a file or folder path. A failing source is reported and
    leaves the others untouched. With SEMANTIC on, the papers' vectors follow (after the
    papers are committed; a failure to encode is logged and loses no paper)."""
    started = now or utcnow()
    reports: list[IngestReport] = []
    for spec in specs:
        with job_run(engine, Stage.ingest, source=spec[:200]) as run:
            found = _ingest_spec(engine, settings, spec, day=day or utcnow().date(), now=now)
            _account(run, spec, found)
        reports.extend(found)
    if settings.semantic:
        from papermail.services.embeddings import embed_after_ingest

        embed_after_ingest(engine, settings, since=started)
    return reports


def _ingest_spec(
    engine: Engine, settings: Settings, spec: str, *, day: date, now: datetime | None
) -> list[IngestReport]:
    try:
        result = fetch_feed(spec, settings, day)
    except PapermailError as exc:
        log.error("ingest of %s failed: %s", spec, exc)
        return [IngestReport(source=spec, error=str(exc))]
    if result is None:
        folder = Path(spec).is_dir()
        return ingest_paths(engine, expand_paths([Path(spec)]), now=now, strict=folder)
    return [ingest_result(engine, spec, result, now=now)]


def _account(run: Run, spec: str, reports: Sequence[IngestReport]) -> None:
    """One source's totals into its job run and the metrics (a folder's files add up)."""
    counts = {
        name: sum(getattr(report, name) for report in reports)
        for name in ("parsed", "inserted", "updated", "unchanged", "revised")
    }
    counts["skipped"] = sum(len(report.skipped) for report in reports)
    run.count(**counts)
    errors = [f"{report.source}: {report.error}" for report in reports if report.error]
    if errors:
        run.fail("; ".join(errors))
    metrics.count_ingest(spec, counts, failed=bool(errors))


def remove_papers(session: Session, ids: Sequence[str]) -> list[str]:
    """Delete papers ingested by mistake, with what refers to them (digest entries, ratings,
    embeddings); returns the ids that existed."""
    from sqlalchemy import delete

    from papermail.models import DigestItem, PaperEmbedding, Rating

    found = list(session.exec(select(Paper.id).where(col(Paper.id).in_(list(ids)))))
    if found:
        for model in (DigestItem, Rating, PaperEmbedding):
            session.exec(delete(model).where(col(model.paper_id).in_(found)))  # type: ignore[call-overload]
        session.exec(delete(Paper).where(col(Paper.id).in_(found)))  # type: ignore[call-overload]
    return found
