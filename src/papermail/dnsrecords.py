"""DNS lookups for `papermail doctor` and DKIM verification (dnspython): TXT and address records.

The resolver is the system's, or the one DNS_RESOLVER names (`host:port`), which is how tests
point every lookup at a local DNS server. "No such name" and "no record of that type" are both
an empty answer; a server that does not answer is an error the caller reports.
"""

from __future__ import annotations

from collections.abc import Callable

import dns.exception
import dns.resolver

from papermail.errors import PapermailError

LIFETIME = 5.0


class DNSLookupError(PapermailError):
    """The resolver did not answer (timeout, SERVFAIL, refused)."""


def make_resolver(address: str = "", *, lifetime: float = LIFETIME) -> dns.resolver.Resolver:
    """The system resolver, or one asking only `host:port` (a bare host means port 53)."""
    if not address:
        resolver = dns.resolver.Resolver()
    else:
        host, _, port = address.rpartition(":") if ":" in address else (address, "", "53")
        resolver = dns.resolver.Resolver(configure=False)
        resolver.nameservers = [host.strip("[]")]
        resolver.port = int(port)
    resolver.lifetime = lifetime
    resolver.timeout = lifetime
    return resolver


def _resolve(resolver: dns.resolver.Resolver, name: str, rdtype: str) -> list:
    try:
        return list(resolver.resolve(name, rdtype, search=False))
    except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
        return []
    except dns.exception.DNSException as exc:
        raise DNSLookupError(f"no answer for {rdtype} {name}: {exc}") from None


def txt_records(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """Every TXT record at `name`, each with its strings joined as RFC 7208/6376 read them."""
    return [b"".join(r.strings).decode("utf-8", "replace") for r in _resolve(resolver, name, "TXT")]


def addresses(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """The IPv4 and IPv6 addresses of `name`."""
    return [r.address for rdtype in ("A", "AAAA") for r in _resolve(resolver, name, rdtype)]


def mail_hosts(resolver: dns.resolver.Resolver, name: str) -> list[str]:
    """The MX hosts of `name`."""
    return [r.exchange.to_text(omit_final_dot=True) for r in _resolve(resolver, name, "MX")]


def dkim_dnsfunc(resolver: dns.resolver.Resolver) -> Callable[..., bytes]:
    """A `dnsfunc` for `dkim.verify`: the first TXT record at a name, through `resolver`."""

    def lookup(name: bytes, timeout: float = LIFETIME) -> bytes:
        found = txt_records(resolver, name.decode("ascii").rstrip("."))
        return found[0].encode() if found else b""

    return lookup
