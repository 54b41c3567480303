"""How fast mail may leave: a token bucket per SMTP relay, shared by every worker process.

Relays cap senders in messages per second (SES, Postmark, a provider's smarthost); going over
earns 4xx replies or a blocked account. The bucket holds up to one second's worth of tokens and
refills at `rate`. With Redis it lives in one key that a Lua script updates atomically on Redis's
own clock, so processes on any host share it; without Redis (tasks run in-process) each process
keeps its own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from functools import lru_cache
from typing import Protocol

import redis

from papermail.errors import DeliveryError
from papermail.settings import Settings

# Take a token, or return how many milliseconds until one is due. State: tokens and the time
# (ms) they were counted at; Redis's clock, so workers with skewed clocks still agree.
_TAKE = """
local now = redis.call('TIME')
local now_ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local rate = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1]) or burst
local at = tonumber(state[2]) or now_ms
tokens = math.min(burst, tokens + math.max(0, now_ms - at) * rate / 1000)
local wait = 0
if tokens >= 0.999999 then
  tokens = math.max(0, tokens - 1)
else
  wait = math.ceil((1 - tokens) * 1000 / rate)
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', now_ms)
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
return wait
"""

EPSILON = 1e-6


class RateLimiter(Protocol):
    def acquire(self) -> None:
        """Block until one more message may go out."""
        ...


class Unlimited:
    def acquire(self) -> None:
        return None


class LocalTokenBucket:
    """One process's bucket (thread-safe): for in-process (eager) runs without Redis."""

    def __init__(
        self,
        rate: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.rate = rate
        self.burst = max(1.0, rate)
        self.tokens = self.burst
        self.clock, self.sleep = clock, sleep
        self.at = clock()
        self.lock = threading.Lock()

    def _take(self) -> float:
        """Take a token now (0.0) or say how many seconds until one is due."""
        with self.lock:
            now = self.clock()
            self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
            self.at = now
            if self.tokens >= 1 - EPSILON:  # float sums may fall a hair short of a token
                self.tokens = max(0.0, self.tokens - 1)
                return 0.0
            return max((1 - self.tokens) / self.rate, 0.001)

    def acquire(self) -> None:
        while (wait := self._take()) > 0:
            self.sleep(wait)


class RedisTokenBucket:
    """The bucket in Redis, shared by every process that names the same key."""

    def __init__(self, client: redis.Redis, key: str, rate: float) -> None:
        self.client, self.key, self.rate = client, key, rate
        self.burst = max(1.0, rate)
        self.script = client.register_script(_TAKE)

    def acquire(self) -> None:
        while True:
            try:
                wait_ms = int(self.script(keys=[self.key], args=[self.rate, self.burst]))
            except redis.RedisError as exc:  # no Redis, no way to honour the limit: retry later
                raise DeliveryError(f"rate limiter unavailable: {exc}") from None
            if wait_ms <= 0:
                return
            time.sleep(wait_ms / 1000)


def smtp_limiter(settings: Settings) -> RateLimiter:
    """The limiter for `settings`' relay; one per process, so its bucket outlives a task."""
    if settings.mail_backend != "smtp" or settings.smtp_rate_limit <= 0:
        return Unlimited()
    return _limiter(
        settings.redis_url, settings.smtp_host, settings.smtp_port, settings.smtp_rate_limit
    )


@lru_cache(maxsize=16)
def _limiter(redis_url: str, host: str, port: int, rate: float) -> RateLimiter:
    if not redis_url:
        return LocalTokenBucket(rate)
    key = f"papermail:smtp-rate:{host}:{port}"
    return RedisTokenBucket(redis.Redis.from_url(redis_url), key, rate)
