"""Named interests (issue 13): their keywords, exclusions, seed papers and followed authors,
and taking them to another papermail (export / import). One unit of work each: the caller
commits. The CLI calls these today; the web app's manage page calls the same functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlmodel import Session, col, delete, or_, select

from papermail import seeds as seed_parsing
from papermail.authors import normalize_name
from papermail.models import (
    FollowedAuthor,
    Interest,
    Paper,
    Rating,
    SeedPaper,
    Subscriber,
    Topic,
    parse_moment,
)
from papermail.services.subscriptions import (
    InvalidInput,
    Preferences,
    clean_phrases,
    first_topic,
    get_by_email,
    normalize_email,
    save_subscriber,
    set_interests,
    topics_of,
)
from papermail.sources.records import normalize_title, paper_id

MAX_TOPICS = 10
MAX_NAME = 100
MAX_SEEDS = 200
MAX_AUTHORS = 50
EXPORT_FORMAT = "papermail-interests/1"


@dataclass(frozen=True, slots=True)
class SeedResult:
    given: str
    found: bool
    paper_id: str | None = None
    title: str | None = None


@dataclass(frozen=True, slots=True)
class InterestView:
    """A named interest as pages and the CLI show it."""

    id: int
    name: str
    max_papers: int
    position: int
    keywords: tuple[str, ...]
    excluded: tuple[str, ...]
    seeds: tuple[SeedResult, ...]
    authors: tuple[str, ...]


@dataclass
class SaveResult:
    topic: Topic
    created: bool
    seeds: list[SeedResult] = field(default_factory=list)  # the seeds given this time


def clean_name(raw: str) -> str:
    name = " ".join(raw.split())
    if not name:
        raise InvalidInput("give the interest a name", field="name")
    if len(name) > MAX_NAME:
        raise InvalidInput(f"an interest name is at most {MAX_NAME} characters", field="name")
    return name


def topic_named(session: Session, subscriber_id: int, name: str) -> Topic | None:
    wanted = " ".join(name.split()).casefold()
    for topic in topics_of(session, subscriber_id):
        if topic.name.casefold() == wanted:
            return topic
    return None


def _subscriber(session: Session, email: str) -> Subscriber:
    subscriber = get_by_email(session, normalize_email(email))
    if subscriber is None or subscriber.id is None:
        raise InvalidInput(f"no subscriber {email.strip()!r}", field="email")
    return subscriber


def _stored_paper(session: Session, arxiv_id: str | None, title: str | None) -> Paper | None:
    """The stored paper with this arXiv id (as its key, or recorded on it), else the one whose
    key is this title's hash."""
    paper = None
    if arxiv_id:
        paper = (
            session.get(Paper, arxiv_id)
            or session.exec(select(Paper).where(Paper.arxiv_id == arxiv_id)).first()
        )
    if paper is None and title:
        paper = session.get(Paper, paper_id(title=title))
    return paper


def find_seeds(session: Session, given: Sequence[seed_parsing.Seed]) -> list[SeedResult]:
    """Each seed's paper in the corpus: by arXiv id, else by normalized title."""
    results: list[SeedResult] = []
    by_title: dict[str, tuple[str, str]] | None = None
    for seed in given:
        paper = _stored_paper(session, seed.arxiv_id, seed.title)
        if paper is not None:
            results.append(SeedResult(seed.given, True, paper.id, paper.title))
            continue
        if seed.title:
            if by_title is None:  # once per call: every title, normalized
                by_title = {}
                for pid, title in session.exec(select(Paper.id, Paper.title)):
                    by_title.setdefault(normalize_title(title), (pid, title))
            hit = by_title.get(seed.title_key)
            if hit:
                results.append(SeedResult(seed.given, True, *hit))
                continue
        results.append(SeedResult(seed.given, False, None, seed.title))
    return results


def resolve_pending_seeds(session: Session, topic_ids: Sequence[int]) -> int:
    """Seeds not found when given, looked up again (a later ingest may hold them): by arXiv id
    and by the title's key, no scan of every title. Returns how many were found now."""
    wanted = set(topic_ids)  # pending seeds are few: all of them, then those of these topics
    pending = [
        row
        for row in session.exec(select(SeedPaper).where(col(SeedPaper.found).is_(False)))
        if row.topic_id in wanted
    ]
    found = 0
    for row in pending:
        paper = _stored_paper(session, row.arxiv_id, row.title)
        if paper is not None:
            row.paper_id, row.found, row.title = paper.id, True, paper.title
            session.add(row)
            found += 1
    return found


