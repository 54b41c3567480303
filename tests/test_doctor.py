"""`papermail doctor` against real parts: an aiosmtpd relay with STARTTLS (a certificate from a
CA made here, trusted through SSL_CERT_FILE) and AUTH, the web app served by uvicorn, the DNS
stub with SPF/DKIM/DMARC records, a private redis-server and a migrated SQLite database.
A working installation gives ok on every line and exit 0; broken ones name each fault."""

from __future__ import annotations

import ipaddress
import json
import sqlite3
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from typer.testing import CliRunner

from papermail import dkim, doctor
from papermail.cli import app as cli_app
from papermail.db import create_tables, make_engine, session_scope
from papermail.dnsrecords import make_resolver
from papermail.doctor import Status
from papermail.doctor_probes import AsConfigured, run_checks, spf_allows
from papermail.models import JobRun
from papermail.web.app import create_app
from tests.conftest import CollectingHandler, free_port, make_settings
from tests.dnsstub import DNSStub
from tests.dnsstub import dns_stub as dns_stub_fixture
from tests.live_server import serving

dns_stub = dns_stub_fixture  # the fixture, under its name

DOMAIN = "papermail.test"
USER, PASSWORD = "papermail", "relay-password-1"
STRONG_SECRET = "Vq3pX9-tLk2Rz8wYb4Nc7Hd1Jf6Gm0Ps5Ua"
NOW = datetime.now(UTC)


