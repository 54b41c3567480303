"""A real DNS server for tests: UDP and TCP on 127.0.0.1, one free port, records the test gives.

Built on dnspython's message API (`dns.message.from_wire`, `make_response`), so DKIM
verification and `papermail doctor` do real lookups over the network against it. A name it
holds answers its records of the asked type (NOERROR with no answer for other types); any
other name is NXDOMAIN. TXT values longer than 255 bytes are split into strings the way a
zone file would publish them (an RSA DKIM key is ~400 characters).
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import struct
import threading
from collections import defaultdict
from collections.abc import Iterator

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import pytest
from dns.rdtypes.ANY.TXT import TXT


def _txt(value: str) -> TXT:
    raw = value.encode()
    chunks = [raw[i : i + 255] for i in range(0, len(raw), 255)] or [b""]
    return TXT(dns.rdataclass.IN, dns.rdatatype.TXT, chunks)


class DNSStub:
    """Serve `add`ed records until `stop`; `queries` lists every (name, type) asked."""

    def __init__(self) -> None:
        self.records: dict[tuple[dns.name.Name, int], list[dns.rdata.Rdata]] = defaultdict(list)
        self.queries: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._udp, self._tcp = self._bind()
        self.host, self.port = self._udp.getsockname()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve, name="dns-stub", daemon=True)

    @staticmethod
    def _bind() -> tuple[socket.socket, socket.socket]:
        """A UDP socket on a free port and a TCP one on the same number (retried if taken)."""
        for _ in range(20):
            udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            udp.bind(("127.0.0.1", 0))
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                tcp.bind(("127.0.0.1", udp.getsockname()[1]))
            except OSError:
                udp.close()
                tcp.close()
                continue
            tcp.listen(8)
            return udp, tcp
        raise RuntimeError("no port free for both UDP and TCP")

    @property
    def address(self) -> str:
        """The `host:port` form of DNS_RESOLVER."""
        return f"{self.host}:{self.port}"

    def add(self, name: str, rdtype: str, *values: str) -> None:
        """Records at `name`: TXT values as plain strings, others in zone-file syntax."""
        key = (dns.name.from_text(name), dns.rdatatype.from_text(rdtype))
        with self._lock:
            for value in values:
                if key[1] == dns.rdatatype.TXT:
                    self.records[key].append(_txt(value))
                else:
                    self.records[key].append(dns.rdata.from_text(dns.rdataclass.IN, key[1], value))

    def remove(self, name: str, rdtype: str | None = None) -> None:
        owner = dns.name.from_text(name)
        with self._lock:
            for key in [k for k in self.records if k[0] == owner]:
                if rdtype is None or key[1] == dns.rdatatype.from_text(rdtype):
                    del self.records[key]

    def answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        response.flags |= dns.flags.AA
        question = query.question[0]
        self.queries.append(
            (question.name.to_text(omit_final_dot=True), dns.rdatatype.to_text(question.rdtype))
        )
        with self._lock:
            known = any(name == question.name for name, _ in self.records)
            found = self.records.get((question.name, question.rdtype), [])
            if found:
                rrset = dns.rrset.RRset(question.name, dns.rdataclass.IN, question.rdtype)
                for rdata in found:
                    rrset.add(rdata, ttl=60)
                response.answer.append(rrset)
        if not known:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()

    def _serve(self) -> None:
        selector = selectors.DefaultSelector()
        selector.register(self._udp, selectors.EVENT_READ)
        selector.register(self._tcp, selectors.EVENT_READ)
        while not self._stopping.is_set():
            for key, _ in selector.select(timeout=0.1):
                if key.fileobj is self._udp:
                    wire, peer = self._udp.recvfrom(65535)
                    with contextlib.suppress(Exception):
                        self._udp.sendto(self.answer(wire), peer)
                else:
                    conn, _ = self._tcp.accept()
                    with conn, contextlib.suppress(Exception):
                        self._serve_tcp(conn)
        selector.close()

    def _serve_tcp(self, conn: socket.socket) -> None:
        conn.settimeout(2)
        (length,) = struct.unpack("!H", self._recv(conn, 2))
        reply = self.answer(self._recv(conn, length))
        conn.sendall(struct.pack("!H", len(reply)) + reply)

    @staticmethod
    def _recv(conn: socket.socket, size: int) -> bytes:
        data = b""
        while len(data) < size:
            chunk = conn.recv(size - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data

    def start(self) -> DNSStub:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=5)
        self._udp.close()
        self._tcp.close()


@pytest.fixture
def dns_stub() -> Iterator[DNSStub]:
    """A started `DNSStub`; import this fixture into a test module to use it."""
    stub = DNSStub().start()
    try:
        yield stub
    finally:
        stub.stop()
