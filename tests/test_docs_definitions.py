"""The YAML of docs/definitions.md and examples/ loads as the docs say it does.

Every ```yaml block of the reference is a definition the loader accepts, and
all of them together form one workspace (so blocks may refer to each other's
segments and ids are unique across the page). Every ```yaml invalid block is
refused, and the ```text block after it shows, line for line, problems that
`airspace validate` really prints for it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from airspace.domain import journey_parser, journeys, segment_parser, segments
from airspace.domain.definitions import Document, documents_from_files, load_documents
from airspace.domain.problems import Problem, Problems

ROOT = Path(__file__).resolve().parent.parent
REFERENCE = ROOT / "docs" / "definitions.md"
EXAMPLES = ROOT / "examples"

# Top-level keys of a settings document (a block starting with one is a settings.yaml).
SETTINGS_KEYS = frozenset({"settings", "timezone", "controller", "channels"})

_FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.MULTILINE | re.DOTALL)
# A first line such as `# journeys/abandoned-cart.yaml (version 2)` names the block's file.
_FILE_COMMENT = re.compile(r"^#\s*(\S+\.ya?ml)\b")


@dataclass(frozen=True)
class Block:
    """One ```yaml block of the reference."""

    number: int
    info: str
    text: str
    after: str  # the reference's text from the end of this block to the next ```yaml block
    line: int

    @property
    def invalid(self) -> bool:
        return self.info.split()[1:] == ["invalid"]

    @property
    def filename(self) -> str:
        named = _FILE_COMMENT.match(self.text)
        if named:
            return named.group(1)
        first = next(iter(yaml.safe_load_all(self.text)), None)
        if isinstance(first, dict) and first and next(iter(first)) in SETTINGS_KEYS:
            return f"docs-example-{self.number}/settings.yaml"
        return f"docs-example-{self.number}.yaml"

    def where(self) -> str:
        return f"docs/definitions.md line {self.line} ({self.filename})"


def reference_blocks() -> list[Block]:
    """Every ```yaml block of the reference, in order."""
    text = REFERENCE.read_text(encoding="utf-8")
    fences = list(_FENCE.finditer(text))
    yaml_fences = [m for m in fences if m.group(1).strip().split()[:1] == ["yaml"]]
    blocks = []
    for number, match in enumerate(yaml_fences, start=1):
        following = [m for m in yaml_fences if m.start() > match.start()]
        stop = following[0].start() if following else len(text)
        blocks.append(
            Block(
                number=number,
                info=match.group(1).strip(),
                text=match.group(2),
                after=text[match.end() : stop],
                line=text.count("\n", 0, match.start()) + 1,
            )
        )
    return blocks


BLOCKS = reference_blocks()
VALID = [b for b in BLOCKS if not b.invalid]
INVALID = [b for b in BLOCKS if b.invalid]


def load(files: dict[str, str]) -> tuple[list[Document], list[Problem]]:
    """Read and check files as `airspace validate` does: every problem, reading included."""
    problems = Problems()
    documents = documents_from_files(files, problems)
    _, found = load_documents(documents)
    return documents, [*problems.items, *found]


def printed(problem: Problem) -> str:
    """A problem as `airspace validate` prints it."""
    return f"{'error  ' if problem.level == 'error' else 'warning'} {problem}"


def listed_problems(after: str) -> list[str]:
    """The problem lines of the first ```text block in `after`."""
    match = _FENCE.search(after)
    if match is None or match.group(1).strip() != "text":
        return []
    return [
        line.rstrip()
        for line in match.group(2).splitlines()
        if line.startswith(("error ", "warning "))
    ]


def test_the_reference_has_yaml_examples_of_both_kinds() -> None:
    assert len(VALID) >= 20, "docs/definitions.md should show many valid definitions"
    assert INVALID, "docs/definitions.md should show mistakes and their messages"
    for block in BLOCKS:
        assert block.info in ("yaml", "yaml invalid"), f"{block.where()}: fence ```{block.info}"


def test_each_example_names_its_own_file() -> None:
    names = [b.filename for b in BLOCKS]
    repeated = sorted({n for n in names if names.count(n) > 1})
    assert not repeated, f"two examples of docs/definitions.md share a file name: {repeated}"


def test_every_valid_example_loads_without_errors_as_one_workspace() -> None:
    documents, problems = load({b.filename: b.text for b in VALID})
    errors = [str(p) for p in problems if p.level == "error"]
    assert not errors, "valid examples of docs/definitions.md have errors:\n" + "\n".join(errors)
    loaded = {d.source.split("#", 1)[0] for d in documents}
    assert loaded == {b.filename for b in VALID}, "every valid example defines something"


@pytest.mark.parametrize("block", INVALID, ids=lambda b: b.filename)
def test_every_invalid_example_gives_the_error_shown_after_it(block: Block) -> None:
    # Loaded with the valid examples, so that it may refer to their segments and topics.
    files = {b.filename: b.text for b in VALID}
    assert block.filename not in files, f"{block.where()}: its file name is taken"
    files[block.filename] = block.text
    _, problems = load(files)
    produced = {printed(p) for p in problems}
    errors = [p for p in problems if p.level == "error"]
    assert errors, f"{block.where()} is marked invalid but loads without errors"
    shown = listed_problems(block.after)
    assert any(line.startswith("error ") for line in shown), (
        f"{block.where()}: the ```text block after it should show its error; it could be:\n"
        + "\n".join(printed(p) for p in errors)
    )
    wrong = [line for line in shown if line not in produced]
    assert not wrong, f"{block.where()}: shown but not produced: {wrong}; produced:\n" + "\n".join(
        produced
    )


def test_the_reference_names_every_field_and_operator() -> None:
    text = REFERENCE.read_text(encoding="utf-8")
    words = {
        *segments.COMPARISONS,
        *segments.DATE_OPERATORS,
        *segments.COMPUTED_TRAITS,
        *journeys.STEP_KINDS,
        *journey_parser._JOURNEY_FIELDS,
        *journey_parser._MESSAGE_FIELDS,
        *segment_parser._EVENT_FIELDS,
    }
    missing = sorted(w for w in words if f"`{w}" not in text)
    assert not missing, f"docs/definitions.md does not mention {missing}"


def test_the_examples_folder_loads_without_errors_or_warnings() -> None:
    files = {
        path.relative_to(EXAMPLES).as_posix(): path.read_text(encoding="utf-8")
        for path in sorted([*EXAMPLES.rglob("*.yaml"), *EXAMPLES.rglob("*.yml")])
    }
    assert files, "examples/ has no YAML files"
    documents, problems = load(files)
    assert documents, "examples/ defines nothing"
    assert not problems, "examples/ has problems:\n" + "\n".join(str(p) for p in problems)
