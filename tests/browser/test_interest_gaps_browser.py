"""Issue 13's last web gaps in Debian's chromium: the sign-up form with JavaScript off has a
visible time zone the reader picks (with JavaScript on, the browser's zone is pre-selected); an
interest made of seed papers only previews what they bring, live as keywords are typed, and each
seed is removable; a mute from a digest names the interest the paper was shown under. axe-core
on each of these pages: 0 serious or critical findings."""

from __future__ import annotations

import time
from datetime import UTC, datetime

from playwright.sync_api import Browser, Page, expect
from sqlmodel import Session, col, select

from papermail.db import session_scope
from papermail.models import Digest, DigestItem, Interest, Paper, Subscriber
from papermail.services import interests
from papermail.services.subscriptions import Preferences, add_subscriber
from papermail.tokens import Purpose
from tests.browser.conftest import LiveApp, screenshot
from tests.browser.test_accessibility import Audit
from tests.test_web_support import token_for


def stored_zone(app: LiveApp, email: str) -> str | None:
    """The subscriber's time zone once the sign-up (run after the answer) stored them."""
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with Session(app.engine) as session:
            found = session.exec(select(Subscriber).where(Subscriber.email == email)).first()
        if found is not None:
            return found.timezone
        time.sleep(0.05)
    return None


def test_sign_up_without_javascript_picks_a_visible_time_zone(
    live_app: LiveApp, browser: Browser, page: Page
):
    app = live_app
    context = browser.new_context(
        java_script_enabled=False, timezone_id="Asia/Tokyo", viewport={"width": 390, "height": 844}
    )
    try:
        plain = context.new_page()
        plain.goto(app.url + "/")
        zone = plain.get_by_label("Time zone")
        expect(zone).to_be_visible()
        expect(zone).to_have_value("UTC")  # no script: the server's default, in plain sight
        plain.get_by_label("Email address").fill("kenji@example.org")
        plain.get_by_label("Keywords").fill("image segmentation")
        zone.select_option("Asia/Tokyo")
        screenshot(plain, "26-signup-no-script-zone")
        plain.get_by_role("button", name="Subscribe").click()
        expect(plain.get_by_role("heading", name="Check your inbox")).to_be_visible()
        assert stored_zone(app, "kenji@example.org") == "Asia/Tokyo"
    finally:
        context.close()

    page.goto(app.url + "/")  # with script: the browser's zone (this context: Berlin)
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    audit = Audit(page)  # axe runs as a script: on the same form, with script on
    audit("signup-time-zone")
    assert not audit.findings, "\n".join(audit.findings)


def test_a_seeds_only_interest_previews_live_and_its_seeds_and_mutes_are_per_interest(
    live_app: LiveApp, page: Page
):
    app = live_app
    with Session(app.engine) as session:
        papers = list(session.exec(select(Paper).order_by(col(Paper.id))))
    seg = [p for p in papers if "segmentation" in p.title.lower()]
    assert len(seg) >= 7, "the sample pages hold segmentation papers"
    seeds, shown_paper = seg[4:7], seg[0]  # three that bring others past MIN_SCORE
    with session_scope(app.engine) as session:
        ada = add_subscriber(
            session,
            email="ada@example.org",
            prefs=Preferences(keywords=("language models",)),
            confirmed=True,
        )
        result = interests.save_interest(
            session, ada, "Segmentation", seeds=[p.title for p in seeds] + ["2612.99999"]
        )
        topic_id = result.topic.id
        assert topic_id is not None and ada.id is not None
        now = datetime.now(UTC)
        digest = Digest(subscriber_id=ada.id, issue_date=now.date(), covered_until=now)
        session.add(digest)
        session.flush()
        session.add(
            DigestItem(
                digest_id=digest.id,
                paper_id=shown_paper.id,
                rank=1,
                score=0.4,
                matched=["medical imaging"],
                matched_where=["abstract"],
                topic_id=topic_id,
                section="Segmentation",
            )
        )
        subscriber, digest_id = ada, digest.id
    audit = Audit(page)

    manage = f"{app.url}/manage/{token_for(app.settings, Purpose.manage, subscriber)}"
    page.goto(f"{manage}/interests/{topic_id}")
    summary = page.locator(".preview-summary")
    expect(summary).to_contain_text("Based on 3 seed papers")
    expect(page.locator(".preview-list .paper-title").first).to_be_visible()
    shown = page.locator(".preview-list .paper-title").all_inner_texts()
    assert not {p.title for p in seeds} & set(shown), "the seeds themselves are left out"
    expect(page.locator("#seeds-found")).to_have_text("Found among the collected papers (3)")
    expect(page.locator("#seeds-missing")).to_have_text("Not found yet (1)")
    screenshot(page, "27-interest-seeds-only")
    audit("interest-seeds-only")

    page.get_by_label("Keywords", exact=True).fill("medical imaging")  # the live preview
    expect(summary).to_contain_text("Based on your keywords and 3 seed papers")

    page.get_by_role("button", name="Remove seed paper 2612.99999").click()
    expect(page.get_by_role("status")).to_contain_text("Seed paper removed")
    expect(page.locator("#seeds-missing")).to_have_count(0)
    audit("interest-seed-removed")

    links = f"{app.url}/f/{token_for(app.settings, Purpose.feedback, subscriber, d=digest_id)}"
    page.goto(f"{links}/1/mute/0")
    expect(page.locator("main")).to_contain_text("under your interest “Segmentation”")
    audit("mute-per-interest")
    page.get_by_role("button", name="Mute “medical imaging”").click()
    expect(page.get_by_role("heading", name="“medical imaging” is muted")).to_be_visible()
    audit("muted-per-interest")
    with Session(app.engine) as session:
        muted = session.exec(select(Interest).where(col(Interest.negative))).one()
    assert (muted.phrase, muted.topic_id) == ("medical imaging", topic_id)
    assert not audit.findings, "\n".join(audit.findings)
