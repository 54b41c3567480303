"""Bounce and complaint reports that arrive as mail, long after the SMTP session (issue 14).

Pure: bytes in, `BounceReport`s out; no database, no network. Three pieces:

- VERP. Each digest goes out with the envelope sender `bounces+<token>@BOUNCE_DOMAIN`, so the
  report a remote server sends back arrives at an address that names the subscriber. The token
  is `<subscriber id>-<digest id>-<mac>`: a truncated HMAC-SHA256 under SECRET_KEY, in lower-case
  base32, because MTAs and mailbox providers may change the case of a local part and a
  case-sensitive itsdangerous token would then fail. A forged or garbled token verifies to None.
- DSN (RFC 3464, `multipart/report; report-type=delivery-status`): each per-recipient block
  (Final-Recipient, Action, Status, Diagnostic-Code) read with the stdlib `email` package;
  5.x.x = hard, 4.x.x or `Action: delayed` = soft. Bounces that are not RFC 3464 (qmail, old
  Exchange, Exim's plain text...) go to flufl.bounce, which knows those styles by heart.
- ARF (RFC 5965, `report-type=feedback-report`): a complaint ("this is spam") for the
  Original-Rcpt-To, else the To of the embedded original message.

Anything else (auto-replies, spam, garbage bytes) gives `[]`; nothing here raises on input.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, replace
from email import message_from_bytes, policy
from email.message import Message
from email.utils import getaddresses, parseaddr

from papermail.models import BounceKind
from papermail.settings import Settings

log = logging.getLogger(__name__)

VERP_LOCAL = "bounces"  # the local part before "+": bounces+<token>@BOUNCE_DOMAIN
MAC_CHARS = 16  # 80 bits of HMAC: forging one takes ~2**79 tries against the live server
_MAC_KEY_PREFIX = b"papermail.verp\x00"
_TOKEN = re.compile(r"^(\d{1,12})(?:-(\d{1,12}))?-([a-z2-7]{16})$")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_QUOTED_ID = re.compile(r"^Message-ID:\s*<([^<>\s]+@[^<>\s]+)>", re.IGNORECASE | re.MULTILINE)
_ANGLE = re.compile(r"<([^<>\s]+@[^<>\s]+)>")
DETAIL_CHARS = 300
NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure"})  # RFC 6650/6591: not a reader's "spam"


@dataclass(frozen=True)
class BounceReport:
    kind: BounceKind  # hard / soft / complaint
    recipient: str  # the address that bounced or complained, lower-cased
    source: str  # "dsn", "arf", "ses", "sendgrid", "postmark"
    fingerprint: str  # sha256 hex of what identifies THIS report
    message_id: str | None = None  # our digest's Message-ID, when the report names it
    status_code: str | None = None  # "5.1.1", "4.2.2"
    detail: str | None = None  # diagnostic text, short
    subscriber_id: int | None = None  # from a verified VERP token


@dataclass(frozen=True)
class VerpToken:
    subscriber_id: int
    digest_id: int | None = None


# --- VERP ---------------------------------------------------------------------------------


def _mac(secret: str, payload: str) -> str:
    if not secret:
        raise ValueError("an empty secret would make every bounce address forgeable")
    digest = hmac.new(_MAC_KEY_PREFIX + secret.encode(), payload.encode(), hashlib.sha256).digest()
    return base64.b32encode(digest).decode("ascii").lower()[:MAC_CHARS]


def make_verp_token(secret: str, subscriber_id: int, digest_id: int | None = None) -> str:
    """`42-1234-<mac>` (or `42-<mac>` without a digest): short, lower-case, signed."""
    payload = str(subscriber_id) if digest_id is None else f"{subscriber_id}-{digest_id}"
    return f"{payload}-{_mac(secret, payload)}"


def verp_address(secret: str, domain: str, subscriber_id: int, digest_id: int | None = None) -> str:
    """The envelope sender of one digest: `bounces+<token>@domain`."""
    return f"{VERP_LOCAL}+{make_verp_token(secret, subscriber_id, digest_id)}@{domain.lower()}"


def digest_sender(settings: Settings, subscriber_id: int, digest_id: int | None) -> str:
    """A digest's envelope sender (Return-Path): the subscriber's VERP address when
    BOUNCE_DOMAIN is set, else MAIL_FROM as before. Confirm and manage mails keep MAIL_FROM."""
    if not settings.bounce_domain:
        return settings.mail_from
    secret = settings.secret_key.get_secret_value()
    return verp_address(secret, settings.bounce_domain, subscriber_id, digest_id)


def read_verp_token(secret: str, token: str) -> VerpToken | None:
    """The ids a token names, or None when it is not one we signed (forged, garbled, cut)."""
    match = _TOKEN.match(token.strip().lower())
    if match is None or not secret:
        return None
    subscriber, digest, mac = match.groups()
    payload = subscriber if digest is None else f"{subscriber}-{digest}"
    if not hmac.compare_digest(mac, _mac(secret, payload)):
        return None
    return VerpToken(int(subscriber), int(digest) if digest is not None else None)


def verp_token_of(address: str, domain: str) -> str | None:
    """`bounces+TOKEN@domain` -> TOKEN (unverified); None for any other address."""
    local, at, host = parseaddr(address)[1].strip().lower().rpartition("@")
    if not at or not domain or host.rstrip(".") != domain.lower().rstrip("."):
        return None
    prefix, plus, token = local.partition("+")
    if not plus or prefix != VERP_LOCAL or not token:
        return None
    return token


def read_verp_address(secret: str, domain: str, address: str) -> VerpToken | None:
    """The verified ids behind a bounce address, or None (another address, a forged token)."""
    token = verp_token_of(address, domain)
    return read_verp_token(secret, token) if token is not None else None


# --- Parsing --------------------------------------------------------------------------------


def fingerprint(*parts: object) -> str:
    """SHA-256 hex of what identifies one report (parts joined unambiguously)."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()


