"""The compose stack's services as local processes, running the very commands compose runs:
`papermail db upgrade`, `papermail serve`, a celery worker and celery beat, against this
machine's PostgreSQL, a private Redis and a real SMTP catcher (aiosmtpd). A person subscribes
through the web app, confirms from the real mail, and beat's dispatcher delivers their digest."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from datetime import UTC, datetime
from html import unescape
from pathlib import Path

import httpx
import pytest
import yaml

from tests.conftest import free_port

BIN = Path(sys.executable).parent
REPO = Path(__file__).resolve().parents[1]


def compose_command(service: str) -> list[str]:
    """The command a compose service runs, with its executable taken from this venv."""
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    command = list(compose["services"][service]["command"])
    return [str(BIN / command[0]), *command[1:]]


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, "the page has a CSRF field"
    return unescape(match.group(1))


def wait_for(predicate, what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


@pytest.fixture
def stack_env(tmp_path, pg_database_url, redis_url, smtp_server, seeds_dir) -> dict[str, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SMTP_", "REDIS", "DATABASE"))}
    env.update(
        ENVIRONMENT="production",
        SECRET_KEY="e2e-secret-that-is-not-the-placeholder",
        DATABASE_URL=pg_database_url,
        REDIS_URL=redis_url,
        MAIL_BACKEND="smtp",
        SMTP_HOST=smtp_server.host,
        SMTP_PORT=str(smtp_server.port),
        BASE_URL=f"http://127.0.0.1:{port}",
        VAR_DIR=str(tmp_path / "var"),
        DISPATCH_EVERY_MINUTES="0.05",  # every 3 s
        INGEST_CRON="",
        DAILY_SOURCES=json.dumps([str(seeds_dir)]),
        PORT=str(port),
    )
    return env


def test_stack_delivers_to_a_subscriber_who_signed_up_on_the_web(
    stack_env, tmp_path, smtp_server, seeds_dir
):
    env, port = stack_env, stack_env["PORT"]
    serve = [*compose_command("web")[:-4], "--host", "127.0.0.1", "--port", port]

    refused = subprocess.run(serve, env=env, capture_output=True, text=True, timeout=60)
    assert refused.returncode == 1, "production refuses an unmigrated database"
    assert "papermail db upgrade" in refused.stderr

    subprocess.run(compose_command("migrate"), env=env, check=True, capture_output=True)
    ingest = [str(BIN / "papermail"), "ingest", str(seeds_dir)]
    subprocess.run(ingest, env=env, check=True, capture_output=True, timeout=120)

    logs = {name: (tmp_path / f"{name}.log").open("w") for name in ("web", "worker", "beat")}
    beat = [*compose_command("beat")[:-2], "--schedule", str(tmp_path / "beat-schedule")]
    commands = {"web": serve, "worker": compose_command("worker"), "beat": beat}
    procs = {
        name: subprocess.Popen(
            command, env=env, cwd=tmp_path, stdout=logs[name], stderr=subprocess.STDOUT
        )
        for name, command in commands.items()
    }
    base = env["BASE_URL"]
    try:
        with httpx.Client(base_url=base, timeout=10, follow_redirects=True) as web:

            def healthy() -> bool:
                try:
                    return web.get("/healthz").status_code == 200
                except httpx.TransportError:
                    return False

            wait_for(healthy, "the web app's /healthz")
            form = web.get("/")
            answer = web.post(
                "/subscribe",
                data={
                    "csrf": csrf_of(form.text),
                    "email": "ada@example.org",
                    "keywords": "linear attention\nstate space models",
                    "excluded": "",
                    "timezone": "UTC",
                },
            )
            assert answer.status_code == 200, answer.text

            def confirmation():
                return [m for m in smtp_server.messages if "ada@example.org" in m.rcpt_tos]

            mail = wait_for(confirmation, "the confirmation mail")[0].message
            text = mail.get_body(("plain",)).get_content()
            confirm_url = re.search(re.escape(base) + r"/confirm/[\w.\-]+", text).group(0)
            page = web.get(confirm_url)
            manage = web.post(confirm_url, data={"csrf": csrf_of(page.text)})
            assert manage.status_code == 200 and "/manage/" in str(manage.url)
            # Due now: send hour = the current UTC hour.
            saved = web.post(
                str(manage.url).split("?")[0],
                data={
                    "csrf": csrf_of(manage.text),
                    "keywords": "linear attention\nstate space models",
                    "excluded": "",
                    "frequency": "daily",
                    "weekly_day": "0",
                    "send_hour": str(datetime.now(UTC).hour),
                    "timezone": "UTC",
                    "max_papers": "5",
                },
            )
            assert saved.status_code == 200, saved.text

        def digests() -> list:
            mails = [m.message for m in smtp_server.messages if "ada@example.org" in m.rcpt_tos]
            return [m for m in mails if m["List-Unsubscribe-Post"]]

        first = wait_for(digests, "beat's dispatcher to deliver the digest", timeout=90)
        time.sleep(8)  # a few more dispatcher ticks: nothing is sent twice
        assert len(digests()) == 1
        assert first[0].get_body(("html",)).get_content().count("/unsubscribe/") >= 1
        status = subprocess.run(
            [str(BIN / "papermail"), "status", "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert status.returncode == 0, status.stderr
        assert '"sent": 1' in status.stdout.replace("'", '"')
    finally:
        for proc in procs.values():
            proc.terminate()
        for name, proc in procs.items():
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
            logs[name].close()
