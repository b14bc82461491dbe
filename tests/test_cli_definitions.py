"""`airspace validate` and `airspace apply`, run as a person runs them: the real command
in a subprocess, on folders of YAML, against a SQLite file. Every problem is printed with
its file and path; nothing is applied while there is an error; a second apply changes
nothing; an edit is one new version."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from airspace.bootstrap import build_services
from airspace.settings import Settings
from airspace.store import definitions as repo

EXAMPLES = Path(__file__).parents[1] / "examples"
EVERY_EXAMPLE = [
    ("journey", "abandoned-cart"),
    ("journey", "birthday"),
    ("journey", "returns"),
    ("journey", "welcome"),
    ("journey", "win-back"),
    ("segment", "customers"),
    ("segment", "high-value"),
    ("segment", "lapsed-customers"),
    ("settings", "settings"),
    ("region", "ile-de-france"),
    ("region", "bavaria"),
    ("store", "paris-rivoli"),
    ("store", "munich-marienplatz"),
    ("topic", "promotions"),
    ("topic", "service"),
    ("topic", "newsletter"),
]


def airspace(
    *args: str | Path, database: Path | None = None, answer: str = "", installed: bool = False
) -> subprocess.CompletedProcess[str]:
    """Run `python -m airspace.cli ARGS`, or with `installed` the `airspace` command itself
    (which, unlike `python -m`, does not look in the current folder for modules); wide
    output, so that lines do not wrap."""
    command = (
        [str(Path(sys.executable).with_name("airspace"))]
        if installed
        else [sys.executable, "-m", "airspace.cli"]
    )
    env = {**os.environ, "COLUMNS": "250", "NO_COLOR": "1"}
    env.pop("AIRSPACE_DATABASE_URL", None)
    if database is not None:
        env["AIRSPACE_DATABASE_URL"] = f"sqlite:///{database}"
    return subprocess.run(
        [*command, *map(str, args)],
        input=answer,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return result.stdout.splitlines()


def stored(database: Path) -> dict[tuple[str, str], list[tuple[int, str]]]:
    """Every definition in the database: (kind, id) → [(version, status)], newest first."""
    services = build_services(Settings(database_url=f"sqlite:///{database}"))  # type: ignore[call-arg]
    try:
        with services.db.read() as conn:
            return {
                (d.kind, d.ref): [(v.version, v.status) for v in repo.history(conn, d.kind, d.ref)]
                for d in repo.live(conn)
            }
    finally:
        services.db.dispose()


def write(folder: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return folder


# --- validate --------------------------------------------------------------------------------


def test_validate_the_examples() -> None:
    result = airspace("validate", EXAMPLES)
    assert result.returncode == 0, result.stdout + result.stderr
    assert lines(result) == [
        "valid: 5 journey(s), 2 region(s), 3 segment(s), 1 settings(s), 2 store(s), 3 topic(s)"
    ]
    assert result.stderr == ""


MISTAKES = {
    "journeys/cart.yaml": """\
journey: cart
entry: {event: Cart Abandoned}
steps:
  - wait: 1h
  - wait: soon
  - message: {channels: [fax], content: reminder}
""",
    "journeys/back.yaml": """\
journey: back
entry: {segment: nobody}
steps: [{message: {content: hi}}]
""",
    "segments/lonely.yaml": """\
