"""DKIM signing: keys are checked at start-up, and what reaches a real SMTP server verifies with
dkimpy against the public key served by a local DNS server (tests/dnsstub.py)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import dkim as dkimpy
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from pydantic import ValidationError

from papermail import dkim
from papermail.db import create_tables, make_engine, session_scope
from papermail.dnsrecords import dkim_dnsfunc, make_resolver
from papermail.services import digests
from papermail.services.ingest import ingest_paths
from papermail.services.subscriptions import Preferences, add_subscriber
from papermail.web import mails
from tests.conftest import make_settings
from tests.dnsstub import DNSStub
from tests.dnsstub import dns_stub as dns_stub_fixture

dns_stub = dns_stub_fixture  # the fixture, under its name

DAY = date(2026, 11, 23)
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
DOMAIN = "papermail.test"


@pytest.fixture(scope="module")
def rsa_pem() -> bytes:
    return dkim.generate_key("rsa")


def write(tmp_path: Path, pem: bytes, name: str = "dkim.pem") -> Path:
    path = tmp_path / name
    path.write_bytes(pem)
    return path


def signing_settings(tmp_path: Path, key_file: Path, **overrides):
    return make_settings(
        tmp_path,
        database_url=f"sqlite:///{tmp_path / 'papermail.db'}",
        mail_from=f"papermail <digest@{DOMAIN}>",
        dkim_selector="s1",
        dkim_private_key_file=key_file,
        **overrides,
    )


def smtp_signing_settings(tmp_path: Path, pem: bytes, smtp_server, **overrides):
    """signing_settings() with `pem` written to a key file, mail going to `smtp_server`."""
    return signing_settings(
        tmp_path,
        write(tmp_path, pem),
        mail_backend="smtp",
        smtp_host=smtp_server.host,
        smtp_port=smtp_server.port,
        **overrides,
    )


def verify(data: bytes, stub: DNSStub) -> bool:
    """dkimpy's verdict, its key looked up through the stub over UDP."""
    return dkimpy.verify(data, dnsfunc=dkim_dnsfunc(make_resolver(stub.address)))


def signature_tags(data: bytes) -> dict[str, str]:
    header = data.split(b"\r\n\r\n", 1)[0].decode()
    unfolded = header.replace("\r\n ", " ").replace("\r\n\t", " ")
    line = next(x for x in unfolded.split("\r\n") if x.lower().startswith("dkim-signature:"))
    tags = (t.strip().partition("=") for t in line.split(":", 1)[1].split(";"))
    return {name.strip(): value.replace(" ", "") for name, _, value in tags if name.strip()}


def test_load_key_accepts_rsa_2048_and_ed25519_and_says_why_it_refuses_others(rsa_pem):
    key = dkim.load_key(rsa_pem)
    assert key.algorithm == b"rsa-sha256"
    assert key.txt_record.startswith("v=DKIM1; k=rsa; p=MIIB")
    ed = dkim.load_key(dkim.generate_key("ed25519"))
    assert ed.algorithm == b"ed25519-sha256" and ed.txt_record.startswith("v=DKIM1; k=ed25519; p=")
    assert len(ed.public) == 44  # 32 raw bytes, base64 (RFC 8463)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(dkim.DkimKeyError, match="1024 bits"):
        dkim.load_key(weak)
    with pytest.raises(dkim.DkimKeyError, match="not an unencrypted PEM private key"):
        dkim.load_key(b"-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n")


def test_settings_refuse_a_missing_or_unusable_key_at_start_up(tmp_path):
    with pytest.raises(ValidationError, match=r"DKIM_PRIVATE_KEY_FILE: cannot read .*missing\.pem"):
        signing_settings(tmp_path, tmp_path / "missing.pem")
    garbage = write(tmp_path, b"not a key", "garbage.pem")
    with pytest.raises(ValidationError, match="not an unencrypted PEM private key"):
        signing_settings(tmp_path, garbage)
    with pytest.raises(ValidationError, match="set both DKIM_SELECTOR and DKIM_PRIVATE_KEY_FILE"):
        make_settings(tmp_path, dkim_selector="s1")
    assert make_settings(tmp_path).dkim_selector == ""  # off by default


