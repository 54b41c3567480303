"""The built wheel carries templates, workers and sample pages: the demo runs from it."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
import venv
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(out),
            str(REPO),
        ],
        check=True,
        capture_output=True,
    )
    (built,) = out.glob("papermail-*.whl")
    return built


def test_wheel_contents(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "papermail/templates/email/digest.html.j2",
        "papermail/templates/email/digest.txt.j2",
        "workers/app.py",
        "workers/tasks.py",
        "papermail/samples/daily-papers-0.txt",
    ):
        assert required in names


def test_demo_runs_from_installed_wheel(wheel, tmp_path):
    """A fresh venv gets the wheel alone; dependencies come from this environment's site dir
    through a .pth file, so no network is needed and nothing leaks from the source tree."""
    target = tmp_path / "venv"
    venv.create(target, with_pip=True)
    python = target / "bin" / "python"
    site = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    )
    deps = sysconfig.get_paths()["purelib"]
    Path(site.stdout.strip(), "deps.pth").write_text(deps + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--no-deps", str(wheel)],
        check=True,
        capture_output=True,
    )
    workdir = tmp_path / "elsewhere"
    workdir.mkdir()
    where = subprocess.run(
        [
            str(python),
            "-c",
            "import papermail, workers; print(papermail.__file__, workers.__file__)",
        ],
        cwd=workdir,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert all(path.startswith(str(target)) for path in where), where
    demo = subprocess.run(
        [str(target / "bin" / "papermail"), "demo"],
        cwd=workdir,
        env={**os.environ, "VAR_DIR": str(workdir / "var")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert demo.returncode == 0, demo.stdout + demo.stderr
    assert len(list((workdir / "var" / "demo" / "outbox").glob("*.html"))) == 4
