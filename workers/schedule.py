"""Celery beat schedule, built from settings."""

from __future__ import annotations

from typing import Any

from papermail.settings import Settings


def build_schedule(settings: Settings) -> dict[str, dict[str, Any]]:
    """Every few minutes: send the digests whose local send time has come."""
    return {
        "send-due-digests": {
            "task": "workers.tasks.send_due",
            "schedule": 300.0,
        },
    }
