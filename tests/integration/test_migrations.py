"""The migrations build exactly the schema the tables describe, and run twice harmlessly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from airspace.bootstrap import Services
from airspace.store.migrate import migrate
from airspace.store.tables import Base


def test_schema_matches_the_tables(services: Services) -> None:
    migrate(services.db)  # a second run changes nothing
    with services.db.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []
