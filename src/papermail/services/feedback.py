"""Feedback from digests: "more like this" / "less like this" ratings, muted terms, and what
ranking learns from them.

The web routes behind the signed links call `record_rating`, `remove_rating` and `mute_term`
(one unit of work each: the caller commits); the digest service calls `load_feedback` to pass the
ratings to `ranking.rank`; the manage page shows `rating_counts` and `suggest_keywords`.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime, timedelta

from sqlalchemy import func
from sqlmodel import Session, col, select

from papermail import ranking
from papermail.models import (
    DigestItem,
    Interest,
    Paper,
    Rating,
    SeedPaper,
    Subscriber,
    Topic,
    utcnow,
)
from papermail.services.subscriptions import (
    MAX_INTERESTS,
    InvalidInput,
    apply_preferences,
    clean_phrases,
    first_topic,
    preferences_of,
    topics_of,
)
from papermail.settings import Settings

LIKE = 1
DISLIKE = -1
MAX_RATED = 200  # most recent ratings a subscriber's profile learns from


def record_rating(
    session: Session,
    *,
    subscriber_id: int,
    paper_id: str,
    value: int,
    topic_id: int | None = None,
) -> Rating:
    """Store (or change) a subscriber's rating of a paper: +1 more like this, -1 less. It
    counts for the interest `topic_id`, by default the one the paper was last shown under."""
    if value not in (LIKE, DISLIKE):
        raise InvalidInput("a rating is +1 (more like this) or -1 (less like this)", field="value")
    if session.get(Subscriber, subscriber_id) is None:
        raise InvalidInput(f"no subscriber {subscriber_id}", field="subscriber")
    if session.get(Paper, paper_id) is None:
        raise InvalidInput(f"no paper {paper_id!r}", field="paper")
    rating = _rating(session, subscriber_id, paper_id)
    if rating is None:
        rating = Rating(subscriber_id=subscriber_id, paper_id=paper_id, value=value)
    else:
        rating.value = value
        rating.created_at = utcnow()
    rating.topic_id = topic_id or shown_under(session, subscriber_id, paper_id)
    session.add(rating)
    session.flush()
    return rating


def shown_under(session: Session, subscriber_id: int, paper_id: str) -> int | None:
    """The interest a paper was last shown to a subscriber under (None: never shown)."""
    from papermail.models import Digest

    return session.exec(
        select(DigestItem.topic_id)
        .join(Digest, col(Digest.id) == DigestItem.digest_id)
        .where(Digest.subscriber_id == subscriber_id, DigestItem.paper_id == paper_id)
        .order_by(col(Digest.issue_date).desc())
    ).first()


def _rating(session: Session, subscriber_id: int, paper_id: str) -> Rating | None:
    return session.exec(
        select(Rating).where(Rating.subscriber_id == subscriber_id, Rating.paper_id == paper_id)
    ).first()


def rating_of(session: Session, *, subscriber_id: int, paper_id: str) -> int:
    """LIKE, DISLIKE, or 0 when the subscriber has not rated the paper."""
    rating = _rating(session, subscriber_id, paper_id)
    return rating.value if rating else 0


def remove_rating(session: Session, *, subscriber_id: int, paper_id: str) -> bool:
    """Forget a rating (the undo of a mistaken tap); False when there was none."""
    rating = _rating(session, subscriber_id, paper_id)
    if rating is None:
        return False
    session.delete(rating)
    session.flush()
    return True


def rating_counts(session: Session, *, subscriber_id: int) -> dict[int, int]:
    """How many papers a subscriber rated, by value: {LIKE: n, DISLIKE: m}."""
    rows = session.exec(
        select(Rating.value, func.count())
        .where(Rating.subscriber_id == subscriber_id)
        .group_by(col(Rating.value))
    )
    return {LIKE: 0, DISLIKE: 0} | dict(rows.all())


def mute_term(
    session: Session, *, subscriber_id: int, term: str, topic_id: int | None = None
) -> Interest:
    """Exclude `term` from one interest's papers (a negative keyword; default, or when the
    interest is gone or not theirs: the first interest). A positive keyword with the same
    words is dropped: nobody wants and excludes the same thing."""
    phrases = clean_phrases([term], field="term")
    if len(phrases) != 1:
        raise InvalidInput("give one term to mute", field="term")
    phrase = phrases[0]
    first = first_topic(session, subscriber_id)
    topic = session.get(Topic, topic_id) if topic_id else None
    topic_id = topic.id if topic and topic.subscriber_id == subscriber_id else first.id
    mine = [topic_id, None] if topic_id == first.id else [topic_id]
    interests = [
        i
        for i in session.exec(select(Interest).where(Interest.subscriber_id == subscriber_id))
        if i.topic_id in mine
    ]
    for interest in interests:
        if interest.phrase.casefold() == phrase.casefold():
            if interest.negative:
                return interest
            session.delete(interest)
    if len(interests) >= MAX_INTERESTS:
        raise InvalidInput(f"at most {MAX_INTERESTS} keywords", field="term")
    muted = Interest(subscriber_id=subscriber_id, topic_id=topic_id, phrase=phrase, negative=True)
    session.add(muted)
    session.flush()
    return muted


def add_keyword(session: Session, subscriber: Subscriber, phrase: str) -> None:
    """Add a keyword (a suggestion the subscriber took), validated as the manage form is. The
    same words stop being excluded: the reverse of `mute_term`."""
    phrases = clean_phrases([phrase], field="keywords")
    if not phrases:
        raise InvalidInput("choose a keyword to add", field="keywords")
    added = {p.casefold() for p in phrases}
    prefs = preferences_of(session, subscriber)
    excluded = tuple(p for p in prefs.excluded if p.casefold() not in added)
    apply_preferences(
        session, subscriber, replace(prefs, keywords=(*prefs.keywords, *phrases), excluded=excluded)
    )


def rated_ids(session: Session, *, subscriber_id: int, value: int) -> list[str]:
    """Ids of the papers a subscriber rated `value` (LIKE or DISLIKE), most recent first."""
    rows = session.exec(
        select(Rating.paper_id)
        .where(Rating.subscriber_id == subscriber_id, Rating.value == value)
        .order_by(col(Rating.created_at).desc(), col(Rating.id).desc())
        .limit(MAX_RATED)
    )
    return list(rows)


def liked_ids(session: Session, *, subscriber_id: int) -> list[str]:
    return rated_ids(session, subscriber_id=subscriber_id, value=LIKE)


def disliked_ids(session: Session, *, subscriber_id: int) -> list[str]:
    return rated_ids(session, subscriber_id=subscriber_id, value=DISLIKE)


def load_feedback(session: Session, subscriber_ids: Sequence[int]) -> dict[int, ranking.Feedback]:
    """Every given subscriber's rated papers as text, for `ranking.rank(feedback=...)`; one
    query for all of them. Subscribers without ratings are left out."""
    if not subscriber_ids:
        return {}
    rows = session.exec(
        select(Rating.subscriber_id, Rating.value, Paper.title, Paper.abstract)
        .join(Paper, col(Paper.id) == Rating.paper_id)
        .where(col(Rating.subscriber_id).in_(list(subscriber_ids)))
        .order_by(col(Rating.subscriber_id), col(Rating.created_at).desc(), col(Rating.id).desc())
    )
    liked: dict[int, list[ranking.PaperText]] = defaultdict(list)
    disliked: dict[int, list[ranking.PaperText]] = defaultdict(list)
    for sid, value, title, abstract in rows:
        bucket = liked if value > 0 else disliked
        if len(liked[sid]) + len(disliked[sid]) < MAX_RATED:
            bucket[sid].append(ranking.PaperText(title, abstract))
    return {
        sid: ranking.Feedback(tuple(liked[sid]), tuple(disliked[sid]))
        for sid in sorted(set(liked) | set(disliked))
    }


def load_topic_feedback(
    session: Session, topics: dict[int, list[int | None]]
) -> dict[tuple[int, int | None], ranking.Feedback]:
    """Per (subscriber, interest) profile key, its rated papers and found seed papers as text
    (seeds are liked papers). `topics` lists each subscriber's interest ids, first one first: a
    rating that names no interest (or one since removed) counts for the first. Two queries for
    all of them; profiles with nothing to learn from are left out."""
    if not topics:
        return {}
    liked: dict[tuple, list[ranking.PaperText]] = defaultdict(list)
    disliked: dict[tuple, list[ranking.PaperText]] = defaultdict(list)
    rows = session.exec(
        select(Rating.subscriber_id, Rating.topic_id, Rating.value, Paper.title, Paper.abstract)
        .join(Paper, col(Paper.id) == Rating.paper_id)
        .where(col(Rating.subscriber_id).in_(list(topics)))
        .order_by(col(Rating.subscriber_id), col(Rating.created_at).desc(), col(Rating.id).desc())
    )
    for sid, tid, value, title, abstract in rows:
        own = topics[sid]
        key = (sid, tid if tid in own else own[0])
        if len(liked[key]) + len(disliked[key]) < MAX_RATED:
            (liked if value > 0 else disliked)[key].append(ranking.PaperText(title, abstract))
    owner = {tid: sid for sid, tids in topics.items() for tid in tids if tid is not None}
    if owner:
        seeds = session.exec(
            select(SeedPaper.topic_id, Paper.title, Paper.abstract)
            .join(Paper, col(Paper.id) == SeedPaper.paper_id)
            .join(Topic, col(Topic.id) == SeedPaper.topic_id)
            .where(col(Topic.subscriber_id).in_(list(topics)))
            .order_by(col(SeedPaper.id))
        )
        for tid, title, abstract in seeds:
            if tid not in owner:
                continue
            key = (owner[tid], tid)
            if len(liked[key]) + len(disliked[key]) < MAX_RATED:
                liked[key].append(ranking.PaperText(title, abstract))
    return {
        key: ranking.Feedback(tuple(liked[key]), tuple(disliked[key]))
        for key in sorted(set(liked) | set(disliked), key=lambda k: (k[0], k[1] or 0))
        if liked[key] or disliked[key]
    }


def interest_feedback(session: Session, topic: Topic) -> ranking.Feedback | None:
    """What one interest's digest profile learns from (its ratings and found seed papers, as
    `load_topic_feedback` gives them to the day's ranking): the interest page's preview ranks
    with it, so a seeds-only interest previews what its seeds bring. None: nothing yet."""
    own = [t.id for t in topics_of(session, topic.subscriber_id)]
    return load_topic_feedback(session, {topic.subscriber_id: own}).get(
        (topic.subscriber_id, topic.id)
    )


def suggest_keywords(
    session: Session,
    *,
    subscriber_id: int,
    settings: Settings | None = None,
    limit: int = 5,
    now: datetime | None = None,
    model: ranking.RelevanceModel | None = None,
) -> list[str]:
    """Keywords to offer a subscriber: the terms that best describe the papers they liked
    (top TF-IDF against the recent corpus), minus the keywords they already have.

    Pass `model` when one fitted on recent papers is at hand (the web app's preview cache):
    fitting one on the whole corpus here takes seconds for tens of thousands of papers."""
    ids = liked_ids(session, subscriber_id=subscriber_id)
    if not ids:
        return []
    liked = [
        ranking.PaperText(p.title, p.abstract)
        for p in session.exec(select(Paper).where(col(Paper.id).in_(ids)))
    ]
    if model is None:
        days = settings.corpus_days if settings else 90
        since = (now or utcnow()) - timedelta(days=days)
        corpus = [
            ranking.PaperText(p.title, p.abstract)
            for p in session.exec(
                select(Paper).where(Paper.first_seen_at > since, col(Paper.id).not_in(ids))
            )
        ]
        config = ranking.model_config(settings) if settings else None
        model = ranking.RelevanceModel.fit([*corpus, *liked], config)
    have = [
        i.phrase
        for i in session.exec(select(Interest).where(Interest.subscriber_id == subscriber_id))
    ]
    return model.top_terms(liked, limit=limit, exclude=have)
