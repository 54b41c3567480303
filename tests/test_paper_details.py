"""Issue 12: what the sources give is stored and shown; the TL;DR; the subject and preheader; a
digest that Gmail never clips. Real fixtures (tests/data/), real ingest, real templates."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from email import message_from_bytes, policy
from pathlib import Path

import pytest
from sqlmodel import Session, select

from papermail.emails import (
    DigestEntry,
    build_message,
    digest_context,
    get_renderer,
    shorten_title,
)
from papermail.models import Paper, Subscriber
from papermail.services import digests
from papermail.services.ingest import ingest_result
from papermail.sources.arxiv import parse_arxiv_atom
from papermail.sources.hf_api import parse_hf_daily_papers
from papermail.sources.pages import parse_daily_papers_page
from papermail.summaries import AI_SUMMARY, FROM_ABSTRACT
from tests.conftest import make_settings

DATA = Path(__file__).parent / "data"
NOW = datetime(2026, 12, 2, 6, 0, tzinfo=UTC)
GMAIL_CLIPS = 90 * 1024  # Gmail clips past 102 KB; keep a margin
MAX_PAPERS = 100  # the manage page's max for papers per digest (subscriptions.py checks it too)


def hf_payload() -> bytes:
    """The HF fixture, its first paper given the optional fields real answers carry."""
    items = json.loads((DATA / "hf_daily_papers.json").read_text())
    items[0]["paper"].update(
        githubStars=1234,
        projectPage="https://example-lab.github.io/sparse-moa/",
        ai_summary="Sparse adapters routed per task cut forgetting by 40% in continual tuning.",
    )
    return json.dumps(items).encode()


ARXIV_JOURNAL = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom">
  <id>http://arxiv.org/api/x</id><title>q</title><updated>2024-10-03T00:00:00Z</updated>
  <entry>
    <id>http://arxiv.org/abs/2410.05555v1</id>
    <updated>2024-10-02T00:00:00Z</updated><published>2024-10-02T00:00:00Z</published>
    <title>Calibrated Reward Models</title>
    <summary>Reward models are over-confident. We introduce a calibration step for them.</summary>
    <author><name>Ana Souza</name><arxiv:affiliation>USP</arxiv:affiliation></author>
    <arxiv:comment>Accepted at ICLR 2025</arxiv:comment>
    <arxiv:journal_ref>J. Mach. Learn. Res. 26 (2025) 1-30</arxiv:journal_ref>
    <arxiv:primary_category term="cs.LG"/>
  </entry>
</feed>"""


@pytest.fixture
def engine(tmp_path):
    from papermail.db import create_tables, make_engine

    settings = make_settings(tmp_path, database_url=f"sqlite:///{tmp_path / 'p.db'}")
    engine = make_engine(settings)
    create_tables(engine)
    yield engine
    engine.dispose()


def ingest_all(engine) -> dict[str, Paper]:
    ingest_result(engine, "hf", parse_hf_daily_papers(hf_payload()), now=NOW)
    for name in ("arxiv_api.atom", "arxiv_rss.atom"):
        ingest_result(engine, name, parse_arxiv_atom((DATA / name).read_bytes()), now=NOW)
    ingest_result(engine, "journal", parse_arxiv_atom(ARXIV_JOURNAL), now=NOW)
    with Session(engine) as session:
        return {p.id: p for p in session.exec(select(Paper))}


def entry(paper: Paper, matched: tuple[str, ...] = ("adapters",)) -> DigestEntry:
    return digests.entry_for(paper, 0.5, matched, ("title",) * len(matched))


def render(entries, tmp_path, *, keywords=(), **overrides):
    settings = make_settings(tmp_path, **overrides)
    subscriber = Subscriber(id=4242, email="reader@example.org", token_version=0)
    return digests.render_digest(
        settings,
        subscriber,
        issue_date=NOW.date(),
        scanned=321,
        entries=entries,
        digest_id=98765,
        keywords=list(keywords),
    )


def test_every_field_the_sources_give_is_stored(engine):
    papers = ingest_all(engine)
    moa = papers["2410.01234"]  # on HF and in the arXiv API answer: both fill the same row
    assert moa.arxiv_id == "2410.01234"
    assert moa.hf_url == "https://huggingface.co/papers/2410.01234"
    assert moa.pdf_url and moa.pdf_url.startswith("https://arxiv.org/pdf/2410.01234")
    assert moa.code_url == "https://github.com/example-lab/sparse-moa"
    assert moa.code_stars == 1234
    assert moa.project_url == "https://example-lab.github.io/sparse-moa/"
    assert moa.thumbnail_url and moa.thumbnail_url.endswith("/2410.01234.png")
    assert moa.ai_summary and moa.ai_summary.startswith("Sparse adapters routed")
    assert moa.ai_keywords == ["continual learning", "adapters", "mixture of experts"]
    assert moa.authors == ["Mei Lin", "Tomás Ortega", "Priya Raman"]
    assert moa.affiliations == {"Tomás Ortega": "Universidad de Chile"}
    assert moa.organisation == "Example AI Lab"
    assert moa.comments_count == 3
    assert moa.primary_category == "cs.LG"
    assert moa.comments == "14 pages, 6 figures"
    journal = papers["2410.05555"]
    assert journal.comments == "Accepted at ICLR 2025"
    assert journal.journal_ref == "J. Mach. Learn. Res. 26 (2025) 1-30"
    assert journal.affiliations == {"Ana Souza": "USP"}
    rss = papers["2410.01502"]
    assert rss.pdf_url == "https://arxiv.org/pdf/2410.01502" and rss.code_url is None


