"""Issue 15 #12: Redis dies while the worker holds a task (scoring), and comes back. The worker
must stay up (it used to exit: "Unrecoverable error: AttributeError 'NoneType' object has no
attribute 'hostname'" in kombu's restore_unacked) and every digest must be delivered once."""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from collections import Counter
from datetime import timedelta
from pathlib import Path

import pytest
import redis

from tests.conftest import free_port
from tests.test_celery_worker import running_worker
from tests.test_delivery_worker import (
    START,
    add_subscribers,
    mail_server,  # noqa: F401  (fixture)
    ready_database,
    wait_until_settled,
    worker_settings,
)

pytestmark = pytest.mark.slow

DOWN = 2.0  # seconds without Redis: it comes back while the worker still scores
N = 3000  # scoring them takes seconds: Redis comes back while the worker still holds the task


class RedisServer:
    """A private redis-server that can be killed and started again on the same port and data
    (append-only file, as in docker-compose.yml)."""

    def __init__(self, workdir: Path) -> None:
        self.port, self.workdir = free_port(), workdir
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.proc: subprocess.Popen | None = None

    def start(self) -> RedisServer:
        binary = shutil.which("redis-server")
        assert binary, "needs redis-server"
        args = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--dir", str(self.workdir)]
        args += ["--save", "", "--appendonly", "yes", "--appendfsync", "always"]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        client, deadline = redis.Redis.from_url(self.url), time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    pytest.fail("private redis-server did not start")
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.kill()


def forget_broker_connections() -> None:
    """The test process's Celery app caches its broker and result connections: drop them, so
    that it follows the broker URL of the next configure() (this file's Redis moves ports)."""
    from workers.app import celery_app

    celery_app._pool = None
    amqp = celery_app.__dict__.get("amqp")
    if amqp is not None:
        amqp._producer_pool = None
    celery_app._backend_cache = None
    celery_app._local.__dict__.pop("backend", None)


@pytest.fixture
def private_redis(tmp_path):
    forget_broker_connections()
    server = RedisServer(tmp_path).start()
    yield server
    server.stop()
    forget_broker_connections()


def test_redis_killed_during_scoring_then_back_every_digest_once(
    tmp_path,
    private_redis,
    database_url,
    seeds_dir,
    mail_server,  # noqa: F811
):
    from workers import tasks

    smtp = mail_server()
    settings = worker_settings(
        tmp_path,
        private_redis.url,
        database_url,
        smtp.port,
        send_lease_seconds=3,
        broker_visibility_timeout=10,
    )
    engine = ready_database(settings, seeds_dir, papers_at=START - timedelta(hours=2))
    rows = [
        {"email": f"r{i:03d}@example.org", "confirmed": True, "send_hour": 7, "max_papers": 3}
        for i in range(N)
    ]
    add_subscribers(engine, rows, random.Random(12))
    slot = START + timedelta(hours=7)

    with running_worker(settings, tmp_path, name="outage", concurrency=2) as worker:
        tasks.send_due.delay(now=slot.isoformat())
        deadline = time.monotonic() + 60
        held = "Task workers.tasks.score_and_send["
        while held not in worker.log() and time.monotonic() < deadline:
            time.sleep(0.005)
        assert held in worker.log(), worker.log()
        private_redis.kill()  # while the worker holds the scoring task
        time.sleep(DOWN)
        assert worker.proc.poll() is None, f"the worker exited:\n{worker.log()[-3000:]}"
        private_redis.start()  # same port, same append-only file
        # Beat's next ticks: stalled or never-queued sends are queued again after the lease.
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            counts = wait_until_settled(engine, timeout=5)
            if counts == {"sent": N}:
                break
            try:
                tasks.send_due.delay(now=slot.isoformat()).get(timeout=30)
            except Exception:  # the broker may still be reconnecting
                time.sleep(1)
        assert worker.proc.poll() is None, f"the worker exited:\n{worker.log()[-3000:]}"
        log = worker.log()
    assert counts == {"sent": N}, counts
    received = Counter(m.recipient for m in smtp.handler.received())
    assert len(received) == N and set(received.values()) == {1}, received.most_common(3)
    assert "Unrecoverable error" not in log


def test_a_collected_channel_answers_a_connection_error_not_an_attribute_error(redis_url):
    """The crash itself, on the kombu path: a late-acknowledged message is still held when the
    broker connection is collected (transport.client = None, pools dropped); restoring or
    acknowledging it then used to raise AttributeError ('NoneType' object has no attribute
    'hostname'), which Celery does not treat as a connection error: the worker exited."""
    from kombu import Connection, Exchange, Queue

    import workers.app  # noqa: F401  (installs the guard, as the worker does)

    queue = Queue("outage-probe", Exchange("outage-probe"), "outage-probe")
    with Connection(redis_url) as producer:
        producer.Producer().publish(
            {"n": 1}, exchange=queue.exchange, routing_key="outage-probe", declare=[queue]
        )
    connection = Connection(redis_url)
    held = []
    consumer = connection.Consumer([queue], callbacks=[lambda body, message: held.append(message)])
    consumer.qos(prefetch_count=1)
    consumer.consume()
    connection.drain_events(timeout=5)
    assert held, "a message is held, unacknowledged"
    channel = consumer.channel
    channel.connection.client = None  # what Connection.collect() leaves behind
    channel._pool = None  # what Channel._disconnect_pools() leaves behind
    with pytest.raises(channel.connection_errors):
        channel.qos.restore_unacked()
    with pytest.raises(channel.connection_errors):
        held[0].ack()
    channel.qos._on_collect.cancel()  # nothing to restore at this test's exit


def test_the_worker_retries_the_broker_for_as_long_as_it_takes():
    from workers.app import celery_app

    assert celery_app.conf.broker_connection_max_retries is None
    assert celery_app.conf.broker_connection_retry_on_startup is True
    assert celery_app.conf.result_backend_always_retry is True


def test_every_process_comes_back_by_itself():
    """Whatever else stops a process, its supervisor starts it again: compose and systemd."""
    import yaml

    root = Path(__file__).parents[1]
    services = yaml.safe_load((root / "docker-compose.yml").read_text())["services"]
    for name in ("web", "worker", "beat"):
        assert services[name]["restart"] == "unless-stopped", name
    readme = (root / "README.md").read_text()
    unit = readme[readme.index("papermail-worker.service") :]
    assert "celery -A workers.app worker" in unit and "Restart=always" in unit
