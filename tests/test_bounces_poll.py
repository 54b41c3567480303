"""`papermail bounces poll` against a real Dovecot IMAP server started by the test: a private
instance (generated config, self-signed certificate from `cryptography`, IMAPS only, a
passwd-file user, a maildir in a temporary directory). Reports are APPENDed over IMAP, then
the poller reads them over verified TLS and marks each stored report \\Seen."""

from __future__ import annotations

import datetime as dt
import grp
import imaplib
import ipaddress
import os
import pwd
import shutil
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import SecretStr
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, select

from papermail.bounce_poll import poll_mailbox
from papermail.db import make_engine
from papermail.errors import PapermailError
from papermail.models import BounceEvent
from tests.bounces_support import (
    cli_env,
    papermail,
    sample_bytes,
    sent_digest,
    subscribe,
    subscriber,
)
from tests.conftest import free_port, make_settings

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER, PASSWORD = "bounces", "imap-test-password"


@dataclass
class Imap:
    port: int
    ca_file: Path

    def client(self) -> imaplib.IMAP4_SSL:
        context = ssl.create_default_context(cafile=str(self.ca_file))
        client = imaplib.IMAP4_SSL("127.0.0.1", self.port, ssl_context=context, timeout=10)
        client.login(USER, PASSWORD)
        client.select("INBOX")
        return client

    def append(self, *names: str) -> None:
        client = self.client()
        try:
            for name in names:
                data = sample_bytes(name).replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
                assert client.append("INBOX", None, None, data)[0] == "OK"
        finally:
            client.logout()

    def flags(self) -> list[str]:
        """Each message's flags, in order."""
        client = self.client()
        try:
            _, data = client.fetch("1:*", "(FLAGS)")
            return [line.decode() for line in data if isinstance(line, bytes)]
        finally:
            client.logout()


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = directory / "cert.pem", directory / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


def _accounts(mail_root: Path) -> dict[str, str]:
    """Who runs what. As a normal user everything runs as that user. As root (containers),
    Dovecot refuses root for its login and mail processes: Debian's dovenull/dovecot users
    (or nobody), and the mailbox belongs to nobody."""
    if os.geteuid() != 0:
        me = pwd.getpwuid(os.geteuid())
        group = me.pw_gid
        return {
            "login": me.pw_name,
            "internal": me.pw_name,
            "group": grp.getgrgid(group).gr_name,
            "uid": str(me.pw_uid),
            "gid": str(group),
        }

    def existing(name: str) -> str:
        try:
            pwd.getpwnam(name)
            return name
        except KeyError:
            return "nobody"

    nobody = pwd.getpwnam("nobody")
    internal = existing("dovecot")
    os.chown(mail_root, nobody.pw_uid, nobody.pw_gid)
    return {
        "login": existing("dovenull"),
        "internal": internal,
        "group": grp.getgrgid(pwd.getpwnam(internal).pw_gid).gr_name,
        "uid": str(nobody.pw_uid),
        "gid": str(nobody.pw_gid),
    }


