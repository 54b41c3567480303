"""Email rendering and MIME assembly: what a mail client and a mail server will see."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from jinja2 import Environment
from jinja2.filters import do_indent, do_wordwrap

from papermail.emails import (
    DigestEntry,
    DigestLinks,
    EmailRenderer,
    RenderedEmail,
    build_message,
    build_message_stdlib,
    cached_indent,
    cached_wordwrap,
    confirm_context,
    create_environment,
    digest_context,
    get_renderer,
    inline_css,
    inline_template,
    inline_template_source,
    make_message_id,
)
from papermail.errors import DeliveryError
from papermail.settings import Settings

HOSTILE = '<script>alert(1)</script>"><img src=x onerror=alert(2)>'
LINKS = DigestLinks(
    view="https://papers.example.org/d/view?t=abc&x=1",
    manage="https://papers.example.org/manage/tok123",
    unsubscribe="https://papers.example.org/unsubscribe/tok456",
)


def entry(**overrides: Any) -> DigestEntry:
    fields: dict[str, Any] = {
        "title": "Gated Delta Networks: Improving Mamba2 with Delta Rule",
        "url": "https://arxiv.org/abs/2412.06464",
        "authors": ("Songlin Yang", "Jan Kautz", "Ali Hatamizadeh", "Someone Else"),
        "author_count": 9,
        "organisation": "NVIDIA",
        "published": date(2026, 11, 20),
        "upvotes": 12,
        "abstract": "Linear Transformers have gained attention as efficient alternatives. " * 8,
        "matched": ("linear attention", "delta rule"),
        "where": ("abstract", "title+abstract"),
        "score": 0.41,
    }
    return DigestEntry(**(fields | overrides))


def context(entries: list[DigestEntry], scanned: int = 240) -> dict[str, Any]:
    return digest_context(
        email="reader@example.org",
        issue_date=date(2026, 11, 23),
        entries=entries,
        scanned=scanned,
        links=LINKS,
    )


@pytest.fixture(scope="module")
def renderer() -> EmailRenderer:
    return EmailRenderer(Settings())


# --- what a mail client sees -------------------------------------------------------------------


class ClientView(HTMLParser):
    """Reduces HTML to what a client that ignores <style> renders: each element's tag, inline
    style, href and class, in document order, plus the whitespace-collapsed text (clients
    collapse runs of whitespace); the leftover <style> text is kept apart."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, str | None, str | None, str | None]] = []
        self.words: list[str] = []
        self.styles: list[str] = []
        self._in_style = False
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.elements.append((tag, a.get("style"), a.get("href"), a.get("class")))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.styles.append(" ".join(data.split()))
        else:
            self.words.extend(data.split())


def test_css_is_inlined_and_media_query_stays_in_style(renderer: EmailRenderer) -> None:
    html = renderer.render("digest", context([entry()])).html
    view = ClientView(html)
    styled = {cls: style for _tag, style, _href, cls in view.elements if cls}
    assert "max-width:640px" in styled["container"]
    assert "font-size:17px" in styled["title"]
    assert 'href="https://arxiv.org/abs/2412.06464"' in html
    assert len(view.styles) == 1 and "@media (max-width: 600px)" in view.styles[0]
    assert "!important" in view.styles[0]  # needed to beat the inline styles on phones
    assert "max-width: 640px" not in view.styles[0]  # inlined rules are not shipped twice


@pytest.mark.parametrize(
    "entries",
    [
        [entry(), entry(title="Second", url=None, authors=(), author_count=8, upvotes=None)],
        [entry(title=HOSTILE, abstract=HOSTILE, matched=(HOSTILE, ">= 2"), organisation=None)],
        [],
    ],
    ids=["two", "hostile", "empty"],
)
def test_inlining_the_template_once_equals_premailer_per_email(
    renderer: EmailRenderer, entries: list[DigestEntry]
) -> None:
    """The cached template (CSS inlined once into the flattened source) must give a mail client
    exactly what premailer-ing every rendered email would: same elements in the same order with
    the same inline style, href and class, same text, same leftover <style>."""
    ctx = context(entries)
    once = renderer.render("digest", ctx).html
    per_email = inline_css(renderer.environment.get_template("email/digest.html.j2").render(ctx))
    a, b = ClientView(once), ClientView(per_email)
    assert a.elements == b.elements
    assert a.words == b.words
    assert a.styles == b.styles


