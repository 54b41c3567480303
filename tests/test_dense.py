"""The optional dense signal: the real bundled MiniLM encoder and the stored paper vectors.

Nothing here is mocked: the model is the one the `semantic` extra installs, loaded offline from
its package, and the vectors go through SQLite and PostgreSQL.
"""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect
from sqlmodel import Session, func, select

from papermail.db import create_tables, make_engine, session_scope
from papermail.migrate import downgrade, upgrade
from papermail.models import Paper, PaperEmbedding
from papermail.ranking import dense
from papermail.services.embeddings import embed_pending, load_vectors, pending_ids
from papermail.services.ingest import ingest_result, ingest_sources
from papermail.sources import PaperRecord, ParseResult
from tests.conftest import make_settings

LINEAR_ATTENTION = (
    "Transformers are RNNs: fast autoregressive transformers with linear attention. We express "
    "self-attention as a linear dot-product of kernel feature maps and make use of the "
    "associativity of matrix products to reduce the complexity from quadratic to linear in the "
    "sequence length, which speeds up autoregressive transformers by orders of magnitude."
)
SEGMENTATION = (
    "A U-Net with attention gates for segmenting the pancreas and liver tumours in abdominal CT "
    "scans. We evaluate on two clinical datasets and report Dice scores against radiologists' "
    "manual annotations of the organs."
)
WHEN = datetime(2026, 11, 23, 6, tzinfo=UTC)


def _embedding_rows(engine) -> list[PaperEmbedding]:
    with Session(engine) as session:
        return list(session.exec(select(PaperEmbedding)))


def _paper_count(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(Paper)).one()


def test_encode_gives_float32_unit_rows_of_384():
    vectors = dense.encode(["linear attention transformers", LINEAR_ATTENTION, SEGMENTATION])
    assert vectors.shape == (3, dense.DIM) == (3, 384)
    assert vectors.dtype == np.float32
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    assert dense.encode([]).shape == (0, 384)


def test_a_paraphrase_is_closer_than_an_unrelated_abstract():
    query, related, unrelated = dense.encode(
        ["linear attention transformers", LINEAR_ATTENTION, SEGMENTATION]
    )
    assert float(query @ related) > float(query @ unrelated) + 0.3


def test_batches_do_not_change_vectors():
    texts = [LINEAR_ATTENTION, SEGMENTATION, "mixture of experts", "state space models"]
    assert np.allclose(dense.encode(texts, batch_size=1), dense.encode(texts), atol=1e-5)


def test_paper_text_is_title_then_abstract_cut_to_what_the_model_reads():
    assert dense.paper_text(" A  Title. ", "An\nabstract.") == "A Title. An abstract."
    assert dense.paper_text("Only a title", "") == "Only a title"
    long = dense.paper_text("T", " ".join(["word"] * 1000))
    assert len(long.split()) == dense.MAX_WORDS


def test_pack_round_trip_is_compact_and_close():
    vector = dense.encode([LINEAR_ATTENTION])[0]
    blob = dense.pack(vector)
    assert len(blob) == 2 * dense.DIM
    assert np.allclose(dense.unpack(blob), vector, atol=2e-3)
    matrix = dense.unpack_many([blob, blob])
    assert matrix.shape == (2, dense.DIM)
    assert np.allclose(np.linalg.norm(matrix, axis=1), 1.0, atol=1e-5)


