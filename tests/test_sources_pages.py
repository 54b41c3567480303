"""Saved daily-papers pages: the five real seed layouts, and damaged or wrong input."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path

import pytest

from papermail.errors import SourceError
from papermail.sources.pages import parse_daily_papers_page
from papermail.sources.records import ParseResult, normalize_title

EXPECTED_COUNTS = {0: 68, 1: 80, 2: 399, 3: 48, 4: 71}
DATA = Path(__file__).parent / "data"

# (file, title, how its abstract starts): first, last and a few in between, read off the files.
PAIRS = [
    (
        0,
        "Understanding and Improving Encoder Layer Fusion in Sequence-to-Sequence Learning",
        "Encoder layer fusion (EncoderFusion) is a technique to fuse all the encoder layers",
    ),
    (
        0,
        "PELA: Learning Parameter-Efficient Models with Low-Rank Approximation",
        "Applying a pre-trained large model to downstream t",
    ),
    (
        0,
        "ENAT: Rethinking Spatial-temporal Interactions in Token-based Image Synthesis",
        "Recently, token-based generation have demonstrated",
    ),
    (
        1,
        "The Expressive Power of Transformers with Chain of Thought",
        "Recent theoretical work has identified surprisingly simple reasoning problems",
    ),
    (
        1,
        "Recipe for a General, Powerful, Scalable Graph Transformer",
        "We propose a recipe on how to build a general, pow",
    ),
    (
        1,
        "SemantiCodec: An Ultra Low Bitrate Semantic Audio Codec for General Sound",
        "Large language models (LLMs) have significantly ad",
    ),
    (
        2,
        "MedVisionLlama: Leveraging Pre-Trained Large Language Model Layers to Enhance Medical "
        "Image Segmentation",
        "Large Language Models (LLMs), known for their versatility in textual data",
    ),
    (
        2,
        "LayerCake: Token-Aware Contrastive Decoding within Large Language Model Layers",
        "Large language models (LLMs) ex",
    ),
    (
        2,
        'Can "consciousness" be observed from large language model (LLM) internal states? '
        "Dissecting LLM representations obtained from Theory of Mind test with Integrated "
        "Information Theory and Span Representation analysis",
        "Integrated Information Theory (IIT) provides a qua",
    ),
    (
        2,
        "Editing Language Model-based Knowledge Graph Embeddings",
        "Recently decades have witnessed the empirical succ",
    ),
    (
        2,
        "MobileNetV2: Inverted Residuals and Linear Bottlenecks",
        "In this paper we describe a new mobile architectur",
    ),
    (
        3,
        "ERNIE 3.0: Large-scale Knowledge Enhanced Pre-training for Language Understanding and "
        "Generation",
        "Pre-trained models have achieved state-of-the-art results",
    ),
    (
        3,
        "RetroMAE v2: Duplex Masked Auto-Encoder For Pre-Training Retrieval-Oriented Language "
        "Models",
        "To better support retrieval applications such as w",
    ),
    (
        3,
        "Automatically Interpreting Millions of Features in Large Language Models",
        "While the activations of neurons in deep neural ne",
    ),
    (
        4,
        "ARMOR v0.1: Empowering Autoregressive Multimodal Understanding Model with Interleaved "
        "Multimodal Generation via Asymmetric Synergy",
        "Unified models (UniMs) for multimodal understanding and generation",
    ),
    (
        4,
        "Decoder-Hybrid-Decoder Architecture for Efficient Reasoning with Long Generation",
        "Recent advances in language modeling hav",
    ),
    (
        4,
        "Stateful Conformer with Cache-based Inference for Streaming Automatic Speech Recognition",
        "In this paper, we propose an efficient and accurat",
    ),
    (
        4,
        "Entropy-Guided Attention for Private LLMs",
        "The pervasiveness of proprietary language models h",
    ),
]


def _read(seeds_dir: Path, number: int) -> str:
    return (seeds_dir / f"daily-papers-{number}.txt").read_text(encoding="utf-8")


def _parse(seeds_dir: Path, number: int, **kwargs: object) -> ParseResult:
    return parse_daily_papers_page(_read(seeds_dir, number), **kwargs)  # type: ignore[arg-type]


def _count_prose_lines(text: str) -> int:
    """A person's count: long lines with a sentence break are abstracts, one per paper."""
    return sum(len(line) > 400 and ". " in line for line in text.splitlines())


