"""Issue 13's walk in Debian's chromium: sign up with the live preview, confirm from the real
mail, receive the welcome digest from the real SMTP server (aiosmtpd), add a second interest from
three seed arXiv ids in the corpus, follow an author, save a paper from the mail, export the
reading list as BibTeX. Screenshots at 390 and 1280 px into artifacts/screenshots/; axe-core on
every new page (0 serious or critical findings)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import bibtexparser
from playwright.sync_api import Page, expect
from sqlmodel import Session, select

from papermail.models import Delivery, DeliveryStatus, SavedPaper
from papermail.services import interests
from papermail.services.ingest import ingest_paths
from tests.browser.conftest import LiveApp, screenshot
from tests.browser.test_accessibility import ARTIFACTS, Audit
from tests.browser.test_browser_flow import link, subscriber, wait_for_mail
from tests.conftest import REPO

SEEDS = ("2410.01234", "https://arxiv.org/abs/2410.00917v2", "2410.01502")
SEED_TITLES = (
    "Sparse Mixture-of-Adapters for Continual Instruction Tuning",
    "Long-Context Retrieval Without Positional Interpolation",
    "Benchmarks Are Not Enough: Auditing Evaluation Pipelines",
)


def test_sign_up_welcome_digest_interests_and_reading_list(live_app: LiveApp, page: Page):
    app = live_app
    data = REPO / "tests" / "data"  # papers with arXiv ids and authors
    files = [data / "arxiv_api.atom", data / "hf_daily_papers.json", data / "arxiv_rss.atom"]
    assert all(r.ok for r in ingest_paths(app.engine, files))
    audit = Audit(page)

    # 1. Sign up: the page previews what the typed keywords bring, before subscribing.
    page.goto(app.url + "/")
    page.get_by_label("Email address").fill("ada@example.org")
    page.get_by_label("Keywords").fill("language models")
    expect(page.locator(".preview-list .paper-title").first).to_be_visible()
    expect(page.locator(".preview-list mark").first).to_have_text(re.compile("language models"))
    expect(page.locator(".preview-summary")).to_contain_text("recent papers match")
    screenshot(page, "20-signup-preview")
    audit("signup-preview")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    assert subscriber(app, "ada@example.org").timezone == "Europe/Berlin", "from the browser"

    # 2. Confirm; the welcome digest comes at once through the real SMTP server.
    page.goto(link(wait_for_mail(app, "ada@example.org", 1), app, "/confirm/"))
    page.get_by_role("button", name="Confirm subscription").click()
    expect(page.get_by_role("status")).to_contain_text("A first digest")
    welcome = wait_for_mail(app, "ada@example.org", 2)
    assert "List-Unsubscribe" in welcome
    deadline = time.monotonic() + 15  # "sent" is recorded just after the server accepted it
    while True:
        with Session(app.engine) as session:
            [delivery] = session.exec(select(Delivery)).all()
        if delivery.status == DeliveryStatus.sent or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert delivery.status == DeliveryStatus.sent
    page.reload()
    expect(page.locator("[data-today]")).to_contain_text("Sent today at")
    screenshot(page, "21-manage-welcome-sent")
    audit("manage-interests")

    # 3. A second interest from three seed arXiv ids (an id, a URL, an id) in the corpus.
    page.locator("summary", has_text="Add an interest").click()
    page.get_by_label("Name").fill("Efficient LLMs")
    page.get_by_label("Seed papers: arXiv ids, URLs or titles").fill("\n".join(SEEDS))
    page.get_by_role("button", name="Add interest").click()
    expect(page.get_by_role("status")).to_contain_text("Added the interest “Efficient LLMs”")
    for title in SEED_TITLES:
        expect(page.locator(".seed-results")).to_contain_text(f"Found: {title}")
    screenshot(page, "22-interest-from-seeds")
    audit("interest-added")

    # 4. Follow an author, spelled the way a reader types it.
    page.get_by_label("Follow an author").fill("Ortega, Tomas")
    page.get_by_role("button", name="Follow", exact=True).click()
    expect(page.get_by_role("status")).to_contain_text("Followed")
    expect(page.locator(".authors")).to_contain_text("Ortega, Tomas")
    screenshot(page, "23-interest-follows")
    audit("interest-page")
    ada = subscriber(app, "ada@example.org")
    with Session(app.engine) as session:
        views = {v.name: v for v in interests.list_interests(session, ada.id)}
    assert views["Efficient LLMs"].authors == ("Ortega, Tomas",)
    assert [s.found for s in views["Efficient LLMs"].seeds] == [True, True, True]

    # 5. Save a paper from the mail: the link shows one button, the button saves.
    text = welcome.get_body(preferencelist=("plain",)).get_content()
    save_link = re.search(re.escape(app.url) + r"/f/[\w.\-]+/1/save", text)
    assert save_link, "the mail has a Save link per paper"
    page.goto(save_link.group(0))
    expect(page.get_by_role("heading", name="Save to your reading list?")).to_be_visible()
    screenshot(page, "24-save-from-mail")
    audit("save")
    page.get_by_role("button", name="Save this paper").click()
    expect(page.get_by_role("heading", name="Saved to your reading list")).to_be_visible()
    audit("saved")
    with Session(app.engine) as session:
        [saved] = session.exec(select(SavedPaper)).all()
    page.get_by_role("link", name="Open my reading list").click()
    expect(page.get_by_role("heading", name="1 saved paper")).to_be_visible()
    screenshot(page, "25-reading-list")
    audit("reading-list")

    # 6. Export the reading list as BibTeX (a real download).
    with page.expect_download() as download_info:
        page.get_by_role("link", name="Export BibTeX").click()
    download = download_info.value
    assert download.suggested_filename == "papermail-reading-list.bib"
    library = bibtexparser.parse_string(Path(download.path()).read_text())
    assert len(library.entries) == 1
    assert page.url.endswith("/saved"), "the download leaves the page where it was"

    summary = {"checked": audit.checked, "impacts": audit.counts, "blocking": audit.findings}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "axe-interests-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    assert not audit.findings, "\n".join(audit.findings)
    assert saved.paper_id