def test_importing_the_ranking_does_not_import_torch():
    code = (
        "import sys, papermail.ranking, papermail.ranking.dense as d, papermail.services.ingest;"
        "assert d.available();"
        "print(sorted(m for m in ('torch', 'sentence_transformers') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _without_network(argv: list[str]) -> list[str]:
    """Run in a network namespace of its own (no interface but loopback) where the machine
    allows it (root, as on the developers' machines and CI); else just with the hub offline."""
    unshare = shutil.which("unshare")
    if unshare and subprocess.run([unshare, "-n", "true"], capture_output=True).returncode == 0:
        return [unshare, "-n", *argv]
    return argv


def test_the_model_loads_with_the_hub_offline():
    code = (
        "import os; os.environ['HF_HUB_OFFLINE'] = '1'; os.environ['TRANSFORMERS_OFFLINE'] = '1';"
        "from papermail.ranking import dense;"
        "assert dense.model_dir().joinpath('model.safetensors').is_file();"
        "print(dense.encode(['offline']).shape)"
    )
    argv = _without_network([sys.executable, "-c", code])
    out = subprocess.run(argv, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(1, 384)"


@pytest.fixture
def semantic(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url=database_url, semantic=True)
    engine = make_engine(settings)
    create_tables(engine)
    yield settings, engine
    engine.dispose()


def test_ingest_with_semantic_stores_one_vector_per_paper_once(semantic, seeds_dir, caplog):
    settings, engine = semantic
    source = str(seeds_dir / "daily-papers-1.txt")
    caplog.set_level(logging.INFO, logger="papermail.services.embeddings")
    reports = ingest_sources(engine, settings, [source], now=WHEN)
    assert all(r.ok for r in reports) and sum(r.inserted for r in reports) > 0

    rows = _embedding_rows(engine)
    assert len(rows) == _paper_count(engine)
    assert {row.model for row in rows} == {dense.MODEL_NAME}
    assert all(len(row.vector) == 2 * dense.DIM for row in rows)
    assert any("encoded" in r.getMessage() for r in caplog.records)

    caplog.clear()
    ingest_sources(engine, settings, [source], now=WHEN + timedelta(days=1))
    assert not any("encoded" in r.getMessage() for r in caplog.records)
    assert embed_pending(engine, since=WHEN - timedelta(days=1), window_start=WHEN) == 0
    assert [(r.paper_id, r.vector) for r in _embedding_rows(engine)] == [
        (r.paper_id, r.vector) for r in rows
    ]


def test_turning_semantic_on_backfills_recent_papers_newest_first(tmp_path, database_url):
    plain = make_settings(tmp_path, database_url=database_url)
    engine = make_engine(plain)
    create_tables(engine)
    try:
        for day in range(5):
            record = PaperRecord(
                title=f"Paper {day}", abstract=SEGMENTATION, source="t", arxiv_id=f"2401.0000{day}"
            )
            ingest_result(engine, "t", ParseResult(records=[record]), now=WHEN + timedelta(day))
        later = WHEN + timedelta(days=30)
        with Session(engine) as session:
            newest = pending_ids(session, since=later, window_start=WHEN, backfill_limit=2)
            none = pending_ids(session, since=later)
        assert newest == ["2401.00004", "2401.00003"] and none == []

        # An ingest with SEMANTIC on (and no source) encodes the papers of its window.
        semantic = plain.model_copy(update={"semantic": True, "corpus_days": 29})
        ingest_sources(engine, semantic, [], now=later)
        assert {r.paper_id for r in _embedding_rows(engine)} == {
            f"2401.0000{day}" for day in range(1, 5)
        }
    finally:
        engine.dispose()


def test_ingest_without_semantic_stores_no_vectors(engine, settings, seeds_dir):
    ingest_sources(engine, settings, [str(seeds_dir / "daily-papers-1.txt")], now=WHEN)
    assert _paper_count(engine) > 0
    assert _embedding_rows(engine) == []


def test_a_failure_to_encode_keeps_the_papers(tmp_path, database_url, seeds_dir, caplog):
    # A real failure inside the encoding step: a window reaching before year 1.
    settings = make_settings(
        tmp_path, database_url=database_url, semantic=True, corpus_days=999_999
    )
    engine = make_engine(settings)
    create_tables(engine)
    try:
        reports = ingest_sources(engine, settings, [str(seeds_dir / "daily-papers-1.txt")])
        assert all(r.ok for r in reports)
        assert _paper_count(engine) == sum(r.inserted for r in reports) > 0
        assert _embedding_rows(engine) == []
        assert "encoding paper vectors failed" in caplog.text
    finally:
        engine.dispose()


def test_load_vectors_fills_gaps_keeps_order_and_follows_text_changes(engine):
    first = PaperRecord(
        title="Linear attention",
        abstract=LINEAR_ATTENTION,
        source="t",
        arxiv_id="2401.00001",
        version=1,
    )
    second = PaperRecord(
        title="Organ segmentation", abstract=SEGMENTATION, source="t", arxiv_id="2401.00002v1"
    )
    ingest_result(engine, "t", ParseResult(records=[first, second]), now=WHEN)
    assert _embedding_rows(engine) == []  # the default settings: SEMANTIC off

    ids = ["2401.00002", "nope", "2401.00001"]
    with session_scope(engine) as session:
        matrix = load_vectors(session, ids)
    assert matrix.shape == (3, dense.DIM) and matrix.dtype == np.float32
    expected = dense.encode([dense.paper_text(r.title, r.abstract) for r in (second, first)])
    assert np.allclose(matrix[[0, 2]], expected, atol=2e-3)
    assert not matrix[1].any()
    stored = {row.paper_id: row.text_hash for row in _embedding_rows(engine)}
    assert set(stored) == {"2401.00001", "2401.00002"}

    revised = PaperRecord(
        title="Linear attention",
        abstract=SEGMENTATION,
        source="t",
        arxiv_id="2401.00001",
        version=2,
    )
    ingest_result(engine, "t", ParseResult(revisions=[revised]), now=WHEN + timedelta(days=1))
    with session_scope(engine) as session:
        again = load_vectors(session, ["2401.00001", "2401.00002"])
    after = {row.paper_id: row.text_hash for row in _embedding_rows(engine)}
    assert after["2401.00002"] == stored["2401.00002"]
    assert after["2401.00001"] != stored["2401.00001"]
    assert float(again[0] @ again[1]) > 0.9  # both now embed the segmentation abstract


def test_migration_adds_and_drops_the_table_keeping_papers(database_url):
    engine = create_engine(database_url)
    try:
        upgrade(engine, "0003_paper_details")
        assert "paperembedding" not in inspect(engine).get_table_names()
        upgrade(engine)
        assert "paperembedding" in inspect(engine).get_table_names()
        ingest_result(
            engine,
            "t",
            ParseResult(records=[PaperRecord(title="T", abstract="A.", source="t")]),
        )
        with session_scope(engine) as session:
            load_vectors(session, [session.exec(select(Paper.id)).one()])
        assert len(_embedding_rows(engine)) == 1
        downgrade(engine, "0003_paper_details")
        assert "paperembedding" not in inspect(engine).get_table_names()
        assert _paper_count(engine) == 1
        upgrade(engine)
    finally:
        engine.dispose()


def test_without_the_extra_encoding_says_what_to_install(tmp_path):
    # A real interpreter without the extra: every installed package but torch,
    # sentence-transformers and the model package, and papermail from this checkout.
    site = tmp_path / "site"
    site.mkdir()
    installed = Path(np.__file__).resolve().parents[1]
    left_out = ("torch", "functorch", "sentence_transformers", dense.MODEL_PACKAGE)
    for entry in installed.iterdir():
        if not entry.name.lower().startswith(left_out):
            (site / entry.name).symlink_to(entry)
    source = Path(dense.__file__).resolve().parents[2]
    code = (
        f"import sys; sys.path[:0] = [{str(source)!r}, {str(site)!r}];"
        "import papermail.ranking; from papermail.ranking import dense as d;"
        "assert not d.available();"
        "assert d.encode([]).shape == (0, 384);"
        "d.encode(['x'])"
    )
    out = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True)
    assert out.returncode != 0
    assert "RuntimeError" in out.stderr and "pip install 'papermail[semantic]'" in out.stderr
