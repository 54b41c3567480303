"""The ways of building a digest's MIME bytes that were measured against ``build_message``.

Each takes the same arguments as ``build_message`` and returns SMTP-ready bytes; ``check``
parses one result back so that no variant is timed while producing something wrong.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Callable
from email import message_from_bytes, policy
from email.charset import QP, Charset
from email.header import Header
from email.message import EmailMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.utils import format_datetime
from typing import Any

from papermail.emails import RenderedEmail, build_message, build_message_stdlib

Builder = Callable[..., bytes]
_BOUNDARY = re.compile(rb'boundary="([^"]+)"')
_UTF8_QP = Charset("utf-8")
_UTF8_QP.body_encoding = QP


def _crlf_lines(text: str) -> bytes:
    data = text.replace("\r\n", "\n").replace("\r", "\n").replace("\n", "\r\n").encode("utf-8")
    return data if data.endswith(b"\r\n") else data + b"\r\n"


def _whole_qp(text: str) -> bytes:
    return binascii.b2a_qp(_crlf_lines(text))


def _base64(text: str) -> bytes:
    encoded = binascii.b2a_base64(text.encode("utf-8"), newline=False)
    return b"".join(encoded[i : i + 76] + b"\r\n" for i in range(0, len(encoded), 76))


def _skeleton(encode: Callable[[str], bytes], cte: bytes) -> Builder:
    """``build_message``'s headers (built for empty bodies) around other body encodings."""

    def build(rendered: RenderedEmail, **kwargs: Any) -> bytes:
        shell = build_message(RenderedEmail(rendered.subject, "", ""), **kwargs)
        head = shell.partition(b"\r\n\r\n")[0]
        match = _BOUNDARY.search(head)
        assert match is not None
        delimiter = b"\r\n\r\n--" + match.group(1) + b"\r\n"
        part = b'Content-Type: text/%s; charset="utf-8"\r\nContent-Transfer-Encoding: ' + cte
        return b"".join(
            (
                head,
                delimiter,
                part % b"plain",
                b"\r\n\r\n",
                encode(rendered.text),
                delimiter[2:],
                part % b"html",
                b"\r\n\r\n",
                encode(rendered.html),
                delimiter[2:-2],
                b"--\r\n",
            )
        )

    return build


def email_message_default(rendered: RenderedEmail, **kwargs: Any) -> bytes:
    """``EmailMessage`` under ``policy.default``, serialized with CRLF: the textbook way."""
    msg = EmailMessage()
    msg["From"] = kwargs["sender"]
    msg["To"] = kwargs["recipient"]
    msg["Subject"] = rendered.subject
    msg["Date"] = format_datetime(kwargs["date"])
    msg["Message-ID"] = kwargs["message_id"]
    msg["List-Unsubscribe"] = f"<{kwargs['unsubscribe_url']}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.set_content(rendered.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(rendered.html, subtype="html", charset="utf-8", cte="quoted-printable")
    return msg.as_bytes(policy=policy.SMTP)


def email_mime(rendered: RenderedEmail, **kwargs: Any) -> bytes:
    """The legacy ``email.mime`` classes (compat32), quoted-printable UTF-8 parts."""
    msg = MIMEMultipart("alternative")
    msg["From"] = kwargs["sender"]
    msg["To"] = kwargs["recipient"]
    msg["Subject"] = Header(rendered.subject, "utf-8")
    msg["Date"] = format_datetime(kwargs["date"])
    msg["Message-ID"] = kwargs["message_id"]
    msg["List-Unsubscribe"] = f"<{kwargs['unsubscribe_url']}>"
    msg["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    msg.attach(MIMEText(rendered.text, "plain", _UTF8_QP))  # type: ignore[arg-type]
    msg.attach(MIMEText(rendered.html, "html", _UTF8_QP))  # type: ignore[arg-type]
    return msg.as_bytes(policy=policy.compat32.clone(linesep="\r\n"))


# name -> (builder, note); the first is what papermail uses.
VARIANTS: dict[str, tuple[Builder, str]] = {
    "skeleton + QP per line, memoised (used)": (build_message, "build_message"),
    "skeleton + b2a_qp per body": (_skeleton(_whole_qp, b"quoted-printable"), "~7 ns/byte"),
    "skeleton + base64": (_skeleton(_base64, b"base64"), "+33% bytes; spam filters frown"),
    "email.mime (compat32)": (email_mime, ""),
    "EmailMessage, policy.SMTP": (build_message_stdlib, "the old build_message"),
    "EmailMessage, policy.default": (email_message_default, ""),
}


def _normalized(text: str) -> str:
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text if text.endswith("\n") else text + "\n"


def check(builder: Builder, rendered: RenderedEmail, **kwargs: Any) -> None:
    """The bytes parse back to the rendered text and HTML, with CRLF lines of <= 998 octets."""
    data = builder(rendered, **kwargs)
    lines = data.split(b"\r\n")
    if any(b"\n" in line or b"\r" in line or len(line) > 998 for line in lines):
        raise AssertionError(f"{builder}: bare line ends or a line over 998 octets")
    msg = message_from_bytes(data, policy=policy.default)
    parts = [part.get_content() for part in msg.iter_parts()]  # type: ignore[attr-defined]
    got = [_normalized(part) for part in parts]
    if got != [_normalized(rendered.text), _normalized(rendered.html)]:
        raise AssertionError(f"{builder}: the parts do not parse back to what was rendered")