@pytest.mark.parametrize("number", sorted(EXPECTED_COUNTS))
def test_every_seed_parses_to_the_counted_number_of_papers(seeds_dir: Path, number: int) -> None:
    text = _read(seeds_dir, number)
    result = parse_daily_papers_page(text)
    assert len(result.records) == _count_prose_lines(text) == EXPECTED_COUNTS[number]
    assert result.skipped == []


@pytest.mark.parametrize("number", sorted(EXPECTED_COUNTS))
def test_records_are_clean(seeds_dir: Path, number: int) -> None:
    for record in _parse(seeds_dir, number).records:
        assert record.title and record.abstract
        assert record.title == " ".join(record.title.split())
        assert not record.title.startswith("Subscribe")
        assert not record.title.startswith("Get trending papers")
        assert len(record.abstract) > len(record.title)
        assert not re.fullmatch(r"•\s*\d+ authors?|·|[A-Z][a-z]{2} \d{1,2}.*", record.abstract)
        assert record.source == "hf-page"


@pytest.mark.parametrize(("number", "title", "abstract_start"), PAIRS)
def test_titles_are_paired_with_their_abstracts(
    seeds_dir: Path, number: int, title: str, abstract_start: str
) -> None:
    by_title = {record.title: record for record in _parse(seeds_dir, number).records}
    assert by_title[title].abstract.startswith(abstract_start)


@pytest.mark.parametrize("number", sorted(EXPECTED_COUNTS))
def test_first_and_last_pairs_sit_at_the_ends(seeds_dir: Path, number: int) -> None:
    records = _parse(seeds_dir, number).records
    titles = [title for file, title, _ in PAIRS if file == number]
    assert records[0].title == titles[0]
    assert records[-1].title == titles[-1]


def test_glued_subscribe_is_stripped_only_in_the_header(seeds_dir: Path) -> None:
    records = _parse(seeds_dir, 2).records
    assert records[0].title.startswith("MedVisionLlama: Leveraging")
    long_title = max(records, key=lambda record: len(record.title))
    assert len(long_title.title) == 213
    assert long_title.title.startswith('Can "consciousness" be observed')


def test_listing_days(seeds_dir: Path) -> None:
    assert _parse(seeds_dir, 2).listing_day is None  # that layout shows no date
    # File 4 shows years up to 2024, so its yearless dates are in 2025.
    page4 = _parse(seeds_dir, 4)
    assert page4.listing_day == date(2025, 10, 31)
    assert {record.listing_day for record in page4.records} == {date(2025, 10, 31)}
    # Files 0, 1, 3 show no year at all: today's year, never a day in the future.
    today = date.today()
    for number, (month, day) in {0: (3, 11), 1: (3, 12), 3: (3, 11)}.items():
        listing = _parse(seeds_dir, number).listing_day
        assert listing is not None and (listing.month, listing.day) == (month, day)
        assert listing <= today and listing.year >= today.year - 1
    assert _parse(seeds_dir, 0, year=2024).listing_day == date(2024, 3, 11)


def test_metadata_counts_in_file_4(seeds_dir: Path) -> None:
    text = _read(seeds_dir, 4)
    lines = [line.strip() for line in text.splitlines()]
    separators = [i for i, line in enumerate(lines) if line == "·"]
    author_lines = [line for line in lines if re.fullmatch(r"• \d+ authors", line)]
    upvote_lines = [
        line for line in lines if re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}(?:, \d{4})? \d+", line)
    ]
    records = _parse(seeds_dir, 4).records
    assert sum(r.published is not None for r in records) == len(separators) == 63
    assert sum(r.author_count is not None for r in records) == len(author_lines) == 61
    assert sum(r.organisation is not None for r in records) == 63 - 61 == 2
    assert sum(r.upvotes is not None for r in records) == len(upvote_lines) == 17
    assert sum(r.upvotes or 0 for r in records) == sum(int(x.split()[-1]) for x in upvote_lines)
    assert sum(r.published is None for r in records) == 71 - 63


