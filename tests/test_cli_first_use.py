"""What a first-time user meets on the command line (issue 15): the demo keeps away from real
data, updates change only what was given, usage errors look like every CLI's, tables survive
a pipe. Subprocesses in a fresh directory, real SQLite (and PostgreSQL where it matters)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

from tests.test_cli import PAPERMAIL, clean_env


def run(
    args: list[str], cwd: Path, *, input: str = "", **env: str
) -> subprocess.CompletedProcess[str]:
    """`papermail ARGS` in `cwd`, with `input` on stdin (a pipe, never the terminal)."""
    return subprocess.run(
        [str(PAPERMAIL), *args],
        cwd=cwd,
        env=clean_env(cwd, **env),
        input=input,
        capture_output=True,
        text=True,
        timeout=300,
    )


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


def _listed(tmp_path: Path, env: dict[str, str]) -> str:
    result = run(["subscribers", "list"], tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_subscribers_add_again_changes_only_what_was_given(tmp_path):
    """Issue 15.3: re-adding an address reset its time zone, hour and exclusions."""
    env = {"VAR_DIR": str(tmp_path / "var")}
    first = run(
        [
            *("subscribers", "add", "ada@example.org", "-k", "linear attention", "-k", "MoE"),
            *("-x", "diffusion", "--timezone", "Europe/Berlin", "--hour", "8"),
        ],
        tmp_path,
        **env,
    )
    assert first.returncode == 0, first.stderr
    assert "subscribed ada@example.org" in first.stdout

    again = run(["subscribers", "add", "ada@example.org", "--hour", "9"], tmp_path, **env)
    assert again.returncode == 0, again.stderr
    assert "updated ada@example.org" in again.stdout and "subscribed" not in again.stdout
    listed = _listed(tmp_path, env)
    assert "daily 09:00 Europe/Berlin" in listed
    assert "linear attention, MoE" in listed and "diffusion" in listed

    # -k replaces the keyword list, -x the exclusions; what is not given stays.
    run(["subscribers", "add", "ada@example.org", "-k", "state space models"], tmp_path, **env)
    listed = _listed(tmp_path, env)
    assert "state space models" in listed and "linear attention" not in listed
    assert "diffusion" in listed and "09:00 Europe/Berlin" in listed
    run(["subscribers", "add", "ada@example.org", "--frequency", "weekly"], tmp_path, **env)
    assert "weekly 09:00 Europe/Berlin" in _listed(tmp_path, env)

    # A new address still needs keywords.
    new = run(["subscribers", "add", "bob@example.org"], tmp_path, **env)
    assert new.returncode != 0 and "keyword" in new.stderr


def test_subscribers_remove_asks_and_clears_rate_limit_rows(tmp_path):
    """Issue 15.3: `subscribers remove` asks first (--yes skips) and forgets the address's
    rate-limit counts."""
    from papermail.services.subscriptions import address_key

    env = {"VAR_DIR": str(tmp_path / "var")}
    assert (
        run(["subscribers", "add", "ada@example.org", "-k", "x"], tmp_path, **env).returncode == 0
    )
    db = tmp_path / "var" / "papermail.db"
    with sqlite3.connect(db) as conn:
        conn.execute(
            "insert into ratelimithit (key, created_at) values (?, '2026-01-01 00:00:00')",
            (address_key("ada@example.org"),),
        )
    declined = run(["subscribers", "remove", "ada@example.org"], tmp_path, input="n\n", **env)
    assert declined.returncode != 0
    assert "Remove ada@example.org" in declined.stdout
    assert "ada@example.org" in _listed(tmp_path, env)
    assert _count(db, "ratelimithit") == 1

    removed = run(["subscribers", "remove", "ada@example.org", "--yes"], tmp_path, **env)
    assert removed.returncode == 0, removed.stderr
    assert "ada@example.org" not in _listed(tmp_path, env)
    assert _count(db, "ratelimithit") == 0


def test_usage_errors_are_clicks_own_message_and_exit_2(tmp_path):
    """Issue 15.14: usage errors said `error: unexpected MissingParameter` and exited 1."""
    for args, needle in [
        (["subscribers", "add"], "Missing argument 'EMAIL'"),
        (["subscribers", "add", "a@example.org", "-k", "x", "--bogus"], "No such option: --bogus"),
        (["nosuchverb"], "No such command 'nosuchverb'"),
        (["status", "--top", "3"], "No such option: --top"),
        (["serve", "--port", "99999"], "Invalid value for '--port'"),
        (
            ["subscribers", "add", "a@example.org", "--hour", "noon"],
            "Invalid value for '--hour'",
        ),
    ]:
        result = run(args, tmp_path)
        assert result.returncode == 2, (args, result.stderr)
        assert needle in result.stderr, (args, result.stderr)
        assert "unexpected" not in result.stderr and "Traceback" not in result.stderr
        assert "Usage: papermail" in result.stderr and len(result.stderr.splitlines()) <= 6
    bare = run(["subscribers"], tmp_path)  # no verb: the group's help, like every CLI
    assert bare.returncode == 2 and "Usage: papermail subscribers" in bare.stdout + bare.stderr


def test_rank_validates_top_and_keywords_like_subscribers_add(tmp_path):
    """Issue 15.14: `rank --top 0`, `--top -5`, an empty or huge keyword said "no paper
    matched" and exited 0."""
    from papermail.settings import default_samples_dir

    corpus = ["rank", "--corpus", str(default_samples_dir())]
    for top in ("0", "-5"):
        result = run([*corpus, "-k", "attention", "--top", top], tmp_path)
        assert result.returncode == 2 and "--top" in result.stderr, result.stderr
    for keyword, needle in [
        ("", "give at least one keyword"),
        ("  ,  ", "give at least one keyword"),
        ("x" * 201, "keyword longer than 200 characters"),
    ]:
        result = run([*corpus, "-k", keyword], tmp_path)
        assert result.returncode == 1, result.stdout
        assert needle in result.stderr and len(result.stderr.strip().splitlines()) == 1
    huge = run([*corpus, "-k", "attention", "--top", "1000000"], tmp_path)
    assert huge.returncode == 2 and "--top" in huge.stderr
    ok = run([*corpus, "-k", "attention", "--top", "3", "--json"], tmp_path)
    assert ok.returncode == 0 and len(json.loads(ok.stdout)) == 3


