"""What a first-time user meets on the command line (issue 15): the demo keeps away from real
data, updates change only what was given, usage errors look like every CLI's, tables survive
a pipe. Subprocesses in a fresh directory, real SQLite (and PostgreSQL where it matters)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from tests.test_cli import run


def _count(db: Path, table: str) -> int:
    with sqlite3.connect(db) as conn:
        return conn.execute(f"select count(*) from {table}").fetchone()[0]


def test_demo_never_touches_the_users_database(tmp_path):
    """Issue 15.2: `papermail demo` used to delete VAR_DIR/papermail.db."""
    var = tmp_path / "var"
    env = {"VAR_DIR": str(var)}
    for address in ("me@example.net", "you@example.net"):
        added = run(["subscribers", "add", address, "-k", "transformers"], tmp_path, **env)
        assert added.returncode == 0, added.stderr
    db = var / "papermail.db"
    before = db.read_bytes()
    demo = run(["demo"], tmp_path, **env)
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert _count(db, "subscriber") == 2 and _count(db, "paper") == 0
    assert db.read_bytes() == before
    assert not (var / "outbox").exists(), "the demo's mail goes to its own outbox"
    demo_dir = var / "demo"
    assert (demo_dir / "papermail.db").is_file()
    assert len(list((demo_dir / "outbox").glob("*.eml"))) == 4
    assert str(demo_dir) in demo.stdout.replace("\n", "")

    # DATABASE_URL names the user's database: the demo still works elsewhere.
    other = tmp_path / "elsewhere.db"
    env_url = {**env, "DATABASE_URL": f"sqlite:///{other}"}
    assert (
        run(["subscribers", "add", "me@example.net", "-k", "x"], tmp_path, **env_url).returncode
        == 0
    )
    url_before = other.read_bytes()
    assert run(["demo"], tmp_path, **env_url).returncode == 0
    assert other.read_bytes() == url_before
    assert _count(db, "subscriber") == 2
