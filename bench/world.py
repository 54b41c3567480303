"""A synthetic but realistic day: the sample pages' papers (topped up with generated ones), the
metadata those pages lack, and subscribers whose keywords are phrases of real paper titles.

Deterministic for a seed, so two runs time the same work.
"""

from __future__ import annotations

import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import date, timedelta
from pathlib import Path

from papermail.ranking import Keyword, PaperText, Profile
from papermail.services.sections import EXTRA_PICKS as EXTRA
from papermail.sources.detect import read_path
from papermail.sources.records import PaperRecord

ISSUE_DATE = date(2026, 11, 23)
_WORD = re.compile(r"[A-Za-z0-9]+(?:-[A-Za-z0-9]+)*")
# Split once below: word lists read better as text than as a column of quoted words.
_STOP_WORDS = (
    "a an and are as at be by can do does for from how in into is it its of on or our the their "
    "to toward towards under using via vs we what when where which while who why with without "
    "your you all any more most not only than that these this through over new study case"
)
_FIRST_NAMES = (
    "Ada Anna Bo Carlos Chen Dmitri Elena Fatima Gao Hana Ivan Jun Karim Lea Li Marta Noor Olga "
    "Priya Rafael Sofia Tomás Wei Yuki Zoë Łukasz Søren Nguyễn Ayşe"
)
_LAST_NAMES = (
    "Smith Wang Zhang Kumar Müller García Rossi Kim Tanaka Novak Silva Ivanova Cohen Okafor "
    "Dubois Larsen Nakamura Li Chen Papadopoulos Kowalski Öztürk Hernández Jensen"
)
_STOP = frozenset(_STOP_WORDS.split())
_FIRST = _FIRST_NAMES.split()
_LAST = _LAST_NAMES.split()
_ORGS = (
    None,
    "Google DeepMind",
    "Meta AI",
    "Microsoft Research",
    "Tsinghua University",
    "Stanford University",
    "MIT",
    "NVIDIA",
    "Allen Institute for AI",
    "ETH Zürich",
    "Mila – Québec AI Institute",
    "Hugging Face",
)


@dataclass(frozen=True, slots=True)
class Subscriber:
    key: int
    email: str
    keywords: tuple[Keyword, ...]
    # Named interests (issue 13): the first is `keywords`; 1-5 of them, 3 on average.
    interests: tuple[tuple[Keyword, ...], ...] = ()


@dataclass(frozen=True)
class World:
    papers: list[PaperRecord]
    vocabulary: list[str]  # title phrases, most frequent first
    subscribers: list[Subscriber]
    source_files: list[Path]

    @property
    def texts(self) -> list[PaperText]:
        return [PaperText(p.title, p.abstract) for p in self.papers]

    def profiles(self, limit: int = 10) -> list[Profile]:
        return [Profile(key=s.key, keywords=s.keywords, limit=limit) for s in self.subscribers]

    def interest_profiles(self, limit: int = 10) -> list[Profile]:
        """One profile per named interest, keyed (subscriber, interest), as the digest service
        ranks them; a reader with several asks a few more per interest (services.sections)."""
        return [
            Profile(
                key=(s.key, i), keywords=kw, limit=limit + (EXTRA if len(s.interests) > 1 else 0)
            )
            for s in self.subscribers
            for i, kw in enumerate(s.interests or (s.keywords,))
        ]


def sample_files(samples_dir: Path) -> list[Path]:
    files = sorted(p for p in samples_dir.iterdir() if p.is_file() and p.suffix == ".txt")
    if not files:
        raise SystemExit(f"no sample pages (*.txt) in {samples_dir}")
    return files


def title_phrases(titles: Sequence[str], *, min_titles: int = 2) -> list[str]:
    """Phrases found in at least `min_titles` titles, most common first: 2-3 word runs of content
    words ("linear attention", "medical image segmentation") and acronyms ("MoE", "RLHF"), the
    interests people actually type; lone common words ("model", "large") are left out."""
    seen: Counter[str] = Counter()
    for title in titles:
        found = _WORD.findall(title)
        words = [w.lower() for w in found]
        grams = {w for w in found if sum(c.isupper() for c in w) >= 2 and len(w) <= 8}
        for n in (2, 3):
            for i in range(len(words) - n + 1):
                gram = words[i : i + n]
                if gram[0] not in _STOP and gram[-1] not in _STOP:
                    grams.add(" ".join(gram))
        seen.update(grams)
    return [p for p, c in sorted(seen.items(), key=lambda kv: (-kv[1], kv[0])) if c >= min_titles]


