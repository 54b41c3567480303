"""`python -m bench` runs end to end and prints every stage: a smoke test, never a timing test
(the machine is shared and noisy; the numbers are for people to read)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
STAGES = (
    "ingest: parse + upsert (SQLite)",
    "TF-IDF fit",
    "scoring + top-10, batched",
    "scoring, naive: one rank() per subscriber",
    "context: DigestEntry objects",
    "context: 4 signed links (itsdangerous)",
    "render: Jinja subject + HTML + text",
    "inline CSS: once per template (premailer)",
    "MIME: build_message (skeleton + QP)",
    "render + inline + MIME, fast",
    "render: Jinja, template not inlined",
    "inline CSS: premailer per email",
    "MIME: EmailMessage (policy.SMTP)",
    "render + inline + MIME, naive",
    "MIME: skeleton + base64",
    "MIME: email.mime (compat32)",
    "SMTP: client CPU per message",
    "SMTP: wall throughput",
    "SMTP: aiosmtpd server CPU per message",
    "SMTP: a new connection per message",
)


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_quick_benchmark_prints_every_stage(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "bench",
            "--quick",
            "--subscribers",
            "300",
            "--smtp-messages",
            "60",
            "--naive-digests",
            "10",
            "--json",
            str(out),
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=110,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    for stage in STAGES:
        assert stage in done.stdout, f"no row for {stage!r}:\n{done.stdout}"
    assert "speed-up" in done.stdout and "peak RSS" in done.stdout
    results = json.loads(out.read_text())
    rows = {row["stage"]: row for row in results["rows"]}
    assert rows["render + inline + MIME, fast"]["items"] > 0
    assert all(row["seconds"] > 0 for row in results["rows"])
    assert results["facts"]["speedup"] > 1  # a sanity check, not the target


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_end_to_end_benchmark_delivers_every_mail_once(redis_url, pg_engine) -> None:
    """`python -m bench.e2e` on a small day: real worker, Redis, PostgreSQL and aiosmtpd; every
    stored digest's Message-ID arrives exactly once, and the table names where time goes."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.e2e", "--subscribers", "300", "--json"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=230,
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    result = json.loads(done.stdout)
    assert result["ok"] and result["expected"] > 250
    assert result["received"] == result["expected"]
    assert (result["duplicates"], result["missing"], result["unexpected"]) == (0, 0, 0)
    assert {s["name"].split(" ")[0] for s in result["stages"]} == {"ingest", "scoring", "sending"}
    assert result["tasks"]["send_digests"]["count"] >= 2  # chunks, not one task per mail
    assert result["cpu"]["workers (celery + pool)"] > 0
