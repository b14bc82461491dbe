#!/usr/bin/env python
"""Ingest benchmark: how fast Airspace accepts and applies events, against the storage limit.

Per database (SQLite, PostgreSQL) and per run, on a fresh database:

1. accept: a real server process (`airspace serve --workers 0`, so only
   acceptance is measured) receives pre-encoded `/v1/batch` requests from
   C concurrent keep-alive connections on loopback. Only events in 2xx
   answers count; events/s = events / wall time of the whole send.
2. apply: with the inbox full, the worker (in this process, `drain()`, or
   `--apply-workers N` worker processes on PostgreSQL) applies everything:
   identity + profile + consent + event log.
3. raw insert: the very inbox rows the API wrote are inserted into a fresh
   database of the same kind with SQLAlchemy executemany, 100 rows per
   transaction, one connection: the storage limit the API is compared with.

Run `python bench/ingest.py --help`; results are in docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import cProfile
import datetime as dt
import hashlib
import os
import platform
import random
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, func, insert, select, text

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from airspace.bootstrap import build_services  # noqa: E402
from airspace.settings import Settings  # noqa: E402
from airspace.store.database import Database  # noqa: E402
from airspace.store.inbox import inbox_depth  # noqa: E402
from airspace.store.migrate import migrate  # noqa: E402
from airspace.store.tables import InboxRow, MessageIdRow, ProfileRow, QuarantineRow  # noqa: E402

TARGETS = {"accept": 20_000.0, "apply": 5_000.0}

# --------------------------------------------------------------------------- events

_USER_AGENTS = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 18_1 like Mac OS X) AppleWebKit/605.1.15 "
    "(KHTML, like Gecko) Version/18.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) "
    "Version/18.0 Safari/605.1.15",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/131.0.0.0 Mobile Safari/537.36",
)
_LOCALES = (("en-US", "America/New_York"), ("de-DE", "Europe/Berlin"), ("fr-FR", "Europe/Paris"))
_PAGES = (
    ("Home", "/"),
    ("Category", "/c/headphones"),
    ("Product", "/p/sony-wh-1000xm5"),
    ("Cart", "/cart"),
    ("Search", "/search?q=noise+cancelling"),
)
_TRACKS = ("Product Viewed", "Product Added", "Checkout Started", "Order Completed")
_FIRST = ("Ana", "Ben", "Chloé", "Dmitri", "Eva", "Farid", "Greta", "Hiro", "Ines", "Jonas")
_LAST = ("Silva", "Meyer", "Dubois", "Ivanov", "Rossi", "Khan", "Berg", "Sato", "Lopez", "Wolf")


@dataclass
class _Person:
    user_id: str
    email: str
    first: str
    last: str
    anonymous_ids: list[str]
    device_id: str
    locale: tuple[str, str]
    user_agent: str
    known: bool = False  # has identified already: later events carry userId


def make_events(count: int, seed: int) -> list[dict[str, Any]]:
    """Realistic Segment messages: ~8 events per person, 15% identify, 60% track, 25% page.

    Visitors browse anonymously, then identify (linking anonymousId, userId and email:
    merges happen when a second device identifies); 1% are `Consent Updated` tracks and
    2% carry `context.consent`, so every part of apply is exercised.
    """
    rng = random.Random(seed)
    people: list[_Person] = []
    for n in range(max(count // 8, 1)):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        people.append(
            _Person(
                user_id=f"user-{n:07d}",
                email=f"{first.lower()}.{last.lower()}.{n}@example.com",
                first=first,
                last=last,
                anonymous_ids=[str(uuid.UUID(int=rng.getrandbits(128)))],
                device_id=f"dev-{rng.getrandbits(48):012x}",
                locale=rng.choice(_LOCALES),
                user_agent=rng.choice(_USER_AGENTS),
            )
        )
    start = dt.datetime(2026, 11, 21, tzinfo=dt.UTC)
    events: list[dict[str, Any]] = []
    for n in range(count):
        person = rng.choice(people)
        if rng.random() < 0.03:  # a second device or a cleared cookie
            person.anonymous_ids.append(str(uuid.UUID(int=rng.getrandbits(128))))
        anonymous_id = rng.choice(person.anonymous_ids)
        page_name, path = rng.choice(_PAGES)
        when = start + dt.timedelta(seconds=n * 0.4)
        context: dict[str, Any] = {
            "ip": f"203.0.{rng.randrange(256)}.{rng.randrange(256)}",
            "userAgent": person.user_agent,
            "locale": person.locale[0],
            "timezone": person.locale[1],
            "library": {"name": "analytics.js", "version": "5.2.1"},
            "page": {"path": path},
        }
        event: dict[str, Any] = {
            "messageId": str(uuid.UUID(int=rng.getrandbits(128))),
            "anonymousId": anonymous_id,
            "timestamp": when.isoformat().replace("+00:00", "Z"),
            "context": context,
        }
        roll = rng.random()
        if roll < 0.15:
            person.known = True
            event.update(
                type="identify",
                userId=person.user_id,
                traits={
                    "email": person.email,
                    "firstName": person.first,
                    "lastName": person.last,
                    "plan": rng.choice(("free", "plus", "pro")),
                },
            )
        elif roll < 0.75:
            name = "Consent Updated" if rng.random() < 0.0133 else rng.choice(_TRACKS)
            event.update(type="track", event=name)
            if name == "Consent Updated":
                event["properties"] = {"channel": "email", "status": rng.choice((True, False))}
            else:
                price = round(rng.uniform(5, 400), 2)
                event["properties"] = {
                    "product_id": f"sku-{rng.randrange(5000):05d}",
                    "price": price,
                    "quantity": 1,
                    "currency": "EUR",
                }
                if name == "Order Completed":
                    event["properties"].update(order_id=f"o-{n}", revenue=price, total=price)
        else:
            event.update(
                type="page",
                name=page_name,
                properties={"path": path, "title": f"{page_name} | Shop", "referrer": ""},
            )
        if person.known and event["type"] != "identify":
            event["userId"] = person.user_id
        if rng.random() < 0.02:
            context["consent"] = {
                "categoryPreferences": {"email": rng.random() < 0.7, "Advertising": False}
            }
        events.append(event)
    return events


def encode_requests(
    events: list[dict[str, Any]], batch: int, write_key: str, host: str
) -> list[tuple[bytes, int]]:
    """Whole HTTP/1.1 requests (headers + body) per batch, and the events in each."""
    auth = base64.b64encode(f"{write_key}:".encode()).decode()
    sent_at = dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z")
    requests: list[tuple[bytes, int]] = []
    for start in range(0, len(events), batch):
        chunk = events[start : start + batch]
        body = orjson.dumps({"batch": chunk, "sentAt": sent_at})
        head = (
            f"POST /v1/batch HTTP/1.1\r\nHost: {host}\r\nAuthorization: Basic {auth}\r\n"
            f"Content-Type: application/json\r\nUser-Agent: airspace-bench\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        requests.append((head + body, len(chunk)))
    return requests


# --------------------------------------------------------------------------- load generator


@dataclass
class SendResult:
    """What the clients saw."""

    ok_events: int = 0
    ok_requests: int = 0
    failed_requests: int = 0
    statuses: dict[int, int] = field(default_factory=dict)
    latencies: list[float] = field(default_factory=list)
    wall: float = 0.0
    client_cpu: float = 0.0


async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    status = int(lines[0].split(b" ", 2)[1])
    length = 0
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    body = await reader.readexactly(length) if length else b""
    return status, body


async def _send_raw(
    port: int, requests: list[tuple[bytes, int]], clients: int, result: SendResult
) -> None:
    """C keep-alive connections, each taking the next pre-encoded request when free."""
    queue = iter(range(len(requests)))

    async def client() -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for index in queue:
                request, events = requests[index]
                started = time.perf_counter()
                writer.write(request)
                status, _body = await _read_response(reader)
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] = result.statuses.get(status, 0) + 1
                if 200 <= status < 300:
                    result.ok_events += events
                    result.ok_requests += 1
                else:
                    result.failed_requests += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(clients)))


async def _send_httpx(
    port: int, requests: list[tuple[bytes, int]], clients: int, result: SendResult
) -> None:
    """The same with httpx.AsyncClient (a cross-check of the raw client)."""
    import httpx

    queue = iter(range(len(requests)))
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", limits=limits) as http:

        async def client() -> None:
            for index in queue:
                raw, events = requests[index]
                head, _, body = raw.partition(b"\r\n\r\n")
                headers = dict(
                    line.split(": ", 1) for line in head.decode().split("\r\n")[1:] if ": " in line
                )
                headers.pop("Content-Length", None)
                headers.pop("Host", None)
                started = time.perf_counter()
                response = await http.post("/v1/batch", content=body, headers=headers)
                result.latencies.append(time.perf_counter() - started)
                code = response.status_code
                result.statuses[code] = result.statuses.get(code, 0) + 1
                if 200 <= code < 300:
                    result.ok_events += events
                    result.ok_requests += 1
                else:
                    result.failed_requests += 1

        await asyncio.gather(*(client() for _ in range(clients)))


def send_all(port: int, requests: list[tuple[bytes, int]], clients: int, kind: str) -> SendResult:
    """Send every request; wall time and this process's CPU time around the send only."""
    result = SendResult()
    sender = _send_raw if kind == "raw" else _send_httpx
    try:
        import uvloop

        runner: Any = uvloop.run
    except ImportError:  # pragma: no cover
        runner = asyncio.run
    cpu0, wall0 = time.process_time(), time.perf_counter()
    runner(sender(port, requests, clients, result))
    result.wall = time.perf_counter() - wall0
    result.client_cpu = time.process_time() - cpu0
    return result


