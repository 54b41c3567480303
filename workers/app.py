"""The Celery app: Redis is broker and result backend; with no REDIS_URL tasks run in-process."""

from __future__ import annotations

from celery import Celery
from celery.signals import worker_init, worker_process_init, worker_ready

from papermail import metrics
from papermail.settings import Settings, get_settings
from workers import runtime
from workers.broker import guard_collected_channels
from workers.schedule import build_schedule


def configure(app: Celery, settings: Settings) -> Celery:
    if settings.redis_url:
        app.conf.update(
            broker_url=settings.redis_url,
            result_backend=settings.redis_url,
            task_always_eager=False,
        )
    else:
        app.conf.update(
            broker_url="memory://",
            result_backend="cache+memory://",
            task_always_eager=True,
            task_eager_propagates=True,
        )
    visibility = settings.broker_visibility_timeout
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        timezone="UTC",
        enable_utc=True,
        # A task is acknowledged only once done: if its pool process dies, the worker requeues
        # it (reject_on_worker_lost); if the whole worker dies, Redis hands it out again once
        # the visibility timeout has passed. Both are safe: sends are compare-and-set claims.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        broker_transport_options={
            "visibility_timeout": visibility,
            # Look for abandoned tasks at least every tenth of the timeout (kombu: 100 s).
            "unacked_restore_interval": max(1, min(10, visibility // 10)),
            "unacked_restore_throttle": 1,
        },
        result_backend_transport_options={"visibility_timeout": visibility},
        result_expires=7 * 24 * 3600,
        broker_connection_retry_on_startup=True,
        # A Redis outage never ends the worker: reconnect for as long as it takes (Celery's
        # default gives up after 100 attempts), and a result stored during one waits for Redis.
        broker_connection_retry=True,
        broker_connection_max_retries=None,
        result_backend_always_retry=True,
        result_backend_max_retries=60,
        worker_hijack_root_logger=False,
        # Task events for Flower (`celery -A workers.app flower`); `worker -E` also turns on.
        worker_send_task_events=settings.task_events,
        task_send_sent_event=settings.task_events,
        beat_schedule=build_schedule(settings),
    )
    # Re-pointed at another broker (tests do this): drop what was made for the previous one, or
    # a task, a control command or a result would still go there.
    app.close()  # the connection pool
    app.__dict__.pop("amqp", None)  # its producer pool (a cached property)
    vars(app._local).pop("backend", None)  # the result backend, cached per thread
    runtime.use_settings(settings)
    return app


guard_collected_channels()  # see workers/broker.py: the worker must outlive a Redis outage


def create_app(settings: Settings) -> Celery:
    return configure(Celery("papermail", include=["workers.tasks"]), settings)


celery_app = create_app(get_settings())
app = celery_app


@worker_process_init.connect
def _fresh_connections(**_kwargs) -> None:
    runtime.reset_after_fork()


@worker_init.connect
def _fresh_metrics(**_kwargs) -> None:
    """Before the pool forks: values an earlier run left in PROMETHEUS_MULTIPROC_DIR go."""
    metrics.clear_multiprocess_dir(runtime.settings())


@worker_ready.connect
def _serve_metrics(**_kwargs) -> None:
    """The worker's Prometheus endpoint on WORKER_METRICS_PORT (all its pool processes'
    counters with PROMETHEUS_MULTIPROC_DIR, else the main process's only)."""
    metrics.serve_worker_metrics(runtime.settings())
