"""One person's reaction to what just happened: segments, enrollments, proposals.

`react(workspace, state, inputs, now, new_id)` takes the person's state (profile,
memberships, enrollments, event facts) and the inputs of one transaction
(their new events, due timers, scheduled enrollments) and returns a
`Reaction`: segment entries and exits, changed and new enrollments, proposed
messages, withdrawals, trait updates, webhook calls and the timers to keep.
The engine loads the state, calls this, and writes the reaction in the same
transaction as the events that caused it.

Order within one call: each event first reaches the person's enrollments
(goal, exit rule, wait-for), then starts event-triggered journeys; after all
events the affected segments are evaluated once, and entries and exits start
or end journeys; then due timers fire. Traits that journeys set (`update`
steps) schedule a re-check of the segments on traits at `now`: the engine
loaded event facts only for the segments the inputs affect, so evaluating
more here could read missing facts as "no events".
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal

from airspace.domain import consent as consent_rules
from airspace.domain import journeys as flow
from airspace.domain import segments as seg
from airspace.domain import timing
from airspace.domain.consent import CHANNELS, CONSENT_EVENT
from airspace.domain.definitions import Workspace
from airspace.domain.journeys import (
    CallWebhook,
    Enrollment,
    Happening,
    Journey,
    Outcome,
    Propose,
    StartJourney,
    UpdateTraits,
    Withdraw,
)
from airspace.domain.profiles import Profile

MAX_HANDOVERS = 5


@dataclass(frozen=True, slots=True)
class EventInput:
    """One of the person's events, as applied in this transaction."""

    happening: Happening
    type: str = "track"


@dataclass(frozen=True, slots=True)
class TimerInput:
    """A due timer: an enrollment's wake-up, a segment re-check, an anniversary,
    or a scheduled enrollment."""

    kind: Literal["enrollment", "segment", "anniversary", "enroll"]
    ref: str
    due: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)


Input = EventInput | TimerInput


@dataclass(frozen=True)
class PersonState:
    """Everything about one person the reaction may use."""

    profile: Profile
    segments: Mapping[str, datetime] = field(default_factory=dict)
    enrollments: Sequence[Enrollment] = ()
    events: Mapping[str, Sequence[datetime]] = field(default_factory=dict)
    addresses: Mapping[str, str] = field(default_factory=dict)
    versions: Mapping[tuple[str, int], Journey] = field(default_factory=dict)
    entered_totals: Mapping[str, int] = field(default_factory=dict)


