"""Schema migrations with Alembic; the scripts ship inside the package (papermail/migrations).

`papermail db upgrade` applies them. Production refuses to start on a database that is not at
the newest revision; in development the CLI and workers bring their own database up to date.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection, Engine

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


@contextmanager
def _migrating(engine: Engine) -> Iterator[Connection]:
    """One transaction for the migration. On SQLite, foreign keys are off while it runs (as
    SQLite's own table-rebuild recipe asks: batch mode drops and re-creates tables, and dropping
    a referenced table would cascade deletes) and checked before it commits."""
    with engine.connect() as connection:
        sqlite = connection.dialect.name == "sqlite"
        enforced = 0
        if sqlite:  # outside any transaction, or SQLite ignores the pragma
            enforced = connection.exec_driver_sql("PRAGMA foreign_keys").scalar() or 0
            connection.exec_driver_sql("PRAGMA foreign_keys=OFF")
            connection.commit()
        try:
            with connection.begin():
                yield connection
                if sqlite:
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise PapermailError(f"migration left broken references: {broken[:5]}")
        finally:
            if sqlite:
                connection.exec_driver_sql(f"PRAGMA foreign_keys={'ON' if enforced else 'OFF'}")
                connection.commit()


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = alembic_config(engine)
    with _migrating(engine) as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, revision)


def downgrade(engine: Engine, revision: str) -> None:
    config = alembic_config(engine)
    with _migrating(engine) as connection:
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
