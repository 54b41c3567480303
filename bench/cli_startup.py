"""How long a person waits for `papermail --help`, as a ratio to importing typer alone.

Both are fresh interpreters (the way a person runs them), timed wall-clock; the ratio is what
to compare across machines: `--help` should cost little more than the CLI library itself."""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path

PAPERMAIL = Path(sys.executable).with_name("papermail")


def wall(argv: list[str], repeats: int = 5) -> float:
    """Median wall time of `argv` over `repeats` runs (after one warm-up for the disk cache)."""
    subprocess.run(argv, capture_output=True, check=True)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, check=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(repeats: int = 5) -> dict[str, float]:
    command = [str(PAPERMAIL)] if PAPERMAIL.exists() else [sys.executable, "-m", "papermail.cli"]
    help_s = wall([*command, "--help"], repeats)
    typer_s = wall([sys.executable, "-c", "import typer"], repeats)
    return {"help_seconds": help_s, "typer_import_seconds": typer_s, "help_ratio": help_s / typer_s}


def stage_cli_startup(results, repeats: int = 5) -> None:
    """One row in `python -m bench`: `papermail --help` against `import typer`."""
    facts = measure(repeats)
    results.facts.update(facts)
    results.add(
        "papermail --help (fresh process, median of 5)",
        1,
        facts["help_seconds"],
        f"{facts['help_ratio']:.1f}x `python -c 'import typer'` "
        f"({facts['typer_import_seconds'] * 1e3:.0f} ms); target < 0.5 s",
        "command line",
    )


if __name__ == "__main__":
    found = measure()
    print(
        f"papermail --help {found['help_seconds']:.3f} s, import typer "
        f"{found['typer_import_seconds']:.3f} s, ratio {found['help_ratio']:.1f}x"
    )