def test_signing_is_off_by_default_and_the_key_is_read_once(tmp_path, rsa_pem):
    data = b"From: a@papermail.test\r\nTo: b@example.org\r\nSubject: hi\r\n\r\nbody\r\n"
    assert dkim.sign_message(make_settings(tmp_path), data) is data
    settings = signing_settings(tmp_path, write(tmp_path, rsa_pem))
    before = dkim.read_key.cache_info().hits
    dkim.sign_message(settings, data)
    dkim.sign_message(settings, data)
    assert dkim.read_key.cache_info().hits >= before + 2


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_digest_received_over_smtp_verifies_and_a_changed_unsubscribe_does_not(
    tmp_path, seeds_dir, smtp_server, dns_stub, rsa_pem, kind
):
    pem = rsa_pem if kind == "rsa" else dkim.generate_key("ed25519")
    settings = smtp_signing_settings(tmp_path, pem, smtp_server)
    dns_stub.add(f"s1._domainkey.{DOMAIN}", "TXT", dkim.load_key(pem).txt_record)
    engine = make_engine(settings)
    create_tables(engine)
    assert all(
        r.ok
        for r in ingest_paths(engine, sorted(seeds_dir.glob("*.txt")), now=NOW - timedelta(hours=1))
    )
    with session_scope(engine) as session:
        prefs = Preferences(keywords=("linear attention",))
        add_subscriber(session, email="ada@example.org", prefs=prefs, confirmed=True)
    report = digests.score_day(engine, settings, issue_date=DAY, now=NOW)
    assert digests.send_digests(engine, settings, report.to_send).sent == 1
    engine.dispose()

    [mail] = smtp_server.messages
    data = mail.data
    assert data.startswith(b"DKIM-Signature:")
    tags = signature_tags(data)
    signed = tags["h"].split(":")
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject"} <= set(signed)
    assert tags["c"] == "relaxed/relaxed" and tags["d"] == DOMAIN and tags["s"] == "s1"
    assert tags["a"] == ("rsa-sha256" if kind == "rsa" else "ed25519-sha256")
    assert "l" not in tags
    assert verify(data, dns_stub)
    assert (f"s1._domainkey.{DOMAIN}", "TXT") in dns_stub.queries  # the lookup went to the stub

    message = mail.message
    url = message["List-Unsubscribe"]
    assert "https://papermail.test/unsubscribe/" in url
    forged = data.replace(b"/unsubscribe/", b"/unsubscribe/x", 1)
    assert forged != data and not verify(forged, dns_stub)
    dns_stub.remove(f"s1._domainkey.{DOMAIN}")
    assert not verify(data, dns_stub)  # no published key, no valid signature


def test_confirmation_mail_is_signed_too(tmp_path, smtp_server, dns_stub, rsa_pem):
    settings = smtp_signing_settings(
        tmp_path, rsa_pem, smtp_server, dkim_domain="mail.papermail.test"
    )
    dns_stub.add("s1._domainkey.mail.papermail.test", "TXT", dkim.load_key(rsa_pem).txt_record)
    mails.send_confirmation(
        settings, email="new@example.org", subscriber_id=1, version=1, keywords=["llm"]
    )
    [mail] = smtp_server.messages
    assert signature_tags(mail.data)["d"] == "mail.papermail.test"
    assert verify(mail.data, dns_stub)
    assert not verify(mail.data.replace(b"Subject: ", b"Subject: Re: ", 1), dns_stub)


def test_keygen_writes_a_private_key_and_prints_the_record_to_publish(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from papermail.cli import app

    monkeypatch.chdir(tmp_path)  # no .env
    env = {"MAIL_FROM": "papermail <digest@lab.example.org>", "VAR_DIR": str(tmp_path / "var")}
    out = tmp_path / "keys" / "s2.pem"
    out.parent.mkdir()
    result = CliRunner().invoke(
        app, ["dkim", "keygen", "--selector", "s2", "--out", str(out)], env=env
    )
    assert result.exit_code == 0, result.output
    assert out.stat().st_mode & 0o077 == 0  # only the owner reads the key
    key = dkim.load_key(out.read_bytes())
    record_line = next(x for x in result.output.splitlines() if "IN TXT" in x)
    assert record_line.startswith("s2._domainkey.lab.example.org. IN TXT ")
    strings = record_line.split("IN TXT ", 1)[1]
    assert all(len(s) <= 255 for s in strings.strip('"').split('" "'))  # one zone-file string each
    assert strings.replace('" "', "").strip('"') == key.txt_record
    assert f"DKIM_PRIVATE_KEY_FILE={out}" in result.output
    again = CliRunner().invoke(
        app, ["dkim", "keygen", "--selector", "s2", "--out", str(out)], env=env
    )
    assert again.exit_code != 0 and key == dkim.load_key(out.read_bytes())  # never overwritten
