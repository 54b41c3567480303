"""``python -m bench [--quick] [--subscribers N] ...``: one table of every stage's cost.

A full run (100,000 subscribers x 500 papers) takes a few minutes on one core; ``--quick``
(5,000 subscribers, smaller samples) under a minute.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import asdict, replace
from pathlib import Path

from rich.console import Console
from rich.table import Table

from bench.pipeline import Options, Results, run

FULL = Options(subscribers=100_000)
QUICK = Options(
    subscribers=5_000,
    naive_digests=60,
    naive_scoring=5,
    smtp_messages=500,
    per_connection=50,
    variants=100,
)


def parse_args(argv: list[str] | None) -> tuple[Options, argparse.Namespace]:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="5,000 subscribers, small samples")
    parser.add_argument("--subscribers", type=int, help="subscribers in the synthetic world")
    parser.add_argument("--papers", type=int, help="papers of the day (default 500)")
    parser.add_argument("--smtp-messages", type=int, help="messages sent to the local server")
    parser.add_argument("--naive-digests", type=int, help="digests built the naive way")
    parser.add_argument("--seed", type=int, help="seed of the synthetic world")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    args = parser.parse_args(argv)
    options = QUICK if args.quick else FULL
    overrides = {
        name: value
        for name in ("subscribers", "papers", "smtp_messages", "naive_digests", "seed")
        if (value := getattr(args, name)) is not None
    }
    return replace(options, **overrides), args


def machine() -> str:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, {os.cpu_count()} cores, Python {platform.python_version()}"


def _time(seconds: float) -> str:
    if seconds >= 1:
        return f"{seconds:.2f} s"
    if seconds >= 1e-3:
        return f"{seconds * 1e3:.3f} ms"
    return f"{seconds * 1e6:.1f} µs"


def table(results: Results) -> Table:
    o = results.options
    grid = Table(
        title=f"papermail: {o.subscribers:,} subscribers x {o.papers} papers",
        caption=machine(),
        title_justify="left",
        caption_justify="left",
    )
    grid.add_column("stage", no_wrap=True)
    grid.add_column("items", justify="right")
    grid.add_column("per item", justify="right")
    grid.add_column("items/s", justify="right")
    grid.add_column("peak RSS", justify="right")
    grid.add_column("notes")
    groups = list(dict.fromkeys(row.group for row in results.rows))
    for group in groups:
        grid.add_section()
        grid.add_row(f"[bold]{group}[/bold]")
        for row in (r for r in results.rows if r.group == group):
            grid.add_row(
                row.stage,
                f"{row.items:,}",
                _time(row.seconds),
                f"{row.per_second:,.0f}",
                f"{row.rss_mb:,.0f} MB",
                row.note,
            )
    return grid


def main(argv: list[str] | None = None) -> int:
    options, args = parse_args(argv)
    console = Console(width=None if sys.stdout.isatty() else 150)
    err = Console(stderr=True)
    results = run(options, progress=lambda stage: err.print(f"[dim]… {stage}[/dim]"))
    console.print(table(results))
    f = results.facts
    if "speedup" in f:
        console.print(
            f"render + inline + MIME: fast {1 / f['fast_render_inline_mime']:,.0f} digests/s "
            f"per core, naive {1 / f['naive']:,.0f}/s: speed-up {f['speedup']:.0f}x "
            f"(target ≥ 20x) on the same {options.naive_digests} digests"
        )
    console.print(
        f"peak RSS {f['peak_rss_mb']:,.0f} MB; {f.get('digests', 0):,.0f} digests "
        f"({options.subscribers - f.get('digests', 0):,.0f} subscribers had no match); "
        f"vocabulary {f['vocabulary']:.0f} title phrases"
    )
    if args.json:
        payload = {
            "options": asdict(options),
            "machine": machine(),
            "rows": [asdict(row) for row in results.rows],
            "facts": f,
        }
        args.json.write_text(json.dumps(payload, indent=2, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
