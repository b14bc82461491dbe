"""Fixtures shared by every test: databases (SQLite, and PostgreSQL when available),
services on a simulated clock, and a real HTTP server on loopback.

The web and database stacks are imported inside the fixtures that need them, so the
unit tests (pure domain) start in a fraction of a second."""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from airspace.domain.clock import SimulatedClock

if TYPE_CHECKING:
    from airspace.bootstrap import Services

START = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
POSTGRES_URL = os.environ.get("AIRSPACE_TEST_POSTGRES_URL")


def postgres_database() -> Iterator[str]:
    """A fresh PostgreSQL database for one test, dropped afterwards."""
    if not POSTGRES_URL:
        if os.environ.get("CI"):
            pytest.fail("AIRSPACE_TEST_POSTGRES_URL is not set in CI: scripts/test starts it")
        pytest.skip("AIRSPACE_TEST_POSTGRES_URL not set (scripts/test sets it)")
    from sqlalchemy import create_engine, text

    name = f"airspace_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    base = POSTGRES_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The URL of an empty database: SQLite, then PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'airspace.db'}"
    else:
        yield from postgres_database()


@pytest.fixture
def clock() -> SimulatedClock:
    """A clock that moves only when a test says so."""
    return SimulatedClock(START)


@pytest.fixture
def services(database_url: str, clock: SimulatedClock) -> Iterator[Services]:
    """Migrated services on the simulated clock."""
    from airspace.bootstrap import build_services
    from airspace.settings import Settings
    from airspace.store.migrate import migrate

    settings = Settings(database_url=database_url, secret="test-secret")  # type: ignore[call-arg]
    built = build_services(settings, clock=clock)
    migrate(built.db)
    yield built
    built.db.dispose()


@dataclass(frozen=True)
class LiveServer:
    """A real Airspace HTTP server on loopback, with a write key and an admin key."""

    url: str
    write_key: str
    admin_key: str
    services: Services

    @property
    def host_port(self) -> str:
        """host:port without the scheme."""
        return self.url.removeprefix("http://")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def live_server(services: Services) -> Iterator[LiveServer]:
    """Serve the app over real HTTP in a thread; the test applies work with the worker."""
    import uvicorn

    from airspace.api.app import create_app
    from airspace.store.keys import create_key

    port = free_port()
    _, write_key = create_key(services.db, "write", "test", services.clock.now())
    _, admin_key = create_key(services.db, "admin", "test", services.clock.now())
    config = uvicorn.Config(
        create_app(services),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="off",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("test server did not start")
        time.sleep(0.01)
    yield LiveServer(f"http://127.0.0.1:{port}", write_key, admin_key, services)
    server.should_exit = True
    thread.join(timeout=10)
