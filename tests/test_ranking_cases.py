"""The cases a reader found on the seed papers (issue 11), kept right: recall without the
coverage cliff, each keyword's share, and the senses of a word told apart by the others."""

from __future__ import annotations

from pathlib import Path

import pytest

from papermail.ranking import Keyword, PaperText, RelevanceModel, rank_one
from papermail.ranking.corpus import load_corpus
from papermail.settings import Settings

MIN_SCORE = Settings.model_fields["min_score"].default  # what a digest sends


@pytest.fixture(scope="module")
def seeds(seeds_dir: Path) -> tuple[list[PaperText], RelevanceModel]:
    _, papers, _ = load_corpus([seeds_dir])
    return papers, RelevanceModel.fit(papers)


def ranked(seeds, *keywords: str, limit: int = 10):
    papers, model = seeds
    found = rank_one(model, papers, [Keyword(k) for k in keywords], min_score=1e-9, limit=limit)
    return [(papers[m.index].title, m) for m in found]


def place(found, start: str) -> int:
    return next(i for i, (title, _) in enumerate(found) if title.startswith(start))


def test_neural_audio_codec_finds_the_audio_codecs_that_never_say_neural(seeds):
    found = ranked(seeds, "neural audio codec", limit=5)
    titles = [title for title, _ in found]
    for start in ("SoundStream", "HiFi-Codec", "SemantiCodec"):
        at = place(found, start)
        assert found[at][1].score >= MIN_SCORE, (start, titles)  # sent, not just ranked
    assert titles[0].startswith("SoundStream")  # the one that says all of it comes first
    assert dict(found)[titles[1]].matched == ("audio codec",)  # says what it holds


def test_each_keyword_of_a_profile_gets_its_share(seeds):
    found = ranked(seeds, "state space models", "linear attention")
    linear = [t for t, m in found if "linear attention" in m.matched]
    ssm = [t for t, m in found if "state space models" in m.matched]
    assert len(linear) >= 4 and len(ssm) >= 4, [(t, m.matched) for t, m in found]


def test_other_keywords_tell_the_sense_of_circuits(seeds):
    found = ranked(seeds, "mechanistic interpretability", "circuits")
    probabilistic = place(found, "Lossless Compression with Probabilistic Circuits")
    both = [i for i, (_, m) in enumerate(found) if len(m.matched) >= 2]
    assert len(both) >= 3 and max(both[:3]) < probabilistic


def test_segmentation_of_words_is_not_medical_image_segmentation(seeds):
    found = ranked(seeds, "medical imaging", "segmentation", limit=20)
    vietnamese = place(found, "A neural joint model for Vietnamese word segmentation")
    medical = [i for i, (t, _) in enumerate(found) if "Medical Imag" in t]
    assert len(medical) >= 3 and max(medical) < vietnamese
    papers, model = seeds
    one_phrase = [Keyword("medical image segmentation")]
    sent = rank_one(model, papers, one_phrase, min_score=MIN_SCORE, limit=10)
    assert not any("Vietnamese" in papers[m.index].title for m in sent)
    assert sent and all("Medical" in papers[m.index].title for m in sent[:3])
