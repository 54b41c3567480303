"""Paper sources: one module per feed format, each a pure parser plus a thin fetcher."""

from papermail.sources.detect import read_path
from papermail.sources.records import PaperRecord, ParseResult, normalize_arxiv_id, paper_id

__all__ = ["PaperRecord", "ParseResult", "normalize_arxiv_id", "paper_id", "read_path"]
