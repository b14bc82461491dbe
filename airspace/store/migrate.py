"""Apply the Alembic migrations shipped in `migrations/`."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from airspace.store.database import Database

MIGRATIONS = Path(__file__).parent / "migrations"


def alembic_config(url: str) -> Config:
    """An Alembic configuration pointing at our migrations and `url`."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def migrate(db: Database) -> None:
    """Bring the schema to the latest revision (safe to run any number of times)."""
    config = alembic_config(db.url)
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")


def is_current(db: Database) -> bool:
    """Whether the schema is at this code's latest revision or a later one (a newer release
    migrated it first). Connects: raises if it cannot."""
    with db.engine.connect() as conn:
        found = MigrationContext.configure(conn).get_current_revision()
    scripts = ScriptDirectory.from_config(alembic_config(db.url))
    known = {script.revision for script in scripts.walk_revisions()}
    return found is not None and (found == scripts.get_current_head() or found not in known)
