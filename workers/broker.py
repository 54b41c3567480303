"""Keep the worker alive through a Redis outage (issue 15 #12).

The crash: "Unrecoverable error: AttributeError 'NoneType' object has no attribute 'hostname'",
raised in kombu's Redis transport from QoS.restore_unacked. When the broker connection drops,
Celery collects the old connection (`Connection.collect()` / `_do_close_transport()` sets
`transport.client = None`) while a late-acknowledged task still runs; when that channel later
restores or acknowledges the task's message, `Channel._connparams()` rebuilds its connection pool
from `self.connection.client.hostname` and meets None. AttributeError is not one of the
transport's connection errors, so Celery's `ignore_errors` / `ack_log_error` do not absorb it: it
reaches the worker's main loop, which exits (kombu issue #970 is the same trace at shutdown;
celery #9250 and kombu PR #2007 are its relatives on reconnection).

The fix here: a channel whose connection was collected answers with a redis ConnectionError, a
connection error Celery already handles. Nothing is lost: a message that could not be restored
or acknowledged stays in Redis's `unacked` hash and is handed out again after the visibility
timeout (`unacked_restore_interval` in workers/app.py), and every task is safe to run twice.
"""

from __future__ import annotations

import functools

from kombu.transport import redis as kombu_redis

_PATCHED = "_papermail_collected_guard"


def guard_collected_channels() -> None:
    """Patch kombu's Redis Channel once (idempotent)."""
    channel = kombu_redis.Channel
    if getattr(channel, _PATCHED, False):
        return
    original = channel._connparams

    @functools.wraps(original)
    def _connparams(self, asynchronous=False):  # type: ignore[no-untyped-def]
        if self.connection is None or self.connection.client is None:
            import redis

            raise redis.ConnectionError("broker connection was collected (reconnecting)")
        return original(self, asynchronous=asynchronous)

    channel._connparams = _connparams
    setattr(channel, _PATCHED, True)
