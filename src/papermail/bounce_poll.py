"""`papermail bounces poll`: read a bounce mailbox over IMAP with TLS, for operators who only
have a mailbox (no MTA to pipe from).

Unread, unflagged messages of BOUNCE_IMAP_FOLDER are fetched without marking them (PEEK), then
recorded; a message is marked \\Seen only after its report is stored. A message that is no
report we can read is flagged (\\Flagged, left unread) for the operator to look at, and later
polls skip it. A database error stops the poll with that message still unread: the next poll
takes it again, and its fingerprint keeps it from being counted twice.
"""

from __future__ import annotations

import imaplib
import logging
import ssl
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.engine import Engine

from papermail.errors import PapermailError
from papermail.logfmt import log_event
from papermail.services.bounces import process_message
from papermail.settings import Settings

log = logging.getLogger(__name__)

IMAP_TIMEOUT = 60.0


@dataclass
class PollReport:
    read: int = 0  # messages fetched
    reports: int = 0  # messages that were reports (marked \Seen)
    left: int = 0  # messages that were not (flagged for the operator)
    actions: list[str] = field(default_factory=list)  # one summary per report message

    @property
    def summary(self) -> str:
        return (
            f"{self.read} new message(s): {self.reports} report(s) recorded, "
            f"{self.left} not a report (left unread and flagged)"
        )


def tls_context(settings: Settings) -> ssl.SSLContext:
    """Verified TLS; BOUNCE_IMAP_CA_FILE adds a private CA (the system's CAs otherwise)."""
    ca = settings.bounce_imap_ca_file
    return ssl.create_default_context(cafile=str(ca) if ca else None)


def _check(result: tuple[str, list], what: str) -> list:
    status, data = result
    if status != "OK":
        detail = b" ".join(x for x in data if isinstance(x, bytes)).decode("utf-8", "replace")
        raise imaplib.IMAP4.error(f"{what}: {status} {detail}".strip())
    return data


def _message_bytes(fetched: list) -> bytes | None:
    for item in fetched:
        if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], bytes):
            return item[1]
    return None


def poll_mailbox(engine: Engine, settings: Settings, *, now: datetime | None = None) -> PollReport:
    """Record every new report in the bounce mailbox; see the module docstring for flags."""
    s = settings
    if not s.bounce_imap_host:
        raise PapermailError("BOUNCE_IMAP_HOST is not set: there is no bounce mailbox to poll")
    where = f"{s.bounce_imap_host}:{s.bounce_imap_port}"
    report = PollReport()
    try:
        with imaplib.IMAP4_SSL(
            s.bounce_imap_host, s.bounce_imap_port, ssl_context=tls_context(s), timeout=IMAP_TIMEOUT
        ) as imap:
            try:
                imap.login(s.bounce_imap_user, s.bounce_imap_password.get_secret_value())
            except imaplib.IMAP4.error:
                raise PapermailError(
                    f"IMAP login as {s.bounce_imap_user!r} refused by {where}"
                ) from None
            _check(imap.select(_quoted(s.bounce_imap_folder)), f"SELECT {s.bounce_imap_folder}")
            uids = _check(imap.uid("SEARCH", None, "UNSEEN", "UNFLAGGED"), "SEARCH")
            for uid in (uids[0] or b"").split():
                _take(imap, engine, settings, uid, report, now)
            imap.logout()
    except (imaplib.IMAP4.error, ssl.SSLError, OSError) as exc:
        raise PapermailError(f"cannot read the bounce mailbox at {where}: {exc}") from None
    log_event(log, "bounce.polled", read=report.read, reports=report.reports, left=report.left)
    return report


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def _take(
    imap: imaplib.IMAP4,
    engine: Engine,
    settings: Settings,
    uid: bytes,
    report: PollReport,
    now: datetime | None,
) -> None:
    data = _message_bytes(_check(imap.uid("FETCH", uid, "(BODY.PEEK[])"), "FETCH"))
    report.read += 1
    intake = process_message(engine, settings, data or b"", now=now)  # DB errors propagate
    if intake.reports:
        _check(imap.uid("STORE", uid, "+FLAGS", "(\\Seen)"), "STORE")
        report.reports += 1
        report.actions.append(intake.summary)
    else:
        _check(imap.uid("STORE", uid, "+FLAGS", "(\\Flagged)"), "STORE")
        report.left += 1
