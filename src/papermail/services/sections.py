"""A digest per named interest (issue 13, issue 12 item 3): each interest of a subscriber is its
own ranking profile, keyed (subscriber id, interest id); papers by followed authors join their
interest's section outside its quota; a paper appears once, under its best-scoring interest; and
the digest is ordered top pick first, then section by section.

A subscriber with one interest gets sections by keyword (the keyword each paper matched most);
the templates show headings only when a digest has more than one section.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

from sqlmodel import Session, col, select

from papermail import ranking
from papermail.authors import AuthorIndex
from papermail.models import FollowedAuthor, Interest, Subscriber, Topic

OTHER = "More for you"  # heading of papers no keyword of a one-interest reader names
EXTRA_PICKS = 2  # asked beyond a quota when papers may go to another section instead

Key = tuple[int, int | None]


@dataclass(frozen=True, slots=True)
class TopicProfile:
    subscriber_id: int
    topic_id: int | None  # None: a subscriber without interests rows (keywords only)
    name: str
    max_papers: int
    keywords: tuple[ranking.Keyword, ...]
    authors: tuple[str, ...] = ()  # followed, as typed

    @property
    def key(self) -> Key:
        return (self.subscriber_id, self.topic_id)


@dataclass(frozen=True, slots=True)
class Placement:
    """Where a picked paper goes: its interest, its section heading, the followed author."""

    topic_id: int | None
    section: str
    followed: str | None = None


def load_topics(
    session: Session, subscribers: Sequence[Subscriber]
) -> dict[int, list[TopicProfile]]:
    """Every subscriber's interests with their keywords and followed authors, in three queries.
    Keyword rows without an interest belong to the first one; a subscriber without interests
    gets one from their keywords (named after the first)."""
    ids = [s.id for s in subscribers if s.id is not None]
    topics: dict[int, list[Topic]] = defaultdict(list)
    for topic in session.exec(
        select(Topic)
        .where(col(Topic.subscriber_id).in_(ids))
        .order_by(col(Topic.subscriber_id), col(Topic.position), col(Topic.id))
    ):
        topics[topic.subscriber_id].append(topic)
    words: dict[Key, list[ranking.Keyword]] = defaultdict(list)
    for interest in session.exec(
        select(Interest).where(col(Interest.subscriber_id).in_(ids)).order_by(col(Interest.id))
    ):
        own = topics.get(interest.subscriber_id)
        tid = interest.topic_id if own and interest.topic_id is not None else None
        if tid is None and own:
            tid = own[0].id
        words[(interest.subscriber_id, tid)].append(
            ranking.Keyword(interest.phrase, interest.weight, interest.negative)
        )
    authors: dict[int, list[str]] = defaultdict(list)
    if topics:
        for tid, name in session.exec(
            select(FollowedAuthor.topic_id, FollowedAuthor.name)
            .join(Topic, col(Topic.id) == FollowedAuthor.topic_id)
            .where(col(Topic.subscriber_id).in_(ids))
            .order_by(col(FollowedAuthor.id))
        ):
            authors[tid].append(name)
    result: dict[int, list[TopicProfile]] = {}
    for s in subscribers:
        if s.id is None:
            continue
        own = topics.get(s.id)
        if not own:
            kw = tuple(words.get((s.id, None), ()))
            first = next((k.phrase for k in kw if not k.negative), "")
            result[s.id] = [TopicProfile(s.id, None, first, s.max_papers, kw)]
            continue
        result[s.id] = [
            TopicProfile(
                s.id,
                t.id,
                t.name,
                t.max_papers,
                tuple(words.get((s.id, t.id), ())),
                tuple(authors.get(t.id, ())),  # type: ignore[arg-type]
            )
            for t in own
        ]
    return result


def profiles(topics: Mapping[int, Sequence[TopicProfile]]) -> list[ranking.Profile]:
    """One ranking profile per interest. A lone interest without followed authors asks for
    exactly its quota (the common case, and the batch's fast path); otherwise a few more, so
    that a paper going to another section or by a followed author leaves no gap."""
    out = []
    for own in topics.values():
        for t in own:
            extra = min(t.max_papers, EXTRA_PICKS) if len(own) > 1 or t.authors else 0
            out.append(ranking.Profile(key=t.key, keywords=t.keywords, limit=t.max_papers + extra))
    return out


def followed_papers(
    topics: Sequence[TopicProfile], index: AuthorIndex | None, eligible: Collection[int]
) -> dict[Key, dict[int, str]]:
    """Per interest, the eligible papers by its followed authors: {paper index: the author as
    the paper spells them}."""
    if index is None or not any(t.authors for t in topics):
        return {}
    allowed = set(eligible)
    found: dict[Key, dict[int, str]] = {}
    for t in topics:
        hits: dict[int, str] = {}
        for name in t.authors:
            for i, spelled in index.papers_by(name).items():
                if i in allowed:
                    hits.setdefault(i, spelled)
        if hits:
            found[t.key] = hits
    return found


def _heading(match: ranking.Match, keywords: Sequence[str]) -> str:
    """The keyword a paper matched most (its reasons come strongest first)."""
    own = {k.casefold(): k for k in keywords}
    for term in match.matched:
        if term.casefold() in own:
            return own[term.casefold()]
    return OTHER


def assemble(
    topics: Sequence[TopicProfile],
    matches: Mapping,
    followed: Mapping[Key, Mapping[int, str]],
) -> list[tuple[ranking.Match, Placement]]:
    """One subscriber's digest: each paper once, under its best interest (a followed author's
    interest first), each interest at most its quota besides followed authors' papers; the best
    paper first (the top pick), then section by section in the interests' (or keywords') order."""
    claimed: dict[int, Key] = {}
    for t in topics:
        for i in followed.get(t.key, {}):
            claimed.setdefault(i, t.key)
    best: dict[int, tuple[float, Key]] = {}
    for t in topics:
        for m in matches.get(t.key, ()):
            if m.index not in claimed and (m.index not in best or m.score > best[m.index][0]):
                best[m.index] = (m.score, t.key)
    several = len(topics) > 1
    sections: dict[str, list[tuple[ranking.Match, Placement]]] = {}
    ranked: list[tuple[ranking.Match, Placement]] = []
    for t in topics:
        keywords = [k.phrase for k in t.keywords if not k.negative and k.weight > 0]
        if not several:
            for phrase in keywords:
                sections.setdefault(phrase, [])
        own = matches.get(t.key, ())
        by_index = {m.index: m for m in own}
        mine = [m for m in own if best.get(m.index, (0.0, None))[1] == t.key][: t.max_papers]
        for m in mine:
            section = t.name if several else _heading(m, keywords)
            pick = (m, Placement(t.topic_id, section))
            ranked.append(pick)
            sections.setdefault(section, []).append(pick)
        for i, author in followed.get(t.key, {}).items():
            if claimed[i] != t.key:
                continue
            m = by_index.get(i) or ranking.Match(i, 0.0, ())
            section = t.name if several or not m.matched else _heading(m, keywords)
            sections.setdefault(section, []).append((m, Placement(t.topic_id, section, author)))
    if not ranked and not any(sections.values()):
        return []
    top = max(ranked, key=lambda p: p[0].score) if ranked else None
    ordered = [top] if top else []
    if OTHER in sections:
        sections[OTHER] = sections.pop(OTHER)  # last
    for picks in sections.values():
        ordered.extend(p for p in picks if p is not top)
    return ordered
