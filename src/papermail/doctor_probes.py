"""`papermail doctor`'s probes: look at the live installation and hand what they find to the
judgements in `papermail.doctor`.

Nothing here changes anything: SMTP is a login without MAIL FROM, the unsubscribe probe posts a
forged token (which no subscriber has), the database and Redis are only read.
"""

from __future__ import annotations

import ipaddress
import secrets
import smtplib
import socket
import ssl
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import dns.resolver

from papermail import dkim, doctor
from papermail.dnsrecords import (
    DNSLookupError,
    addresses,
    mail_hosts,
    make_resolver,
    txt_records,
)
from papermail.doctor import Check, fail, ok, warn
from papermail.mailer import envelope_address
from papermail.metrics import CELERY_QUEUE, queue_depths
from papermail.settings import Settings

DEFAULT_QUEUE_LIMIT = 1000
SPF_LOOKUP_LIMIT = 10  # RFC 7208 4.6.4


class AsConfigured(Settings):
    """The configuration as the operator wrote it. Start-up refuses a weak SECRET_KEY in
    production or an unusable DKIM key; the doctor reports them as lines instead."""

    def _refuse_placeholder_secret(self) -> AsConfigured:
        return self

    def _refuse_unusable_dkim_key(self) -> AsConfigured:
        return self


def envelope_domain(settings: Settings) -> str:
    """The domain SPF is checked for: the VERP bounce domain when set, else MAIL_FROM's."""
    domain = settings.bounce_domain or envelope_address(settings.mail_from).rpartition("@")[2]
    return domain.lower()


# --- SMTP ---------------------------------------------------------------------------------


def smtp_checks(settings: Settings) -> list[Check]:
    """Reach the relay, secure the session as SMTP_SECURITY says (certificate verified against
    the system's CAs, or SSL_CERT_FILE), and log in when SMTP_USERNAME is set. No mail."""
    s = settings
    where = f"{s.smtp_host}:{s.smtp_port}"
    context = ssl.create_default_context()
    try:
        if s.smtp_security == "tls":
            client: smtplib.SMTP = smtplib.SMTP_SSL(
                s.smtp_host, s.smtp_port, timeout=s.smtp_timeout, context=context
            )
        else:
            client = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
    except ssl.SSLCertVerificationError as exc:
        return [
            ok("smtp", f"{where} answers"),
            fail("tls", f"{where}'s certificate is not valid: {exc.verify_message}"),
        ]
    except (OSError, smtplib.SMTPException) as exc:
        return [
            fail(
                "smtp",
                f"cannot reach the SMTP relay {where}: {_reason(exc)}; check SMTP_HOST and "
                "SMTP_PORT",
            )
        ]
    try:
        return [ok("smtp", f"{where} answers"), *_secure_and_login(client, settings, context)]
    except (OSError, smtplib.SMTPException) as exc:
        return [fail("smtp", f"the SMTP session with {where} broke off: {exc}")]
    finally:
        try:
            client.quit()
        except (OSError, smtplib.SMTPException):
            client.close()


def _secure_and_login(
    client: smtplib.SMTP, settings: Settings, context: ssl.SSLContext
) -> list[Check]:
    s = settings
    client.ehlo()
    checks = [_tls(client, settings, context)]
    if checks[0].status is doctor.Status.fail:
        return checks
    if not s.smtp_username:
        checks.append(ok("auth", "no SMTP_USERNAME: the relay is used without login"))
        return checks
    try:
        client.login(s.smtp_username, s.smtp_password.get_secret_value())
    except smtplib.SMTPAuthenticationError as exc:
        checks.append(
            fail(
                "auth",
                f"login as {s.smtp_username!r} refused ({exc.smtp_code}): check SMTP_USERNAME "
                "and SMTP_PASSWORD",
            )
        )
    except smtplib.SMTPNotSupportedError:
        checks.append(fail("auth", "the relay offers no AUTH on this connection"))
    else:
        checks.append(ok("auth", f"login as {s.smtp_username!r} accepted"))
    return checks


def _tls(client: smtplib.SMTP, settings: Settings, context: ssl.SSLContext) -> Check:
    s = settings
    if s.smtp_security == "tls":
        return ok("tls", f"implicit TLS ({_version(client)}), certificate valid for {s.smtp_host}")
    if s.smtp_security == "starttls":
        if not client.has_extn("starttls"):
            return fail("tls", "SMTP_SECURITY=starttls but the relay does not offer STARTTLS")
        try:
            client.starttls(context=context)
        except ssl.SSLCertVerificationError as exc:
            return fail("tls", f"the relay's certificate is not valid: {exc.verify_message}")
        client.ehlo()
        return ok("tls", f"STARTTLS ({_version(client)}), certificate valid for {s.smtp_host}")
    if doctor.is_local_host(s.smtp_host):
        return ok("tls", "no TLS (SMTP_SECURITY=none): the relay runs on this machine")
    offered = " (it offers STARTTLS)" if client.has_extn("starttls") else ""
    return warn(
        "tls",
        f"mail and password cross the network unencrypted{offered}: set SMTP_SECURITY=starttls "
        "or tls",
    )