def test_confirm_template_inlined_once_equals_premailer_per_email(renderer: EmailRenderer) -> None:
    ctx = confirm_context(
        email="new@example.org",
        keywords=["linear attention", HOSTILE],
        confirm_url="https://papers.example.org/confirm/tok?x=1&y=2",
    )
    once = renderer.render("confirm", ctx).html
    per_email = inline_css(renderer.environment.get_template("email/confirm.html.j2").render(ctx))
    a, b = ClientView(once), ClientView(per_email)
    assert (a.elements, a.words, a.styles) == (b.elements, b.words, b.styles)


def test_urls_reach_the_mail_verbatim(renderer: EmailRenderer) -> None:
    """Unlike premailer run on each email, which percent-encodes hrefs it finds odd."""
    url = "https://example.org/p?a=1&b={{ x }}%20y"
    html = renderer.render("digest", context([entry(url=url)])).html
    assert 'href="https://example.org/p?a=1&amp;b={{ x }}%20y"' in html


def test_inline_template_source_keeps_jinja_tags_intact() -> None:
    source = (
        "<html><head><style>a { color: red } .n { font-weight: bold }</style></head><body>"
        "{# a comment #}{% for p in papers if p.score >= 0.5 %}"
        '<a href="{{ p.url }}">{{ p.title }}</a><span class="n">{{ p.score }}</span>'
        "{% endfor %}</body></html>"
    )
    inlined = inline_template_source(source)
    for tag in ("{{ p.url }}", "{% for p in papers if p.score >= 0.5 %}", "{# a comment #}"):
        assert tag in inlined
    assert '<a href="{{ p.url }}" style="color:red">' in inlined
    assert 'style="font-weight:bold">{{ p.score }}' in inlined


def test_tags_outside_blocks_of_a_child_template_are_refused(tmp_path: Path) -> None:
    (tmp_path / "base.html.j2").write_text(
        "<html><head><style>p { color: red }</style></head><body>{% block b %}{% endblock %}"
        "</body></html>"
    )
    (tmp_path / "child.html.j2").write_text(
        '{% extends "base.html.j2" %}{% set lost = 1 %}{% block b %}<p>{{ x }}</p>{% endblock %}'
    )
    with pytest.raises(ValueError, match=r"\{% set lost = 1 %\}"):
        inline_template(create_environment(tmp_path), "child.html.j2")


def test_hostile_text_is_escaped_in_html_and_literal_in_text(renderer: EmailRenderer) -> None:
    bad = entry(title=HOSTILE, abstract=HOSTILE, matched=(HOSTILE,), organisation=HOSTILE)
    out = renderer.render("digest", context([bad]))
    assert "<script" not in out.html
    assert "<img" not in out.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in out.html
    assert out.text.count(HOSTILE) == 4  # title, organisation, abstract, matched
    assert out.subject.startswith("<script>")  # a plain-text header: literal, never markup


def test_only_http_links_are_clickable(renderer: EmailRenderer) -> None:
    out = renderer.render("digest", context([entry(url="javascript:alert(1)")]))
    assert "javascript:" not in out.html
    assert "javascript:" not in out.text


def test_digest_content_in_both_parts(renderer: EmailRenderer) -> None:
    out = renderer.render("digest", context([entry(), entry(title="Other", authors=())]))
    assert out.subject == "Gated Delta Networks and 1 more for you"
    for part in (out.html, out.text):
        assert "2 papers for you, from 240 new papers scanned" in part
        assert "Songlin Yang, Jan Kautz, Ali Hatamizadeh et al." in part
        assert "9 authors" in part
        assert "▲ 12" in part
        assert "NVIDIA" in part
    assert "Why: <b" in out.html
    assert ">linear attention</b> in the abstract; <b" in out.html
    assert ">delta rule</b> in the title and abstract" in out.html
    assert "Why: linear attention in the abstract; delta rule in the title and abstract" in (
        out.text
    )
    assert "1. Gated Delta Networks" in out.text and "2. Other" in out.text
    for label, url in [("View in browser", LINKS.view), ("Unsubscribe", LINKS.unsubscribe)]:
        assert f"{label}: {url}" in out.text
        assert label in out.html
    assert 'href="https://papers.example.org/d/view?t=abc&amp;x=1"' in out.html
    assert out.html.count('class="entry"') == 2


