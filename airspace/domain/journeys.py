"""Journeys: versioned flows of steps, and the state machine that moves people through them.

A journey has an entry (an event, entering or leaving a segment, a schedule,
or a date trait's anniversary), re-entry rules, exit criteria, a goal and a
holdout share; its steps form a directed graph (branches may join, `next` may
loop back through a wait). An `Enrollment` is one person's passage through one
version. The functions here are pure: given the journey, the enrollment, the
facts and `now`, they return the new enrollment and the effects (`Propose`,
`UpdateTraits`, `CallWebhook`, `StartJourney`) for the engine to carry out. A
wait is just `wake_at` on the enrollment; the engine keeps one timer row for it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, time, timedelta
from typing import Any, Literal, get_args

from airspace.domain import segments, timing
from airspace.domain.segments import Condition, Facts, Filter, lookup

END = "end"
StepKind = Literal[
    "wait",
    "wait_until",
    "wait_for",
    "branch",
    "split",
    "message",
    "update",
    "webhook",
    "start_journey",
    "exit",
]
STEP_KINDS: tuple[str, ...] = get_args(StepKind)
Layer = Literal["treated", "journey_holdout", "global_control"]
Status = Literal["active", "completed", "exited"]
MAX_STEPS_PER_ADVANCE = 500


def bucket(*parts: str) -> float:
    """A sticky number in [0, 1) from the parts (profile id and a salt)."""
    digest = hashlib.sha256("\x1f".join(parts).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


# --- definitions -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class EventMatch:
    """An event name, property filters, and equalities with the trigger (`match`)."""

    name: str
    where: tuple[Filter, ...] = ()
    # (event path, `trigger.<path>` or a literal value)
    match: tuple[tuple[str, Any], ...] = ()

    def matches(
        self, name: str | None, payload: Mapping[str, Any], trigger: Mapping[str, Any]
    ) -> bool:
        """Does this event (name, payload) match, given the enrollment's trigger?"""
        if name != self.name or not all(f.holds(payload) for f in self.where):
            return False
        for path, expected in self.match:
            wanted = (
                lookup(trigger, expected.removeprefix("trigger."))
                if isinstance(expected, str) and expected.startswith("trigger.")
                else expected
            )
            actual = lookup(payload, path)
            if actual is None or not segments.Comparison("eq", wanted).holds(actual):
                return False
        return True


@dataclass(frozen=True, slots=True)
class Entry:
    """How people enter: one of event, segment, schedule, anniversary."""

    kind: Literal["event", "segment", "schedule", "anniversary"]
    event: EventMatch | None = None
    key: str | None = None  # one enrollment per value of this trigger path
    segment: str | None = None
    on: Literal["enter", "exit"] = "enter"
    cron: str | None = None
    at: datetime | None = None
    local_time: time | None = None  # schedule at a local time / anniversary at
    trait: str | None = None


@dataclass(frozen=True, slots=True)
class ExitRule:
    """An event, or leaving a segment, that ends the enrollment at once."""

    event: EventMatch | None = None
    segment: str | None = None


@dataclass(frozen=True, slots=True)
class Goal:
    """A conversion: the event within the window, worth a fixed value or a property's."""

    event: EventMatch
    within: timedelta
    value: float = 0.0
    value_path: str | None = None

    def value_of(self, payload: Mapping[str, Any]) -> float:
        if self.value_path is None:
            return self.value
        found = lookup(payload, self.value_path)
        if isinstance(found, int | float) and not isinstance(found, bool):
            return float(found)
        if isinstance(found, str):
            try:
                return float(found)
            except ValueError:
                return self.value
        return self.value


@dataclass(frozen=True, slots=True)
class Message:
    """What a message step proposes to the controller."""

    channels: tuple[str, ...]
    content: str
    topic: str | None = None
    value: float | None = None
    expires: timedelta = timedelta(hours=24)
    urgent: bool = False
    transactional: bool = False
    priority: int = 0  # the rank under the static-priority policy
    tier: int = 0  # a business override: a higher tier always wins under the airspace policy


