"""Bounce and complaint webhooks of the common relays: verify a request, read its reports.

Pure: every function takes what arrived (a parsed body, headers, a certificate) and returns
`BounceReport`s or raises `Rejected`; fetching certificates, the database and HTTP live in
`papermail.web.routes.webhooks`.

- Amazon SES publishes through SNS, which signs each message with RSA (SignatureVersion 1:
  SHA1, 2: SHA256) over a canonical string of named fields; the certificate is fetched from
  SigningCertURL, trusted only over HTTPS from an SNS host. A valid signature proves only that
  *some* SNS topic sent it, so the topic must be one of ours (SES_TOPIC_ARNS).
- SendGrid signs its Event Webhook with ECDSA P-256 (SHA-256) over timestamp + raw body.
- Postmark does not sign: its webhook URL carries HTTP Basic credentials.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa

from papermail.bounces import BounceReport
from papermail.models import BounceKind

DETAIL_LIMIT = 500  # characters of a relay's diagnostic text kept with a report
SENDGRID_MAX_AGE = 600  # seconds: an older (or as far future) timestamp is a replay


class Rejected(Exception):
    """A request refused: the HTTP status to answer, the `outcome` it is counted under and a
    short reason for the log (never personal data)."""

    def __init__(self, status: int, outcome: str, reason: str) -> None:
        super().__init__(f"{status} {outcome}: {reason}")
        self.status, self.outcome, self.reason = status, outcome, reason


def fingerprint(*parts: str) -> str:
    """sha256 hex of what identifies one report (the relay's event id, with the recipient when
    one event names several)."""
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()


def parse_json(body: bytes) -> Any:
    try:
        return json.loads(body)
    except (UnicodeDecodeError, ValueError):
        raise Rejected(400, "bad_request", "body is not JSON") from None


def _short(text: object) -> str | None:
    if text is None or text == "":
        return None
    return " ".join(str(text).split())[:DETAIL_LIMIT]


def _address(value: object) -> str | None:
    text = str(value or "").strip().lower()
    return text if "@" in text and len(text) <= 320 else None


def _message_id(value: object) -> str | None:
    """Our Message-ID as stored (``<…@domain>``), when the relay hands it back."""
    text = str(value or "").strip()
    if not text or len(text) > 248 or " " in text:
        return None
    return text if text.startswith("<") else f"<{text}>"


# --- Amazon SES through SNS -----------------------------------------------------------------

SNS_NOTIFICATION_FIELDS = ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type")
SNS_SUBSCRIPTION_FIELDS = (
    "Message",
    "MessageId",
    "SubscribeURL",
    "Timestamp",
    "Token",
    "TopicArn",
    "Type",
)
SNS_TYPES = {
    "Notification": SNS_NOTIFICATION_FIELDS,
    "SubscriptionConfirmation": SNS_SUBSCRIPTION_FIELDS,
    "UnsubscribeConfirmation": SNS_SUBSCRIPTION_FIELDS,
}
SNS_HASHES = {"1": hashes.SHA1, "2": hashes.SHA256}


def sns_string_to_sign(message: Mapping[str, Any]) -> bytes:
    """The canonical string SNS signs: each documented field of the message's type, in this
    order, as ``name\\nvalue\\n``; Subject only when the message has one."""
    names = SNS_TYPES.get(str(message.get("Type")))
    if names is None:
        raise Rejected(400, "bad_request", f"unknown SNS message type {message.get('Type')!r}")
    lines = []
    for name in names:
        value = message.get(name)
        if value is None:
            if name == "Subject":
                continue
            raise Rejected(400, "bad_request", f"SNS message without {name}")
        if not isinstance(value, str):
            raise Rejected(400, "bad_request", f"SNS field {name} is not a string")
        lines.append(f"{name}\n{value}\n")
    return "".join(lines).encode("utf-8")


def trusted_sns_url(url: object, host_pattern: str) -> bool:
    """An HTTPS URL on a host matching `host_pattern` (SES_CERT_HOST_PATTERN): where SNS keeps
    its signing certificates and subscription links. Anything else could be the sender's own."""
    if not isinstance(url, str):
        return False
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        return False
    if parts.scheme != "https" or parts.username or parts.password:
        return False
    return re.fullmatch(host_pattern, host) is not None


