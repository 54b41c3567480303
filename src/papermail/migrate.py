"""Schema migrations with Alembic; the scripts ship inside the package (papermail/migrations).

`papermail db upgrade` applies them. Production refuses to start on a database that is not at
the newest revision; in development the CLI and workers bring their own database up to date.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from papermail.errors import PapermailError

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


class NotMigrated(PapermailError):
    """The database schema is older (or newer) than this code."""


def alembic_config(engine: Engine) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    url = engine.url.render_as_string(hide_password=False)
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))  # configparser escaping
    return config


def head_revision() -> str:
    return ScriptDirectory(str(MIGRATIONS)).get_current_head() or ""


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, revision)


def ensure_migrated(engine: Engine, *, auto: bool) -> None:
    """Upgrade when allowed (development), otherwise refuse with what to run."""
    current, head = current_revision(engine), head_revision()
    if current == head:
        return
    if auto:
        upgrade(engine)
        return
    where = engine.url.render_as_string(hide_password=True)
    raise NotMigrated(
        f"database {where} is at schema revision {current or 'none'}, this papermail needs "
        f"{head}: run `papermail db upgrade`"
    )
