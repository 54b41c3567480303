"""Pure: author names as arXiv and HF spell them (issue 13.3), seed papers as readers give them
(issue 13.2). No database."""

from __future__ import annotations

import pytest

from papermail.authors import AuthorIndex, normalize_name, same_author
from papermail.seeds import Seed, parse_seed, parse_seed_file, unique


@pytest.mark.parametrize(
    ("followed", "author", "same"),
    [
        ("John Smith", "John Smith", True),
        ("J. Smith", "John Smith", True),  # initials
        ("John Smith", "J Smith", True),
        ("Smith, John", "John Smith", True),  # "Last, First"
        ("Smith, J.", "John Smith", True),
        ("José García", "Jose Garcia", True),  # accents
        ("Jose Garcia", "José García", True),
        ("Łukasz Kaiser", "Lukasz Kaiser", True),
        ("Jean-Paul Sartre", "J.-P. Sartre", True),
        ("John A. Smith", "John Smith", True),  # a missing middle name
        ("Yann LeCun", "Yann Lecun", True),  # case
        ("Martin Luther King, Jr.", "Martin L. King", True),  # suffix
        ("Jane Smith", "John Smith", False),
        ("John Smith", "John Smyth", False),
        ("J. Smith", "K. Smith", False),
        ("Smith", "John Smith", False),  # a surname alone is too vague
        ("", "John Smith", False),
    ],
)
def test_same_author(followed, author, same):
    assert same_author(followed, author) is same
    if followed and author:
        assert same_author(author, followed) is same  # symmetric


def test_normalized_names_and_the_index():
    assert normalize_name("García, José A.") == "jose a garcia"
    assert normalize_name("  José   A.  García ") == "jose a garcia"
    index = AuthorIndex([["John Smith", "Ada Lovelace"], ["Jane Smith"], [], ["Smith, J."]])
    assert index.papers_by("J. Smith") == {0: "John Smith", 1: "Jane Smith", 3: "Smith, J."}
    assert index.papers_by("John Smith") == {0: "John Smith", 3: "Smith, J."}
    assert index.papers_by("Nobody Here") == {}


@pytest.mark.parametrize(
    ("given", "arxiv_id"),
    [
        ("2401.01234", "2401.01234"),
        ("2401.01234v3", "2401.01234"),
        ("arXiv:2401.01234", "2401.01234"),
        ("https://arxiv.org/abs/2401.01234v2", "2401.01234"),
        ("http://arxiv.org/abs/2401.01234", "2401.01234"),
        ("https://arxiv.org/pdf/2401.01234v2.pdf", "2401.01234"),
        ("https://arxiv.org/pdf/2401.01234", "2401.01234"),
        ("https://huggingface.co/papers/2401.01234", "2401.01234"),
        ("hep-th/9901001v1", "hep-th/9901001"),
        ("https://arxiv.org/abs/math.GT/0309136", "math.GT/0309136"),
    ],
)
def test_arxiv_ids_and_urls(given, arxiv_id):
    assert parse_seed(given) == Seed(given=arxiv_id, arxiv_id=arxiv_id)


def test_titles_stay_titles():
    seed = parse_seed("  Attention   Is All You Need ")
    assert seed == Seed(given="Attention Is All You Need", title="Attention Is All You Need")
    assert seed.title_key == "attention is all you need"
    assert parse_seed("   ") is None


BIBTEX = r"""
@article{vaswani2017,
  title={Attention is {All} you Need},
  author={Vaswani, Ashish and Shazeer, Noam},
  journal={arXiv preprint arXiv:1706.03762},
  year={2017}
}
@misc{gu2023mamba,
  title = {Mamba: Linear-Time Sequence Modeling with Selective State Spaces},
  eprint = {2312.00752v2},
  archivePrefix = {arXiv},
}
@inproceedings{zotero, title = {A Title {Without} an Id},
  booktitle = {NeurIPS}, doi = {10.48550/arXiv.2106.09685}}
@book{plain, title = {Just a Book}}
"""

RIS = """TY  - JOUR
TI  - Mamba: Linear-Time Sequence Modeling
UR  - http://arxiv.org/abs/2312.00752v2
ER  -

TY  - CONF
T1  - A title only
ER  -
"""


def test_bibtex_and_ris_exports():
    assert [(s.arxiv_id, s.title) for s in parse_seed_file(BIBTEX)] == [
        ("1706.03762", "Attention is All you Need"),
        ("2312.00752", "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"),
        ("2106.09685", "A Title Without an Id"),
        (None, "Just a Book"),
    ]
    assert [(s.arxiv_id, s.given) for s in parse_seed_file(RIS)] == [
        ("2312.00752", "2312.00752"),
        (None, "A title only"),
    ]
    both = unique([*parse_seed_file(BIBTEX), *parse_seed_file(RIS)])
    assert len(both) == 5  # Mamba once
