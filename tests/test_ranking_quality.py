"""What makes the ranking trustworthy, as properties: acronyms, phrases, stems, titles,
exclusions, feedback, popularity and diversity. No exact scores."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from papermail.ranking import (
    Feedback,
    Keyword,
    ModelConfig,
    PaperText,
    Profile,
    RankOptions,
    RelevanceModel,
    rank,
    rank_one,
)
from papermail.ranking.batch import RELATED_PREFIX
from papermail.ranking.corpus import load_corpus
from papermail.ranking.evaluation import PLAIN_CONFIG, PLAIN_OPTIONS
from papermail.ranking.text import phrase_terms
from papermail.settings import Settings

SENT_FLOOR = Settings.model_fields["min_score"].default  # what a digest sends: MIN_SCORE

FILLER = [
    PaperText("Graph neural networks for molecules", "We predict molecular properties."),
    PaperText("Speech recognition at scale", "An acoustic model trained on many hours."),
    PaperText("Reinforcement learning for robots", "Policies learned in simulation."),
    PaperText("Image classification benchmarks", "We compare convolutional networks."),
]


def indexes(found) -> list[int]:
    return [m.index for m in found]


@pytest.fixture(scope="module")
def seeds(seeds_dir: Path) -> list[PaperText]:
    _, papers, _ = load_corpus([seeds_dir])
    assert len(papers) == 619
    return papers


@pytest.fixture(scope="module")
def seed_model(seeds) -> RelevanceModel:
    return RelevanceModel.fit(seeds)


def test_an_acronym_finds_its_long_form_and_back():
    papers = [
        PaperText("Routing tokens in a sparse mixture-of-experts", "Experts are chosen per token."),
        PaperText("Scaling MoE language models", "Our MoE layer has 64 experts."),
        *FILLER,
    ]
    model = RelevanceModel.fit(papers)
    first, second, *rest = rank_one(model, papers, [Keyword("MoE")], min_score=0.0, limit=5)
    assert {first.index, second.index} == {0, 1}
    assert all(m.score < SENT_FLOOR for m in rest)
    via = {m.index: m.reasons[0].via for m in (first, second)}
    assert via == {0: "mixture of experts", 1: ""}
    back = rank_one(model, papers, [Keyword("mixture of experts")], min_score=SENT_FLOOR, limit=5)
    assert set(indexes(back)) == {0, 1}
    plain = RelevanceModel.fit(papers, PLAIN_CONFIG)
    assert indexes(
        rank_one(plain, papers, [Keyword("MoE")], min_score=0.0, limit=5, options=PLAIN_OPTIONS)
    ) == [1]


def test_acronyms_are_learned_from_the_corpus():
    """ "Quasi Recurrent Gating (QRG)" defined twice teaches QRG; a paper that only says "quasi
    recurrent gating" is then found by the acronym (no synonyms file lists it)."""
    papers = [
        PaperText("Quasi recurrent gating (QRG) for text", "QRG is fast."),
        PaperText("Deep QRG stacks", "We stack quasi recurrent gating (QRG) layers."),
        PaperText("Training quasi recurrent gating networks", "Stable and simple."),
        *FILLER,
    ]
    model = RelevanceModel.fit(papers)
    assert set(indexes(rank_one(model, papers, [Keyword("QRG")], min_score=0.0, limit=5))) == {
        0,
        1,
        2,
    }
    taught = {m.index: m for m in rank_one(model, papers, [Keyword("QRG")], min_score=0.0, limit=5)}
    assert taught[2].matched == ("QRG",) and taught[2].reasons[0].via == "quasi recurrent gating"
    blind = RelevanceModel.fit(papers, ModelConfig(learn_acronyms=False))
    found = {m.index: m for m in rank_one(blind, papers, [Keyword("QRG")], min_score=0.0, limit=5)}
    # Without the acronym, only its resemblance to the QRG papers can bring it, and says so.
    assert 2 not in found or found[2].matched[0].startswith(RELATED_PREFIX)
    assert 2 not in found or found[2].score < min(found[0].score, found[1].score) / 2


