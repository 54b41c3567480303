"""Alembic migrations build exactly the schema the models describe, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect
from sqlmodel import SQLModel

from papermail.migrate import (
    NotMigrated,
    current_revision,
    downgrade,
    ensure_migrated,
    head_revision,
    upgrade,
)


@pytest.fixture
def bare_engine(database_url):
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


def test_upgrade_matches_models_and_downgrades_cleanly(bare_engine):
    upgrade(bare_engine)
    assert current_revision(bare_engine) == head_revision()
    with bare_engine.connect() as connection:
        diff = compare_metadata(MigrationContext.configure(connection), SQLModel.metadata)
    assert diff == [], f"models and migrations differ: {diff}"
    downgrade(bare_engine, "base")
    assert set(inspect(bare_engine).get_table_names()) <= {"alembic_version"}
    upgrade(bare_engine)
    assert current_revision(bare_engine) == head_revision()


def test_unmigrated_database_is_refused_with_a_clear_message(bare_engine):
    with pytest.raises(NotMigrated, match="papermail db upgrade"):
        ensure_migrated(bare_engine, auto=False)
    ensure_migrated(bare_engine, auto=True)
    ensure_migrated(bare_engine, auto=False)  # now at head: no error