HEAVY = ("sklearn", "sqlalchemy", "sqlmodel", "fastapi", "celery", "pydantic_settings", "scipy")


def test_help_imports_no_heavy_module():
    """Issue 15.15: `papermail --help` took 2.4-3.7 s importing scikit-learn, SQLAlchemy,
    FastAPI and Celery; verbs import them now. `python -m bench` times it against typer."""
    probe = (
        "import sys\n"
        "sys.argv = ['papermail', '--help']\n"
        "from papermail.cli import main\n"
        "try:\n    main()\nexcept SystemExit as exit:\n    assert exit.code == 0, exit.code\n"
        f"print('LOADED', [m for m in {HEAVY!r} if m in sys.modules])\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout, result.stdout[-300:]
    assert "subscribers" in result.stdout


def test_cli_frequency_choices_are_the_models():
    from papermail.cli import FrequencyChoice
    from papermail.models import Frequency

    assert [f.value for f in FrequencyChoice] == [f.value for f in Frequency]


def test_one_per_user_database_by_default_and_commands_say_which(tmp_path):
    """Issue 15.16: the database lived at ./var, so a command run from another folder silently
    started an empty one. The default is now one per-user data directory (platformdirs;
    XDG_DATA_HOME on Linux) unless VAR_DIR or DATABASE_URL say otherwise."""
    data_home = tmp_path / "xdg"
    here, there = tmp_path / "here", tmp_path / "there"
    here.mkdir()
    there.mkdir()
    env = {"XDG_DATA_HOME": str(data_home), "VAR_DIR": ""}
    added = run(["subscribers", "add", "ada@example.org", "-k", "x"], here, **env)
    assert added.returncode == 0, added.stderr
    db = data_home / "papermail" / "papermail.db"
    assert db.is_file() and not (here / "var").exists()
    listed = run(["subscribers", "list"], there, **env)
    assert "ada@example.org" in listed.stdout
    assert f"database: sqlite:///{db}" in listed.stdout
    status = run(["status"], there, **env)
    assert status.returncode == 0 and f"database: sqlite:///{db}" in status.stdout
    # VAR_DIR still decides when given.
    elsewhere = run(["subscribers", "list"], there, VAR_DIR=str(tmp_path / "v"))
    assert "ada@example.org" not in elsewhere.stdout and str(tmp_path / "v") in elsewhere.stdout


def test_json_for_scripts_and_tables_that_survive_a_pipe(tmp_path):
    """Issue 15.16/17: `--json` on `subscribers list` and `status`; piped tables keep whole
    addresses and paths."""
    long_address = "a.very.long.address.for.testing.truncation" + "@example-research-lab.org"
    assert (
        run(["subscribers", "add", long_address, "-k", "state space models"], tmp_path).returncode
        == 0
    )
    listed = run(["subscribers", "list", "--json"], tmp_path)
    assert listed.returncode == 0, listed.stderr
    data = json.loads(listed.stdout)
    assert data["database"].endswith("papermail.db")
    (sub,) = data["subscribers"]
    assert sub["email"] == long_address and sub["keywords"] == ["state space models"]
    assert sub["status"] == "active" and sub["timezone"] == "UTC" and sub["send_hour"] == 7
    status = json.loads(run(["status", "--json"], tmp_path).stdout)
    assert status["database"] == data["database"] and "counts" in status

    narrow = run(["subscribers", "list"], tmp_path, COLUMNS="40")
    assert long_address in narrow.stdout, narrow.stdout
    assert str(tmp_path / "var" / "papermail.db") in narrow.stdout