def test_an_acronym_defined_with_another_meaning_does_not_match():
    papers = [
        PaperText(
            "Streaming ASR with transducers", "Automatic speech recognition (ASR) on device."
        ),
        PaperText(
            "Jailbreaking vision language models",
            "Our attack raises the attack success rate (ASR) to 90%. ASR is measured twice.",
        ),
        *FILLER,
    ]
    model = RelevanceModel.fit(papers)
    found = rank_one(model, papers, [Keyword("ASR")], min_score=0.0, limit=5)
    assert indexes(found)[0] == 0 and 1 not in indexes(found)  # never the attack success rate


def test_a_phrase_beats_scattered_words():
    phrase = PaperText(
        "Efficient sequence modeling", "We study state space models for long sequences."
    )
    scattered = PaperText(
        "Robot control", "The state is observed. The space of actions is large. Models are small."
    )
    papers = [scattered, phrase, *FILLER]
    model = RelevanceModel.fit(papers)
    found = rank_one(model, papers, [Keyword("state space models")], min_score=0.0, limit=5)
    assert indexes(found)[:2] == [1, 0]  # no cliff (partial matches rank), but far below
    assert found[1].score < found[0].score / 3
    assert found[0].matched == ("state space models",)
    assert found[1].matched == ("state … space … models",)  # the words, apart: no false claim
    plain = RelevanceModel.fit(papers, PLAIN_CONFIG)
    loose = rank_one(
        plain,
        papers,
        [Keyword("state space models")],
        min_score=0.0,
        limit=5,
        options=PLAIN_OPTIONS,
    )
    assert indexes(loose)[:2] == [1, 0]  # what plain cosine did: the scattered words count


def test_most_of_a_long_phrase_is_a_near_match():
    near = PaperText("Mamba", "State space layers are sequence models.")
    papers = [near, *FILLER]
    model = RelevanceModel.fit(papers)
    match, *rest = rank_one(model, papers, [Keyword("state space models")], min_score=0.0, limit=5)
    assert match.index == 0 and all(m.score < SENT_FLOOR for m in rest)
    assert match.index == 0 and not match.reasons[0].exact
    assert match.matched == ("state space … models",)


def test_a_four_word_query_with_one_stray_word_returns_nothing(seeds, seed_model):
    query = [Keyword("quantum chromodynamics lattice gauge")]
    assert rank_one(seed_model, seeds, query, min_score=SENT_FLOOR, limit=10) == []
    for match in rank_one(seed_model, seeds, query, min_score=0.0, limit=10):
        assert match.score < SENT_FLOOR / 2  # a crumb of a score, never sent...
        assert match.matched[0] in {"quantum", "lattice", "gauge"} or match.matched[0].startswith(
            RELATED_PREFIX
        )  # ...and it says which one word it shares
    plain = RelevanceModel.fit(seeds, PLAIN_CONFIG)
    before = rank_one(plain, seeds, query, min_score=0.0, limit=10, options=PLAIN_OPTIONS)
    assert before, "plain cosine returned papers sharing one of the four words"
    for match in before:
        words = set(plain.analyzer(f"{seeds[match.index].title} {seeds[match.index].abstract}"))
        assert len(words & {"quantum", "chromodynamics", "lattice", "gauge"}) == 1