def _version(client: smtplib.SMTP) -> str:
    sock = client.sock
    return (sock.version() if isinstance(sock, ssl.SSLSocket) else None) or "TLS"


def _reason(exc: Exception) -> str:
    return (exc.strerror if isinstance(exc, OSError) else None) or str(exc) or type(exc).__name__


# --- the web app --------------------------------------------------------------------------


def web_checks(settings: Settings, *, timeout: float = 10.0) -> list[Check]:
    """GET /healthz, then a one-click unsubscribe POST with a forged token: 400 is right."""
    import httpx

    base = settings.base_url.rstrip("/")
    parts = urlsplit(base)
    with httpx.Client(timeout=timeout, follow_redirects=False) as client:
        try:
            health = client.get(f"{base}/healthz")
        except httpx.HTTPError as exc:
            return [
                fail("web", f"BASE_URL {base} does not answer: {exc}"),
                fail("unsubscribe", "not tried: the web app does not answer"),
            ]
        if health.status_code != 200:
            checks = [
                fail("web", f"{base}/healthz answers {health.status_code}: {health.text[:200]}")
            ]
        elif parts.scheme != "https" and not doctor.is_local_host(parts.hostname or ""):
            checks = [warn("web", f"{base} answers, but links are http: mail providers want https")]
        else:
            checks = [ok("web", f"{base}/healthz answers 200")]
        forged = f"doctor-{secrets.token_urlsafe(18)}"
        try:
            answer = client.post(
                f"{base}/unsubscribe/{forged}", data={"List-Unsubscribe": "One-Click"}
            )
        except httpx.HTTPError as exc:
            return [*checks, fail("unsubscribe", f"the one-click POST got no answer: {exc}")]
    checks.append(_unsubscribe(answer.status_code))
    return checks


def _unsubscribe(status: int) -> Check:
    if status == 400:
        return ok("unsubscribe", "one-click POST answers 400 to a forged token")
    if status >= 500:
        return fail("unsubscribe", f"one-click POST answers {status}: see the web app's log")
    if status < 400:
        return fail("unsubscribe", f"one-click POST accepted a forged token ({status})")
    return warn(
        "unsubscribe",
        f"one-click POST answers {status} to a forged token (400 expected): is BASE_URL this "
        "papermail?",
    )


# --- DNS: SPF, DKIM, DMARC, alignment -----------------------------------------------------


def relay_address(settings: Settings) -> str | None:
    """The relay's IP address as this machine reaches it, or None."""
    try:
        return socket.getaddrinfo(settings.smtp_host, settings.smtp_port)[0][4][0]
    except OSError:
        return None


def spf_allows(
    resolver: dns.resolver.Resolver, domain: str, ip: str, depth: int = 0
) -> bool | None:
    """Whether `domain`'s SPF passes mail from `ip`: True, False, or None when it cannot be told
    here (ptr/exists terms, too many lookups, a broken record)."""
    if depth > SPF_LOOKUP_LIMIT:
        return None
    found = doctor.spf_records(txt_records(resolver, domain))
    if len(found) != 1:
        return None
    record = doctor.parse_spf(found[0])
    if record.problems:
        return None
    address = ipaddress.ip_address(ip)
    for qualifier, mechanism, argument in record.terms:
        if mechanism == "all":
            matched: bool | None = True
        elif mechanism in {"ip4", "ip6"}:
            network = ipaddress.ip_network(argument, strict=False)
            matched = network.version == address.version and address in network
        elif mechanism == "a":
            matched = ip in addresses(resolver, argument.split("/")[0] or domain)
        elif mechanism == "mx":
            hosts = mail_hosts(resolver, argument.split("/")[0] or domain)
            matched = any(ip in addresses(resolver, host) for host in hosts)
        elif mechanism == "include":
            matched = spf_allows(resolver, argument, ip, depth + 1)
            if matched is None:
                return None
        else:
            return None
        if matched:
            return qualifier == "+"
    if record.redirect:
        return spf_allows(resolver, record.redirect, ip, depth + 1)
    return False


