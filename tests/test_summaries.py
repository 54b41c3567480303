"""The TL;DR: the source's AI summary, else the abstract's contribution sentence, else its first."""

from __future__ import annotations

import pytest

from papermail.summaries import (
    AI_SUMMARY,
    FROM_ABSTRACT,
    TLDR_CHARS,
    contribution_sentence,
    sentences,
    tldr,
)


@pytest.mark.parametrize(
    ("abstract", "expected"),
    [
        (
            "Transformers are slow on long inputs. Attention is quadratic. "
            "We propose Mamba-2, a state space model that is 8x faster. It wins on LRA.",
            "We propose Mamba-2, a state space model that is 8x faster.",
        ),
        (
            "Large models forget. In this paper, we introduce a replay buffer. Results follow.",
            "In this paper, we introduce a replay buffer.",
        ),
        (
            "Benchmarks saturate. This paper presents a harder suite of 40 tasks.",
            "This paper presents a harder suite of 40 tasks.",
        ),
        (
            "Agents fail at long tasks. Here we present AgentBench, e.g. for web tasks. Done.",
            "Here we present AgentBench, e.g. for web tasks.",
        ),
        (
            "Scaling laws hold (Kaplan et al. 2020). We show they break for MoE. We also study X.",
            "We show they break for MoE.",
        ),
        (  # "propose" beats an earlier weaker "show"
            "We show that routing collapses. We then propose a balanced router.",
            "We then propose a balanced router.",
        ),
        (  # no contribution verb: the first sentence
            "Reward models are over-confident on held-out pairs. Calibration halves the error.",
            "Reward models are over-confident on held-out pairs.",
        ),
        ("One sentence without a full stop", "One sentence without a full stop"),
    ],
)
def test_contribution_sentence(abstract: str, expected: str) -> None:
    assert contribution_sentence(abstract) == expected


def test_sentences_do_not_split_on_abbreviations() -> None:
    text = "We use e.g. GPT-4 as in Smith et al. 2020 and Fig. 3. Then we stop."
    assert sentences(text) == [
        "We use e.g. GPT-4 as in Smith et al. 2020 and Fig. 3.",
        "Then we stop.",
    ]


def test_long_sentences_are_cut_at_a_word() -> None:
    long = "We propose " + "a very long method name " * 40 + "."
    cut = contribution_sentence(long)
    assert len(cut) <= TLDR_CHARS + 1 and cut.endswith("…") and " " in cut


def test_tldr_prefers_the_ai_summary_and_says_which() -> None:
    assert tldr("  A short  summary. ", "We propose X.") == ("A short summary.", AI_SUMMARY)
    assert tldr(None, "Background. We propose X.") == ("We propose X.", FROM_ABSTRACT)
    assert tldr("", "Background only.") == ("Background only.", FROM_ABSTRACT)
    assert tldr(None, "   ") == ("", "")
