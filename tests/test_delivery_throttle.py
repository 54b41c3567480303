"""The SMTP rate limit: a token bucket per relay, shared by processes through a real Redis."""

from __future__ import annotations

import multiprocessing
import time

import redis

from papermail.logfmt import format_event
from papermail.throttle import LocalTokenBucket, RedisTokenBucket, Unlimited, smtp_limiter
from tests.conftest import make_settings


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_local_bucket_allows_a_second_of_burst_then_the_rate():
    clock = FakeClock()
    bucket = LocalTokenBucket(5.0, clock=clock, sleep=clock.sleep)
    for _ in range(5):
        bucket.acquire()
    assert clock.now == 100.0  # a second's worth goes at once
    for _ in range(10):
        bucket.acquire()
    assert abs(clock.now - 102.0) < 1e-6  # then five a second


def _take(url: str, key: str, rate: float, n: int, queue) -> None:
    bucket = RedisTokenBucket(redis.Redis.from_url(url), key, rate)
    for _ in range(n):
        bucket.acquire()
        queue.put(time.monotonic())


def test_redis_bucket_is_shared_by_processes(redis_url):
    """Two processes drawing 15 tokens each at 10/s: the first 10 at once, the other 20 take
    two seconds, however the processes interleave."""
    key = f"papermail:test-rate:{time.monotonic_ns()}"
    ctx = multiprocessing.get_context("fork")
    queue = ctx.Queue()
    started = time.monotonic()
    procs = [ctx.Process(target=_take, args=(redis_url, key, 10.0, 15, queue)) for _ in range(2)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(timeout=30)
        assert proc.exitcode == 0
    stamps = sorted(queue.get(timeout=5) - started for _ in range(30))
    assert 1.8 <= stamps[-1] < 4.0, stamps
    for i, t in enumerate(stamps):  # never ahead of the bucket: burst + rate x elapsed
        assert i + 1 <= 10 + 10 * t + 1, (i, t)


def test_limiter_follows_the_settings(tmp_path, redis_url):
    assert isinstance(smtp_limiter(make_settings(tmp_path)), Unlimited)  # outbox: no relay
    smtp = make_settings(tmp_path, mail_backend="smtp", smtp_rate_limit=5)
    assert isinstance(smtp_limiter(smtp), LocalTokenBucket)
    shared = smtp_limiter(smtp.model_copy(update={"redis_url": redis_url}))
    assert isinstance(shared, RedisTokenBucket) and shared.key.endswith(":localhost:25")
    assert smtp_limiter(smtp) is smtp_limiter(smtp)  # one bucket per process and relay


def test_log_lines_are_key_value_pairs():
    line = format_event(
        "delivery.bounced", digest_id=7, subscriber_id=3, status="bounced", error="550 no user"
    )
    assert line == (
        'event=delivery.bounced digest_id=7 subscriber_id=3 status=bounced error="550 no user"'
    )
