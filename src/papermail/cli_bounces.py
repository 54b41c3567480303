"""`papermail bounces process|serve|poll|list` (issue 14): the three ways bounce and complaint
reports that arrive as mail come in, and what was stored.

`process` is what an MTA pipes a bounce to; its exit code follows sendmail's convention
(sysexits.h): 0 handled or ignored, 75 (EX_TEMPFAIL) when the database is unreachable so that
the MTA keeps the mail and tries again, 1 for other errors. Heavy modules are imported inside
each verb, like the rest of the CLI.
"""

from __future__ import annotations

import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from papermail.errors import PapermailError

EX_TEMPFAIL = 75

bounces_app = typer.Typer(
    help="Bounces and complaints that arrive as mail: process, serve, poll, list.",
    no_args_is_help=True,
)


def _engine():
    """Settings and a migrated database, without Celery: a pipe starts once per bounce."""
    from papermail.db import make_engine
    from papermail.migrate import ensure_migrated
    from papermail.settings import get_settings

    settings = get_settings()
    engine = make_engine(settings)
    ensure_migrated(engine, auto=settings.environment != "production")
    return settings, engine


def _tempfail(exc: Exception) -> typer.Exit:
    first = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    print(f"error: database unavailable: {first[0] if first else exc}", file=sys.stderr)
    return typer.Exit(EX_TEMPFAIL)


@bounces_app.command("process")
def process_command(
    source: Annotated[
        str, typer.Argument(metavar="FILE|-", help="One report mail; `-` reads standard input.")
    ],
    recipient: Annotated[
        list[str] | None,
        typer.Option(
            "--recipient",
            "-r",
            help="Envelope recipient (the VERP address), e.g. Postfix's ${recipient} (repeat).",
        ),
    ] = None,
) -> None:
    """Record one bounce or complaint report; prints one line saying what it did."""
    from sqlalchemy.exc import SQLAlchemyError

    if source == "-":
        data = typer.get_binary_stream("stdin").read()
    else:
        try:
            data = Path(source).read_bytes()
        except OSError as exc:
            raise PapermailError(f"cannot read {source}: {exc.strerror or exc}") from None
    try:
        from papermail.services.bounces import process_message

        settings, engine = _engine()
        intake = process_message(engine, settings, data, envelope_recipients=recipient or ())
    except SQLAlchemyError as exc:
        raise _tempfail(exc) from None
    print(intake.summary)


@bounces_app.command("serve")
def serve_command(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 2525,
    lmtp: Annotated[bool, typer.Option("--lmtp", help="Speak LMTP instead of SMTP.")] = False,
) -> None:
    """An SMTP (or LMTP) server for BOUNCE_DOMAIN: the MTA forwards bounce mail to it."""
    from papermail.bounce_server import serve

    settings, engine = _engine()
    if not settings.bounce_domain:
        raise PapermailError("set BOUNCE_DOMAIN: the server accepts mail for that domain only")
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    serve(
        engine,
        settings,
        host=host,
        port=port,
        lmtp=lmtp,
        stop=stop,
        ready=lambda line: print(line, flush=True),
    )


@bounces_app.command("poll")
def poll_command() -> None:
    """Read new mail in the bounce mailbox (IMAP over TLS, BOUNCE_IMAP_*) and record it."""
    from sqlalchemy.exc import SQLAlchemyError

    from papermail.bounce_poll import poll_mailbox

    try:
        settings, engine = _engine()
        report = poll_mailbox(engine, settings)
    except SQLAlchemyError as exc:
        raise _tempfail(exc) from None
    for line in report.actions:
        print(f"  {line}")
    print(report.summary)


@bounces_app.command("list")
def list_command(
    limit: Annotated[int, typer.Option(min=1, help="How many, newest first.")] = 50,
) -> None:
    """The stored bounce and complaint events, newest first."""
    from rich.table import Table
    from sqlmodel import Session, col, select

    from papermail import cli
    from papermail.models import BounceEvent

    _, engine = _engine()
    with Session(engine) as session:
        rows = session.exec(
            select(BounceEvent).order_by(col(BounceEvent.received_at).desc()).limit(limit)
        ).all()
    table = Table("received", "kind", "source", "recipient", "subscriber", "status", "action")
    for event in rows:
        table.add_row(
            f"{event.received_at:%Y-%m-%d %H:%M}",
            str(event.kind),
            event.source,
            event.recipient,
            str(event.subscriber_id or "-"),
            event.status_code or "-",
            event.action,
        )
    cli.console.print(table)
    print(f"{len(rows)} event(s)")