def test_stems_and_head_first_word_order():
    papers = [
        PaperText(
            "Segmenting organs in CT scans", "A network for the segmentation of medical images."
        ),
        PaperText("Distilled students", "The student distills knowledge from a large teacher."),
        *FILLER,
    ]
    model = RelevanceModel.fit(papers)
    found = rank_one(model, papers, [Keyword("medical image segmentation")], min_score=0.0, limit=5)
    assert indexes(found)[0] == 0 and found[0].matched == ("medical image segmentation",)
    assert all(m.score < found[0].score / 3 for m in found[1:])
    found = rank_one(model, papers, [Keyword("knowledge distillation")], min_score=0.0, limit=5)
    assert indexes(found)[0] == 1 and found[0].matched == ("knowledge distillation",)
    assert all(m.score < found[0].score / 3 for m in found[1:])
    unstemmed = RelevanceModel.fit(papers, ModelConfig(stemming=False))
    assert rank_one(unstemmed, papers, [Keyword("segment")], min_score=0.0, limit=5) == []
    assert indexes(
        rank_one(model, papers, [Keyword("segment")], min_score=SENT_FLOOR, limit=5)
    ) == [0]


def test_numbers_and_hyphenated_terms():
    papers = [
        PaperText("The era of 1.58-bit LLMs", "Ternary weights for every layer."),
        PaperText("58-bit arithmetic", "Wide integers."),
        *FILLER,
    ]
    model = RelevanceModel.fit(papers)
    for query in ("1.58-bit", "1.58 bit LLM"):
        found = rank_one(model, papers, [Keyword(query)], min_score=0.0, limit=5)
        assert indexes(found)[0] == 0 and found[0].matched == (query,)
        for other in found[1:]:  # "58-bit" only shares "bit", and says only that
            label = other.matched[0]
            assert other.score < found[0].score / 3
            assert label.startswith(RELATED_PREFIX) or "1.58" not in label


def test_a_title_match_ranks_above_a_passing_mention():
    long_abstract = " ".join(f"Sentence {i} about vision and robots." for i in range(12))
    papers = [
        PaperText("Robots that see", f"{long_abstract} We also use linear attention once."),
        PaperText("Linear attention for robots", f"{long_abstract}"),
        *FILLER,
    ]
    model = RelevanceModel.fit(papers)
    found = rank_one(model, papers, [Keyword("linear attention")], min_score=0.0, limit=5)
    assert indexes(found)[:2] == [1, 0]
    assert [m.where for m in found[:2]] == [("title",), ("abstract",)]


def test_an_excluded_keyword_never_appears(seeds, seed_model):
    rng = random.Random(5)
    phrases = ["linear attention", "diffusion", "video", "LLM", "quantization", "MoE", "speech"]
    profiles = []
    for key in range(60):
        wanted, unwanted = rng.sample(phrases, 2)
        keywords = (Keyword(wanted), Keyword(unwanted, negative=True))
        profiles.append(Profile(key, keywords, limit=rng.choice([5, 20])))
    found = rank(seed_model, seeds, profiles, min_score=0.0)
    assert sum(map(len, found.values())) > 300
    for profile in profiles:
        unwanted = next(k.phrase for k in profile.keywords if k.negative)
        banned = set(seed_model.tokens(unwanted))
        expansions = {
            t
            for alternative, _ in seed_model.expander.alternatives(tuple(banned))
            for t in alternative
        }
        phrase = set(phrase_terms(seed_model.tokens(unwanted)))  # its words and bigrams
        for match in found[profile.key]:
            paper = seeds[match.index]
            for text in (paper.title, paper.abstract):
                terms = set(seed_model.analyzer(text))
                assert not phrase <= terms, (unwanted, paper.title)
                if len(expansions) == 1:
                    assert not expansions <= terms, (unwanted, paper.title)


def test_excluded_keywords_can_demote_instead(seeds, seed_model):
    keywords = (Keyword("linear attention"), Keyword("diffusion", negative=True))
    demote = RankOptions(negative_factor=0.3, diversity=1.0)
    found = rank_one(seed_model, seeds, keywords, min_score=0.0, limit=40, options=demote)
    diffusion = [i for i, m in enumerate(found) if "diffusion" in seeds[m.index].abstract.lower()]
    assert diffusion, "demoted papers are still there"
    assert min(diffusion) > 3, "but below the papers without the excluded word"


