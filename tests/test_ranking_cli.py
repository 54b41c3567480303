"""`papermail rank` and `papermail eval` as a person runs them: subprocesses, no database."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

PAPERMAIL = Path(sys.executable).with_name("papermail")
DATA = Path(__file__).resolve().parents[1] / "bench" / "data"


def run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "VAR_DIR")}
    env["COLUMNS"] = "200"
    return subprocess.run(
        [str(PAPERMAIL), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_rank_json_over_a_folder(tmp_path, seeds_dir):
    result = run(
        [
            "rank",
            "--corpus",
            str(seeds_dir),
            "-k",
            "MoE",
            "-x",
            "diffusion",
            "--top",
            "8",
            "--json",
        ],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    rows = json.loads(result.stdout)
    assert len(rows) == 8
    assert [set(r) for r in rows] == [{"id", "score", "matched", "sent"}] * 8
    assert all(r["sent"] == (r["score"] >= 0.08) for r in rows)  # MIN_SCORE: a digest's floor
    assert all(r["matched"] == ["MoE"] for r in rows)
    assert [r["score"] for r in rows] != [] and all(0 < r["score"] <= 1 for r in rows)
    assert not list(tmp_path.iterdir()), "no database, no files"


def test_rank_table_and_a_single_file(tmp_path, seeds_dir):
    page = seeds_dir / "daily-papers-0.txt"
    result = run(["rank", "--corpus", str(page), "-k", "linear attention", "--top", "3"], tmp_path)
    assert result.returncode == 0, result.stderr
    for needle in ("rank", "score", "linear attention", "title"):
        assert needle in result.stdout
    assert len([line for line in result.stdout.splitlines() if "linear attention (" in line]) >= 2


def test_rank_a_json_lines_corpus_keeps_its_ids(tmp_path):
    corpus = tmp_path / "mine.jsonl"
    lines = [
        {"id": "a1", "title": "Linear attention at scale", "abstract": "Linear attention is fast."},
        {"id": "b2", "title": "Robots", "abstract": "Control and planning."},
    ]
    corpus.write_text("\n".join(json.dumps(x) for x in lines), encoding="utf-8")
    result = run(
        ["rank", "--corpus", str(corpus), "-k", "linear attention", "--json", "--min-score", "0"],
        tmp_path,
    )
    assert result.returncode == 0, result.stderr
    assert [r["id"] for r in json.loads(result.stdout)] == ["a1"]


def test_rank_nothing_matched_and_clear_errors(tmp_path, seeds_dir):
    none = run(
        [
            "rank",
            "--corpus",
            str(seeds_dir),
            "-k",
            "quantum chromodynamics lattice gauge",
            "--json",
        ],
        tmp_path,
    )
    assert none.returncode == 0 and json.loads(none.stdout) == []
    missing = run(["rank", "--corpus", str(tmp_path / "nope"), "-k", "x"], tmp_path)
    assert missing.returncode == 1
    assert missing.stderr.strip().startswith("error: no such file or folder")
    assert "Traceback" not in missing.stderr
    for verb in (["rank", "--help"], ["eval", "--help"]):
        helped = run(verb, tmp_path)
        assert helped.returncode == 0 and "Usage:" in helped.stdout


def test_eval_on_a_small_labelled_set(tmp_path, seeds_dir):
    """The harness end to end on one seed page and the judgements of its papers."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    shutil.copy(seeds_dir / "daily-papers-3.txt", corpus)
    with (DATA / "judgements.tsv").open(encoding="utf-8") as handle:
        header, *rows = handle.read().splitlines()
    ids = {line.split("\t")[1] for line in rows}
    page_ids = _ids_in(corpus)
    kept = [line for line in rows if line.split("\t")[1] in page_ids]
    assert kept and len(kept) < len(rows)
    small = tmp_path / "judgements.tsv"
    small.write_text("\n".join([header, *kept]) + "\n", encoding="utf-8")
    args = ["eval", "--judgements", str(small), "--profiles", str(DATA / "profiles.json")]
    result = run([*args, "--corpus", str(corpus), "--subscribers", "50"], tmp_path)
    assert result.returncode == 0, result.stderr
    for needle in ("plain TF-IDF cosine", "BM25", "full model", "nDCG@10", "+ Rocchio"):
        assert needle in result.stdout
    everything = run(["eval", "--corpus", str(corpus), "--subscribers", "0"], tmp_path)
    assert everything.returncode == 1 and "not in the corpus" in everything.stderr
    assert ids


def _ids_in(folder: Path) -> set[str]:
    from papermail.ranking.corpus import load_corpus

    return set(load_corpus([folder])[0])
