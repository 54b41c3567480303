"""A subscriber's whole journey in Debian's chromium: sign up, confirm from the real mail,
edit keywords with the live preview, read the digest, unsubscribe in one click as a mail
provider does, and receive nothing after; feedback from a received digest. Screenshots of every
page at phone and desktop size land in artifacts/screenshots/."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import httpx
from playwright.sync_api import Page, expect
from sqlmodel import Session, select

from papermail.models import Interest, Rating, Subscriber
from papermail.services import digests
from papermail.services.ingest import ingest_paths
from papermail.tokens import Purpose
from tests.browser.conftest import LiveApp, screenshot
from tests.test_web_support import add_confirmed, token_for


def wait_for_mail(app: LiveApp, to: str, count: int) -> EmailMessage:
    """Mail goes out after the response (a background task): wait for the `count`th one."""
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        mails = [m.message for m in app.smtp.messages if to in m.rcpt_tos]
        if len(mails) >= count:
            return mails[count - 1]
        time.sleep(0.05)
    raise AssertionError(f"no mail #{count} to {to} arrived")


def link(message: EmailMessage, app: LiveApp, path: str) -> str:
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    match = re.search(re.escape(app.url + path) + r"[\w.\-]+", body.get_content())
    assert match, f"no {path} link in the mail"
    return match.group(0)


def subscriber(app: LiveApp, email: str) -> Subscriber:
    with Session(app.engine) as session:
        found = session.exec(select(Subscriber).where(Subscriber.email == email)).one()
        session.expunge(found)
        return found


def run_digest_job(app: LiveApp, now: datetime) -> digests.SendReport:
    report = digests.score_day(app.engine, app.settings, issue_date=now.date(), now=now)
    return digests.send_digests(app.engine, app.settings, report.to_send)


def test_subscriber_journey(live_app: LiveApp, page: Page, seeds_dir):
    app = live_app
    add_confirmed(app.engine, "grace@example.org", "multimodal", "language models", "diffusion")

    page.goto(app.url + "/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("research papers")
    screenshot(page, "01-subscribe")
    page.get_by_label("Email address").fill("ada@example.org")
    page.get_by_label("Keywords").fill("linear attention\nstate space models")
    page.get_by_label("Leave out papers about").fill("diffusion")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    screenshot(page, "02-check-inbox")
    assert not subscriber(app, "ada@example.org").confirmed
    assert subscriber(app, "ada@example.org").timezone == "Europe/Berlin", "set by the page's JS"

    confirmation = wait_for_mail(app, "ada@example.org", 1)
    page.goto(link(confirmation, app, "/confirm/"))
    expect(page.get_by_role("button", name="Confirm subscription")).to_be_visible()
    screenshot(page, "03-confirm")
    page.get_by_role("button", name="Confirm subscription").click()
    expect(page.get_by_role("status")).to_contain_text("You're subscribed")
    assert subscriber(app, "ada@example.org").confirmed
    preview = page.locator(".preview-list .paper-title")
    expect(preview.first).to_be_visible()
    expect(page.locator(".preview-list mark").first).to_have_text(
        re.compile("linear attention|state space models")
    )
    screenshot(page, "04-manage")

    page.get_by_label("Keywords").fill("mixture of experts")
    expect(page.locator(".preview-list mark").first).to_have_text(
        re.compile("mixture of experts|MoE", re.I)
    )
    expect(page.locator(".preview-summary")).to_contain_text("recent papers match")
    typed_titles = preview.all_inner_texts()
    assert typed_titles and all("linear attention" not in t.lower() for t in typed_titles[:3])
    screenshot(page, "05-manage-live-preview")
    page.get_by_label("Once a week").check()
    page.get_by_label("Weekly digests come on").select_option("Friday")
    page.get_by_label("Once a week").check()
    page.get_by_label("Every day").check()
    expect(page.get_by_label("Weekly digests come on")).to_be_hidden()
    page.get_by_label("Papers per digest").fill("5")
    page.get_by_role("button", name="Save settings").click()
    expect(page.get_by_role("status")).to_contain_text("Saved")
    assert preview.all_inner_texts()[:5] == typed_titles[:5], "server agrees with the live list"
    with Session(app.engine) as session:
        ada = subscriber(app, "ada@example.org")
        phrases = session.exec(select(Interest.phrase).where(Interest.subscriber_id == ada.id))
        assert sorted(phrases) == ["diffusion", "mixture of experts"]
    assert ada.max_papers == 5

    now = datetime.now(UTC)
    assert run_digest_job(app, now).sent == 1, "ada had today's issue: her welcome digest"
    digest = wait_for_mail(app, "ada@example.org", 2)
    assert digest["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    one_click = re.search(r"<(http[^>]+)>", digest["List-Unsubscribe"]).group(1)
    page.goto(link(digest, app, "/digest/"))
    expect(page.locator("p.summary")).to_contain_text("papers for you")
    screenshot(page, "06-digest-in-browser")
    page.goto(one_click)  # what a person (or a scanner) opening the footer link sees
    expect(page.get_by_role("button", name="Unsubscribe")).to_be_visible()
    screenshot(page, "07-unsubscribe")
    assert subscriber(app, "ada@example.org").unsubscribed_at is None, "a GET changes nothing"

    answer = httpx.post(one_click, data={"List-Unsubscribe": "One-Click"}, timeout=10)
    assert answer.status_code == 200
    assert subscriber(app, "ada@example.org").unsubscribed_at is not None
    page.reload()
    expect(page.get_by_role("heading", name="You're unsubscribed")).to_be_visible()
    screenshot(page, "08-unsubscribed")

    tomorrow = now + timedelta(days=1)
    assert all(
        r.ok for r in ingest_paths(app.engine, sorted(seeds_dir.glob("*.txt"))[4:], now=tomorrow)
    )
    mails_before = len(app.smtp.messages)
    report = run_digest_job(app, tomorrow + timedelta(hours=1))
    assert report.sent == 1, "grace still gets her digest"
    wait_for_mail(app, "grace@example.org", 2)
    assert len(app.smtp.messages) == mails_before + 1
    assert [m for m in app.smtp.messages if "ada@example.org" in m.rcpt_tos][2:] == []


def test_public_and_error_pages(live_app: LiveApp, page: Page):
    app = live_app
    page.goto(app.url + "/papers")
    expect(page.locator(".papers .paper").first).to_be_visible()
    screenshot(page, "09-daily-papers")
    page.goto(app.url + "/link")
    screenshot(page, "10-email-me-a-link")
    page.get_by_label("Email address").fill("someone@example.org")
    page.get_by_role("button", name="Email me a link").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    page.goto(app.url + "/manage/not-a-real-token")
    expect(page.get_by_role("heading", name="This link is not valid")).to_be_visible()
    screenshot(page, "11-invalid-link")
    page.goto(app.url + "/")
    page.get_by_label("Email address").fill("not an address")
    page.get_by_label("Keywords").fill("<script>alert(1)</script>")
    page.evaluate("document.querySelector('form').noValidate = true")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.locator("#email-error")).to_be_visible()
    expect(page.get_by_label("Keywords")).to_have_value("<script>alert(1)</script>")
    screenshot(page, "12-subscribe-error")


def test_manage_page_works_without_javascript(live_app: LiveApp, browser):
    app = live_app
    ada = add_confirmed(app.engine, "ada@example.org", "linear attention")
    context = browser.new_context(java_script_enabled=False, viewport={"width": 390, "height": 844})
    try:
        page = context.new_page()
        page.goto(f"{app.url}/manage/{token_for(app.settings, Purpose.manage, ada)}")
        expect(page.get_by_label("Weekly digests come on")).to_be_visible()
        expect(page.locator(".preview-list mark").first).to_have_text("linear attention")
        page.get_by_label("Keywords").fill("medical image segmentation")
        page.get_by_role("button", name="Save settings").click()
        expect(page.get_by_role("status")).to_contain_text("Saved")
        expect(page.locator(".preview-list mark").first).to_contain_text("segmentation")
        page.get_by_role("link", name="Delete my data").click()
        screenshot(page, "13-delete-confirm")
        page.get_by_role("button", name="Delete everything").click()
        expect(page.get_by_role("heading", name="Your data is deleted")).to_be_visible()
    finally:
        context.close()
    with Session(app.engine) as session:
        assert session.get(Subscriber, ada.id) is None


def labelled_link(message: EmailMessage, label: str) -> str:
    """The URL on the text part's "LABEL: URL" line (feedback links are labelled so)."""
    body = message.get_body(preferencelist=("plain",))
    assert body is not None
    match = re.search(re.escape(label) + r": (\S+)", body.get_content())
    assert match, f"no {label!r} line in the mail"
    return match.group(1)