# --------------------------------------------------------------------------- processes & CPU


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _cpu_by_process() -> dict[int, float]:
    """CPU seconds (user + system) of every live process, by pid."""
    ticks = os.sysconf("SC_CLK_TCK")
    result: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError, IndexError, ValueError):
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
                result[int(entry.name)] = (int(fields[11]) + int(fields[12])) / ticks
    return result


def _pids_of_database(name: str) -> set[int]:
    """PostgreSQL backends serving database `name` (their title names it)."""
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                title = (entry / "cmdline").read_bytes().replace(b"\0", b" ")
                if title.startswith(b"postgres: ") and f" {name} ".encode() in title:
                    pids.add(int(entry.name))
    return pids


def _machine_busy() -> tuple[float, float]:
    """(busy, total) CPU seconds of all CPUs together, from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]]
    idle = values[3] + values[4]
    ticks = os.sysconf("SC_CLK_TCK")
    return (sum(values) - idle) / ticks, sum(values) / ticks


@dataclass
class CpuShares:
    """Where the CPU went during the send, in % of one core."""

    server: float
    postgres: float
    client: float
    others: float
    machine_busy: float  # % of all cores
    server_seconds: float


class CpuMeter:
    """Measures CPU of the server, its PostgreSQL backends, this process and everything else.

    Backends come and go (a pool is disposed, a worker exits), so a thread looks for
    them every 0.2 s and keeps the last CPU time it saw of each.
    """

    def __init__(self, server_pid: int, database: str | None) -> None:
        self.server_pid = server_pid
        self.database = database
        self._backends: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def _watch(self) -> None:
        while True:
            if self.database:
                now = _cpu_by_process()
                for pid in _pids_of_database(self.database):
                    if pid in now:
                        self._backends[pid] = now[pid]
            if self._stop.wait(0.2):
                return

    def __enter__(self) -> CpuMeter:
        self.before = _cpu_by_process()
        self.busy0, self.total0 = _machine_busy()
        self.wall0 = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        after = _cpu_by_process()
        busy1, total1 = _machine_busy()
        wall = time.perf_counter() - self.wall0
        server = after.get(self.server_pid, 0.0) - self.before.get(self.server_pid, 0.0)
        postgres = sum(
            max(after.get(pid, seen), seen) - self.before.get(pid, 0.0)
            for pid, seen in self._backends.items()
        )
        client = after[os.getpid()] - self.before[os.getpid()]
        if self.server_pid == os.getpid():
            client = 0.0
        busy = busy1 - self.busy0
        self.shares = CpuShares(
            server=100 * server / wall,
            postgres=100 * postgres / wall,
            client=100 * client / wall,
            others=100 * max(busy - server - postgres - client, 0.0) / wall,
            machine_busy=100 * busy / max(total1 - self.total0, 1e-9),
            server_seconds=server,
        )


SYNCHRONOUS = os.environ.get("AIRSPACE_SQLITE_SYNCHRONOUS", "NORMAL")


def _env(database_url: str, workdir: Path) -> dict[str, str]:
    """The servers' and workers' environment: this one without other AIRSPACE_ settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRSPACE_")}
    env.update(
        AIRSPACE_SQLITE_SYNCHRONOUS=SYNCHRONOUS,
        AIRSPACE_DATABASE_URL=database_url,
        # The per-key rate limit (default 5,000 events/s) would cap a single-key benchmark.
        AIRSPACE_RATE_LIMIT_PER_SECOND="1e9",
        AIRSPACE_RATE_LIMIT_BURST="1e9",
        AIRSPACE_SECRET="bench-secret",
        PYTHONPATH=str(ROOT),
        PYTHONUNBUFFERED="1",
    )
    return env