def parse_seeds(
    texts: Sequence[str | seed_parsing.Seed] = (), file_text: str | None = None
) -> list[seed_parsing.Seed]:
    """Seeds as typed (arXiv ids, URLs, titles) or already parsed, plus a BibTeX/RIS file's."""
    parsed = [s if isinstance(s, seed_parsing.Seed) else seed_parsing.parse_seed(s) for s in texts]
    parsed = [s for s in parsed if s]
    if file_text:
        try:
            parsed += seed_parsing.parse_seed_file(file_text)
        except Exception as exc:  # the parsers raise many kinds on a broken file
            raise InvalidInput(f"could not read the seed file: {exc}", field="seeds") from exc
    if len(parsed) > MAX_SEEDS:
        raise InvalidInput(f"at most {MAX_SEEDS} seed papers per interest", field="seeds")
    return seed_parsing.unique(parsed)


def add_seeds(
    session: Session, topic: Topic, given: Sequence[seed_parsing.Seed]
) -> list[SeedResult]:
    """Store seeds (a seed given again is looked up again) and say which were found."""
    results = find_seeds(session, given)
    stored = {s.given: s for s in seeds_of(session, topic.id)}
    for seed, result in zip(given, results, strict=True):
        row = stored.get(seed.given) or SeedPaper(topic_id=topic.id, given=seed.given)
        row.arxiv_id, row.paper_id, row.found = seed.arxiv_id, result.paper_id, result.found
        row.title = result.title or seed.title
        session.add(row)
    session.flush()
    if len(seeds_of(session, topic.id)) > MAX_SEEDS:
        raise InvalidInput(f"at most {MAX_SEEDS} seed papers per interest", field="seeds")
    return results


def remove_seeds(session: Session, topic: Topic, given: Sequence[str]) -> int:
    """Forget seed papers of an interest, named as they were given; its profile and keyword
    suggestions stop learning from them. Returns how many went."""
    wanted = set(given)
    gone = [s for s in seeds_of(session, topic.id) if s.given in wanted]
    for seed in gone:
        session.delete(seed)
    session.flush()
    return len(gone)


def follow_authors(session: Session, topic: Topic, names: Sequence[str]) -> None:
    have = {a.normalized for a in authors_of(session, topic.id)}
    for raw in names:
        name = " ".join(raw.split())
        normalized = normalize_name(name)
        if not normalized:
            raise InvalidInput(f"not an author name: {raw!r}", field="follow")
        if len(name) > 200:
            raise InvalidInput("an author name is at most 200 characters", field="follow")
        if normalized not in have:
            have.add(normalized)
            session.add(FollowedAuthor(topic_id=topic.id, name=name, normalized=normalized))
    if len(have) > MAX_AUTHORS:
        raise InvalidInput(f"at most {MAX_AUTHORS} followed authors per interest", field="follow")
    session.flush()


def unfollow_authors(session: Session, topic: Topic, names: Sequence[str]) -> None:
    gone = {normalize_name(n) for n in names}
    session.exec(
        delete(FollowedAuthor).where(
            FollowedAuthor.topic_id == topic.id, col(FollowedAuthor.normalized).in_(gone)
        )
    )


def save_interest(
    session: Session,
    subscriber: Subscriber,
    name: str,
    *,
    keywords: Sequence[str] | None = None,
    excluded: Sequence[str] | None = None,
    seeds: Sequence[str | seed_parsing.Seed] = (),
    seed_file_text: str | None = None,
    follow: Sequence[str] = (),
    max_papers: int | None = None,
) -> SaveResult:
    """Add a named interest, or update one: only what is given changes (keywords given replace
    its keywords, exclusions its exclusions; seeds and authors are added)."""
    assert subscriber.id is not None
    name = clean_name(name)
    topic = topic_named(session, subscriber.id, name)
    created = topic is None
    kw = clean_phrases(keywords, field="keywords") if keywords is not None else None
    ex = clean_phrases(excluded, field="excluded") if excluded is not None else None
    parsed = parse_seeds(seeds, seed_file_text)
    if max_papers is not None and not 1 <= max_papers <= 100:
        raise InvalidInput("papers per digest must be between 1 and 100", field="max_papers")
    if topic is None and not topics_of(session, subscriber.id):
        _adopt_loose_keywords(session, subscriber)
        topic = topic_named(session, subscriber.id, name)
    if topic is None:
        if not (kw or parsed or follow):
            raise InvalidInput(
                "a new interest needs keywords, seed papers or an author to follow",
                field="keywords",
            )
        topics = topics_of(session, subscriber.id)
        if len(topics) >= MAX_TOPICS:
            raise InvalidInput(f"at most {MAX_TOPICS} interests", field="name")
        topic = Topic(
            subscriber_id=subscriber.id,
            name=name,
            max_papers=max_papers or subscriber.max_papers,
            position=max((t.position for t in topics), default=-1) + 1,
        )
        session.add(topic)
        session.flush()
    elif max_papers is not None:
        topic.max_papers = max_papers
        session.add(topic)
    assert topic.id is not None
    if kw is not None or ex is not None:
        old_kw, old_ex = keywords_and_exclusions(session, topic)
        set_interests(
            session,
            subscriber.id,
            kw if kw is not None else old_kw,
            ex if ex is not None else old_ex,
            topic_id=topic.id,
        )
    if topic.position == 0 or topic.id == first_topic(session, subscriber.id).id:
        subscriber.max_papers = topic.max_papers  # the manage form shows the first one's share
        session.add(subscriber)
    results = add_seeds(session, topic, parsed) if parsed else []
    if follow:
        follow_authors(session, topic, follow)
    session.flush()
    return SaveResult(topic, created, results)


