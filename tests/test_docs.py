"""The docs name only settings and paths that exist, and every one that exists."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from airspace.api.app import create_app
from airspace.bootstrap import build_services
from airspace.settings import Settings

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
OPERATIONS = DOCS / "operations.md"
HTTP_API = DOCS / "http-api.md"

# Variables of the test scripts, not of an Airspace process; each must appear in scripts/ or tests/.
SCRIPT_VARIABLES = frozenset({"AIRSPACE_TEST_POSTGRES_URL", "AIRSPACE_PG_DIR", "AIRSPACE_PG_PORT"})

_VARIABLE = re.compile(r"\bAIRSPACE_[A-Z0-9_]*[A-Z0-9]")
_TABLE_ROW = re.compile(r"^\|\s*`(AIRSPACE_[A-Z0-9_]+)`\s*\|\s*(.*?)\s*\|", re.MULTILINE)
# A path of ours anywhere in the text: in a table, in prose, or inside a curl URL.
_API_PATH = re.compile(r"(?:/admin)?/v1/[^\s`'\"()\[\]<>,;|\\]*")
_PARAM = re.compile(r"\{[^}/]*\}")


def setting_names() -> set[str]:
    """The environment variable of every field of `Settings`."""
    return {f"AIRSPACE_{name.upper()}" for name in Settings.model_fields}


def documented_default(name: str) -> str:
    """A field's default as the settings table of docs/operations.md writes it."""
    field = Settings.model_fields[name]
    value = field.default_factory() if field.default_factory is not None else field.default
    if value is None:
        return "(none)"
    if value == "":
        return "(empty)"
    if isinstance(value, dict):
        return f"`{json.dumps(value)}`"
    return f"`{value}`"


def settings_table() -> dict[str, str]:
    """variable → default column of the settings table in docs/operations.md."""
    return dict(_TABLE_ROW.findall(OPERATIONS.read_text()))


def test_every_setting_named_in_the_docs_exists() -> None:
    known = setting_names()
    for doc in sorted(DOCS.glob("*.md")):
        named = set(_VARIABLE.findall(doc.read_text()))
        unknown = sorted(named - known - SCRIPT_VARIABLES)
        assert not unknown, f"{doc.name} names settings that Settings does not have: {unknown}"


def test_script_variables_named_in_the_docs_are_used_by_the_scripts() -> None:
    used = "\n".join(
        path.read_text()
        for folder in (ROOT / "scripts", ROOT / "tests")
        for path in sorted(folder.rglob("*"))
        if path.is_file() and path.suffix in ("", ".py", ".sh")
    )
    for name in sorted(SCRIPT_VARIABLES & set(_VARIABLE.findall(OPERATIONS.read_text()))):
        assert name in used, f"docs/operations.md names {name}, which no script or test uses"


def test_the_settings_table_lists_every_setting_with_its_default() -> None:
    table = settings_table()
    assert set(table) == setting_names(), (
        f"settings table of docs/operations.md: missing {sorted(setting_names() - set(table))}, "
        f"unknown {sorted(set(table) - setting_names())}"
    )
    for name in Settings.model_fields:
        variable = f"AIRSPACE_{name.upper()}"
        assert table[variable] == documented_default(name), f"default of {variable}"


@pytest.fixture(scope="module")
def openapi_paths() -> Iterator[set[str]]:
    """The paths of the app's OpenAPI document."""
    services = build_services(Settings(database_url="sqlite:///:memory:"))  # type: ignore[call-arg]
    try:
        yield set(create_app(services).openapi()["paths"])
    finally:
        services.db.dispose()


def documented_paths() -> set[str]:
    """Every /v1/ and /admin/v1/ path in docs/http-api.md, without query or trailing dots."""
    found = set()
    for match in _API_PATH.findall(HTTP_API.read_text()):
        path = match.split("?", 1)[0].split("#", 1)[0].rstrip(".:")
        if path.endswith("/") or "..." in path:
            continue  # "/v1/..." stands for the whole family
        found.add(_PARAM.sub("{}", path))
    return found


def _pattern(template: str) -> re.Pattern[str]:
    """A path template (`/admin/v1/profiles/{profile_id}`) as a regex matching its paths."""
    parts = _PARAM.split(template)
    return re.compile("(?:[^/]+)".join(re.escape(part) for part in parts))


def _ours(path: str) -> bool:
    return path.startswith(("/v1/", "/admin/v1/"))


def test_every_path_in_the_http_docs_exists(openapi_paths: set[str]) -> None:
    patterns = [_pattern(p) for p in openapi_paths if _ours(p)]
    documented = documented_paths()
    assert documented, "no /v1/ or /admin/v1/ path found in docs/http-api.md"
    missing = sorted(p for p in documented if not any(rx.fullmatch(p) for rx in patterns))
    assert not missing, f"docs/http-api.md names paths the app does not serve: {missing}"


def test_every_path_of_the_app_is_in_the_http_docs(openapi_paths: set[str]) -> None:
    documented = documented_paths()
    undocumented = sorted(
        path
        for path in openapi_paths
        if _ours(path) and not any(_pattern(path).fullmatch(doc) for doc in documented)
    )
    assert not undocumented, f"docs/http-api.md does not mention {undocumented}"
