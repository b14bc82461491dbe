"""The workspace as code: segments, journeys, topics, stores, regions and settings.

`load_documents` turns YAML files (path → text) into a `Workspace`, reporting
every problem at once with its file and path (`journeys/cart.yaml:
steps[2].wait: ...`), cross-checking references, and warning about segments
nothing uses. `diff` compares two workspaces for `airspace apply`.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson
import yaml

from airspace.domain.consent import Topic
from airspace.domain.graphs import find_cycle
from airspace.domain.journey_parser import parse_journey
from airspace.domain.journeys import Journey
from airspace.domain.problems import Problem, Problems, join, kind_of
from airspace.domain.segment_parser import parse_segment
from airspace.domain.segments import (
    All,
    AnyOf,
    Condition,
    Not,
    Segment,
    SegmentCondition,
)
from airspace.domain.workspace_settings import WorkspaceSettings, parse_settings

Kind = Literal["segment", "journey", "topic", "store", "region", "settings"]
KINDS: tuple[Kind, ...] = ("segment", "journey", "topic", "store", "region", "settings")


@dataclass(frozen=True, slots=True)
class Store:
    """A physical store: where it is, its geofence, region and time zone."""

    id: str
    name: str
    latitude: float
    longitude: float
    radius_m: float = 100.0
    region: str | None = None
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class Region:
    """A group of stores with a time zone."""

    id: str
    name: str
    timezone: str | None = None


@dataclass(frozen=True, slots=True)
class Document:
    """One definition as written: its kind, id and YAML content (for storage and diffs)."""

    kind: Kind
    id: str
    body: Mapping[str, Any]
    source: str = ""

    @property
    def canonical(self) -> str:
        return orjson.dumps(self.body, option=orjson.OPT_SORT_KEYS, default=str).decode()


@dataclass(frozen=True)
class Workspace:
    """Everything defined, parsed and checked."""

    segments: Mapping[str, Segment] = field(default_factory=dict)
    journeys: Mapping[str, Journey] = field(default_factory=dict)
    topics: Mapping[str, Topic] = field(default_factory=dict)
    stores: Mapping[str, Store] = field(default_factory=dict)
    regions: Mapping[str, Region] = field(default_factory=dict)
    settings: WorkspaceSettings = field(default_factory=WorkspaceSettings)
    documents: tuple[Document, ...] = ()
    paused: frozenset[str] = frozenset()

    def segment_order(self) -> list[str]:
        """Segments ordered so that a segment comes after those it refers to."""
        cached: list[str] | None = self.__dict__.get("_segment_order")
        if cached is None:
            cached = self._order_segments()
            object.__setattr__(self, "_segment_order", cached)
        return list(cached)

    def _order_segments(self) -> list[str]:
        done: list[str] = []
        seen: set[str] = set()
        for start in sorted(self.segments):
            if start in seen:
                continue
            # Depth-first without recursion: (segment, its references not yet visited).
            seen.add(start)
            path = [(start, sorted(self.segments[start].dependencies.segments))]
            while path:
                sid, deps = path[-1]
                if not deps:
                    path.pop()
                    done.append(sid)
                    continue
                dep = deps.pop(0)
                if dep not in seen and dep in self.segments:
                    seen.add(dep)
                    path.append((dep, sorted(self.segments[dep].dependencies.segments)))
        return done


# --- reading documents -------------------------------------------------------------------


class DefinitionLoader(yaml.SafeLoader):
    """YAML 1.2 booleans: only true / false. In YAML 1.1 `on`, `off`, `yes`, `no` are
    booleans too, which would turn `on: exit` into `True: exit` and `country: NO` into
    `country: false`."""


DefinitionLoader.yaml_implicit_resolvers = {
    first: [(tag, pattern) for tag, pattern in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
DefinitionLoader.add_implicit_resolver(
    "tag:yaml.org,2002:bool",
    re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"),
    list("tTfF"),
)


def load_yaml(text: str) -> list[Any]:
    """Every document of a YAML text (YAML 1.2 booleans, no custom tags)."""
    return list(yaml.load_all(text, Loader=DefinitionLoader))


def read_yaml(source: str, text: str, problems: Problems) -> list[Any]:
    """The YAML documents of one file (several may be separated by `---`)."""
    try:
        return [doc for doc in load_yaml(text) if doc is not None]
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(error, "problem", None) or str(error)
        problems.error(source, f"not valid YAML{where}: {problem}")
    except RecursionError:
        problems.error(source, "not valid YAML: nested too deeply")
    except ValueError as error:  # e.g. an integer of more digits than Python converts
        problems.error(source, f"not valid YAML: {error}")
    return []


def kind_of_document(body: Any, source: str) -> Kind | None:
    """Which kind of definition a document is, by its first key."""
    if not isinstance(body, dict):
        return None
    for kind in ("segment", "journey", "topic", "store", "region"):
        if kind in body:
            return kind
    if source.rsplit("/", 1)[-1] in ("settings.yaml", "settings.yml") or "settings" in body:
        return "settings"
    return None


def documents_from_files(files: Mapping[str, str], problems: Problems) -> list[Document]:
    """Every document of every file, each with its kind and id."""
    found: list[Document] = []
    for source in sorted(files):
        for number, body in enumerate(read_yaml(source, files[source], problems)):
            label = source if number == 0 else f"{source}#{number + 1}"
            kind = kind_of_document(body, source)
            if kind is None:
                problems.error(
                    label,
                    f"expected a mapping starting with segment, journey, topic, store or region "
                    f"(or a settings.yaml); got {kind_of(body)}",
                )
                continue
            doc_id = "settings" if kind == "settings" else body.get(kind)
            if not isinstance(doc_id, str) or not _valid_id(doc_id):
                problems.error(
                    f"{label}: {kind}",
                    "expected an id of letters, digits, '-', '_' or '.' (at most 100)",
                )
                continue
            found.append(Document(kind, doc_id, body, label))
    return found


def _valid_id(value: str) -> bool:
    return 0 < len(value) <= 100 and all(c.isalnum() or c in "-_." for c in value)


def load_documents(
    documents: list[Document], *, paused: frozenset[str] = frozenset()
) -> tuple[Workspace, list[Problem]]:
    """Parse and cross-check documents; the workspace is usable only without errors."""
    problems = Problems()
    seen: dict[tuple[str, str], str] = {}
    parsed: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    for doc in documents:
        if (doc.kind, doc.id) in seen:
            problems.error(
                doc.source, f"{doc.kind} {doc.id!r} is also defined in {seen[doc.kind, doc.id]}"
            )
            continue
        seen[doc.kind, doc.id] = doc.source
        local = Problems()
        value = _PARSERS[doc.kind](doc.body, local)
        for item in local.items:
            problems.items.append(Problem(_at(doc.source, item.path), item.message, item.level))
        if value is not None:
            parsed[doc.kind][doc.id] = value
    settings = parsed["settings"].get("settings", WorkspaceSettings())
    workspace = Workspace(
        segments=parsed["segment"],
        journeys=parsed["journey"],
        topics=parsed["topic"],
        stores=parsed["store"],
        regions=parsed["region"],
        settings=settings,
        documents=tuple(documents),
        paused=paused,
    )
    by_ref: dict[tuple[str, str], str] = {}
    for d in documents:  # the first definition of an id is the one used
        by_ref.setdefault((d.kind, d.id), d.source)
    for problem in cross_check(workspace):
        kind, _, rest = problem.path.partition(":")
        ref, _, inner = rest.partition(":")
        source = by_ref.get((kind, ref), f"{kind} {ref}")
        problems.items.append(Problem(_at(source, inner), problem.message, problem.level))
    return workspace, problems.items


def _at(source: str, path: str) -> str:
    """`journeys/cart.yaml: steps[2].wait`, or the file alone for the whole document."""
    return f"{source}: {path}" if path else source


def cross_check(workspace: Workspace) -> Iterator[Problem]:
    """References between definitions (paths are `kind:id:inner path`)."""
    used: set[str] = set()
    for sid, segment in workspace.segments.items():
        for path, ref in segment_references(segment.condition):
            used.add(ref)
            if ref not in workspace.segments:
                yield Problem(f"segment:{sid}:{path}", f"unknown segment {ref!r}")
    cycle = _segment_cycle(workspace)
    if cycle:
        loop = " → ".join(cycle)
        yield Problem(f"segment:{cycle[0]}:", f"segments refer to each other in a loop: {loop}")
    for journey in workspace.journeys.values():
        yield from _check_journey(workspace, journey, used)
    yield from _check_settings(workspace, used)
    for store in workspace.stores.values():
        if store.region and store.region not in workspace.regions:
            yield Problem(f"store:{store.id}:region", f"unknown region {store.region!r}")
    for sid in workspace.segments:
        if sid not in used:
            yield Problem(
                f"segment:{sid}:",
                "no journey, content item or other segment uses this segment",
                "warning",
            )


def _check_settings(workspace: Workspace, used: set[str]) -> Iterator[Problem]:
    settings = workspace.settings
    for where, strata in (("strata", settings.strata), ("substrata", settings.substrata)):
        for i, stratum in enumerate(strata):
            used.add(stratum.segment)
            if stratum.segment not in workspace.segments:
                yield Problem(
                    f"settings:settings:controller.{where}[{i}].segment",
                    f"unknown segment {stratum.segment!r}",
                )
    for i, group in enumerate(settings.exclusions):
        for jid in sorted(group.journeys - set(workspace.journeys)):
            yield Problem(
                f"settings:settings:controller.exclusive[{i}].journeys",
                f"unknown journey {jid!r}",
            )


def _check_journey(workspace: Workspace, journey: Journey, used: set[str]) -> Iterator[Problem]:
    jid = journey.id
    for path, ref in _journey_segments(journey):
        used.add(ref)
        if ref not in workspace.segments:
            yield Problem(f"journey:{jid}:{path}", f"unknown segment {ref!r}")
    # Topics may also come from the admin API; with none defined as code there is nothing to check.
    known = workspace.topics
    if known and journey.topic is not None and journey.topic not in known:
        yield Problem(
            f"journey:{jid}:topic", f"unknown topic {journey.topic!r}; define it in topics"
        )
    for i, step in enumerate(journey.steps):
        topic = step.message.topic if step.message else None
        if known and topic is not None and topic != journey.topic and topic not in known:
            yield Problem(
                f"journey:{jid}:steps[{i}].message.topic",
                f"unknown topic {topic!r}; define it in topics",
            )
    for i, step in enumerate(journey.steps):
        if step.kind == "start_journey" and step.journey not in workspace.journeys:
            yield Problem(
                f"journey:{jid}:steps[{i}].start_journey", f"unknown journey {step.journey!r}"
            )


def _journey_segments(journey: Journey) -> Iterator[tuple[str, str]]:
    if journey.entry.segment:
        yield "entry.segment", journey.entry.segment
    for i, rule in enumerate(journey.exit_when):
        if rule.segment:
            yield f"exit_when[{i}].segment", rule.segment
    for i, step in enumerate(journey.steps):
        for condition, _ in step.branches:
            for _, ref in segment_references(condition):
                yield f"steps[{i}].branch", ref


def segment_references(condition: Condition, path: str = "") -> Iterator[tuple[str, str]]:
    """Every segment a condition refers to, with its path (`all[0].segment`)."""
    match condition:
        case All(children) | AnyOf(children):
            word = "all" if isinstance(condition, All) else "any"
            for i, child in enumerate(children):
                yield from segment_references(child, join(join(path, word), i))
        case Not(child):
            yield from segment_references(child, join(path, "not"))
        case SegmentCondition(segment):
            yield join(path, "segment"), segment


def _segment_cycle(workspace: Workspace) -> list[str]:
    """The first loop of segment references (`a → b → a`), or nothing."""
    segments = workspace.segments
    return find_cycle(
        {sid: sorted(segments[sid].dependencies.segments) for sid in sorted(segments)}
    )


# --- parsers of the small kinds ----------------------------------------------------------


def _parse_topic(body: dict[str, Any], problems: Problems) -> Topic | None:
    problems.mapping("", body, {"topic", "kind", "description", "name"})
    kind = body.get("kind", "opt_out")
    if kind not in ("opt_in", "opt_out"):
        problems.error("kind", "expected opt_in or opt_out")
        kind = "opt_out"
    return Topic(body["topic"], kind, problems.text("description", body.get("description"), ""))


def _parse_store(body: dict[str, Any], problems: Problems) -> Store:
    problems.mapping(
        "", body, {"store", "name", "latitude", "longitude", "radius_m", "region", "timezone"}
    )
    return Store(
        id=body["store"],
        name=problems.text("name", body.get("name"), body["store"]),
        latitude=problems.number("latitude", body.get("latitude"), -90, 90, 0.0, required=True),
        longitude=problems.number(
            "longitude", body.get("longitude"), -180, 180, 0.0, required=True
        ),
        radius_m=problems.number("radius_m", body.get("radius_m"), 1, 100_000, 100.0),
        region=body.get("region") if isinstance(body.get("region"), str) else None,
        timezone=problems.timezone("timezone", body.get("timezone")),
    )


def _parse_region(body: dict[str, Any], problems: Problems) -> Region:
    problems.mapping("", body, {"region", "name", "timezone"})
    return Region(
        body["region"],
        problems.text("name", body.get("name"), body["region"]),
        problems.timezone("timezone", body.get("timezone")),
    )


_PARSERS: dict[str, Any] = {
    "segment": parse_segment,
    "journey": parse_journey,
    "topic": _parse_topic,
    "store": _parse_store,
    "region": _parse_region,
    "settings": parse_settings,
}


# --- diff ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Change:
    """One line of `airspace apply`'s plan."""

    action: Literal["create", "update", "unchanged", "absent"]
    kind: Kind
    id: str

    def __str__(self) -> str:
        marks = {"create": "+", "update": "~", "unchanged": "=", "absent": "?"}
        return f"{marks[self.action]} {self.kind} {self.id}"


def diff(current: list[Document], wanted: list[Document]) -> list[Change]:
    """What applying `wanted` over `current` creates, updates, keeps, and does not mention."""
    have = {(d.kind, d.id): d.canonical for d in current}
    changes: list[Change] = []
    for doc in wanted:
        before = have.pop((doc.kind, doc.id), None)
        action: Literal["create", "update", "unchanged"] = (
            "create" if before is None else "unchanged" if before == doc.canonical else "update"
        )
        changes.append(Change(action, doc.kind, doc.id))
    changes.extend(Change("absent", kind, doc_id) for kind, doc_id in sorted(have))
    return changes