def _header(message: Message, name: str) -> str:
    """A header as a plain string; a malformed one as its raw text, never an exception."""
    try:
        value = message.get(name)
    except Exception:  # the email package's parser of structured headers can trip on junk
        value = None
        for key, raw in message.raw_items() if hasattr(message, "raw_items") else []:
            if key.lower() == name.lower():
                value = raw
                break
    return " ".join(str(value).split()) if value is not None else ""


def _address(value: str) -> str:
    """`rfc822; Jane@Example.org` or `<jane@example.org>` -> `jane@example.org`; '' if none."""
    value = value.split(";", 1)[1] if ";" in value.split("@", 1)[0] else value
    address = parseaddr(value.strip())[1].strip().strip("<>").lower()
    return address if "@" in address and " " not in address else ""


def _short(text: str | None) -> str | None:
    if not text:
        return None
    text = " ".join(text.split())
    return text if len(text) <= DETAIL_CHARS else text[: DETAIL_CHARS - 1] + "…"


def _status(text: str) -> str | None:
    match = _STATUS.search(text or "")
    return ".".join(match.groups()) if match else None


def _parts(message: Message) -> Iterator[Message]:
    try:
        yield from message.walk()
    except Exception:
        return


def _embedded_headers(message: Message) -> Message | None:
    """The original message (message/rfc822) or its headers (text/rfc822-headers) in a report."""
    for part in _parts(message):
        ctype = part.get_content_type()
        if ctype in ("message/rfc822", "message/global") and part.is_multipart():
            inner = part.get_payload(0)
            if isinstance(inner, Message):
                return inner
        if ctype in ("text/rfc822-headers", "message/rfc822-headers", "message/rfc822"):
            raw = part.get_payload(decode=True) or b""
            if raw:
                return message_from_bytes(raw, policy=policy.compat32)
    return None


def _original_message_id(message: Message) -> str | None:
    original = _embedded_headers(message)
    value = _header(original, "Message-ID") if original is not None else ""
    match = _ANGLE.search(value) or re.search(r"(\S+@\S+)", value)
    return f"<{match.group(1)}>" if match else None


