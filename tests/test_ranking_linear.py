"""Issue 15 #8: no input makes the text patterns backtrack; a huge word is scored at once."""

from __future__ import annotations

import random
import re
import time

import pytest

from papermail.ranking import Keyword, PaperText, RelevanceModel, rank_one, text

NORMAL = PaperText("Linear attention for Mixture-of-Experts (MoE) LLMs", "We study MoE models.")


@pytest.mark.parametrize(
    "word",
    [
        "A" * 1_000_000,  # the reported title: one capital-letter word of 1 MB
        "ABCDEFGHIJ" * 100_000 + "s",  # an "acronym plural"
        "." * 1_000_000 + "x",  # a run of sentence marks not followed by a space
        "1" * 1_000_000 + "x",
        " " + "-" * 1_000_000 + "x",
    ],
    ids=["capitals", "acronym-plural", "marks", "digits", "dashes"],
)
def test_a_one_megabyte_word_is_scored_in_well_under_a_second(word):
    papers = [NORMAL, PaperText(word, "Mixture of experts. " + word[:1000])]
    started = time.perf_counter()
    model = RelevanceModel.fit(papers)
    matches = rank_one(model, papers, [Keyword("MoE")], min_score=0.0, limit=5)
    elapsed = time.perf_counter() - started
    assert 0 in {m.index for m in matches}
    assert elapsed < 2.0, f"{elapsed:.1f} s: a pattern backtracks"  # was minutes


def test_patterns_keep_their_meaning():
    """The linear patterns split and match exactly as the old backtracking ones did."""
    old_break = re.compile(r"[.!?;:]+(?=\s|$)|[,()\[\]{}\"“”|/]|\s[-–—]+\s")
    old_token = re.compile(r"\d+(?:\.\d+)+|[^\W_]+")
    old_plural = re.compile(r"[A-Z][A-Za-z0-9]*[A-Z][A-Za-z0-9]*s")
    rnd = random.Random(15)
    for _ in range(20_000):
        s = "".join(rnd.choice("aAsSZz09.!?;: ,-–\n()_é") for _ in range(rnd.randint(0, 14)))
        assert text._BREAK.split(s) == old_break.split(s), s
        assert text._TOKEN.findall(s) == old_token.findall(s), s
        assert bool(text._ACRONYM_PLURAL.fullmatch(s)) == bool(old_plural.fullmatch(s)), s
    analyzer = text.Analyzer()
    assert list(analyzer("LLMs and ViTs.")) == ["llm", "vit", "llm vit"]
    assert list(analyzer("1.58-bit models... next")) == [
        "1.58",
        "bit",
        "model",
        "1.58 bit",
        "bit model",
    ]