def test_re_ingest_fills_rows_stored_before(engine):
    """A row stored by an older papermail (no details) gets them when its source comes again."""
    with Session(engine) as session:
        session.add(Paper(id="2410.01234", title="Old", abstract="Old abstract.", source="hf-api"))
        session.commit()
    moa = ingest_all(engine)["2410.01234"]
    assert moa.code_url and moa.ai_summary and moa.arxiv_id == "2410.01234"


def test_every_field_is_shown_in_the_mail(engine, tmp_path):
    papers = ingest_all(engine)
    moa, journal = papers["2410.01234"], papers["2410.05555"]
    rendered, _ = render([entry(moa), entry(journal)], tmp_path, show_thumbnails=True)
    html, text = rendered.html, rendered.text
    for part in (html, text):
        assert "https://arxiv.org/abs/2410.01234" in part  # the title: the paper page
        assert "https://arxiv.org/pdf/2410.01234" in part
        assert "https://github.com/example-lab/sparse-moa" in part and "Code ★1.2k" in part
        assert "https://example-lab.github.io/sparse-moa/" in part
        assert "https://huggingface.co/papers/2410.01234" in part and "Discussion (3)" in part
        assert "Mei Lin, Tomás Ortega (Universidad de Chile), Priya Raman" in part
        assert "Example AI Lab" in part and "cs.LG · 14 pages, 6 figures" in part
        assert "Sparse adapters routed per task" in part and AI_SUMMARY in part
        assert "Accepted at ICLR 2025 · J. Mach. Learn. Res. 26 (2025) 1-30" in part
        assert "We introduce a calibration step for them." in part and FROM_ABSTRACT in part
    assert 'src="https://cdn-thumbnails.huggingface.co/' in html
    assert "search/?searchtype" not in html
    without, _ = render([entry(moa)], tmp_path)
    assert "<img" not in without.html, "thumbnails are off by default (remote images)"


def test_a_paper_without_code_shows_no_code_link(engine, tmp_path):
    papers = ingest_all(engine)
    plain = papers["2410.00917"]  # HF, no githubRepo
    assert plain.code_url is None
    rendered, _ = render([entry(plain)], tmp_path)
    assert "Code" not in rendered.html and "Code" not in rendered.text
    assert "Project" not in rendered.html
    assert ">PDF</a>" in rendered.html and "Discussion</a>" in rendered.html


def test_tldr_is_never_empty_when_an_abstract_exists(engine, tmp_path, seeds_dir):
    papers = list(ingest_all(engine).values())
    for path in sorted(seeds_dir.glob("*.txt")):
        for record in parse_daily_papers_page(path.read_text(), year=2026).records:
            papers.append(Paper(id="t", title=record.title, abstract=record.abstract))
    assert len(papers) > 20
    for paper in papers:
        shown = entry(paper)
        assert shown.tldr and shown.tldr_from in (AI_SUMMARY, FROM_ABSTRACT), paper.title


def test_saved_pages_without_ids_keep_working(tmp_path, seeds_dir):
    record = parse_daily_papers_page(next(seeds_dir.glob("*.txt")).read_text()).records[0]
    paper = Paper(id=record.paper_id, title=record.title, abstract=record.abstract, source="page")
    shown = entry(paper)
    assert shown.link.startswith("https://arxiv.org/search/"), "a search only when nothing else"
    assert shown.links == () and shown.tldr
    rendered, _ = render([shown], tmp_path)
    assert record.title.split()[0] in rendered.html


