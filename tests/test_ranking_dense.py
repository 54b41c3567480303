"""Dense fusion (papermail[semantic]) with the real bundled MiniLM: a paper that says what a
keyword means in other words is found, and says why; without the vectors nothing changes."""

from __future__ import annotations

from dataclasses import replace

from papermail.ranking import Keyword, PaperText, RankOptions, RelevanceModel, dense, rank, rank_one
from papermail.ranking.batch import MEANING_PREFIX

PAPERS = [
    PaperText(
        "A fast text-to-speech model",
        "Our text-to-speech system reads any sentence aloud with a natural prosody.",
    ),
    PaperText(
        "Natural voices from written sentences",
        "Our vocoder turns written sentences into natural human voices.",
    ),
    PaperText("Graph neural networks for molecules", "We predict molecular properties."),
    PaperText("Image classification benchmarks", "We compare convolutional networks."),
    PaperText("Reinforcement learning for robots", "Policies learned in simulation."),
]
NO_FEEDBACK = RankOptions(prf=0.0, context=0.0)


def test_dense_fusion_finds_a_paraphrase_and_says_it_is_one():
    assert dense.available(), "the test extra installs papermail[semantic]"
    model = RelevanceModel.fit(PAPERS)
    vectors = dense.encode([dense.paper_text(p.title, p.abstract) for p in PAPERS])
    meaning = dense.meaning(vectors)
    query = [Keyword("text-to-speech")]
    words_only = rank_one(model, PAPERS, query, min_score=0.05, limit=5, options=NO_FEEDBACK)
    assert [m.index for m in words_only] == [0]
    fused = rank(
        model,
        PAPERS,
        [replace_profile(query)],
        min_score=0.05,
        options=replace(NO_FEEDBACK, dense=0.3),
        meaning=meaning,
    )[None]
    assert [m.index for m in fused][:2] == [0, 1]
    assert fused[0].matched == ("text-to-speech",)  # words first, where the paper has them
    assert fused[1].matched == (f"{MEANING_PREFIX}text-to-speech”",)
    unrelated = {m.index: m.score for m in fused}
    assert all(unrelated.get(i, 0) < fused[1].score for i in range(2, len(PAPERS)))


def test_without_vectors_dense_weight_changes_nothing():
    model = RelevanceModel.fit(PAPERS)
    query = [Keyword("text-to-speech")]
    plain = rank_one(model, PAPERS, query, min_score=0.0, limit=5)
    weighted = rank_one(
        model, PAPERS, query, min_score=0.0, limit=5, options=RankOptions(dense=0.3)
    )
    assert [(m.index, m.score) for m in plain] == [(m.index, m.score) for m in weighted]


def replace_profile(keywords):
    from papermail.ranking import Profile

    return Profile(None, tuple(keywords), 5)
