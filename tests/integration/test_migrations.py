"""The migrations build exactly the schema the tables describe, and run twice harmlessly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from airspace.bootstrap import Services
from airspace.store.migrate import is_current, migrate
from airspace.store.tables import Base


def test_schema_matches_the_tables(services: Services) -> None:
    migrate(services.db)  # a second run changes nothing
    with services.db.engine.connect() as conn:
        differences = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert differences == []


def test_the_schema_is_current_at_the_latest_revision_or_a_newer_releases(
    services: Services,
) -> None:
    """Commands that need the schema refuse an older one (run `airspace migrate`), but not
    one a newer release has already migrated (a rolling deploy)."""
    assert is_current(services.db)
    for revision, current in (("0005", False), ("9999", True)):
        with services.db.engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = :v"), {"v": revision})
        assert is_current(services.db) is current, revision
    with services.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM alembic_version"))
    assert not is_current(services.db)
