"""Bulk statements for the hot paths (accepting and applying events).

They go straight to the driver with values serialised once: SQLAlchemy's
per-parameter type processing would cost more than the rest of accepting or
applying an event. Many rows share one statement: one round trip per row would
leave a PostgreSQL client waiting on the network most of the time.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import Connection

ROWS_PER_STATEMENT = 400


def driver_time(sqlite: bool, moment: datetime) -> Any:
    """A UTC time as the driver stores it (SQLAlchemy's SQLite text format, or a datetime)."""
    if not sqlite:
        return moment
    # Always with microseconds, as SQLAlchemy writes them: the column compares as text.
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(" ", timespec="microseconds")


def placeholders(sqlite: bool, plain: int, json: int) -> list[str]:
    """Placeholders of one row: `plain` ordinary values, then `json` JSON documents."""
    mark = "?" if sqlite else "%s"
    return [mark] * plain + [mark if sqlite else f"CAST({mark} AS jsonb)"] * json


def insert_many(
    conn: Connection,
    head: str,
    marks: list[str],
    rows: list[tuple[Any, ...]],
    tail: str = "",
) -> list[Any]:
    """`head VALUES (...), (...), ... tail` in chunks; return the rows a RETURNING tail gives."""
    one_row = f"({', '.join(marks)})"
    returned: list[Any] = []
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start : start + ROWS_PER_STATEMENT]
        result = conn.exec_driver_sql(
            f"{head} VALUES {', '.join([one_row] * len(chunk))} {tail}",
            tuple(value for row in chunk for value in row),
        )
        if "RETURNING" in tail:
            returned.extend(result.all())
    return returned


def upsert_many(
    conn: Connection,
    table: str,
    columns: dict[str, str],
    rows: list[dict[str, Any]],
    keys: list[str],
    *,
    update: bool = True,
    increment: bool = False,
) -> None:
    """Insert rows, or (with `update`) overwrite the other columns where the key exists
    (with `increment`: add to them; each key at most once per call).

    `columns` maps each column to how it is sent: "plain", "time" or "json".
    """
    if not rows:
        return
    sqlite = conn.dialect.name == "sqlite"
    names = list(columns)
    mark = "?" if sqlite else "%s"
    marks = [
        f"CAST({mark} AS jsonb)" if columns[c] == "json" and not sqlite else mark for c in names
    ]

    def value(kind: str, v: Any) -> Any:
        if v is None:
            return None
        if kind == "time":
            return driver_time(sqlite, v)
        if kind == "json":
            return orjson.dumps(v).decode()
        return v

    others = [c for c in names if c not in keys]
    new = [f"{table}.{c} + excluded.{c}" if increment else f"excluded.{c}" for c in others]
    action = (
        "DO UPDATE SET " + ", ".join(f"{c} = {n}" for c, n in zip(others, new, strict=True))
        if update and others
        else "DO NOTHING"
    )
    insert_many(
        conn,
        f"INSERT INTO {table} ({', '.join(names)})",
        marks,
        [tuple(value(columns[c], row[c]) for c in names) for row in rows],
        f"ON CONFLICT ({', '.join(keys)}) {action}" if keys else "",
    )
