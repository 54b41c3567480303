"""The stages of a day's digests, each timed on the synthetic world, fast path and naive path.

Per-item costs are medians: of whole repeated runs for the small stages (ingest, fit, scoring a
quick world), of chunks of 500 digests for the per-digest stages (the first chunk also pays for
cold caches; the median sets it aside as a steady day would). CPU per SMTP message is measured
with ``time.thread_time`` in the sending thread, the server being another process.
"""

from __future__ import annotations

import gc
import resource
import statistics
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from bench import mime_variants
from bench.cli_startup import stage_cli_startup
from bench.smtp_sink import Sink
from bench.world import ISSUE_DATE, World, build_world
from papermail import ranking
from papermail.db import create_tables, make_engine
from papermail.emails import (
    DigestEntry,
    DigestLinks,
    RenderedEmail,
    build_message,
    build_message_stdlib,
    digest_context,
    get_renderer,
    inline_css,
    inline_template,
    make_message_id,
)
from papermail.mailer import OutgoingMail, SMTPMailer
from papermail.models import Subscriber as SubscriberRow
from papermail.services.digests import digest_links
from papermail.services.ingest import ingest_paths
from papermail.settings import Settings
from papermail.sources.records import PaperRecord

CHUNK = 500  # digests per timing chunk
TOP_N = 10
SCORING = "ingest and ranking"
TOTALS = "per digest, all told"
SMTP = "SMTP to aiosmtpd (another process), one reused connection"


@dataclass(frozen=True)
class Options:
    subscribers: int
    papers: int = 500
    naive_digests: int = 300  # premailer + EmailMessage per digest
    naive_scoring: int = 20  # one rank() call per subscriber: ~0.2 s each
    smtp_messages: int = 3000
    per_connection: int = 200  # messages sent one connection each, for comparison
    variants: int = 200  # digests each MIME variant builds
    repeats: int = 3
    seed: int = 20261123


@dataclass
class Row:
    stage: str
    items: int
    seconds: float  # per item
    note: str = ""
    rss_mb: float = 0.0
    group: str = ""

    @property
    def per_second(self) -> float:
        return 1.0 / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class Results:
    options: Options
    rows: list[Row] = field(default_factory=list)
    facts: dict[str, float] = field(default_factory=dict)

    def add(self, stage: str, items: int, seconds: float, note: str, group: str) -> Row:
        row = Row(stage, items, seconds, note, peak_rss_mb(), group)
        self.rows.append(row)
        return row


