"""One log line per event as `key=value` pairs (logfmt), so log tools can filter on fields.

`log_event(log, "delivery.sent", digest_id=12, subscriber_id=3, attempt=1)` writes
`event=delivery.sent digest_id=12 subscriber_id=3 attempt=1`; values with spaces or quotes are
JSON-quoted. The fields also ride along as `record.fields` for a JSON formatter.
"""

from __future__ import annotations

import json
import logging
import re

_BARE = re.compile(r"[A-Za-z0-9_.:@/+-]+")


def _value(value: object) -> str:
    text = value if isinstance(value, str) else str(value)
    return text if _BARE.fullmatch(text) else json.dumps(text, ensure_ascii=False)


def format_event(event: str, **fields: object) -> str:
    parts = [f"event={event}"]
    parts.extend(f"{key}={_value(value)}" for key, value in fields.items() if value is not None)
    return " ".join(parts)


def log_event(log: logging.Logger, event: str, level: int = logging.INFO, **fields: object) -> None:
    if log.isEnabledFor(level):
        log.log(level, format_event(event, **fields), extra={"fields": {"event": event, **fields}})
