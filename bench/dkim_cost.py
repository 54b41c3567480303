"""``python -m bench.dkim_cost [--subscribers N]``: what DKIM signing adds per digest.

Runs the bench's render + MIME stage (``stage_digests``, the same world as ``--quick``) three
times: signing off (the default, the bench's own figure), with an RSA-2048 key and with an
Ed25519 key, each message signed by ``papermail.dkim.sign_message`` right after
``build_message`` as ``compose_mail`` does. Prints the per-digest medians.
"""

from __future__ import annotations

import argparse
import tempfile
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path

from bench import pipeline
from bench.__main__ import QUICK
from bench.world import build_world
from papermail import dkim


@contextmanager
def signing(settings):
    """``pipeline.build_message`` followed by DKIM signing, for the length of the block."""
    build = pipeline.build_message
    pipeline.build_message = lambda rendered, **kw: dkim.sign_message(
        settings, build(rendered, **kw)
    )
    try:
        yield
    finally:
        pipeline.build_message = build


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.dkim_cost", description=__doc__)
    parser.add_argument("--subscribers", type=int, default=QUICK.subscribers)
    args = parser.parse_args(argv)
    options = replace(QUICK, subscribers=args.subscribers, smtp_messages=0)
    with tempfile.TemporaryDirectory(prefix="papermail-bench-dkim-") as tmp:
        workdir = Path(tmp)
        settings = pipeline.bench_settings(workdir)
        world = build_world(
            settings.samples_dir,
            papers=options.papers,
            subscribers=options.subscribers,
            seed=options.seed,
        )
        scratch = pipeline.Results(options)
        model = pipeline.stage_fit(scratch, world)
        matches = pipeline.stage_score(scratch, world, model, settings)
        keys = {"off": None, "RSA-2048": "rsa", "Ed25519": "ed25519"}
        baseline = None
        for label, kind in keys.items():
            run_settings = settings
            if kind is not None:
                key_file = workdir / f"{kind}.pem"
                key_file.write_bytes(dkim.generate_key(kind))  # type: ignore[arg-type]
                run_settings = settings.model_copy(
                    update={"dkim_selector": "bench", "dkim_private_key_file": key_file}
                )
            results = pipeline.Results(options)
            if kind is None:
                pipeline.stage_digests(results, world, matches, run_settings)
            else:
                with signing(run_settings):
                    pipeline.stage_digests(results, world, matches, run_settings)
            mime = next(r for r in results.rows if r.stage.startswith("MIME: build_message"))
            fast = results.facts["fast_render_inline_mime"]
            baseline = baseline or fast
            print(
                f"DKIM {label:<9} digests {mime.items:>6,}"
                f"  MIME(+sign) {mime.seconds * 1e3:6.3f} ms"
                f"  render+inline+MIME {fast * 1e3:6.3f} ms = {1 / fast:7,.0f}/s"
                f"  (+{(fast - baseline) * 1e3:.3f} ms per digest vs off)"
            )


if __name__ == "__main__":
    main()
