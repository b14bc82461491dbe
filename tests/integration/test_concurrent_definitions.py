"""Changes to definitions made at the same time queue one behind the other: an apply that
writes several definitions and a pause or archive of one of them never deadlock."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from sqlalchemy import text

from airspace.bootstrap import Services
from airspace.domain.definitions import documents_from_files
from airspace.domain.problems import Problems
from airspace.engine.definitions import apply, set_status
from airspace.store import definitions as defs_repo
from airspace.store.database import Database


def _journeys(wait: str) -> list[Any]:
    files = {
        f"journeys/{name}.yaml": (
            f"journey: {name}\nentry: {{event: Signed Up}}\nholdout: 0\n"
            f"steps:\n  - {{id: pause, wait: {wait}}}\n"
        )
        for name in ("a", "b")
    }
    problems = Problems()
    docs = documents_from_files(files, problems)
    assert not problems.items, problems.items
    return docs


def _waiting_on_a_lock(db: Database, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    query = text(
        "SELECT count(*) FROM pg_stat_activity "
        "WHERE datname = current_database() AND wait_event_type = 'Lock'"
    )
    while time.monotonic() < deadline:
        with db.read() as conn:
            if conn.execute(query).scalar_one():
                return
        time.sleep(0.01)
    raise AssertionError("the archive never came to wait on the apply")


@pytest.mark.parametrize(
    "database_url", [pytest.param("postgres", marks=pytest.mark.postgres)], indirect=True
)
def test_an_apply_and_an_archive_at_once_queue_instead_of_deadlocking(
    services: Services, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The apply has written journey a's new version and is about to write b's when b is
    archived; the archive waits for the apply, then archives b's new version."""
    now = services.clock.now()
    apply(services.db, _journeys("1d"), now)
    wrote_a, go_on = threading.Event(), threading.Event()
    insert_version = defs_repo._insert_version

    def paced(conn: Any, doc: Any, *args: Any) -> None:
        insert_version(conn, doc, *args)
        if threading.current_thread().name == "apply" and doc.id == "a":
            wrote_a.set()
            assert go_on.wait(timeout=60), "the test never let the apply go on"

    monkeypatch.setattr(defs_repo, "_insert_version", paced)
    errors: list[BaseException] = []

    def run(target: Any) -> None:
        try:
            target()
        except BaseException as error:  # reported by the test
            errors.append(error)

    applying = threading.Thread(
        target=run, args=(lambda: apply(services.db, _journeys("2d"), now),), name="apply"
    )
    applying.start()
    assert wrote_a.wait(timeout=60), "the apply never wrote journey a"
    archiving = threading.Thread(
        target=run, args=(lambda: set_status(services.db, "journey", "b", "archived", now),)
    )
    archiving.start()
    _waiting_on_a_lock(services.db)
    go_on.set()
    for thread in (applying, archiving):
        thread.join(timeout=60)
        assert not thread.is_alive()
    assert errors == []
    with services.db.read() as conn:
        latest = {(d.ref, d.version): d.status for d in defs_repo.live(conn)}
        b = defs_repo.history(conn, "journey", "b")[0]
    assert latest == {("a", 2): "active"}
    assert (b.version, b.status) == (2, "archived")
