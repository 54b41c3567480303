"""Issue 15.5: link tokens never reach the web server's access log; manage links expire after
MANAGE_LINK_MAX_AGE_DAYS (the page offers a fresh one by email); unsubscribe links never do."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlmodel import Session

from papermail.models import Subscriber
from papermail.tokens import Purpose, make_token
from tests.conftest import free_port
from tests.test_cli import PAPERMAIL, clean_env
from tests.test_cli import run as cli
from tests.test_web_support import add_confirmed, client_for, seed_papers


@pytest.fixture
def client(settings, engine) -> Iterator[TestClient]:
    seed_papers(engine)
    with client_for(settings, engine) as test_client:
        yield test_client


def _signed(settings, purpose: Purpose, sub: Subscriber, *, days_ago: float) -> str:
    return make_token(
        settings.secret_key.get_secret_value(),
        purpose,
        sub.id,
        version=sub.token_version,
        nonce=sub.link_nonce,
        issued_at=datetime.now(UTC) - timedelta(days=days_ago),
    )


def test_manage_links_expire_and_unsubscribe_links_never_do(client, engine, settings):
    ada = add_confirmed(engine, "ada@example.org", "linear attention")
    days = settings.manage_link_max_age_days
    assert days >= 90, "a long default: links in last season's digests still open"
    recent = _signed(settings, Purpose.manage, ada, days_ago=days - 1)
    assert client.get(f"/manage/{recent}").status_code == 200
    stale = _signed(settings, Purpose.manage, ada, days_ago=days + 1)
    page = client.get(f"/manage/{stale}")
    assert page.status_code == 410 and "expired" in page.text
    assert 'href="/link"' in page.text and "Email me a link" in page.text
    assert client.post(f"/manage/{stale}", data={}).status_code in (403, 410)

    ancient = _signed(settings, Purpose.unsubscribe, ada, days_ago=5 * 365)
    assert client.get(f"/unsubscribe/{ancient}").status_code == 200
    one_click = client.post(f"/unsubscribe/{ancient}", data={"List-Unsubscribe": "One-Click"})
    assert one_click.status_code == 200
    with Session(engine) as session:
        assert session.get(Subscriber, ada.id).unsubscribed_at is not None


def test_tokens_never_reach_the_access_log(tmp_path):
    """A real `papermail serve` (uvicorn, its own access log), real requests to every kind of
    link: the log has the paths with the tokens cut out."""
    assert cli(["subscribers", "add", "ada@example.org", "-k", "x"], tmp_path).returncode == 0
    port = free_port()
    server = subprocess.Popen(
        [str(PAPERMAIL), "serve", "--port", str(port)],
        cwd=tmp_path,
        env=clean_env(tmp_path, SECRET_KEY="access-log-test-secret"),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    token = make_token("access-log-test-secret", Purpose.manage, 1, nonce="n" * 22)
    paths = [
        f"/manage/{token}",
        f"/manage/{token}/preview",
        f"/unsubscribe/{token}",
        f"/confirm/{token}",
        f"/digest/{token}",
        f"/feed/{token}.atom",
        f"/feedback/{token}/1/more",
        f"/f/{token}/1/less",
        f"/manage/{token}?n=welcome",
    ]
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(f"{base}/healthz", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None and time.monotonic() < deadline, "serve did not start"
                time.sleep(0.2)
        for path in paths:
            httpx.get(base + path, timeout=10)
    finally:
        server.send_signal(signal.SIGINT)
        output, _ = server.communicate(timeout=30)
    assert "/healthz" in output, f"no access log at all:\n{output}"
    signature = token.rsplit(".", 1)[-1]
    assert token not in output and signature not in output, output
    for kind in ("manage", "unsubscribe", "confirm", "digest", "feedback", "f"):
        assert f"/{kind}/[token]" in output, output
    assert "/feed/[token].atom" in output and "/manage/[token]/preview" in output
