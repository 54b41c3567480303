"""Format sniffing: each known format goes to its parser; unreadable files are clear errors."""

from __future__ import annotations

import shutil
from datetime import date
from pathlib import Path

import pytest

from papermail.errors import SourceError
from papermail.sources import read_path
from papermail.sources.records import PaperRecord

DATA = Path(__file__).parent / "data"


def test_hf_json_list() -> None:
    result = read_path(DATA / "hf_daily_papers.json")
    assert {r.source for r in result.records} == {"hf-api"}
    assert len(result.records) == 2 and len(result.skipped) == 2


def test_arxiv_api_and_rss() -> None:
    api = read_path(DATA / "arxiv_api.atom")
    rss = read_path(DATA / "arxiv_rss.atom")
    assert [r.arxiv_id for r in api.records] == ["2410.01234", "hep-th/9901001"]
    assert [r.arxiv_id for r in rss.records] == ["2410.01502", "2410.01777"]


def test_json_lines_keep_their_given_ids() -> None:
    result = read_path(DATA / "papers.jsonl")
    assert [r.paper_id for r in result.records] == ["lab-notes-001", "lab-notes-002", "2410.01234"]
    assert all(r.arxiv_id is None and r.source == "jsonl" for r in result.records)
    first = result.records[0]
    assert first.authors == ("Ana Souza", "Ben Carter")
    assert first.published == date(2024, 9, 12)
    assert first.url == "https://example.org/notes/001"


def test_given_id_wins_over_arxiv_id_and_title() -> None:
    record = PaperRecord(title="T", abstract="A", source="jsonl", given_id="corpus-7")
    assert record.paper_id == "corpus-7"
    plain = PaperRecord(title="T", abstract="A", source="x", arxiv_id="2410.01234v2")
    assert plain.paper_id == "2410.01234"


def test_bad_json_lines_are_skipped(tmp_path: Path) -> None:
    path = tmp_path / "corpus.jsonl"
    path.write_text(
        '{"id": 1, "title": "One", "abstract": "First."}\n'
        "not json\n"
        '{"id": "x", "title": "No abstract"}\n'
        "\n"
        '{"id": "y", "title": "Two", "abstract": "Second."}\n',
        encoding="utf-8",
    )
    result = read_path(path)
    assert [r.paper_id for r in result.records] == ["1", "y"]
    assert len(result.skipped) == 2
    assert result.skipped[0].startswith("line 2: invalid JSON")
    assert result.skipped[1] == "line 3: missing abstract"


def test_a_single_json_object_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "one.json"
    path.write_text('{\n  "id": "a",\n  "title": "T",\n  "abstract": "A."\n}\n', encoding="utf-8")
    with pytest.raises(SourceError, match="one JSON object"):
        read_path(path)


def test_daily_papers_page(seeds_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "page.txt"
    shutil.copy(seeds_dir / "daily-papers-4.txt", path)
    result = read_path(path, year=2030)
    assert len(result.records) == 71
    assert result.listing_day == date(2030, 10, 31)


def test_html_file_is_refused_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / "saved.html"
    path.write_text("<!doctype html><html><body>Daily Papers</body></html>", encoding="utf-8")
    with pytest.raises(SourceError, match=r"saved\.html: .*HTML"):
        read_path(path)


@pytest.mark.parametrize(
    ("content", "message"),
    [(b"", "empty"), (b"  \n\n ", "empty"), (b"\xff\xfe\xfa binary", "not UTF-8")],
)
def test_unusable_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "input.txt"
    path.write_bytes(content)
    with pytest.raises(SourceError, match=message):
        read_path(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        read_path(tmp_path / "nope.txt")


def test_directory_is_not_a_file(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="cannot read"):
        read_path(tmp_path)