@dataclass(frozen=True, slots=True)
class Step:
    """One node of the journey graph; which fields are set depends on `kind`."""

    id: str
    kind: StepKind
    next: str = END
    duration: timedelta = timedelta(0)
    until: time | None = None
    weekdays: tuple[int, ...] = ()
    event: EventMatch | None = None
    timeout: timedelta = timedelta(0)
    on_timeout: str = END
    branches: tuple[tuple[Condition, str], ...] = ()
    weights: tuple[tuple[float, str], ...] = ()
    message: Message | None = None
    traits: Mapping[str, Any] = field(default_factory=dict)
    url: str = ""
    method: str = "POST"
    body: Mapping[str, Any] = field(default_factory=dict)
    journey: str = ""

    @property
    def is_wait(self) -> bool:
        return self.kind in ("wait", "wait_until", "wait_for")

    @property
    def targets(self) -> tuple[str, ...]:
        """Every step this one can lead to."""
        if self.kind == "exit":
            return ()
        if self.kind == "branch":
            return (*(target for _, target in self.branches), self.next)
        if self.kind == "split":
            return tuple(target for _, target in self.weights)
        if self.kind == "wait_for":
            return (self.next, self.on_timeout)
        return (self.next,)


@dataclass(frozen=True, slots=True)
class Journey:
    """One version of a journey."""

    id: str
    steps: tuple[Step, ...]
    entry: Entry
    name: str = ""
    description: str = ""
    version: int = 1
    topic: str | None = None
    transactional: bool = False
    re_entry: Literal["never", "always", "after"] = "never"
    cooldown: timedelta = timedelta(0)
    max_concurrent: int = 1
    entry_cap: int | None = None
    exit_when: tuple[ExitRule, ...] = ()
    goal: Goal | None = None
    holdout: float = 0.10
    migrate: Mapping[str, str] = field(default_factory=dict)

    def step(self, step_id: str) -> Step:
        for step in self.steps:
            if step.id == step_id:
                return step
        raise KeyError(step_id)

    @property
    def first_step(self) -> str:
        return self.steps[0].id if self.steps else END


# --- enrollments and effects -------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Enrollment:
    """One person's passage through one journey version."""

    id: str
    journey_id: str
    version: int
    profile_id: str
    step_id: str
    entered_at: datetime
    layer: Layer = "treated"
    key: str = ""
    status: Status = "active"
    wake_at: datetime | None = None
    context: Mapping[str, Any] = field(default_factory=dict)
    ended_at: datetime | None = None
    exit_reason: str | None = None
    converted_at: datetime | None = None
    conversion_value: float | None = None

    @property
    def active(self) -> bool:
        return self.status == "active"


@dataclass(frozen=True, slots=True)
class Propose:
    """Hand a message to the controller (or record it as held out)."""

    enrollment_id: str
    journey_id: str
    step_id: str
    message: Message
    layer: Layer
    expires_at: datetime
    context: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class UpdateTraits:
    """Set traits on the person's profile."""

    traits: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class CallWebhook:
    """Call a URL with the person and the trigger."""

    enrollment_id: str
    step_id: str
    url: str
    method: str
    body: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class StartJourney:
    """Hand the person to another journey."""

    journey_id: str
    context: Mapping[str, Any]


@dataclass(frozen=True, slots=True)
class Withdraw:
    """Withdraw the enrollment's proposed messages that are not yet sent."""

    enrollment_id: str
    reason: str


Effect = Propose | UpdateTraits | CallWebhook | StartJourney | Withdraw


@dataclass(frozen=True, slots=True)
class Outcome:
    """The enrollment after a transition and what to do about it."""

    enrollment: Enrollment
    effects: tuple[Effect, ...] = ()


# --- entry rules -------------------------------------------------------------------------


def assign_layer(
    profile_id: str, journey: Journey, global_control: float, *, salt: str = "airspace"
) -> Layer:
    """Which holdout layer a person is in for this journey (sticky)."""
    if not journey.transactional and bucket(profile_id, salt, "global-control") < global_control:
        return "global_control"
    if (
        not journey.transactional
        and bucket(profile_id, salt, "journey", journey.id) < journey.holdout
    ):
        return "journey_holdout"
    return "treated"