def test_subject_singular_and_empty(renderer: EmailRenderer) -> None:
    one = renderer.render("digest", context([entry()], scanned=1))
    assert one.subject == "Gated Delta Networks: your paper today"
    assert "1 paper for you, from 1 new paper scanned" in one.text
    none = renderer.render("digest", context([]))
    assert none.subject == "papermail · no new papers for you · Mon 23 Nov 2026"


def test_confirm_mail_has_no_footer_links(renderer: EmailRenderer) -> None:
    ctx = confirm_context(
        email="new@example.org",
        keywords=["linear attention", HOSTILE],
        confirm_url="https://papers.example.org/confirm/tok?x=1&y=2",
    )
    out = renderer.render("confirm", ctx)
    assert out.subject == "Confirm your papermail subscription"
    assert 'href="https://papers.example.org/confirm/tok?x=1&amp;y=2"' in out.html
    assert "https://papers.example.org/confirm/tok?x=1&y=2" in out.text
    assert "Unsubscribe" not in out.html and "<script" not in out.html
    assert f"  - {HOSTILE}" in out.text
    assert "ignore this mail" in out.text and "ignore this mail" in out.html
    assert 'class="button"' in out.html and "background-color:#6d28d9" in out.html


def test_get_renderer_is_shared_per_templates_dir(tmp_path: Path) -> None:
    settings = Settings()
    assert get_renderer(settings) is get_renderer(Settings())
    assert get_renderer(Settings(templates_dir=tmp_path)) is not get_renderer(settings)


def test_snippet_and_authors_label() -> None:
    long = entry(abstract="word " * 200)
    assert long.snippet.endswith("word…") and len(long.snippet) <= 301
    assert entry(abstract="x" * 5000).snippet == "x" * 300 + "…"
    assert entry(abstract="  short\n abstract ").snippet == "short abstract"
    assert entry(authors=("A", "B"), author_count=None).authors_label == "A, B"
    assert entry(authors=(), author_count=1).authors_label == "1 author"
    assert entry(authors=(), author_count=None).authors_label == ""


# --- MIME ---------------------------------------------------------------------------------------


def build(rendered: RenderedEmail, **overrides: Any) -> bytes:
    kwargs: dict[str, Any] = {
        "sender": "papermail <digest@papers.example.org>",
        "recipient": "reader@example.org",
        "message_id": make_message_id("papers.example.org"),
        "unsubscribe_url": "https://papers.example.org/unsubscribe/" + "t0k3n" * 40,
        "unsubscribe_mailto": "unsubscribe@papers.example.org",
        "date": datetime(2026, 11, 23, 7, 0, tzinfo=UTC),
    }
    return build_message(rendered, **(kwargs | overrides))


def parse(data: bytes) -> EmailMessage:
    return message_from_bytes(data, policy=policy.default)  # type: ignore[return-value]


def test_message_headers(renderer: EmailRenderer) -> None:
    rendered = renderer.render("digest", context([entry()]))
    message_id = make_message_id("papers.example.org")
    data = build(rendered, message_id=message_id, extra_headers={"X-Papermail-Digest": "17"})
    msg = parse(data)
    unsubscribe = "https://papers.example.org/unsubscribe/" + "t0k3n" * 40
    assert msg["List-Unsubscribe"] == (
        f"<{unsubscribe}>, <mailto:unsubscribe@papers.example.org?subject=unsubscribe>"
    )
    assert b"=?" not in data.split(b"\r\n\r\n")[0].split(b"List-Unsubscribe:")[1][:400]
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Message-ID"] == message_id and message_id.endswith("@papers.example.org>")
    assert msg["Date"].datetime == datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
    assert msg["Precedence"] == "bulk"
    assert msg["List-Id"] == "papermail digest <digest.papers.example.org>"
    assert msg["MIME-Version"] == "1.0"
    assert msg["X-Papermail-Digest"] == "17"
    assert msg["Subject"] == rendered.subject


def test_confirm_message_is_not_a_list_mail(renderer: EmailRenderer) -> None:
    rendered = renderer.render(
        "confirm", confirm_context(email="a@b.org", keywords=["x"], confirm_url="https://c/1")
    )
    msg = parse(build(rendered, unsubscribe_url=None, unsubscribe_mailto=None))
    for header in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id", "Precedence"):
        assert header not in msg


