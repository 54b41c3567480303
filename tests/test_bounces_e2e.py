"""End to end: digests delivered through a real aiosmtpd relay carry each subscriber's VERP
envelope sender; the DSN a provider sends back to one of those addresses, delivered to the
bounce endpoint, suspends exactly that subscriber. Confirmation mail keeps the plain sender."""

from __future__ import annotations

import smtplib
from datetime import UTC, date, datetime, timedelta
from email.utils import parseaddr

from sqlmodel import Session, select

from papermail.bounce_server import BounceController, BounceHandler
from papermail.bounces import read_verp_address
from papermail.models import BounceEvent, Delivery, Digest
from papermail.services import delivery, digests
from papermail.services.ingest import ingest_paths
from papermail.web.mails import send_confirmation
from tests.bounces_support import DOMAIN, SECRET, subscribe, subscriber
from tests.conftest import free_port, make_settings

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def postfix_dsn(bounce_address: str, recipient: str, original: bytes) -> bytes:
    """What Postfix sends back when the recipient's mailbox no longer exists."""
    headers = original.split(b"\r\n\r\n", 1)[0].decode()
    text = f"""\
Return-Path: <>
Delivered-To: {bounce_address}
From: MAILER-DAEMON@mx.example.org (Mail Delivery System)
To: {bounce_address}
Subject: Undelivered Mail Returned to Sender
Date: Mon, 23 Nov 2026 08:01:00 +0000 (UTC)
Message-Id: <20261123080100.ABC123@mx.example.org>
Auto-Submitted: auto-replied
MIME-Version: 1.0
Content-Type: multipart/report; report-type=delivery-status; boundary="B/mx"

--B/mx
Content-Type: text/plain; charset=us-ascii

<{recipient}>: host mx.example.org said: 550 5.1.1 <{recipient}>: User unknown

--B/mx
Content-Type: message/delivery-status

Reporting-MTA: dns; mx.example.org

Final-Recipient: rfc822; {recipient}
Action: failed
Status: 5.1.1
Diagnostic-Code: smtp; 550 5.1.1 <{recipient}>: User unknown

--B/mx
Content-Type: text/rfc822-headers

{headers}

--B/mx--
"""
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()


def test_a_digests_verp_address_brings_its_dsn_back_to_exactly_that_subscriber(
    engine, settings, smtp_server, seeds_dir
):
    config = settings.model_copy(
        update={
            "mail_backend": "smtp",
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "bounce_domain": DOMAIN,
            "send_empty_digests": True,
        }
    )
    page = seeds_dir / "daily-papers-1.txt"
    assert all(r.ok for r in ingest_paths(engine, [page], now=NOW - timedelta(hours=1)))
    ada, bob = subscribe(engine, "ada@example.org", "bob@example.org")
    to_send = digests.score_day(engine, config, issue_date=DAY, now=NOW).to_send
    assert delivery.send_digests(engine, config, to_send).sent == 2

    received = {mail.rcpt_tos[0]: mail for mail in smtp_server.messages}
    with Session(engine) as session:
        stored = {
            d.subscriber_id: (d.id, m)
            for d, m in session.exec(select(Digest, Delivery.message_id).join(Delivery))
        }
    for subscriber_id, email in ((ada, "ada@example.org"), (bob, "bob@example.org")):
        mail = received[email]
        token = read_verp_address(SECRET, DOMAIN, mail.mail_from)
        assert token is not None, mail.mail_from
        assert (token.subscriber_id, token.digest_id) == (subscriber_id, stored[subscriber_id][0])
        assert parseaddr(str(mail.message["From"]))[1] == parseaddr(config.mail_from)[1]
        assert mail.message["Message-ID"] == stored[subscriber_id][1]

    # Ada's mailbox is gone: her provider's DSN goes to the Return-Path, then to our endpoint.
    ada_mail = received["ada@example.org"]
    dsn = postfix_dsn(ada_mail.mail_from, "ada@example.org", ada_mail.data)
    port = free_port()
    controller = BounceController(BounceHandler(engine, config), hostname="127.0.0.1", port=port)
    controller.start()
    try:
        with smtplib.SMTP("127.0.0.1", port, timeout=30) as client:
            client.ehlo("mx.example.org")
            client.mail("")
            assert client.rcpt(ada_mail.mail_from)[0] == 250
            code, reply = client.data(dsn)
    finally:
        controller.stop()
    assert code == 250 and b"hard 5.1.1 ada@example.org: suspended" in reply
    assert subscriber(engine, ada).suspended_at is not None
    assert subscriber(engine, bob).active
    with Session(engine) as session:
        [event] = session.exec(select(BounceEvent)).all()
    assert (event.subscriber_id, event.message_id) == (ada, stored[ada][1])


def test_confirmation_mail_keeps_the_plain_envelope_sender(tmp_path, smtp_server):
    config = make_settings(
        tmp_path,
        mail_backend="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        bounce_domain=DOMAIN,
    )
    send_confirmation(config, email="new@example.org", subscriber_id=5, version=0, keywords=["x"])
    [mail] = smtp_server.messages
    assert mail.mail_from == parseaddr(config.mail_from)[1]