@dataclass
class Reaction:
    """What the engine writes for one person."""

    segments: dict[str, datetime]
    entered: list[tuple[str, datetime]] = field(default_factory=list)
    exited: list[tuple[str, datetime]] = field(default_factory=list)
    enrollments: dict[str, Enrollment] = field(default_factory=dict)
    proposals: list[Propose] = field(default_factory=list)
    withdrawals: list[Withdraw] = field(default_factory=list)
    traits: dict[str, Any] = field(default_factory=dict)
    webhooks: list[CallWebhook] = field(default_factory=list)
    segment_timers: dict[str, datetime | None] = field(default_factory=dict)
    anniversary_timers: dict[str, datetime | None] = field(default_factory=dict)
    entries: dict[str, int] = field(default_factory=dict)
    refusals: list[tuple[str, str]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Stimulus:
    """What kinds of change a set of inputs brings, to find the segments it can affect."""

    names: frozenset[str] = frozenset()
    traits: bool = False
    consent: bool = False
    any_event: bool = False
    fired: frozenset[str] = frozenset()
    addresses: bool = False


def stimulus_of(inputs: Iterable[Input]) -> Stimulus:
    """The stimulus of these inputs."""
    names: set[str] = set()
    traits = consent = any_event = addresses = False
    fired: set[str] = set()
    for item in inputs:
        if isinstance(item, TimerInput):
            if item.kind == "segment":
                fired.add(item.ref)
            continue
        any_event = True
        payload = item.happening.payload
        if item.happening.name:
            names.add(item.happening.name)
        raw_context = payload.get("context")
        context: Mapping[str, Any] = raw_context if isinstance(raw_context, dict) else {}
        traits = traits or item.type == "identify" or bool(context.get("traits"))
        consent = consent or item.happening.name == CONSENT_EVENT or bool(context.get("consent"))
        # Email and phone come with traits; a push token with the device of any call.
        device = context.get("device")
        addresses = addresses or traits or (isinstance(device, dict) and bool(device.get("token")))
    return Stimulus(frozenset(names), traits, consent, any_event, frozenset(fired), addresses)


def affected_segments(workspace: Workspace, stimulus: Stimulus) -> list[str]:
    """Segments whose answer the stimulus may change, in dependency order."""
    hit: set[str] = set(stimulus.fired) & set(workspace.segments)
    for sid, segment in workspace.segments.items():
        deps = segment.dependencies
        if (
            deps.events & stimulus.names
            or (deps.traits and stimulus.traits)
            or (deps.consent and stimulus.consent)
            or (deps.computed and stimulus.any_event)
            or (deps.addresses and stimulus.addresses)
        ):
            hit.add(sid)
    ordered = workspace.segment_order()
    for sid in ordered:  # a segment that refers to a hit segment is hit too
        if workspace.segments[sid].dependencies.segments & hit:
            hit.add(sid)
    return [sid for sid in ordered if sid in hit]


def conditions_needing_events(
    workspace: Workspace, segment_ids: Iterable[str]
) -> list[seg.EventCondition]:
    """Event conditions whose facts the engine must load: the segments' and every branch's."""
    found: dict[str, seg.EventCondition] = {}
    for sid in segment_ids:
        for event_condition in workspace.segments[sid].dependencies.event_conditions:
            found.setdefault(event_condition.fingerprint, event_condition)
    for journey in workspace.journeys.values():
        for step in journey.steps:
            for condition, _ in step.branches:
                for leaf in seg.leaves(condition):
                    if isinstance(leaf, seg.EventCondition):
                        found.setdefault(leaf.fingerprint, leaf)
    return list(found.values())


def channel_access(
    profile: Profile, addresses: Mapping[str, str], workspace: Workspace
) -> tuple[frozenset[str], frozenset[str]]:
    """(granted, reachable): consent keys granted ("email", "email:news"), channels reachable."""
    granted: set[str] = set()
    for channel in CHANNELS:
        settings = workspace.settings.channels.get(channel)
        default = settings.consent_default if settings else "opted_in"
        if consent_rules.is_granted(profile.consent, channel, channel_default=default):
            granted.add(channel)
            for topic in workspace.topics.values():
                if consent_rules.is_granted(
                    profile.consent, channel, topic, channel_default=default
                ):
                    granted.add(f"{channel}:{topic.name}")
    reachable = frozenset(c for c in granted if ":" not in c and addresses.get(c))
    return frozenset(granted), reachable


class _Run:
    """The working state of one `react` call."""

    def __init__(
        self,
        workspace: Workspace,
        state: PersonState,
        now: datetime,
        new_id: Callable[[], str],
    ) -> None:
        self.ws = workspace
        self.state = state
        self.now = now
        self.new_id = new_id
        self.profile = state.profile
        self.enrollments: dict[str, Enrollment] = {e.id: e for e in state.enrollments}
        self.result = Reaction(segments=dict(state.segments))
        self.tz = timing.timezone_of(self.profile, workspace.settings.timezone)
        self._access: tuple[frozenset[str], frozenset[str]] | None = None

    def facts(self, trigger: Mapping[str, Any] | None = None) -> seg.Facts:
        # Consent and addresses do not change within one reaction: work them out once.
        if self._access is None:
            self._access = channel_access(self.profile, self.state.addresses, self.ws)
        granted, reachable = self._access
        return seg.Facts(
            profile=self.profile,
            now=self.now,
            tz=self.tz,
            events=self.state.events,
            segments=frozenset(self.result.segments),
            reachable=reachable,
            granted=granted,
            trigger=trigger or {},
        )

    def journey_of(self, enrollment: Enrollment) -> Journey | None:
        current = self.ws.journeys.get(enrollment.journey_id)
        if current is not None and current.version == enrollment.version:
            return current
        return self.state.versions.get((enrollment.journey_id, enrollment.version))

    # --- outcomes and effects

    def record(self, outcome: Outcome, depth: int = 0) -> None:
        enrollment = outcome.enrollment
        self.enrollments[enrollment.id] = enrollment
        self.result.enrollments[enrollment.id] = enrollment
        for effect in outcome.effects:
            if isinstance(effect, Propose):
                self.result.proposals.append(effect)
            elif isinstance(effect, Withdraw):
                self.result.withdrawals.append(effect)
            elif isinstance(effect, UpdateTraits):
                self.result.traits.update(effect.traits)
                self.profile = replace(
                    self.profile, traits={**self.profile.traits, **effect.traits}
                )
            elif isinstance(effect, CallWebhook):
                self.result.webhooks.append(effect)
            elif isinstance(effect, StartJourney):
                target = self.ws.journeys.get(effect.journey_id)
                if target is not None and depth < MAX_HANDOVERS:
                    self.try_enroll(target, effect.context, depth + 1)

    def try_enroll(self, journey: Journey, trigger: Mapping[str, Any], depth: int = 0) -> None:
        if journey.id in self.ws.paused:
            self.result.refusals.append((journey.id, "the journey is paused"))
            return
        key = flow.entry_key(journey, trigger)
        previous = [e for e in self.enrollments.values() if e.journey_id == journey.id]
        total = self.state.entered_totals.get(journey.id, 0) + self.result.entries.get(
            journey.id, 0
        )
        reason = flow.refusal(journey, previous, key, self.now, total)
        if reason is not None:
            self.result.refusals.append((journey.id, reason))
            return
        layer = flow.assign_layer(self.profile.profile_id, journey, self.ws.settings.global_control)
        outcome = flow.enroll(
            journey, self.new_id(), self.profile.profile_id, trigger, layer, self.facts(trigger)
        )
        self.result.entries[journey.id] = self.result.entries.get(journey.id, 0) + 1
        self.record(outcome, depth)

    # --- inputs

    def on_event(self, item: EventInput) -> None:
        event = item.happening
        for enrollment in list(self.enrollments.values()):
            journey = self.journey_of(enrollment)
            if journey is None:
                continue
            outcome = flow.on_event(journey, enrollment, event, self.facts(enrollment.context))
            if outcome is not None:
                self.record(outcome)
        trigger = {"event": event.name, **event.payload}
        for journey in self.ws.journeys.values():
            entry = journey.entry
            if (
                entry.kind == "event"
                and entry.event
                and entry.event.matches(event.name, event.payload, {})
            ):
                self.try_enroll(journey, trigger)

    def on_timer(self, item: TimerInput) -> None:
        if item.kind == "enrollment":
            enrollment = self.enrollments.get(item.ref)
            journey = self.journey_of(enrollment) if enrollment else None
            if enrollment is None or journey is None:
                return
            outcome = flow.on_timer(journey, enrollment, item.due, self.facts(enrollment.context))
            if outcome is not None:
                self.record(outcome)
        elif item.kind in ("anniversary", "enroll"):
            journey = self.ws.journeys.get(item.ref)
            if journey is not None:
                self.try_enroll(journey, {"event": f"journey {item.kind}", **item.payload})

    def evaluate_segments(self, segment_ids: Sequence[str]) -> None:
        for sid in segment_ids:
            segment = self.ws.segments[sid]
            facts = self.facts()
            now_in = seg.evaluate(segment.condition, facts)
            was_in = sid in self.result.segments
            self.result.segment_timers[sid] = seg.next_change(segment.condition, facts)
            if now_in and not was_in:
                self.result.segments[sid] = self.now
                self.result.entered.append((sid, self.now))
                self.segment_moved(sid, "enter")
            elif was_in and not now_in:
                del self.result.segments[sid]
                self.result.exited.append((sid, self.now))
                self.segment_moved(sid, "exit")

    def segment_moved(self, sid: str, direction: Literal["enter", "exit"]) -> None:
        if direction == "exit":
            for enrollment in list(self.enrollments.values()):
                journey = self.journey_of(enrollment)
                if journey is not None:
                    outcome = flow.on_segment_exit(journey, enrollment, sid, self.now)
                    if outcome is not None:
                        self.record(outcome)
        for journey in self.ws.journeys.values():
            entry = journey.entry
            if entry.kind == "segment" and entry.segment == sid and entry.on == direction:
                name = "Segment Entered" if direction == "enter" else "Segment Exited"
                self.try_enroll(journey, {"event": name, "segment": sid})

    def anniversaries(self) -> None:
        for journey in self.ws.journeys.values():
            entry = journey.entry
            if entry.kind != "anniversary" or not entry.trait or entry.local_time is None:
                continue
            born = timing.as_date(seg.lookup(self.profile.traits, entry.trait))
            self.result.anniversary_timers[journey.id] = (
                timing.next_anniversary(born, self.now, entry.local_time, self.tz) if born else None
            )


def react(
    workspace: Workspace,
    state: PersonState,
    inputs: Sequence[Input],
    now: datetime,
    new_id: Callable[[], str],
) -> Reaction:
    """The person's reaction to `inputs` at `now` (see the module docstring for the order)."""
    run = _Run(workspace, state, now, new_id)
    for item in inputs:
        if isinstance(item, EventInput):
            run.on_event(item)
    stimulus = stimulus_of(inputs)
    run.evaluate_segments(affected_segments(workspace, stimulus))
    for item in inputs:
        if isinstance(item, TimerInput):
            run.on_timer(item)
    fired_anniversary = any(isinstance(i, TimerInput) and i.kind == "anniversary" for i in inputs)
    if stimulus.traits or run.result.traits or fired_anniversary:
        run.anniversaries()
    if run.result.traits:
        # Journeys changed traits. Segments on traits are re-checked at once, in a
        # transaction of their own: this one may lack the event facts they need.
        for sid in affected_segments(workspace, Stimulus(traits=True)):
            run.result.segment_timers[sid] = now
    return run.result
