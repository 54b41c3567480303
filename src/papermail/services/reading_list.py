"""A reader's reading list (issue 13 item 4): papers saved from a digest, as a page, BibTeX
and an Atom feed of their own. Saving a paper also rates it "more like this" (for the interest
it was shown under). One unit of work each: the caller commits."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from xml.etree import ElementTree as ET

from sqlmodel import Session, col, delete, select

from papermail.models import Paper, SavedPaper, Subscriber, utcnow
from papermail.services import feedback

MAX_SAVED = 2000  # the page, the BibTeX file and the feed show the newest this many
FEED_SIZE = 100


@dataclass(frozen=True)
class Saved:
    paper: Paper
    saved_at: datetime


def save_paper(
    session: Session, *, subscriber_id: int, paper_id: str, topic_id: int | None = None
) -> bool:
    """Put a paper on the reading list and rate it "more like this"; False if it already was."""
    feedback.record_rating(
        session,
        subscriber_id=subscriber_id,
        paper_id=paper_id,
        value=feedback.LIKE,
        topic_id=topic_id,
    )
    if is_saved(session, subscriber_id=subscriber_id, paper_id=paper_id):
        return False
    session.add(SavedPaper(subscriber_id=subscriber_id, paper_id=paper_id, topic_id=topic_id))
    session.flush()
    return True


def unsave_paper(session: Session, *, subscriber_id: int, paper_id: str) -> None:
    """Take a paper off the list (its rating stays: remove it from the digest's rating page)."""
    session.exec(
        delete(SavedPaper).where(
            SavedPaper.subscriber_id == subscriber_id, SavedPaper.paper_id == paper_id
        )
    )


def is_saved(session: Session, *, subscriber_id: int, paper_id: str) -> bool:
    return (
        session.exec(
            select(SavedPaper.id).where(
                SavedPaper.subscriber_id == subscriber_id, SavedPaper.paper_id == paper_id
            )
        ).first()
        is not None
    )


def saved_papers(session: Session, subscriber_id: int, *, limit: int = MAX_SAVED) -> list[Saved]:
    """Newest first."""
    rows = session.exec(
        select(Paper, SavedPaper.created_at)
        .join(SavedPaper, col(SavedPaper.paper_id) == Paper.id)
        .where(SavedPaper.subscriber_id == subscriber_id)
        .order_by(col(SavedPaper.created_at).desc(), col(SavedPaper.id).desc())
        .limit(limit)
    )
    return [Saved(paper, at) for paper, at in rows]


# --- BibTeX ---------------------------------------------------------------------------------

_BIB_SPECIAL = re.compile(r"([{}\\&%$#_^~])")


def _bib(text: str) -> str:
    """A value safe inside braces: specials escaped, whitespace folded."""
    return _BIB_SPECIAL.sub(r"\\\1", " ".join(text.split()))


def _key(paper: Paper, used: set[str]) -> str:
    first = (paper.authors or ["anon"])[0]
    last = first.split(",")[0] if "," in first else (first.split() or ["anon"])[-1]
    ascii_last = unicodedata.normalize("NFKD", last).encode("ascii", "ignore").decode()
    year = str((paper.published or paper.listing_day or paper.first_seen_at).year)
    word = next((w for w in re.findall(r"[A-Za-z]+", paper.title) if len(w) > 3), "paper")
    base = re.sub(r"[^A-Za-z0-9]", "", ascii_last).lower() + year + word.lower()
    key, n = base or "paper", 1
    while key in used:
        n += 1
        key = f"{base}{chr(ord('a') + (n - 2) % 26)}{(n - 2) // 26 or ''}"
    used.add(key)
    return key


def bibtex(papers: Sequence[Paper]) -> str:
    """One @misc entry per paper (arXiv's style: eprint + archivePrefix when it has an id)."""
    used: set[str] = set()
    out = []
    for paper in papers:
        fields = [("title", "{" + _bib(paper.title) + "}")]
        if paper.authors:
            fields.append(("author", " and ".join(_bib(a) for a in paper.authors)))
        day = paper.published or paper.listing_day or paper.first_seen_at
        fields.append(("year", str(day.year)))
        if paper.arxiv_id or re.fullmatch(r"\d{4}\.\d{4,5}", paper.id):
            fields += [
                ("eprint", paper.arxiv_id or paper.id),
                ("archivePrefix", "arXiv"),
            ]
            if paper.primary_category:
                fields.append(("primaryClass", _bib(paper.primary_category)))
        if paper.url:
            fields.append(("url", paper.url))
        if paper.journal_ref:
            fields.append(("note", _bib(paper.journal_ref)))
        body = ",\n".join(f"  {name} = {{{value}}}" for name, value in fields)
        out.append(f"@misc{{{_key(paper, used)},\n{body}\n}}\n")
    return "\n".join(out)


# --- Atom -----------------------------------------------------------------------------------


def atom_feed(
    subscriber: Subscriber, saved: Sequence[Saved], *, base_url: str, self_url: str
) -> bytes:
    """The reading list as Atom: one entry per saved paper, newest first."""
    from papermail.web.feed import ATOM, _add, _stamp, _tag

    since = subscriber.created_at.date()
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _add(feed, "id", _tag(base_url, since, f"reading-list/{subscriber.id}"))
    _add(feed, "title", "papermail: your reading list")
    newest = max((s.saved_at for s in saved), default=subscriber.created_at or utcnow())
    _add(feed, "updated", _stamp(newest))
    _add(feed, "link", rel="self", type="application/atom+xml", href=self_url)
    _add(_add(feed, "author"), "name", "papermail")
    _add(feed, "generator", "papermail")
    for item in saved[:FEED_SIZE]:
        paper = item.paper
        entry = _add(feed, "entry")
        _add(entry, "id", _tag(base_url, since, f"saved/{subscriber.id}/{paper.id}"))
        _add(entry, "title", paper.title)
        _add(entry, "updated", _stamp(item.saved_at))
        if paper.url:
            _add(entry, "link", rel="alternate", type="text/html", href=paper.url)
        for name in paper.authors[:20]:
            _add(_add(entry, "author"), "name", name)
        _add(entry, "summary", paper.abstract)
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="utf-8")
