"""The commands that take free text (`explain`, `sim`, any database URL) answer any input
with a result or a message, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from airspace.bootstrap import build_services
from airspace.cli import app
from airspace.domain.events import parse_message
from airspace.settings import Settings
from airspace.store.inbox import accept
from airspace.store.keys import create_key
from airspace.store.migrate import migrate

FUZZ = settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
# What a shell can pass as one argument: any text without NUL.
ARGUMENT = st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"))
NUMBERS = st.integers(-10, 10_000).map(str) | ARGUMENT
runner = CliRunner()


@pytest.fixture(scope="module")
def database(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A migrated SQLite database with one person, ann (ann@example.com)."""
    url = f"sqlite:///{tmp_path_factory.mktemp('cli') / 'airspace.db'}"
    services = build_services(Settings(database_url=url))  # type: ignore[call-arg]
    migrate(services.db)
    now = services.clock.now()
    key, _ = create_key(services.db, "write", "test", now)
    identify = {"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}}
    accept(
        services.db,
        key.id,
        [parse_message(identify, received_at=now, new_message_id="m1")],
        [],
        now,
    )
    services.worker().drain()
    services.db.dispose()
    return url


def _answered(args: list[str]) -> int:
    result = runner.invoke(app, args, env={"COLUMNS": "200", "NO_COLOR": "1"})
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise AssertionError(f"airspace {args!r} crashed:\n{result.output}") from result.exception
    return result.exit_code


@FUZZ
@given(person=ARGUMENT | st.sampled_from(["ann", "ann@example.com", " ANN@example.com "]))
def test_explain_answers_any_person(database: str, person: str) -> None:
    code = _answered(["explain", person, "--database-url", database])
    assert code in (0, 1, 2)
    if person in ("ann", "ann@example.com"):
        assert code == 0


@FUZZ
@given(days=NUMBERS)
def test_explain_answers_any_number_of_days(database: str, days: str) -> None:
    code = _answered(["explain", "ann", "--days", days, "--database-url", database])
    try:
        wanted = 0 if 1 <= int(days) <= 366 else 2  # as the option reads it
    except ValueError:
        wanted = 2
    assert code == wanted


@FUZZ
@given(
    world=ARGUMENT
    | st.sampled_from(["os:getcwd", "builtins:dict", "json:JSONDecoder", ":", "x:", ".x:Y"]),
    policy=ARGUMENT | st.sampled_from(["airspace", "oracle"]),
    days=st.just("1") | NUMBERS,
)
def test_sim_refuses_what_is_not_a_world_a_policy_or_a_number(
    world: str, policy: str, days: str
) -> None:
    """Every generated world is wrong (a real one would run a simulation), so every run
    ends with a message and exit code 2."""
    if world.strip() in ("standard", "misaligned") or world.startswith("-"):
        world = f"no.{world}"
    code = _answered(["sim", "--world", world, "--policy", policy, "--days", days])
    assert code == 2


@pytest.mark.parametrize(
    ("command", "url", "says"),
    [
        ("explain ann", "foo", "cannot use the database URL"),
        ("keys list", "mysql://shop/db", "No module named"),
        ("explain ann", "sqlite://:x", "cannot use the database URL"),
        ("explain ann", "sqlite:///:memory:", "has no Airspace schema, or an older one: run"),
        ("worker", "sqlite:////no/such/folder/airspace.db", "no database file at /no/such"),
        ("migrate", "sqlite:////no/such/folder/airspace.db", "unable to open database file"),
        ("keys list", "postgresql+psycopg://a:secret@127.0.0.1:1/db", "connection"),
    ],
)
def test_a_database_that_cannot_be_used_is_named_with_what_to_do(
    command: str, url: str, says: str
) -> None:
    result = runner.invoke(
        app, [*command.split(), "--database-url", url], env={"COLUMNS": "500", "NO_COLOR": "1"}
    )
    assert result.exit_code == 2, result.output
    assert says in result.output
    assert "secret" not in result.output  # a password is never printed


@FUZZ
@given(url=ARGUMENT)
def test_explain_answers_any_database_url(url: str) -> None:
    # Files and servers are the cases above: a fuzzed one could make files or look up hosts.
    assume(not any(word in url.lower() for word in ("sqlite", "postgres")))
    assert _answered(["explain", "ann", "--database-url", url]) == 2


def test_a_missing_database_file_is_named_not_made(tmp_path: Path) -> None:
    """A mistyped path is not answered by an empty database made there."""
    typo = tmp_path / "airspase.db"
    result = runner.invoke(app, ["explain", "ann", "--database-url", f"sqlite:///{typo}"])
    assert result.exit_code == 2
    assert "`airspace migrate` creates it" in result.output
    assert not typo.exists()