def check_sns_message(message: object, topic_arns: Iterable[str], host_pattern: str) -> dict:
    """The checks that need no certificate: shape, our topic, a certificate URL we trust."""
    if not isinstance(message, dict):
        raise Rejected(400, "bad_request", "SNS message is not an object")
    topic = message.get("TopicArn")
    if topic not in set(topic_arns):
        raise Rejected(403, "forbidden", "TopicArn is not one of SES_TOPIC_ARNS")
    if str(message.get("SignatureVersion")) not in SNS_HASHES:
        raise Rejected(403, "forbidden", "unknown SNS SignatureVersion")
    if not trusted_sns_url(message.get("SigningCertURL"), host_pattern):
        raise Rejected(403, "forbidden", "SigningCertURL is not an HTTPS URL of an SNS host")
    return message


def load_certificate(pem: bytes, *, now: datetime | None = None) -> x509.Certificate:
    """A PEM certificate with an RSA key, valid at `now`."""
    try:
        certificate = x509.load_pem_x509_certificate(pem)
    except ValueError:
        raise Rejected(403, "forbidden", "SigningCertURL did not serve a PEM certificate") from None
    now = now or datetime.now(UTC)
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        raise Rejected(403, "forbidden", "the SNS signing certificate is not valid now")
    if not isinstance(certificate.public_key(), rsa.RSAPublicKey):
        raise Rejected(403, "forbidden", "the SNS signing certificate has no RSA key")
    return certificate


def verify_sns_signature(message: Mapping[str, Any], certificate: x509.Certificate) -> None:
    """Raises `Rejected` (403) unless `certificate` signed this message."""
    key = certificate.public_key()
    assert isinstance(key, rsa.RSAPublicKey)  # load_certificate checked
    algorithm = SNS_HASHES.get(str(message.get("SignatureVersion")))
    if algorithm is None:
        raise Rejected(403, "forbidden", "unknown SNS SignatureVersion")
    try:
        signature = base64.b64decode(str(message.get("Signature", "")), validate=True)
        key.verify(signature, sns_string_to_sign(message), padding.PKCS1v15(), algorithm())
    except (InvalidSignature, binascii.Error, ValueError):
        raise Rejected(403, "forbidden", "SNS signature does not verify") from None


def ses_reports(message: Mapping[str, Any]) -> list[BounceReport]:
    """Reports in a verified SNS Notification from SES: one per bounced or complaining
    recipient. Bounce Permanent is hard; Transient (and Undetermined) soft; Complaint is a
    complaint; anything else (Delivery, Send, Open) reports nothing."""
    body = message.get("Message")
    inner = parse_json(body.encode("utf-8")) if isinstance(body, str) else None
    if not isinstance(inner, dict):
        raise Rejected(400, "bad_request", "SNS Message is not an SES notification")
    kind_name = inner.get("notificationType") or inner.get("eventType")
    mail = inner.get("mail") if isinstance(inner.get("mail"), dict) else {}
    headers = mail.get("commonHeaders") if isinstance(mail.get("commonHeaders"), dict) else {}
    message_id = _message_id(headers.get("messageId"))
    sns_id = str(message.get("MessageId", ""))
    if kind_name == "Bounce":
        bounce = inner.get("bounce") if isinstance(inner.get("bounce"), dict) else {}
        kind = BounceKind.hard if bounce.get("bounceType") == "Permanent" else BounceKind.soft
        recipients = bounce.get("bouncedRecipients")
        kind_detail = "/".join(
            str(bounce.get(k)) for k in ("bounceType", "bounceSubType") if bounce.get(k)
        )
    elif kind_name == "Complaint":
        complaint = inner.get("complaint") if isinstance(inner.get("complaint"), dict) else {}
        kind = BounceKind.complaint
        recipients = complaint.get("complainedRecipients")
        kind_detail = str(complaint.get("complaintFeedbackType") or "complaint")
    else:
        return []
    reports = []
    for entry in recipients if isinstance(recipients, list) else []:
        if not isinstance(entry, dict):
            continue
        recipient = _address(entry.get("emailAddress"))
        if recipient is None:
            continue
        reports.append(
            BounceReport(
                kind=kind,
                recipient=recipient,
                source="ses",
                fingerprint=fingerprint("ses", sns_id, recipient),
                message_id=message_id,
                status_code=_short(entry.get("status")),
                detail=_short(entry.get("diagnosticCode") or kind_detail),
            )
        )
    return reports


# --- SendGrid -------------------------------------------------------------------------------


