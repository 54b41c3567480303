"""The labelled set in bench/data and the harness that scores ranking variants on it."""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest

from papermail.ranking import evaluation, report

DATA = Path(__file__).resolve().parents[1] / "bench" / "data"


@pytest.fixture(scope="module")
def labelled(seeds_dir: Path) -> evaluation.LabelledSet:
    return evaluation.load_labelled(DATA / "judgements.tsv", DATA / "profiles.json", [seeds_dir])


def test_the_labelled_set_is_complete_and_consistent(labelled):
    specs = json.loads((DATA / "profiles.json").read_text(encoding="utf-8"))
    assert len(specs) >= 12
    assert all(s["need"] for s in specs), "every profile says what its grades mean"
    assert any(s.get("excluded") for s in specs)
    with (DATA / "judgements.tsv").open(encoding="utf-8", newline="") as handle:
        rows = list(csv.DictReader(handle, delimiter="\t"))
    assert {r["grade"] for r in rows} <= {"0", "1", "2"}
    assert len({(r["profile"], r["paper_id"]) for r in rows}) == len(rows), "one grade per pair"
    titles = {pid: p.title for pid, p in zip(labelled.ids, labelled.papers, strict=True)}
    for row in rows:
        assert row["title"] == " ".join(titles[row["paper_id"]].split())
    on_topic = Counter(r["profile"] for r in rows if r["grade"] == "2")
    assert sum(n > 0 for n in on_topic.values()) >= 12
    for spec in specs:  # a paper with an excluded word is graded 0 for that profile
        for row in rows:
            if row["profile"] == spec["name"] and row["grade"] != "0":
                text = row["title"].lower()
                assert not any(x.lower() in text for x in spec.get("excluded", []))


def test_a_judgement_for_a_paper_outside_the_corpus_is_refused(tmp_path, seeds_dir):
    bad = tmp_path / "judgements.tsv"
    bad.write_text("profile\tpaper_id\tgrade\ttitle\nmoe\tt-nope\t2\tNope\n", encoding="utf-8")
    with pytest.raises(ValueError, match="not in the corpus"):
        evaluation.load_labelled(bad, DATA / "profiles.json", [seeds_dir])


def test_the_full_model_beats_plain_cosine(labelled):
    result = report.evaluate(labelled, min_score=0.08, subscribers=0)
    rows = {row.name: row for row in result.rows}
    plain, full = result.rows[0], result.rows[-1]
    assert plain.name == "plain TF-IDF cosine" and "full model" in full.name
    assert "BM25" in rows
    assert full.ndcg > plain.ndcg, report.format_report(result)
    assert full.precision >= plain.precision
    none, rocchio, _ = result.feedback
    assert rocchio.ndcg > none.ndcg, "ratings help rank the papers not rated yet"
    text = report.format_report(result)
    for heading in ("nDCG@10", "P@5", "R@20", "ms/1k subs", "relevance feedback"):
        assert heading in text
