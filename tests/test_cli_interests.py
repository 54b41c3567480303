"""`papermail interests add|list|remove`, `export` and `import` as an operator runs them, on
SQLite and PostgreSQL (issue 13 items 7 and 8)."""

from __future__ import annotations

import json

from tests.test_cli import run

FUSION = "Understanding and Improving Encoder Layer Fusion in Sequence-to-Sequence Learning"
BIBTEX = r"""@misc{unknown2026,
  title = {A Paper This Corpus Does Not Hold},
  eprint = {2612.99999},
  archivePrefix = {arXiv},
}
@article{title-only, title = {Neither {Does} It Hold This One}}
"""


def test_interests_export_and_import(tmp_path, database_url, seeds_dir):
    env = {"DATABASE_URL": database_url}

    def ok(*args: str) -> str:
        result = run(list(args), tmp_path, **env)
        assert result.returncode == 0, result.stdout + result.stderr
        return result.stdout

    ok("ingest", str(seeds_dir / "daily-papers-0.txt"))
    ok("subscribers", "add", "ada@example.org", "-k", "linear attention", "-x", "diffusion")
    (tmp_path / "refs.bib").write_text(BIBTEX)
    out = ok(
        "interests", "add", "ada@example.org", "Translation",
        "-k", "machine translation", "-x", "speech",
        "--seed", FUSION,
        "--seed-file", str(tmp_path / "refs.bib"),
        "--follow", "Vaswani, A.", "--max-papers", "4",
    )  # fmt: skip
    assert "added interest 'Translation'" in out
    assert "seed found: Understanding and Improving Encoder Layer Fusion" in out
    assert "seed not found: 2612.99999" in out
    assert "seed not found: Neither Does It Hold This One" in out
    assert "1 of 3 seed papers found" in out
    out = ok("interests", "add", "ada@example.org", "translation", "--max-papers", "6")
    assert "updated interest 'Translation'" in out
    listed = json.loads(ok("interests", "list", "ada@example.org", "--json"))
    assert [(i["name"], i["keywords"], i["excluded"], i["max_papers"]) for i in listed] == [
        ("linear attention", ["linear attention"], ["diffusion"], 10),
        ("Translation", ["machine translation"], ["speech"], 6),
    ]
    assert listed[1]["authors"] == ["Vaswani, A."]
    # `subscribers add -k` keeps working: it edits the first interest.
    ok("subscribers", "add", "ada@example.org", "-k", "state space models")
    text = ok("interests", "list", "ada@example.org")
    assert "keywords: state space models" in text and "keywords: machine translation" in text

    exported = ok("export", "ada@example.org")
    data = json.loads(exported)
    assert [i["name"] for i in data["interests"]] == ["linear attention", "Translation"]
    (tmp_path / "ada.json").write_text(exported)

    other = tmp_path / "other"
    other.mkdir()
    for verb in ("created", "updated"):  # idempotent
        result = run(["import", str(tmp_path / "ada.json")], other)
        assert result.returncode == 0, result.stderr
        assert f"{verb} ada@example.org: 2 interest(s)" in result.stdout
    again = json.loads(run(["export", "ada@example.org"], other).stdout)

    def portable(interests):  # "found" depends on the corpus, the rest travels
        for i in interests:
            i["seeds"] = [(s["given"], s["title"]) for s in i["seeds"]]
        return interests

    assert portable(again["interests"]) == portable(data["interests"])
    assert [s[0] for s in again["interests"][1]["seeds"]] == [
        FUSION,
        "2612.99999",
        "Neither Does It Hold This One",
    ]

    ok("interests", "remove", "ada@example.org", "Translation")
    failed = run(["interests", "remove", "ada@example.org", "linear attention"], tmp_path, **env)
    assert failed.returncode == 1 and "at least one interest" in failed.stderr
    failed = run(["interests", "list", "nobody@example.org"], tmp_path, **env)
    assert failed.returncode == 1 and "no subscriber" in failed.stderr