def _adopt_loose_keywords(session: Session, subscriber: Subscriber) -> None:
    """Keyword rows stored without an interest (written around the services) become the first
    interest, named after the first keyword, before another interest is added."""
    assert subscriber.id is not None
    loose = session.exec(
        select(Interest)
        .where(Interest.subscriber_id == subscriber.id, col(Interest.topic_id).is_(None))
        .order_by(col(Interest.negative), col(Interest.id))
    ).all()
    if not loose:
        return
    first = first_topic(
        session, subscriber.id, name=loose[0].phrase, max_papers=subscriber.max_papers
    )
    for row in loose:
        row.topic_id = first.id
        session.add(row)
    session.flush()


def remove_interest(session: Session, subscriber: Subscriber, name: str) -> bool:
    """Delete a named interest with its keywords, seeds and authors; ratings and digests stay
    (they forget which interest they were for). The last interest cannot go."""
    assert subscriber.id is not None
    topic = topic_named(session, subscriber.id, name)
    if topic is None:
        return False
    if len(topics_of(session, subscriber.id)) == 1:
        raise InvalidInput(
            "a subscriber keeps at least one interest (remove the subscriber instead)",
            field="name",
        )
    session.exec(delete(Interest).where(Interest.topic_id == topic.id))
    session.delete(topic)
    session.flush()
    for position, other in enumerate(topics_of(session, subscriber.id)):
        other.position = position
        session.add(other)
    return True


