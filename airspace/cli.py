"""The `airspace` command: serve, worker, migrate, keys, validate, apply, explain, sim, demo."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, NoReturn, cast

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn
from rich.table import Table
from sqlalchemy.exc import ArgumentError, OperationalError

from airspace import __version__
from airspace.bootstrap import Services, build_services
from airspace.domain.definitions import Document
from airspace.domain.errors import AirspaceError
from airspace.domain.identity import Identifier, normalize_email
from airspace.domain.problems import Problem
from airspace.engine.definitions import apply as apply_definitions
from airspace.engine.definitions import read_folder
from airspace.engine.definitions import validate as validate_documents
from airspace.settings import Settings
from airspace.store import definitions as definitions_repo
from airspace.store.admin import current_profile_id, find_profile_id
from airspace.store.journey_admin import person_decisions
from airspace.store.keys import create_key, list_keys, revoke_key
from airspace.store.migrate import is_current
from airspace.store.migrate import migrate as apply_migrations

if TYPE_CHECKING:
    from airspace.sim.driver import SimPolicy

app = typer.Typer(
    help="Airspace: customer engagement with air-traffic control.", no_args_is_help=True
)
keys_app = typer.Typer(help="API keys: write keys for tracking, admin keys for the admin API.")
app.add_typer(keys_app, name="keys")
console = Console()


def _services(database_url: str | None = None, *, migrated: bool = True) -> Services:
    """Services on the database, which must be reachable and, when `migrated`, have the
    latest schema: otherwise a message that says what to do, and exit code 2."""
    overrides = {"database_url": database_url} if database_url else {}
    try:
        services = build_services(Settings(**overrides))  # type: ignore[arg-type]
    except (ArgumentError, ImportError, ValueError) as error:  # not a URL, or no driver
        _refuse(
            f"cannot use the database URL (--database-url or AIRSPACE_DATABASE_URL): {error}; "
            "expected one like sqlite:///airspace.db or "
            "postgresql+psycopg://user@host:5432/airspace"
        )
    url = services.db.engine.url
    where = url.render_as_string(hide_password=True)
    file = url.database if services.db.is_sqlite else None
    if migrated and file and file != ":memory:" and not Path(file).exists():
        _refuse(f"no database file at {file}: `airspace migrate` creates it")  # not an empty one
    try:
        if not is_current(services.db) and migrated:
            _refuse(f"{where} has no Airspace schema, or an older one: run `airspace migrate`")
    except OperationalError as error:
        _refuse(f"cannot open the database {where}: {str(error.orig).strip()}")
    return services


def _refuse(message: str) -> NoReturn:
    console.print(f"[red]{escape(message)}[/red]")
    raise typer.Exit(2)


DatabaseOption = Annotated[
    str | None,
    typer.Option("--database-url", help="Overrides AIRSPACE_DATABASE_URL", show_default=False),
]


@app.command()
def migrate(database_url: DatabaseOption = None) -> None:
    """Create or upgrade the database schema."""
    services = _services(database_url, migrated=False)
    apply_migrations(services.db)
    console.print(
        f"[green]schema created or upgraded to the latest version[/green] "
        f"({services.db.engine.url!r})"
    )


def start_workers(services: Services, count: int) -> tuple[threading.Event, list[threading.Thread]]:
    """Start `count` worker threads; set the returned event to stop them."""
    stop = threading.Event()
    threads = [
        threading.Thread(
            target=services.worker().run_forever, args=(stop,), name=f"worker-{n}", daemon=True
        )
        for n in range(count)
    ]
    for thread in threads:
        thread.start()
    return stop, threads


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="Port to listen on")] = None,
    workers: Annotated[int, typer.Option(help="Worker threads in this process (0: none)")] = 1,
    http_processes: Annotated[
        int, typer.Option(min=1, max=64, help="Processes answering HTTP (one per core)")
    ] = 1,
    database_url: DatabaseOption = None,
) -> None:
    """Run the HTTP API and a worker in one process (migrates first)."""
    import uvicorn

    from airspace.api.app import create_app

    services = _services(database_url, migrated=False)
    apply_migrations(services.db)
    if services.db.is_sqlite and workers > 1:
        raise typer.BadParameter("SQLite takes one worker; use PostgreSQL for more")
    stop, threads = start_workers(services, workers)
    settings = services.settings
    listen = f"http://{host or settings.host}:{port or settings.port}"
    console.print(
        f"Airspace {__version__} listening on {listen} (docs at {listen}/docs), "
        f"database {services.db.engine.url!r}, {workers} worker(s); Ctrl-C to stop"
    )
    if database_url:
        os.environ["AIRSPACE_DATABASE_URL"] = database_url  # for the HTTP processes
    try:
        uvicorn.run(
            create_app(services) if http_processes == 1 else "airspace.api.app:app_from_env",
            factory=http_processes > 1,
            workers=http_processes if http_processes > 1 else None,
            host=host or settings.host,
            port=port or settings.port,
            log_level="warning",
            access_log=False,
            ws="none",
        )
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=10)


@app.command()
def worker(database_url: DatabaseOption = None) -> None:
    """Run a worker only (PostgreSQL: run as many as you like)."""
    services = _services(database_url)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    console.print("worker started; Ctrl-C to stop")
    services.worker().run_forever(stop)


FolderArgument = Annotated[
    Path, typer.Argument(help="Folder of YAML definitions (segments, journeys, settings, ...)")
]


def _print_problems(problems: list[Problem]) -> int:
    errors = 0
    for problem in problems:
        if problem.level == "error":
            errors += 1
            console.print(f"[red]error[/red]   {escape(str(problem))}")
        else:
            console.print(f"[yellow]warning[/yellow] {escape(str(problem))}")
    return errors


def _read(folder: Path) -> tuple[list[Document], list[Problem]]:
    try:
        return read_folder(folder)
    except AirspaceError as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        raise typer.Exit(2) from None


@app.command()
def validate(folder: FolderArgument) -> None:
    """Check definitions without applying them; report every problem at once."""
    documents, read_problems = _read(folder)
    problems = validate_documents(documents, read_problems)
    errors = _print_problems(problems)
    kinds = sorted({d.kind for d in documents})
    summary = ", ".join(f"{sum(1 for d in documents if d.kind == k)} {k}(s)" for k in kinds)
    if errors:
        console.print(f"[red]{errors} error(s)[/red] in {folder} ({summary})")
        raise typer.Exit(1)
    console.print(f"[green]valid[/green]: {summary}")


@app.command("apply")
def apply_command(
    folder: FolderArgument,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Apply without asking")] = False,
    prune: Annotated[
        bool, typer.Option(help="Archive live definitions that the folder no longer has")
    ] = False,
    database_url: DatabaseOption = None,
) -> None:
    """Show what would change, then apply: new versions, segments computed for everyone."""
    documents, read_problems = _read(folder)
    if _print_problems(validate_documents(documents, read_problems)):
        console.print("[red]nothing applied[/red]: fix the errors above first")
        raise typer.Exit(1)
    services = _services(database_url, migrated=False)
    apply_migrations(services.db)
    with services.db.read() as conn:
        changes = definitions_repo.plan(conn, documents)
    for change in changes:
        if change.action != "unchanged":
            note = " (kept; --prune archives it)" if change.action == "absent" and not prune else ""
            console.print(f"  {change}{note}")
    if all(c.action == "unchanged" or (c.action == "absent" and not prune) for c in changes):
        console.print("no changes")
        return
    if not yes and not typer.confirm("apply these changes?", default=False):
        raise typer.Exit(1)
    with Progress(
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), console=console
    ) as bar:
        tasks: dict[str, TaskID] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        applied = apply_definitions(
            services.db, documents, services.clock.now(), prune=prune, progress=progress
        )
    for computed in applied.computed:
        console.print(
            f"segment {computed.segment_id}: {computed.members} member(s), "
            f"{computed.entered} entered, {computed.exited} left"
        )
    if applied.migrated:
        console.print(f"{applied.migrated} enrollment(s) moved to new journey versions")
    console.print("[green]applied[/green]")


@app.command()
def explain(
    person: Annotated[str, typer.Argument(help="A profile id, userId or email address")],
    days: Annotated[int, typer.Option(min=1, max=366, help="How many days back")] = 14,
    database_url: DatabaseOption = None,
) -> None:
    """Why a person got what they got, and why nothing on other days, in plain words."""
    services = _services(database_url)
    profile_id = _find_person(services, person)
    if profile_id is None:
        console.print(f"[red]no person[/red] with profile id, userId or email {person!r}")
        raise typer.Exit(1)
    now = services.clock.now()
    found = person_decisions(services.db, profile_id, now - timedelta(days=days), now, 1000)
    console.print(
        f"[bold]{escape(person)}[/bold] (profile {found['profile_id']}, "
        f"times in {found['timezone']}), last {days} day(s):"
    )
    for line in found["explanation"]:
        console.print(escape(line), highlight=False)


def _find_person(services: Services, person: str) -> str | None:
    with services.db.read() as conn:
        if current_profile_id(conn, person) is not None:
            return person
    email = normalize_email(person)
    candidates = [Identifier("user_id", person)] + ([Identifier("email", email)] if email else [])
    for identifier in candidates:
        found = find_profile_id(services.db, identifier)
        if found is not None:
            return found
    return None


@keys_app.command("create")
def keys_create(
    kind: Annotated[str, typer.Option(help="write (tracking only) or admin")] = "write",
    name: Annotated[str, typer.Option(help="A label to recognise the key by")] = "",
    database_url: DatabaseOption = None,
) -> None:
    """Create a key and print its secret (shown only this once)."""
    if kind not in ("write", "admin"):
        raise typer.BadParameter(f"--kind must be write or admin, not {kind!r}")
    services = _services(database_url, migrated=False)
    apply_migrations(services.db)
    chosen: Literal["write", "admin"] = "write" if kind == "write" else "admin"
    _key, secret = create_key(services.db, chosen, name, services.clock.now())
    typer.echo(secret)


@keys_app.command("list")
def keys_list(database_url: DatabaseOption = None) -> None:
    """List keys (never their secrets)."""
    services = _services(database_url)
    table = Table("id", "kind", "name", "prefix", "created", "revoked")
    for key in list_keys(services.db):
        table.add_row(
            str(key.id),
            key.kind,
            key.name,
            key.prefix,
            key.created_at.isoformat(),
            str(key.revoked),
        )
    console.print(table)


@keys_app.command("revoke")
def keys_revoke(key_id: int, database_url: DatabaseOption = None) -> None:
    """Revoke a key by id."""
    services = _services(database_url)
    if not revoke_key(services.db, key_id, services.clock.now()):
        console.print(f"[red]no live key with id {key_id}[/red]")
        raise typer.Exit(1)
    console.print(f"key {key_id} revoked")


@app.command()
def sim(
    world: Annotated[
        str, typer.Option(help="standard, misaligned, or your own world as module:Class")
    ] = "standard",
    policy: Annotated[
        list[str],
        typer.Option(
            help="airspace, oracle, stratum_oracle, measured_oracle, first_come, priority or "
            "random (repeatable)"
        ),
    ] = ["airspace", "first_come", "oracle"],  # noqa: B006 (typer reads the default)
    days: Annotated[int, typer.Option(min=1, max=366, help="Simulated days")] = 60,
    customers: Annotated[int, typer.Option(min=1, max=10_000_000, help="World size")] = 2_000,
    seed: Annotated[int, typer.Option(min=0, help="The world's random seed")] = 0,
    breakdown: Annotated[
        bool, typer.Option(help="Also print messages and net value by journey and customer type")
    ] = False,
) -> None:
    """Run a customer world against the real engine under each policy; compare them."""
    from airspace.sim.compare import compare
    from airspace.sim.driver import POLICIES

    if os.getcwd() not in sys.path:  # a world module in the current folder, as `python -m`
        sys.path.insert(0, os.getcwd())
    unknown = [p for p in policy if p not in POLICIES]
    if unknown:
        console.print(f"[red]unknown policy {unknown[0]!r}[/red]; expected {', '.join(POLICIES)}")
        raise typer.Exit(2)
    try:
        chosen = [cast("SimPolicy", p) for p in policy]
        compare(
            console, world, chosen, days=days, customers=customers, seed=seed, breakdown=breakdown
        )
    except AirspaceError as error:
        console.print(f"[red]{escape(str(error))}[/red]")
        raise typer.Exit(2) from None


@app.command()
def demo(
    full: Annotated[
        bool, typer.Option(help="Replay all 23,570 CDNOW customers instead of the 1/10 sample")
    ] = False,
    port: Annotated[int, typer.Option(help="Port for the demo server")] = 8000,
    database: Annotated[Path, typer.Option(help="SQLite file for the demo")] = Path(
        "airspace-demo.db"
    ),
    serve_after: Annotated[
        bool, typer.Option("--serve/--no-serve", help="Keep serving after the replay")
    ] = True,
    days: Annotated[
        int, typer.Option(min=0, max=60, help="Days of example journeys to run (0: none)")
    ] = 7,
    sim_days: Annotated[
        int,
        typer.Option(min=0, max=366, help="Days of the simulated world per policy (0: none)"),
    ] = 14,
    sim_customers: Annotated[
        int, typer.Option(min=1, max=1_000_000, help="Customers of the simulated world")
    ] = 1_000,
) -> None:
    """Start a server on SQLite, replay real purchases plus web and app behaviour, then
    run the example journeys for a week on a simulated clock."""
    from airspace.demo.run import run_demo

    run_demo(
        console,
        full=full,
        port=port,
        database=database,
        serve_after=serve_after,
        days=days,
        sim_days=sim_days,
        sim_customers=sim_customers,
    )


if __name__ == "__main__":
    app()