@pytest.fixture
def dovecot() -> Iterator[Imap]:
    if not Path(DOVECOT).exists():
        pytest.fail("needs Dovecot: apt-get install dovecot-imapd (scripts/test-prerequisites.sh)")
    # Not under tmp_path: pytest keeps that private (0700), and when the test runs as root
    # Dovecot's auth and mail processes run as other users that must reach these files.
    home = Path(tempfile.mkdtemp(prefix="papermail-dovecot-"))
    home.chmod(0o755)
    cert, key = self_signed(home)
    mail_root = home / "mail"
    mail_root.mkdir(mode=0o755)
    who = _accounts(mail_root)
    port = free_port()
    log = home / "dovecot.log"
    (home / "passwd").write_text(
        f"{USER}:{{PLAIN}}{PASSWORD}:{who['uid']}:{who['gid']}::{mail_root}\n"
    )
    config = home / "dovecot.conf"
    config.write_text(
        f"""
base_dir = {home}/run
state_dir = {home}/state
instance_name = papermail-test-{port}
listen = 127.0.0.1
protocols = imap
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain
default_login_user = {who["login"]}
default_internal_user = {who["internal"]}
default_internal_group = {who["group"]}
log_path = {log}
mail_location = maildir:{mail_root}/Maildir
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {home}/passwd
}}
userdb {{
  driver = passwd-file
  args = {home}/passwd
}}
service imap-login {{
  chroot =
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""
    )
    proc = subprocess.Popen(
        [DOVECOT, "-F", "-c", str(config)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    imap = Imap(port, cert)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                imap.client().logout()
                break
            except (OSError, imaplib.IMAP4.error) as exc:
                if proc.poll() is not None or time.monotonic() > deadline:
                    proc.kill()
                    output = proc.communicate()[0].decode(errors="replace")
                    text = log.read_text() if log.exists() else ""
                    pytest.fail(f"Dovecot did not start ({exc}):\n{output}\n{text}")
                time.sleep(0.1)
        yield imap
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(home, ignore_errors=True)


def imap_settings(settings, imap: Imap, **extra):
    return settings.model_copy(
        update={
            "bounce_domain": "bounce.papermail.test",
            "bounce_imap_host": "127.0.0.1",
            "bounce_imap_port": imap.port,
            "bounce_imap_user": USER,
            "bounce_imap_password": SecretStr(PASSWORD),
            "bounce_imap_ca_file": imap.ca_file,
            **extra,
        }
    )


def test_poll_records_reports_marks_them_seen_and_flags_the_rest(engine, settings, dovecot):
    ids = subscribe(engine, *(f"reader{n}@example.org" for n in range(1, 6)))  # VERP ids 1-5
    (box,) = subscribe(engine, "full.box@example.net")
    sent_digest(engine, box, "soft_4.2.2_mailbox_full.eml")
    dovecot.append("qmail_plain.eml", "autoreply.eml", "soft_4.2.2_mailbox_full.eml")
    config = imap_settings(settings, dovecot)

    report = poll_mailbox(engine, config)
    assert (report.read, report.reports, report.left) == (3, 2, 1)
    assert report.actions == [
        "hard 5.1.1 carol@qmail.example: suspended",
        "soft 4.2.2 full.box@example.net: scored",
    ]
    flags = dovecot.flags()
    assert "\\Seen" in flags[0] and "\\Flagged" not in flags[0]
    assert "\\Flagged" in flags[1] and "\\Seen" not in flags[1]  # the auto-reply: left unread
    assert "\\Seen" in flags[2]
    assert subscriber(engine, ids[4]).suspended_at is not None
    assert subscriber(engine, box).bounce_score == 0.5
    assert [subscriber(engine, i).active for i in ids[:4]] == [True] * 4

    # The next poll reads only what came since.
    assert poll_mailbox(engine, config).read == 0
    dovecot.append("aol_arf_redacted.eml")
    subscribe(engine, "reader7@aol.com")  # id 7, the token in the AOL report
    again = poll_mailbox(engine, config)
    assert (again.read, again.reports) == (1, 1)
    assert again.actions == ["complaint reader7@aol.com: unsubscribed"]
    with Session(engine) as session:
        assert len(session.exec(select(BounceEvent)).all()) == 3


def test_poll_through_the_cli_and_its_errors(engine, settings, dovecot, tmp_path):
    (dave,) = subscribe(engine, "dave@yahoo.com")
    sent_digest(engine, dave, "yahoo_arf.eml")
    dovecot.append("yahoo_arf.eml")
    env = cli_env(settings, **_imap_env(dovecot))
    done = papermail(["bounces", "poll"], env, tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        "  complaint dave@yahoo.com: unsubscribed",
        "1 new message(s): 1 report(s) recorded, 0 not a report (left unread and flagged)",
    ]
    wrong = papermail(["bounces", "poll"], {**env, "BOUNCE_IMAP_PASSWORD": "nope"}, tmp_path)
    assert wrong.returncode == 1
    assert "IMAP login as 'bounces' refused" in wrong.stderr and "nope" not in wrong.stderr
    # Without the private CA the server's certificate is not trusted: no login is attempted.
    with pytest.raises(PapermailError, match="CERTIFICATE_VERIFY_FAILED"):
        poll_mailbox(engine, imap_settings(settings, dovecot, bounce_imap_ca_file=None))


def test_a_database_error_leaves_the_message_unread_for_the_next_poll(engine, settings, dovecot):
    dovecot.append("postfix_5.1.1.eml")
    dead = f"postgresql+psycopg://papermail@127.0.0.1:{free_port()}/nowhere"
    down = imap_settings(settings, dovecot, database_url=dead)
    down_engine = make_engine(down)
    try:
        with pytest.raises(SQLAlchemyError):
            poll_mailbox(down_engine, down)
    finally:
        down_engine.dispose()
    [flags] = dovecot.flags()
    assert "\\Seen" not in flags and "\\Flagged" not in flags
    subscribe(engine, "a@example.org", "b@example.org", "former.student@uni.example")
    report = poll_mailbox(engine, imap_settings(settings, dovecot))
    assert report.actions == ["hard 5.1.1 former.student@uni.example: suspended"]
    assert "\\Seen" in dovecot.flags()[0]


def _imap_env(imap: Imap) -> dict[str, str]:
    return {
        "BOUNCE_IMAP_HOST": "127.0.0.1",
        "BOUNCE_IMAP_PORT": str(imap.port),
        "BOUNCE_IMAP_USER": USER,
        "BOUNCE_IMAP_PASSWORD": PASSWORD,
        "BOUNCE_IMAP_CA_FILE": str(imap.ca_file),
    }


def test_beat_polls_the_bounce_mailbox_only_when_one_is_configured(engine, settings, dovecot):
    from workers import tasks
    from workers.app import celery_app, configure
    from workers.schedule import build_schedule

    assert "poll-bounces" not in build_schedule(settings)
    config = imap_settings(settings, dovecot, bounce_poll_minutes=5)
    entry = build_schedule(config)["poll-bounces"]
    assert (entry["task"], entry["schedule"]) == ("workers.tasks.poll_bounces", 300.0)
    assert "poll-bounces" not in build_schedule(
        config.model_copy(update={"bounce_poll_minutes": 0})
    )

    subscribe(engine, "full.box@example.net")
    dovecot.append("soft_4.2.2_mailbox_full.eml", "spam.eml")
    configure(celery_app, config)  # the task runs in this process, on this test's database
    try:
        result = tasks.poll_bounces.apply().get()
    finally:
        configure(celery_app, make_settings(settings.var_dir.parent))
    assert result == {"read": 2, "reports": 1, "left": 1}
