"""Workspace settings (`settings.yaml`): the default time zone, the controller, the channels.

The controller section says how candidates compete: the decision window, the
frequency caps, quiet hours, mutual-exclusion groups, the holdout shares, the
policy that ranks candidates and the knobs of its score (fatigue cost, the
strength of pooling, the strata people are grouped in to learn uplift).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import time, timedelta
from typing import Any, Literal, TypeVar

from airspace.domain import timing
from airspace.domain.consent import CHANNELS
from airspace.domain.journey_parser import parse_share
from airspace.domain.problems import Problems, join, kind_of

PolicyName = Literal["airspace", "first_come", "priority", "random"]
POLICIES: tuple[PolicyName, ...] = ("airspace", "first_come", "priority", "random")


# How far a Thompson draw reaches, in posterior standard deviations (see concepts.md).
EXPLORATION = 1.0


@dataclass(frozen=True, slots=True)
class Cap:
    """At most `max` messages in the scope per rolling window."""

    scope: str  # marketing | channel:sms | topic:promotions | journey:abandoned-cart
    max: int
    per: timedelta


@dataclass(frozen=True, slots=True)
class Exclusion:
    """Mutually exclusive journeys: after a message from one, the others wait `per`."""

    name: str
    journeys: frozenset[str]
    per: timedelta


MAX_STRATUM_NAME = 40  # a stratum and a substratum, joined by '/', fit the store's 100


@dataclass(frozen=True, slots=True)
class Stratum:
    """People like this one: the members of a segment (the first stratum that matches wins)."""

    name: str
    segment: str


@dataclass(frozen=True, slots=True)
class ChannelSettings:
    """What a channel costs per message and whether consent is assumed until said."""

    cost: float = 0.0
    consent_default: Literal["opted_in", "opted_out"] = "opted_in"


def _default_channels() -> dict[str, ChannelSettings]:
    return {
        "email": ChannelSettings(0.001),
        "sms": ChannelSettings(0.03, "opted_out"),
        "push": ChannelSettings(0.0005),
        "webhook": ChannelSettings(0.0),
        "onsite": ChannelSettings(0.0),
    }


@dataclass(frozen=True, slots=True)
class WorkspaceSettings:
    """Workspace-wide settings (`settings.yaml`)."""

    timezone: str = "UTC"
    decision_window: timedelta = timedelta(minutes=5)
    caps: tuple[Cap, ...] = (Cap("marketing", 3, timedelta(days=7)),)
    quiet_hours: tuple[time, time] | None = None
    global_control: float = 0.05
    message_holdout: float = 0.05
    unsure_holdout: float = 0.0  # the most a winner of unsure sign is withheld (0: off)
    channels: Mapping[str, ChannelSettings] = field(default_factory=_default_channels)
    policy: PolicyName = "airspace"
    per_decision: int = 1  # marketing messages sent per decision
    retry_after: timedelta = timedelta(hours=4)  # a loser competes again after this
    fatigue_cost: float = 0.0  # per marketing message in the fatigue window
    fatigue_window: timedelta = timedelta(days=7)
    exclusions: tuple[Exclusion, ...] = ()
    strata: tuple[Stratum, ...] = ()
    substrata: tuple[Stratum, ...] = ()  # each stratum split by the first that holds the person
    prior_strength: float = 20.0  # how many people a stratum's prior is worth
    exploration: float = EXPLORATION  # how far Thompson draws reach: times the spread
    # How long after a message its outcome is read to learn uplift, if shorter than the
    # goal's window (None: the goal's window).
    learning_window: timedelta | None = None
    purchase_event: str = "Order Completed"


_CONTROLLER_FIELDS = {
    "decision_window",
    "caps",
    "quiet_hours",
    "global_control",
    "message_holdout",
    "unsure_holdout",
    "policy",
    "per_decision",
    "retry_after",
    "fatigue",
    "exclusive",
    "strata",
    "substrata",
    "prior_strength",
    "exploration",
    "learning_window",
    "purchase_event",
}


def parse_settings(body: dict[str, Any], problems: Problems) -> WorkspaceSettings:
    """Settings from their YAML document, with every problem recorded at its path."""
    body = body.get("settings", body) if isinstance(body.get("settings"), dict) else body
    problems.mapping("", body, {"timezone", "controller", "channels"})
    defaults = WorkspaceSettings()
    controller = problems.mapping("controller", body.get("controller", {}), _CONTROLLER_FIELDS)

    def share(key: str, default: float) -> float:
        found = problems.convert(f"controller.{key}", controller.get(key, default), parse_share)
        return found if found is not None else default

    policy = controller.get("policy", defaults.policy)
    if policy not in POLICIES:
        problems.error("controller.policy", f"expected one of {', '.join(POLICIES)}")
        policy = defaults.policy
    per_decision = controller.get("per_decision", defaults.per_decision)
    if isinstance(per_decision, bool) or not isinstance(per_decision, int) or per_decision < 1:
        problems.error(
            "controller.per_decision", f"expected a whole number ≥ 1, got {kind_of(per_decision)}"
        )
        per_decision = defaults.per_decision
    fatigue = problems.mapping("controller.fatigue", controller.get("fatigue", {}), {"cost", "per"})
    purchase_event = controller.get("purchase_event", defaults.purchase_event)
    if not isinstance(purchase_event, str) or not purchase_event.strip():
        problems.error("controller.purchase_event", "expected an event name")
        purchase_event = defaults.purchase_event
    return WorkspaceSettings(
        timezone=problems.timezone("timezone", body.get("timezone")) or "UTC",
        decision_window=_duration(
            controller, "controller.decision_window", defaults.decision_window, problems
        ),
        caps=_caps(controller, problems, defaults.caps),
        quiet_hours=_quiet_hours(controller, problems),
        global_control=share("global_control", defaults.global_control),
        message_holdout=share("message_holdout", defaults.message_holdout),
        unsure_holdout=share("unsure_holdout", defaults.unsure_holdout),
        channels=_channels(body, problems),
        policy=policy,
        per_decision=per_decision,
        retry_after=_duration(
            controller, "controller.retry_after", defaults.retry_after, problems, above_zero=True
        ),
        fatigue_cost=problems.number("controller.fatigue.cost", fatigue.get("cost"), 0, 1e6, 0.0),
        fatigue_window=_duration(
            fatigue, "controller.fatigue.per", defaults.fatigue_window, problems, above_zero=True
        ),
        exclusions=_exclusions(controller.get("exclusive", []), problems),
        strata=_strata(controller.get("strata", []), "controller.strata", problems),
        substrata=_strata(controller.get("substrata", []), "controller.substrata", problems),
        prior_strength=problems.number(
            "controller.prior_strength", controller.get("prior_strength"), 0, 1e6, 20.0
        ),
        exploration=problems.number(
            "controller.exploration", controller.get("exploration"), 0, 4, EXPLORATION
        ),
        learning_window=_duration(
            controller, "controller.learning_window", None, problems, above_zero=True
        ),
        purchase_event=purchase_event.strip(),
    )


_Default = TypeVar("_Default", timedelta, None)


def _duration(
    spec: Mapping[str, Any],
    path: str,
    default: _Default,
    problems: Problems,
    *,
    above_zero: bool = False,
) -> timedelta | _Default:
    """The duration at `path` (its last part a key of `spec`), or `default` when it is
    absent or wrong (the problem recorded)."""
    key = path.rsplit(".", 1)[-1]
    if key not in spec or (spec[key] is None and default is None):  # null: "none" where allowed
        return default
    raw = spec[key]
    if above_zero:
        found = _above_zero(raw, path, problems)
    else:
        found = problems.convert(path, raw, timing.parse_duration)
    return found if found is not None else default


def _caps(
    controller: Mapping[str, Any], problems: Problems, default: tuple[Cap, ...]
) -> tuple[Cap, ...]:
    raw = controller.get("caps")
    if raw is None:
        return default
    if not isinstance(raw, list):
        problems.error("controller.caps", "expected a list of {scope, max, per}")
        return default
    parsed = [_parse_cap(item, f"controller.caps[{i}]", problems) for i, item in enumerate(raw)]
    return tuple(c for c in parsed if c is not None)


def _parse_cap(raw: Any, path: str, problems: Problems) -> Cap | None:
    spec = problems.mapping(path, raw, {"scope", "max", "per"})
    scope = spec.get("scope", "marketing")
    kinds = ("channel:", "topic:", "journey:")
    if not isinstance(scope, str) or not (scope == "marketing" or scope.startswith(kinds)):
        problems.error(
            join(path, "scope"), "expected marketing, channel:NAME, topic:NAME or journey:ID"
        )
        return None
    if scope.startswith("channel:") and scope[8:] not in CHANNELS:
        problems.error(join(path, "scope"), f"unknown channel {scope[8:]!r}")
    most = spec.get("max")
    if isinstance(most, bool) or not isinstance(most, int) or most < 0:
        problems.error(join(path, "max"), "expected a whole number")
        return None
    per = _above_zero(spec.get("per"), join(path, "per"), problems)
    return Cap(scope, most, per) if per is not None else None


def _above_zero(raw: Any, path: str, problems: Problems) -> timedelta | None:
    found = problems.convert(path, raw, timing.parse_duration)
    if found is not None and found <= timedelta(0):
        problems.error(path, "expected a duration longer than 0s, such as 4h or 7d")
        return None
    return found


def _quiet_hours(controller: Mapping[str, Any], problems: Problems) -> tuple[time, time] | None:
    if "quiet_hours" not in controller:
        return None
    spec = problems.mapping("controller.quiet_hours", controller["quiet_hours"], {"from", "to"})
    start = problems.convert(
        "controller.quiet_hours.from", spec.get("from"), timing.parse_time_of_day
    )
    end = problems.convert("controller.quiet_hours.to", spec.get("to"), timing.parse_time_of_day)
    return (start, end) if start and end else None


def _exclusions(raw: Any, problems: Problems) -> tuple[Exclusion, ...]:
    if not isinstance(raw, list):
        problems.error("controller.exclusive", "expected a list of {name, journeys, per}")
        return ()
    found: list[Exclusion] = []
    for i, item in enumerate(raw):
        path = f"controller.exclusive[{i}]"
        spec = problems.mapping(path, item, {"name", "journeys", "per"})
        journeys = spec.get("journeys")
        if not isinstance(journeys, list) or len(journeys) < 2:
            problems.error(join(path, "journeys"), "expected a list of two journeys or more")
            continue
        if not all(isinstance(j, str) and j for j in journeys):
            problems.error(join(path, "journeys"), "expected journey ids")
            continue
        per = _above_zero(spec.get("per", "7d"), join(path, "per"), problems)
        name = problems.text(join(path, "name"), spec.get("name"), f"exclusive-{i + 1}")
        if per is not None:
            found.append(Exclusion(name, frozenset(journeys), per))
    return tuple(found)


def _strata(raw: Any, where: str, problems: Problems) -> tuple[Stratum, ...]:
    if not isinstance(raw, list):
        problems.error(where, "expected a list of {name, segment}")
        return ()
    found: list[Stratum] = []
    for i, item in enumerate(raw):
        path = f"{where}[{i}]"
        spec = problems.mapping(path, item, {"name", "segment"})
        name, segment = spec.get("name"), spec.get("segment")
        if not isinstance(name, str) or not name.strip():
            problems.error(join(path, "name"), "expected a name")
        elif "/" in name or len(name.strip()) > MAX_STRATUM_NAME:
            problems.error(
                join(path, "name"),
                f"expected a name of at most {MAX_STRATUM_NAME} characters without '/'"
                " (a substratum's name is its stratum's, '/', its own)",
            )
        elif not isinstance(segment, str) or not segment.strip():
            problems.error(join(path, "segment"), "expected a segment id")
        else:
            found.append(Stratum(name.strip(), segment.strip()))
    return tuple(found)


def _channels(body: Mapping[str, Any], problems: Problems) -> dict[str, ChannelSettings]:
    channels = _default_channels()
    for name, spec in problems.mapping("channels", body.get("channels", {}), set(CHANNELS)).items():
        if name not in channels:
            continue  # reported by mapping()
        where = f"channels.{name}"
        spec = problems.mapping(where, spec, {"cost", "consent_default"})
        cost = problems.number(join(where, "cost"), spec.get("cost"), 0, 1000, channels[name].cost)
        default = spec.get("consent_default", channels[name].consent_default)
        if default not in ("opted_in", "opted_out"):
            problems.error(f"channels.{name}.consent_default", "expected opted_in or opted_out")
            default = channels[name].consent_default
        channels[name] = ChannelSettings(cost, default)
    return channels
