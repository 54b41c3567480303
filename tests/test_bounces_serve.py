"""`papermail bounces serve` started for real (a subprocess), report samples delivered to it
with smtplib over SMTP and LMTP, the database checked afterwards; 451 when the database is
away, 550 for an address on another domain."""

from __future__ import annotations

import re
import select
import smtplib
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes

import pytest
from sqlmodel import Session
from sqlmodel import select as sql_select

from papermail.bounce_server import BounceController, BounceHandler
from papermail.db import make_engine
from papermail.models import BounceEvent
from tests.bounces_support import (
    DOMAIN,
    PAPERMAIL,
    cli_env,
    sample_bytes,
    sent_digest,
    subscribe,
    subscriber,
)
from tests.conftest import free_port, make_settings

HARD = ["gmail_5.1.1.eml", "outlook_5.1.10.eml", "postfix_5.1.1.eml", "exim_plain.eml"]


def crlf(data: bytes) -> bytes:
    return data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")


def verp_of(name: str) -> str:
    """The bounce address a sample was delivered to (its To header)."""
    to = message_from_bytes(sample_bytes(name))["To"]
    return re.search(r"bounces\+[^@\s>]+@[\w.]+", to).group(0)


@contextmanager
def bounce_server(env, cwd, *args: str) -> Iterator[int]:
    """`papermail bounces serve` on a free port, until the test is done (SIGTERM)."""
    port = free_port()
    proc = subprocess.Popen(
        [str(PAPERMAIL), "bounces", "serve", "--port", str(port), *args],
        env=env,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        if f":{port} for @{DOMAIN}" not in line:
            proc.kill()
            pytest.fail(f"bounces serve did not start: {line!r} {proc.stderr.read()}")
        yield port
    finally:
        proc.terminate()
        assert proc.wait(timeout=20) == 0, proc.stderr.read()


def deliver(client: smtplib.SMTP, rcpt: str, data: bytes) -> tuple[int, str]:
    """One mail from the null sender, as MTAs send bounces; the reply to DATA."""
    client.ehlo_or_helo_if_needed()
    assert client.mail("")[0] == 250
    code, text = client.rcpt(rcpt)
    if code != 250:
        client.rset()
        return code, text.decode()
    code, text = client.data(crlf(data))
    return code, text.decode()


def test_smtp_endpoint_records_each_report_before_answering(engine, settings, tmp_path):
    ids = subscribe(engine, *(f"reader{n}@example.org" for n in range(1, 6)))
    assert ids == [1, 2, 3, 4, 5]  # the samples' VERP tokens name subscribers 1 to 4
    with (
        bounce_server(cli_env(settings), tmp_path) as port,
        smtplib.SMTP("127.0.0.1", port, timeout=30) as client,
    ):
        replies = [deliver(client, verp_of(name), sample_bytes(name)) for name in HARD]
        refused = deliver(client, "postmaster@elsewhere.test", sample_bytes(HARD[0]))
        again = deliver(client, verp_of(HARD[0]), sample_bytes(HARD[0]))
        spam = deliver(client, verp_of("spam.eml"), sample_bytes("spam.eml"))
    assert [code for code, _ in replies] == [250] * 4
    assert "hard 5.1.1 ghost.reader@gmail.com: suspended" in replies[0][1]
    assert "hard 5.1.10 j.doe@contoso.com: suspended" in replies[1][1]
    assert refused[0] == 550 and "not a bounce address" in refused[1]
    assert again == (250, "2.0.0 1 already recorded")
    assert spam[0] == 250 and "not a bounce" in spam[1]
    assert [subscriber(engine, i).suspended_at is not None for i in ids] == [True] * 4 + [False]
    with Session(engine) as session:
        stored = session.exec(sql_select(BounceEvent.subscriber_id, BounceEvent.action)).all()
    assert sorted(stored) == [(i, "suspended") for i in ids[:4]]


def test_lmtp_endpoint_takes_a_complaint(engine, settings, tmp_path):
    (dave,) = subscribe(engine, "dave@yahoo.com")
    sent_digest(engine, dave, "yahoo_arf.eml")
    with bounce_server(cli_env(settings), tmp_path, "--lmtp") as port:
        client = smtplib.LMTP()
        client.connect("127.0.0.1", port)
        try:
            code, text = deliver(client, f"fbl@{DOMAIN}", sample_bytes("yahoo_arf.eml"))
        finally:
            client.quit()
    assert code == 250 and "complaint dave@yahoo.com: unsubscribed" in text
    assert subscriber(engine, dave).unsubscribed_at is not None


def test_a_database_error_answers_451_so_the_mta_keeps_the_mail(tmp_path):
    """The database is down: nothing is lost, the MTA is told to try again later."""
    down = make_settings(
        tmp_path,
        database_url=f"postgresql+psycopg://papermail@127.0.0.1:{free_port()}/nowhere",
        bounce_domain=DOMAIN,
    )
    engine = make_engine(down)
    port = free_port()
    controller = BounceController(BounceHandler(engine, down), hostname="127.0.0.1", port=port)
    controller.start()
    started = time.monotonic()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            code, text = deliver(client, verp_of(HARD[0]), sample_bytes(HARD[0]))
    finally:
        controller.stop()
        engine.dispose()
    assert code == 451 and "try again later" in text
    assert time.monotonic() - started < 20


def test_lmtp_answers_once_per_recipient_after_data(engine, settings):
    """RFC 2033: one reply per accepted recipient after DATA (smtplib's LMTP reads only one)."""
    ids = subscribe(engine, *(f"reader{n}@example.org" for n in range(1, 5)))
    config = settings.model_copy(update={"bounce_domain": DOMAIN})
    port = free_port()
    handler = BounceHandler(engine, config, lmtp=True)
    controller = BounceController(handler, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
            replies = sock.makefile("rb")

            def say(line: bytes) -> bytes:
                sock.sendall(line + b"\r\n")
                return replies.readline()

            assert replies.readline().startswith(b"220")
            sock.sendall(b"LHLO mx.papermail.test\r\n")
            while not replies.readline().startswith(b"250 "):
                pass
            assert say(b"MAIL FROM:<>").startswith(b"250")
            for name in ("postfix_5.1.1.eml", "exim_plain.eml"):
                assert say(f"RCPT TO:<{verp_of(name)}>".encode()).startswith(b"250")
            assert say(b"DATA").startswith(b"354")
            sock.sendall(crlf(sample_bytes("postfix_5.1.1.eml")) + b".\r\n")
            answers = [replies.readline(), replies.readline()]
            sock.sendall(b"QUIT\r\n")
    finally:
        controller.stop()
    assert all(a.startswith(b"250 2.0.0 hard 5.1.1 former.student@uni.example") for a in answers)
    assert subscriber(engine, ids[2]).suspended_at is not None  # the report's own VERP: 3
