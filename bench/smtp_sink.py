"""A real SMTP server (aiosmtpd) that counts what it receives, by Message-ID, and drops it; it
runs as its own process so that its CPU (about 1 ms a message: it reads line by line) never
counts against the client's.

``python -m bench.smtp_sink PORT`` prints ``ready``; on stdin, each ``stats`` line answers a JSON
line of totals (messages, bytes, distinct Message-IDs, the process's CPU seconds), each ``ids``
line a JSON object {Message-ID: copies received}; end of input stops it.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from typing import Any

from aiosmtpd.controller import Controller

_MESSAGE_ID = re.compile(rb"^Message-ID:[ \t]*(<[^>\r\n]*>)", re.IGNORECASE | re.MULTILINE)


def message_id(data: bytes) -> str:
    """The Message-ID in the header block ("" if none): how duplicates are told apart."""
    end = data.find(b"\r\n\r\n")
    found = _MESSAGE_ID.search(data, 0, end if end >= 0 else len(data))
    return found.group(1).decode("ascii", "replace") if found else ""


class Tally:
    """Messages received, by Message-ID; shared by the server thread and the stats reader."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.ids: Counter[str] = Counter()
        self.messages = 0
        self.size = 0

    def add(self, data: bytes) -> None:
        mid = message_id(data)
        with self.lock:
            self.ids[mid] += 1
            self.messages += 1
            self.size += len(data)

    def totals(self) -> dict[str, float]:
        with self.lock:
            counts = {"messages": self.messages, "bytes": self.size, "unique": len(self.ids)}
        return counts | {"cpu": time.process_time()}

    def copies(self) -> dict[str, int]:
        with self.lock:
            return dict(self.ids)


class CountingHandler:
    """The aiosmtpd handler."""

    def __init__(self, tally: Tally) -> None:
        self.tally = tally

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.tally.add(envelope.content)
        return "250 OK"


def serve(port: int) -> None:
    tally = Tally()
    controller = Controller(CountingHandler(tally), hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            command = line.strip()
            if command == "stats":
                print(json.dumps(tally.totals()), flush=True)
            elif command == "ids":
                print(json.dumps(tally.copies()), flush=True)
    finally:
        controller.stop()


def free_port() -> int:
    """aiosmtpd 1.4.6 cannot start on port 0: ask the kernel for a free port first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sink:
    """The sink process, started and stopped from a benchmark."""

    def __init__(self) -> None:
        self.host, self.port = "127.0.0.1", free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.smtp_sink", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise RuntimeError("the SMTP sink did not start")
        self.lock = threading.Lock()

    def _ask(self, command: str) -> Any:
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            self.process.stdin.write(command + "\n")
            self.process.stdin.flush()
            return json.loads(self.process.stdout.readline())

    def stats(self) -> dict[str, float]:
        return self._ask("stats")

    def distinct(self) -> int:
        """Different Message-IDs received so far."""
        return int(self.stats()["unique"])

    def message_ids(self) -> Counter[str]:
        """Copies received of each Message-ID so far."""
        return Counter(self._ask("ids"))

    def close(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> Sink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m bench.smtp_sink", description=__doc__)
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    serve(args.port)
