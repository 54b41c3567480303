"""Stored paper vectors for the optional dense signal (``SEMANTIC``, ``ranking.dense``).

A paper is encoded once: at ingest, after its source's transaction has committed, and otherwise
the first time scoring asks for it (``load_vectors``). A vector is kept with the model that made
it and a fingerprint of the text it was made from, so a model change or a revised abstract
re-encodes it and nothing else does. Encoding never puts ingested papers at risk: it runs in its
own transactions and a failure is logged, leaving the missing vectors to ``load_vectors``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

import numpy as np
from sqlalchemy import and_, or_
from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from papermail.db import session_scope
from papermail.models import Paper, PaperEmbedding
from papermail.ranking import dense
from papermail.settings import Settings

log = logging.getLogger(__name__)

# Papers handled per transaction by `embed_pending`, and ids per IN (...) list.
CHUNK = 512
# Older papers without a vector encoded by one ingest (newest first): turning SEMANTIC on over a
# full database spreads the backfill over several days instead of one very long ingest
# (MiniLM encodes ~5-15 papers/s on two busy cores); scoring encodes what it needs meanwhile.
BACKFILL_LIMIT = 2000


def _chunks(items: Sequence[str], size: int = CHUNK) -> Iterable[Sequence[str]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _store(session: Session, rows: list[dict[str, object]]) -> None:
    """Insert or replace vectors: two processes encoding one paper at once both succeed."""
    if not rows:
        return
    table = PaperEmbedding.__table__  # type: ignore[attr-defined]
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert
    else:  # pragma: no cover - papermail runs on SQLite and PostgreSQL
        for row in rows:
            session.merge(PaperEmbedding(**row))
        return
    statement = insert(table)
    statement = statement.on_conflict_do_update(
        index_elements=["paper_id"],
        set_={name: statement.excluded[name] for name in ("model", "text_hash", "vector")},
    )
    session.execute(statement, rows)


def _ensure(
    session: Session, paper_ids: Sequence[str], *, batch_size: int
) -> tuple[dict[str, np.ndarray], int]:
    """Vectors of the given papers, encoding and storing the missing or stale ones; also how
    many were encoded. Unknown ids are left out."""
    found: dict[str, np.ndarray] = {}
    todo: list[tuple[str, str, str]] = []  # (paper id, text, text hash)
    for chunk in _chunks(list(dict.fromkeys(paper_ids))):
        rows = session.exec(
            select(
                Paper.id,
                Paper.title,
                Paper.abstract,
                PaperEmbedding.model,
                PaperEmbedding.text_hash,
                PaperEmbedding.vector,
            )
            .outerjoin(PaperEmbedding, col(PaperEmbedding.paper_id) == col(Paper.id))
            .where(col(Paper.id).in_(chunk))
        )
        for pid, title, abstract, model, stored_hash, blob in rows:
            text = dense.paper_text(title, abstract)
            digest = dense.text_hash(text)
            if blob is not None and model == dense.MODEL_NAME and stored_hash == digest:
                found[pid] = dense.unpack(blob)
            else:
                todo.append((pid, text, digest))
    if todo:
        vectors = dense.encode([text for _, text, _ in todo], batch_size=batch_size)
        _store(
            session,
            [
                {
                    "paper_id": pid,
                    "model": dense.MODEL_NAME,
                    "text_hash": digest,
                    "vector": dense.pack(vector),
                }
                for (pid, _, digest), vector in zip(todo, vectors, strict=True)
            ],
        )
        found.update((pid, vector) for (pid, _, _), vector in zip(todo, vectors, strict=True))
    return found, len(todo)


def load_vectors(session: Session, paper_ids: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """The papers' vectors, one float32 L2-normalized row per id in the given order
    (``len(paper_ids) x dense.DIM``); an id with no stored paper gets a zero row.

    Missing or stale vectors are encoded and written in the caller's transaction (committed with
    it). Raises ``RuntimeError`` naming ``papermail[semantic]`` when the extra is missing and some
    vector has to be encoded."""
    found, _ = _ensure(session, paper_ids, batch_size=batch_size)
    matrix = np.zeros((len(paper_ids), dense.DIM), dtype=np.float32)
    for row, pid in enumerate(paper_ids):
        vector = found.get(pid)
        if vector is not None:
            matrix[row] = vector
    return matrix


def pending_ids(
    session: Session,
    *,
    since: datetime,
    window_start: datetime | None = None,
    backfill_limit: int = BACKFILL_LIMIT,
) -> list[str]:
    """Papers that may need a vector: stored, changed or revised from `since` on (their text may
    be new), then up to `backfill_limit` papers first seen from `window_start` on that have no
    vector of the current model, newest first."""
    touched = or_(
        col(Paper.first_seen_at) >= since,
        col(Paper.updated_at) >= since,
        col(Paper.revised_at) >= since,
    )
    ids = list(session.exec(select(Paper.id).where(touched).order_by(col(Paper.id))))
    if window_start is None or backfill_limit <= 0:
        return ids
    unencoded = or_(
        col(PaperEmbedding.paper_id).is_(None), col(PaperEmbedding.model) != dense.MODEL_NAME
    )
    backfill = session.exec(
        select(Paper.id)
        .outerjoin(PaperEmbedding, col(PaperEmbedding.paper_id) == col(Paper.id))
        .where(and_(col(Paper.first_seen_at) >= window_start, unencoded))
        .order_by(col(Paper.first_seen_at).desc(), col(Paper.id))
        .limit(backfill_limit)
    )
    return list(dict.fromkeys([*ids, *backfill]))


def embed_pending(
    engine: Engine,
    *,
    since: datetime,
    window_start: datetime | None = None,
    batch_size: int = 64,
) -> int:
    """Encode and store the vectors `pending_ids` finds missing or stale, CHUNK papers per
    transaction; returns how many were encoded."""
    with Session(engine) as session:
        ids = pending_ids(session, since=since, window_start=window_start)
    encoded = 0
    started = time.perf_counter()
    for chunk in _chunks(ids):
        with session_scope(engine) as session:
            encoded += _ensure(session, chunk, batch_size=batch_size)[1]
    if encoded:
        elapsed = time.perf_counter() - started
        log.info("encoded %d paper vectors in %.1f s (%s)", encoded, elapsed, dense.MODEL_NAME)
    return encoded


def embed_after_ingest(engine: Engine, settings: Settings, *, since: datetime) -> int:
    """Ingest's last step when ``SEMANTIC`` is on: vectors for the papers just stored or changed,
    and for up to BACKFILL_LIMIT papers of the last CORPUS_DAYS that still lack one. Never
    raises: the papers are already committed, and scoring encodes whatever is still missing."""
    try:
        return embed_pending(
            engine, since=since, window_start=since - timedelta(days=settings.corpus_days)
        )
    except Exception:
        log.exception("encoding paper vectors failed; papers are stored, vectors come later")
        return 0
