"""Security properties of every page: headers, refused tokens that change nothing, CSRF tokens,
no inline script, and `papermail serve` answering for real."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from papermail.models import Subscriber
from papermail.tokens import Purpose, make_token
from papermail.web import create_app
from papermail.web.security import check_csrf, make_csrf
from tests.conftest import free_port, make_settings
from tests.test_web_support import add_confirmed, client_for, seed_papers, token_for

SECRET = "test-secret"


@pytest.fixture
def client(settings, engine) -> Iterator[TestClient]:
    seed_papers(engine)
    with client_for(settings, engine) as test_client:
        yield test_client


def test_every_page_sends_the_security_headers(client, engine, settings):
    ada = add_confirmed(engine, "ada@example.org", "linear attention")
    pages = ["/", "/link", "/papers", f"/manage/{token_for(settings, Purpose.manage, ada)}"]
    pages += ["/manage/forged", "/no-such-page"]
    for path in pages:
        answer = client.get(path)
        headers = answer.headers
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp, path
        assert "frame-ancestors 'none'" in csp and "form-action 'self'" in csp
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
        assert headers["strict-transport-security"].startswith("max-age=")
        # one static script, no inline script or style: what the CSP allows
        assert not re.search(r"<script(?![^>]*\bsrc=)", answer.text), path
        assert " style=" not in answer.text and "<style" not in answer.text, path
    assert "no-store" in client.get(pages[3]).headers["cache-control"], "personal pages"


def test_no_hsts_over_plain_http(tmp_path, engine):
    settings = make_settings(tmp_path, base_url="http://localhost:8000")
    with TestClient(create_app(settings, engine=engine)) as client:
        assert "strict-transport-security" not in client.get("/").headers


def test_static_files_are_versioned_and_cached(client):
    page = client.get("/").text
    css = re.search(r'href="(/static/app\.css\?v=\w+)"', page).group(1)
    js = re.search(r'src="(/static/app\.js\?v=\w+)"', page).group(1)
    for url, kind in ((css, "text/css"), (js, "javascript")):
        answer = client.get(url)
        assert answer.status_code == 200 and kind in answer.headers["content-type"]
        assert "immutable" in answer.headers["cache-control"]
    assert client.get("/static/../../pyproject.toml").status_code == 404


def link_routes(settings, subscriber: Subscriber) -> list[tuple[str, str, Purpose]]:
    """(method, path with {}, purpose the path wants) for every route behind a link token."""
    return [
        ("GET", "/confirm/{}", Purpose.confirm),
        ("POST", "/confirm/{}", Purpose.confirm),
        ("GET", "/manage/{}", Purpose.manage),
        ("POST", "/manage/{}", Purpose.manage),
        ("POST", "/manage/{}/snooze", Purpose.manage),
        ("POST", "/manage/{}/invalidate", Purpose.manage),
        ("POST", "/manage/{}/resubscribe", Purpose.manage),
        ("GET", "/manage/{}/delete", Purpose.manage),
        ("POST", "/manage/{}/delete", Purpose.manage),
        ("GET", "/unsubscribe/{}", Purpose.unsubscribe),
        ("POST", "/unsubscribe/{}", Purpose.unsubscribe),
        ("POST", "/unsubscribe/{}/resubscribe", Purpose.unsubscribe),
        ("GET", "/digest/{}", Purpose.view),
        ("GET", "/feed/{}.atom", Purpose.feed),
    ]


def test_forged_tampered_and_cross_purpose_tokens_get_a_clear_4xx(client, engine, settings):
    ada = add_confirmed(engine, "ada@example.org", "linear attention")
    other_secret = make_token("another-secret", Purpose.manage, ada.id)
    for method, pattern, purpose in link_routes(settings, ada):
        genuine = token_for(settings, purpose, ada)
        wrong = Purpose.feed if purpose is not Purpose.feed else Purpose.manage
        for token in (
            "forged",
            genuine[:-4] + ("AAAA" if not genuine.endswith("AAAA") else "BBBB"),
            token_for(settings, wrong, ada),
            other_secret,
        ):
            data = {"List-Unsubscribe": "One-Click", "csrf": "1.x", "weeks": "2"}
            answer = client.request(method, pattern.format(token), data=data)
            where = f"{method} {pattern} with {token[:12]}…"
            assert answer.status_code == 400, where
            assert "This link is not valid" in answer.text and "Traceback" not in answer.text
            assert answer.headers["content-type"].startswith("text/html"), where
    with Session(engine) as session:
        sub = session.get(Subscriber, ada.id)
        assert sub.unsubscribed_at is None and sub.snoozed_until is None
        assert sub.token_version == 0


def test_unknown_pages_and_methods_get_html_errors(client):
    missing = client.get("/nowhere")
    assert missing.status_code == 404 and "Page not found" in missing.text
    wrong = client.delete("/")
    assert wrong.status_code == 405 and "Not allowed" in wrong.text
    malformed = client.post("/manage/x/snooze", data={"weeks": "lots"})
    assert malformed.status_code == 400 and "Traceback" not in malformed.text


def test_csrf_tokens_are_bound_signed_and_expire():
    token = make_csrf(SECRET, "page-a")
    assert check_csrf(SECRET, "page-a", token)
    assert not check_csrf(SECRET, "page-b", token)
    assert not check_csrf("other-secret", "page-a", token)
    assert not check_csrf(SECRET, "page-a", "")
    assert not check_csrf(SECRET, "", make_csrf(SECRET, ""))
    issued, mac = token.split(".")
    assert not check_csrf(SECRET, "page-a", f"{int(issued) + 1}.{mac}")
    old = make_csrf(SECRET, "page-a", now=datetime.now(UTC).timestamp() - 2 * 86400)
    assert not check_csrf(SECRET, "page-a", old)
    assert not check_csrf(SECRET, "page-a", "9" * 40 + "." + mac)


def test_papermail_serve_answers_over_http(tmp_path):
    port = free_port()
    env = {
        **os.environ,
        "VAR_DIR": str(tmp_path / "var"),
        "DATABASE_URL": "",
        "REDIS_URL": "",
        "SECRET_KEY": "serve-test-secret",
        "BASE_URL": f"http://127.0.0.1:{port}",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "papermail.cli",
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    output = proc.stdout.read().decode() if proc.stdout else ""
                    pytest.fail(f"papermail serve did not answer:\n{output}")
                time.sleep(0.1)
        assert answer.status_code == 200 and "Subscribe" in answer.text
        assert "server" not in answer.headers
        assert httpx.get(f"http://127.0.0.1:{port}/papers", timeout=5).status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)