def test_metadata_examples_in_file_4(seeds_dir: Path) -> None:
    by_title = {record.title[:30]: record for record in _parse(seeds_dir, 4).records}
    sailer = by_title["SAILER: Structure-aware Pre-tr"]
    assert (sailer.author_count, sailer.published, sailer.upvotes) == (8, date(2023, 4, 22), None)
    encoder = by_title["Return of the Encoder: Maximiz"]
    assert (encoder.author_count, encoder.published, encoder.upvotes) == (3, date(2025, 1, 27), 2)
    kyutai = by_title["ARC-Encoder: learning compress"]
    assert kyutai.organisation == "Kyutai" and kyutai.author_count is None
    assert (kyutai.published, kyutai.upvotes) == (date(2025, 10, 23), 1)
    furiosa = by_title["ParallelBench: Understanding t"]
    assert (furiosa.organisation, furiosa.published, furiosa.upvotes) == (
        "FuriosaAI",
        date(2025, 10, 6),
        2,
    )
    single = by_title["Attention is All You Need? Goo"]
    assert (single.author_count, single.published) == (1, date(2021, 10, 7))
    bare = by_title["Decoder-Hybrid-Decoder Archite"]
    assert (bare.author_count, bare.organisation, bare.published, bare.upvotes) == (None,) * 4


def test_year_argument_overrides_inference(seeds_dir: Path) -> None:
    result = _parse(seeds_dir, 4, year=2030)
    assert result.listing_day == date(2030, 10, 31)
    by_title = {record.title[:30]: record for record in result.records}
    assert by_title["Return of the Encoder: Maximiz"].published == date(2030, 1, 27)
    assert by_title["SAILER: Structure-aware Pre-tr"].published == date(2023, 4, 22)


def test_repeated_titles_share_one_paper_id(seeds_dir: Path) -> None:
    records = [r for number in EXPECTED_COUNTS for r in _parse(seeds_dir, number).records]
    ids_by_title: dict[str, set[str]] = {}
    for record in records:
        ids_by_title.setdefault(normalize_title(record.title), set()).add(record.paper_id)
    assert all(len(ids) == 1 for ids in ids_by_title.values())
    white_box = "White-Box Transformers via Sparse Rate Reduction: Compression Is All There Is?"
    assert len({r.paper_id for r in records if r.title == white_box}) == 1
    assert sum(r.title == white_box for r in records) == 3
    # 666 listings, 619 distinct papers: a person's count of distinct casefolded titles.
    distinct_titles = {" ".join(r.title.casefold().split()) for r in records}
    assert len(records) == 666
    assert len({r.paper_id for r in records}) == len(distinct_titles) == 619


def _small_page(*entries: str, header: str = "Mar 11") -> str:
    return "\n\n".join(["new", "Subscribe", "byAK and the research community", header, *entries])


ABSTRACT = (
    "We study how small models learn. Our method uses a simple trick that works well in practice. "
    "Experiments on three benchmarks show gains of up to 5 points over strong baselines, and the "
    "code is released. We also analyse failure cases and discuss limitations of the approach."
)


def test_yearless_date_after_the_listing_day_is_last_year() -> None:
    text = _small_page(
        "Paper A",
        ABSTRACT,
        "  • 3 authors\n·\nSep 20 4",
        "Paper B",
        ABSTRACT,
        "  • 2 authors\n·\nApr 22, 2023",
    )
    result = parse_daily_papers_page(text)
    assert result.listing_day == date(2024, 3, 11)  # newest explicit year 2023, so 2024
    assert [r.published for r in result.records] == [date(2023, 9, 20), date(2023, 4, 22)]
    assert [r.upvotes for r in result.records] == [4, None]