segment: lonely
trait: tier
eq: vip
---
- a list, not a definition
""",
    "segments/broken.yaml": "segment: broken\n  event: [\n",
    "segments/fine.yml": "segment: fine\nevent: Order Completed\n",
    "settings.yaml": "timezone: Mars/Olympus\n",
}


def test_validate_prints_every_problem_with_its_file_and_path(tmp_path: Path) -> None:
    result = airspace("validate", write(tmp_path / "defs", MISTAKES))
    assert result.returncode == 1, result.stdout + result.stderr
    assert lines(result) == [
        "error   segments/broken.yaml: not valid YAML (line 2, column 8): mapping values are "
        "not allowed here",
        "error   segments/lonely.yaml#2: expected a mapping starting with segment, journey, "
        "topic, store or region (or a settings.yaml); got a list",
        "error   journeys/cart.yaml: steps[1].wait: expected a duration such as 30m, 1h, 7d or "
        "2w; got 'soon'",
        "error   journeys/cart.yaml: steps[2].message.channels[0]: unknown channel 'fax'; "
        "expected one of email, sms, push, webhook, onsite",
        "error   settings.yaml: timezone: unknown time zone 'Mars/Olympus'; expected an IANA "
        "name such as Europe/Paris",
        "error   journeys/back.yaml: entry.segment: unknown segment 'nobody'",
        "warning segments/fine.yml: no journey, content item or other segment uses this segment",
        "warning segments/lonely.yaml: no journey, content item or other segment uses this segment",
        f"6 error(s) in {tmp_path / 'defs'} (2 journey(s), 2 segment(s), 1 settings(s))",
    ]
    assert result.stderr == ""


def test_a_warning_names_the_file_that_was_kept_not_its_duplicate(tmp_path: Path) -> None:
    folder = write(
        tmp_path / "defs",
        {
            "a.yaml": "segment: lonely\ntrait: tier\n",
            "b.yaml": "segment: lonely\nevent: Duplicate\n",
        },
    )
    assert lines(airspace("validate", folder))[:2] == [
        "error   b.yaml: segment 'lonely' is also defined in a.yaml",
        "warning a.yaml: no journey, content item or other segment uses this segment",
    ]


def test_validate_a_missing_folder_says_so(tmp_path: Path) -> None:
    missing = airspace("validate", tmp_path / "nowhere")
    assert missing.returncode == 2
    assert lines(missing) == [f"{tmp_path / 'nowhere'} is not a folder of YAML definitions"]
    assert "Traceback" not in missing.stderr
    a_file = write(tmp_path, {"settings.yaml": "timezone: UTC\n"}) / "settings.yaml"
    assert airspace("validate", a_file).returncode == 2
    (tmp_path / "empty").mkdir()
    empty = airspace("validate", tmp_path / "empty")
    assert empty.returncode == 1
    assert lines(empty)[0] == f"error   {tmp_path / 'empty'}: no .yaml files found"


# --- apply --------------------------------------------------------------------------------------


def plan(result: subprocess.CompletedProcess[str]) -> list[str]:
    """The plan lines of `apply` (`  + kind id`)."""
    return [line for line in lines(result) if line[:4] in ("  + ", "  ~ ", "  ? ", "  = ")]


def test_apply_then_again_then_an_edit(tmp_path: Path) -> None:
    database = tmp_path / "airspace.db"
    folder = tmp_path / "defs"
    shutil.copytree(EXAMPLES, folder)

    first = airspace("apply", folder, "--yes", database=database)
    assert first.returncode == 0, first.stdout + first.stderr
    assert sorted(plan(first)) == sorted(f"  + {kind} {ref}" for kind, ref in EVERY_EXAMPLE)
    assert "segment lapsed-customers: 0 member(s), 0 entered, 0 left" in lines(first)
    assert lines(first)[-1] == "applied"
    assert stored(database) == {key: [(1, "active")] for key in EVERY_EXAMPLE}

    again = airspace("apply", folder, "--yes", database=database)
    assert again.returncode == 0, again.stdout + again.stderr
    assert lines(again) == ["no changes"]

    cart = folder / "journeys" / "abandoned-cart.yaml"
    cart.write_text(cart.read_text().replace("timeout: 1h", "timeout: 2h"))
    edited = airspace("apply", folder, "--yes", database=database)
    assert edited.returncode == 0, edited.stdout + edited.stderr
    assert plan(edited) == ["  ~ journey abandoned-cart"]
    assert lines(edited)[-1] == "applied"
    after = stored(database)
    assert after[("journey", "abandoned-cart")] == [(2, "active"), (1, "replaced")]
    assert {key: v for key, v in after.items() if key != ("journey", "abandoned-cart")} == {
        key: [(1, "active")] for key in EVERY_EXAMPLE if key != ("journey", "abandoned-cart")
    }


def test_apply_refuses_while_there_are_errors(tmp_path: Path) -> None:
    database = tmp_path / "airspace.db"
    folder = tmp_path / "defs"
    shutil.copytree(EXAMPLES, folder)
    assert airspace("apply", folder, "--yes", database=database).returncode == 0

    # One good edit and one mistake: neither is applied.
    cart = folder / "journeys" / "abandoned-cart.yaml"
    cart.write_text(cart.read_text().replace("timeout: 1h", "timeout: 2h"))
    welcome = folder / "journeys" / "welcome.yaml"
    welcome.write_text(welcome.read_text().replace("wait: 2d", "wait: two days"))
    refused = airspace("apply", folder, "--yes", database=database)
    assert refused.returncode == 1
    assert lines(refused) == [
        "error   journeys/welcome.yaml: steps[1].wait: expected a duration such as 30m, 1h, 7d "
        "or 2w; got 'two days'",
        "nothing applied: fix the errors above first",
    ]
    assert stored(database) == {key: [(1, "active")] for key in EVERY_EXAMPLE}

    # A database that was never written stays that way.
    fresh = tmp_path / "fresh.db"
    assert airspace("apply", folder, "--yes", database=fresh).returncode == 1
    assert not fresh.exists()


def test_apply_asks_first_without_yes(tmp_path: Path) -> None:
    database = tmp_path / "airspace.db"
    folder = write(tmp_path / "defs", {"segments/vip.yaml": "segment: vip\ntrait: tier\n"})
    declined = airspace("apply", folder, database=database, answer="n\n")
    assert declined.returncode == 1
    assert plan(declined) == ["  + segment vip"]
    assert "apply these changes? [y/N]:" in declined.stdout
    assert stored(database) == {}
    accepted = airspace("apply", folder, database=database, answer="y\n")
    assert accepted.returncode == 0, accepted.stdout + accepted.stderr
    assert lines(accepted)[-1] == "applied"
    assert stored(database) == {("segment", "vip"): [(1, "active")]}


def test_apply_keeps_what_the_folder_no_longer_has_unless_pruned(tmp_path: Path) -> None:
    database = tmp_path / "airspace.db"
    folder = tmp_path / "defs"
    shutil.copytree(EXAMPLES, folder)
    assert airspace("apply", folder, "--yes", database=database).returncode == 0
    (folder / "journeys" / "birthday.yaml").unlink()

    kept = airspace("apply", folder, "--yes", database=database)
    assert kept.returncode == 0
    assert lines(kept) == ["  ? journey birthday (kept; --prune archives it)", "no changes"]
    assert stored(database)[("journey", "birthday")] == [(1, "active")]

    pruned = airspace("apply", folder, "--yes", "--prune", database=database)
    assert pruned.returncode == 0, pruned.stdout + pruned.stderr
    assert plan(pruned) == ["  ? journey birthday"]
    assert lines(pruned)[-1] == "applied"
    assert ("journey", "birthday") not in stored(database)
