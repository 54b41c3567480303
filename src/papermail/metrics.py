"""Prometheus metrics of the web app and the workers (prometheus-client).

The services count what they did once per batch (a send chunk, a scoring batch, a source), never
per paper. Scrapes read `GET /metrics` on the web app (METRICS_TOKEN, when set, as a bearer
token) and the worker's own endpoint on WORKER_METRICS_PORT.

Celery's prefork children and several web processes each count in their own memory; with
PROMETHEUS_MULTIPROC_DIR in the environment prometheus_client writes every process's values to
files there instead, and a scrape adds them up (`MultiProcessCollector`). The queue depth is not
counted by anyone: it is read from Redis (LLEN of Celery's queue) at scrape time.
"""

from __future__ import annotations

import hmac
import logging
import os
import re
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Histogram, values
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from papermail.models import BounceEvent
from papermail.settings import Settings

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
CELERY_QUEUE = "celery"
# kombu's Redis transport keeps priority 3 of queue "celery" in the list "celery\x06\x163".
_PRIORITY_SEP = "\x06\x16"
_PRIORITY_STEPS = (3, 6, 9)

DIGESTS_SENT = Counter("papermail_digests_sent", "Digests the mail relay accepted.")
DIGESTS_FAILED = Counter(
    "papermail_digests_failed", "Digests refused for good (not a recipient bounce) or unrenderable."
)
DIGESTS_BOUNCED = Counter(
    "papermail_digests_bounced",
    "Digests whose recipient the relay refused during the SMTP session, by SMTP reply code.",
    ["reason"],
)
DIGESTS_RETRIED = Counter(
    "papermail_digests_retried", "Digests put back for a retry after a temporary SMTP failure."
)
SEND_SECONDS = Histogram(
    "papermail_send_seconds",
    "Seconds the mail relay took to accept one digest.",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
)
SCORING_SECONDS = Histogram(
    "papermail_scoring_seconds",
    "Seconds one scoring batch took (rank and store the digests of its subscribers).",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
SUBSCRIBERS_SCORED = Counter("papermail_subscribers_scored", "Subscribers ranked by scoring.")
INGEST_PAPERS = Counter(
    "papermail_ingest_papers",
    "Papers an ingest run met, per source and outcome (inserted, updated, unchanged, skipped).",
    ["source", "outcome"],
)
INGEST_FAILURES = Counter("papermail_ingest_failures", "Sources that failed to ingest.", ["source"])
BOUNCE_EVENTS = Counter(
    "papermail_bounce_events",
    "Bounce and complaint reports stored (each once), by source and kind.",
    ["source", "kind"],
)
WEBHOOK_REQUESTS = Counter(
    "papermail_webhook_requests",
    "Relay webhook requests, by relay and outcome.",
    ["relay", "outcome"],
)

_SMTP_CODE = re.compile(r"\b([245]\d\d)\b")


def smtp_reason(error: str | None) -> str:
    """The SMTP reply code in a refusal ("550"), a label of few values; "other" without one."""
    match = _SMTP_CODE.search(error or "")
    return match.group(1) if match else "other"


def source_label(spec: str) -> str:
    """A source spec as a label: `hf`, `arxiv:cs.LG+cs.CL`, or `file` for any path (paths and
    dated specs would make a new time series every day)."""
    if spec == "hf" or spec.startswith("hf:"):
        return "hf"
    if spec.startswith("arxiv:"):
        return spec[:100]
    return "file"


def count_ingest(spec: str, counts: dict[str, int], *, failed: bool) -> None:
    label = source_label(spec)
    for outcome in ("inserted", "updated", "unchanged", "skipped"):
        if counts.get(outcome):
            INGEST_PAPERS.labels(label, outcome).inc(counts[outcome])
    if failed:
        INGEST_FAILURES.labels(label).inc()


def count_bounce_events(events: Iterable[BounceEvent]) -> None:
    """Count newly stored bounce and complaint events."""
    for event in events:
        BOUNCE_EVENTS.labels(event.source, str(event.kind)).inc()


# --- exposition -----------------------------------------------------------------------------


def queue_depths(client: Any, queues: Sequence[str] = (CELERY_QUEUE,)) -> dict[str, int]:
    """Messages waiting in each Celery queue on Redis, its priority lists included (one
    round trip); what /metrics and `papermail doctor` both report."""
    with client.pipeline(transaction=False) as pipe:
        for queue in queues:
            pipe.llen(queue)
            for step in _PRIORITY_STEPS:
                pipe.llen(f"{queue}{_PRIORITY_SEP}{step}")
        lengths = pipe.execute()
    per_queue = 1 + len(_PRIORITY_STEPS)
    return {
        queue: int(sum(lengths[i * per_queue : (i + 1) * per_queue]))
        for i, queue in enumerate(queues)
    }


class QueueDepth(Collector):
    """`papermail_queue_depth`: messages waiting in Celery's Redis queue (its priority lists
    included), read when scraped; `papermail_redis_up` says whether Redis answered."""

    def __init__(self, redis_url: str, queues: tuple[str, ...] = (CELERY_QUEUE,)) -> None:
        self.redis_url, self.queues = redis_url, queues

    def collect(self) -> Iterator[Metric]:
        import redis

        depth = GaugeMetricFamily(
            "papermail_queue_depth", "Tasks waiting in the Celery queue (Redis).", labels=["queue"]
        )
        client = redis.Redis.from_url(self.redis_url, socket_timeout=2, socket_connect_timeout=2)
        up = 1
        try:
            for queue, waiting in queue_depths(client, self.queues).items():
                depth.add_metric([queue], waiting)
        except redis.RedisError as exc:
            log.warning("metrics: no queue depth, Redis did not answer: %s", exc)
            up = 0
        finally:
            client.close()
        yield depth
        yield GaugeMetricFamily("papermail_redis_up", "Redis answered the scrape.", value=up)


class _ThisProcess(Collector):
    """The default registry's metrics (this process's counters, process and GC stats)."""

    def collect(self) -> Iterator[Metric]:
        return REGISTRY.collect()


def multiprocess_active() -> bool:
    """Whether prometheus_client writes values to files (PROMETHEUS_MULTIPROC_DIR was in the
    environment when it was imported)."""
    return values.ValueClass is not values.MutexValue


def scrape_registry(settings: Settings) -> CollectorRegistry:
    """What a scrape reads: every process's counters (multiprocess mode) or this process's,
    plus the queue depth when there is a Redis."""
    registry = CollectorRegistry(auto_describe=False)
    if settings.prometheus_multiproc_dir:
        if not multiprocess_active():
            log.warning(
                "PROMETHEUS_MULTIPROC_DIR is set in the settings but was not in the process "
                "environment when prometheus_client loaded: counting per process only"
            )
        MultiProcessCollector(registry, path=settings.prometheus_multiproc_dir)
    else:
        registry.register(_ThisProcess())
    if settings.redis_url:
        registry.register(QueueDepth(settings.redis_url))
    return registry


def render(registry: CollectorRegistry) -> bytes:
    return generate_latest(registry)


def token_ok(settings: Settings, authorization: str | None) -> bool:
    """True when METRICS_TOKEN is unset, or `authorization` is ``Bearer <METRICS_TOKEN>``."""
    expected = settings.metrics_token.get_secret_value()
    if not expected:
        return True
    scheme, _, given = (authorization or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), expected.encode()
    )


def clear_multiprocess_dir(settings: Settings) -> None:
    """Before a worker forks its pool: drop the value files of processes of an earlier run, or
    a scrape would add their counts to this run's (prometheus_client asks for the directory
    to be wiped between runs). This process's own files, opened on import, stay."""
    if not settings.prometheus_multiproc_dir:
        return
    folder = Path(settings.prometheus_multiproc_dir)
    folder.mkdir(parents=True, exist_ok=True)
    mine = f"_{os.getpid()}.db"
    for path in folder.glob("*.db"):
        if not path.name.endswith(mine):
            path.unlink(missing_ok=True)


def serve_worker_metrics(settings: Settings) -> int | None:
    """Start the worker's metrics HTTP server on WORKER_METRICS_PORT; returns the port."""
    from prometheus_client import start_http_server

    if not settings.worker_metrics_port:
        return None
    if not settings.prometheus_multiproc_dir:
        log.warning(
            "worker metrics without PROMETHEUS_MULTIPROC_DIR: a prefork pool's children count "
            "in their own memory, and only the main process is served"
        )
    start_http_server(settings.worker_metrics_port, registry=scrape_registry(settings))
    log.info("metrics: serving on port %s", settings.worker_metrics_port)
    return settings.worker_metrics_port