def _generated_paper(rng: random.Random, pool: Sequence[PaperRecord], n: int) -> PaperRecord:
    """A new paper stitched from real titles' halves and real abstracts' sentences."""
    a, b = rng.sample(list(pool), 2)
    head = a.title.split(":")[0]
    tail = b.title.split(":")[-1].strip()
    sentences = [s for p in rng.sample(list(pool), 3) for s in p.abstract.split(". ") if s]
    abstract = ". ".join(rng.sample(sentences, min(6, len(sentences))))
    return PaperRecord(
        title=f"{head}: {tail}", abstract=abstract, source="bench", given_id=f"bench-{n}"
    )


def _with_metadata(rng: random.Random, record: PaperRecord, n: int) -> PaperRecord:
    """What the sample pages lack and a digest shows: authors, organisation, link, upvotes."""
    count = rng.choice((1, 2, 3, 4, 5, 6, 8, 12, 25))
    authors = tuple(f"{rng.choice(_FIRST)} {rng.choice(_LAST)}" for _ in range(min(count, 6)))
    return replace(
        record,
        authors=authors,
        author_count=count,
        organisation=rng.choice(_ORGS),
        published=ISSUE_DATE - timedelta(days=rng.randint(0, 6)),
        upvotes=rng.choice((None, 0, 1, 3, 7, 12, 40, 120)),
        url=f"https://arxiv.org/abs/2611.{10000 + n:05d}",
        **_details(record, n),
    )


def _details(record: PaperRecord, n: int) -> dict:
    """What HF and arXiv add (links, code, summary), drawn from `n` alone so that the random
    stream, and with it every subscriber of the world, stays as it was."""
    arxiv_id = f"2611.{10000 + n:05d}"
    sentence = record.abstract.split(". ")[0].rstrip(".") + "."
    return {
        "arxiv_id": arxiv_id,
        "pdf_url": f"https://arxiv.org/pdf/{arxiv_id}",
        "hf_url": f"https://huggingface.co/papers/{arxiv_id}" if n % 2 == 0 else None,
        "comments_count": n % 5 if n % 2 == 0 else None,
        "code_url": f"https://github.com/lab-{n % 37}/paper-{n}" if n % 3 == 0 else None,
        "code_stars": (n * 37) % 2500 if n % 3 == 0 else None,
        "project_url": f"https://lab-{n % 37}.github.io/paper-{n}/" if n % 7 == 0 else None,
        "ai_summary": sentence if n % 2 == 0 else None,
        "primary_category": ("cs.LG", "cs.CL", "cs.CV")[n % 3],
        "comments": "Accepted at ICLR 2025" if n % 11 == 0 else None,
    }


def build_world(samples_dir: Path, *, papers: int, subscribers: int, seed: int = 20261123) -> World:
    rng = random.Random(seed)
    files = sample_files(samples_dir)
    unique: dict[str, PaperRecord] = {}
    for path in files:
        for record in read_path(path).records:
            unique.setdefault(record.paper_id, record)
    pool = list(unique.values())
    chosen = pool[:papers]
    while len(chosen) < papers:
        chosen.append(_generated_paper(rng, pool, len(chosen)))
    chosen = [_with_metadata(rng, record, n) for n, record in enumerate(chosen)]
    vocabulary = title_phrases([p.title for p in chosen])
    # Popular topics are popular: draw phrases by how many titles carry them.
    weights = [1.0 / (rank + 10) for rank in range(len(vocabulary))]
    people = []
    for key in range(subscribers):
        phrases = set(rng.choices(vocabulary, weights, k=rng.randint(1, 4)))
        keywords = [Keyword(phrase) for phrase in sorted(phrases)]
        if rng.random() < 0.05:  # a few exclude a topic
            keywords.append(Keyword(rng.choice(vocabulary[:50]), negative=True))
        people.append(Subscriber(key, f"reader{key}@example.org", tuple(keywords)))
    # Named interests from a stream of their own: the keywords above stay as they were.
    more = random.Random(seed ^ 0x13)
    for n, person in enumerate(people):
        extra = [
            tuple(
                Keyword(p)
                for p in sorted(set(more.choices(vocabulary, weights, k=more.randint(1, 4))))
            )
            for _ in range(more.choice((1, 2, 3, 4, 5)) - 1)
        ]
        people[n] = replace(person, interests=(person.keywords, *extra))
    return World(chosen, vocabulary, people, files)