def refusal(
    journey: Journey, previous: Sequence[Enrollment], key: str, now: datetime, entered_total: int
) -> str | None:
    """Why this person may not enter now, or None. `previous`: their enrollments in it."""
    if journey.entry_cap is not None and entered_total >= journey.entry_cap:
        return f"the journey's entry cap of {journey.entry_cap} is reached"
    same_key = [e for e in previous if e.key == key]
    if sum(1 for e in previous if e.active) >= journey.max_concurrent:
        return f"already in it {journey.max_concurrent} time(s) at once"
    if key and any(e.active for e in same_key):
        return "already in it for this key"
    if same_key and journey.re_entry == "never":
        return "re-entry is never allowed"
    if same_key and journey.re_entry == "after":
        last = max(e.entered_at for e in same_key)
        if now < last + journey.cooldown:
            return f"re-entry is allowed from {(last + journey.cooldown).isoformat()}"
    return None


def entry_key(journey: Journey, trigger: Mapping[str, Any]) -> str:
    """The value that makes enrollments distinct (e.g. one per cart id)."""
    if journey.entry.key is None:
        return ""
    found = lookup(trigger, journey.entry.key)
    return "" if found is None else str(found)[:200]


def enroll(
    journey: Journey,
    enrollment_id: str,
    profile_id: str,
    trigger: Mapping[str, Any],
    layer: Layer,
    facts: Facts,
) -> Outcome:
    """A new enrollment at the first step, advanced until it waits or ends."""
    enrollment = Enrollment(
        id=enrollment_id,
        journey_id=journey.id,
        version=journey.version,
        profile_id=profile_id,
        step_id=journey.first_step,
        entered_at=facts.now,
        layer=layer,
        key=entry_key(journey, trigger),
        context=dict(trigger),
    )
    return advance(journey, enrollment, facts)


# --- the state machine -------------------------------------------------------------------


def _end(enrollment: Enrollment, now: datetime, status: Status, reason: str | None) -> Enrollment:
    return replace(
        enrollment, status=status, ended_at=now, exit_reason=reason, wake_at=None, step_id=END
    )


def advance(journey: Journey, enrollment: Enrollment, facts: Facts) -> Outcome:
    """Run steps from the current one until a wait or the end."""
    effects: list[Effect] = []
    now = facts.now
    current = enrollment
    for _ in range(MAX_STEPS_PER_ADVANCE):
        if not current.active:
            return Outcome(current, tuple(effects))
        if current.step_id == END:
            return Outcome(_end(current, now, "completed", None), tuple(effects))
        step = journey.step(current.step_id)
        waiting = _wait_until(step, facts)
        if waiting is not None:
            return Outcome(replace(current, wake_at=waiting), tuple(effects))
        target = _run(step, journey, current, facts, effects)
        if target is None:
            return Outcome(_end(current, now, "exited", "exit step"), tuple(effects))
        current = replace(current, step_id=target, wake_at=None)
    # Validation refuses loops without a wait; this guards a loop it could not see.
    reason = f"stopped after {MAX_STEPS_PER_ADVANCE} steps without a wait"
    return Outcome(_end(current, now, "exited", reason), tuple(effects))


def _wait_until(step: Step, facts: Facts) -> datetime | None:
    if step.kind == "wait":
        return facts.now + step.duration
    if step.kind == "wait_for":
        return facts.now + step.timeout
    if step.kind == "wait_until" and step.until is not None:
        return timing.next_local_time(facts.now, step.until, facts.tz, step.weekdays)
    return None


def _run(
    step: Step, journey: Journey, enrollment: Enrollment, facts: Facts, effects: list[Effect]
) -> str | None:
    """Carry out one non-waiting step; return the next step id (None: exit)."""
    if step.kind == "exit":
        return None
    if step.kind == "message" and step.message is not None:
        effects.append(
            Propose(
                enrollment.id,
                journey.id,
                step.id,
                step.message,
                enrollment.layer,
                facts.now + step.message.expires,
                enrollment.context,
            )
        )
    elif step.kind == "update":
        effects.append(UpdateTraits(step.traits))
    elif step.kind == "webhook":
        effects.append(CallWebhook(enrollment.id, step.id, step.url, step.method, step.body))
    elif step.kind == "start_journey":
        effects.append(StartJourney(step.journey, enrollment.context))
    elif step.kind == "branch":
        trigger_facts = replace(facts, trigger=enrollment.context)
        for condition, target in step.branches:
            if segments.evaluate(condition, trigger_facts):
                return target
    elif step.kind == "split":
        return _split(step, enrollment)
    return step.next


