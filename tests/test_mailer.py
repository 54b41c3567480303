"""Delivery edge against real SMTP servers (aiosmtpd) and a real outbox folder."""

from __future__ import annotations

import random
import smtplib
import socket
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from threading import Lock
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from hypothesis import given
from hypothesis import strategies as st

from papermail.emails import RenderedEmail, build_message, make_message_id
from papermail.errors import DeliveryError
from papermail.mailer import (
    OutboxMailer,
    OutgoingMail,
    SMTPMailer,
    envelope_address,
    make_mailer,
    stuff_dots,
)
from papermail.settings import Settings
from tests.conftest import free_port

SENDER = "papermail <digest@papers.example.org>"


def mail(recipient: str = "reader@example.org", n: int = 0) -> OutgoingMail:
    rendered = RenderedEmail(f"Digest {n} · für dich", f"<p>Paper {n} ▲</p>", f"Paper {n} ▲")
    message_id = make_message_id("papers.example.org")
    data = build_message(
        rendered,
        sender=SENDER,
        recipient=recipient,
        message_id=message_id,
        unsubscribe_url=f"https://papers.example.org/unsubscribe/t{n}",
        unsubscribe_mailto="unsubscribe@papers.example.org",
    )
    return OutgoingMail(SENDER, recipient, message_id, data, html=rendered.html)


def smtp_settings(host: str, port: int, **overrides: Any) -> Settings:
    fields: dict[str, Any] = {"smtp_host": host, "smtp_port": port, "smtp_timeout": 5}
    return Settings(mail_backend="smtp", **(fields | overrides))


class CountingSMTPMailer(SMTPMailer):
    """Counts real connection attempts (each opens one TCP session to the server)."""

    connects = 0

    def connect(self) -> Any:
        self.connects += 1
        return super().connect()


# --- outbox ------------------------------------------------------------------------------------


def test_outbox_writes_eml_and_html_preview(tmp_path: Path) -> None:
    outbox = OutboxMailer(tmp_path / "outbox")
    one, two = mail("Jörg <jorg+papers@example.org>", 1), mail("b/../x@example.org", 2)
    with outbox.connection() as conn:
        eml = conn.send(one)
        second = conn.send(two)
        bare = conn.send(OutgoingMail(SENDER, "c@example.org", "<x@y>", one.data))
    assert eml is not None and eml.read_bytes() == one.data
    assert eml.with_suffix(".html").read_text(encoding="utf-8") == one.html
    assert eml.parent == tmp_path / "outbox"
    assert eml.name.endswith(".eml") and "-jorg+papers@example.org-" in eml.name
    assert second is not None and second.parent == eml.parent and "/" not in second.name[:-4]
    assert bare is not None and not bare.with_suffix(".html").exists()
    names = sorted(p.name for p in eml.parent.iterdir())
    assert len(names) == 5 and not any(n.startswith(".") for n in names)  # no temp files left


def test_make_mailer_follows_settings(tmp_path: Path) -> None:
    assert isinstance(make_mailer(Settings(var_dir=tmp_path)), OutboxMailer)
    outbox = make_mailer(Settings(var_dir=tmp_path))
    assert isinstance(outbox, OutboxMailer) and outbox.directory == tmp_path / "outbox"
    assert isinstance(make_mailer(smtp_settings("127.0.0.1", 2525)), SMTPMailer)


# --- SMTP against the shared collecting server -------------------------------------------------


def test_smtp_batch_uses_one_connection(smtp_server: Any) -> None:
    mailer = CountingSMTPMailer(smtp_settings(smtp_server.host, smtp_server.port))
    sent = [mail(f"r{n}@example.org", n) for n in range(3)]
    with mailer.connection() as conn:
        for m in sent:
            conn.send(m)
    assert mailer.connects == 1
    received = smtp_server.messages
    assert len(received) == 3
    for m, got in zip(sent, received, strict=True):
        assert got.mail_from == "digest@papers.example.org"
        assert got.rcpt_tos == [m.recipient]
        assert got.data.rstrip(b"\r\n") == m.data.rstrip(b"\r\n")
        msg = got.message
        assert msg["Message-ID"] == m.message_id
        assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert msg.get_body(("html",)).get_content().strip() == m.html  # type: ignore[union-attr]


def test_smtp_server_down_is_a_temporary_error() -> None:
    port = free_port()  # nothing listens there
    mailer = SMTPMailer(smtp_settings("127.0.0.1", port))
    with pytest.raises(DeliveryError) as info, mailer.connection() as conn:
        conn.send(mail())
    assert info.value.permanent is False
    assert f"127.0.0.1:{port}" in str(info.value)


def test_smtp_server_that_never_answers_times_out() -> None:
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()  # accepts the TCP handshake, never greets
        port = silent.getsockname()[1]
        mailer = SMTPMailer(smtp_settings("127.0.0.1", port, smtp_timeout=0.3))
        with pytest.raises(DeliveryError) as info, mailer.connection() as conn:
            conn.send(mail())
    message = str(info.value)
    assert message.startswith(f"cannot reach SMTP server 127.0.0.1:{port}: ")
    assert message.endswith("timed out")
    assert info.value.permanent is False


