"""A real SMTP server (aiosmtpd) that counts and drops what it receives, run as its own process
so that its CPU (2-3 ms a message: it reads line by line) never counts against the client's.

``python -m bench.smtp_sink PORT`` prints ``ready``; each ``stats`` line on stdin answers a JSON
line of totals (messages, bytes, the process's CPU seconds); end of input stops it.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from threading import Lock
from typing import Any

from aiosmtpd.controller import Controller


@dataclass
class CountingHandler:
    messages: int = 0
    size: int = 0

    def __post_init__(self) -> None:
        self.lock = Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages += 1
            self.size += len(envelope.content)
        return "250 OK"


def serve(port: int) -> None:
    handler = CountingHandler()
    controller = Controller(handler, hostname="127.0.0.1", port=port)
    controller.start()
    print("ready", flush=True)
    try:
        for line in sys.stdin:
            if line.strip() == "stats":
                with handler.lock:
                    totals = {"messages": handler.messages, "bytes": handler.size}
                print(json.dumps(totals | {"cpu": time.process_time()}), flush=True)
    finally:
        controller.stop()


def free_port() -> int:
    """aiosmtpd 1.4.6 cannot start on port 0: ask the kernel for a free port first."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Sink:
    """The sink process, started and stopped from the benchmark."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "bench.smtp_sink", str(self.port)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        if self.process.stdout.readline().strip() != "ready":
            self.process.kill()
            raise RuntimeError("the aiosmtpd sink did not start")

    def stats(self) -> dict[str, float]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write("stats\n")
        self.process.stdin.flush()
        return json.loads(self.process.stdout.readline())

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
    serve(int(sys.argv[1]))