def _wait_ready(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(64).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("server did not answer /healthz in time")


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --------------------------------------------------------------------------- databases


@contextlib.contextmanager
def fresh_database(kind: str, postgres_url: str | None, workdir: Path, tag: str) -> Iterator[str]:
    """The URL of an empty database, removed afterwards."""
    if kind == "sqlite":
        path = workdir / f"{tag}.db"
        yield f"sqlite:///{path}"
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        return
    assert postgres_url
    name = f"airspace_bench_{tag}_{uuid.uuid4().hex[:8]}"
    admin = create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield f"{postgres_url.rsplit('/', 1)[0]}/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def durability(url: str) -> str:
    """What a 2xx survives on this database, as configured."""
    if url.startswith("sqlite"):
        return f"WAL, synchronous={SYNCHRONOUS}"
    engine = create_engine(url)
    with engine.connect() as conn:
        fsync = conn.execute(text("SHOW fsync")).scalar()
        commit = conn.execute(text("SHOW synchronous_commit")).scalar()
        version = conn.execute(text("SHOW server_version")).scalar()
    engine.dispose()
    return f"PostgreSQL {version}, fsync={fsync}, synchronous_commit={commit}"


def raw_insert(url: str, rows: list[dict[str, Any]], batch: int, with_ids: bool) -> float:
    """Insert `rows` into the inbox (and, `with_ids`, message_ids) per `batch`; events/s."""
    db = Database(url, sqlite_synchronous=SYNCHRONOUS)
    migrate(db)
    id_rows = [
        {
            "write_key_id": r["write_key_id"],
            "message_id": r["message_id"],
            "seen_at": r["received_at"],
        }
        for r in rows
    ]
    inbox = insert(InboxRow)
    ids = insert(MessageIdRow)
    with db.engine.connect() as conn:
        if db.is_sqlite:
            conn = conn.execution_options(sqlite_begin="IMMEDIATE")
        started = time.perf_counter()
        for start in range(0, len(rows), batch):
            with conn.begin():
                if with_ids:
                    conn.execute(ids, id_rows[start : start + batch])
                conn.execute(inbox, rows[start : start + batch])
        elapsed = time.perf_counter() - started
    db.dispose()
    return len(rows) / elapsed


def raw_insert_dbapi(url: str, rows: list[dict[str, Any]], batch: int) -> float:
    """The same inbox rows through the driver alone (sqlite3 / psycopg executemany); events/s."""
    db = Database(url, sqlite_synchronous=SYNCHRONOUS)
    migrate(db)
    columns = ("partition", "write_key_id", "message_id", "payload", "received_at")
    mark = "?" if db.is_sqlite else "%s"
    sql = f"INSERT INTO inbox ({', '.join(columns)}) VALUES ({', '.join(mark for _ in columns)})"
    # What the SQLAlchemy types would bind: naive UTC text on SQLite, aware datetimes on PostgreSQL.
    values = [
        tuple(
            r[c].astimezone(dt.UTC).replace(tzinfo=None).isoformat(" ")
            if c == "received_at" and db.is_sqlite
            else r[c]
            for c in columns
        )
        for r in rows
    ]
    connection = db.engine.raw_connection()
    try:
        cursor = connection.cursor()
        started = time.perf_counter()
        for start in range(0, len(values), batch):
            if db.is_sqlite:
                cursor.execute("BEGIN IMMEDIATE")
            cursor.executemany(sql, values[start : start + batch])
            if db.is_sqlite:
                cursor.execute("COMMIT")
            else:
                connection.commit()
        elapsed = time.perf_counter() - started
    finally:
        connection.close()
    db.dispose()
    return len(rows) / elapsed


# --------------------------------------------------------------------------- one run


@dataclass
class RunResult:
    """The figures of one run on one database."""

    accept_eps: float
    accepted: int
    failed_requests: int
    statuses: dict[int, int]
    request_p50_ms: float
    request_p99_ms: float
    client_cpu_pct: float
    server_cpu_pct: float
    postgres_cpu_pct: float
    others_cpu_pct: float
    machine_busy_pct: float
    apply_eps: float
    apply_cpu_us: float
    apply_postgres_cpu_pct: float
    apply_others_cpu_pct: float
    server_cpu_us: float
    applied: int
    profiles: int
    quarantined: int
    raw_insert_eps: float
    raw_insert_ids_eps: float
    raw_insert_dbapi_eps: float
    code: str
    ratio: float
    durability: str


def _apply(url: str, workers: int, profile_path: str | None) -> tuple[int, float, float]:
    """Apply the whole inbox; (events applied, seconds, CPU seconds of the worker)."""
    services = build_services(Settings(database_url=url, secret="bench-secret"))
    if workers <= 1:
        worker = services.worker()
        profiler = cProfile.Profile() if profile_path else None
        cpu0 = time.process_time()
        started = time.perf_counter()
        if profiler:
            profiler.enable()
        applied = worker.drain()
        if profiler and profile_path:
            profiler.disable()
            profiler.dump_stats(profile_path)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu0
        services.db.dispose()
        return applied, elapsed, cpu
    # Worker processes: the clock starts when every one of them has said it started
    # (imports and start-up are not applying), counting the events still queued then.
    env = _env(url, Path.cwd())
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "airspace.cli", "worker"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(workers)
    ]
    try:
        for proc in procs:
            assert proc.stdout is not None
            for line in proc.stdout:
                if "worker started" in line:
                    break
        started = time.perf_counter()
        cpu0 = sum(_cpu_by_process().get(p.pid, 0.0) for p in procs)
        before = inbox_depth(services.db)
        cpu = 0.0
        while inbox_depth(services.db):
            cpu = sum(_cpu_by_process().get(p.pid, 0.0) for p in procs) - cpu0
            time.sleep(0.05)
        elapsed = time.perf_counter() - started
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    services.db.dispose()
    return before, elapsed, cpu