def _split(step: Step, enrollment: Enrollment) -> str:
    """A sticky random split: the same person always takes the same path."""
    total = sum(weight for weight, _ in step.weights)
    point = bucket(enrollment.profile_id, enrollment.journey_id, step.id) * total
    for weight, target in step.weights:
        if point < weight:
            return target
        point -= weight
    return step.weights[-1][1]


def on_timer(
    journey: Journey, enrollment: Enrollment, due: datetime, facts: Facts
) -> Outcome | None:
    """A wake-up; None when it is stale (the enrollment moved on or its wait changed)."""
    if not enrollment.active or enrollment.wake_at != due:
        return None
    if enrollment.step_id == END:
        target = END
    else:
        step = journey.step(enrollment.step_id)
        if step.kind == "wait_for":
            target = step.on_timeout
        elif step.is_wait:
            target = step.next
        else:
            # `migrate` moved a waiting enrollment onto this step: it runs now, not skipped.
            target = step.id
    return advance(journey, replace(enrollment, step_id=target, wake_at=None), facts)


@dataclass(frozen=True, slots=True)
class Happening:
    """An event as journeys see it."""

    name: str | None
    timestamp: datetime
    payload: Mapping[str, Any]


def on_event(
    journey: Journey, enrollment: Enrollment, event: Happening, facts: Facts
) -> Outcome | None:
    """Goal, exit and wait-for reactions to one of the person's events; None: nothing."""
    effects: list[Effect] = []
    current = enrollment
    goal = journey.goal
    if (
        goal is not None
        and current.converted_at is None
        and _goal_start(current) <= event.timestamp <= current.entered_at + goal.within
        and goal.event.matches(event.name, event.payload, current.context)
    ):
        current = replace(
            current, converted_at=event.timestamp, conversion_value=goal.value_of(event.payload)
        )
    if not current.active:
        return Outcome(current) if current is not enrollment else None
    for rule in journey.exit_when:
        if rule.event is not None and rule.event.matches(
            event.name, event.payload, current.context
        ):
            return exit_now(current, f"exit event {event.name}", facts.now)
    step = journey.step(current.step_id) if current.step_id != END else None
    if (
        step is not None
        and step.kind == "wait_for"
        and step.event is not None
        and step.event.matches(event.name, event.payload, current.context)
    ):
        outcome = advance(journey, replace(current, step_id=step.next, wake_at=None), facts)
        return Outcome(outcome.enrollment, (*effects, *outcome.effects))
    return Outcome(current) if current is not enrollment else None


def _goal_start(enrollment: Enrollment) -> datetime:
    """A goal counts from the trigger's own time: an order stamped after the abandoned cart
    but applied in the same batch as it (so before the enrollment existed) converts."""
    stamp = enrollment.context.get("timestamp")
    if isinstance(stamp, str):
        trigger_time = timing.as_instant(stamp)
        if trigger_time is not None:
            return min(trigger_time, enrollment.entered_at)
    return enrollment.entered_at


def exit_now(enrollment: Enrollment, reason: str, now: datetime) -> Outcome:
    """End the enrollment wherever it is and withdraw its unsent messages."""
    return Outcome(_end(enrollment, now, "exited", reason), (Withdraw(enrollment.id, reason),))


def on_segment_exit(
    journey: Journey, enrollment: Enrollment, segment_id: str, now: datetime
) -> Outcome | None:
    """Leaving a segment named in `exit_when` ends the enrollment at once."""
    if enrollment.active and any(rule.segment == segment_id for rule in journey.exit_when):
        return exit_now(enrollment, f"left segment {segment_id}", now)
    return None


def migrate(journey: Journey, enrollment: Enrollment) -> Enrollment | None:
    """Move an active enrollment of an older version onto this one (if its step is mapped).

    It keeps its wake-up: when that comes, a wait it was moved onto ends as usual,
    and any other step (or `end`) runs then.
    """
    if (
        not enrollment.active
        or enrollment.journey_id != journey.id
        or enrollment.version >= journey.version
    ):
        return None
    target = journey.migrate.get(enrollment.step_id)
    if target is None:
        return None
    return replace(enrollment, version=journey.version, step_id=target)
