"""The feedback service on SQLite and PostgreSQL: ratings, muted terms, what ranking is given,
and keyword suggestions."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlmodel import Session, select

from papermail import ranking
from papermail.db import session_scope
from papermail.models import Interest, Paper, Rating, utcnow
from papermail.services import feedback
from papermail.services.subscriptions import InvalidInput, Preferences, add_subscriber

PAPERS = [
    ("2401.00001", "Mixture-of-Experts routing at scale", "Sparse mixture of experts routing."),
    ("2401.00002", "Expert parallelism for MoE training", "Mixture of experts across GPUs."),
    ("2401.00003", "Load balancing mixture of experts", "Routing losses for mixture of experts."),
    ("2401.00004", "Video diffusion models", "Generating videos with diffusion."),
    ("2401.00005", "Robot grasping", "Grasping objects with a robot arm."),
]


@pytest.fixture
def world(engine):
    """Five papers and one subscriber (keywords: MoE) in a fresh database."""
    with session_scope(engine) as session:
        for pid, title, abstract in PAPERS:
            session.add(Paper(id=pid, title=title, abstract=abstract, first_seen_at=utcnow()))
        sub = add_subscriber(
            session,
            email="ada@example.org",
            prefs=Preferences(keywords=("MoE",), excluded=("robot",)),
            confirmed=True,
        )
        return sub.id


def test_a_rating_is_stored_once_and_can_change(engine, world):
    with session_scope(engine) as session:
        feedback.record_rating(session, subscriber_id=world, paper_id="2401.00001", value=1)
    with session_scope(engine) as session:
        feedback.record_rating(session, subscriber_id=world, paper_id="2401.00001", value=-1)
        feedback.record_rating(session, subscriber_id=world, paper_id="2401.00004", value=-1)
        feedback.record_rating(session, subscriber_id=world, paper_id="2401.00002", value=1)
    with Session(engine) as session:
        values = {r.paper_id: r.value for r in session.exec(select(Rating))}
        assert values == {"2401.00001": -1, "2401.00004": -1, "2401.00002": 1}
        assert feedback.liked_ids(session, subscriber_id=world) == ["2401.00002"]
        assert set(feedback.disliked_ids(session, subscriber_id=world)) == {
            "2401.00001",
            "2401.00004",
        }


def test_bad_ratings_are_refused(engine, world):
    with session_scope(engine) as session:
        for kwargs, field in (
            ({"paper_id": "2401.00001", "value": 2}, "value"),
            ({"paper_id": "9999.99999", "value": 1}, "paper"),
        ):
            with pytest.raises(InvalidInput) as caught:
                feedback.record_rating(session, subscriber_id=world, **kwargs)
            assert caught.value.field == field
        with pytest.raises(InvalidInput):
            feedback.record_rating(
                session, subscriber_id=world + 99, paper_id="2401.00001", value=1
            )


def test_muting_a_term_excludes_it_and_drops_the_same_keyword(engine, world):
    with session_scope(engine) as session:
        muted = feedback.mute_term(session, subscriber_id=world, term="  Video   diffusion ")
        assert (muted.phrase, muted.negative) == ("Video diffusion", True)
        again = feedback.mute_term(session, subscriber_id=world, term="video diffusion")
        assert again.id == muted.id
        feedback.mute_term(session, subscriber_id=world, term="moe")  # was a keyword
        with pytest.raises(InvalidInput):
            feedback.mute_term(session, subscriber_id=world, term="a, b")
    with Session(engine) as session:
        interests = {
            (i.phrase, i.negative)
            for i in session.exec(select(Interest).where(Interest.subscriber_id == world))
        }
    assert interests == {("Video diffusion", True), ("moe", True), ("robot", True)}


def test_ratings_reach_ranking_and_move_the_profile(engine, world):
    with session_scope(engine) as session:
        feedback.record_rating(session, subscriber_id=world, paper_id="2401.00001", value=1)
        feedback.record_rating(session, subscriber_id=world, paper_id="2401.00004", value=-1)
    with Session(engine) as session:
        given = feedback.load_feedback(session, [world, world + 1])
        papers = [ranking.PaperText(p.title, p.abstract) for p in session.exec(select(Paper))]
    assert list(given) == [world]
    assert [p.title for p in given[world].liked] == ["Mixture-of-Experts routing at scale"]
    assert [p.title for p in given[world].disliked] == ["Video diffusion models"]
    model = ranking.RelevanceModel.fit(papers)
    words = ranking.RankOptions(prf=0.0, context=0.0)  # ratings alone, no pseudo-feedback
    keyword = [ranking.Keyword("routing")]
    plain = ranking.rank_one(model, papers, keyword, min_score=0.0, limit=5, options=words)
    learned = ranking.rank_one(
        model, papers, keyword, min_score=0.0, limit=5, feedback=given[world], options=words
    )
    assert {m.index for m in plain} < {m.index for m in learned}  # MoE papers without "routing"
    assert feedback.load_feedback(session, []) == {}


def test_suggested_keywords_come_from_liked_papers(engine, world, settings):
    with session_scope(engine) as session:
        for pid in ("2401.00001", "2401.00002", "2401.00003"):
            feedback.record_rating(session, subscriber_id=world, paper_id=pid, value=1)
        old = session.get(Paper, "2401.00005")
        old.first_seen_at = utcnow() - timedelta(days=400)
        session.add(old)
    with Session(engine) as session:
        suggested = feedback.suggest_keywords(session, subscriber_id=world, settings=settings)
        assert suggested and suggested[0] == "routing"
        assert not {"moe", "mixture of experts", "mixture-of-experts"} & set(suggested)
        assert feedback.suggest_keywords(session, subscriber_id=world + 1) == []
