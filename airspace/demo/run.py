"""`airspace demo`: a server on SQLite, fed with real purchases and synthetic behaviour."""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import uvicorn
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from airspace.api.app import create_app
from airspace.bootstrap import Services, build_services
from airspace.demo.journeys import apply_examples, run_week
from airspace.demo.replay import build_events, load_cdnow, replay
from airspace.domain.clock import SimulatedClock
from airspace.settings import Settings
from airspace.sim.compare import compare
from airspace.store import admin
from airspace.store.inbox import inbox_depth
from airspace.store.keys import create_key
from airspace.store.migrate import migrate

DATA = Path(__file__).parent / "data"


def _start_server(services: Services, port: int) -> tuple[uvicorn.Server, threading.Thread]:
    config = uvicorn.Config(
        create_app(services),
        host=services.settings.host,
        port=port,
        log_level="warning",
        ws="none",
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="http", daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            raise SystemExit(f"the demo server could not start on port {port}; try --port")
        time.sleep(0.05)
    return server, thread


def _example_user(services: Services) -> str:
    """A userId whose profile shows identity resolution at work (it absorbed a merge)."""
    merges = admin.list_merges(services.db, after_id=0, limit=1)
    if merges:
        view = admin.profile_view(services.db, merges[0]["survivor_id"], recent_events=0)
        for identifier in view["identifiers"]:
            if identifier["type"] == "user_id":
                return str(identifier["value"])
    return "cdnow-00001"


def _print_where_to_look(
    services: Services, base_url: str, write_key: str, admin_key: str, database: Path
) -> None:
    # Plain print, never wrapped: these lines are meant to be copied into a shell.
    user = _example_user(services)
    print(
        f"""
Where to look (server at {base_url}, database {database}):

  export AIRSPACE_ADMIN_KEY={admin_key} AIRSPACE_WRITE_KEY={write_key}
  curl -H "Authorization: Bearer $AIRSPACE_ADMIN_KEY" \\
       '{base_url}/admin/v1/profiles?identifier=user_id:{user}'
  curl -H "Authorization: Bearer $AIRSPACE_ADMIN_KEY" '{base_url}/admin/v1/merges?limit=5'
  curl -u "$AIRSPACE_WRITE_KEY:" {base_url}/v1/track -d '{{"userId": "{user}", "event": "Hello"}}'
  curl -H "Authorization: Bearer $AIRSPACE_ADMIN_KEY" '{base_url}/admin/v1/messages?limit=5'
  curl -H "Authorization: Bearer $AIRSPACE_ADMIN_KEY" \\
       '{base_url}/admin/v1/journeys/abandoned-cart/report'
  curl -H "Authorization: Bearer $AIRSPACE_ADMIN_KEY" \\
       '{base_url}/admin/v1/segments/lapsed-customers/sizes'

  The demo's clock is simulated: it stays at the end of the week it ran.

  OpenAPI docs: {base_url}/docs    metrics: {base_url}/metrics
""",
        flush=True,
    )


def run_demo(
    console: Console,
    *,
    full: bool,
    port: int,
    database: Path,
    serve_after: bool,
    days: int = 7,
    sim_days: int = 0,
    sim_customers: int = 1_000,
) -> None:
    """Replay CDNOW purchases and synthetic web/app behaviour through the tracking API,
    run the example journeys for `days` days on a simulated clock, then compare the
    controller's policies on a simulated world for `sim_days` days."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    settings = Settings(database_url=f"sqlite:///{database}", port=port)
    # A simulated clock, so that a week of journeys takes seconds; it starts at the real now.
    clock = SimulatedClock(datetime.now(UTC).replace(microsecond=0))
    services = build_services(settings, clock)
    migrate(services.db)
    now = services.clock.now()
    _, write_key = create_key(services.db, "write", "demo", now)
    _, admin_key = create_key(services.db, "admin", "demo", now)

    source = DATA / ("CDNOW_master.txt" if full else "CDNOW_sample.txt")
    purchases = load_cdnow(source)
    events = build_events(purchases, today=now.date(), seed=7)
    console.print(
        f"[bold]Airspace demo[/bold]: {len(purchases):,} real CDNOW purchases "
        f"({source.name}, shifted to end today) and synthetic web and app behaviour: "
        f"{len(events):,} events"
    )
    server, http_thread = _start_server(services, port)
    stop = threading.Event()
    worker = threading.Thread(
        target=services.worker().run_forever, args=(stop,), name="worker", daemon=True
    )
    worker.start()
    base_url = f"http://{settings.host}:{port}"

    with Progress(
        TextColumn("{task.description:<9}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        sent = progress.add_task("sent", total=len(events))
        applied = progress.add_task("applied", total=len(events))
        result_box: list[object] = []

        def send() -> None:
            result_box.append(
                asyncio.run(
                    replay(
                        events,
                        base_url=base_url,
                        write_key=write_key,
                        progress=lambda n: progress.advance(sent, n),
                    )
                )
            )

        sender = threading.Thread(target=send, name="replay")
        sender.start()
        while sender.is_alive() or inbox_depth(services.db) > 0:
            counts = admin.counts(services.db)
            progress.update(applied, completed=counts["events"] + counts["quarantine"])
            time.sleep(0.25)
        sender.join()
        counts = admin.counts(services.db)
        progress.update(applied, completed=len(events))

    console.print(
        f"\n[green]done[/green]: {counts['profiles']:,} profiles, {counts['events']:,} events, "
        f"{counts['merges']:,} merges, {counts['quarantine']:,} quarantined"
    )
    stop.set()
    worker.join(timeout=30)
    if days > 0 and apply_examples(services, console):
        run_week(services, clock, services.worker(), console, base_url, write_key, days=days)
    if sim_days > 0:
        console.print(
            f"\n[bold]Air-traffic control[/bold]: the same collisions on a simulated shop of "
            f"{sim_customers:,} customers (airspace/sim/definitions: the example journeys fitted "
            "to the shop's goals and channels, plus a newsletter, browse abandonment and "
            "cross-sell), each policy on the same world"
        )
        compare(
            console,
            "standard",
            ["airspace", "first_come", "priority", "random", "oracle"],
            days=sim_days,
            customers=sim_customers,
            seed=1,
        )
        console.print(
            "A small shop over a short time is too little to learn from: the learner starts "
            "from weak priors and explores. docs/benchmarks.md compares the policies on 50,000 "
            "customers over 60 days; `airspace sim --customers 20000 --days 60` runs a bigger "
            "shop here (about a quarter of an hour per policy)."
        )
    stop = threading.Event()
    worker = threading.Thread(
        target=services.worker().run_forever, args=(stop,), name="worker", daemon=True
    )
    worker.start()
    if serve_after:
        _print_where_to_look(services, base_url, write_key, admin_key, database)
    if serve_after:
        print("Serving until Ctrl-C.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            http_thread.join()
    server.should_exit = True
    stop.set()
    http_thread.join(timeout=10)
    worker.join(timeout=10)
    services.db.dispose()