def test_login_failure_never_shows_the_password(smtp_server: Any) -> None:
    settings = smtp_settings(
        smtp_server.host, smtp_server.port, smtp_username="me", smtp_password="hunter2-secret"
    )
    with pytest.raises(DeliveryError) as info, SMTPMailer(settings).connection() as conn:
        conn.send(mail())
    assert f"{smtp_server.host}:{smtp_server.port}" in str(info.value)
    assert "hunter2" not in str(info.value) and "hunter2" not in repr(info.value.args)
    assert smtp_server.messages == []


def test_lines_starting_with_a_dot_arrive_intact(smtp_server: Any) -> None:
    """DATA is dot-stuffed by our own code (smtplib's regex was the client's main cost)."""
    rng = random.Random(7)
    pieces = [".", "..", ".x", "a", "", " .", "·.", "=2E", "x" * 90, ".\r\n.", "\r."]
    sent = []
    for n in range(30):
        body = "\n".join(rng.choice(pieces) for _ in range(rng.randint(0, 12)))
        rendered = RenderedEmail(f"s{n}", body, body)
        data = build_message(
            rendered,
            sender=SENDER,
            recipient=f"r{n}@example.org",
            message_id=make_message_id("papers.example.org"),
        )
        sent.append(OutgoingMail(SENDER, f"r{n}@example.org", "<m>", data))
    sent.append(OutgoingMail(SENDER, "raw@example.org", "<m>", b".\r\n..a\r\nno end"))
    with SMTPMailer(smtp_settings(smtp_server.host, smtp_server.port)).connection() as conn:
        for m in sent:
            conn.send(m)
    received = smtp_server.messages
    assert [r.data for r in received[:-1]] == [m.data for m in sent[:-1]]
    assert received[-1].data.rstrip(b"\r\n") == b".\r\n..a\r\nno end"


@given(st.binary(max_size=200) | st.text(".\r\na", max_size=30).map(str.encode))
def test_stuff_dots_is_smtplibs_quoting(data: bytes) -> None:
    assert stuff_dots(data) == smtplib._quote_periods(data)  # type: ignore[attr-defined]


def test_envelope_addresses() -> None:
    assert envelope_address("papermail <digest@x.org>") == "digest@x.org"
    assert envelope_address("Jörg <jorg@bücher.example>") == "jorg@xn--bcher-kva.example"
    for bad in ("jörg@example.org", "nobody", "@example.org"):
        with pytest.raises(DeliveryError) as info:
            envelope_address(bad)
        assert info.value.permanent is True


# --- SMTP against a picky server -----------------------------------------------------------------


@dataclass
class PickyHandler:
    """Refuses some recipients, closes once on MAIL if asked, records each message's peer."""

    close_next_mail: bool = False
    peers: list[tuple[str, int]] = field(default_factory=list)
    lock: Lock = field(default_factory=Lock)

    async def handle_MAIL(self, server, session, envelope, address, options) -> str:
        if self.close_next_mail:
            self.close_next_mail = False
            return "421 4.3.2 Service shutting down, closing channel"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(self, server, session, envelope, address, options) -> str:
        if address.startswith("gone@"):
            return "550 5.1.1 <gone@example.org>: mailbox unavailable"
        if address.startswith("busy@"):
            return "452 4.2.2 mailbox full, try later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope) -> str:
        with self.lock:
            self.peers.append(session.peer)
        return "250 Message accepted"


@pytest.fixture
def picky() -> Iterator[tuple[PickyHandler, int]]:
    handler = PickyHandler()
    port = free_port()
    controller = Controller(handler, hostname="127.0.0.1", port=port, timeout=0.5)
    controller.start()
    try:
        yield handler, port
    finally:
        controller.stop()


def test_refused_recipients_are_permanent_or_temporary_by_code(
    picky: tuple[PickyHandler, int],
) -> None:
    handler, port = picky
    mailer = CountingSMTPMailer(smtp_settings("127.0.0.1", port))
    with mailer.connection() as conn:
        with pytest.raises(DeliveryError) as gone:
            conn.send(mail("gone@example.org"))
        with pytest.raises(DeliveryError) as busy:
            conn.send(mail("busy@example.org"))
        conn.send(mail("fine@example.org"))  # the session survives refusals
    assert gone.value.permanent is True and "550 5.1.1" in str(gone.value)
    assert busy.value.permanent is False and "452 4.2.2" in str(busy.value)
    assert f"127.0.0.1:{port}" in str(gone.value)
    assert mailer.connects == 1 and len(handler.peers) == 1


def test_dropped_connection_mid_batch_reconnects_once(picky: tuple[PickyHandler, int]) -> None:
    handler, port = picky
    mailer = CountingSMTPMailer(smtp_settings("127.0.0.1", port))
    with mailer.connection() as conn:
        conn.send(mail(n=1))
        conn.send(mail(n=2))
        time.sleep(0.8)  # the server's 0.5 s idle timeout closes the session silently
        conn.send(mail(n=3))
        handler.close_next_mail = True  # and now a polite "421 closing channel"
        conn.send(mail(n=4))
    assert mailer.connects == 3
    peers = handler.peers
    assert len(peers) == 4 and peers[0] == peers[1] != peers[2] != peers[3]
