"""Issue 15 #10: every parser answers records or a SourceError, whatever it is fed (a property
test, bounded for CI), `ingest` refuses a FIFO instead of hanging, a folder's stray files never
become papers, and `papermail papers remove` undoes a mistake."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from papermail.errors import SourceError
from papermail.sources.arxiv import parse_arxiv_atom
from papermail.sources.detect import _parse, parse_jsonl, read_path
from papermail.sources.hf_api import parse_hf_daily_papers
from papermail.sources.pages import parse_daily_papers_page
from papermail.sources.records import ParseResult

PAPERMAIL = Path(sys.executable).with_name("papermail")
SAMPLES = Path(__file__).parents[1] / "src" / "papermail" / "samples"
FUZZ = settings(
    max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow], database=None
)

# Pieces of the formats the parsers read, shuffled into near-misses.
XML_PIECES = [
    "<feed>",
    "</feed>",
    "<feed xmlns='http://www.w3.org/2005/Atom'>",
    "<entry>",
    "</entry>",
    "<id>",
    "</id>",
    "<E",
    "<title>",
    "</title>",
    "<summary>",
    "</summary>",
    "<author>",
    "<name>",
    "</name>",
    "<arxiv:affiliation>",
    "<link href='x'/>",
    "<published>",
    "2024-01-01T00:00:00Z",
    "</published>",
    "<",
    ">",
    "&",
    "&amp;",
    "&#0;",
    "2401.01234v2",
    "Announce Type: new",
    "<?xml version='1.0' encoding='utf-16'?>",
    "\x00",
    "\ud800",
    "é",
    "<rss>",
    "<channel>",
    "<item>",
    "<![CDATA[",
    "]]>",
    "<!DOCTYPE x [<!ENTITY a 'b'>]>",
    " ",
]
JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)
HF_ITEMS = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "paper": st.fixed_dictionaries(
                {},
                optional={
                    k: JSON_VALUES
                    for k in ("id", "title", "summary", "authors", "upvotes", "publishedAt")
                },
            ),
            "title": JSON_VALUES,
            "organization": JSON_VALUES,
            "numComments": JSON_VALUES,
        },
    )
    | JSON_VALUES,
    max_size=4,
)
DEEP = [
    "[" * 100_000,
    "[" * 5_000 + "]" * 5_000,
    '{"a":' * 5_000 + "1" + "}" * 5_000,
    '[{"paper":' * 3_000,
]


def _answers(call, payload) -> None:
    try:
        result = call(payload)
    except SourceError:
        return
    assert isinstance(result, ParseResult)


def _every_parser(payload: str | bytes) -> None:
    text = payload if isinstance(payload, str) else payload.decode("latin-1")
    raw = payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass")
    _answers(parse_arxiv_atom, raw)
    _answers(parse_arxiv_atom, text)
    _answers(parse_hf_daily_papers, raw)
    _answers(parse_hf_daily_papers, text)
    _answers(parse_daily_papers_page, text)
    _answers(parse_jsonl, text)
    _answers(lambda t: _parse(t, raw, year=None), text)


@FUZZ
@given(st.lists(st.sampled_from(XML_PIECES), max_size=30).map("".join))
def test_feed_like_text(payload):
    _every_parser(payload)


@FUZZ
@given(st.binary(max_size=200))
def test_any_bytes(payload):
    _every_parser(b"<feed>" + payload)
    _every_parser(payload)


@FUZZ
@given(st.text(max_size=300))
def test_any_text(payload):
    _every_parser(payload)


@FUZZ
@given(HF_ITEMS)
def test_json_shaped_like_the_sources(items):
    _every_parser(json.dumps(items))
    _every_parser("\n".join(json.dumps(item) for item in items))


@pytest.mark.parametrize("payload", [*DEEP, "<feed<id<E</id<entry>", b"\xff\xfe<\x00f\x00"])
def test_known_crashers(payload):
    _every_parser(payload)


def run(args: list[str], cwd: Path, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    env.update(VAR_DIR=str(cwd / "var"), COLUMNS="200")
    return subprocess.run(
        [str(PAPERMAIL), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def test_ingest_of_a_broken_feed_is_an_error_not_a_traceback(tmp_path):
    (tmp_path / "feed.xml").write_text("<feed<id<E</id<entry>")
    result = run(["ingest", "feed.xml"], tmp_path)
    assert result.returncode in (0, 1), result.stderr  # was: a TypeError traceback
    assert "Traceback" not in result.stderr and "TypeError" not in result.stderr
    assert " 0 " in result.stdout.splitlines()[3]  # no paper from it


def test_ingest_refuses_a_fifo_instead_of_hanging(tmp_path):
    os.mkfifo(tmp_path / "pipe")
    result = run(["ingest", "pipe"], tmp_path, timeout=60)  # was: blocked forever
    assert result.returncode == 1
    assert "not a regular file" in result.stderr
    with pytest.raises(SourceError, match="not a regular file"):
        read_path(tmp_path / "pipe")


# Shaped like the log that became 51 "papers": a short line, then a longer one, 51 times.
PIP_LOG = "\n".join(
    f"Collecting package-{n}>=1.{n}\n  Downloading package_{n}-1.{n}.0-py3-none-any.whl "
    f"({n}4 kB). Requirement already satisfied: typing-extensions in ./.venv/lib/python3.11/"
    f"site-packages (from package-{n}) (4.12.2)."
    for n in range(51)
)


def test_a_folder_ingests_its_paper_files_and_leaves_out_a_pip_log(tmp_path):
    folder = tmp_path / "papers"
    folder.mkdir()
    shutil.copy(SAMPLES / "daily-papers-0.txt", folder)
    (folder / "pip.log").write_text(PIP_LOG)
    (folder / "notes.txt").write_text("Buy milk.\nCall Bob about the review.\n" * 30)
    assert len(read_path(folder / "pip.log").records) == 51  # named by hand, it is still tried
    result = run(["ingest", "papers"], tmp_path)
    assert result.returncode == 0, result.stderr
    [page] = [line for line in result.stdout.splitlines() if "daily-papers-0" in line]
    assert " 68 " in page
    for stray in ("pip.log", "notes.txt"):
        [row] = [line for line in result.stdout.splitlines() if stray in line]
        cells = [cell.strip() for cell in row.split("│")[1:-1]]
        assert cells[1:3] == ["0", "0"] and cells[-1] == "", row  # parsed 0, new 0, no error


def test_papers_remove_deletes_a_mistake(tmp_path):
    (tmp_path / "pip.log").write_text(PIP_LOG)
    ingested = run(["ingest", "pip.log"], tmp_path)  # named by hand: the person asked for it
    assert ingested.returncode == 0, ingested.stderr
    from sqlalchemy import create_engine, text

    engine = create_engine(f"sqlite:///{tmp_path / 'var' / 'papermail.db'}")
    with engine.connect() as connection:
        ids = [row[0] for row in connection.execute(text("SELECT id FROM paper"))]
    assert ids
    removed = run(["papers", "remove", "--yes", *ids, "no-such-paper"], tmp_path)
    assert f"removed {len(ids)} paper(s)" in removed.stdout
    assert "no paper 'no-such-paper'" in removed.stderr and removed.returncode == 1
    with engine.connect() as connection:
        assert connection.execute(text("SELECT count(*) FROM paper")).scalar() == 0
    engine.dispose()
