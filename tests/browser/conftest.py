"""Real-browser fixtures: Debian's chromium driven by Playwright, against the app served by
uvicorn in a thread, on a temporary SQLite database holding the sample papers.

Never `playwright install`: the browser is the system's /usr/bin/chromium (see TESTING.md).
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, sync_playwright
from sqlalchemy.engine import Engine

from papermail.db import create_tables, make_engine
from papermail.services.ingest import ingest_paths
from papermail.settings import Settings
from papermail.web import create_app
from tests.conftest import REPO, SMTPServer, free_port, make_settings
from tests.live_server import serving

SCREENSHOTS = REPO / "artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
SIZES = {"phone": (390, 844), "desktop": (1280, 800)}


def chromium_path() -> str:
    path = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(path).exists():
        pytest.fail("browser tests need Debian's chromium: apt-get install -y chromium")
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=chromium_path(), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


@dataclass
class LiveApp:
    url: str
    settings: Settings
    engine: Engine
    smtp: SMTPServer


@pytest.fixture
def live_app(tmp_path, seeds_dir, smtp_server) -> Iterator[LiveApp]:
    """The app on a free port (a real HTTP server), mail to the real aiosmtpd server; the
    first four sample pages are ingested (the fifth is left for a later day)."""
    port = free_port()
    settings = make_settings(
        tmp_path,
        base_url=f"http://127.0.0.1:{port}",
        mail_backend="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
    )
    engine = make_engine(settings)
    create_tables(engine)
    reports = ingest_paths(engine, sorted(seeds_dir.glob("*.txt"))[:4])
    assert all(r.ok for r in reports)
    try:
        with serving(create_app(settings, engine=engine), port):
            yield LiveApp(settings.base_url, settings, engine, smtp_server)
    finally:
        engine.dispose()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh context per test, in Berlin time (the sign-up form sends the browser's zone)."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 800}, timezone_id="Europe/Berlin", locale="en-GB"
    )
    context.set_default_timeout(10_000)
    try:
        yield context.new_page()
    finally:
        context.close()


def screenshot(page: Page, name: str) -> None:
    """Save the page at phone and desktop size to artifacts/screenshots/NAME-SIZE.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    for size, (width, height) in SIZES.items():
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=str(SCREENSHOTS / f"{name}-{size}.png"), full_page=True)
    page.set_viewport_size({"width": 1280, "height": 800})
