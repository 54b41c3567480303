"""The text layer of ranking: tokens, stems, acronyms found in text, the synonyms file."""

from __future__ import annotations

import pickle

import pytest

from papermail.ranking.expansion import (
    Acronyms,
    Expander,
    find_definitions,
    load_synonyms,
    read_synonyms,
)
from papermail.ranking.text import Analyzer, phrase_terms, stem


@pytest.mark.parametrize(
    ("words", "same"),
    [
        (["segmentation", "segment", "segments", "segmenting", "segmented"], True),
        (["generation", "generate", "generated", "generative"], True),
        (["quantization", "quantize", "quantized", "quantizing", "quantisation"], True),
        (["embedding", "embeddings", "embedded", "embed"], True),
        (["models", "model", "modeling", "modelling"], True),
        (["scaling", "scale", "scaled"], True),
        (["video", "videos"], True),
        (["general", "generation"], False),  # where Porter goes wrong
        (["position", "positive"], False),
        (["transformer", "transformation"], False),
    ],
)
def test_light_stemmer(words, same):
    stems = {stem(w) for w in words}
    assert (len(stems) == 1) is same, stems


def test_short_words_and_exceptions_are_left_alone():
    for word in ("bias", "loss", "corpus", "analysis", "series", "string", "speed", "gpu", "data"):
        assert stem(word) == word


def test_tokens_for_ml_text():
    analyzer = Analyzer()
    terms = analyzer("LLMs use 1.58-bit weights; GPT-4 and ViTs. Mixture-of-Experts (MoE) layers")
    words = [t for t in terms if " " not in t]
    assert words == [
        "llm", "use", "1.58", "bit", "weight", "gpt", "4",
        "vit", "mixtur", "expert", "moe", "layer",
    ]  # fmt: skip
    bigrams = {t for t in terms if " " in t}
    assert {"1.58 bit", "gpt 4", "mixtur expert"} <= bigrams
    assert not {"weight gpt", "vit mixtur", "expert moe", "moe layer"} & bigrams  # ; . ( ) break


def test_acronyms_are_not_stemmed_and_lose_only_their_plural():
    analyzer = Analyzer()
    assert analyzer.normalize("SAMs") == "sam"
    assert analyzer.normalize("LoRA") == "lora"
    assert analyzer.normalize("GANs") == "gan"
    assert analyzer.normalize("Computer") == "computer"  # sklearn's list drops it: we keep it
    assert analyzer.normalize("the") == ""
    assert analyzer.normalize("x") == ""
    assert Analyzer(stemming=False).normalize("segmentation") == "segmentation"


def test_analyzer_pickles_without_its_cache():
    analyzer = Analyzer()
    analyzer("some words to fill the cache")
    copy = pickle.loads(pickle.dumps(analyzer))
    assert copy == analyzer and copy("state space models") == analyzer("state space models")


def test_surface_forms_show_stems_as_words():
    found = Analyzer().surface("Segmenting organs: segmentation of CT scans")
    assert found["segment"] == "segmenting"


def test_phrase_terms():
    assert phrase_terms(("stat", "spac", "model")) == [
        "stat", "spac", "model", "stat spac", "spac model",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "pair"),
    [
        ("We use a Mixture-of-Experts (MoE) layer.", ("MoE", "Mixture-of-Experts")),
        ("large language models (LLMs) are", ("LLM", "large language models")),
        ("via low-rank adaptation (LoRA).", ("LoRA", "low-rank adaptation")),
        (
            "reinforcement learning from human feedback (RLHF)",
            (
                "RLHF",
                "reinforcement learning from human feedback",
            ),
        ),
    ],
)
def test_acronym_definitions_are_found(text, pair):
    assert pair in list(find_definitions(text))


def test_parentheses_that_define_nothing_are_ignored():
    assert list(find_definitions("the results (see Table 2) and a model (ours)")) == []


def test_corpus_acronyms_need_two_sightings_and_a_majority():
    analyzer = Analyzer()
    acronyms = Acronyms()
    for text in [
        "automatic speech recognition (ASR)",
        "automatic speech recognition (ASR)",
        "automatic speech recognition (ASR)",
        "attack success rate (ASR)",
        "attack success rate (ASR)",
        "quantum gauge theory (QGT)",
    ]:
        acronyms.add(analyzer, text)
    pairs = {(k, " ".join(w)): dominant for k, w, dominant in acronyms.pairs()}
    assert pairs == {("asr", "automatic speech recognit"): False}
    expander = Expander.build(analyzer, [], acronyms)
    assert [w for w, _ in expander.alternatives(("asr",))] == [("automatic", "speech", "recognit")]
    assert expander.alternatives(("automatic", "speech", "recognit")) == []  # not dominant
    assert expander.other_senses(analyzer, "the attack success rate (ASR) rises") == {"asr"}


def test_synonyms_file_format():
    groups = read_synonyms(
        "# a comment\nMoE | mixture of experts  # trailing\nSSM = state space model\nalone\n"
    )
    assert groups == [["MoE", "mixture of experts"], ["SSM", "state space model"]]


def test_packaged_synonyms_load_and_expand_inside_phrases(tmp_path):
    groups = load_synonyms()
    assert ["LoRA", "low-rank adaptation"] in groups
    extra = tmp_path / "mine.txt"
    extra.write_text("papermail | paper newsletter\n", encoding="utf-8")
    assert load_synonyms(extra)[-1] == ["papermail", "paper newsletter"]
    analyzer = Analyzer()
    expander = Expander.build(analyzer, groups, None)
    found = dict(expander.alternatives(("moe", "inferenc")))
    assert found == {("mixtur", "expert", "inferenc"): "mixture of experts"}