def test_non_ascii_subject_and_names_round_trip() -> None:
    rendered = RenderedEmail(
        subject="papermail · 3 Papiere für Jörg · 注意力", html="<p>Grüße</p>", text="Grüße ▲"
    )
    data = build(rendered, recipient="Jörg Müller <jorg@example.org>")
    assert data.isascii()
    msg = parse(data)
    assert msg["Subject"] == rendered.subject
    assert msg["To"].addresses[0].display_name == "Jörg Müller"
    plain = msg.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    assert plain == "Grüße ▲\r\n"  # bodies travel with CRLF line ends


def test_parts_order_line_endings_and_lengths(renderer: EmailRenderer) -> None:
    huge = "x" * 5000
    rendered = renderer.render(
        "digest", context([entry(title=huge, abstract=huge, matched=(huge,), organisation=huge)])
    )
    data = build(rendered)
    assert data.endswith(b"\r\n")
    lines = data.split(b"\r\n")
    assert all(b"\n" not in line and b"\r" not in line for line in lines)
    assert max(len(line) for line in lines) <= 998
    msg = parse(data)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)
    text, html = (p.get_content().replace("\r\n", "\n") for p in parts)
    assert text.rstrip("\n") == rendered.text.rstrip("\n")
    assert html.rstrip("\n") == rendered.html.rstrip("\n")
    assert huge in text


def test_header_injection_is_refused() -> None:
    rendered = RenderedEmail(subject="s", html="<p>x</p>", text="x")
    with pytest.raises(ValueError):
        build(rendered, recipient="a@b.org\r\nBcc: victim@example.org")
    with pytest.raises(ValueError, match="header"):
        build(rendered, unsubscribe_url="https://x/u\r\nBcc: victim@example.org")


def test_message_ids_are_unique() -> None:
    ids = {make_message_id("papers.example.org") for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"<[^<>@\s]+@papers\.example\.org>", i) for i in ids)


# --- the fast MIME path against the stdlib -----------------------------------------------------

WHEN = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)
BOUNDARY = re.compile(rb'boundary="([^"]+)"')


def head_and_parts(data: bytes) -> tuple[bytes, list[bytes]]:
    """The top header block with the boundary blanked, and each part's headers."""
    boundary = BOUNDARY.search(data)
    assert boundary is not None
    head = data.split(b"\r\n\r\n", 1)[0].replace(boundary.group(1), b"B")
    sections = data.split(b"--" + boundary.group(1))[1:-1]
    return head, [section.lstrip(b"\r\n").split(b"\r\n\r\n", 1)[0] for section in sections]


def test_fast_message_is_the_stdlib_message_but_for_the_boundary(renderer: EmailRenderer) -> None:
    rendered = renderer.render("digest", context([entry(), entry(title="Zweite · Arbeit")]))
    kwargs: dict[str, Any] = {
        "sender": "papermail <digest@papers.example.org>",
        "recipient": "Jörg Müller <jorg@example.org>",
        "message_id": make_message_id("papers.example.org"),
        "unsubscribe_url": "https://papers.example.org/unsubscribe/" + "t0k3n" * 40,
        "unsubscribe_mailto": "unsubscribe@papers.example.org",
        "date": WHEN,
        "extra_headers": {"X-Papermail-Digest": "17"},
    }
    fast, slow = build_message(rendered, **kwargs), build_message_stdlib(rendered, **kwargs)
    fast_head, fast_parts = head_and_parts(fast)
    slow_head, slow_parts = head_and_parts(slow)
    assert fast_head == slow_head  # the same headers, byte for byte, in the same order
    # the stdlib repeats MIME-Version in the second part, which RFC 2045 does not ask for
    assert fast_parts == [p.replace(b"\r\nMIME-Version: 1.0", b"") for p in slow_parts]
    assert fast.split(b"\r\n\r\n", 2)[2].replace(b"\r\nMIME-Version: 1.0", b"") != b""
    a, b = parse(fast), parse(slow)
    for part_a, part_b in zip(a.iter_parts(), b.iter_parts(), strict=True):  # type: ignore[attr-defined]
        assert part_a.get_content() == part_b.get_content()


