"""The `papermail` command: the verbs a person (or a compose service) runs."""

from __future__ import annotations

import importlib
import logging
import sys
from datetime import date, datetime
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from papermail import cli_admin, cli_doctor, cli_interests
from papermail.errors import PapermailError

# `papermail --help` imports only typer and rich: every heavy module (SQLAlchemy/SQLModel,
# scikit-learn, FastAPI, Celery, pydantic-settings) is imported inside the verb that needs it.
if TYPE_CHECKING:
    from sqlmodel import Session

    from papermail.services.subscriptions import Preferences
    from papermail.settings import Settings


class FrequencyChoice(StrEnum):
    """`papermail.models.Frequency`'s values, here so that --help need not import the models
    (tests check that the two agree)."""

    daily = "daily"
    weekly = "weekly"
    paused = "paused"


app = typer.Typer(
    help="papermail: a self-hosted, personalized research-paper newsletter.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
subscribers_app = typer.Typer(help="Add, list and remove subscribers.", no_args_is_help=True)
app.add_typer(subscribers_app, name="subscribers")
# Piped or redirected, tables keep every cell whole (addresses, paths): no terminal width.
console = Console() if sys.stdout.isatty() else Console(width=100_000, soft_wrap=True)


def _database(engine) -> str:
    """Which database a command used, password hidden: printed by status and list."""
    return engine.url.render_as_string(hide_password=True)


def demo_subscribers() -> list[tuple[str, Preferences]]:
    """The four sample subscribers of `papermail demo`."""
    from papermail.services import subscriptions

    return [
        (
            "ada@example.org",
            subscriptions.Preferences(
                keywords=("linear attention", "state space models"), excluded=("diffusion",)
            ),
        ),
        (
            "grace@example.org",
            subscriptions.Preferences(
                keywords=("mixture of experts", "MoE", "inference efficiency")
            ),
        ),
        (
            "alan@example.org",
            subscriptions.Preferences(
                keywords=("medical image segmentation", "segmentation"), max_papers=5
            ),
        ),
        (
            "katherine@example.org",
            subscriptions.Preferences(
                keywords=("sparse autoencoders", "interpretability", "circuits")
            ),
        ),
    ]


@app.callback()
def _options(
    verbose: Annotated[
        int, typer.Option("--verbose", "-v", count=True, help="-v warnings, -vv progress.")
    ] = 0,
) -> None:
    """Logs stay quiet unless asked for: results and errors are printed anyway."""
    level = {0: logging.CRITICAL + 1, 1: logging.WARNING}.get(verbose, logging.INFO)
    logging.getLogger().setLevel(level)


def _setup(settings: Settings | None = None):
    """Settings, a ready database, and Celery tasks pointed at the same settings."""
    from papermail.db import make_engine
    from papermail.migrate import ensure_migrated
    from papermail.settings import get_settings
    from workers import runtime
    from workers.app import celery_app, configure

    settings = settings or get_settings()
    engine = make_engine(settings)
    ensure_migrated(engine, auto=settings.environment != "production")
    engine.dispose()
    configure(celery_app, settings)
    return settings, runtime.engine()


def _parse_date(value: str | None) -> date:
    from papermail.models import utcnow

    if value is None:
        return utcnow().date()
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise PapermailError(f"not a date (YYYY-MM-DD): {value!r}") from exc


@app.command()
def ingest(
    sources: Annotated[
        list[str],
        typer.Argument(
            help="Files or folders (saved pages, HF JSON, arXiv Atom), `hf`, `arxiv:CATS`."
        ),
    ],
    day: Annotated[str | None, typer.Option(help="Listing day for `hf` (YYYY-MM-DD).")] = None,
) -> None:
    """Ingest papers; re-ingesting updates rows and never duplicates them."""
    from workers import tasks

    _setup()
    reports = tasks.ingest.apply(args=[sources, day]).get()
    table = Table(
        "source", "parsed", "new", "updated", "new version", "unchanged", "skipped", "error"
    )
    for r in reports:
        table.add_row(
            r["source"],
            str(r["parsed"]),
            str(r["inserted"]),
            str(r["updated"]),
            str(r["revised"]),
            str(r["unchanged"]),
            str(len(r["skipped"])),
            r["error"] or "",
        )
    console.print(table)
    failed = [r for r in reports if r["error"]]
    errors = Console(stderr=True, soft_wrap=True)
    for r in failed:
        errors.print(f"error: {r['error']}", markup=False, highlight=False)
    if failed:
        raise typer.Exit(1)


@subscribers_app.command("add")
def subscribers_add(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The address.")],
    keyword: Annotated[
        list[str] | None,
        typer.Option("--keyword", "-k", help="Interest (repeat); replaces the existing ones."),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option("--exclude", "-x", help="Excluded (repeat); replaces the existing ones."),
    ] = None,
    timezone: Annotated[
        str | None, typer.Option(help="IANA time zone, e.g. Europe/Berlin (new: UTC).")
    ] = None,
    hour: Annotated[int | None, typer.Option(help="Local hour to send at, 0-23 (new: 7).")] = None,
    frequency: Annotated[
        FrequencyChoice | None, typer.Option(help="daily, weekly or paused (new: daily).")
    ] = None,
    weekday: Annotated[
        int | None, typer.Option(help="Weekly digests: 0=Monday .. 6=Sunday (new: 0).")
    ] = None,
    max_papers: Annotated[int | None, typer.Option(help="Papers per digest (new: 10).")] = None,
    unconfirmed: Annotated[
        bool, typer.Option(help="A new subscriber stays unconfirmed (no mail).")
    ] = False,
) -> None:
    """Add a subscriber (confirmed, since an operator adds them), or update one: an existing
    address changes only the options given (-k replaces its keywords, -x its exclusions)."""
    from papermail.db import session_scope
    from papermail.services import subscriptions

    _, engine = _setup()
    given = {
        "keywords": tuple(keyword) if keyword else None,
        "excluded": tuple(exclude) if exclude is not None else None,
        "timezone": timezone,
        "send_hour": hour,
        "frequency": frequency,
        "weekly_day": weekday,
        "max_papers": max_papers,
    }
    changes = {name: value for name, value in given.items() if value is not None}
    with session_scope(engine) as session:
        sub, created = subscriptions.save_subscriber(
            session, email=email, changes=changes, confirmed=False if unconfirmed else None
        )
    if created:
        console.print(f"subscribed {sub.email} (id {sub.id})")
        return
    what = ", ".join(changes) or "nothing"
    note = " (unsubscribed: they resubscribe from their own link)" if sub.unsubscribed_at else ""
    console.print(f"updated {sub.email} (id {sub.id}): {what}{note}")


@subscribers_app.command("list")
def subscribers_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List subscribers with their interests and schedule, and which database holds them."""
    import json

    from sqlmodel import col, select

    from papermail.db import session_scope
    from papermail.models import Subscriber
    from papermail.services import subscriptions

    _, engine = _setup()
    rows = []
    with session_scope(engine) as session:
        for sub in session.exec(select(Subscriber).order_by(col(Subscriber.id))):
            interests = subscriptions.interests_of(session, sub.id)  # type: ignore[arg-type]
            status = (
                "unsubscribed"
                if sub.unsubscribed_at
                else ("active" if sub.confirmed else "unconfirmed")
            )
            rows.append(
                {
                    "id": sub.id,
                    "email": sub.email,
                    "status": status,
                    "keywords": [i.phrase for i in interests if not i.negative],
                    "excluded": [i.phrase for i in interests if i.negative],
                    "frequency": str(sub.frequency),
                    "send_hour": sub.send_hour,
                    "timezone": sub.timezone,
                    "weekday": sub.weekly_day,
                    "max_papers": sub.max_papers,
                }
            )
    if as_json:
        typer.echo(json.dumps({"database": _database(engine), "subscribers": rows}, indent=2))
        return
    table = Table("id", "email", "status", "keywords", "excluded", "schedule")
    for row in rows:
        table.add_row(
            str(row["id"]),
            row["email"],
            row["status"],
            ", ".join(row["keywords"]),
            ", ".join(row["excluded"]),
            f"{row['frequency']} {row['send_hour']:02d}:00 {row['timezone']}",
        )
    console.print(table)
    console.print(f"database: {_database(engine)}", markup=False, highlight=False)


@subscribers_app.command("remove")
def subscribers_remove(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The address.")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a subscriber with their interests, history and rate-limit counts (asks first)."""
    from papermail.db import session_scope
    from papermail.services import subscriptions

    _, engine = _setup()
    address = subscriptions.normalize_email(email)
    with session_scope(engine) as session:
        if subscriptions.get_by_email(session, address) is None:
            raise PapermailError(f"no subscriber {email!r}")
    if not yes:
        typer.confirm(f"Remove {address} with their interests, digests and ratings?", abort=True)
    with session_scope(engine) as session:
        removed = subscriptions.remove_subscriber(session, address)
    if not removed:
        raise PapermailError(f"no subscriber {email!r}")
    console.print(f"removed {address}")


papers_app = typer.Typer(help="Papers ingested by mistake.", no_args_is_help=True)
app.add_typer(papers_app, name="papers")


@papers_app.command("remove")
def papers_remove(
    ids: Annotated[list[str], typer.Argument(help="Paper ids (as /papers and `rank` show).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete papers with their digest entries and ratings (asks first)."""
    from papermail.db import session_scope
    from papermail.services.ingest import remove_papers

    _, engine = _setup()
    if not yes:
        typer.confirm(f"Remove {len(ids)} paper(s) with their digest entries?", abort=True)
    with session_scope(engine) as session:
        removed = remove_papers(session, ids)
    for missing in sorted(set(ids) - set(removed)):
        Console(stderr=True).print(f"no paper {missing!r}", markup=False, highlight=False)
    console.print(f"removed {len(removed)} paper(s)")
    if len(removed) < len(set(ids)):
        raise typer.Exit(1)


@app.command()
def preview(
    email: Annotated[str, typer.Argument(metavar="EMAIL", help="The address.")],
    out: Annotated[Path | None, typer.Option(help="HTML file to write.")] = None,
    day: Annotated[str | None, typer.Option(help="Issue date (YYYY-MM-DD).")] = None,
) -> None:
    """Render a subscriber's next digest to a file without sending or storing anything."""
    from papermail.db import session_scope
    from papermail.models import utcnow
    from papermail.services import digests as digest_service
    from papermail.services import subscriptions

    settings, engine = _setup()
    issue_date = _parse_date(day)
    with session_scope(engine) as session:
        sub = subscriptions.get_by_email(session, subscriptions.normalize_email(email))
        if sub is None:
            raise PapermailError(f"no subscriber {email!r}")
        plan = digest_service.plan_digests(session, settings, [sub], now=utcnow())[0]
        entries = plan.entries()
        rendered, _ = digest_service.render_digest(
            settings,
            sub,
            issue_date=issue_date,
            scanned=plan.scanned,
            entries=entries,
            digest_id=None,
        )
    target = out or settings.var_dir / "preview" / f"{sub.email}-{issue_date}.html"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(rendered.html, encoding="utf-8")
    target.with_suffix(".txt").write_text(rendered.text, encoding="utf-8")
    console.print(f"{rendered.subject}\n{len(entries)} papers -> {target}")


@app.command("send-due")
def send_due(
    now: Annotated[str | None, typer.Option(help="Pretend it is this UTC time (ISO).")] = None,
) -> None:
    """Score and send digests for every subscriber whose local send time has come."""
    from papermail.models import parse_moment
    from workers import tasks

    _setup()
    if now:
        try:
            parse_moment(now)
        except ValueError as exc:
            raise PapermailError(f"not an ISO date-time: {now!r}") from exc
    result = tasks.send_due.apply(kwargs={"now": now}).get()
    console.print(
        f"{result['due']} subscribers due ({len(result['scoring'])} scoring batches), "
        f"{result['recovered']} stalled deliveries queued again"
    )


@app.command("run-daily")
def run_daily(
    sources: Annotated[
        list[str] | None, typer.Argument(help="Sources (default: settings).")
    ] = None,
    day: Annotated[str | None, typer.Option(help="Issue date (YYYY-MM-DD).")] = None,
) -> None:
    """The daily job: ingest, score everyone due that day, send (through Celery)."""
    from workers import tasks

    _setup()
    issue_date = _parse_date(day)
    tasks.daily_pipeline.delay(issue_date.isoformat(), sources or None)
    console.print(f"daily pipeline for {issue_date} started")


db_app = typer.Typer(help="Database schema migrations (Alembic).", no_args_is_help=True)
app.add_typer(db_app, name="db")


@db_app.command("upgrade")
def db_upgrade(
    revision: Annotated[str, typer.Argument(help="Target revision.")] = "head",
) -> None:
    """Apply schema migrations (what a deployment runs before starting the app)."""
    from papermail.db import make_engine
    from papermail.migrate import current_revision, upgrade
    from papermail.settings import get_settings

    settings = get_settings()
    engine = make_engine(settings)
    upgrade(engine, revision)
    where = engine.url.render_as_string(hide_password=True)
    console.print(f"database {where} at revision {current_revision(engine)}")


@db_app.command("current")
def db_current() -> None:
    """Show the database's schema revision and the one this code needs."""
    from papermail.db import make_engine
    from papermail.migrate import current_revision, head_revision
    from papermail.settings import get_settings

    engine = make_engine(get_settings())
    console.print(f"database: {current_revision(engine) or 'none'}, code: {head_revision()}")


def digest_summary(session: Session, issue_date: date) -> list[tuple[str, int, str, float, str]]:
    """(email, papers, top title, top score, delivery status) for each digest of a day."""
    from sqlmodel import col, select

    from papermail.models import Delivery, Digest, DigestItem, Paper, Subscriber

    rows = []
    digests = session.exec(
        select(Digest, Subscriber)
        .join(Subscriber, col(Subscriber.id) == Digest.subscriber_id)
        .where(Digest.issue_date == issue_date)
        .order_by(col(Subscriber.id))
    )
    for digest, sub in digests:
        items = session.exec(
            select(DigestItem, Paper)
            .join(Paper, col(Paper.id) == DigestItem.paper_id)
            .where(DigestItem.digest_id == digest.id)
            .order_by(col(DigestItem.rank))
        ).all()
        delivery = session.exec(select(Delivery).where(Delivery.digest_id == digest.id)).first()
        top_title, top_score = (items[0][1].title, items[0][0].score) if items else ("-", 0.0)
        rows.append(
            (sub.email, len(items), top_title, top_score, delivery.status if delivery else "empty")
        )
    return rows


def demo_settings(settings: Settings, where: Path | None = None) -> Settings:
    """The demo's own world: a database and an outbox under `where` (default VAR_DIR/demo),
    tasks in-process, mail to files. Never DATABASE_URL's database, never VAR_DIR's."""
    where = where or settings.var_dir / "demo"
    return settings.model_copy(
        update={
            "var_dir": where,
            "database_url": "",
            "redis_url": "",
            "mail_backend": "outbox",
            "outbox_dir": where / "outbox",
        }
    )


@app.command()
def demo(
    fresh: Annotated[bool, typer.Option(help="Start from an empty demo database.")] = True,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Where the demo keeps its database and outbox."),
    ] = None,
) -> None:
    """Ingest the sample pages, add sample subscribers, run the daily job, show the digests.

    The demo works in its own directory (VAR_DIR/demo unless --dir says otherwise) with its own
    database and outbox: your subscribers and papers are never touched."""
    from sqlmodel import select

    from papermail.db import session_scope
    from papermail.models import Paper, utcnow
    from papermail.services import subscriptions
    from papermail.settings import get_settings
    from workers import tasks

    settings = demo_settings(get_settings(), directory)
    db_file = settings.var_dir / "papermail.db"
    if fresh:
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db_file}{suffix}").unlink(missing_ok=True)
    console.print(f"demo database {db_file.resolve()} (your own data is not touched)")
    settings, engine = _setup(settings)
    started = datetime.now().timestamp()
    with session_scope(engine) as session:
        for email, prefs in demo_subscribers():
            subscriptions.add_subscriber(session, email=email, prefs=prefs, confirmed=True)
    issue_date = utcnow().date()
    tasks.daily_pipeline.apply(
        kwargs={"issue_date": issue_date.isoformat(), "sources": [str(settings.samples_dir)]}
    )
    with session_scope(engine) as session:
        papers = len(session.exec(select(Paper.id)).all())
        summary = digest_summary(session, issue_date)
    table = Table(title=f"papermail digests for {issue_date} ({papers} papers ingested)")
    for column in ("subscriber", "papers", "top paper", "score", "delivery"):
        table.add_column(column, justify="right" if column in ("papers", "score") else "left")
    for email, count, title, score, status in summary:
        short = title if len(title) <= 42 else title[:41] + "…"
        table.add_row(email, str(count), short, f"{score:.3f}", status)
    console.print(table)
    if settings.mail_backend == "outbox":
        outbox = settings.resolved_outbox_dir
        fresh_files = sorted(p for p in outbox.glob("*.html") if p.stat().st_mtime >= started - 1)
        console.print(f"HTML digests in {outbox.resolve()}:")
        for path in fresh_files:
            console.print(f"  {path.resolve().as_uri()}", soft_wrap=True)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.", min=1, max=65535)] = 8000,
    forwarded_allow_ips: Annotated[
        str, typer.Option(help="Proxies trusted for X-Forwarded-For (comma-separated).")
    ] = "127.0.0.1",
) -> None:
    """Run the subscriber web app (sign-up, settings, unsubscribe, digests, feed) with uvicorn."""
    import uvicorn

    from papermail.web import create_app

    settings, engine = _setup()
    uvicorn.run(
        create_app(settings, engine=engine),
        host=host,
        port=port,
        proxy_headers=True,
        forwarded_allow_ips=forwarded_allow_ips,
        server_header=False,
    )


@app.command()
def status(
    day: Annotated[
        str | None,
        typer.Argument(
            help="Issue date (YYYY-MM-DD; default today, UTC), or a subscriber's EMAIL: "
            "why they got (or did not get) a digest today."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of tables.")] = False,
) -> None:
    """Deliveries of one issue date: queued, sending, sent, failed, bounced, cancelled, and why.
    With an EMAIL: that subscriber's digest today, as their manage page says it."""
    import json

    from papermail.db import session_scope
    from papermail.services.status import day_status

    _, engine = _setup()
    if day is not None and "@" in day:
        from papermail.models import utcnow
        from papermail.services import subscriptions
        from papermail.services.today import today_of

        with session_scope(engine) as session:
            sub = subscriptions.get_by_email(session, subscriptions.normalize_email(day))
            if sub is None:
                raise PapermailError(f"no subscriber {day!r}")
            today = today_of(session, sub, utcnow())
            email = sub.email
        if as_json:
            typer.echo(json.dumps({"email": email, **today.as_dict()}, indent=2))
        else:
            typer.echo(f"{email} ({today.local_date}): {today.text}")
        return
    with session_scope(engine) as session:
        report = day_status(session, _parse_date(day))
    if as_json:
        typer.echo(json.dumps({"database": _database(engine), **report.as_dict()}, indent=2))
        return
    labels = {"pending": "queued (pending)"}
    counts = Table(title=f"deliveries for {report.issue_date}")
    counts.add_column("status")
    counts.add_column("count", justify="right")
    for name, count in report.counts.items():
        counts.add_row(labels.get(name, name), str(count))
    counts.add_row("no mail (nothing matched)", str(report.empty), style="dim")
    console.print(counts)
    if report.problems:
        problems = Table("digest", "subscriber", "status", "attempts", "reason", title="failures")
        for p in report.problems:
            problems.add_row(str(p.digest_id), p.email, p.status, str(p.attempts), p.error)
        console.print(problems)
    if report.suspended:
        console.print(f"{report.suspended} subscribers suspended after repeated hard bounces")
    console.print(f"database: {_database(engine)}", markup=False, highlight=False)


@app.command("rank")
def rank_command(
    corpus: Annotated[
        list[Path], typer.Option(help="Papers to rank: a file read_path reads, or a folder.")
    ],
    keyword: Annotated[list[str], typer.Option("--keyword", "-k", help="Interest (repeat).")],
    exclude: Annotated[list[str] | None, typer.Option("--exclude", "-x", help="Excluded.")] = None,
    top: Annotated[int, typer.Option(help="Papers to show (1-1000).", min=1, max=1000)] = 10,
    min_score: Annotated[
        float,
        typer.Option(
            help="Show only papers scoring at least this; default 0: the whole ranking "
            "(a digest sends papers from MIN_SCORE: --json says which)."
        ),
    ] = 0.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="A JSON list of id/score/matched.")
    ] = False,
) -> None:
    """Try keywords before subscribing: rank the papers in CORPUS, touching no database."""
    import json

    from papermail import ranking
    from papermail.ranking.corpus import rank_files
    from papermail.services import subscriptions
    from papermail.settings import get_settings

    settings = get_settings()
    keywords = subscriptions.clean_phrases(keyword, field="keywords")  # as subscribers add
    excluded = subscriptions.clean_phrases(exclude or (), field="excluded")
    if not keywords:
        raise PapermailError("give at least one keyword")
    for path in corpus:
        if not path.exists():
            raise PapermailError(f"no such file or folder: {path}")
    try:
        found = rank_files(
            corpus,
            keywords,
            excluded,
            limit=top,
            min_score=max(min_score, 1e-9),
            options=ranking.RankOptions.from_settings(settings),
            config=ranking.model_config(settings),
            cache=settings.var_dir / "cache",
        )
    except ValueError as exc:
        raise PapermailError(str(exc)) from exc
    if as_json:
        rows = [
            {
                "id": pid,
                "score": round(m.score, 6),
                "matched": list(m.matched),
                "sent": m.score >= settings.min_score,
            }
            for pid, _, m in found
        ]
        print(json.dumps(rows, ensure_ascii=False))
        return
    table = Table("rank", "id", "score", "matched (where)", "title")
    table.columns[1].no_wrap = True
    for number, (pid, title, m) in enumerate(found, start=1):
        why = ", ".join(
            f"{r.term} ({'+'.join(r.where)}{'; as ' + r.via if r.via else ''})"
            if r.where
            else r.term
            for r in m.reasons
        )
        mark = "" if m.score >= settings.min_score else " (below MIN_SCORE: not sent)"
        table.add_row(str(number), pid, f"{m.score:.3f}{mark}", why, title)
    console.print(table if found else "no paper matched")


@app.command("eval")
def eval_command(
    judgements: Annotated[
        Path | None, typer.Option(help="Graded judgements TSV (default: bench/data).")
    ] = None,
    profiles: Annotated[
        Path | None, typer.Option(help="Profiles JSON (default: bench/data).")
    ] = None,
    corpus: Annotated[
        list[Path] | None, typer.Option(help="Papers judged (default: the sample pages).")
    ] = None,
    subscribers: Annotated[int, typer.Option(help="Synthetic subscribers timed; 0 skips.")] = 1000,
) -> None:
    """Score each ranking variant on the labelled set: nDCG@10, P@5, R@20, cost."""
    from papermail import ranking
    from papermail.ranking import evaluation, report
    from papermail.settings import get_settings

    settings = get_settings()
    data_dir = Path(__file__).resolve().parents[2] / "bench" / "data"
    judgements = judgements or data_dir / "judgements.tsv"
    profiles = profiles or data_dir / "profiles.json"
    for path in (judgements, profiles):
        if not path.is_file():
            raise PapermailError(f"no labelled set at {path}: pass --judgements and --profiles")
    try:
        data = evaluation.load_labelled(judgements, profiles, corpus or [settings.samples_dir])
    except ValueError as exc:
        raise PapermailError(str(exc)) from exc
    result = report.evaluate(
        data,
        min_score=settings.min_score,
        options=ranking.RankOptions.from_settings(settings),
        config=ranking.model_config(settings),
        subscribers=subscribers,
    )
    print(report.format_report(result))
    from papermail.ranking import seed_eval  # issue 13: interests started from seed papers

    seeded = seed_eval.evaluate_seeds(
        data,
        options=ranking.RankOptions.from_settings(settings),
        config=ranking.model_config(settings),
    )
    print(seed_eval.format_seed_rows(seeded))


cli_interests.register(app)  # interests add|list|remove, export, import (issue 13)
app.add_typer(importlib.import_module("papermail.cli_bounces").bounces_app, name="bounces")
cli_doctor.register(app)  # doctor, dkim keygen (issue 14)
app.add_typer(cli_admin.admin_app, name="admin")  # operator accounts (issue 14)


def _click_classes(name: str) -> tuple[type[BaseException], ...]:
    """`name` from click and from typer's own copies (typer >= 0.16 vendors click as
    typer._click and defines Exit/Abort in typer.exceptions): typer raises its own, and both
    must get click's handling."""
    classes: list[type[BaseException]] = []
    for module_name in ("click.exceptions", "typer._click.exceptions", "typer.exceptions"):
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # an older typer: plain click
            continue
        found = getattr(module, name, None)
        if isinstance(found, type) and found not in classes:
            classes.append(found)
    return tuple(classes)


_CLICK_EXIT = _click_classes("Exit")
_CLICK_ERRORS = _click_classes("ClickException")
_CLICK_ABORT = _click_classes("Abort")


def _describe(exc: Exception) -> str:
    """One line for an exception that is not a PapermailError. pydantic and SQLAlchemy are
    looked up only if a verb loaded them (`--help` loads neither)."""
    pydantic = sys.modules.get("pydantic")
    if pydantic is not None and isinstance(exc, pydantic.ValidationError):
        problems = "; ".join(
            f"{'.'.join(map(str, e['loc'])) or 'settings'}: {e['msg']}" for e in exc.errors()
        )
        return f"invalid configuration: {problems}"
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.OperationalError):
        return f"database unavailable: {exc.orig}"
    return f"unexpected {type(exc).__name__}: {exc}"  # a bug: -vv logs the traceback


def main() -> None:
    """Entry point: errors are one clear line on stderr, not a traceback."""
    logging.basicConfig(level=logging.CRITICAL + 1, format="%(levelname)s %(name)s: %(message)s")
    err = Console(stderr=True, soft_wrap=True)
    try:
        code = app(standalone_mode=False)  # click returns the exit code instead of exiting
    except _CLICK_EXIT as exc:
        sys.exit(exc.exit_code)
    except _CLICK_ERRORS as exc:  # usage errors: click's own message ("Usage: ..."), exit 2
        exc.show()
        sys.exit(exc.exit_code)
    except _CLICK_ABORT:
        err.print("aborted")
        sys.exit(130)
    except PapermailError as exc:
        err.print(f"error: {exc}", markup=False, highlight=False)
        sys.exit(1)
    except Exception as exc:
        err.print(f"error: {_describe(exc)}", markup=False, highlight=False)
        logging.getLogger("papermail").debug("traceback", exc_info=True)
        sys.exit(1)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
