"""Issue 15 #8/#9: every record is cleaned or skipped before the database sees it, so one bad
record never aborts an ingest (PostgreSQL refused NUL, long strings and big integers)."""

from __future__ import annotations

import json

from sqlmodel import Session, select

from papermail.models import Paper
from papermail.services.ingest import ingest_paths, ingest_result
from papermail.sources import PaperRecord, ParseResult
from papermail.sources.clean import INT_MAX, clean_record


def _hf_item(arxiv_id: str, title: str, **paper) -> dict:
    return {
        "paper": {"id": arxiv_id, "title": title, "summary": f"About {title}.", **paper},
        "title": title,
    }


def test_bad_records_are_cleaned_and_the_following_files_still_land(engine, tmp_path):
    bad = [
        _hf_item("2501.00001", "Org too long", organization={"fullname": "O" * 300, "name": "o"}),
        _hf_item("2501.00002", "Huge upvotes", upvotes=2**40),
        _hf_item("2501.00003", "A NUL\x00 in the title"),
        _hf_item("2501.00004", "Long links", githubRepo="https://github.com/" + "x" * 600),
        _hf_item("2501.00005", "Control\x07 characters\x1b[31m"),
        _hf_item("2501.00006", "T" * 1_000_000),  # one 1 MB word
    ]
    (tmp_path / "a-bad.json").write_text(json.dumps(bad))
    (tmp_path / "b-good.json").write_text(json.dumps([_hf_item("2501.00007", "Good paper")]))
    reports = ingest_paths(engine, sorted(tmp_path.glob("*.json")))
    assert [r.error for r in reports] == [None, None]
    assert [r.inserted for r in reports] == [6, 1]
    with Session(engine) as session:
        papers = {p.id: p for p in session.exec(select(Paper))}
    assert set(papers) == {f"2501.0000{n}" for n in range(1, 8)}
    assert len(papers["2501.00001"].organisation or "") <= 200
    assert papers["2501.00002"].upvotes == INT_MAX
    assert papers["2501.00003"].title == "A NUL in the title"
    assert papers["2501.00004"].code_url is None  # a cut URL would be a wrong one
    assert papers["2501.00005"].title == "Control characters[31m"
    assert len(papers["2501.00006"].title) <= 1_000


def test_a_record_that_cannot_be_stored_is_skipped_with_its_reason(engine):
    records = [
        PaperRecord(title="\x00\x01", abstract="only control characters", source="t"),
        PaperRecord(title="Own id", abstract="x", source="jsonl", given_id="i" * 80),
        PaperRecord(title="Fine", abstract="x", source="t", arxiv_id="2501.00009", version=2**33),
    ]
    report = ingest_result(engine, "t", ParseResult(records=records))
    assert report.inserted == 1
    assert len(report.skipped) == 2
    assert "no title" in report.skipped[0] and "id longer" in report.skipped[1]
    with Session(engine) as session:
        assert session.get(Paper, "2501.00009").version == INT_MAX


def test_clean_record_caps_every_field():
    record = PaperRecord(
        title="word " * 10_000,
        abstract="x\x00" * 100_000,
        source="s" * 100,
        authors=tuple(f"Author\x00 {n}" for n in range(5_000)),
        upvotes=-3,
        url="https://example.org/" + "p" * 1_000,
        ai_summary="\ud800 summary",
        affiliations=(("A\x00", "Lab" * 1_000),),
    )
    cleaned, reason = clean_record(record)
    assert reason is None and cleaned is not None
    assert len(cleaned.title) <= 1_000 and cleaned.title.endswith("…")
    assert len(cleaned.abstract) <= 20_000 and "\x00" not in cleaned.abstract
    assert len(cleaned.source) <= 40
    assert len(cleaned.authors) == 1_000 and cleaned.authors[0] == "Author 0"
    assert cleaned.author_count == 5_000
    assert cleaned.upvotes == 0 and cleaned.url is None
    assert cleaned.ai_summary == "\ufffd summary"
    assert cleaned.affiliations[0][0] == "A" and len(cleaned.affiliations[0][1]) <= 200


def test_what_cleaning_missed_is_stored_one_record_at_a_time(engine, monkeypatch):
    """A value the database refuses anyway costs only its own record."""
    from papermail.services import ingest

    monkeypatch.setattr(ingest, "clean_records", lambda records, skipped: list(records))
    records = [
        PaperRecord(title="Before", abstract="x", source="t", arxiv_id="2501.00011"),
        PaperRecord(title="Bad", abstract="x", source="t", arxiv_id="2501.00012", upvotes=2**40),
        PaperRecord(title="After", abstract="x", source="t", arxiv_id="2501.00013"),
    ]
    report = ingest_result(engine, "t", ParseResult(records=records))
    with Session(engine) as session:
        stored = set(session.exec(select(Paper.id)))
    if engine.dialect.name == "postgresql":  # SQLite stores any integer
        assert report.inserted == 2 and len(report.skipped) == 1, report
        assert stored == {"2501.00011", "2501.00013"}
    else:
        assert report.inserted == 3 and stored == {"2501.00011", "2501.00012", "2501.00013"}
