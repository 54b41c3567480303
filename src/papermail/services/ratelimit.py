"""Rate limits for the public forms, checked and counted in one atomic step, so a burst of
concurrent requests cannot get past them (issue 15 #6: 29 of 40 got past a limit of 20 when the
count was read, then written).

A sliding window: a request counts if fewer than `limit` requests were counted under its key in
the last `window`; refused requests are not counted, so a flood does not extend its own block.

- PostgreSQL: a transaction-level advisory lock per key, then one INSERT ... SELECT that inserts
  only while the count is under the limit: concurrent requests for one key take turns.
- SQLite: the same INSERT ... SELECT; the transaction starts with a write (the purge of old
  rows), so it holds SQLite's single write lock from its first statement and requests take turns.
- Redis (when REDIS_URL is set): one Lua script on a sorted set per key, atomic in Redis.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from functools import lru_cache

from sqlalchemy import delete, func, insert, literal, select, text
from sqlalchemy.engine import Engine

from papermail.db import session_scope
from papermail.models import RateLimitHit

_SLIDING = """
local since, now, limit, ttl = tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[5]
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. ARGV[1])
if redis.call('ZCARD', KEYS[1]) >= limit then return 0 end
redis.call('ZADD', KEYS[1], now, ARGV[4])
redis.call('PEXPIRE', KEYS[1], ttl)
return 1
"""


def _lock_id(key: str) -> int:
    return int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big", signed=True)


def count_hits(
    engine: Engine,
    limits: Sequence[tuple[str, int]],
    *,
    window: timedelta,
    now: datetime,
    redis_url: str = "",
) -> str | None:
    """Count one request under each key in turn, stopping at the first key already at its
    limit: that key is returned (the keys before it were counted), or None if all counted."""
    if redis_url:
        return _count_in_redis(redis_url, limits, window=window, now=now)
    since = now - window
    table = RateLimitHit.__table__  # type: ignore[attr-defined]
    column = table.c
    with session_scope(engine) as session:
        connection = session.connection()
        if engine.dialect.name == "postgresql":  # keys locked in one order: never a deadlock
            for key, _ in limits:
                connection.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _lock_id(key)})
        connection.execute(delete(table).where(column.created_at < since))
        for key, limit in limits:
            used = (
                select(func.count())
                .select_from(RateLimitHit)
                .where(column.key == key, column.created_at >= since)
                .scalar_subquery()
            )
            row = select(literal(key, column.key.type), literal(now, column.created_at.type))
            added = connection.execute(
                insert(table)
                .from_select(["key", "created_at"], row.where(used < limit))
                .returning(column.id)
            )
            if added.first() is None:
                return key
    return None


@lru_cache(maxsize=4)
def _redis(url: str):  # type: ignore[no-untyped-def]
    import redis

    client = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)
    return client, client.register_script(_SLIDING)


def _count_in_redis(
    url: str, limits: Sequence[tuple[str, int]], *, window: timedelta, now: datetime
) -> str | None:
    _, script = _redis(url)
    ms = int(now.timestamp() * 1000)
    span = int(window.total_seconds() * 1000)
    for key, limit in limits:
        args = [ms - span, ms, limit, uuid.uuid4().hex, span + 1000]
        if not script(keys=[f"papermail:ratelimit:{key}"], args=args):
            return key
    return None