def peak_rss_mb() -> float:
    """Peak resident set of this process so far (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def median_seconds(run: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def bench_settings(var_dir: Path) -> Settings:
    return Settings(
        _env_file=None,  # type: ignore[call-arg]
        var_dir=var_dir,
        database_url=f"sqlite:///{var_dir / 'bench.db'}",
        secret_key="bench-secret-key",
        base_url="https://papermail.example.org",
        mail_from="papermail <digest@papermail.example.org>",
        unsubscribe_mailto="unsubscribe@papermail.example.org",
    )


# --- ingest, fit, score ----------------------------------------------------------------------


def stage_ingest(results: Results, world: World, workdir: Path) -> None:
    """Parse the sample pages and upsert them into a fresh SQLite file, one transaction each."""
    times, parsed = [], 0
    for n in range(results.options.repeats):
        settings = bench_settings(workdir / f"ingest{n}")
        engine = make_engine(settings)
        create_tables(engine)
        start = time.perf_counter()
        reports = ingest_paths(engine, world.source_files)
        times.append(time.perf_counter() - start)
        engine.dispose()
        parsed = sum(report.parsed for report in reports)
    results.add(
        "ingest: parse + upsert (SQLite)",
        parsed,
        statistics.median(times) / parsed,
        f"{len(world.source_files)} pages, a transaction each",
        SCORING,
    )


def stage_fit(results: Results, world: World) -> ranking.RelevanceModel:
    texts = world.texts
    seconds = median_seconds(lambda: ranking.RelevanceModel.fit(texts), results.options.repeats)
    results.add("TF-IDF fit", len(texts), seconds / len(texts), "RelevanceModel.fit", SCORING)
    return ranking.RelevanceModel.fit(texts)


def stage_score(
    results: Results, world: World, model: ranking.RelevanceModel, settings: Settings
) -> dict:
    """All subscribers in one ranking.rank call (it chunks internally), then the naive way."""
    texts, profiles = world.texts, world.profiles(TOP_N)
    times, matches = _timed_ranks(model, texts, profiles, settings, results.options.repeats)
    total = statistics.median(times)
    results.facts["score_seconds"] = total
    found = [len(m) for m in matches.values()]
    verdict = "met" if total * 100_000 / len(profiles) <= 2 else "NOT met"
    results.add(
        f"scoring + top-{TOP_N}, batched",
        len(profiles),
        total / len(profiles),
        f"{total:.2f} s for {len(profiles):,} x {len(texts)} (≤ 2 s per 100k: {verdict}); "
        f"{statistics.mean(found):.1f} matches each; {_runs(times)}",
        SCORING,
    )
    stage_score_interests(results, world, model, settings)
    sample = profiles[: results.options.naive_scoring]
    if sample:
        start = time.perf_counter()
        for profile in sample:
            ranking.rank(model, texts, [profile], min_score=settings.min_score)
        per = (time.perf_counter() - start) / len(sample)
        results.add(
            "scoring, naive: one rank() per subscriber",
            len(sample),
            per,
            f"{per * len(profiles) / 3600:.1f} h for all",
            SCORING,
        )
    return matches


def stage_score_interests(
    results: Results, world: World, model: ranking.RelevanceModel, settings: Settings
) -> None:
    """The same subscribers with named interests (issue 13): 1-5 each, 3 on average, one
    profile per interest, as `services.digests` ranks them."""
    texts, profiles = world.texts, world.interest_profiles(TOP_N)
    times, _ = _timed_ranks(model, texts, profiles, settings, results.options.repeats)
    total = statistics.median(times)
    people = len(world.subscribers)
    per_100k = total * 100_000 / people
    verdict = "met" if per_100k <= 2 else "NOT met"
    results.facts["score_interests_seconds"] = total
    results.add(
        f"scoring + top-{TOP_N}, named interests",
        len(profiles),
        total / len(profiles),
        f"{total:.2f} s for {people:,} subscribers with {len(profiles) / people:.1f} interests "
        f"each x {len(texts)} ({per_100k:.2f} s per 100k subscribers, ≤ 2 s: {verdict}); "
        f"{_runs(times)}",
        SCORING,
    )


def _timed_ranks(
    model: ranking.RelevanceModel,
    texts: Sequence[ranking.PaperText],
    profiles: Sequence[ranking.Profile],
    settings: Settings,
    repeats: int,
) -> tuple[list[float], dict]:
    """Wall seconds of `repeats` whole rank() calls (the median is quoted, the first shown:
    a worker scores many batches a day, but the first of a process pays for fresh memory)."""
    times, matches = [], {}
    for _ in range(repeats):
        matches = {}
        gc.collect()  # the previous run's matches are garbage: do not time their collection
        start = time.perf_counter()
        matches = ranking.rank(model, texts, profiles, min_score=settings.min_score)
        times.append(time.perf_counter() - start)
    return times, matches


def _runs(times: Sequence[float]) -> str:
    return f"median of {len(times)} runs, first {times[0]:.2f} s"


# --- digests: context, render, inline, MIME --------------------------------------------------


def entry_for(paper: PaperRecord, match: ranking.Match) -> DigestEntry:
    """`services.digests.entry_for` on a record instead of a row: the same fields."""
    return DigestEntry(
        title=paper.title,
        url=paper.url,
        authors=paper.authors,
        author_count=paper.author_count,
        organisation=paper.organisation,
        published=paper.published,
        upvotes=paper.upvotes,
        abstract=paper.abstract,
        matched=match.matched,
        where=match.where,
        score=match.score,
        arxiv_id=paper.arxiv_id,
        pdf_url=paper.pdf_url,
        hf_url=paper.hf_url,
        code_url=paper.code_url,
        code_stars=paper.code_stars,
        project_url=paper.project_url,
        thumbnail_url=paper.thumbnail_url,
        comments_count=paper.comments_count,
        ai_summary=paper.ai_summary,
        ai_keywords=paper.ai_keywords,
        affiliations=paper.affiliations,
        primary_category=paper.primary_category,
        comments=paper.comments,
        journal_ref=paper.journal_ref,
    )


def links_for(settings: Settings, row: SubscriberRow, digest_id: int) -> DigestLinks:
    """A digest's signed links (view, manage, unsubscribe, feedback), made as mailed ones are.
    `row` is built before the clock starts: the send path has it loaded from the database."""
    return digest_links(settings, row, digest_id)


@dataclass
class Digest:
    email: str
    entries: list[DigestEntry]
    links: DigestLinks
    scanned: int


def mime_kwargs(settings: Settings, email: str, links: DigestLinks) -> dict:
    return {
        "sender": settings.mail_from,
        "recipient": email,
        "message_id": make_message_id("papermail.example.org"),
        "unsubscribe_url": links.unsubscribe,
        "unsubscribe_mailto": settings.unsubscribe_mailto,
        "date": datetime(2026, 11, 23, 7, 0, tzinfo=UTC),
    }


def stage_digests(
    results: Results, world: World, matches: dict, settings: Settings
) -> list[OutgoingMail]:
    """Every digest of the day through context -> render -> MIME, streamed (nothing is kept but
    the first messages, which the SMTP stage sends)."""
    renderer = get_renderer(settings)
    env = renderer.environment
    inline_once = median_seconds(
        lambda: inline_template(env, "email/digest.html.j2"), results.options.repeats
    )
    renderer.html_template("digest")  # compiled once per process
    keep = results.options.smtp_messages
    kept: list[OutgoingMail] = []
    chunks: list[tuple[float, float, float, float, float]] = []
    acc = [0.0, 0.0, 0.0, 0.0, 0]
    papers, digests, entries_total = world.papers, 0, 0
    wall = time.perf_counter()
    for subscriber in world.subscribers:
        picked = matches.get(subscriber.key)
        if not picked:
            continue
        row = SubscriberRow(id=subscriber.key, email=subscriber.email)
        t0 = time.perf_counter()
        entries = [entry_for(papers[m.index], m) for m in picked]
        t1 = time.perf_counter()
        links = links_for(settings, row, digests + 1)
        context = digest_context(
            email=subscriber.email,
            issue_date=ISSUE_DATE,
            entries=entries,
            scanned=len(papers),
            links=links,
            compact_after=settings.compact_after,
            show_thumbnails=settings.show_thumbnails,
        )
        t2 = time.perf_counter()
        rendered = renderer.render("digest", context)
        t3 = time.perf_counter()
        kwargs = mime_kwargs(settings, subscriber.email, links)
        data = build_message(rendered, **kwargs)
        t4 = time.perf_counter()
        acc[0] += t1 - t0
        acc[1] += t2 - t1
        acc[2] += t3 - t2
        acc[3] += t4 - t3
        acc[4] += 1
        digests += 1
        entries_total += len(entries)
        if len(kept) < keep:
            kept.append(OutgoingMail(settings.mail_from, subscriber.email, "", data))
        if acc[4] == CHUNK:
            chunks.append(tuple(a / CHUNK for a in acc[:4]))  # type: ignore[arg-type]
            acc = [0.0, 0.0, 0.0, 0.0, 0]
    wall = time.perf_counter() - wall
    if acc[4] and not chunks:
        chunks.append(tuple(a / acc[4] for a in acc[:4]))  # type: ignore[arg-type]
    if not chunks:
        raise SystemExit("no subscriber matched any paper: nothing to render")
    entries_s, links_s, render_s, mime_s = (
        statistics.median(c[i] for c in chunks) for i in range(4)
    )
    results.facts.update(digests=digests, digests_wall=wall, inline_once=inline_once)
    group = "one digest, fast path"
    results.add(
        "context: DigestEntry objects",
        digests,
        entries_s,
        f"{entries_total / max(digests, 1):.1f} papers/digest",
        group,
    )
    results.add("context: 4 signed links (itsdangerous)", digests, links_s, "", group)
    results.add("render: Jinja subject + HTML + text", digests, render_s, "", group)
    results.add(
        "inline CSS: once per template (premailer)",
        1,
        inline_once,
        f"{inline_once / max(digests, 1) * 1e6:.2f} µs/digest amortized",
        group,
    )
    results.add("MIME: build_message (skeleton + QP)", digests, mime_s, "", group)
    fast = render_s + mime_s + inline_once / max(digests, 1)
    results.facts["fast_render_inline_mime"] = fast
    results.add(
        "render + inline + MIME, fast",
        digests,
        fast,
        f"target ≥ 1,500/s on one core ({'met' if 1 / fast >= 1500 else 'NOT met'})",
        TOTALS,
    )
    results.add(
        "whole digest, fast (context + render + MIME)",
        digests,
        wall / max(digests, 1),
        f"{wall:.1f} s wall for {digests:,} digests, one core",
        TOTALS,
    )
    return kept


def naive_digest(settings: Settings, digest: Digest) -> tuple[float, float, float]:
    """premailer on every email and EmailMessage: (render, inline, MIME) seconds."""
    env = get_renderer(settings).environment
    context = digest_context(
        email=digest.email,
        issue_date=ISSUE_DATE,
        entries=digest.entries,
        scanned=digest.scanned,
        links=digest.links,
        compact_after=settings.compact_after,
        show_thumbnails=settings.show_thumbnails,
    )
    t0 = time.perf_counter()
    subject = env.get_template("email/digest.subject.j2").render(context)
    html = env.get_template("email/digest.html.j2").render(context)
    text = env.get_template("email/digest.txt.j2").render(context)
    t1 = time.perf_counter()
    inlined = inline_css(html)
    t2 = time.perf_counter()
    rendered = RenderedEmail(" ".join(subject.split()), inlined, text)
    build_message_stdlib(rendered, **mime_kwargs(settings, digest.email, digest.links))
    t3 = time.perf_counter()
    return t1 - t0, t2 - t1, t3 - t2


def sample_digests(world: World, matches: dict, settings: Settings, count: int) -> list[Digest]:
    out = []
    for subscriber in world.subscribers:
        if len(out) >= count:
            break
        picked = matches.get(subscriber.key)
        if picked:
            entries = [entry_for(world.papers[m.index], m) for m in picked]
            row = SubscriberRow(id=subscriber.key, email=subscriber.email)
            links = links_for(settings, row, len(out) + 1)
            out.append(Digest(subscriber.email, entries, links, len(world.papers)))
    return out


def stage_naive(results: Results, world: World, matches: dict, settings: Settings) -> None:
    """The naive path and the fast one on the same digests, in the same run: the speed-up."""
    sample = sample_digests(world, matches, settings, results.options.naive_digests)
    if not sample:
        return
    timings = [naive_digest(settings, digest) for digest in sample]
    render_s, inline_s, mime_s = (statistics.median(t[i] for t in timings) for i in range(3))
    group = "one digest, naive path"
    results.add("render: Jinja, template not inlined", len(sample), render_s, "", group)
    results.add("inline CSS: premailer per email", len(sample), inline_s, "", group)
    results.add("MIME: EmailMessage (policy.SMTP)", len(sample), mime_s, "", group)
    naive = render_s + inline_s + mime_s
    renderer = get_renderer(settings)
    fast_times = []
    for digest in sample:
        context = digest_context(
            email=digest.email,
            issue_date=ISSUE_DATE,
            entries=digest.entries,
            scanned=digest.scanned,
            links=digest.links,
            compact_after=settings.compact_after,
            show_thumbnails=settings.show_thumbnails,
        )
        start = time.perf_counter()
        rendered = renderer.render("digest", context)
        build_message(rendered, **mime_kwargs(settings, digest.email, digest.links))
        fast_times.append(time.perf_counter() - start)
    fast_same = statistics.median(fast_times) + results.facts["inline_once"] / max(
        results.facts.get("digests", 1), 1
    )
    results.facts.update(naive=naive, fast_same_sample=fast_same, speedup=naive / fast_same)
    results.add(
        "render + inline + MIME, naive",
        len(sample),
        naive,
        f"fast on these same digests: {fast_same * 1e3:.3f} ms → {naive / fast_same:.0f}x",
        TOTALS,
    )


def stage_mime_variants(results: Results, world: World, matches: dict, settings: Settings) -> None:
    renderer = get_renderer(settings)
    sample = sample_digests(world, matches, settings, results.options.variants)
    if not sample:
        return
    prepared = []
    for digest in sample:
        context = digest_context(
            email=digest.email,
            issue_date=ISSUE_DATE,
            entries=digest.entries,
            scanned=digest.scanned,
            links=digest.links,
            compact_after=settings.compact_after,
            show_thumbnails=settings.show_thumbnails,
        )
        prepared.append(
            (renderer.render("digest", context), mime_kwargs(settings, digest.email, digest.links))
        )
    for name, (builder, note) in mime_variants.VARIANTS.items():
        rendered, kwargs = prepared[0]
        mime_variants.check(builder, rendered, **kwargs)
        count = len(prepared) if "EmailMessage" not in name and "mime" not in name else 50
        runs = []
        for _ in range(results.options.repeats):
            start = time.perf_counter()
            for rendered, kwargs in prepared[:count]:
                builder(rendered, **kwargs)
            runs.append((time.perf_counter() - start) / min(count, len(prepared)))
        size = len(builder(*prepared[0][:1], **prepared[0][1])) / 1024
        results.add(
            f"MIME: {name}",
            min(count, len(prepared)),
            statistics.median(runs),
            f"{size:.1f} KiB" + (f"; {note}" if note else ""),
            "MIME variants (same digests)",
        )


# --- SMTP ------------------------------------------------------------------------------------


def _send_all(mailer: SMTPMailer, mails: Sequence[OutgoingMail]) -> tuple[float, float]:
    """(client CPU seconds in this thread, wall seconds) for sending over one connection."""
    with mailer.connection() as connection:
        connection.send(mails[0])  # connect, EHLO: not part of the per-message cost
        cpu, wall = time.thread_time(), time.perf_counter()
        for mail in mails[1:]:
            connection.send(mail)
        return time.thread_time() - cpu, time.perf_counter() - wall


def stage_smtp(results: Results, mails: list[OutgoingMail], settings: Settings) -> None:
    if len(mails) < 2:
        return
    with Sink() as sink:
        smtp = settings.model_copy(
            update={"mail_backend": "smtp", "smtp_host": "127.0.0.1", "smtp_port": sink.port}
        )
        before = sink.stats()
        cpu, wall = _send_all(SMTPMailer(smtp), mails)
        after = sink.stats()
        sent = len(mails) - 1
        received = int(after["messages"] - before["messages"])
        if received != len(mails):
            raise RuntimeError(f"the SMTP sink received {received} of {len(mails)} messages")
        server = (after["cpu"] - before["cpu"]) / received
        size = (after["bytes"] - before["bytes"]) / received / 1024
        group = SMTP
        results.facts.update(smtp_cpu=cpu / sent, smtp_wall=wall / sent)
        results.add(
            "SMTP: client CPU per message",
            sent,
            cpu / sent,
            f"target ≤ 1 ms ({'met' if cpu / sent <= 1e-3 else 'NOT met'}); {size:.1f} KiB each",
            group,
        )
        results.add("SMTP: wall throughput", sent, wall / sent, "bound by the server", group)
        results.add("SMTP: aiosmtpd server CPU per message", received, server, "", group)
        few = mails[: results.options.per_connection]
        if len(few) > 1:
            mailer = SMTPMailer(smtp)
            cpu0, wall0 = time.thread_time(), time.perf_counter()
            for mail in few:
                with mailer.connection() as connection:
                    connection.send(mail)
            cpu1, wall1 = time.thread_time() - cpu0, time.perf_counter() - wall0
            results.add(
                "SMTP: a new connection per message",
                len(few),
                wall1 / len(few),
                f"client CPU {cpu1 / len(few) * 1e3:.2f} ms/message",
                group,
            )


# --- the whole run -----------------------------------------------------------------------------


def run(options: Options, *, progress: Callable[[str], None] = lambda _: None) -> Results:
    results = Results(options)
    with tempfile.TemporaryDirectory(prefix="papermail-bench-") as tmp:
        workdir = Path(tmp)
        settings = bench_settings(workdir)
        progress("building the world")
        start = time.perf_counter()
        world = build_world(
            settings.samples_dir,
            papers=options.papers,
            subscribers=options.subscribers,
            seed=options.seed,
        )
        results.facts.update(world_seconds=time.perf_counter() - start)
        results.facts.update(vocabulary=len(world.vocabulary))
        progress("ingest")
        stage_ingest(results, world, workdir)
        progress("TF-IDF fit")
        model = stage_fit(results, world)
        progress("scoring")
        matches = stage_score(results, world, model, settings)
        progress("digests: context, render, MIME")
        mails = stage_digests(results, world, matches, settings)
        progress("naive path")
        stage_naive(results, world, matches, settings)
        progress("MIME variants")
        stage_mime_variants(results, world, matches, settings)
        progress("SMTP")
        stage_smtp(results, mails, settings)
        progress("papermail --help")
        stage_cli_startup(results)
        results.facts["peak_rss_mb"] = peak_rss_mb()
    return results
