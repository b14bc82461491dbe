"""Engine set-up and transactions for SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, create_engine, event


def _dumps(value: Any) -> str:
    return orjson.dumps(value).decode()


class Database:
    """One database: its engine, its dialect, and how to open transactions on it."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "NORMAL") -> None:
        self.url = url
        self.is_sqlite = url.startswith("sqlite")
        self.is_postgres = url.startswith("postgresql")
        options: dict[str, Any] = {"json_serializer": _dumps, "json_deserializer": orjson.loads}
        if self.is_sqlite:
            options["connect_args"] = {"check_same_thread": False, "timeout": 60}
        else:
            options["pool_size"] = 10
            options["max_overflow"] = 20
            options["pool_pre_ping"] = True
        self.engine: Engine = create_engine(url, **options)
        # In one process, writers queue on a lock instead of SQLite's busy-wait sleeps.
        self._write_lock = threading.Lock() if self.is_sqlite else None
        if self.is_sqlite:
            self._configure_sqlite(sqlite_synchronous)

    def _configure_sqlite(self, synchronous: str) -> None:
        @event.listens_for(self.engine, "connect")
        def _on_connect(dbapi_connection: Any, _record: Any) -> None:
            dbapi_connection.isolation_level = None  # we emit BEGIN ourselves
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            cursor.execute(f"PRAGMA synchronous={synchronous}")
            cursor.execute("PRAGMA busy_timeout=60000")
            # A 64 MiB page cache per connection, and checkpoints every ~40 MiB of WAL
            # instead of every 4 MiB: a page that many commits touch is copied back once.
            cursor.execute("PRAGMA cache_size=-65536")
            cursor.execute("PRAGMA wal_autocheckpoint=10000")
            cursor.execute("PRAGMA foreign_keys=OFF")
            cursor.close()

        @event.listens_for(self.engine, "begin")
        def _on_begin(conn: Connection) -> None:
            mode = conn.get_execution_options().get("sqlite_begin", "DEFERRED")
            # Straight to the driver: every transaction runs this, and SQLAlchemy's
            # statement machinery would cost more than the BEGIN itself.
            driver: Any = conn.connection.driver_connection  # the sqlite3 connection
            driver.execute(f"BEGIN {mode}")

    @contextmanager
    def write(self) -> Iterator[Connection]:
        """A read-write transaction, committed on success, rolled back on error."""
        lock = self._write_lock if self._write_lock is not None else nullcontext()
        with lock, self.engine.connect() as conn:
            if self.is_sqlite:
                conn = conn.execution_options(sqlite_begin="IMMEDIATE")
            with conn.begin():
                yield conn

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only transaction (a consistent snapshot)."""
        with self.engine.connect() as conn, conn.begin():
            yield conn

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()