def sendgrid_public_key(text: str) -> ec.EllipticCurvePublicKey:
    """The key SendGrid shows for a signed Event Webhook: base64 of a DER SubjectPublicKeyInfo
    (a PEM block is taken too)."""
    body = "".join(
        line for line in text.strip().splitlines() if not line.startswith("-----")
    ).strip()
    try:
        key = serialization.load_der_public_key(base64.b64decode(body, validate=True))
    except (binascii.Error, ValueError):
        raise ValueError("SENDGRID_WEBHOOK_PUBLIC_KEY is not a base64 DER public key") from None
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("SENDGRID_WEBHOOK_PUBLIC_KEY is not an elliptic-curve key")
    return key


def verify_sendgrid(
    key: ec.EllipticCurvePublicKey,
    *,
    signature: str | None,
    timestamp: str | None,
    body: bytes,
    now: float,
    max_age: int = SENDGRID_MAX_AGE,
) -> None:
    """Raises `Rejected` (403) unless `key` signed timestamp + body, within `max_age` of now."""
    if not signature or not timestamp:
        raise Rejected(403, "forbidden", "no SendGrid signature headers")
    if not timestamp.isdigit() or abs(now - int(timestamp)) > max_age:
        raise Rejected(403, "forbidden", "SendGrid timestamp missing or too old")
    try:
        raw = base64.b64decode(signature, validate=True)
        key.verify(raw, timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, binascii.Error, ValueError):
        raise Rejected(403, "forbidden", "SendGrid signature does not verify") from None


def _sendgrid_kind(event: Mapping[str, Any]) -> BounceKind | None:
    name = event.get("event")
    if name == "bounce":
        return BounceKind.soft if event.get("type") == "blocked" else BounceKind.hard
    if name == "dropped":
        return BounceKind.hard if event.get("reason") == "Bounced Address" else None
    if name == "deferred":
        return BounceKind.soft
    if name == "spamreport":
        return BounceKind.complaint
    return None


def sendgrid_reports(events: object) -> list[BounceReport]:
    """Reports in a verified SendGrid batch: bounce (type bounce hard, blocked soft), dropped
    as "Bounced Address" (hard), deferred (soft), spamreport (complaint). Other events
    (delivered, open, click, dropped for other reasons) report nothing."""
    if not isinstance(events, list):
        raise Rejected(400, "bad_request", "a SendGrid batch is a JSON array")
    reports = []
    for event in events:
        if not isinstance(event, dict):
            continue
        kind = _sendgrid_kind(event)
        recipient = _address(event.get("email"))
        event_id = event.get("sg_event_id")
        if kind is None or recipient is None or not event_id:
            continue
        reports.append(
            BounceReport(
                kind=kind,
                recipient=recipient,
                source="sendgrid",
                fingerprint=fingerprint("sendgrid", str(event_id)),
                message_id=_message_id(event.get("smtp-id")),
                status_code=_short(event.get("status")),
                detail=_short(event.get("reason") or event.get("response") or event.get("event")),
            )
        )
    return reports


# --- Postmark -------------------------------------------------------------------------------

POSTMARK_BOUNCE_KINDS = {
    "HardBounce": BounceKind.hard,
    "SoftBounce": BounceKind.soft,
    "Transient": BounceKind.soft,
    "SpamNotification": BounceKind.complaint,
    "SpamComplaint": BounceKind.complaint,
}


def basic_auth_ok(header: str | None, user: str, password: str) -> bool:
    """HTTP Basic credentials equal to (user, password), compared in constant time."""
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        given_user, sep, given_password = (
            base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
        )
    except (binascii.Error, UnicodeDecodeError):
        return False
    user_ok = hmac.compare_digest(given_user.encode(), user.encode())
    password_ok = hmac.compare_digest(given_password.encode(), password.encode())
    return bool(sep) and user_ok and password_ok


def postmark_reports(payload: object) -> list[BounceReport]:
    """Reports in one Postmark webhook call: RecordType Bounce (HardBounce hard; SoftBounce,
    Transient soft; SpamNotification complaint) or SpamComplaint (complaint)."""
    if not isinstance(payload, dict):
        raise Rejected(400, "bad_request", "a Postmark webhook body is a JSON object")
    record_type = payload.get("RecordType")
    if record_type == "SpamComplaint":
        kind: BounceKind | None = BounceKind.complaint
    elif record_type == "Bounce":
        kind = POSTMARK_BOUNCE_KINDS.get(str(payload.get("Type")))
    else:
        kind = None
    recipient = _address(payload.get("Email"))
    event_id = payload.get("ID")
    if kind is None or recipient is None or event_id in (None, ""):
        return []
    return [
        BounceReport(
            kind=kind,
            recipient=recipient,
            source="postmark",
            fingerprint=fingerprint("postmark", str(event_id)),
            detail=_short(payload.get("Details") or payload.get("Description")),
        )
    ]
