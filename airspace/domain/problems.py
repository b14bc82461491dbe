"""Every problem of a definition at once, each with its path (`steps[2].wait: ...`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from airspace.domain.errors import InvalidInput

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Problem:
    """One error (the definition cannot be used) or warning (it can, but look)."""

    path: str
    message: str
    level: Literal["error", "warning"] = "error"

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


def join(path: str, part: str | int) -> str:
    """`steps` + 2 → `steps[2]`; `entry` + `event` → `entry.event`."""
    if isinstance(part, int):
        return f"{path}[{part}]"
    return f"{path}.{part}" if path else part


@dataclass
class Problems:
    """A collector that parsers write into instead of stopping at the first mistake."""

    items: list[Problem] = field(default_factory=list)

    def error(self, path: str, message: str) -> None:
        self.items.append(Problem(path, message))

    def warn(self, path: str, message: str) -> None:
        self.items.append(Problem(path, message, "warning"))

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.items if p.level == "error"]

    @property
    def warnings(self) -> list[Problem]:
        return [p for p in self.items if p.level == "warning"]

    def convert(self, path: str, value: Any, parse: Callable[[Any], T]) -> T | None:
        """`parse(value)`, or None with the parser's message recorded at `path`."""
        try:
            return parse(value)
        except (ValueError, TypeError) as error:
            self.error(path, str(error))
            return None

    def text(self, path: str, value: Any, default: str) -> str:
        """`value` as text (`default` if absent); a list or mapping is reported, not spelled out."""
        if value is None or value == "":
            return default
        if isinstance(value, list | tuple | dict | set):
            self.error(path, f"expected text, got {kind_of(value)}")
            return default
        return str(value)

    def number(
        self,
        path: str,
        value: Any,
        low: float,
        high: float,
        default: float,
        *,
        required: bool = False,
    ) -> float:
        """`value` as a number from `low` to `high` (`default` if absent or wrong)."""
        if value is None and not required:
            return default
        if (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not low <= value <= high
        ):
            self.error(path, f"expected a number from {low} to {high}, got {kind_of(value)}")
            return default
        return float(value)

    def timezone(self, path: str, value: Any) -> str | None:
        """`value` as an IANA time zone name, or None (absent or reported)."""
        if value is None:
            return None
        if not isinstance(value, str) or not _is_zone(value):
            self.error(
                path,
                f"unknown time zone {shown(value)}; expected an IANA name such as Europe/Paris",
            )
            return None
        return value

    def mapping(self, path: str, value: Any, allowed: set[str]) -> dict[str, Any]:
        """`value` as a mapping with only `allowed` keys (others are reported)."""
        if not isinstance(value, dict):
            self.error(path, f"expected a mapping, got {kind_of(value)}")
            return {}
        for key in value:
            if key not in allowed:
                self.error(join(path, str(key)), f"unknown field; expected one of {_list(allowed)}")
        return value

    def raise_errors(self, what: str) -> None:
        """Raise one `InvalidInput` listing every error, if there is any."""
        if self.errors:
            listed = "; ".join(str(p) for p in self.errors)
            raise InvalidInput(f"{what} has {len(self.errors)} problem(s): {listed}")


def _is_zone(name: str) -> bool:
    try:
        return bool(name) and ZoneInfo(name).key == name
    except (ZoneInfoNotFoundError, ValueError):
        return False


def shown(value: Any) -> str:
    """A value as an error message quotes it: never the whole of a big or aliased structure."""
    if isinstance(value, str):
        return repr(value if len(value) <= 60 else value[:60] + "…")
    if isinstance(value, list | tuple | dict | set):
        return kind_of(value)
    return repr(value)


def larger_than(value: Any, limit: int) -> bool:
    """Does a YAML value hold more than `limit` values, counting each alias every time it
    is used (a "billion laughs" does; a structure that contains itself does)? Stops early."""
    seen = 0
    pending = [value]
    while pending:
        seen += 1
        if seen > limit:
            return True
        current = pending.pop()
        if isinstance(current, dict):
            pending.extend(current.values())
        elif isinstance(current, list | tuple):
            pending.extend(current)
    return False


def kind_of(value: Any) -> str:
    """A person's word for a YAML value's type."""
    if value is None:
        return "nothing"
    if isinstance(value, bool):
        return "true/false"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"text ({value[:40]!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def _list(words: set[str]) -> str:
    return ", ".join(sorted(words))
