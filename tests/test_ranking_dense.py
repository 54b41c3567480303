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


def test_semantic_digests_use_the_stored_vectors(tmp_path, database_url):
    """SEMANTIC on: the day's scoring loads (or encodes and stores) the papers' vectors and fuses
    them in: the paper that says "text-to-speech" in other words scores higher than on words
    alone, and its reason never claims the keyword."""
    from datetime import UTC, date, datetime

    from sqlmodel import Session, select

    from papermail.db import create_tables, make_engine, session_scope
    from papermail.models import Digest, DigestItem, Paper, PaperEmbedding
    from papermail.services import digests
    from papermail.services.ingest import ingest_result
    from papermail.services.subscriptions import Preferences, add_subscriber
    from papermail.sources import PaperRecord, ParseResult
    from tests.conftest import make_settings

    when = datetime(2026, 11, 23, 6, tzinfo=UTC)
    day = date(2026, 11, 23)
    words_only = make_settings(tmp_path, database_url=database_url, semantic=False)
    engine = make_engine(words_only)
    create_tables(engine)
    records = [PaperRecord(p.title, p.abstract, source="t") for p in PAPERS]
    ingest_result(engine, "t", ParseResult(records=records), now=when)

    def day_for(email: str, settings) -> dict[str, tuple[float, list[str]]]:
        with session_scope(engine) as session:
            prefs = Preferences(keywords=("text-to-speech",))
            reader = add_subscriber(session, email=email, prefs=prefs, confirmed=True).id
        digests.score_day(engine, settings, issue_date=day, now=when.replace(hour=8))
        with Session(engine) as session:
            rows = session.exec(
                select(Paper.title, DigestItem.score, DigestItem.matched)
                .join(DigestItem, DigestItem.paper_id == Paper.id)
                .join(Digest, Digest.id == DigestItem.digest_id)
                .where(Digest.subscriber_id == reader)
            ).all()
        return {title: (score, list(matched)) for title, score, matched in rows}

    words = day_for("words@example.org", words_only)
    with Session(engine) as session:
        assert not session.exec(select(PaperEmbedding)).all()
    fused = day_for("meaning@example.org", words_only.model_copy(update={"semantic": True}))
    with Session(engine) as session:  # scoring encoded and stored what ingest had not
        assert len(session.exec(select(PaperEmbedding)).all()) == len(PAPERS)
    engine.dispose()
    tts, vocoder = PAPERS[0].title, PAPERS[1].title
    assert fused[tts][1] == words[tts][1] == ["text-to-speech"]
    assert vocoder in fused and fused[vocoder][0] > words.get(vocoder, (0.0, []))[0]
    [reason] = fused[vocoder][1]
    assert reason.startswith((MEANING_PREFIX, "like “")), reason
