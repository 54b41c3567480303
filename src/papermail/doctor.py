"""`papermail doctor`'s judgements: pure functions from what was found to one line each.

Each check takes data (DNS records, a revision, a time, a count) and returns a `Check`: ok,
warn (works, but worth fixing) or FAIL (blocks delivery, or makes receivers refuse the mail),
with what was found and what to do. The probes that gather the data live in `doctor_probes`.

Alignment follows DMARC's relaxed mode: two domains align when they share an organizational
domain. Finding that domain properly needs the Public Suffix List; papermail uses the last two
labels (`mail.lab.example.org` -> `example.org`), which is wrong under suffixes like `co.uk`
(it then reports a mismatch that is not one, never the reverse).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from papermail.settings import weak_secret


class Status(StrEnum):
    ok = "ok"
    warn = "warn"
    fail = "FAIL"


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    message: str

    def as_dict(self) -> dict[str, str]:
        return {k: str(v) for k, v in asdict(self).items()}


def ok(name: str, message: str) -> Check:
    return Check(name, Status.ok, message)


def warn(name: str, message: str) -> Check:
    return Check(name, Status.warn, message)


def fail(name: str, message: str) -> Check:
    return Check(name, Status.fail, message)


def exit_code(checks: Iterable[Check]) -> int:
    """1 when anything blocks delivery, else 0 (warnings included)."""
    return 1 if any(c.status is Status.fail for c in checks) else 0


def is_local_host(host: str) -> bool:
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def org_domain(domain: str) -> str:
    """The organizational domain by the last-two-labels rule (see the module docstring)."""
    labels = domain.lower().rstrip(".").split(".")
    return ".".join(labels[-2:])


# --- SPF (RFC 7208) ----------------------------------------------------------------------

SPF_MECHANISMS = frozenset({"all", "include", "a", "mx", "ptr", "ip4", "ip6", "exists"})
SPF_MODIFIERS = frozenset({"redirect", "exp"})


@dataclass(frozen=True)
class SpfRecord:
    terms: tuple[tuple[str, str, str], ...]  # (qualifier, mechanism, argument)
    redirect: str | None
    problems: tuple[str, ...]

    @property
    def all_qualifier(self) -> str | None:
        return next((q for q, m, _ in self.terms if m == "all"), None)


def spf_records(texts: Sequence[str]) -> list[str]:
    return [t for t in texts if t.lower() == "v=spf1" or t.lower().startswith("v=spf1 ")]


def parse_spf(text: str) -> SpfRecord:
    """Split a `v=spf1` record into its terms; syntax errors are listed, not raised."""
    terms: list[tuple[str, str, str]] = []
    redirect = None
    problems: list[str] = []
    for term in text.split()[1:]:
        if "=" in term and ":" not in term.split("=", 1)[0]:
            name, _, value = term.partition("=")
            if name.lower() == "redirect":
                redirect = value
            elif name.lower() not in SPF_MODIFIERS:
                pass  # unknown modifiers are ignored (RFC 7208 6)
            continue
        qualifier = term[0] if term[0] in "+-~?" else "+"
        body = term[1:] if term[0] in "+-~?" else term
        mechanism, _, argument = body.partition(":")
        mechanism = mechanism.split("/", 1)[0].lower()
        if mechanism not in SPF_MECHANISMS:
            problems.append(f"unknown term {term!r}")
            continue
        if mechanism in {"ip4", "ip6"}:
            try:
                ipaddress.ip_network(argument, strict=False)
            except ValueError:
                problems.append(f"bad address in {term!r}")
                continue
        if mechanism in {"include", "exists"} and not argument:
            problems.append(f"{term!r} needs a domain")
            continue
        terms.append((qualifier, mechanism, argument))
    return SpfRecord(tuple(terms), redirect, tuple(problems))


def spf_check(
    domain: str,
    texts: Sequence[str],
    *,
    relay: str | None = None,
    allows_relay: bool | None = None,
) -> Check:
    """Judge the SPF record of `domain`: one, parses, not `+all`, and (when the relay's address
    is known: `relay`, `allows_relay` from the probe's evaluation) lets the relay send."""
    found = spf_records(texts)
    if not found:
        return fail(
            "spf",
            f"no SPF record at {domain}: publish TXT `v=spf1 <your relay's mechanisms> -all` "
            "(Gmail and Yahoo want SPF and DKIM from bulk senders)",
        )
    if len(found) > 1:
        return fail("spf", f"{len(found)} SPF records at {domain}: merge them into one")
    record = parse_spf(found[0])
    if record.problems:
        return fail("spf", f"SPF at {domain} does not parse: {'; '.join(record.problems)}")
    if record.all_qualifier == "+":
        return fail("spf", f"SPF at {domain} ends in +all: anyone may send as you; use -all")
    if relay is not None and allows_relay is False:
        # A warning, not a failure: a hosted relay takes mail on one address and sends it on
        # from others (then its `include:` is what counts), and a private one is behind NAT.
        if not ipaddress.ip_address(relay).is_global:
            hint = "not a public address: make sure SPF lists the one your relay sends from"
        else:
            term = "ip6" if ":" in relay else "ip4"
            hint = f"if it sends from there, add {term}:{relay}; else include: your relay's SPF"
        return warn("spf", f"SPF at {domain} does not pass the relay's address {relay} ({hint})")
    if record.all_qualifier is None and record.redirect is None:
        return warn("spf", f"SPF at {domain} has no `all` term: end it with -all or ~all")
    if record.all_qualifier == "?":
        return warn("spf", f"SPF at {domain} ends in ?all (neutral): use -all or ~all")
    where = f", allows the relay {relay}" if allows_relay else ""
    return ok("spf", f"SPF at {domain}: {found[0]}{where}")


# --- DKIM (RFC 6376) and DMARC (RFC 7489) ------------------------------------------------


def tags(text: str) -> dict[str, str]:
    """`v=DKIM1; k=rsa; p=...` -> {"v": "DKIM1", ...}; whitespace inside values removed."""
    found = {}
    for part in text.split(";"):
        name, eq, value = part.partition("=")
        if eq:
            found[name.strip().lower()] = "".join(value.split())
    return found


def dkim_check(
    name: str,
    texts: Sequence[str],
    *,
    public: str | None,
    key_type: str | None,
    expected_record: str | None,
) -> Check:
    """Judge the DKIM key record at `name` against the public half of the configured key."""
    if public is None:
        return warn(
            "dkim",
            "papermail does not sign (DKIM_SELECTOR unset): your relay must sign with the From "
            "domain, or receivers ignore one-click unsubscribe (RFC 8058)",
        )
    records = [tags(t) for t in texts]
    keys = [r for r in records if "p" in r]
    if not keys:
        return fail("dkim", f"no DKIM key at {name}: publish TXT `{expected_record}`")
    if all(not r["p"] for r in keys):
        return fail("dkim", f"the DKIM key at {name} is revoked (empty p=): publish the new one")
    for record in keys:
        if record["p"] == public and record.get("k", "rsa").lower() == key_type:
            return ok("dkim", f"DKIM key at {name} matches DKIM_PRIVATE_KEY_FILE")
    return fail(
        "dkim",
        f"the DKIM record at {name} holds another key than DKIM_PRIVATE_KEY_FILE: "
        f"publish TXT `{expected_record}`",
    )


def dmarc_check(name: str, texts: Sequence[str]) -> Check:
    records = [tags(t) for t in texts if t.replace(" ", "").lower().startswith("v=dmarc1")]
    suggestion = "publish TXT `v=DMARC1; p=none; rua=mailto:dmarc@<your domain>`"
    if not records:
        return fail("dmarc", f"no DMARC record at {name}: {suggestion}")
    if len(records) > 1:
        return fail("dmarc", f"{len(records)} DMARC records at {name}: keep one")
    policy = records[0].get("p", "").lower()
    if policy not in {"none", "quarantine", "reject"}:
        return fail("dmarc", f"the DMARC record at {name} has no valid p= tag: {suggestion}")
    return ok("dmarc", f"DMARC at {name}: p={policy}")


def alignment_check(from_domain: str, dkim_domain: str | None, spf_domain: str) -> Check:
    """DMARC passes when DKIM's d= or the SPF (envelope) domain aligns with From (relaxed)."""
    org = org_domain(from_domain)
    dkim_ok = dkim_domain is not None and org_domain(dkim_domain) == org
    spf_ok = org_domain(spf_domain) == org
    rule = "same organizational domain by the last-two-labels rule"
    if dkim_ok or spf_ok:
        aligned = " and ".join(
            x
            for x, y in (("DKIM d=" + str(dkim_domain), dkim_ok), ("SPF " + spf_domain, spf_ok))
            if y
        )
        if dkim_domain is not None and not dkim_ok:
            return warn("alignment", f"{aligned} aligned with From {from_domain}; DKIM d= is not")
        return ok("alignment", f"{aligned} aligned with From {from_domain} ({rule})")
    return fail(
        "alignment",
        f"neither DKIM d={dkim_domain or '(not signing)'} nor SPF {spf_domain} shares From "
        f"{from_domain}'s domain: DMARC fails; set DKIM_DOMAIN or the envelope domain to "
        f"{org} or a subdomain",
    )


# --- the rest of the installation -------------------------------------------------------


def secret_check(secret: str, environment: str) -> Check:
    problem = weak_secret(secret)
    if problem is None:
        return ok("secret", "SECRET_KEY is long and random")
    fix = (
        "set a private random one (`python -c 'import secrets; print(secrets.token_urlsafe(32))'`)"
    )
    if environment == "production":
        return fail("secret", f"SECRET_KEY {problem}: links can be forged; {fix}")
    return warn("secret", f"SECRET_KEY {problem} (refused in production); {fix}")


def schema_check(current: str | None, head: str) -> Check:
    if current is None:
        return fail("schema", "the database has no papermail tables: run `papermail db upgrade`")
    if current != head:
        return fail("schema", f"schema at {current}, code needs {head}: run `papermail db upgrade`")
    return ok("schema", f"schema current ({head})")


def beat_check(
    last_finished: datetime | None, *, now: datetime, every_minutes: float, last_ok: bool | None
) -> Check:
    """Beat runs `send-due` every DISPATCH_EVERY_MINUTES: three missed ticks mean it is down."""
    if every_minutes <= 0:
        return warn("beat", "the dispatcher is off (DISPATCH_EVERY_MINUTES=0): nothing is sent")
    limit = timedelta(minutes=3 * every_minutes)
    if last_finished is None:
        return fail("beat", "no dispatch has run: start `celery -A workers.app beat` and a worker")
    age = now - last_finished
    minutes = age.total_seconds() / 60
    if age > limit:
        return fail(
            "beat",
            f"last dispatch finished {minutes:.0f} min ago (more than 3 x "
            f"{every_minutes:g} min): is `celery beat` running, and a worker?",
        )
    if last_ok is False:
        return warn("beat", f"the last dispatch ({minutes:.0f} min ago) failed: see its error")
    return ok("beat", f"last dispatch {minutes:.1f} min ago")


def queue_check(depth: int, limit: int, queue: str) -> Check:
    if depth >= limit:
        return warn(
            "queue",
            f"{depth} tasks waiting in {queue!r} (limit {limit}): workers are not keeping up",
        )
    return ok("queue", f"{depth} tasks waiting in {queue!r}")