def test_markup_characters_are_kept_literally() -> None:
    text = _small_page("Q&A <b>Bold</b> Models", ABSTRACT + " We show x < y & z > w.")
    (record,) = parse_daily_papers_page(text).records
    assert record.title == "Q&A <b>Bold</b> Models"
    assert record.abstract.endswith("We show x < y & z > w.")


def test_windows_line_endings(seeds_dir: Path) -> None:
    text = _read(seeds_dir, 0).replace("\n", "\r\n")
    assert len(parse_daily_papers_page(text).records) == 68


def test_truncated_file_keeps_the_complete_pairs(seeds_dir: Path) -> None:
    text = _read(seeds_dir, 0)
    full = parse_daily_papers_page(text).records
    tenth_abstract = text.index(full[9].abstract[:60])
    result = parse_daily_papers_page(text[: tenth_abstract + 100])
    assert [r.title for r in result.records] == [r.title for r in full[:9]]
    assert result.records[-1].abstract == full[8].abstract
    assert any(full[9].title[:40] in reason for reason in result.skipped)


def test_file_cut_after_a_title(seeds_dir: Path) -> None:
    text = _read(seeds_dir, 2)
    lines = text.splitlines()
    result = parse_daily_papers_page("\n".join(lines[:13]))  # header 2 lines, 5 pairs, 1 title
    assert len(result.records) == 5
    assert result.skipped == [f"line 13: title {lines[12]!r} has no abstract"]


@pytest.mark.parametrize("number", [0, 2])
def test_title_without_abstract_in_the_middle(seeds_dir: Path, number: int) -> None:
    text = _read(seeds_dir, number)
    full = parse_daily_papers_page(text).records
    lines = text.split("\n")
    victim = full[20]
    abstract_line = lines.index(victim.abstract)
    title_line = lines.index(victim.title) + 1
    damaged = "\n".join(lines[:abstract_line] + lines[abstract_line + 1 :])
    result = parse_daily_papers_page(damaged)
    assert [r.title for r in result.records] == [r.title for r in full if r is not victim]
    assert result.skipped == [f"line {title_line}: title {victim.title!r} has no abstract"]


def test_abstract_without_title_in_the_middle(seeds_dir: Path) -> None:
    text = _read(seeds_dir, 1)
    full = parse_daily_papers_page(text).records
    lines = text.split("\n")
    victim = full[30]
    damaged = "\n".join(line for line in lines if line != victim.title)
    result = parse_daily_papers_page(damaged)
    assert [r.title for r in result.records] == [r.title for r in full if r is not victim]
    assert len(result.skipped) == 1 and "has no title" in result.skipped[0]


def test_stray_metadata_is_reported_not_taken_for_a_title() -> None:
    text = _small_page("·", "Paper A", ABSTRACT)
    result = parse_daily_papers_page(text)
    assert [r.title for r in result.records] == ["Paper A"]
    assert result.skipped and "metadata" in result.skipped[0]


@pytest.mark.parametrize("text", ["", "   \n\n\t  \n"])
def test_empty_input_is_an_error(text: str) -> None:
    with pytest.raises(SourceError, match="empty"):
        parse_daily_papers_page(text)


def test_html_is_an_error() -> None:
    html = "<!DOCTYPE html>\n<html><head><title>Daily Papers</title></head><body></body></html>"
    with pytest.raises(SourceError, match="HTML"):
        parse_daily_papers_page(html)


def test_json_is_an_error() -> None:
    payload = (DATA / "hf_daily_papers.json").read_text(encoding="utf-8")
    with pytest.raises(SourceError, match="JSON"):
        parse_daily_papers_page(payload)


def test_text_without_any_paper_is_an_error() -> None:
    with pytest.raises(SourceError, match="not a saved daily-papers page"):
        parse_daily_papers_page("hello world\nthis is a shopping list\n")


def test_header_only_page_is_an_empty_listing() -> None:
    result = parse_daily_papers_page(_small_page(header="Mar 11"))
    assert result.records == [] and result.listing_day is not None