def _field_blocks(part: Message) -> list[Message]:
    """The header blocks of a message/delivery-status or message/feedback-report part."""
    payload = part.get_payload()
    if isinstance(payload, list):  # the email package already split delivery-status blocks
        return [p for p in payload if isinstance(p, Message)]
    raw = part.get_payload(decode=True) or b""
    text = raw.decode("utf-8", "replace").replace("\r\n", "\n")
    return [
        message_from_bytes(block.strip("\n").encode() + b"\n\n", policy=policy.compat32)
        for block in re.split(r"\n\s*\n", text)
        if block.strip()
    ]


def _report_part(message: Message, ctype: str) -> Message | None:
    for part in _parts(message):
        if part.get_content_type() == ctype:
            return part
    return None


def _dsn_report(
    kind: BounceKind,
    recipient: str,
    original: str | None,
    report_id: str,
    status: str | None,
    detail: str | None,
) -> BounceReport:
    """A delivery failure (RFC 3464 or read by flufl.bounce), once per report and recipient."""
    return BounceReport(
        kind=kind,
        recipient=recipient,
        source="dsn",
        fingerprint=fingerprint("dsn", original or report_id, recipient, kind),
        message_id=original,
        status_code=status,
        detail=detail,
    )


def _dsn_reports(message: Message, report_id: str) -> list[BounceReport]:
    part = _report_part(message, "message/delivery-status")
    if part is None:
        return []
    original = _original_message_id(message)
    reports = []
    for block in _field_blocks(part):  # the per-message block (Reporting-MTA) names nobody
        recipient = _address(_header(block, "Final-Recipient")) or _address(
            _header(block, "Original-Recipient")
        )
        action = _header(block, "Action").lower().split(" ")[0] if recipient else ""
        status = _status(_header(block, "Status"))
        diagnostic = _header(block, "Diagnostic-Code")
        diagnostic = diagnostic.split(";", 1)[1] if ";" in diagnostic[:20] else diagnostic
        status = status or _status(diagnostic)
        if not recipient or action in ("delivered", "relayed", "expanded"):
            continue
        if action == "delayed" or (status or "").startswith("4"):
            kind = BounceKind.soft
        elif action == "failed" or (status or "").startswith("5"):
            kind = BounceKind.hard
        else:
            continue
        reports.append(
            _dsn_report(kind, recipient, original, report_id, status, _short(diagnostic or action))
        )
    return reports


def _arf_reports(message: Message, report_id: str) -> list[BounceReport]:
    part = _report_part(message, "message/feedback-report")
    if part is None:
        return []
    blocks = _field_blocks(part)
    fields = blocks[0] if blocks else Message()
    feedback_type = _header(fields, "Feedback-Type").lower() or "abuse"
    if feedback_type in NOT_COMPLAINTS:
        return []
    original = _embedded_headers(message)
    recipient = _address(_header(fields, "Original-Rcpt-To"))
    if not recipient and original is not None:
        recipient = next(
            (a.lower() for _, a in getaddresses([_header(original, "To")]) if "@" in a), ""
        )
    message_id = _original_message_id(message)
    detail = f"Feedback-Type: {feedback_type}"
    agent = _header(fields, "User-Agent")
    return [
        BounceReport(
            kind=BounceKind.complaint,
            recipient=recipient,
            source="arf",
            fingerprint=fingerprint("arf", message_id or report_id, recipient),
            message_id=message_id,
            detail=_short(f"{detail} ({agent})" if agent else detail),
        )
    ]


def _text_of(message: Message) -> str:
    chunks = []
    for part in _parts(message):
        if part.get_content_maintype() == "text" and not part.is_multipart():
            raw = part.get_payload(decode=True) or b""
            chunks.append(raw.decode("utf-8", "replace"))
        if len(chunks) > 5:
            break
    return "\n".join(chunks)


def _line_about(text: str, recipient: str) -> str | None:
    """The lines of a plain-text bounce that follow its recipient: usually the reason."""
    lines = text.splitlines()
    for number, line in enumerate(lines):
        if recipient in line.lower():
            return _short(" ".join(x.strip() for x in lines[number : number + 4] if x.strip()))
    return None


