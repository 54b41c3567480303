"""The DNS stub the DKIM and doctor tests rely on answers like a DNS server, over UDP and TCP."""

from __future__ import annotations

import dns.message
import dns.query
import dns.rcode

from papermail.dnsrecords import addresses, make_resolver, txt_records
from tests.dnsstub import dns_stub as dns_stub_fixture

dns_stub = dns_stub_fixture  # the fixture, under its name


def test_txt_over_udp_and_tcp_long_values_split_unknown_names_nxdomain(dns_stub):
    long_value = "v=DKIM1; k=rsa; p=" + "A" * 392  # an RSA-2048 record's length
    dns_stub.add("s1._domainkey.example.org", "TXT", long_value)
    dns_stub.add("example.org", "A", "192.0.2.1")
    query = dns.message.make_query("s1._domainkey.example.org", "TXT")
    for ask in (dns.query.udp, dns.query.tcp):
        answer = ask(query, dns_stub.host, port=dns_stub.port, timeout=2)
        [rdata] = answer.answer[0]
        assert [len(s) for s in rdata.strings] == [255, len(long_value) - 255]
        assert b"".join(rdata.strings).decode() == long_value
    missing = dns.query.tcp(
        dns.message.make_query("nothing.example.org", "TXT"), dns_stub.host, port=dns_stub.port
    )
    assert missing.rcode() == dns.rcode.NXDOMAIN
    resolver = make_resolver(dns_stub.address)
    assert txt_records(resolver, "s1._domainkey.example.org") == [long_value]
    assert txt_records(resolver, "example.org") == []  # the name exists, no TXT: NOERROR
    assert addresses(resolver, "example.org") == ["192.0.2.1"]
    assert ("nothing.example.org", "TXT") in dns_stub.queries
