"""Issue 15 #6 and #7, against a real uvicorn server with parallel HTTP requests: concurrent
bursts cannot get past the rate limits (SQLite, PostgreSQL, Redis), a stranger cannot lock an
address out, and /subscribe takes as long for a confirmed address as for a new one."""

from __future__ import annotations

import os
import re
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from html import unescape
from pathlib import Path

import httpx
import pytest
from sqlmodel import Session, select

from papermail.db import create_tables, make_engine
from papermail.models import RateLimitHit, Subscriber
from papermail.services.subscriptions import address_key
from tests.conftest import free_port, make_settings
from tests.test_web_support import add_confirmed, token_for

# What `papermail serve` runs (uvicorn, one process), without the CLI around it.
SERVE = """
import sys, uvicorn
from papermail.db import make_engine
from papermail.settings import get_settings
from papermail.web import create_app
settings = get_settings()
app = create_app(settings, engine=make_engine(settings))
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[1]), server_header=False, log_level="warning")
"""


class Server:
    def __init__(self, url: str, settings, process: subprocess.Popen) -> None:
        self.url, self.settings, self.process = url, settings, process

    def outbox(self) -> list[Path]:
        folder = self.settings.resolved_outbox_dir
        return sorted(folder.glob("*.eml")) if folder.is_dir() else []


def start_server(tmp_path: Path, database_url: str, redis_url: str = "", **limits) -> Server:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    settings = make_settings(tmp_path, database_url=database_url, base_url=base, **limits)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "REDIS_"))}
    env.update(
        DATABASE_URL=settings.resolved_database_url,
        REDIS_URL=redis_url,
        VAR_DIR=str(settings.var_dir),
        MAIL_BACKEND="outbox",
        SECRET_KEY="test-secret-key",
        BASE_URL=base,
        **{name.upper(): str(value) for name, value in limits.items()},
    )
    engine = make_engine(settings)
    create_tables(engine)
    engine.dispose()
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE, str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(base + "/", timeout=2).status_code == 200:
                return Server(base, settings, process)
        except httpx.TransportError:
            time.sleep(0.2)
        if process.poll() is not None:
            break
    process.kill()
    pytest.fail(f"web server did not start: {process.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]


@pytest.fixture
def servers() -> Iterator[list[Server]]:
    started: list[Server] = []
    yield started
    for server in started:
        server.process.terminate()
        try:
            server.process.wait(10)
        except subprocess.TimeoutExpired:
            server.process.kill()


def browser(server: Server) -> tuple[dict[str, str], str]:
    """A browser's CSRF cookie and form token (reusable for many posts)."""
    page = httpx.get(server.url + "/")
    token = unescape(re.search(r'name="csrf" value="([^"]+)"', page.text).group(1))  # type: ignore[union-attr]
    return dict(page.cookies), token


def burst(server: Server, path: str, forms: list[dict[str, str]]) -> list[int]:
    """POST every form at the same moment, one thread and connection each."""
    cookies, token = browser(server)
    gate = threading.Barrier(len(forms))
    codes: list[int] = [0] * len(forms)

    def post(index: int) -> None:
        with httpx.Client(base_url=server.url, cookies=cookies, timeout=60) as client:
            gate.wait()
            codes[index] = client.post(path, data={"csrf": token, **forms[index]}).status_code

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(forms))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return codes


def settle(server: Server, seconds: float = 1.5) -> int:
    """Mails are sent after the answer: wait until the outbox stops growing."""
    count, stable_since = -1, time.monotonic()
    while time.monotonic() - stable_since < seconds:
        now = len(server.outbox())
        if now != count:
            count, stable_since = now, time.monotonic()
        time.sleep(0.1)
    return count


