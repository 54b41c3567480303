"""A subscriber's private Atom feed (RFC 4287): one entry per digest.

One entry per digest, not per paper: the feed mirrors the mails one to one (same issue, same
ranking and why-matched terms, a "view in browser" link), a reader shows a day's papers together
the way the subscriber asked for them, and the feed stays small (papers x days would flood a
reader with tens of entries a day). Entry ids are tag URIs of the digest id, so they never change
when links are re-issued. Built with ElementTree, which escapes every text it writes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from urllib.parse import urlsplit
from xml.etree import ElementTree as ET

from papermail.emails import DigestEntry, format_issue_date

ATOM = "http://www.w3.org/2005/Atom"
FEED_SIZE = 50


@dataclass(frozen=True)
class FeedEntry:
    digest_id: int
    issue_date: date
    created_at: datetime
    view_url: str
    content_html: str
    papers: Sequence[DigestEntry]


def _stamp(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _tag(base_url: str, since: date, specific: str) -> str:
    """RFC 4151 tag URI: stable, unique, and not a link."""
    host = urlsplit(base_url).hostname or "papermail.localhost"
    return f"tag:{host},{since.isoformat()}:papermail/{specific}"


# What XML 1.0 cannot hold at all, escaped or not: C0 controls but tab and newlines, lone
# surrogates, U+FFFE/U+FFFF. A paper title with one must not make the whole feed unreadable.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def xml_text(text: str) -> str:
    return _NOT_XML.sub("", text)


def _add(parent: ET.Element, name: str, text: str | None = None, **attrs: str) -> ET.Element:
    safe = {key: xml_text(value) for key, value in attrs.items()}
    element = ET.SubElement(parent, f"{{{ATOM}}}{name}", safe)
    if text is not None:
        element.text = xml_text(text)
    return element


def build_feed(
    *,
    base_url: str,
    subscriber_id: int,
    subscribed_on: date,
    created_at: datetime,
    self_url: str,
    keywords: Sequence[str],
    entries: Sequence[FeedEntry],
) -> bytes:
    ET.register_namespace("", ATOM)
    feed = ET.Element(f"{{{ATOM}}}feed")
    _add(feed, "id", _tag(base_url, subscribed_on, f"subscriber/{subscriber_id}"))
    _add(feed, "title", "papermail: your paper digests")
    if keywords:
        _add(feed, "subtitle", "Papers matching " + ", ".join(keywords))
    newest = max((e.created_at for e in entries), default=created_at)
    _add(feed, "updated", _stamp(newest))
    _add(feed, "link", rel="self", type="application/atom+xml", href=self_url)
    _add(feed, "link", rel="alternate", type="text/html", href=base_url.rstrip("/") + "/papers")
    author = _add(feed, "author")
    _add(author, "name", "papermail")
    _add(feed, "generator", "papermail")
    for entry in entries:
        item = _add(feed, "entry")
        _add(item, "id", _tag(base_url, subscribed_on, f"digest/{entry.digest_id}"))
        count = len(entry.papers)
        label = format_issue_date(entry.issue_date)
        _add(item, "title", f"{label}: {count} paper{'' if count == 1 else 's'}")
        _add(item, "updated", _stamp(entry.created_at))
        _add(item, "published", _stamp(entry.created_at))
        _add(item, "link", rel="alternate", type="text/html", href=entry.view_url)
        top = "; ".join(p.title for p in entry.papers[:3])
        _add(item, "summary", top + ("; …" if count > 3 else ""))
        _add(item, "content", entry.content_html, type="html")
    return b'<?xml version="1.0" encoding="utf-8"?>\n' + ET.tostring(feed, encoding="utf-8")