# --- a relay with STARTTLS and AUTH --------------------------------------------------------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory) -> tuple[Path, Path, Path]:
    """A CA and a certificate for 127.0.0.1 it signed: (ca.pem, cert.pem, key.pem)."""
    where = tmp_path_factory.mktemp("tls")
    start = datetime.now(UTC) - timedelta(days=1)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca = (
        x509.CertificateBuilder()
        .subject_name(_name("papermail test CA"))
        .issuer_name(_name("papermail test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), True
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("127.0.0.1"))
        .issuer_name(ca.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = where / "ca.pem", where / "cert.pem", where / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


@dataclass
class Relay:
    port: int
    handler: CollectingHandler
    logins: list[tuple[str, bool]]


@pytest.fixture
def relay(tls_files, monkeypatch) -> Iterator[Relay]:
    """aiosmtpd that requires STARTTLS before anything and AUTH (LOGIN/PLAIN) for mail; the
    test's CA is the only one the doctor trusts (SSL_CERT_FILE)."""
    ca, cert, key = tls_files
    monkeypatch.setenv("SSL_CERT_FILE", str(ca))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    logins: list[tuple[str, bool]] = []

    def authenticate(server, session, envelope, mechanism, auth_data) -> AuthResult:
        good = auth_data.login == USER.encode() and auth_data.password == PASSWORD.encode()
        logins.append((auth_data.login.decode(), good))
        return AuthResult(success=good, handled=False)  # unhandled: aiosmtpd answers 535

    handler = CollectingHandler()
    port = free_port()
    controller = Controller(
        handler,
        hostname="127.0.0.1",
        port=port,
        tls_context=context,
        require_starttls=True,
        authenticator=authenticate,
        auth_required=True,
        auth_require_tls=True,
    )
    controller.start()
    try:
        yield Relay(port, handler, logins)
    finally:
        controller.stop()


# --- the web app, the database, DNS --------------------------------------------------------


@pytest.fixture
def live_web(tmp_path) -> Iterator[str]:
    """The web app on a free port over its own migrated database: its BASE_URL."""
    port = free_port()
    settings = make_settings(
        tmp_path / "web",
        base_url=f"http://127.0.0.1:{port}",
        database_url=f"sqlite:///{tmp_path / 'web.db'}",
    )
    engine = make_engine(settings)
    create_tables(engine)
    try:
        with serving(create_app(settings, engine=engine), port):
            yield settings.base_url
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def key_pem() -> bytes:
    return dkim.generate_key("rsa")


def publish(stub: DNSStub, pem: bytes, *, dmarc: bool = True) -> None:
    stub.add(DOMAIN, "TXT", "v=spf1 ip4:127.0.0.1 -all", "google-site-verification=abc")
    stub.add(f"s1._domainkey.{DOMAIN}", "TXT", dkim.load_key(pem).txt_record)
    if dmarc:
        stub.add(f"_dmarc.{DOMAIN}", "TXT", f"v=DMARC1; p=reject; rua=mailto:dmarc@{DOMAIN}")


def migrated_database(path: Path, *, dispatch_finished: datetime | None) -> str:
    url = f"sqlite:///{path}"
    engine = make_engine(make_settings(path.parent, database_url=url))
    create_tables(engine)
    if dispatch_finished is not None:
        with session_scope(engine) as session:
            session.add(
                JobRun(
                    stage="dispatch",
                    started_at=dispatch_finished - timedelta(seconds=2),
                    finished_at=dispatch_finished,
                    ok=True,
                    counts={"queued": 3},
                )
            )
    engine.dispose()
    return url


def empty_database(path: Path) -> Path:
    """A database file without papermail's tables (never migrated)."""
    sqlite3.connect(path).close()
    return path


def installation(tmp_path, relay, live_web, dns_stub, redis_url, key_pem, **overrides) -> dict:
    """Settings of a working installation, as keyword arguments."""
    key_file = tmp_path / "dkim.pem"
    key_file.write_bytes(key_pem)
    values = {
        "environment": "production",
        "secret_key": STRONG_SECRET,
        "base_url": live_web,
        "mail_backend": "smtp",
        "mail_from": f"papermail <digest@{DOMAIN}>",
        "smtp_host": "127.0.0.1",
        "smtp_port": relay.port,
        "smtp_security": "starttls",
        "smtp_username": USER,
        "smtp_password": PASSWORD,
        "smtp_timeout": 5.0,
        "dkim_selector": "s1",
        "dkim_private_key_file": key_file,
        "dns_resolver": dns_stub.address,
        "redis_url": redis_url,
        "database_url": migrated_database(
            tmp_path / "papermail.db", dispatch_finished=NOW - timedelta(minutes=4)
        ),
    }
    values.update(overrides)
    return values


@pytest.fixture
def working(tmp_path, relay, live_web, dns_stub, redis_url, key_pem):
    """installation() over this test's relay, web app, DNS stub, Redis and key: call it with
    the settings to change."""

    def values(**overrides) -> dict:
        return installation(tmp_path, relay, live_web, dns_stub, redis_url, key_pem, **overrides)

    return values


def lines(checks) -> dict[str, doctor.Check]:
    return {c.name: c for c in checks}


def test_working_installation_is_ok_on_every_line(tmp_path, working, relay, dns_stub, key_pem):
    publish(dns_stub, key_pem)
    settings = make_settings(tmp_path, **working())
    checks = run_checks(settings, now=NOW)
    found = lines(checks)
    assert [c for c in checks if c.status is not Status.ok] == []
    assert list(found) == [
        "smtp",
        "tls",
        "auth",
        "web",
        "unsubscribe",
        "spf",
        "dkim",
        "dmarc",
        "alignment",
        "secret",
        "database",
        "schema",
        "beat",
        "redis",
        "queue",
    ]
    assert "STARTTLS" in found["tls"].message and "certificate valid" in found["tls"].message
    assert relay.logins == [(USER, True)] and relay.handler.messages == []  # login, no mail
    assert "allows the relay 127.0.0.1" in found["spf"].message
    assert "matches DKIM_PRIVATE_KEY_FILE" in found["dkim"].message
    assert "p=reject" in found["dmarc"].message
    assert "400" in found["unsubscribe"].message
    assert (f"_dmarc.{DOMAIN}", "TXT") in dns_stub.queries  # DNS went through the stub
    assert doctor.exit_code(checks) == 0


def test_broken_installation_names_each_fault_and_exits_non_zero(
    tmp_path, working, relay, dns_stub, key_pem, monkeypatch
):
    """Wrong AUTH password, no DMARC, a DKIM record of another key, a weak SECRET_KEY in
    production, an unmigrated database: through the CLI, as the operator runs it."""
    publish(dns_stub, dkim.generate_key("rsa"), dmarc=False)
    values = working(
        smtp_password="wrong-password",
        secret_key="short-secret",
        database_url=f"sqlite:///{empty_database(tmp_path / 'empty.db')}",
    )
    monkeypatch.chdir(tmp_path)  # no .env
    env = {name.upper(): str(value) for name, value in values.items()}
    env["VAR_DIR"] = str(tmp_path / "var")
    result = CliRunner().invoke(cli_app, ["doctor", "--json"], env=env)
    assert result.exit_code == 1, result.output
    found = {c["name"]: c for c in json.loads(result.output)}
    assert found["smtp"]["status"] == "ok" and found["tls"]["status"] == "ok", found
    assert found["auth"]["status"] == "FAIL" and "refused (535)" in found["auth"]["message"]
    assert found["dmarc"]["status"] == "FAIL"
    assert f"no DMARC record at _dmarc.{DOMAIN}" in found["dmarc"]["message"]
    assert found["dkim"]["status"] == "FAIL" and "another key" in found["dkim"]["message"]
    assert dkim.load_key(key_pem).public in found["dkim"]["message"]  # the record to publish
    assert found["secret"]["status"] == "FAIL" and "shorter than 32" in found["secret"]["message"]
    assert (
        found["schema"]["status"] == "FAIL" and "papermail db upgrade" in found["schema"]["message"]
    )
    assert found["beat"]["status"] == "FAIL"
    for fine in ("web", "unsubscribe", "spf", "alignment", "database", "redis", "queue"):
        assert found[fine]["status"] == "ok", found[fine]
    assert relay.handler.messages == []

    text = CliRunner().invoke(cli_app, ["doctor"], env=env)
    assert text.exit_code == 1
    assert any(line.startswith("FAIL auth") for line in text.output.splitlines()), text.output


def test_closed_smtp_port_stale_beat_and_deep_queue(
    tmp_path, working, dns_stub, redis_url, key_pem
):
    import redis

    publish(dns_stub, key_pem)
    closed = free_port()
    settings = make_settings(
        tmp_path,
        **working(
            smtp_port=closed,
            database_url=migrated_database(
                tmp_path / "stale.db", dispatch_finished=NOW - timedelta(minutes=16)
            ),
        ),
    )
    client = redis.Redis.from_url(redis_url)
    client.delete("celery")
    client.rpush("celery", *[b"{}"] * 5)
    try:
        checks = run_checks(settings, now=NOW, queue_limit=5)
    finally:
        client.delete("celery")
    found = lines(checks)
    assert found["smtp"].status is Status.fail
    assert f"cannot reach the SMTP relay 127.0.0.1:{closed}" in found["smtp"].message
    assert "tls" not in found and "auth" not in found
    assert found["beat"].status is Status.fail and "16 min ago" in found["beat"].message
    assert found["queue"].status is Status.warn and "5 tasks waiting" in found["queue"].message
    assert doctor.exit_code(checks) == 1


def test_a_certificate_the_doctor_cannot_trust_fails_tls(
    tmp_path, relay, dns_stub, monkeypatch, tls_files
):
    monkeypatch.setenv("SSL_CERT_FILE", str(tls_files[1]))  # not the CA: nothing vouches
    settings = make_settings(
        tmp_path,
        smtp_host="127.0.0.1",
        smtp_port=relay.port,
        smtp_security="starttls",
        smtp_username=USER,
        smtp_password=PASSWORD,
    )
    from papermail.doctor_probes import smtp_checks

    found = lines(smtp_checks(settings))
    assert found["smtp"].status is Status.ok
    assert found["tls"].status is Status.fail and "not valid" in found["tls"].message
    assert "auth" not in found and relay.logins == []


def test_spf_evaluation_follows_include_a_and_mx_through_dns(dns_stub):
    dns_stub.add("example.org", "TXT", "v=spf1 mx include:_spf.relay.test ~all")
    dns_stub.add("example.org", "MX", "10 mx.example.org.")
    dns_stub.add("mx.example.org", "A", "192.0.2.25")
    dns_stub.add("_spf.relay.test", "TXT", "v=spf1 a:out.relay.test ip6:2001:db8::/32 -all")
    dns_stub.add("out.relay.test", "A", "198.51.100.7")
    resolver = make_resolver(dns_stub.address)
    assert spf_allows(resolver, "example.org", "192.0.2.25") is True
    assert spf_allows(resolver, "example.org", "198.51.100.7") is True
    assert spf_allows(resolver, "example.org", "2001:db8::1") is True
    assert spf_allows(resolver, "example.org", "203.0.113.9") is False  # ~all is no pass
    dns_stub.add("ptr.test", "TXT", "v=spf1 ptr -all")
    assert spf_allows(resolver, "ptr.test", "203.0.113.9") is None


def test_judgements_of_records_and_settings():
    assert doctor.spf_check("x.org", ["v=spf1 +all"]).status is Status.fail
    assert doctor.spf_check("x.org", ["v=spf1 -all", "v=spf1 mx -all"]).status is Status.fail
    assert "does not parse" in doctor.spf_check("x.org", ["v=spf1 ip4:999.1.1.1 -all"]).message
    assert doctor.spf_check("x.org", ["v=spf1 mx"]).status is Status.warn
    public_relay = doctor.spf_check(
        "x.org", ["v=spf1 mx -all"], relay="93.184.216.34", allows_relay=False
    )
    assert public_relay.status is Status.warn and "add ip4:93.184.216.34" in public_relay.message
    assert doctor.dmarc_check("_dmarc.x.org", ["v=DMARC1; rua=mailto:a@x.org"]).status is (
        Status.fail
    )
    assert doctor.org_domain("mail.lab.example.org") == "example.org"
    assert doctor.alignment_check(
        "lab.example.org", "example.org", "bounce.example.org"
    ).status is (Status.ok)
    misaligned = doctor.alignment_check("example.org", "relay.net", "relay.net")
    assert misaligned.status is Status.fail and "DMARC fails" in misaligned.message
    assert doctor.secret_check("short", "development").status is Status.warn
    assert doctor.secret_check(STRONG_SECRET, "production").status is Status.ok
    assert doctor.queue_check(0, 10, "celery").status is Status.ok
    off = doctor.beat_check(None, now=NOW, every_minutes=0, last_ok=None)
    assert off.status is Status.warn
    assert (
        doctor.dkim_check(
            "s._domainkey.x.org", [], public=None, key_type=None, expected_record=None
        ).status
        is Status.warn
    )
    revoked = doctor.dkim_check(
        "s._domainkey.x.org", ["v=DKIM1; p="], public="AAAA", key_type="rsa", expected_record="r"
    )
    assert revoked.status is Status.fail and "revoked" in revoked.message


def test_doctor_reads_the_configuration_that_start_up_refuses(tmp_path, monkeypatch, dns_stub):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("ENVIRONMENT", "production")
    monkeypatch.setenv("SECRET_KEY", "short")
    monkeypatch.setenv("DKIM_SELECTOR", "s1")
    monkeypatch.setenv("DKIM_PRIVATE_KEY_FILE", str(tmp_path / "missing.pem"))
    settings = AsConfigured()
    assert settings.environment == "production" and settings.dkim_selector == "s1"
    from papermail.doctor_probes import dns_checks

    monkeypatch.setenv("DNS_RESOLVER", dns_stub.address)
    found = lines(dns_checks(AsConfigured()))
    assert found["dkim"].status is Status.fail and "cannot read" in found["dkim"].message


def test_spf_is_checked_on_the_verp_bounce_domain_when_there_is_one(tmp_path):
    from papermail.doctor_probes import envelope_domain

    plain = make_settings(tmp_path, mail_from=f"papermail <Digest@{DOMAIN.upper()}>")
    assert envelope_domain(plain) == DOMAIN
    verp = plain.model_copy(update={"bounce_domain": f"bounces.{DOMAIN}"})
    assert envelope_domain(verp) == f"bounces.{DOMAIN}"
    assert doctor.alignment_check(DOMAIN, None, f"bounces.{DOMAIN}").status is Status.ok


def test_a_missing_sqlite_file_is_reported_not_created(tmp_path):
    from papermail.doctor_probes import database_checks

    missing = tmp_path / "nowhere" / "papermail.db"
    settings = make_settings(tmp_path, database_url=f"sqlite:///{missing}")
    [line] = database_checks(settings, now=NOW)
    assert line.status is Status.fail and f"no SQLite database at {missing}" in line.message
    assert not missing.exists() and not missing.parent.exists()


def test_beat_and_schema_lines_on_sqlite_and_postgresql(tmp_path, database_url):
    from papermail.doctor_probes import database_checks

    settings = make_settings(tmp_path, database_url=database_url)
    engine = make_engine(settings)
    create_tables(engine)
    with session_scope(engine) as session:
        for minutes, ok in ((30, True), (7, False), (2, True)):
            finished = NOW - timedelta(minutes=minutes)
            session.add(JobRun(stage="dispatch", started_at=finished, finished_at=finished, ok=ok))
        session.add(JobRun(stage="send", started_at=NOW, finished_at=NOW, ok=True))
    engine.dispose()
    found = lines(database_checks(settings, now=NOW))
    assert [c.status for c in found.values()] == [Status.ok] * 3
    assert "last dispatch 2.0 min ago" in found["beat"].message  # the newest dispatch, not send
    later = lines(database_checks(settings, now=NOW + timedelta(minutes=20)))
    assert later["beat"].status is Status.fail and "22 min ago" in later["beat"].message
