"""Engines and sessions: the only module that knows how to reach the database."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import event, insert
from sqlalchemy.engine import Engine, make_url
from sqlmodel import Session, SQLModel, create_engine

from papermail import models  # noqa: F401  (registers the tables on SQLModel.metadata)
from papermail.settings import Settings


def make_engine(settings: Settings) -> Engine:
    url = make_url(settings.resolved_database_url)
    if url.get_backend_name() == "sqlite":
        if url.database and url.database != ":memory:":
            Path(url.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False, "timeout": 30})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return create_engine(url, pool_pre_ping=True)


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def create_tables(engine: Engine) -> None:
    """Bring the schema to the newest migration (the only way tables are made)."""
    from papermail.migrate import upgrade

    upgrade(engine)


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """One unit of work: commit at the end, roll back everything on error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def bulk_insert(session: Session, model: type[SQLModel], rows: Sequence[Mapping[str, Any]]) -> None:
    """INSERT many rows of `model` (mappings with the same keys) in the session's transaction,
    column defaults and types applied as by insert().

    PostgreSQL gets them through COPY: psycopg sends an executemany row by row, and COPY takes
    about a sixth of its client CPU (50,000 digest items: 0.4 s against 2.5 s)."""
    if not rows:
        return
    table = model.__table__  # type: ignore[attr-defined]
    connection = session.connection()
    dialect = connection.dialect
    if dialect.name != "postgresql":
        session.execute(insert(table), rows)
        return
    given = list(rows[0])
    defaulted = [c for c in table.columns if c.name not in rows[0] and c.default is not None]
    columns = [table.c[name] for name in given] + defaulted
    processors = [c.type.dialect_impl(dialect).bind_processor(dialect) for c in columns]
    quote = dialect.identifier_preparer.quote
    names = ", ".join(quote(c.name) for c in columns)
    copy_sql = f"COPY {dialect.identifier_preparer.format_table(table)} ({names}) FROM STDIN"
    with (
        connection.connection.driver_connection.cursor() as cursor,  # type: ignore[union-attr]
        cursor.copy(copy_sql) as copy,
    ):
        for row in rows:
            values = [row[name] for name in given]
            values += [
                c.default.arg(None) if c.default.is_callable else c.default.arg for c in defaulted
            ]
            copy.write_row([p(v) if p else v for p, v in zip(processors, values, strict=True)])