def test_feedback_from_a_received_digest(live_app: LiveApp, page: Page):
    """Tap "More like this" in a real mail, press the one button, see it recorded; the mute page;
    then the settings page suggests keywords from the liked paper and adds one in a tap."""
    app = live_app
    add_confirmed(app.engine, "ada@example.org", "mixture of experts", excluded=("diffusion",))
    assert run_digest_job(app, datetime.now(UTC)).sent == 1
    digest = wait_for_mail(app, "ada@example.org", 1)

    page.goto(labelled_link(digest, "More like this"))
    button = page.get_by_role("button", name="More papers like this")
    expect(button).to_be_visible()
    expect(page.locator(".paper-ref .paper-title")).not_to_be_empty()
    screenshot(page, "14-feedback-more")
    with Session(app.engine) as session:
        assert session.exec(select(Rating)).all() == [], "opening the link records nothing"
    button.click()
    expect(page.get_by_role("heading", name="Thanks — recorded")).to_be_visible()
    expect(page.get_by_role("button", name="Fewer papers like this")).to_be_visible()
    screenshot(page, "15-feedback-recorded")
    with Session(app.engine) as session:
        assert [r.value for r in session.exec(select(Rating))] == [1]

    # The mail offers "Mute" only for terms that are not Ada's keywords: none here. The page
    # behind the link still answers, and warns that muting removes her only keyword.
    text = digest.get_body(preferencelist=("plain",)).get_content()
    assert "Mute" not in text
    page.goto(labelled_link(digest, "More like this").removesuffix("/more") + "/mute/0")
    expect(page.get_by_role("button", name="Mute “mixture of experts”")).to_be_visible()
    expect(page.locator(".warning")).to_contain_text("your only keyword")
    screenshot(page, "16-feedback-mute")

    page.goto(link(digest, app, "/manage/"))
    expect(page.get_by_role("heading", name="Suggested keywords")).to_be_visible()
    suggestion = page.locator(".suggestions button").first
    keyword = suggestion.get_attribute("aria-label").removeprefix("Add ")
    screenshot(page, "17-manage-suggestions")
    suggestion.click()
    expect(page.get_by_role("status")).to_contain_text("Added to your keywords")
    expect(page.get_by_label("Keywords")).to_have_value(re.compile(re.escape(keyword)))
    with Session(app.engine) as session:
        ada = subscriber(app, "ada@example.org")
        phrases = session.exec(select(Interest.phrase).where(Interest.subscriber_id == ada.id))
        assert keyword in set(phrases)
