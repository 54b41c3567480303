"""The app served by a real uvicorn in a thread, for tests that need a live HTTP server."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # a thread cannot own signals; the runner does
        pass


@contextmanager
def serving(app, port: int) -> Iterator[None]:
    """Serve `app` on 127.0.0.1:`port` for a block; fails the test if uvicorn does not start."""
    server = _Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 15
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            pytest.fail("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=10)
