"""An event answered 2xx survives the server being killed with SIGKILL (SQLite, real processes)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import select

from airspace.domain.clock import SystemClock
from airspace.store.database import Database
from airspace.store.inbox import inbox_depth
from airspace.store.keys import create_key
from airspace.store.migrate import migrate
from airspace.store.tables import EventRow, InboxRow
from tests.conftest import free_port


def start_server(
    url: str, port: int, workers: int, log: Path, http_processes: int = 1
) -> subprocess.Popen[bytes]:
    env = {**os.environ, "AIRSPACE_DATABASE_URL": url, "AIRSPACE_SECRET": "durability"}
    with log.open("ab") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "airspace.cli",
                "serve",
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).status_code == 200:
                return process
        except httpx.TransportError:
            time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"server did not start:\n{log.read_text()[-2000:]}")


@pytest.mark.slow
def test_acknowledged_events_survive_sigkill(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'durable.db'}"
    db = Database(url)
    migrate(db)
    _, write_key = create_key(db, "write", "durability", SystemClock().now())
    port = free_port()
    log = tmp_path / "server.log"
    server = start_server(url, port, workers=0, log=log)
    acknowledged: list[str] = []
    stop = threading.Event()

    def send() -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(write_key, "")) as client:
            for batch in range(10_000):
                if stop.is_set():
                    return
                ids = [f"m-{batch}-{n}" for n in range(50)]
                body = {
                    "batch": [
                        {"type": "track", "userId": f"u{n % 7}", "event": "E", "messageId": m}
                        for n, m in enumerate(ids)
                    ]
                }
                try:
                    response = client.post("/v1/batch", json=body, timeout=5)
                except httpx.TransportError:
                    return
                if response.status_code == 200:
                    acknowledged.extend(ids)

    sender = threading.Thread(target=send)
    sender.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 2_000 and time.monotonic() < deadline and sender.is_alive():
        time.sleep(0.01)
    server.send_signal(signal.SIGKILL)
    server.wait()
    stop.set()
    sender.join()
    assert len(acknowledged) >= 2_000, log.read_text()[-2000:]

    with db.read() as conn:
        queued = set(conn.execute(select(InboxRow.message_id)).scalars())
    assert set(acknowledged) <= queued

    server = start_server(url, port, workers=1, log=log)
    try:
        deadline = time.monotonic() + 120
        while inbox_depth(db) > 0:
            assert time.monotonic() < deadline, "the restarted worker did not drain the inbox"
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(timeout=30)
    with db.read() as conn:
        applied = list(conn.execute(select(EventRow.message_id)).scalars())
    assert len(applied) == len(set(applied)) == len(queued)
    assert set(acknowledged) <= set(applied)
    db.dispose()


@pytest.mark.slow
def test_several_http_processes_share_one_port_and_one_worker(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'many.db'}"
    db = Database(url)
    migrate(db)
    _, write_key = create_key(db, "write", "many", SystemClock().now())
    port = free_port()
    server = start_server(url, port, workers=1, log=tmp_path / "server.log", http_processes=2)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", auth=(write_key, "")) as client:
            for n in range(40):
                body = {"batch": [{"type": "track", "userId": f"u{n}", "event": "E"}]}
                assert client.post("/v1/batch", json=body, timeout=10).status_code == 200
        deadline = time.monotonic() + 60
        while True:
            with db.read() as conn:
                applied = len(conn.execute(select(EventRow.id)).all())
            if applied == 40:
                break
            assert time.monotonic() < deadline, f"only {applied} of 40 events applied"
            time.sleep(0.05)
    finally:
        server.terminate()
        server.wait(timeout=30)
    db.dispose()
