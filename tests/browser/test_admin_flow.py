"""The operator console in Debian's chromium: a wrong password, the lockout after N tries (with
a lockout window shortened to seconds), the right password once it ends, the dashboard with a
day of pipeline in it, subscriber search, suspend then resume. axe-core on every page (0
serious or critical findings, 390 and 1280 px, light and dark) and screenshots 30-37."""

from __future__ import annotations

import json
import time
from datetime import UTC, datetime

from playwright.sync_api import Page, expect
from sqlmodel import Session

from papermail.db import session_scope
from papermail.models import OperatorRole, Subscriber
from papermail.services import operators
from tests.browser.conftest import LiveApp, screenshot
from tests.browser.test_accessibility import ARTIFACTS, Audit
from tests.test_admin import PASSWORD, seed_console

LOCKOUT_SECONDS = 3


def _log_in(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()


def test_console_login_lockout_dashboard_search_suspend_resume(live_app: LiveApp, page: Page):
    app = live_app
    # The lockout window is a setting: shortened so the test can wait it out.
    app.settings.admin_max_failed_logins = 3
    app.settings.admin_lockout_minutes = LOCKOUT_SECONDS / 60
    ids = seed_console(app.engine, datetime.now(UTC).replace(hour=12, minute=0, second=0))
    with session_scope(app.engine) as session:
        operators.create_operator(
            session, username="ops", password=PASSWORD, role=OperatorRole.admin
        )
    audit = Audit(page)
    alert = page.get_by_role("alert")

    # 1. The console sends a stranger to its login page.
    page.goto(app.url + "/admin")
    expect(page.get_by_role("heading", name="Log in to the console")).to_be_visible()
    screenshot(page, "30-admin-login")
    audit("admin-login")

    # 2. A wrong password, then the lockout on the third.
    _log_in(page, "ops", "not my password")
    expect(alert).to_have_text("Wrong username or password.")
    expect(page.get_by_label("Username")).to_have_value("ops")
    _log_in(page, "ops", "still not it")
    expect(alert).to_have_text("Wrong username or password.")
    _log_in(page, "ops", "third time unlucky")
    expect(alert).to_contain_text("Too many failed logins: this account is locked")
    screenshot(page, "31-admin-locked")
    audit("admin-locked")
    locked_at = time.monotonic()
    _log_in(page, "ops", PASSWORD)  # the right password is refused while locked
    expect(alert).to_contain_text("Too many failed logins")

    # 3. Once the lockout ends, the right password opens the dashboard.
    time.sleep(max(0.0, LOCKOUT_SECONDS + 0.5 - (time.monotonic() - locked_at)))
    _log_in(page, "ops", PASSWORD)
    expect(page.get_by_role("heading", name="Today’s job")).to_be_visible()
    stats = page.locator(".stats").first
    expect(stats).to_contain_text("Subscribers scored")
    expect(page.locator(".delivery-retrying dd")).to_have_text("1")
    expect(page.locator("svg[role=img]")).to_have_count(4)
    expect(page.get_by_role("img", name="Digests sent")).to_be_visible()
    page.get_by_text("The same as a table").click()
    expect(page.get_by_role("region", name="The last 30 days as a table")).to_be_visible()
    screenshot(page, "32-admin-dashboard")
    audit("admin-dashboard")

    # 4. Subscriber search: an address fragment and a state.
    page.get_by_role("navigation", name="Console").get_by_role("link", name="Subscribers").click()
    page.get_by_label("Email contains").fill("bob")
    page.get_by_label("State").select_option("active")
    page.get_by_role("button", name="Search").click()
    expect(page.locator(".result-count")).to_have_text("Showing 1–1 of 1 subscriber.")
    expect(page.get_by_role("link", name="bob@example.org")).to_be_visible()
    expect(page.get_by_role("link", name="ada@example.org")).to_have_count(0)
    screenshot(page, "33-admin-search")
    audit("admin-subscribers")

    # 5. One subscriber: why no digest today; suspend, then resume.
    page.get_by_role("link", name="bob@example.org").click()
    expect(page.locator("[data-today]")).to_contain_text("Delivery retrying")
    audit("admin-subscriber")
    page.get_by_role("button", name="Suspend").click()
    expect(page.locator(".notice")).to_contain_text("Suspended: no digests are sent")
    with Session(app.engine) as session:
        assert session.get(Subscriber, ids["bob"]).suspended_at is not None
    screenshot(page, "34-admin-suspended")
    audit("admin-suspended")
    page.get_by_role("button", name="Resume digests").click()
    expect(page.locator(".notice")).to_contain_text("Resumed")
    with Session(app.engine) as session:
        bob = session.get(Subscriber, ids["bob"])
        assert bob.suspended_at is None and bob.hard_bounces == 0 and bob.bounce_score == 0
    expect(page.get_by_role("button", name="Suspend")).to_be_visible()

    # 6. Bounces and complaints (filtered), feedback, sources.
    nav = page.get_by_role("navigation", name="Console")
    nav.get_by_role("link", name="Bounces").click()
    page.get_by_label("Kind").select_option("hard")
    page.get_by_role("button", name="Filter").click()
    expect(page.locator(".result-count")).to_contain_text("Showing 1–1 of 1 report")
    expect(page.get_by_role("link", name="cy@example.org")).to_be_visible()
    screenshot(page, "35-admin-bounces")
    audit("admin-bounces")
    nav.get_by_role("link", name="Feedback").click()
    expect(page.get_by_role("heading", name="Feedback", exact=False).first).to_be_visible()
    expect(page.get_by_role("table")).to_contain_text("200.0")
    screenshot(page, "36-admin-feedback")
    audit("admin-feedback")
    nav.get_by_role("link", name="Sources").click()
    expect(page.get_by_role("table")).to_contain_text("HTTP 503 from export.arxiv.org")
    screenshot(page, "37-admin-sources")
    audit("admin-sources")

    # 7. Log out: the console is closed again.
    nav.get_by_role("button", name="Log out").click()
    expect(page.locator(".notice")).to_have_text("You are logged out.")
    page.goto(app.url + "/admin/subscribers")
    expect(page.get_by_role("heading", name="Log in to the console")).to_be_visible()

    summary = {"checked": audit.checked, "impacts": audit.counts, "blocking": audit.findings}
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "axe-admin-summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    assert not audit.findings, "\n".join(audit.findings)
    assert len(audit.checked) == 9
