"""papermail.bounces: VERP tokens and the parsing of hand-written report samples in the styles
of Gmail, Outlook, Postfix, Exim, qmail, Yahoo and AOL (tests/data/bounces)."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from papermail.bounces import (
    BounceReport,
    digest_sender,
    make_verp_token,
    parse_report,
    read_verp_address,
    read_verp_token,
    verp_address,
)
from papermail.models import BounceKind
from tests.conftest import make_settings

SAMPLES = Path(__file__).parent / "data" / "bounces"
SECRET = "test-secret-key"  # conftest's make_settings: the samples' VERP tokens are signed with it
DOMAIN = "bounce.papermail.test"

# sample -> (kind, recipient, status, subscriber id from its VERP token, our Message-ID)
EXPECTED = {
    "gmail_5.1.1.eml": (BounceKind.hard, "ghost.reader@gmail.com", "5.1.1", 1, "1.a1b2c3"),
    "outlook_5.1.10.eml": (BounceKind.hard, "j.doe@contoso.com", "5.1.10", 2, "2.d4e5f6"),
    "postfix_5.1.1.eml": (BounceKind.hard, "former.student@uni.example", "5.1.1", 3, "3.a7b8c9"),
    "exim_plain.eml": (BounceKind.hard, "bob@exim.example", "5.1.1", 4, "4.0a1b2c"),
    "qmail_plain.eml": (BounceKind.hard, "carol@qmail.example", "5.1.1", 5, "5.3d4e5f"),
    "yahoo_arf.eml": (BounceKind.complaint, "dave@yahoo.com", None, 6, "6.6e7f80"),
    "aol_arf_redacted.eml": (BounceKind.complaint, "", None, 7, "7.91a2b3"),
    "soft_4.2.2_mailbox_full.eml": (
        BounceKind.soft,
        "full.box@example.net",
        "4.2.2",
        None,
        "8.b4c5d6",
    ),
}


def parse(name: str, **kwargs) -> list[BounceReport]:
    data = (SAMPLES / name).read_bytes()
    return parse_report(data, secret=kwargs.pop("secret", SECRET), bounce_domain=DOMAIN, **kwargs)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_sample_says_who_bounced_how(name):
    kind, recipient, status, subscriber_id, message_id = EXPECTED[name]
    [report] = parse(name)
    assert report.kind == kind
    assert report.recipient == recipient
    assert report.status_code == status
    assert report.subscriber_id == subscriber_id
    assert report.message_id == f"<digest-20261201-{message_id}@papermail.test>"
    assert report.source == ("arf" if kind == BounceKind.complaint else "dsn")
    assert len(report.fingerprint) == 64 and int(report.fingerprint, 16) >= 0
    assert report.detail and len(report.detail) <= 300


def test_details_carry_the_servers_words():
    assert "RecipientNotFound" in parse("outlook_5.1.10.eml")[0].detail
    assert "Mailbox full" in parse("soft_4.2.2_mailbox_full.eml")[0].detail
    assert "no mailbox here" in parse("qmail_plain.eml")[0].detail
    assert parse("yahoo_arf.eml")[0].detail == "Feedback-Type: abuse (Yahoo!-Mail-Feedback/2.0)"


@pytest.mark.parametrize("name", ["autoreply.eml", "spam.eml"])
def test_mail_that_is_no_report_gives_nothing(name):
    assert parse(name) == []


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x00\xff\xfe garbage \x80",
        b"From: x\n\n",
        b"Content-Type: multipart/report\n\n--",
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=a\n\n--a\n"
        b"Content-Type: message/delivery-status\n\nFinal-Recipient: ;;;\nAction: \n--a--\n",
    ],
)
def test_garbage_never_crashes(data):
    assert parse_report(data, secret=SECRET, bounce_domain=DOMAIN) == []


@hsettings(max_examples=150, deadline=None)
@given(st.binary(max_size=600))
def test_any_bytes_parse_to_a_list(data):
    """Including sample prefixes cut at random: a list of reports, never an exception."""
    sample = (SAMPLES / "postfix_5.1.1.eml").read_bytes()
    for blob in (data, sample[: len(data) * 4] + data):
        reports = parse_report(blob, secret=SECRET, bounce_domain=DOMAIN)
        assert isinstance(reports, list)
        assert all(isinstance(r, BounceReport) for r in reports)


def test_a_forged_or_foreign_verp_token_is_not_trusted():
    genuine = (SAMPLES / "gmail_5.1.1.eml").read_bytes()
    forged = genuine.replace(b"bounces+1-1-tgmsvj5nlqnw5hyz", b"bounces+9-1-tgmsvj5nlqnw5hyz")
    [report] = parse_report(forged, secret=SECRET, bounce_domain=DOMAIN)
    assert report.subscriber_id is None and report.recipient == "ghost.reader@gmail.com"
    [other_key] = parse("gmail_5.1.1.eml", secret="another-secret")
    assert other_key.subscriber_id is None
    [report] = parse_report(genuine, secret=SECRET, bounce_domain="elsewhere.test")
    assert report.subscriber_id is None


def test_the_envelope_recipient_given_by_the_mta_verifies_the_subscriber():
    data = (SAMPLES / "soft_4.2.2_mailbox_full.eml").read_bytes()
    envelope = verp_address(SECRET, DOMAIN, 8, 8)
    [report] = parse_report(
        data, secret=SECRET, bounce_domain=DOMAIN, envelope_recipients=[envelope]
    )
    assert report.subscriber_id == 8 and report.kind == BounceKind.soft


def test_the_same_report_twice_has_one_fingerprint():
    """A DSN delivered twice (another Received line on top) or redelivered by the MTA."""
    data = (SAMPLES / "postfix_5.1.1.eml").read_bytes()
    again = b"Received: from relay2.papermail.test by mx.papermail.test; Tue, 1 Dec 2026\n" + data
    assert parse_report(data, secret=SECRET, bounce_domain=DOMAIN) == parse_report(
        again, secret=SECRET, bounce_domain=DOMAIN
    )
    hard = parse("gmail_5.1.1.eml")[0].fingerprint
    soft = parse("soft_4.2.2_mailbox_full.eml")[0].fingerprint
    assert len({hard, soft, parse("yahoo_arf.eml")[0].fingerprint}) == 3


def test_verp_tokens_round_trip_and_refuse_tampering():
    token = make_verp_token(SECRET, 42, 1234)
    assert token.startswith("42-1234-") and token == token.lower() and len(token) < 40
    assert read_verp_token(SECRET, token).subscriber_id == 42
    assert read_verp_token(SECRET, token).digest_id == 1234
    assert read_verp_token(SECRET, token.upper()).subscriber_id == 42  # case folded on the way
    assert read_verp_token(SECRET, make_verp_token(SECRET, 42)).digest_id is None
    for bad in (token.replace("42-", "43-"), token[:-1], token + "a", "42-1234", "", "x-y-z"):
        assert read_verp_token(SECRET, bad) is None, bad
    assert read_verp_token("other", token) is None
    address = verp_address(SECRET, DOMAIN, 42, 1234)
    assert read_verp_address(SECRET, DOMAIN.upper(), f"Bounces <{address}>").subscriber_id == 42
    assert read_verp_address(SECRET, DOMAIN, address.replace("bounces+", "abuse+")) is None
    assert read_verp_address(SECRET, DOMAIN, "digest@papermail.test") is None


def test_digest_sender_is_verp_only_with_a_bounce_domain(tmp_path):
    plain = make_settings(tmp_path, mail_from="papermail <digest@papermail.test>")
    assert digest_sender(plain, 3, 9) == "papermail <digest@papermail.test>"
    verp = make_settings(tmp_path, bounce_domain=DOMAIN)
    sender = digest_sender(verp, 3, 9)
    assert sender.startswith("bounces+3-9-") and sender.endswith("@" + DOMAIN)
    assert read_verp_address(SECRET, DOMAIN, sender).subscriber_id == 3
