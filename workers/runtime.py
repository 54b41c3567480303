"""Per-process settings and database engine for tasks, created lazily (after a worker forks)."""

from __future__ import annotations

from sqlalchemy.engine import Engine

from papermail.db import make_engine
from papermail.migrate import ensure_migrated
from papermail.settings import Settings, get_settings

_settings: Settings | None = None
_engine: Engine | None = None


def use_settings(settings: Settings) -> None:
    """Point this process's tasks at other settings (the CLI and tests do this)."""
    global _settings, _engine
    if _engine is not None:
        _engine.dispose()
    _settings, _engine = settings, None


def settings() -> Settings:
    return _settings or get_settings()


def engine() -> Engine:
    global _engine
    if _engine is None:
        engine = make_engine(settings())
        ensure_migrated(engine, auto=False)  # workers never migrate: `papermail db upgrade` does
        _engine = engine
    return _engine


def reset_after_fork() -> None:
    """A forked pool child must not reuse the parent's database connections."""
    global _engine
    if _engine is not None:
        _engine.dispose(close=False)
        _engine = None