def big_entry(i: int) -> DigestEntry:
    """A paper with everything a source may give, long values: the worst case for size."""
    return DigestEntry(
        title=f"Scaling Sparse Mixture-of-Experts Language Models with Adaptive Routing {i:03d}",
        url=None,
        arxiv_id=f"2412.{10000 + i}",
        hf_url=f"https://huggingface.co/papers/2412.{10000 + i}",
        code_url="https://github.com/some-organisation/some-long-repository-name",
        code_stars=1234,
        project_url="https://some-organisation.github.io/project-page/",
        comments_count=4,
        authors=("Alexandra Konstantinopoulou", "Jean-Baptiste Delacroix", "Wei Zhang", "X Y"),
        organisation="Example AI Lab",
        published=date(2026, 12, 1),
        upvotes=42,
        abstract="Mixture of experts models are popular. " * 3 + "We propose a new router.",
        ai_summary="A routing method for sparse MoE language models balances expert load "
        "without auxiliary losses, improving perplexity by 8% at equal compute.",
        matched=("mixture of experts", "routing"),
        where=("title+abstract", "abstract"),
        primary_category="cs.LG",
        comments="Accepted at ICLR 2025",
    )


def test_the_largest_digest_is_never_clipped(tmp_path):
    entries = [big_entry(i) for i in range(MAX_PAPERS)]
    rendered, links = render(entries, tmp_path, keywords=("mixture of experts", "routing"))
    size = len(rendered.html.encode())
    assert size < GMAIL_CLIPS, f"{size} bytes of HTML"
    # the footer's links, and the same links at the top
    footer = rendered.html[rendered.html.index('class="footer"') :]
    for url in (links.view, links.manage, links.unsubscribe):
        assert f'href="{url}"' in footer
        assert rendered.html.index(f'href="{url}"') < rendered.html.index('class="entry"')
    assert rendered.html.count('class="entry"') == 20 and rendered.html.count('class="cmp"') == 80
    assert rendered.html.count("/more") == 20, "compact papers: title, links, why"
    # the text part: papers first, every URL gathered at the end under the paper's number
    body, _, gathered = rendered.text.partition("\nLinks\n-----\n")
    urls_in_body = re.findall(r"https?://", body)
    assert len(urls_in_body) == 1, "only 'View in browser' above the papers"
    assert "[100] https://arxiv.org/abs/2412.10099" in gathered
    assert gathered.count("More like this:") == 20
    message = build_message(
        rendered,
        sender="papermail <digest@papermail.test>",
        recipient="reader@example.org",
        message_id="<1@papermail.test>",
        unsubscribe_url=links.unsubscribe,
    )
    assert message_from_bytes(message, policy=policy.default)["Subject"] == rendered.subject


def test_feedback_buttons_are_thumb_sized(tmp_path):
    rendered, _ = render([big_entry(1)], tmp_path)
    buttons = re.findall(r'<a class="btn" href="[^"]+" style="([^"]+)"', rendered.html)
    assert len(buttons) == 3  # more, less, save
    for style in buttons:
        assert "display:inline-block" in style and "padding:12px 14px" in style
    rate = re.search(r'<p class="rate" style="([^"]+)"', rendered.html)
    assert rate and "line-height:20px" in rate.group(1)  # 12 + 20 + 12 + borders >= 44 px


def test_mute_only_for_terms_that_are_not_the_readers_keywords(tmp_path):
    one = big_entry(1)
    mine, _ = render([one], tmp_path, keywords=("Mixture of Experts", "routing"))
    assert "/mute/" not in mine.html and "Mute" not in mine.text
    other, _ = render([one], tmp_path, keywords=("mixture of experts",))
    assert other.html.count("/mute/") == 1 and "/1/mute/1" in other.html  # "routing"
    assert 'Mute "routing"' in other.text


def test_subject_names_the_top_paper_and_the_preheader_previews_the_next():
    entries = [
        DigestEntry(
            title="Mamba-2 distillation: a recipe for training small state space models fast",
            url=None,
        ),
        *[DigestEntry(title=f"Second paper number {i}", url=None) for i in range(7)],
    ]
    ctx = digest_context(
        email="r@example.org",
        issue_date=NOW.date(),
        entries=entries,
        scanned=9,
        links=digests.DigestLinks(view="https://v", manage="https://m", unsubscribe="https://u"),
    )
    assert ctx["subject"] == "Mamba-2 distillation and 7 more for you"
    assert ctx["preview"].startswith("Also: Second paper number 0 · Second paper number 1")
    html = get_renderer(make_settings(Path("/tmp"))).render("digest", ctx).html
    preheader = html[
        html.index('class="preheader"') : html.index("</div>", html.index("preheader"))
    ]
    # &zwnj;&nbsp; pairs (inlining writes them as characters): body text stays out of the snippet
    assert preheader.count("\u200c\xa0") >= 60
    assert len(shorten_title("x " * 80)) <= 67


def test_mail_opts_into_dark_mode_and_has_an_outlook_width(tmp_path):
    rendered, _ = render([big_entry(1)], tmp_path)
    assert "light only" not in rendered.html
    assert "@media (prefers-color-scheme: dark)" in rendered.html
    assert '<!--[if mso]><table role="presentation" width="640"' in rendered.html
    assert "<main" in rendered.html
