"""Relay webhooks over HTTP to the app, on SQLite and PostgreSQL: SES through SNS (RSA signatures
checked against a certificate fetched from a local HTTPS server under a test CA), SendGrid
(ECDSA P-256) and Postmark (Basic auth). Valid reports act once however often they arrive;
forged, tampered, stale or unauthenticated ones get a 4xx and change nothing."""

from __future__ import annotations

import base64
import json
import ssl
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import NameOID
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY
from sqlmodel import Session, func, select

from papermail.models import BounceEvent, BounceKind, Subscriber
from papermail.web import create_app
from papermail.web.routes.webhooks import SnsCertificates
from tests.conftest import make_settings
from tests.test_web_support import BASE, add_confirmed

TOPIC = "arn:aws:sns:eu-west-1:123456789012:papermail-ses"
LOCAL_HOSTS = r"^localhost$"  # the test's stand-in for sns.<region>.amazonaws.com

# --- a small PKI: a CA, the HTTPS server's certificate, SNS's signing certificate -----------


def _name(common: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common)])


def _certificate(subject: str, key, issuer: str, issuer_key, *, ca: bool = False, san=None):
    now = datetime.now(UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


def _pem(certificate: x509.Certificate) -> bytes:
    return certificate.public_bytes(serialization.Encoding.PEM)


@dataclass
class PKI:
    ca_file: Path
    server_cert: Path
    server_key: Path
    signing_key: rsa.RSAPrivateKey
    signing_pem: bytes
    forger_key: rsa.RSAPrivateKey  # signs as well, but its certificate is nowhere


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> PKI:
    folder = tmp_path_factory.mktemp("pki")
    ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca = _certificate("papermail test CA", ca_key, "papermail test CA", ca_key, ca=True)
    server_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    import ipaddress

    san = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    server = _certificate("localhost", server_key, "papermail test CA", ca_key, san=san)
    signing_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    signing = _certificate("sns.amazonaws.com", signing_key, "papermail test CA", ca_key)
    (folder / "ca.pem").write_bytes(_pem(ca))
    (folder / "server.pem").write_bytes(_pem(server))
    (folder / "server.key").write_bytes(
        server_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return PKI(
        ca_file=folder / "ca.pem",
        server_cert=folder / "server.pem",
        server_key=folder / "server.key",
        signing_key=signing_key,
        signing_pem=_pem(signing),
        forger_key=rsa.generate_private_key(public_exponent=65537, key_size=2048),
    )


@dataclass
class CertServer:
    """A local HTTPS server in SNS's place: the signing certificate and the SubscribeURL."""

    base: str
    requests: list[str] = field(default_factory=list)

    @property
    def cert_url(self) -> str:
        return f"{self.base}/SimpleNotificationService-test.pem"


@pytest.fixture(scope="module")
def cert_server(pki) -> Iterator[CertServer]:
    server_state: dict[str, CertServer] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            server_state["s"].requests.append(self.path)
            if self.path.endswith(".pem"):
                body, status = pki.signing_pem, 200
            elif self.path.startswith("/confirm"):
                body, status = b"<ConfirmSubscriptionResponse/>", 200
            else:
                body, status = b"not found", 404
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args) -> None:
            pass

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(pki.server_cert, pki.server_key)
    httpd.socket = context.wrap_socket(httpd.socket, server_side=True)
    state = server_state["s"] = CertServer(f"https://localhost:{httpd.server_address[1]}")
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        httpd.shutdown()
        httpd.server_close()


# --- the app under test -----------------------------------------------------------------------

SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
SENDGRID_FORGER = ec.generate_private_key(ec.SECP256R1())
SENDGRID_PUBLIC = base64.b64encode(
    SENDGRID_KEY.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
).decode()


@pytest.fixture
def relay_settings(tmp_path, database_url):
    return make_settings(
        tmp_path,
        database_url=database_url,
        ses_topic_arns=[TOPIC],
        ses_cert_host_pattern=LOCAL_HOSTS,
        sendgrid_webhook_public_key=SENDGRID_PUBLIC,
        postmark_webhook_user="postmark",
        postmark_webhook_password="s3cret-hook-password",
        webhook_max_bytes=64 * 1024,
    )


def client_with(settings, engine, pki: PKI) -> TestClient:
    app = create_app(settings, engine=engine)
    trust = ssl.create_default_context(cafile=str(pki.ca_file))
    app.state.sns_certificates = SnsCertificates(settings.ses_cert_host_pattern, verify=trust)
    return TestClient(app, base_url=BASE)


@pytest.fixture
def engine_for(relay_settings):
    from papermail.db import create_tables, make_engine

    engine = make_engine(relay_settings)
    create_tables(engine)
    yield engine
    engine.dispose()


@pytest.fixture
def client(relay_settings, engine_for, pki) -> Iterator[TestClient]:
    with client_with(relay_settings, engine_for, pki) as test_client:
        yield test_client


@pytest.fixture
def readers(engine_for) -> dict[str, int]:
    return {
        email: add_confirmed(engine_for, email, "linear attention").id  # type: ignore[misc]
        for email in ("ada@example.org", "grace@example.org", "alan@example.org")
    }


@dataclass(frozen=True)
class State:
    suspended: bool
    unsubscribed: bool
    bounce_score: float


def states(engine) -> dict[str, State]:
    with Session(engine) as session:
        return {
            s.email: State(
                s.suspended_at is not None, s.unsubscribed_at is not None, s.bounce_score
            )
            for s in session.exec(select(Subscriber))
        }


def events(engine) -> list[tuple[str, str, str, str]]:
    with Session(engine) as session:
        rows = session.exec(select(BounceEvent).order_by(BounceEvent.id))
        return [(e.source, str(e.kind), e.recipient, e.action) for e in rows]


def event_count(engine) -> int:
    with Session(engine) as session:
        return session.exec(select(func.count()).select_from(BounceEvent)).one()


def requests_counted(relay: str, outcome: str) -> float:
    labels = {"relay": relay, "outcome": outcome}
    return REGISTRY.get_sample_value("papermail_webhook_requests_total", labels) or 0.0


def events_counted(source: str, kind: str) -> float:
    labels = {"source": source, "kind": kind}
    return REGISTRY.get_sample_value("papermail_bounce_events_total", labels) or 0.0


FRESH = State(False, False, 0.0)

# --- SES through SNS --------------------------------------------------------------------------


def canonical(message: dict) -> bytes:
    """AWS's documented string to sign, written out here independently of the app's."""
    if message["Type"] == "Notification":
        names = ["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"]
    else:
        names = ["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
    return "".join(f"{n}\n{message[n]}\n" for n in names if n in message).encode()


def signed(message: dict, key: rsa.RSAPrivateKey, version: str = "1") -> dict:
    algorithm = hashes.SHA1() if version == "1" else hashes.SHA256()
    message = {**message, "SignatureVersion": version}
    signature = key.sign(canonical(message), padding.PKCS1v15(), algorithm)
    return {**message, "Signature": base64.b64encode(signature).decode()}


def ses_notification(cert_url: str, payload: dict, **extra) -> dict:
    return {
        "Type": "Notification",
        "MessageId": str(uuid.uuid4()),
        "TopicArn": TOPIC,
        "Message": json.dumps(payload),
        "Timestamp": "2026-11-23T09:00:00.000Z",
        "SigningCertURL": cert_url,
        "UnsubscribeURL": "https://localhost/unsubscribe",
        **extra,
    }


def ses_bounce(bounce_type: str, *emails: str) -> dict:
    return {
        "notificationType": "Bounce",
        "bounce": {
            "bounceType": bounce_type,
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": email,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
                for email in emails
            ],
            "timestamp": "2026-11-23T09:00:00.000Z",
            "feedbackId": "0100019-feedback",
        },
        "mail": {
            "messageId": "010001-ses-id",
            "source": "digest@papermail.test",
            "destination": list(emails),
            "commonHeaders": {"messageId": "<digest-1@papermail.test>"},
        },
    }


def ses_complaint(email: str) -> dict:
    return {
        "notificationType": "Complaint",
        "complaint": {
            "complainedRecipients": [{"emailAddress": email}],
            "complaintFeedbackType": "abuse",
            "feedbackId": "0100019-complaint",
        },
        "mail": {"messageId": "010001-ses-id", "commonHeaders": {}},
    }


def post_sns(client: TestClient, message: dict):
    return client.post(
        "/webhooks/ses",
        content=json.dumps(message),
        headers={"Content-Type": "text/plain", "x-amz-sns-message-type": message["Type"]},
    )


def test_ses_bounces_and_complaints_act_once(client, engine_for, readers, pki, cert_server):
    hard = signed(
        ses_notification(
            cert_server.cert_url,
            ses_bounce("Permanent", "Ada@Example.org", "nobody@example.org"),
            Subject="Amazon SES Email Event Notification",
        ),
        pki.signing_key,
        "1",
    )
    soft = signed(
        ses_notification(cert_server.cert_url, ses_bounce("Transient", "grace@example.org")),
        pki.signing_key,
        "2",
    )
    complaint = signed(
        ses_notification(cert_server.cert_url, ses_complaint("alan@example.org")),
        pki.signing_key,
        "2",
    )
    accepted = requests_counted("ses", "accepted")
    hard_events = events_counted("ses", "hard")
    fetched = len(cert_server.requests)
    for message in (hard, soft, complaint):
        response = post_sns(client, message)
        assert response.status_code == 200, response.text
    again = post_sns(client, hard)  # SNS delivers at least once
    assert again.status_code == 200 and again.json()["stored"] == 0

    assert states(engine_for) == {
        "ada@example.org": State(True, False, 1.0),
        "grace@example.org": State(False, False, 0.5),
        "alan@example.org": State(False, True, 0.0),
    }
    assert events(engine_for) == [
        ("ses", "hard", "ada@example.org", "suspended"),
        ("ses", "hard", "nobody@example.org", "ignored"),
        ("ses", "soft", "grace@example.org", "scored"),
        ("ses", "complaint", "alan@example.org", "unsubscribed"),
    ]
    with Session(engine_for) as session:
        first = session.exec(select(BounceEvent).order_by(BounceEvent.id)).first()
        assert first is not None
        assert (first.message_id, first.status_code) == ("<digest-1@papermail.test>", "5.1.1")
    assert requests_counted("ses", "accepted") == accepted + 3
    assert requests_counted("ses", "duplicate") >= 1
    assert events_counted("ses", "hard") == hard_events + 2  # the duplicate is not counted
    # The certificate was fetched once by this app, and kept.
    assert cert_server.requests[fetched:] == ["/SimpleNotificationService-test.pem"]


def test_ses_forged_tampered_or_foreign_messages_change_nothing(
    client, engine_for, readers, pki, cert_server
):
    bounce = ses_bounce("Permanent", "ada@example.org")
    good = signed(ses_notification(cert_server.cert_url, bounce), pki.signing_key)
    forged = signed(ses_notification(cert_server.cert_url, bounce), pki.forger_key)
    tampered = {**good, "Message": json.dumps(ses_bounce("Permanent", "grace@example.org"))}
    evil_host = signed(
        ses_notification("https://sns.attacker.example/cert.pem", bounce), pki.signing_key
    )
    plain_http = signed(
        ses_notification(cert_server.cert_url.replace("https:", "http:"), bounce), pki.signing_key
    )
    other_topic = signed(
        ses_notification(cert_server.cert_url, bounce, TopicArn=TOPIC + "-other"), pki.signing_key
    )
    unknown_version = {**good, "SignatureVersion": "3"}
    unsigned = {k: v for k, v in good.items() if k != "Signature"}
    forbidden = requests_counted("ses", "forbidden")
    for message in (
        forged,
        tampered,
        evil_host,
        plain_http,
        other_topic,
        unknown_version,
        unsigned,
    ):
        response = post_sns(client, message)
        assert response.status_code == 403, (message, response.text)
    assert requests_counted("ses", "forbidden") == forbidden + 7
    not_json = client.post("/webhooks/ses", content=b"{not json")
    assert not_json.status_code == 400
    assert states(engine_for) == {email: FRESH for email in readers}
    assert event_count(engine_for) == 0
    # The signed original still works afterwards: nothing above was half-applied.
    assert post_sns(client, good).status_code == 200
    assert states(engine_for)["ada@example.org"].suspended


def test_ses_subscription_is_confirmed_only_on_an_sns_host(client, pki, cert_server, caplog):
    message = {
        "Type": "SubscriptionConfirmation",
        "MessageId": str(uuid.uuid4()),
        "Token": "2336412f37fb687f5d51e6e2425dacbba",
        "TopicArn": TOPIC,
        "Message": "You have chosen to subscribe to the topic.",
        "SubscribeURL": f"{cert_server.base}/confirm?Action=ConfirmSubscription&Token=2336",
        "Timestamp": "2026-11-23T09:00:00.000Z",
        "SigningCertURL": cert_server.cert_url,
    }
    before = len(cert_server.requests)
    # Both requests inside at_level: outside it the root level is whatever an earlier test left
    # (papermail.cli.main silences logging), and the second warning would not be captured.
    with caplog.at_level("INFO"):
        response = post_sns(client, signed(message, pki.signing_key))
        assert response.status_code == 200
        assert any(p.startswith("/confirm?") for p in cert_server.requests[before:])
        assert "subscribe_url=" in caplog.text  # the operator can confirm by hand too
        # A SubscribeURL elsewhere is logged for the operator, never fetched.
        elsewhere = {**message, "SubscribeURL": "https://sns.attacker.example/confirm?x=1"}
        fetched = len(cert_server.requests)
        response = post_sns(client, signed(elsewhere, pki.signing_key))
        assert response.status_code == 200
        assert "sns.attacker.example" in caplog.text
        assert not any(p.startswith("/confirm?") for p in cert_server.requests[fetched:])


# --- SendGrid ---------------------------------------------------------------------------------


def sendgrid_headers(body: bytes, *, key=SENDGRID_KEY, timestamp: int | None = None) -> dict:
    stamp = str(int(time.time()) if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {
        "Content-Type": "application/json",
        "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
        "X-Twilio-Email-Event-Webhook-Timestamp": stamp,
    }


def sendgrid_batch() -> bytes:
    def event(email: str, name: str, **extra) -> dict:
        return {
            "email": email,
            "event": name,
            "timestamp": 1764000000,
            "sg_event_id": f"sg-{uuid.uuid4().hex}",
            "sg_message_id": "14c5d75ce93.dfd.64b469.filter0001.16648.5515E0B88.0",
            "smtp-id": "<digest-7@papermail.test>",
            **extra,
        }

    return json.dumps(
        [
            event("ada@example.org", "delivered"),
            event("ada@example.org", "bounce", type="bounce", status="5.1.1", reason="550 no"),
            event("grace@example.org", "bounce", type="blocked", status="4.0.0", reason="spam"),
            event("grace@example.org", "deferred", response="421 try later", attempt="1"),
            event("alan@example.org", "spamreport"),
            event("kay@example.org", "dropped", reason="Bounced Address"),
            event("kay@example.org", "dropped", reason="Unsubscribed Address"),
        ]
    ).encode()


def test_sendgrid_signed_batches_act_once(client, engine_for, readers):
    body = sendgrid_batch()
    response = client.post("/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))
    assert response.status_code == 200, response.text
    assert response.json() == {"ok": True, "reports": 5, "stored": 5}
    # SendGrid retries a batch it thinks failed: the same events change nothing.
    again = client.post("/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))
    assert again.json() == {"ok": True, "reports": 5, "stored": 0}
    assert states(engine_for) == {
        "ada@example.org": State(True, False, 1.0),
        "grace@example.org": State(False, False, 0.5),  # two soft reports, one per day counts
        "alan@example.org": State(False, True, 0.0),
    }
    assert [e[:2] for e in events(engine_for)] == [
        ("sendgrid", "hard"),
        ("sendgrid", "soft"),
        ("sendgrid", "soft"),
        ("sendgrid", "complaint"),
        ("sendgrid", "hard"),
    ]


def test_sendgrid_forged_stale_or_tampered_batches_change_nothing(client, engine_for, readers):
    body = sendgrid_batch()
    attempts = {
        "forged": sendgrid_headers(body, key=SENDGRID_FORGER),
        "stale": sendgrid_headers(body, timestamp=int(time.time()) - 11 * 60),
        "future": sendgrid_headers(body, timestamp=int(time.time()) + 11 * 60),
        "unsigned": {"Content-Type": "application/json"},
        "garbled": {**sendgrid_headers(body), "X-Twilio-Email-Event-Webhook-Signature": "@@"},
    }
    for name, headers in attempts.items():
        response = client.post("/webhooks/sendgrid", content=body, headers=headers)
        assert response.status_code == 403, name
    headers = sendgrid_headers(body)
    tampered = body.replace(b"alan@example.org", b"grace@example.org")
    response = client.post("/webhooks/sendgrid", content=tampered, headers=headers)
    assert response.status_code == 403
    assert states(engine_for) == {email: FRESH for email in readers}
    assert event_count(engine_for) == 0
    # Signed but not JSON: 400.
    junk = b"[{"
    response = client.post("/webhooks/sendgrid", content=junk, headers=sendgrid_headers(junk))
    assert response.status_code == 400


# --- Postmark ---------------------------------------------------------------------------------


def postmark(record_type: str, email: str, event_id: int, **extra) -> dict:
    return {
        "RecordType": record_type,
        "ID": event_id,
        "Email": email,
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "BouncedAt": "2026-11-23T09:00:00Z",
        **extra,
    }


def test_postmark_with_credentials_acts_once(client, engine_for, readers):
    auth = ("postmark", "s3cret-hook-password")
    calls = [
        postmark("Bounce", "ada@example.org", 101, Type="HardBounce", TypeCode=1),
        postmark("Bounce", "grace@example.org", 102, Type="SoftBounce", TypeCode=4096),
        postmark("SpamComplaint", "alan@example.org", 103, Type="SpamComplaint"),
        postmark("Delivery", "ada@example.org", 104),
    ]
    for payload in calls + calls[:2]:
        response = client.post("/webhooks/postmark", json=payload, auth=auth)
        assert response.status_code == 200, response.text
    assert states(engine_for) == {
        "ada@example.org": State(True, False, 1.0),
        "grace@example.org": State(False, False, 0.5),
        "alan@example.org": State(False, True, 0.0),
    }
    assert [e[:2] for e in events(engine_for)] == [
        ("postmark", "hard"),
        ("postmark", "soft"),
        ("postmark", "complaint"),
    ]


def test_postmark_without_the_right_credentials_changes_nothing(client, engine_for, readers):
    payload = postmark("Bounce", "ada@example.org", 201, Type="HardBounce")
    unauthorized = requests_counted("postmark", "unauthorized")
    for auth in (None, ("postmark", "wrong"), ("other", "s3cret-hook-password")):
        response = client.post("/webhooks/postmark", json=payload, auth=auth)
        assert response.status_code == 401
        assert response.headers["WWW-Authenticate"].startswith("Basic")
    assert requests_counted("postmark", "unauthorized") == unauthorized + 3
    assert states(engine_for) == {email: FRESH for email in readers}
    assert event_count(engine_for) == 0
    auth = ("postmark", "s3cret-hook-password")
    response = client.post("/webhooks/postmark", content=b"nope", auth=auth)
    assert response.status_code == 400


# --- all relays -------------------------------------------------------------------------------


def test_oversized_bodies_are_refused(client, engine_for, readers):
    big = b"[" + b" " * (64 * 1024) + b"]"
    for relay in ("ses", "sendgrid", "postmark"):
        response = client.post(f"/webhooks/{relay}", content=big)
        assert response.status_code == 413, relay
    auth = ("postmark", "s3cret-hook-password")

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted while read
        for _ in range(80):
            yield b" " * 1024

    response = client.post("/webhooks/postmark", content=chunks(), auth=auth)
    assert response.status_code == 413
    assert event_count(engine_for) == 0


def test_relays_not_configured_answer_404(tmp_path, database_url, pki):
    from papermail.db import create_tables, make_engine

    settings = make_settings(tmp_path, database_url=database_url)
    engine = make_engine(settings)
    create_tables(engine)
    try:
        with client_with(settings, engine, pki) as bare:
            for relay in ("ses", "sendgrid", "postmark"):
                response = bare.post(f"/webhooks/{relay}", content=b"[]")
                assert response.status_code == 404, relay
            assert bare.get("/webhooks/ses").status_code == 405
    finally:
        engine.dispose()


def test_kinds_are_those_documented():
    """The mapping in one place, read back from the parser (no HTTP)."""
    from papermail.webhooks import postmark_reports

    kinds = {
        t: [r.kind for r in postmark_reports(postmark("Bounce", "a@b.org", 1, Type=t))]
        for t in ("HardBounce", "SoftBounce", "Transient", "SpamNotification", "Blocked")
    }
    assert kinds == {
        "HardBounce": [BounceKind.hard],
        "SoftBounce": [BounceKind.soft],
        "Transient": [BounceKind.soft],
        "SpamNotification": [BounceKind.complaint],
        "Blocked": [],
    }
