"""axe-core (bundled by axe-playwright-python, no download) on every web page and on the digest as
mailed, at 390 and 1280 px, light and dark: no critical and no serious finding. Each state is
also screenshotted into artifacts/a11y/, and no page is wider than the phone's viewport (a long
address must wrap)."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from email.message import EmailMessage

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page, expect
from sqlmodel import Session, col, select

from papermail.db import session_scope
from papermail.models import Digest, Subscriber
from papermail.services import digests
from papermail.services.subscriptions import Preferences, add_subscriber
from papermail.tokens import Purpose
from tests.browser.conftest import SCREENSHOTS, LiveApp
from tests.test_web_support import token_for

ARTIFACTS = SCREENSHOTS.parent / "a11y"
WIDTHS = (390, 1280)
SCHEMES = ("light", "dark")
BLOCKING = {"critical", "serious"}
LONG_ADDRESS = "maximilian.schwarzenegger-oberhauser@department.example.org"

pytestmark = pytest.mark.timeout(600)

_axe = Axe()


class Audit:
    """Runs axe on the page in every width and colour scheme; gathers what blocks."""

    def __init__(self, page: Page) -> None:
        self.page = page
        self.findings: list[str] = []
        self.counts: dict[str, int] = {}
        self.checked: list[str] = []

    def __call__(self, name: str) -> None:
        page = self.page
        page.wait_for_load_state("load")
        for scheme in SCHEMES:
            page.emulate_media(color_scheme=scheme)
            for width in WIDTHS:
                page.set_viewport_size({"width": width, "height": 900})
                state = f"{name} {width}px {scheme}"
                results = _axe.run(page).response
                for violation in results["violations"]:
                    impact = violation.get("impact") or "minor"
                    self.counts[impact] = self.counts.get(impact, 0) + 1
                    if impact in BLOCKING:
                        targets = [n["target"] for n in violation["nodes"]][:3]
                        self.findings.append(
                            f"{state}: {impact} {violation['id']} ({violation['help']}) {targets}"
                        )
                if width == 390:
                    overflow = page.evaluate(
                        "document.documentElement.scrollWidth - window.innerWidth"
                    )
                    if overflow > 0:
                        self.findings.append(f"{state}: {overflow}px wider than the phone")
                ARTIFACTS.mkdir(parents=True, exist_ok=True)
                shot = ARTIFACTS / f"{name}-{width}-{scheme}.png"
                page.screenshot(path=str(shot), full_page=True)
        page.emulate_media(color_scheme="light")
        page.set_viewport_size({"width": 1280, "height": 900})
        self.checked.append(name)


def _add(app: LiveApp, email: str, *keywords: str, confirmed: bool = True, **prefs) -> Subscriber:
    with session_scope(app.engine) as session:
        return add_subscriber(
            session,
            email=email,
            prefs=Preferences(keywords=keywords, **prefs),
            confirmed=confirmed,
        )


def _mailed_html(app: LiveApp, email: str) -> str:
    messages = [m.message for m in app.smtp.messages if email in m.rcpt_tos]
    assert messages, f"no mail to {email}"
    message: EmailMessage = messages[-1]
    body = message.get_body(preferencelist=("html",))
    assert body is not None
    return body.get_content()


def test_every_page_and_the_digest_pass_axe(live_app: LiveApp, page: Page) -> None:
    app = live_app
    reader = _add(
        app,
        LONG_ADDRESS,
        "language models",
        "diffusion",
        "multimodal",
        "reinforcement learning",
        max_papers=30,
    )
    newcomer = _add(app, "new.reader@example.org", "robotics", confirmed=False)
    now = datetime.now(UTC)
    report = digests.score_day(app.engine, app.settings, issue_date=now.date(), now=now)
    assert digests.send_digests(app.engine, app.settings, report.to_send).sent == 1
    with Session(app.engine) as session:
        digest_id = session.exec(
            select(Digest.id).where(col(Digest.subscriber_id) == reader.id)
        ).one()
    settings = app.settings
    view = token_for(settings, Purpose.view, reader, d=digest_id)
    feedback = token_for(settings, Purpose.feedback, reader, d=digest_id)
    manage = token_for(settings, Purpose.manage, reader)
    unsubscribe = token_for(settings, Purpose.unsubscribe, reader)
    confirm = token_for(settings, Purpose.confirm, newcomer)
    audit = Audit(page)

    def visit(path: str, name: str, ready: Callable[[], None] | None = None) -> None:
        page.goto(app.url + path)
        if ready:
            ready()
        audit(name)

    # the digest as mailed (more than COMPACT_AFTER papers: full and compact ones), then its page
    html = _mailed_html(app, LONG_ADDRESS)
    assert html.count('class="cmp"') >= 1, "the sample digest reaches the compact papers"
    page.set_content(html)
    audit("digest-mail")
    for width in WIDTHS:  # feedback buttons a thumb can hit
        page.set_viewport_size({"width": width, "height": 900})
        heights = page.eval_on_selector_all(
            "a.btn", "els => els.map(e => e.getBoundingClientRect().height)"
        )
        assert heights and min(heights) >= 44, heights
    visit(f"/digest/{view}", "digest-page")

    visit("/", "subscribe")
    page.get_by_label("Email address").fill("someone.with.a.long.address@subdomain.example.org")
    page.get_by_label("Keywords").fill("graph neural networks")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    audit("sent")
    visit("/link", "link")
    visit(f"/confirm/{confirm}", "confirm")
    visit("/papers", "papers")
    visit("/papers?q=language+models&sort=title", "papers-search")
    visit("/papers?q=zzqx+nothing+matches", "papers-empty-search")
    visit("/papers/2001-01-01", "papers-empty-day")
    visit("/papers/not-a-day", "error-404")
    visit("/manage/not-a-token", "error-400")
    visit(f"/manage/{manage}", "manage", lambda: page.locator(".preview-list").wait_for())

    visit(f"/f/{feedback}/1/more", "feedback-rate")
    button = page.get_by_role("button", name="More papers like this").bounding_box()
    assert button and button["height"] >= 44
    page.get_by_role("button", name="More papers like this").click()
    expect(page.get_by_text("Thanks — recorded")).to_be_visible()
    audit("feedback-rated")
    visit(f"/f/{feedback}/1/mute/0", "feedback-mute")
    page.get_by_role("button", name="Mute").click()
    expect(page.get_by_role("heading", name="is muted")).to_be_visible()
    audit("feedback-muted")

    visit(f"/unsubscribe/{unsubscribe}", "unsubscribe")
    page.get_by_role("button", name="Unsubscribe").click()
    audit("unsubscribed")
    visit(f"/manage/{manage}/delete", "delete")
    page.get_by_role("button", name="Delete everything").click()
    audit("deleted")

    summary = {"checked": audit.checked, "impacts": audit.counts, "blocking": audit.findings}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "axe-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    assert not audit.findings, "\n".join(audit.findings)
    assert len(audit.checked) == 21