def wait_until_idle(limit: float, threshold: float = 15.0) -> float:
    """Wait up to `limit` s for a second in which the machine is under `threshold`% busy."""
    deadline = time.monotonic() + limit
    while True:
        busy0, total0 = _machine_busy()
        time.sleep(1.0)
        busy1, total1 = _machine_busy()
        share = 100 * (busy1 - busy0) / max(total1 - total0, 1e-9)
        if share < threshold or time.monotonic() >= deadline:
            return share


def run_once(
    kind: str,
    args: argparse.Namespace,
    events: list[dict[str, Any]],
    workdir: Path,
    run: int,
) -> RunResult:
    """Accept, apply and raw-insert `events` on a fresh database of `kind`."""
    code = code_fingerprint()
    with fresh_database(kind, args.postgres_url, workdir, f"api{run}") as url:
        env = _env(url, workdir)
        secret = subprocess.run(
            [sys.executable, "-m", "airspace.cli", "keys", "create", "--kind", "write"],
            env=env,
            cwd=workdir,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        port = _free_port()
        requests = encode_requests(events, args.batch, secret, f"127.0.0.1:{port}")
        command = [sys.executable, "-m", "airspace.cli", "serve", "--workers", "0"]
        command += ["--port", str(port)]
        prefix = shlex.split(args.server_prefix) if args.server_prefix else []
        server = subprocess.Popen(prefix + command, env=env, cwd=workdir, stdout=subprocess.DEVNULL)
        try:
            _wait_ready(port, server)
            server_pid = server.pid
            if prefix:  # the server is a child of the profiler
                server_pid = _child_python(server.pid) or server.pid
            spy = _attach_py_spy(args.py_spy, server_pid, f"{kind}.{run}", args.py_spy_gil)
            database = url.rsplit("/", 1)[1] if kind == "postgres" else None
            with CpuMeter(server_pid, database) as meter:
                sent = send_all(port, requests, args.clients, args.client)
            if spy is not None:
                spy.send_signal(signal.SIGINT)
                spy.wait(timeout=60)
        finally:
            _stop(server)
        db = Database(url)
        with db.read() as conn:
            rows = [
                dict(r._mapping)
                for r in conn.execute(
                    select(
                        InboxRow.partition,
                        InboxRow.write_key_id,
                        InboxRow.message_id,
                        InboxRow.payload,
                        InboxRow.received_at,
                    ).order_by(InboxRow.id)
                )
            ]
        db.dispose()
        if len(rows) != sent.ok_events:
            raise RuntimeError(f"{sent.ok_events} events acknowledged but {len(rows)} in the inbox")
        profile_path = f"{args.apply_profile}.{kind}.{run}" if args.apply_profile else None
        workers = args.apply_workers if kind == "postgres" else 1
        with CpuMeter(os.getpid(), database) as apply_meter:
            applied, apply_seconds, apply_cpu = _apply(url, workers, profile_path)
        apply_others = apply_meter.shares.others
        if workers > 1:  # the worker processes are not "others"
            apply_others = max(apply_others - 100 * apply_cpu / apply_seconds, 0.0)
        db = Database(url)
        with db.read() as conn:
            profiles = conn.execute(select(func.count()).select_from(ProfileRow)).scalar_one()
            quarantined = conn.execute(select(func.count()).select_from(QuarantineRow)).scalar_one()
            left = conn.execute(select(func.count()).select_from(InboxRow)).scalar_one()
        db.dispose()
        if left:
            raise RuntimeError(f"{left} events left in the inbox after apply")
        how_durable = durability(url)
    with fresh_database(kind, args.postgres_url, workdir, f"raw{run}") as url:
        raw_eps = raw_insert(url, rows, args.batch, with_ids=False)
    with fresh_database(kind, args.postgres_url, workdir, f"rawids{run}") as url:
        raw_ids_eps = raw_insert(url, rows, args.batch, with_ids=True)
    with fresh_database(kind, args.postgres_url, workdir, f"rawdbapi{run}") as url:
        raw_dbapi_eps = raw_insert_dbapi(url, rows, args.batch)
    latencies = sorted(sent.latencies)
    accept_eps = sent.ok_events / sent.wall
    return RunResult(
        accept_eps=accept_eps,
        accepted=sent.ok_events,
        failed_requests=sent.failed_requests,
        statuses=sent.statuses,
        request_p50_ms=1000 * latencies[len(latencies) // 2],
        request_p99_ms=1000 * latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        client_cpu_pct=100 * sent.client_cpu / sent.wall,
        server_cpu_pct=meter.shares.server,
        postgres_cpu_pct=meter.shares.postgres,
        others_cpu_pct=meter.shares.others,
        machine_busy_pct=meter.shares.machine_busy,
        apply_eps=applied / apply_seconds,
        apply_cpu_us=1e6 * apply_cpu / max(applied, 1),
        apply_postgres_cpu_pct=apply_meter.shares.postgres,
        apply_others_cpu_pct=apply_others,
        server_cpu_us=1e6 * meter.shares.server_seconds / max(sent.ok_events, 1),
        applied=applied,
        profiles=int(profiles),
        quarantined=int(quarantined),
        raw_insert_eps=raw_eps,
        raw_insert_ids_eps=raw_ids_eps,
        raw_insert_dbapi_eps=raw_dbapi_eps,
        ratio=accept_eps / raw_eps,
        durability=how_durable,
        code=code,
    )


def _attach_py_spy(
    prefix: str | None, pid: int, tag: str, gil: bool = False
) -> subprocess.Popen[bytes] | None:
    """Sample the server during the send only (py-spy, collapsed stacks in PREFIX.<tag>.txt)."""
    if not prefix:
        return None
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    command = [spy, "record", "--pid", str(pid), "--rate", "100", "--format", "raw"]
    command += ["--output", f"{prefix}.{tag}.txt"] + (["--gil"] if gil else [])
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    time.sleep(1.0)  # let it attach
    return process


def _child_python(pid: int) -> int | None:
    for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split():
        return int(child)
    return None


# --------------------------------------------------------------------------- report


def code_fingerprint() -> str:
    """A short hash of airspace/**/*.py: which code a figure was measured on (no git needed)."""
    digest = hashlib.sha256()
    for path in sorted((ROOT / "airspace").rglob("*.py")):
        digest.update(path.read_bytes())
    return digest.hexdigest()[:12]


def machine_info() -> dict[str, Any]:
    """CPU model and cores, memory, Python, the date, and a fingerprint of the code measured."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    memory = Path("/proc/meminfo").read_text().split("\n", 1)[0].split()[1]
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "memory_gib": round(int(memory) / 1024 / 1024, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "code_sha256": code_fingerprint(),
    }


_ROWS: list[tuple[str, str, str]] = [
    # (label, key, format)
    ("accept, events/s (2xx, durable)", "accept_eps", "{:,.0f}"),
    ("apply, events/s (identity+profile+consent)", "apply_eps", "{:,.0f}"),
    ("raw insert, events/s (inbox rows, 100/tx)", "raw_insert_eps", "{:,.0f}"),
    ("raw insert + message_ids, events/s", "raw_insert_ids_eps", "{:,.0f}"),
    ("raw insert via the driver only, events/s", "raw_insert_dbapi_eps", "{:,.0f}"),
    ("ratio accept / raw insert", "ratio", "{:.2f}"),
    ("server CPU per accepted event, µs", "server_cpu_us", "{:.0f}"),
    ("worker CPU per applied event, µs", "apply_cpu_us", "{:.0f}"),
    ("request latency p50, ms", "request_p50_ms", "{:.1f}"),
    ("request latency p99, ms", "request_p99_ms", "{:.1f}"),
    ("server CPU during accept, % of one core", "server_cpu_pct", "{:.0f}"),
    ("PostgreSQL backends' CPU during accept, %", "postgres_cpu_pct", "{:.0f}"),
    ("client (load generator) CPU during accept, %", "client_cpu_pct", "{:.0f}"),
    ("other processes' CPU during accept, %", "others_cpu_pct", "{:.0f}"),
    ("machine busy during accept, % of all cores", "machine_busy_pct", "{:.0f}"),
    ("PostgreSQL backends' CPU during apply, %", "apply_postgres_cpu_pct", "{:.0f}"),
    ("other processes' CPU during apply, %", "apply_others_cpu_pct", "{:.0f}"),
    ("non-2xx requests", "failed_requests", "{:,.0f}"),
    ("events accepted / applied", "applied", "{:,.0f}"),
    ("profiles after apply", "profiles", "{:,.0f}"),
]


def median_of(runs: list[RunResult]) -> dict[str, Any]:
    """The median of every figure over the runs."""
    numeric = {k for k, v in vars(runs[0]).items() if isinstance(v, int | float)}
    summary: dict[str, Any] = {k: statistics.median(getattr(r, k) for r in runs) for k in numeric}
    summary["durability"] = runs[0].durability
    summary["runs"] = [
        {k: v for k, v in vars(r).items() if k != "statuses"} | {"statuses": r.statuses}
        for r in runs
    ]
    return summary


def print_table(
    results: dict[str, dict[str, Any]], info: dict[str, Any], args: argparse.Namespace
) -> None:
    kinds = list(results)
    width = 46
    print()
    print(
        f"Ingest: {args.events:,} events, {args.clients} clients, batches of {args.batch}, "
        f"median of {args.repeat} run(s), client={args.client}"
    )
    print(
        f"{info['cpu']}, {info['cores']} cores, {info['memory_gib']} GiB; Python {info['python']}; "
        f"{info['date']}; code {info['code_sha256']}"
    )
    for kind in kinds:
        print(f"  {kind}: {results[kind]['durability']}")
    print()
    header = f"{'figure':<{width}}" + "".join(f"{k:>14}" for k in kinds)
    print(header + f"{'target':>14}")
    print("-" * len(header + " " * 14))
    for label, key, form in _ROWS:
        cells = "".join(f"{form.format(results[k][key]):>14}" for k in kinds)
        target = TARGETS.get(key.removesuffix("_eps"))
        target_cell = f"≥ {target:,.0f}" if target and key.endswith("_eps") else ""
        print(f"{label:<{width}}{cells}{target_cell:>14}")
    if args.repeat > 1:
        print()
        for kind in kinds:
            runs = results[kind]["runs"]
            print(
                f"  {kind} runs: accept "
                + ", ".join(f"{r['accept_eps']:,.0f}" for r in runs)
                + "; apply "
                + ", ".join(f"{r['apply_eps']:,.0f}" for r in runs)
                + "; raw "
                + ", ".join(f"{r['raw_insert_eps']:,.0f}" for r in runs)
            )
    codes = {r["code"] for kind in kinds for r in results[kind]["runs"]}
    if len(codes) > 1:
        print()
        print(f"  note: airspace/ changed between runs (code {', '.join(sorted(codes))})")
    print()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--database", choices=("sqlite", "postgres", "both"), default="sqlite")
    parser.add_argument(
        "--postgres-url",
        default=os.environ.get("AIRSPACE_TEST_POSTGRES_URL"),
        help="PostgreSQL URL of a user who may create databases "
        "(default: $AIRSPACE_TEST_POSTGRES_URL)",
    )
    parser.add_argument("--events", type=int, default=200_000, help="events per run")
    parser.add_argument("--clients", type=int, default=8, help="concurrent client connections")
    parser.add_argument("--batch", type=int, default=100, help="events per /v1/batch request")
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per database; the median is shown"
    )
    parser.add_argument(
        "--client",
        choices=("raw", "httpx"),
        default="raw",
        help="raw: pre-encoded HTTP/1.1 on asyncio streams (cheapest); httpx: AsyncClient",
    )
    parser.add_argument(
        "--apply-workers",
        type=int,
        default=1,
        help="PostgreSQL: >1 applies with that many `airspace worker` processes",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="before each run, wait up to SECONDS for the machine to be idle",
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="also write the figures as JSON (to PATH, or stdout)",
    )
    parser.add_argument(
        "--server-prefix",
        default="",
        help='run the server under a profiler, e.g. "py-spy record -o s.svg --"',
    )
    parser.add_argument(
        "--py-spy",
        metavar="PREFIX",
        help="attach py-spy to the server during the send; stacks to PREFIX.<db>.<run>.txt",
    )
    parser.add_argument(
        "--py-spy-gil",
        action="store_true",
        help="with --py-spy: sample only the thread holding the GIL (where the CPU goes)",
    )
    parser.add_argument(
        "--apply-profile",
        metavar="PREFIX",
        help="cProfile the in-process apply into PREFIX.<db>.<run>",
    )
    args = parser.parse_args(argv)
    kinds = ["sqlite", "postgres"] if args.database == "both" else [args.database]
    if "postgres" in kinds and not args.postgres_url:
        parser.error(
            "PostgreSQL needs --postgres-url or AIRSPACE_TEST_POSTGRES_URL "
            '(eval "$(scripts/postgres start /tmp/airspace-dev-pg 54329)")'
        )
    info = machine_info()
    started = time.perf_counter()
    events = make_events(args.events, args.seed)
    sizes = [len(orjson.dumps(e)) for e in events]
    print(
        f"generated {len(events):,} events in {time.perf_counter() - started:.1f} s, "
        f"{statistics.mean(sizes):.0f} bytes on average ({min(sizes)} to {max(sizes)})",
        file=sys.stderr,
    )
    results: dict[str, dict[str, Any]] = {}
    workdir = Path(tempfile.mkdtemp(prefix="airspace-bench-"))
    try:
        for kind in kinds:
            runs = []
            for run in range(args.repeat):
                if args.wait_idle:
                    share = wait_until_idle(args.wait_idle)
                    print(f"machine {share:.0f}% busy before {kind} run {run + 1}", file=sys.stderr)
                result = run_once(kind, args, events, workdir, run)
                print(
                    f"{kind} run {run + 1}: accept {result.accept_eps:,.0f}/s, apply "
                    f"{result.apply_eps:,.0f}/s, raw insert {result.raw_insert_eps:,.0f}/s "
                    f"(client CPU {result.client_cpu_pct:.0f}%, server CPU "
                    f"{result.server_cpu_pct:.0f}%)",
                    file=sys.stderr,
                )
                runs.append(result)
            results[kind] = median_of(runs)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print_table(results, info, args)
    if args.json:
        document = {
            "machine": info,
            "parameters": {k: v for k, v in vars(args).items() if k != "postgres_url"},
            "event_bytes_mean": statistics.mean(sizes),
            "targets": TARGETS,
            "results": results,
        }
        payload = orjson.dumps(
            document, option=orjson.OPT_INDENT_2 | orjson.OPT_NON_STR_KEYS
        ).decode()
        if args.json == "-":
            print(payload)
        else:
            Path(args.json).write_text(payload + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