def _heuristic_reports(message: Message, report_id: str) -> list[BounceReport]:
    """Non-RFC 3464 bounces (qmail, Exim text, old Exchange...): flufl.bounce names them."""
    from flufl.bounce import all_failures

    if not _header(message, "From"):  # not a mail at all (some detectors trip on this)
        return []
    try:
        temporary, permanent = all_failures(message)
    except Exception:  # a detector tripped on this mail: it is not a bounce we can read
        log.debug("flufl.bounce failed on a report", exc_info=True)
        return []
    text = _text_of(message)
    quoted = _QUOTED_ID.search(text)  # qmail and Exim quote the original below their text
    original = _original_message_id(message) or (f"<{quoted.group(1)}>" if quoted else None)
    reports = []
    for kind, found in ((BounceKind.hard, permanent), (BounceKind.soft, temporary)):
        for raw in sorted(found):
            recipient = _address(raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw)
            if not recipient or (kind == BounceKind.soft and raw in permanent):
                continue
            detail = _line_about(text, recipient)
            reports.append(
                _dsn_report(kind, recipient, original, report_id, _status(detail or ""), detail)
            )
    return reports


def _verp_candidates(message: Message, envelope: Iterable[str]) -> Iterator[str]:
    """Where the bounce address shows: the envelope, the delivery headers, and in an ARF
    report the original envelope sender (Yahoo and AOL hide the reader's address)."""
    yield from envelope
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "X-Envelope-To", "To"):
        for value in message.get_all(name) or []:
            yield from (a for _, a in getaddresses([str(value)]))
    feedback = _report_part(message, "message/feedback-report")
    if feedback is not None:
        for block in _field_blocks(feedback)[:1]:
            yield _header(block, "Original-Mail-From")
    original = _embedded_headers(message)
    if original is not None:
        yield _header(original, "Return-Path")


def _verified(message: Message, envelope: Iterable[str], secret: str, domain: str) -> int | None:
    if not domain:
        return None
    for address in _verp_candidates(message, envelope):
        token = read_verp_address(secret, domain, address) if address else None
        if token is not None:
            return token.subscriber_id
    return None


def parse_report(
    data: bytes,
    *,
    secret: str,
    bounce_domain: str = "",
    envelope_recipients: Iterable[str] = (),
) -> list[BounceReport]:
    """The bounces and complaints one mail reports; [] for anything else. Never raises.

    `envelope_recipients` are the addresses the mail was delivered to (RCPT TO, the MTA pipe's
    ${recipient}): a verified VERP token there or in the headers sets `subscriber_id`."""
    try:
        return _parse(data, secret, bounce_domain, list(envelope_recipients))
    except Exception:  # malformed beyond what the email package tolerates: not ours to read
        log.debug("unreadable report", exc_info=True)
        return []


def _parse(data: bytes, secret: str, domain: str, envelope: list[str]) -> list[BounceReport]:
    if not data or not data.strip():
        return []
    message = message_from_bytes(data, policy=policy.compat32)
    report_id = _header(message, "Message-ID") or hashlib.sha256(data).hexdigest()
    report_type = (message.get_param("report-type") or "") if message.is_multipart() else ""
    report_type = str(report_type).lower()
    if report_type == "feedback-report" or _report_part(message, "message/feedback-report"):
        reports = _arf_reports(message, report_id)
    elif report_type == "delivery-status" or _report_part(message, "message/delivery-status"):
        reports = _dsn_reports(message, report_id) or _heuristic_reports(message, report_id)
    else:
        reports = _heuristic_reports(message, report_id)
    subscriber_id = _verified(message, envelope, secret, domain) if reports else None
    result = []
    for report in reports:
        if not report.recipient and subscriber_id is None:
            continue  # a complaint naming nobody we can verify
        if subscriber_id is not None:
            report = replace(report, subscriber_id=subscriber_id)
        result.append(report)
    return result