def keywords_and_exclusions(
    session: Session, topic: Topic
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    mine = col(Interest.topic_id) == topic.id
    first = first_topic(session, topic.subscriber_id)
    if first.id == topic.id:
        mine = or_(mine, col(Interest.topic_id).is_(None))
    rows = session.exec(
        select(Interest)
        .where(Interest.subscriber_id == topic.subscriber_id, mine)
        .order_by(col(Interest.id))
    ).all()
    return (
        tuple(i.phrase for i in rows if not i.negative),
        tuple(i.phrase for i in rows if i.negative),
    )


def seeds_of(session: Session, topic_id: int | None) -> list[SeedPaper]:
    return list(
        session.exec(
            select(SeedPaper).where(SeedPaper.topic_id == topic_id).order_by(col(SeedPaper.id))
        )
    )


def authors_of(session: Session, topic_id: int | None) -> list[FollowedAuthor]:
    return list(
        session.exec(
            select(FollowedAuthor)
            .where(FollowedAuthor.topic_id == topic_id)
            .order_by(col(FollowedAuthor.id))
        )
    )


def list_interests(session: Session, subscriber_id: int) -> list[InterestView]:
    views = []
    for topic in topics_of(session, subscriber_id):
        assert topic.id is not None
        keywords, excluded = keywords_and_exclusions(session, topic)
        views.append(
            InterestView(
                id=topic.id,
                name=topic.name,
                max_papers=topic.max_papers,
                position=topic.position,
                keywords=keywords,
                excluded=excluded,
                seeds=tuple(
                    SeedResult(s.given, s.found, s.paper_id, s.title)
                    for s in seeds_of(session, topic.id)
                ),
                authors=tuple(a.name for a in authors_of(session, topic.id)),
            )
        )
    return views


# --- Take your data with you -----------------------------------------------------------------


def export_subscriber(session: Session, subscriber: Subscriber) -> dict[str, Any]:
    """A subscriber's interests (keywords, exclusions, seeds, followed authors) and ratings as
    plain JSON data; `import_subscriber` reads it on any papermail."""
    assert subscriber.id is not None
    names = {t.id: t.name for t in topics_of(session, subscriber.id)}
    interests = [
        {
            "name": v.name,
            "max_papers": v.max_papers,
            "keywords": list(v.keywords),
            "excluded": list(v.excluded),
            "seeds": [{"given": s.given, "title": s.title, "found": s.found} for s in v.seeds],
            "authors": list(v.authors),
        }
        for v in list_interests(session, subscriber.id)
    ]
    ratings = [
        {
            "paper": pid,
            "arxiv_id": arxiv_id,
            "title": title,
            "value": value,
            "interest": names.get(tid),
            "at": at.isoformat(),
        }
        for pid, arxiv_id, title, value, tid, at in session.exec(
            select(
                Rating.paper_id,
                Paper.arxiv_id,
                Paper.title,
                Rating.value,
                Rating.topic_id,
                Rating.created_at,
            )
            .join(Paper, col(Paper.id) == Rating.paper_id)
            .where(Rating.subscriber_id == subscriber.id)
            .order_by(col(Rating.id))
        )
    ]
    return {
        "format": EXPORT_FORMAT,
        "email": subscriber.email,
        "timezone": subscriber.timezone,
        "send_hour": subscriber.send_hour,
        "frequency": str(subscriber.frequency),
        "weekly_day": subscriber.weekly_day,
        "interests": interests,
        "ratings": ratings,
    }


def _seed_of(exported: dict[str, Any]) -> seed_parsing.Seed:
    parsed = seed_parsing.parse_seed(exported["given"])
    assert parsed is not None
    title = exported.get("title") or parsed.title
    return seed_parsing.Seed(given=parsed.given, arxiv_id=parsed.arxiv_id, title=title)


@dataclass
class ImportReport:
    subscriber: Subscriber
    created: bool
    interests: int = 0
    ratings: int = 0
    ratings_missing: list[str] = field(default_factory=list)  # papers this corpus lacks


def import_subscriber(
    session: Session, data: dict[str, Any], *, email: str | None = None
) -> ImportReport:
    """Read an export (idempotent: importing it twice changes nothing the second time). Its
    interests replace same-named ones' keywords and exclusions and add their seeds and authors;
    ratings of papers this corpus has are kept, the rest are listed."""
    if not isinstance(data, dict) or data.get("format") != EXPORT_FORMAT:
        raise InvalidInput(f"not a papermail export (format {EXPORT_FORMAT})", field="file")
    interests = data.get("interests") or []
    if not interests or not isinstance(interests, list):
        raise InvalidInput("the export has no interests", field="file")
    address = email or data.get("email") or ""
    first = interests[0]
    existing = get_by_email(session, normalize_email(address))
    changes: dict[str, Any] = {
        k: data[k] for k in ("timezone", "send_hour", "frequency", "weekly_day") if k in data
    }
    if existing is None:
        changes |= {
            "keywords": tuple(first.get("keywords") or ()) or (first["name"],),
            "excluded": tuple(first.get("excluded") or ()),
            "max_papers": int(first.get("max_papers") or Preferences.max_papers),
        }
    subscriber, created = save_subscriber(session, email=address, changes=changes)
    assert subscriber.id is not None
    if created:  # its first interest takes the export's first name
        topic = first_topic(session, subscriber.id)
        topic.name = clean_name(first["name"])
        session.add(topic)
        session.flush()
    report = ImportReport(subscriber, created)
    for item in interests:
        save_interest(
            session,
            subscriber,
            item["name"],
            keywords=item.get("keywords") or None,
            excluded=item.get("excluded") or [],
            seeds=[_seed_of(s) for s in item.get("seeds") or []],
            follow=item.get("authors") or [],
            max_papers=item.get("max_papers"),
        )
        report.interests += 1
    for rating in data.get("ratings") or []:
        found = find_seeds(
            session,
            [
                seed_parsing.Seed(
                    given=rating["paper"],
                    arxiv_id=rating.get("arxiv_id")
                    or seed_parsing.parse_seed(rating["paper"]).arxiv_id,
                    title=rating.get("title"),
                )
            ],
        )[0]
        if not found.found:
            report.ratings_missing.append(rating.get("title") or rating["paper"])
            continue
        topic = topic_named(session, subscriber.id, rating.get("interest") or "")
        row = session.exec(
            select(Rating).where(
                Rating.subscriber_id == subscriber.id, Rating.paper_id == found.paper_id
            )
        ).first() or Rating(subscriber_id=subscriber.id, paper_id=found.paper_id or "", value=0)
        row.value = int(rating["value"])
        row.topic_id = topic.id if topic else None
        if rating.get("at"):
            row.created_at = parse_moment(rating["at"])
        session.add(row)
        report.ratings += 1
    session.flush()
    return report
