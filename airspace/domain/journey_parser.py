"""Reading a journey from its YAML document, reporting every problem with its path."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal, cast

from croniter import croniter

from airspace.domain import timing
from airspace.domain.consent import CHANNELS
from airspace.domain.graphs import find_cycle
from airspace.domain.journeys import (
    END,
    STEP_KINDS,
    Entry,
    EventMatch,
    ExitRule,
    Goal,
    Journey,
    Message,
    Step,
)
from airspace.domain.problems import Problems, join, kind_of, larger_than, shown
from airspace.domain.segment_parser import parse_condition, parse_where
from airspace.domain.segments import Condition

_JOURNEY_FIELDS = {
    "journey",
    "name",
    "description",
    "topic",
    "transactional",
    "entry",
    "re_entry",
    "max_concurrent",
    "entry_cap",
    "exit_when",
    "goal",
    "holdout",
    "steps",
    "migrate",
}
MAX_STEPS = 200
MAX_VALUES = 10_000  # in a step's free-form traits or webhook body


def parse_share(value: Any) -> float:
    """`10%`, `0.1` or `0` as a share in [0, 1]."""
    if isinstance(value, str) and value.strip().endswith("%"):
        try:
            share = float(value.strip()[:-1]) / 100
        except ValueError:
            raise ValueError(f"expected a percentage such as 10%; got {shown(value)}") from None
    elif isinstance(value, int | float) and not isinstance(value, bool):
        share = float(value)
    else:
        raise ValueError(f"expected a percentage such as 10%; got {shown(value)}")
    if not 0 <= share <= 1:
        raise ValueError(f"expected a share from 0% to 100%; got {shown(value)}")
    return share


def _text(value: Any, path: str, problems: Problems) -> str:
    if not isinstance(value, str) or not value.strip():
        problems.error(path, f"expected a name, got {kind_of(value)}")
        return ""
    return value.strip()


def parse_event_match(
    raw: Any, path: str, problems: Problems, *, allowed: set[str]
) -> EventMatch | None:
    """`{event, where?, match?}` (plus `allowed` sibling fields)."""
    problems.mapping(path, raw, {"event", "where", "match", *allowed})
    if not isinstance(raw, dict):
        return None
    name = _text(raw.get("event"), join(path, "event"), problems)
    where = parse_where(raw["where"], join(path, "where"), problems) if "where" in raw else ()
    match: list[tuple[str, Any]] = []
    raw_match = raw.get("match", {})
    if not isinstance(raw_match, dict):
        problems.error(
            join(path, "match"),
            "expected a mapping: {properties.cart_id: trigger.properties.cart_id}",
        )
    else:
        for key, value in raw_match.items():
            if not isinstance(key, str) or not isinstance(value, str | int | float):
                problems.error(
                    join(join(path, "match"), str(key)), "expected path: trigger.path or a value"
                )
                continue
            # A literal keeps its type: `match: {properties.quantity: 3}` matches the number 3.
            match.append((key, value))
    return EventMatch(name, where, tuple(match))


def _duration(raw: Any, path: str, problems: Problems) -> timedelta:
    return problems.convert(path, raw, timing.parse_duration) or timedelta(0)


def _instant(value: Any) -> datetime:
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, date):
        return datetime(value.year, value.month, value.day, tzinfo=UTC)
    moment = timing.as_instant(value)
    if moment is None:
        raise ValueError(f"expected a time such as 2026-12-01T09:00:00Z, got {shown(value)}")
    return moment


def _cron(value: Any) -> str:
    if not isinstance(value, str) or not croniter.is_valid(value):
        raise ValueError(f"expected a cron expression such as '0 9 * * MON', got {shown(value)}")
    return value


def _with_on(raw: dict[Any, Any]) -> dict[Any, Any]:
    """`on:` read by a YAML 1.1 loader (`yaml.safe_load`) is the key true; read it as `on`.

    `definitions.load_yaml` keeps `on` a string; other callers may not.
    """
    return {("on" if key is True else key): value for key, value in raw.items()}


def parse_entry(raw: Any, path: str, problems: Problems) -> Entry:
    if isinstance(raw, dict):
        raw = _with_on(raw)
    if not isinstance(raw, dict):
        problems.error(path, "expected one of: event, segment, schedule, anniversary")
        return Entry("event")
    if "event" in raw:
        match = parse_event_match(raw, path, problems, allowed={"key"})
        if "match" in raw:
            problems.error(
                join(path, "match"),
                "an entry event has no trigger to match against; filter it with where",
            )
        key = raw.get("key")
        if key is not None and not isinstance(key, str):
            problems.error(join(path, "key"), "expected a path such as properties.cart_id")
            key = None
        return Entry("event", event=match, key=key)
    if "schedule" in raw:
        return _parse_schedule(raw, path, problems)
    if "segment" in raw:
        problems.mapping(path, raw, {"segment", "on"})
        on = raw.get("on", "enter")
        if on not in ("enter", "exit"):
            problems.error(join(path, "on"), "expected enter or exit")
            on = "enter"
        return Entry(
            "segment", segment=_text(raw["segment"], join(path, "segment"), problems), on=on
        )
    if "anniversary" in raw:
        problems.mapping(path, raw, {"anniversary", "at"})
        trait = _text(raw["anniversary"], join(path, "anniversary"), problems)
        trait = trait.removeprefix("traits.")
        at = problems.convert(join(path, "at"), raw.get("at", "09:00"), timing.parse_time_of_day)
        return Entry("anniversary", trait=trait, local_time=at)
    problems.error(path, "expected one of: event, segment, schedule, anniversary")
    return Entry("event")


def _parse_schedule(raw: dict[str, Any], path: str, problems: Problems) -> Entry:
    problems.mapping(path, raw, {"schedule", "segment"})
    spec = problems.mapping(join(path, "schedule"), raw["schedule"], {"cron", "at", "local_time"})
    where = join(path, "schedule")
    cron = at = local = None
    if ("cron" in spec) == ("at" in spec):
        problems.error(where, "give either cron (repeating) or at (once)")
    if "cron" in spec:
        cron = problems.convert(join(where, "cron"), spec["cron"], _cron)
    if "at" in spec:
        at = problems.convert(join(where, "at"), spec["at"], _instant)
    if "local_time" in spec:
        local = problems.convert(
            join(where, "local_time"), spec["local_time"], timing.parse_time_of_day
        )
    segment = raw.get("segment")
    if segment is not None and not isinstance(segment, str):
        problems.error(join(path, "segment"), "expected a segment id")
        segment = None
    return Entry("schedule", segment=segment, cron=cron, at=at, local_time=local)


def _parse_goal(raw: Any, path: str, problems: Problems) -> Goal | None:
    match = parse_event_match(raw, path, problems, allowed={"within", "value"})
    if match is None:
        return None
    within = _duration(raw.get("within", "7d"), join(path, "within"), problems)
    value = raw.get("value", 0)
    if isinstance(value, str) and not value.replace(".", "", 1).isdigit():
        return Goal(match, within, 0.0, value.strip())
    try:
        if isinstance(value, bool):
            raise TypeError("a goal's value is not true or false")
        return Goal(match, within, float(value))
    except (TypeError, ValueError):
        problems.error(
            join(path, "value"), "expected a number or a property path such as properties.revenue"
        )
        return Goal(match, within)


def _parse_exit(raw: Any, path: str, problems: Problems) -> list[ExitRule]:
    if not isinstance(raw, list):
        problems.error(path, "expected a list of exit rules")
        return []
    rules = []
    for i, item in enumerate(raw):
        where = join(path, i)
        if isinstance(item, dict):
            item = _with_on(item)
        if isinstance(item, dict) and "segment" in item:
            problems.mapping(where, item, {"segment", "on"})
            if item.get("on", "exit") != "exit":
                problems.error(join(where, "on"), "a segment exit rule fires on exit")
            rules.append(ExitRule(segment=_text(item["segment"], join(where, "segment"), problems)))
        else:
            rules.append(ExitRule(event=parse_event_match(item, where, problems, allowed=set())))
    return rules


def _re_entry(raw: Any, path: str, problems: Problems) -> tuple[str, timedelta]:
    if raw in ("never", "always"):
        return str(raw), timedelta(0)
    if isinstance(raw, dict) and set(raw) == {"after"}:
        return "after", _duration(raw["after"], join(path, "after"), problems)
    problems.error(path, "expected never, always, or {after: 7d}")
    return "never", timedelta(0)


def _positive(raw: Any, path: str, problems: Problems, default: int | None) -> int | None:
    if raw is None:
        return default
    if isinstance(raw, bool) or not isinstance(raw, int) or raw < 1:
        problems.error(path, f"expected a whole number of at least 1, got {kind_of(raw)}")
        return default
    return int(raw)


def parse_journey(raw: Any, problems: Problems, path: str = "") -> Journey | None:
    """A journey from its YAML document."""
    if not isinstance(raw, dict):
        problems.error(path or "(file)", f"expected a mapping, got {kind_of(raw)}")
        return None
    problems.mapping(path, raw, _JOURNEY_FIELDS)
    journey_id = _text(raw.get("journey"), join(path, "journey"), problems)
    entry = parse_entry(raw.get("entry"), join(path, "entry"), problems)
    re_entry, cooldown = _re_entry(raw.get("re_entry", "never"), join(path, "re_entry"), problems)
    holdout = problems.convert(join(path, "holdout"), raw.get("holdout", "10%"), parse_share)
    topic = raw.get("topic")
    if topic is not None and not isinstance(topic, str):
        problems.error(join(path, "topic"), "expected a topic name")
        topic = None
    transactional = raw.get("transactional", False)
    if not isinstance(transactional, bool):
        problems.error(join(path, "transactional"), "expected true or false")
        transactional = False
    steps = _parse_steps(raw.get("steps"), join(path, "steps"), problems, topic, transactional)
    migrate = raw.get("migrate", {})
    if not isinstance(migrate, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in migrate.items()
    ):
        problems.error(join(path, "migrate"), "expected a mapping of old step id: new step id")
        migrate = {}
    journey = Journey(
        id=journey_id,
        steps=tuple(steps),
        entry=entry,
        name=problems.text(join(path, "name"), raw.get("name"), journey_id),
        description=problems.text(join(path, "description"), raw.get("description"), ""),
        topic=topic,
        transactional=transactional,
        re_entry=cast(Literal["never", "always", "after"], re_entry),
        cooldown=cooldown,
        max_concurrent=_positive(
            raw.get("max_concurrent"), join(path, "max_concurrent"), problems, 1
        )
        or 1,
        entry_cap=_positive(raw.get("entry_cap"), join(path, "entry_cap"), problems, None),
        exit_when=tuple(_parse_exit(raw.get("exit_when", []), join(path, "exit_when"), problems)),
        goal=_parse_goal(raw["goal"], join(path, "goal"), problems) if "goal" in raw else None,
        holdout=0.0 if transactional else (holdout if holdout is not None else 0.1),
        migrate=migrate,
    )
    check_graph(journey, join(path, "steps"), problems)
    for old, new in journey.migrate.items():
        if new not in {s.id for s in journey.steps} | {END}:
            problems.error(join(join(path, "migrate"), old), f"no step {new!r} in this version")
    return journey if journey_id else None


def _parse_steps(
    raw: Any, path: str, problems: Problems, topic: str | None, transactional: bool
) -> list[Step]:
    if not isinstance(raw, list) or not raw:
        problems.error(path, "expected a non-empty list of steps")
        return []
    if len(raw) > MAX_STEPS:
        problems.error(path, f"at most {MAX_STEPS} steps")
    steps: list[Step] = []
    for i, item in enumerate(raw):
        default_next = END
        if i + 1 < len(raw):
            following = raw[i + 1]
            following_id = (
                following.get("id", f"step-{i + 2}") if isinstance(following, dict) else END
            )
            default_next = following_id if isinstance(following_id, str) else END
        step = _parse_step(
            item, join(path, i), problems, f"step-{i + 1}", default_next, topic, transactional
        )
        if step is not None:
            steps.append(step)
    return steps


_COMMON = {"id", "next"}


def _parse_step(
    raw: Any,
    path: str,
    problems: Problems,
    default_id: str,
    default_next: str,
    topic: str | None,
    transactional: bool,
) -> Step | None:
    if not isinstance(raw, dict):
        problems.error(path, f"expected a step (a mapping), got {kind_of(raw)}")
        return None
    kinds = [k for k in STEP_KINDS if k in raw]
    if len(kinds) != 1:
        problems.error(path, f"a step needs exactly one of: {', '.join(STEP_KINDS)}")
        return None
    kind = kinds[0]
    step_id = raw.get("id", default_id)
    if not isinstance(step_id, str) or not step_id or step_id == END:
        problems.error(join(path, "id"), f"expected a step id other than {END!r}")
        step_id = default_id
    nxt = raw.get("next", default_next)
    if not isinstance(nxt, str):
        problems.error(join(path, "next"), "expected a step id or end")
        nxt = default_next
    base = Step(id=step_id, kind=cast(Any, kind), next=nxt)
    where = join(path, kind)
    value = raw[kind]
    extra = {
        "wait_for": {"on_timeout"},
        "branch": set(),
    }.get(kind, set())
    problems.mapping(path, raw, {kind, *_COMMON, *extra})
    step: Step = _STEP_PARSERS[kind](base, value, where, problems, raw, topic, transactional)
    return step


def _step_wait_until(base: Step, value: Any, where: str, problems: Problems, *_: Any) -> Step:
    """`wait_until: "10:00"`, or the same mapping as `wait: {until, weekdays}`."""
    if isinstance(value, dict):
        return _step_wait(base, value, where, problems)
    until = problems.convert(where, value, timing.parse_time_of_day)
    return Step(id=base.id, kind="wait_until", next=base.next, until=until)


def _step_wait(base: Step, value: Any, where: str, problems: Problems, *_: Any) -> Step:
    """`wait: 2d`, or `wait: {until: "10:00", weekdays: [mon, tue]}` (local time)."""
    if isinstance(value, dict):
        spec = problems.mapping(where, value, {"until", "weekdays"})
        until = problems.convert(join(where, "until"), spec.get("until"), timing.parse_time_of_day)
        days = spec.get("weekdays", [])
        weekdays: list[int] = []
        if not isinstance(days, list):
            problems.error(join(where, "weekdays"), "expected a list such as [mon, tue]")
            days = []
        for i, day in enumerate(days):
            if isinstance(day, str) and day.lower()[:3] in timing.WEEKDAYS:
                weekdays.append(timing.WEEKDAYS.index(day.lower()[:3]))
            else:
                problems.error(
                    join(join(where, "weekdays"), i),
                    f"expected one of {', '.join(timing.WEEKDAYS)}",
                )
        return Step(
            id=base.id, kind="wait_until", next=base.next, until=until, weekdays=tuple(weekdays)
        )
    return Step(id=base.id, kind="wait", next=base.next, duration=_duration(value, where, problems))


def _step_wait_for(
    base: Step, value: Any, where: str, problems: Problems, raw: dict[str, Any], *_: Any
) -> Step:
    match = parse_event_match(value, where, problems, allowed={"timeout"})
    timeout = _duration(
        value.get("timeout") if isinstance(value, dict) else None, join(where, "timeout"), problems
    )
    on_timeout = raw.get("on_timeout", base.next)
    if not isinstance(on_timeout, str):
        problems.error(join(where.rsplit(".", 1)[0], "on_timeout"), "expected a step id or end")
        on_timeout = base.next
    return Step(
        id=base.id,
        kind="wait_for",
        next=base.next,
        event=match,
        timeout=timeout,
        on_timeout=on_timeout,
    )


def _step_branch(base: Step, value: Any, where: str, problems: Problems, *_: Any) -> Step:
    if not isinstance(value, list) or not value:
        problems.error(
            where, "expected a list of {if: condition, next: step} and an optional {else: step}"
        )
        return base
    branches: list[tuple[Condition, str]] = []
    fallback = base.next
    for i, item in enumerate(value):
        path = join(where, i)
        if isinstance(item, dict) and "else" in item:
            problems.mapping(path, item, {"else"})
            fallback = _text(item["else"], join(path, "else"), problems) or fallback
            continue
        spec = problems.mapping(path, item, {"if", "next"})
        condition = parse_condition(spec.get("if"), join(path, "if"), problems, allow_trigger=True)
        branches.append((condition, _text(spec.get("next"), join(path, "next"), problems)))
    return Step(id=base.id, kind="branch", next=fallback, branches=tuple(branches))


def _step_split(base: Step, value: Any, where: str, problems: Problems, *_: Any) -> Step:
    if not isinstance(value, list) or len(value) < 2:
        problems.error(
            where, "expected at least two paths: [{weight: 50, next: a}, {weight: 50, next: b}]"
        )
        return Step(id=base.id, kind="split", next=base.next, weights=((1.0, base.next),))
    weights: list[tuple[float, str]] = []
    for i, item in enumerate(value):
        spec = problems.mapping(join(where, i), item, {"weight", "next"})
        weight = spec.get("weight")
        if isinstance(weight, bool) or not isinstance(weight, int | float) or weight <= 0:
            problems.error(join(join(where, i), "weight"), "expected a positive number")
            weight = 1
        weights.append(
            (float(weight), _text(spec.get("next"), join(join(where, i), "next"), problems))
        )
    return Step(id=base.id, kind="split", next=base.next, weights=tuple(weights))


_MESSAGE_FIELDS = {
    "channels",
    "content",
    "topic",
    "value",
    "expires",
    "urgent",
    "priority",
    "tier",
}


def _step_message(
    base: Step,
    value: Any,
    where: str,
    problems: Problems,
    raw: dict[str, Any],
    topic: str | None,
    transactional: bool,
) -> Step:
    spec = problems.mapping(where, value, _MESSAGE_FIELDS)
    channels = spec.get("channels", ["email"])
    if isinstance(channels, str):
        channels = [channels]
    if not isinstance(channels, list) or not channels:
        problems.error(
            join(where, "channels"), "expected a list of channels in order of preference"
        )
        channels = []
    for i, channel in enumerate(channels):
        if channel not in CHANNELS:
            problems.error(
                join(join(where, "channels"), i),
                f"unknown channel {shown(channel)}; expected one of {', '.join(CHANNELS)}",
            )
    content = _text(spec.get("content"), join(where, "content"), problems)
    message_value = spec.get("value")
    if message_value is not None and (
        isinstance(message_value, bool) or not isinstance(message_value, int | float)
    ):
        problems.error(join(where, "value"), "expected a number")
        message_value = None
    for flag in ("urgent",):
        if not isinstance(spec.get(flag, False), bool):
            problems.error(join(where, flag), "expected true or false")
    ranks = {}
    for rank in ("priority", "tier"):
        ranks[rank] = spec.get(rank, 0)
        if isinstance(ranks[rank], bool) or not isinstance(ranks[rank], int):
            problems.error(join(where, rank), "expected a whole number")
            ranks[rank] = 0
    step_topic = spec.get("topic", topic)
    message = Message(
        channels=tuple(c for c in channels if c in CHANNELS),
        content=content,
        topic=step_topic if isinstance(step_topic, str) else None,
        value=float(message_value) if message_value is not None else None,
        expires=_duration(spec.get("expires", "24h"), join(where, "expires"), problems),
        urgent=spec.get("urgent") is True,
        transactional=transactional,
        priority=ranks["priority"],
        tier=ranks["tier"],
    )
    return Step(id=base.id, kind="message", next=base.next, message=message)


def _step_update(base: Step, value: Any, where: str, problems: Problems, *_: Any) -> Step:
    spec = problems.mapping(where, value, {"traits"})
    traits = spec.get("traits")
    if not isinstance(traits, dict) or not traits:
        problems.error(join(where, "traits"), "expected a mapping of trait: value")
        traits = {}
    elif larger_than(traits, MAX_VALUES):
        problems.error(join(where, "traits"), f"expected at most {MAX_VALUES} values")
        traits = {}
    return Step(id=base.id, kind="update", next=base.next, traits=traits)


def _step_webhook(base: Step, value: Any, where: str, problems: Problems, *_: Any) -> Step:
    spec = problems.mapping(where, value, {"url", "method", "body"})
    url = spec.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        problems.error(join(where, "url"), "expected an http:// or https:// URL")
        url = ""
    method = spec.get("method", "POST")
    method = method.upper() if isinstance(method, str) else ""
    if method not in ("POST", "PUT", "PATCH", "GET"):
        problems.error(join(where, "method"), "expected POST, PUT, PATCH or GET")
    body = spec.get("body", {})
    if not isinstance(body, dict):
        problems.error(join(where, "body"), "expected a mapping")
        body = {}
    elif larger_than(body, MAX_VALUES):
        problems.error(join(where, "body"), f"expected at most {MAX_VALUES} values")
        body = {}
    return Step(id=base.id, kind="webhook", next=base.next, url=url, method=method, body=body)


def _step_start(base: Step, value: Any, where: str, problems: Problems, *_: Any) -> Step:
    return Step(
        id=base.id, kind="start_journey", next=base.next, journey=_text(value, where, problems)
    )


def _step_exit(base: Step, value: Any, where: str, problems: Problems, *_: Any) -> Step:
    if value is not True:
        problems.error(where, "write exit: true")
    return Step(id=base.id, kind="exit", next=END)


_STEP_PARSERS: dict[str, Any] = {
    "wait": _step_wait,
    "wait_until": _step_wait_until,
    "wait_for": _step_wait_for,
    "branch": _step_branch,
    "split": _step_split,
    "message": _step_message,
    "update": _step_update,
    "webhook": _step_webhook,
    "start_journey": _step_start,
    "exit": _step_exit,
}


def check_graph(journey: Journey, path: str, problems: Problems) -> None:
    """Unique ids, targets that exist, no loop without a wait, no unreachable step."""
    index: dict[str, int] = {}
    ids = {s.id for s in journey.steps}
    for i, step in enumerate(journey.steps):
        if step.id in index:
            problems.error(join(join(path, i), "id"), f"duplicate step id {step.id!r}")
        index.setdefault(step.id, i)
        for where, target in _target_paths(step):
            if target and target != END and target not in ids:
                problems.error(join(join(path, i), where), f"leads to unknown step {target!r}")
    looped = _loop_without_wait(journey)
    if looped is not None:
        problems.error(
            join(path, index[looped]),
            f"a loop through step {looped!r} has no wait longer than 0s in it",
        )
    reachable = _reachable(journey, index)
    for i, step in enumerate(journey.steps):
        if step.id not in reachable:
            problems.warn(join(path, i), f"step {step.id!r} can never be reached")


def _target_paths(step: Step) -> list[tuple[str, str]]:
    """Where in a step each of its targets is written."""
    if step.kind == "branch":
        # A branch's fallback comes from `else` or `next`; the message names the step.
        return [("branch", target) for target in step.targets]
    if step.kind == "split":
        return [(f"split[{i}].next", target) for i, (_, target) in enumerate(step.weights)]
    if step.kind == "wait_for":
        return [("next", step.next), ("on_timeout", step.on_timeout)]
    return [("next", target) for target in step.targets]


def _holds_time(step: Step) -> bool:
    """Does the step make time pass? A zero wait wakes at the instant it starts."""
    if step.kind == "wait":
        return step.duration > timedelta(0)
    if step.kind == "wait_for":
        return step.timeout > timedelta(0)
    return step.kind == "wait_until"


def _loop_without_wait(journey: Journey) -> str | None:
    """A step on a cycle without time passing (it would run forever at one instant)."""
    cycle = find_cycle({s.id: list(s.targets) for s in journey.steps if not _holds_time(s)})
    return cycle[-1] if cycle else None


def _reachable(journey: Journey, index: dict[str, int]) -> set[str]:
    reachable: set[str] = set()
    frontier = [journey.first_step] if journey.steps else []
    while frontier:
        node = frontier.pop()
        if node in reachable or node not in index:
            continue
        reachable.add(node)
        frontier.extend(journey.steps[index[node]].targets)
    return reachable
