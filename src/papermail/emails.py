"""Email rendering: the one Jinja environment, CSS inlining and MIME assembly. Pure: no DB, no I/O
beyond reading templates.

Every email is three templates under ``email/``: ``<name>.subject.j2``, ``<name>.html.j2`` and
``<name>.txt.j2``. Mail clients ignore most ``<style>`` rules, so CSS must sit in ``style``
attributes; premailer does that but costs ~12 ms per email. ``EmailRenderer`` therefore inlines
each HTML template once, at compile time: inheritance is flattened first (the CSS lives in the
base layout, the markup in the child), and every Jinja tag is swapped for an inert placeholder
while premailer runs. Consequences for template authors:

- style only by class/element selectors; no structural selectors (``:last-child``) and no
  classes added conditionally (``class="x{% if %} y{% endif %}"``): pick whole elements with
  ``{% if %}`` instead (e.g. a divider ``{% if not loop.last %}``);
- child templates hold only ``{% block %}``s; no Jinja inside ``<style>`` or ``style="…"``.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parseaddr
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from jinja2 import (
    BaseLoader,
    Environment,
    FileSystemLoader,
    FunctionLoader,
    StrictUndefined,
    Template,
    select_autoescape,
)
from premailer import Premailer

from papermail.settings import Settings

SNIPPET_CHARS = 300
SHOWN_AUTHORS = 3
# CRLF line ends and folded headers; raw headers we set ourselves are emitted untouched, because
# the email package would RFC 2047-encode a long URL in List-Unsubscribe, which receivers reject.
SMTP_POLICY = policy.SMTP.clone(refold_source="none")
MAX_LINE = 998


@lru_cache(maxsize=8)
def create_environment(templates_dir: Path) -> Environment:
    """The one Jinja environment: HTML autoescaped (also for ``from_string``), strict names."""
    return Environment(
        loader=FileSystemLoader(templates_dir),
        autoescape=select_autoescape(
            enabled_extensions=("html", "htm", "xml", "html.j2"), default_for_string=True
        ),
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def inline_css(html: str) -> str:
    """Move ``<style>`` rules into ``style`` attributes; media queries stay in a ``<style>``.

    ``keep_style_tags=False`` still keeps what cannot be inlined (``@media``, ``:hover``) in a
    leftover ``<style>``; keeping the whole sheet would only double the size. ``strip_important``
    is off because the media query needs ``!important`` to beat the inline styles.
    """
    premailer = Premailer(
        html,
        base_url=None,
        allow_network=False,
        allow_loading_external_files=False,
        keep_style_tags=False,
        remove_classes=False,
        strip_important=False,
        disable_validation=True,
        cssutils_logging_level=logging.CRITICAL,
    )
    return str(premailer.transform())


_JINJA_TAG = re.compile(r"\{\{.*?\}\}|\{%.*?%\}|\{#.*?#\}", re.DOTALL)
_INHERITANCE_TAG = re.compile(
    r"\{%-?\s*(?:extends|block|endblock)\b.*?%\}|\{\{-?\s*super\(\)\s*-?\}\}", re.DOTALL
)


class _Placeholders:
    """Swaps Jinja tags for inert ``PMJ<nonce><n>Z`` words that premailer and lxml leave alone."""

    def __init__(self) -> None:
        self.nonce = secrets.token_hex(4)
        self.tags: list[str] = []
        self.pattern = re.compile(rf"PMJ{self.nonce}(\d+)Z")

    def protect(self, source: str, keep: re.Pattern[str] | None = None) -> str:
        def swap(match: re.Match[str]) -> str:
            if keep is not None and keep.fullmatch(match.group(0)):
                return match.group(0)
            self.tags.append(match.group(0))
            return f"PMJ{self.nonce}{len(self.tags) - 1}Z"

        return _JINJA_TAG.sub(swap, source)

    def found(self, text: str) -> set[int]:
        return {int(n) for n in self.pattern.findall(text)}

    def inline(self, protected: str) -> str:
        """Premailer the protected source and put the tags back, refusing to lose any."""
        inlined = inline_css(protected)
        lost = self.found(protected) - self.found(inlined)
        if lost:
            tags = ", ".join(self.tags[n] for n in sorted(lost))
            raise ValueError(f"CSS inlining dropped template tags {tags}: move them into markup")
        return self.pattern.sub(lambda m: self.tags[int(m.group(1))], inlined)


def inline_template_source(source: str) -> str:
    """Inline CSS into a (self-contained) Jinja HTML template source, tags kept intact."""
    placeholders = _Placeholders()
    return placeholders.inline(placeholders.protect(source))


def inline_template(env: Environment, name: str) -> str:
    """Flatten ``{% extends %}`` with Jinja itself (all other tags protected), then inline once."""
    if env.loader is None:
        raise ValueError("the environment needs a loader to resolve {% extends %}")
    loader: BaseLoader = env.loader
    placeholders = _Placeholders()
    leaf: set[int] = set()

    def load(template_name: str) -> str:
        source = loader.get_source(env, template_name)[0]
        protected = placeholders.protect(source, keep=_INHERITANCE_TAG)
        if template_name == name:
            leaf.update(placeholders.found(protected))
        return protected

    flattener = Environment(
        loader=FunctionLoader(load),
        undefined=StrictUndefined,
        trim_blocks=env.trim_blocks,
        lstrip_blocks=env.lstrip_blocks,
        keep_trailing_newline=env.keep_trailing_newline,
    )
    flat = flattener.get_template(name).render()
    lost = leaf - placeholders.found(flat)
    if lost:
        tags = ", ".join(placeholders.tags[n] for n in sorted(lost))
        raise ValueError(f"{name}: tags outside any parent block would vanish: {tags}")
    return placeholders.inline(flat)


@dataclass(frozen=True)
class RenderedEmail:
    subject: str
    html: str
    text: str


class EmailRenderer:
    """Renders ``email/<name>.*.j2``; HTML templates are CSS-inlined once and cached."""

    def __init__(self, settings: Settings) -> None:
        self.environment = create_environment(settings.templates_dir)
        self._html: dict[str, Template] = {}

    def html_template(self, name: str) -> Template:
        template = self._html.get(name)
        if template is None:
            source = inline_template(self.environment, f"email/{name}.html.j2")
            template = self._html[name] = self.environment.from_string(source)
        return template

    def render(self, name: str, context: Mapping[str, Any]) -> RenderedEmail:
        env = self.environment
        subject = env.get_template(f"email/{name}.subject.j2").render(context)
        return RenderedEmail(
            subject=" ".join(subject.split()),
            html=self.html_template(name).render(context),
            text=env.get_template(f"email/{name}.txt.j2").render(context),
        )


_RENDERERS: dict[Path, EmailRenderer] = {}


def get_renderer(settings: Settings) -> EmailRenderer:
    """One renderer per templates folder for the whole process, so each template is inlined
    once per worker, not once per digest."""
    renderer = _RENDERERS.get(settings.templates_dir)
    if renderer is None:
        renderer = _RENDERERS.setdefault(settings.templates_dir, EmailRenderer(settings))
    return renderer


def _http_url(url: str | None) -> str:
    """Only http(s) links reach an email: a scraped ``javascript:`` URL must not be clickable."""
    if url and urlsplit(url.strip()).scheme.lower() in {"http", "https"}:
        return url.strip()
    return ""


@dataclass(frozen=True, kw_only=True)
class DigestEntry:
    """One paper as templates see it: plain data, no ORM object."""

    title: str
    url: str | None
    authors: tuple[str, ...] = ()
    author_count: int | None = None
    organisation: str | None = None
    published: date | None = None
    upvotes: int | None = None
    abstract: str = ""
    matched: tuple[str, ...] = ()
    score: float = 0.0

    @property
    def link(self) -> str:
        """The URL if it is http(s), else "" (templates then show the title unlinked)."""
        return _http_url(self.url)

    @property
    def snippet(self) -> str:
        """The abstract cut at a word boundary near ``SNIPPET_CHARS``."""
        text = " ".join(self.abstract.split())
        if len(text) <= SNIPPET_CHARS:
            return text
        cut = text[:SNIPPET_CHARS]
        if " " in cut[SNIPPET_CHARS // 2 :]:
            cut = cut.rsplit(" ", 1)[0]
        return cut.rstrip(" ,;:.-") + "…"

    @property
    def authors_label(self) -> str:
        """'A, B, C +5 more', or '8 authors' when the source only gave a count."""
        total = max(self.author_count or 0, len(self.authors))
        if not self.authors:
            if not total:
                return ""
            return f"{total} author{'s' if total != 1 else ''}"
        shown = self.authors[:SHOWN_AUTHORS]
        more = total - len(shown)
        return ", ".join(shown) + (f" +{more} more" if more else "")


@dataclass(frozen=True)
class DigestLinks:
    view: str
    manage: str
    unsubscribe: str


_WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def format_issue_date(day: date) -> str:
    """'Mon 23 Nov 2026', independent of the process locale."""
    return f"{_WEEKDAYS[day.weekday()]} {day.day} {_MONTHS[day.month - 1]} {day.year}"


def digest_context(
    *,
    email: str,
    issue_date: date,
    entries: Sequence[DigestEntry],
    scanned: int,
    links: DigestLinks,
) -> dict[str, Any]:
    """Everything ``email/digest.*.j2`` use; the web "view in browser" page can reuse it."""
    return {
        "email": email,
        "issue_date": issue_date,
        "issue_label": format_issue_date(issue_date),
        "entries": list(entries),
        "count": len(entries),
        "scanned": scanned,
        "links": links,
    }


def confirm_context(*, email: str, keywords: Sequence[str], confirm_url: str) -> dict[str, Any]:
    """Everything ``email/confirm.*.j2`` use (no footer links: they are not subscribed yet)."""
    return {"email": email, "keywords": list(keywords), "confirm_url": confirm_url}


def make_message_id(domain: str) -> str:
    """A globally unique ``<…@domain>``; store it to match bounces and replies later."""
    return make_msgid(domain=domain)


def _header_url(url: str) -> str:
    if not url.isascii() or any(c.isspace() for c in url) or "<" in url or ">" in url:
        raise ValueError(f"URL not usable in a header: {url!r}")
    return url


def _list_unsubscribe(url: str, mailto: str | None) -> str:
    """RFC 2369/8058 value, folded by hand after the comma (one URL per line, never encoded)."""
    targets = [f"<{_header_url(url)}>"]
    if mailto:
        query = "" if "?" in mailto else "?subject=unsubscribe"
        targets.append(f"<{_header_url('mailto:' + mailto.removeprefix('mailto:') + query)}>")
    value = ",\n ".join(targets)
    if any(len(line) > MAX_LINE - len("List-Unsubscribe: ") for line in value.splitlines()):
        raise ValueError("List-Unsubscribe URL longer than an SMTP line")
    return value


def build_message(
    rendered: RenderedEmail,
    *,
    sender: str,
    recipient: str,
    message_id: str,
    unsubscribe_url: str | None = None,
    unsubscribe_mailto: str | None = None,
    date: datetime | None = None,
    list_id: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> bytes:
    """A multipart/alternative message as SMTP-ready bytes: CRLF, lines <= 998, quoted-printable.

    With ``unsubscribe_url`` it is a newsletter: List-Unsubscribe (+ One-Click POST, RFC 8058),
    List-Id and ``Precedence: bulk``; without (confirmation mails) it carries none of them.
    """
    msg = EmailMessage(policy=SMTP_POLICY)
    msg["From"] = sender
    msg["To"] = recipient
    msg["Subject"] = rendered.subject
    when = date or datetime.now(UTC)
    msg["Date"] = format_datetime(when if when.tzinfo else when.replace(tzinfo=UTC))
    msg["Message-ID"] = message_id
    if unsubscribe_url:
        domain = parseaddr(sender)[1].rpartition("@")[2] or "localhost"
        msg.set_raw("List-Unsubscribe", _list_unsubscribe(unsubscribe_url, unsubscribe_mailto))
        msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
        msg["List-Id"] = list_id or f"papermail digest <digest.{domain}>"
        msg["Precedence"] = "bulk"
    for name, value in (extra_headers or {}).items():
        msg[name] = value
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg.as_bytes()
