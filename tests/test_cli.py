"""The command line as a person runs it: subprocesses in a fresh directory."""

from __future__ import annotations

import os
import subprocess
import sys
from email import message_from_bytes, policy
from pathlib import Path

import pytest

PAPERMAIL = Path(sys.executable).with_name("papermail")
VERBS = [
    [],
    ["demo"],
    ["ingest"],
    ["subscribers"],
    ["subscribers", "add"],
    ["subscribers", "list"],
    ["subscribers", "remove"],
    ["preview"],
    ["send-due"],
    ["run-daily"],
    ["db"],
    ["db", "upgrade"],
    ["db", "current"],
    ["bounces", "process"],
    ["bounces", "serve"],
    ["bounces", "poll"],
    ["bounces", "list"],
    ["admin", "create-user"],
    ["admin", "list-users"],
    ["doctor"],
    ["dkim", "keygen"],
]


def clean_env(cwd: Path, **env: str) -> dict[str, str]:
    """The environment minus papermail's settings; data goes to `cwd`/var unless `env` says."""
    clean = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "MAIL_BACKEND", "VAR_DIR")
    }
    clean.update({"VAR_DIR": str(cwd / "var"), "COLUMNS": "200"}, **env)
    return {k: v for k, v in clean.items() if v != ""}  # NAME="" in `env` unsets NAME


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(PAPERMAIL), *args],
        cwd=cwd,
        env=clean_env(cwd, **env),
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
    )


@pytest.mark.parametrize("verb", VERBS, ids=lambda v: " ".join(v) or "papermail")
def test_every_verb_has_help(verb, tmp_path):
    result = run([*verb, "--help"], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout


def test_demo_from_a_fresh_directory(tmp_path):
    result = run(["demo"], tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    demo_dir = tmp_path / "var" / "demo"
    assert (demo_dir / "papermail.db").is_file()
    emls = sorted((demo_dir / "outbox").glob("*.eml"))
    htmls = sorted((demo_dir / "outbox").glob("*.html"))
    assert len(emls) == len(htmls) == 4, result.stdout
    recipients = {
        str(message_from_bytes(p.read_bytes(), policy=policy.default)["To"]) for p in emls
    }
    assert recipients == {
        "ada@example.org",
        "grace@example.org",
        "alan@example.org",
        "katherine@example.org",
    }
    for needle in ("ada@example.org", "papers", "top paper", "HTML digests in"):
        assert needle in result.stdout
    for path in htmls:
        assert path.resolve().as_uri() in result.stdout

    again = run(["demo"], tmp_path)
    assert again.returncode == 0, again.stderr
    assert len(list((demo_dir / "outbox").glob("*.eml"))) == 8


def test_subscribers_add_list_remove_and_clear_errors(tmp_path):
    added = run(
        [
            "subscribers",
            "add",
            "Ada@Example.org",
            "-k",
            "linear attention",
            "-x",
            "vision",
            "--timezone",
            "Europe/Berlin",
            "--hour",
            "8",
        ],
        tmp_path,
    )
    assert added.returncode == 0, added.stderr
    listed = run(["subscribers", "list"], tmp_path)
    assert "ada@example.org" in listed.stdout and "linear attention" in listed.stdout
    assert "Europe/Berlin" in listed.stdout

    for args, needle in [
        (["subscribers", "add", "not-an-email", "-k", "x"], "invalid email address"),
        (
            ["subscribers", "add", "b@example.org", "-k", "x", "--timezone", "Mars/Base"],
            "unknown time zone",
        ),
        (["subscribers", "remove", "nobody@example.org"], "no subscriber"),
        (["preview", "nobody@example.org"], "no subscriber"),
        (["ingest", str(tmp_path / "missing.txt")], "cannot read"),
    ]:
        result = run(args, tmp_path)
        assert result.returncode != 0, args
        assert "Traceback" not in result.stderr + result.stdout
        assert needle in result.stderr
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr

    removed = run(["subscribers", "remove", "ada@example.org", "--yes"], tmp_path)
    assert removed.returncode == 0
    assert "ada@example.org" not in run(["subscribers", "list"], tmp_path).stdout


def test_unreachable_database_is_one_line(tmp_path):
    result = run(
        ["subscribers", "list"],
        tmp_path,
        DATABASE_URL="postgresql+psycopg://nobody@127.0.0.1:1/none",
    )
    assert result.returncode == 1
    assert result.stderr.startswith("error: database unavailable")
    assert "Traceback" not in result.stderr


def test_preview_writes_html_without_sending(tmp_path, seeds_dir):
    assert run(["ingest", str(seeds_dir)], tmp_path).returncode == 0
    assert (
        run(
            ["subscribers", "add", "ada@example.org", "-k", "linear attention"], tmp_path
        ).returncode
        == 0
    )
    out = tmp_path / "preview.html"
    result = run(["preview", "ada@example.org", "--out", str(out)], tmp_path)
    assert result.returncode == 0, result.stderr
    assert "linear" in out.read_text().lower()
    assert not (tmp_path / "var" / "outbox").exists()