def test_non_ascii_addresses_are_idna_or_refused() -> None:
    rendered = RenderedEmail(subject="s", html="<p>x</p>", text="x")
    msg = parse(build(rendered, recipient="Jörg <jorg@bücher.example>"))
    assert msg["To"].addresses[0].domain == "xn--bcher-kva.example"
    assert msg["To"].addresses[0].display_name == "Jörg"
    with pytest.raises(DeliveryError, match="SMTPUTF8") as info:
        build(rendered, recipient="jörg@example.org")
    assert info.value.permanent  # send_digests marks that digest failed and goes on
    assert isinstance(info.value, ValueError)  # like every other refused header value


def test_extra_headers_cannot_replace_ours() -> None:
    rendered = RenderedEmail(subject="s", html="<p>x</p>", text="x")
    for name in ("Subject", "content-type", "List-Id", "Bad Name", "X:Y"):
        with pytest.raises(ValueError, match="header name"):
            build(rendered, extra_headers={name: "v"})
    confirm = parse(build(rendered, unsubscribe_url=None, extra_headers={"Precedence": "list"}))
    assert confirm["Precedence"] == "list"  # not a newsletter: no Precedence of ours to clash


def normalized(text: str) -> str:
    """What a part decodes to: CR, LF and CRLF all become one line end, and it ends in one."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def check_wire_format(data: bytes) -> None:
    """ASCII, CRLF only, header lines <= 998 octets, body lines <= 76 (quoted-printable)."""
    assert data.isascii() and data.endswith(b"\r\n")
    lines = data.split(b"\r\n")
    assert all(b"\n" not in line and b"\r" not in line for line in lines)
    head, body = data.split(b"\r\n\r\n", 1)
    assert max(len(line) for line in head.split(b"\r\n")) <= 998
    assert max(len(line) for line in body.split(b"\r\n")) <= 76


def parts_of(data: bytes) -> list[str]:
    msg = parse(data)
    assert msg.get_content_type() == "multipart/alternative"
    parts = list(msg.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)
    return [p.get_content().replace("\r\n", "\n") for p in parts]


def test_quoted_printable_lines_stay_within_76_even_with_a_trailing_blank() -> None:
    """b2a_qp escapes a final blank after its line-length check (a 77-column line came out)."""
    for width in range(68, 84):
        for text in ("x" * width + " ", "é" * (width // 2) + "\t", "a=" * (width // 2) + " "):
            rendered = RenderedEmail(subject="s", html=text, text=text + "\nnext")
            data = build(rendered)
            check_wire_format(data)
            assert parts_of(data) == [normalized(rendered.text), normalized(rendered.html)]


# Any text but surrogates (not encodable) and NUL (which a templated paper never holds).
TEXT = st.text(st.characters(exclude_categories=("Cs",), exclude_characters="\x00"), max_size=400)
LINE = st.text(st.characters(exclude_categories=("Cs", "Cc", "Zl", "Zp")), max_size=60)
PROPERTY = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def entries(draw: st.DrawFn) -> DigestEntry:
    return DigestEntry(
        title=draw(TEXT),
        url=draw(st.one_of(st.none(), st.just("https://arxiv.org/abs/2501.00001"), TEXT)),
        authors=tuple(draw(st.lists(LINE, max_size=5))),
        author_count=draw(st.one_of(st.none(), st.integers(0, 99))),
        organisation=draw(st.one_of(st.none(), LINE)),
        upvotes=draw(st.one_of(st.none(), st.integers(0, 999))),
        abstract=draw(TEXT),
        matched=tuple(draw(st.lists(LINE, max_size=4))),
        score=0.5,
    )


@PROPERTY
@given(
    papers=st.lists(entries(), max_size=4),
    name=LINE,
    address=st.emails(),
)
def test_random_digests_round_trip_through_the_stdlib_parser(
    renderer: EmailRenderer, papers: list[DigestEntry], name: str, address: str
) -> None:
    """Whatever the titles, abstracts, keywords and names: the parts decode to exactly what was
    rendered, the headers to what was given, and the wire format holds."""
    rendered = renderer.render("digest", context(papers))
    recipient = str(Address(display_name=name, addr_spec=address))
    data = build(rendered, recipient=recipient, message_id="<m1@papers.example.org>")
    check_wire_format(data)
    assert parts_of(data) == [normalized(rendered.text), normalized(rendered.html)]
    msg = parse(data)
    assert msg["Subject"] == rendered.subject
    to = msg["To"].addresses[0]
    assert to.addr_spec == address
    assert (
        to.display_name
        == parse(build_message_stdlib(rendered, **std_kwargs(recipient)))["To"]
        .addresses[0]
        .display_name
    )
    assert msg["Message-ID"] == "<m1@papers.example.org>"
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Date"].datetime == WHEN


def std_kwargs(recipient: str) -> dict[str, Any]:
    return {
        "sender": "papermail <digest@papers.example.org>",
        "recipient": recipient,
        "message_id": "<m1@papers.example.org>",
        "unsubscribe_url": "https://papers.example.org/unsubscribe/tok",
        "unsubscribe_mailto": "unsubscribe@papers.example.org",
        "date": WHEN,
    }


@PROPERTY
@given(subject=st.text(max_size=200), text=TEXT, html=TEXT, name=st.text(max_size=40))
@example(subject="=?utf-8?q?J=C3=B6rg?= wrote", text=".\n.x\r\n", html="=", name="=?x?q?y?=")
@example(subject="word " * 40, text="x" * 300, html=" \t\n\t ", name='"Doe, J." (x)')
@example(subject="two\nlines", text="", html="", name="")
def test_fast_and_stdlib_messages_parse_the_same(
    subject: str, text: str, html: str, name: str
) -> None:
    """Arbitrary subjects (line breaks, encoded-word look-alikes, 200 characters) and display
    names: both builders refuse the same values, and what they accept parses the same."""
    rendered = RenderedEmail(subject=subject, html=html, text=text.replace("\x00", ""))
    try:
        recipient = str(Address(display_name=name, addr_spec="reader@example.org"))
    except ValueError:
        return  # the test's own formatting refused the name
    kwargs = std_kwargs(recipient)
    try:
        slow = build_message_stdlib(rendered, **kwargs)
    except ValueError:
        with pytest.raises(ValueError):
            build_message(rendered, **kwargs)
        return
    fast = build_message(rendered, **kwargs)
    check_wire_format(fast)
    a, b = parse(fast), parse(slow)
    for header in ("From", "To", "Subject", "Date", "Message-ID", "List-Unsubscribe", "List-Id"):
        assert str(a[header]) == str(b[header])
    assert parts_of(fast) == parts_of(slow)


@settings(max_examples=200, deadline=None)
@given(text=TEXT, width=st.integers(1, 100), first=st.booleans(), blank=st.booleans())
def test_memoised_filters_are_jinjas_filters(
    text: str, width: int, first: bool, blank: bool
) -> None:
    env = Environment()
    assert cached_wordwrap(env, text, width) == do_wordwrap(env, text, width)
    assert cached_wordwrap(env, text, width, False, "\n", False) == do_wordwrap(
        env, text, width, False, "\n", False
    )
    assert cached_indent(text, width % 8, first, blank) == do_indent(text, width % 8, first, blank)


def test_paper_blocks_rendered_once_give_the_same_mail_as_rendering_each(tmp_path: Path) -> None:
    """A day's renderer reuses each paper's block (``memo``) across digests; every digest must
    still be what a fresh renderer makes of it alone, whatever order papers come in and
    whatever differs per entry (matched terms, a revision, no link)."""
    import random

    papers = [
        entry(title=f"Paper {i} & <friends>", url=f"https://arxiv.org/abs/2411.{i:05d}")
        for i in range(6)
    ]
    variants = [
        *papers,
        entry(
            title="Paper 1 & <friends>", url="https://arxiv.org/abs/2411.00001", matched=("moe",)
        ),
        entry(title="Paper 2 & <friends>", url="https://arxiv.org/abs/2411.00002", revised_to=3),
        entry(title="Paper 3 & <friends>", url=None),
    ]
    rng = random.Random(7)
    day = EmailRenderer(Settings(_env_file=None))
    for _ in range(30):
        ctx = context(rng.sample(variants, rng.randint(1, 5)))
        alone = EmailRenderer(Settings(_env_file=None)).render("digest", ctx)
        assert day.render("digest", ctx) == alone
    memos = day._memos["digest"]
    # HTML: one block per paper; text: the paper and its links at the end
    assert 0 < len(memos[0].kept) <= len(variants) and 0 < len(memos[1].kept) <= 2 * len(variants)
    raw = day.environment.get_template("email/digest.html.j2").render(ctx)
    assert 'style="' not in raw.split("<body", 1)[1], "the uninlined template caches nothing"