@pytest.fixture(params=["sqlite", "postgres", "redis"])
def backend(request, tmp_path) -> tuple[str, str]:
    """(database URL, Redis URL): the counts live in the database, or in Redis when it is set."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'papermail.db'}", ""
    if request.param == "postgres":
        return request.getfixturevalue("pg_database_url"), ""
    url = request.getfixturevalue("redis_url")
    import redis

    client = redis.Redis.from_url(url)  # no count left by an earlier test from this client IP
    for key in client.scan_iter("papermail:ratelimit:*"):
        client.delete(key)
    return f"sqlite:///{tmp_path / 'papermail.db'}", url


def test_a_burst_cannot_get_past_the_per_ip_limit(tmp_path, backend, servers):
    database_url, redis_url = backend
    server = start_server(
        tmp_path, database_url, redis_url, subscribe_limit_per_ip=20, subscribe_limit_per_address=3
    )
    servers.append(server)
    forms = [{"email": f"user{i}@example.org", "keywords": "linear attention"} for i in range(40)]
    codes = burst(server, "/subscribe", forms)
    assert sorted(codes) == [200] * 20 + [429] * 20  # was: 29 of 40 got past a limit of 20
    assert settle(server) == 20


def test_a_burst_cannot_get_past_the_per_address_limit_and_learns_nothing(
    tmp_path, backend, servers
):
    database_url, redis_url = backend
    server = start_server(
        tmp_path,
        database_url,
        redis_url,
        subscribe_limit_per_ip=1000,
        subscribe_limit_per_address=3,
    )
    servers.append(server)
    forms = [{"email": "ada@example.org", "keywords": f"topic {i}"} for i in range(30)]
    codes = burst(server, "/subscribe", forms)
    assert codes == [200] * 30  # the same answer to everyone: no "too many" for an address
    # Three sign-ups went through (was: 6 of 30); run at once for one new address, the first
    # creates it and sends, the others meet it mid-way: at most three mails.
    assert 1 <= settle(server) <= 3
    key = address_key("ada@example.org")
    if redis_url:
        import redis

        assert redis.Redis.from_url(redis_url).zcard(f"papermail:ratelimit:{key}") == 3
    else:
        engine = make_engine(server.settings)
        with Session(engine) as session:
            hits = session.exec(select(RateLimitHit).where(RateLimitHit.key == key)).all()
        engine.dispose()
        assert len(hits) == 3


def test_a_stranger_cannot_lock_the_owner_out(tmp_path, database_url, servers):
    server = start_server(
        tmp_path, database_url, subscribe_limit_per_ip=1000, subscribe_limit_per_address=3
    )
    servers.append(server)
    engine = make_engine(server.settings)
    ada = add_confirmed(engine, "ada@example.org", "linear attention")
    # A stranger asks, again and again, for sign-ups and links to Ada's address.
    codes = burst(server, "/subscribe", [{"email": "ada@example.org", "keywords": "spam"}] * 10)
    codes += burst(server, "/link", [{"email": "ada@example.org"}] * 10)
    assert set(codes) == {200}
    assert settle(server) <= 3
    manage = httpx.get(server.url + f"/manage/{token_for(server.settings, _manage(), ada)}")
    assert manage.status_code == 200 and "linear attention" in unescape(manage.text)
    with Session(engine) as session:
        [subscriber] = session.exec(select(Subscriber)).all()
        assert subscriber.confirmed and subscriber.token_version == ada.token_version
    engine.dispose()


def _manage():
    from papermail.tokens import Purpose

    return Purpose.manage


def _median_ms(client: httpx.Client, token: str, email: str, n: int) -> float:
    times = []
    for i in range(n):
        started = time.perf_counter()
        answer = client.post(
            "/subscribe", data={"csrf": token, "email": email, "keywords": f"topic {i % 3}"}
        )
        times.append((time.perf_counter() - started) * 1000)
        assert answer.status_code == 200
        time.sleep(0.05)  # each answer on its own: the work it left behind is done
    return statistics.median(times)


def test_subscribe_takes_as_long_for_a_confirmed_address(tmp_path, database_url, servers):
    server = start_server(
        tmp_path, database_url, subscribe_limit_per_ip=100_000, subscribe_limit_per_address=100_000
    )
    servers.append(server)
    engine = make_engine(server.settings)
    add_confirmed(engine, "known@example.org", "linear attention")
    engine.dispose()
    cookies, token = browser(server)
    with httpx.Client(base_url=server.url, cookies=cookies, timeout=60) as client:
        _median_ms(client, token, "warm-up@example.org", 10)
        rounds = [
            (
                _median_ms(client, token, "known@example.org", 15),
                _median_ms(client, token, f"new{r}@example.org", 15),
            )
            for r in range(3)
        ]
    known = statistics.median(k for k, _ in rounds)
    new = statistics.median(n for _, n in rounds)
    # Was ~14 ms faster for a confirmed address (no INSERT, no commit). Now the sign-up runs
    # after the answer for both: a generous bound, for a shared and busy test machine.
    assert abs(known - new) < max(4.0, 0.25 * new), (known, new)