def test_a_liked_papers_neighbours_rise_and_a_disliked_ones_fall(seeds, seed_model):
    keywords = [Keyword("LLM inference"), Keyword("decoding")]
    before = rank_one(
        seed_model, seeds, keywords, min_score=0.0, limit=200, options=RankOptions(diversity=1.0)
    )
    liked = next(m.index for m in before if "speculative" in seeds[m.index].title.lower())
    like = Feedback(liked=(seeds[liked],))
    after = rank_one(
        seed_model,
        seeds,
        keywords,
        min_score=0.0,
        limit=200,
        options=RankOptions(diversity=1.0),
        feedback=like,
    )

    neighbours = [
        m.index
        for m in before
        if "speculative" in seeds[m.index].title.lower() and m.index != liked
    ]
    assert len(neighbours) >= 3

    def position(found) -> float:
        place = {m.index: i for i, m in enumerate(found)}
        return sum(place.get(i, 200) for i in neighbours) / len(neighbours)

    assert position(after) < position(before) - 2
    assert any("similar to papers you liked" in m.matched for m in after)
    dislike = Feedback(disliked=(seeds[liked],))
    worse = rank_one(
        seed_model,
        seeds,
        keywords,
        min_score=0.0,
        limit=200,
        options=RankOptions(diversity=1.0),
        feedback=dislike,
    )
    assert position(worse) > position(before) + 2


def test_enough_ratings_train_a_classifier(seeds, seed_model):
    keywords = [Keyword("diffusion models")]
    liked = tuple(p for p in seeds if "text-to-image" in p.abstract.lower())[:8]
    disliked = tuple(p for p in seeds if "video" in p.title.lower())[:4]
    options = RankOptions(diversity=1.0, classifier_min_ratings=10)
    rocchio = RankOptions(diversity=1.0, classifier_min_ratings=10**6)
    feedback = Feedback(liked, disliked)
    with_clf = rank_one(
        seed_model, seeds, keywords, min_score=0.0, limit=30, options=options, feedback=feedback
    )
    without = rank_one(
        seed_model, seeds, keywords, min_score=0.0, limit=30, options=rocchio, feedback=feedback
    )
    assert with_clf != without

    def t2i(found) -> int:
        return sum("text-to-image" in seeds[m.index].abstract.lower() for m in found[:10])

    assert t2i(with_clf) >= t2i(without)


def test_popularity_breaks_near_ties_but_never_makes_a_paper_relevant():
    same = "Linear attention makes transformers fast."
    papers = [
        PaperText("Linear attention", same),
        PaperText("Linear attention", same),
        PaperText("Popular but unrelated", "Robots and graphs."),
        *FILLER,
    ]
    model = RelevanceModel.fit(papers)
    votes = [0, 120, 500, None, None, None, None]
    found = rank_one(
        model, papers, [Keyword("linear attention")], min_score=0.0, limit=5, upvotes=votes
    )
    assert indexes(found) == [1, 0]
    flat = rank_one(model, papers, [Keyword("linear attention")], min_score=0.0, limit=5)
    assert indexes(flat) == [0, 1]


def test_mmr_spreads_near_copies_apart():
    base = "Linear attention kernels for long sequences: linear attention on GPUs."
    copies = [PaperText(f"Linear attention kernels, version {i}", base) for i in range(4)]
    others = [
        PaperText("Speech encoders", "An acoustic encoder with linear attention and convolutions."),
        PaperText("Vision backbones", "A vision backbone mixing linear attention and pooling."),
    ]
    papers = [*copies, *others, *FILLER]
    model = RelevanceModel.fit(papers)
    keywords = [Keyword("linear attention")]
    relevance = rank_one(
        model, papers, keywords, min_score=0.0, limit=3, options=RankOptions(diversity=1.0)
    )
    diverse = rank_one(
        model, papers, keywords, min_score=0.0, limit=3, options=RankOptions(diversity=0.5)
    )
    assert sum(m.index < 4 for m in relevance) == 3
    assert sum(m.index < 4 for m in diverse) == 1
    assert diverse[0] == relevance[0]
