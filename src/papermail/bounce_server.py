"""`papermail bounces serve`: an SMTP or LMTP endpoint (aiosmtpd) for the bounce address.

The operator's MTA hands mail for BOUNCE_DOMAIN to it (a Postfix transport map, an Exim
manualroute). Each mail is parsed and recorded before the answer: 250 once stored (a mail that
is no report is accepted and dropped: nothing else would read it), 451 when the database is
away (the MTA keeps the mail and tries again), 550 at RCPT for an address on another domain.
The envelope's RCPT TO is the VERP address, so the subscriber is known even when the report
hides the reader's address.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Callable
from functools import partial

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from papermail.logfmt import log_event
from papermail.services.bounces import process_message
from papermail.settings import Settings

log = logging.getLogger(__name__)

TRY_LATER = "451 4.3.0 bounce not recorded: database unavailable, try again later"
FAILED = "451 4.3.0 bounce not recorded: internal error, try again later"
REPLY_CHARS = 200


def on_domain(address: str, domain: str) -> bool:
    host = address.strip().strip("<>").rpartition("@")[2].rstrip(".").lower()
    return bool(domain) and host == domain.lower().rstrip(".")


def _ascii(text: str) -> str:
    text = " ".join(text.split())[:REPLY_CHARS]
    return text.encode("ascii", "replace").decode("ascii")


class BounceHandler:
    """aiosmtpd handler: accepts mail for BOUNCE_DOMAIN and records it before answering."""

    def __init__(self, engine: Engine, settings: Settings, *, lmtp: bool = False) -> None:
        self.engine, self.settings, self.lmtp = engine, settings, lmtp

    async def handle_RCPT(self, server, session, envelope, address: str, rcpt_options) -> str:
        if not on_domain(address, self.settings.bounce_domain):
            return f"550 5.1.1 <{_ascii(address)}>: not a bounce address of this server"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        data = envelope.original_content or envelope.content
        if isinstance(data, str):
            data = data.encode("utf-8", "surrogateescape")
        work = partial(
            process_message,
            self.engine,
            self.settings,
            data,
            envelope_recipients=list(envelope.rcpt_tos),
        )
        try:
            intake = await asyncio.get_running_loop().run_in_executor(None, work)
        except SQLAlchemyError as exc:
            log_event(log, "bounce.db_unavailable", logging.ERROR, error=str(exc).splitlines()[0])
            status = TRY_LATER
        except Exception:  # a bug: keep the mail at the MTA rather than lose the report
            log.exception("recording a bounce failed")
            status = FAILED
        else:
            status = f"250 2.0.0 {_ascii(intake.summary)}"
        if self.lmtp:  # LMTP answers once per accepted recipient (RFC 2033)
            return "\r\n".join([status] * max(1, len(envelope.rcpt_tos)))
        return status


class BounceController(Controller):
    """aiosmtpd's threaded controller, speaking LMTP instead of SMTP when asked."""

    def __init__(self, handler: BounceHandler, **kwargs) -> None:
        super().__init__(handler, **kwargs)
        self.lmtp = handler.lmtp

    def factory(self) -> SMTP:
        server_class = LMTP if self.lmtp else SMTP
        return server_class(self.handler, **self.SMTP_kwargs)


def serve(
    engine: Engine,
    settings: Settings,
    *,
    host: str,
    port: int,
    lmtp: bool = False,
    stop: threading.Event | None = None,
    ready: Callable[[str], None] | None = None,
) -> None:
    """Run until `stop` is set (the CLI sets it on SIGINT/SIGTERM)."""
    handler = BounceHandler(engine, settings, lmtp=lmtp)
    controller = BounceController(handler, hostname=host, port=port, server_hostname=host)
    controller.start()
    try:
        protocol = "LMTP" if lmtp else "SMTP"
        log_event(log, "bounce.serving", protocol=protocol, host=host, port=port)
        if ready is not None:
            ready(f"bounces: {protocol} on {host}:{port} for @{settings.bounce_domain}")
        (stop or threading.Event()).wait()
    finally:
        controller.stop()