def dns_checks(settings: Settings) -> list[Check]:
    resolver = make_resolver(settings.dns_resolver)
    from_domain = dkim.from_domain(settings)
    spf_domain = envelope_domain(settings)
    checks = []
    try:
        spf_texts = txt_records(resolver, spf_domain)
        relay = relay_address(settings)
        allows = spf_allows(resolver, spf_domain, relay) if relay else None
        checks.append(doctor.spf_check(spf_domain, spf_texts, relay=relay, allows_relay=allows))
    except DNSLookupError as exc:
        checks.append(fail("spf", f"{exc}: check DNS_RESOLVER or the network"))
    signing = None
    try:
        key = dkim.configured_key(settings)
    except dkim.DkimKeyError as exc:
        checks.append(fail("dkim", f"DKIM_PRIVATE_KEY_FILE: {exc}"))
    else:
        signing = dkim.signing_domain(settings) if key else None
        name = f"{settings.dkim_selector}._domainkey.{signing}"
        try:
            texts = txt_records(resolver, name) if key else []
            checks.append(
                doctor.dkim_check(
                    name,
                    texts,
                    public=key.public if key else None,
                    key_type=key.key_type if key else None,
                    expected_record=key.txt_record if key else None,
                )
            )
        except DNSLookupError as exc:
            checks.append(fail("dkim", str(exc)))
    try:
        name = f"_dmarc.{from_domain}"
        texts = txt_records(resolver, name)
        org = doctor.org_domain(from_domain)
        if not texts and org != from_domain:  # RFC 7489 6.6.3: the organizational domain's
            name, texts = f"_dmarc.{org}", txt_records(resolver, f"_dmarc.{org}")
        checks.append(doctor.dmarc_check(name, texts))
    except DNSLookupError as exc:
        checks.append(fail("dmarc", str(exc)))
    checks.append(doctor.alignment_check(from_domain, signing, spf_domain))
    return checks


# --- settings, database, beat, broker -----------------------------------------------------


def database_checks(settings: Settings, *, now: datetime) -> list[Check]:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError
    from sqlmodel import Session, col, select

    from papermail.db import make_engine
    from papermail.migrate import current_revision, head_revision
    from papermail.models import JobRun

    target = make_url(settings.resolved_database_url)
    on_disk = target.get_backend_name() == "sqlite" and target.database not in (
        None,
        "",
        ":memory:",
    )
    if on_disk and not Path(str(target.database)).exists():  # connecting would create it
        return [
            fail(
                "database",
                f"no SQLite database at {target.database}: run `papermail db upgrade`, or "
                "set DATABASE_URL / VAR_DIR as the services have them",
            )
        ]
    engine = make_engine(settings)
    url = engine.url.render_as_string(hide_password=True)
    try:
        try:
            current = current_revision(engine)
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            return [fail("database", f"cannot reach {url}: {reason}")]
        checks = [ok("database", f"{url} answers"), doctor.schema_check(current, head_revision())]
        if current is None:
            return [*checks, fail("beat", "not checked: the database has no tables")]
        try:
            with Session(engine) as session:
                last = session.exec(
                    select(JobRun)
                    .where(JobRun.stage == "dispatch", col(JobRun.finished_at).is_not(None))
                    .order_by(col(JobRun.finished_at).desc())
                    .limit(1)
                ).first()
        except SQLAlchemyError as exc:
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0]
            return [*checks, fail("beat", f"cannot read job runs: {reason}")]
        finished = last.finished_at if last else None
        if finished is not None and finished.tzinfo is None:
            finished = finished.replace(tzinfo=UTC)  # SQLite hands back naive UTC
        checks.append(
            doctor.beat_check(
                finished,
                now=now,
                every_minutes=settings.dispatch_every_minutes,
                last_ok=last.ok if last else None,
            )
        )
        return checks
    finally:
        engine.dispose()


def redis_checks(settings: Settings, *, queue_limit: int) -> list[Check]:
    if not settings.redis_url:
        return [
            warn("redis", "no REDIS_URL: tasks run inside each command, beat and workers are off")
        ]
    import redis

    client = redis.Redis.from_url(settings.redis_url, socket_timeout=5, socket_connect_timeout=5)
    try:
        client.ping()
        depth = queue_depths(client)[CELERY_QUEUE]
    except redis.RedisError as exc:
        return [fail("redis", f"the broker at REDIS_URL does not answer: {exc}")]
    finally:
        client.close()
    return [ok("redis", "the broker answers"), doctor.queue_check(depth, queue_limit, CELERY_QUEUE)]


def run_checks(
    settings: Settings, *, now: datetime | None = None, queue_limit: int = DEFAULT_QUEUE_LIMIT
) -> list[Check]:
    """Every check, in the order an operator fixes things."""
    now = now or datetime.now(UTC)
    return [
        *smtp_checks(settings),
        *web_checks(settings),
        *dns_checks(settings),
        doctor.secret_check(settings.secret_key.get_secret_value(), settings.environment),
        *database_checks(settings, now=now),
        *redis_checks(settings, queue_limit=queue_limit),
    ]
