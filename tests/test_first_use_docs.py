"""Issue 15.17: what a first-time user reads and runs before anything else: the Makefile shows
pip's progress and `make lint` lints; the README says what the tests need and how long they
take, and how to go from the demo to real use without Docker."""

from __future__ import annotations

import subprocess

from papermail.settings import default_samples_dir
from tests.conftest import REPO


def _make_n(target: str, tmp_path) -> str:
    """The commands `make TARGET` would run from scratch (a venv that does not exist yet)."""
    result = subprocess.run(
        ["make", "-n", "-B", target, f"VENV={tmp_path / 'venv'}"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_installing_shows_progress_and_lint_lints(tmp_path):
    install = [line for line in _make_n("demo", tmp_path).splitlines() if "pip install" in line]
    assert install, "make demo installs with pip"
    for line in install:
        assert "--quiet" not in line and " -q" not in line, line
    lint = _make_n("lint", tmp_path)
    assert "ruff check ." in lint and "ruff format --check ." in lint


def test_tests_use_the_packaged_samples(seeds_dir):
    assert seeds_dir == default_samples_dir()
    assert "../shared" not in (REPO / "tests" / "conftest.py").read_text()


def test_readme_covers_tests_and_the_way_to_real_use():
    readme = (REPO / "README.md").read_text()
    assert "about 5 minutes" in readme  # how long `make test` takes
    assert "src/papermail/samples" in readme and "nothing outside this repository" in readme
    real_use = readme.split("## From the demo to real use", 1)[1].split("\n## ", 1)[0]
    for needle in (
        "BASE_URL",
        "papermail serve",
        "papermail send-due",
        "papermail run-daily",
        "systemd",
        "reverse proxy",
        "papermail db upgrade",
        "SECRET_KEY",
    ):
        assert needle in real_use, needle
