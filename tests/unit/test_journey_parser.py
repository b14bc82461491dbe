"""Reading journeys from YAML: what each field becomes, and every problem with its path."""

from __future__ import annotations

from datetime import UTC, datetime, time, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml

from airspace.domain.journey_parser import parse_journey, parse_share
from airspace.domain.journeys import (
    END,
    Entry,
    EventMatch,
    ExitRule,
    Goal,
    Journey,
    Message,
    Step,
)
from airspace.domain.problems import Problems
from airspace.domain.segments import Comparison, Filter, SegmentCondition

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "journeys"
HEAD = "journey: j\nentry: {event: Signed Up}\n"


def parse(text: str) -> tuple[Journey | None, list[str]]:
    problems = Problems()
    parsed = parse_journey(yaml.safe_load(text), problems)
    return parsed, [str(p) for p in problems.items]


def parsed_ok(text: str) -> Journey:
    parsed, problems = parse(text)
    assert problems == []
    assert parsed is not None
    return parsed


def steps_problems(steps: str) -> list[str]:
    return parse(HEAD + "steps:\n" + steps)[1]


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.yaml")), ids=lambda p: p.stem)
def test_every_example_journey_parses_without_problems(path: Path) -> None:
    parsed, problems = parse(path.read_text())
    assert problems == []
    assert parsed is not None
    assert parsed.id == path.stem


def test_the_abandoned_cart_example_in_full() -> None:
    cart = parsed_ok((EXAMPLES / "abandoned-cart.yaml").read_text())
    same_cart = (("properties.cart_id", "trigger.properties.cart_id"),)
    reminder = Message(
        ("push", "email"), "cart-reminder", "promotions", expires=timedelta(hours=12)
    )
    assert cart == Journey(
        id="abandoned-cart",
        name="Abandoned cart",
        topic="promotions",
        entry=Entry("event", event=EventMatch("Cart Abandoned"), key="properties.cart_id"),
        re_entry="after",
        cooldown=timedelta(days=7),
        max_concurrent=3,
        exit_when=(ExitRule(event=EventMatch("Order Completed", match=same_cart)),),
        goal=Goal(EventMatch("Order Completed"), timedelta(days=7), 0.0, "properties.revenue"),
        holdout=0.10,
        steps=(
            Step(
                "wait-for-purchase",
                "wait_for",
                next="reminder",
                event=EventMatch("Order Completed", match=same_cart),
                timeout=timedelta(hours=1),
                on_timeout="reminder",
            ),
            Step("reminder", "message", next="wait-a-day", message=reminder),
            Step("wait-a-day", "wait", next="value-branch", duration=timedelta(days=1)),
            Step(
                "value-branch",
                "branch",
                next="offer-split",
                branches=((SegmentCondition("high-value"), "second-reminder"),),
            ),
            Step(
                "offer-split",
                "split",
                next="second-reminder",
                weights=((50.0, "second-reminder"), (50.0, "second-reminder-with-discount")),
            ),
            Step(
                "second-reminder",
                "message",
                message=Message(("email",), "cart-reminder-2", "promotions"),
            ),
            Step(
                "second-reminder-with-discount",
                "message",
                message=Message(("email",), "cart-reminder-discount", "promotions", value=5.0),
            ),
        ),
    )


def test_defaults_and_generated_step_ids() -> None:
    j = parsed_ok(
        HEAD + "steps:\n  - wait: 1h\n  - id: named\n    wait: 2h\n  - wait: 3h\n  - exit: true\n"
    )
    assert [(s.id, s.next) for s in j.steps] == [
        ("step-1", "named"),
        ("named", "step-3"),
        ("step-3", "step-4"),
        ("step-4", END),
    ]
    assert (j.name, j.re_entry, j.max_concurrent, j.entry_cap, j.holdout, j.goal) == (
        "j",
        "never",
        1,
        None,
        0.10,
        None,
    )


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('wait: {until: "10:00", weekdays: [mon, Friday]}', (time(10), (0, 4))),
        ('wait_until: "10:00"', (time(10), ())),
        ('wait_until: {until: "07:30", weekdays: [sat, sun]}', (time(7, 30), (5, 6))),
    ],
)
def test_waits_until_a_local_time(text: str, expected: tuple[time, tuple[int, ...]]) -> None:
    [step] = parsed_ok(HEAD + "steps:\n  - " + text + "\n").steps
    assert (step.kind, step.until, step.weekdays) == ("wait_until", *expected)


def test_message_fields_and_topics() -> None:
    j = parsed_ok(
        HEAD
        + "topic: promotions\nsteps:\n"
        + "  - message: {channels: sms, content: c, topic: service, value: 2, urgent: true,"
        + " priority: 3, expires: 2d}\n"
        + "  - message: {content: d}\n"
    )
    assert [s.message for s in j.steps] == [
        Message(("sms",), "c", "service", 2.0, timedelta(days=2), True, False, 3),
        Message(("email",), "d", "promotions"),
    ]


def test_a_transactional_journey_has_no_holdout_and_transactional_messages() -> None:
    j = parsed_ok(
        "journey: receipt\nentry: {event: Order Completed}\ntransactional: true\nholdout: 50%\n"
        "steps:\n  - message: {channels: [email], content: receipt}\n"
    )
    assert j.holdout == 0.0
    assert j.transactional is True
    assert j.steps[0].message is not None
    assert j.steps[0].message.transactional is True


def test_update_webhook_start_and_where_filters() -> None:
    j = parsed_ok(
        HEAD
        + "steps:\n"
        + "  - update: {traits: {stage: nurtured}}\n"
        + "  - webhook: {url: 'https://x.example/h', method: put, body: {a: 1}}\n"
        + "  - start_journey: other\n"
        + "  - wait_for: {event: Clicked, where: {properties.link: {contains: offer}},"
        + " timeout: 2d}\n"
    )
    update, hook, start, wait_for = j.steps
    assert update.traits == {"stage": "nurtured"}
    assert (hook.url, hook.method, hook.body) == ("https://x.example/h", "PUT", {"a": 1})
    assert start.journey == "other"
    assert wait_for.event == EventMatch(
        "Clicked", (Filter("properties.link", Comparison("contains", "offer")),)
    )
    assert (wait_for.timeout, wait_for.on_timeout) == (timedelta(days=2), END)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "{event: Cart Abandoned, key: properties.cart_id}",
            Entry("event", event=EventMatch("Cart Abandoned"), key="properties.cart_id"),
        ),
        ("{segment: lapsed}", Entry("segment", segment="lapsed")),
        ("{segment: lapsed, on: exit}", Entry("segment", segment="lapsed", on="exit")),
        (
            "{schedule: {cron: '0 9 * * MON', local_time: '09:00'}, segment: all-customers}",
            Entry("schedule", segment="all-customers", cron="0 9 * * MON", local_time=time(9)),
        ),
        (
            "{schedule: {at: '2026-12-01T09:00:00Z'}}",
            Entry("schedule", at=datetime(2026, 12, 1, 9, tzinfo=UTC)),
        ),
        (
            "{anniversary: traits.birthday}",
            Entry("anniversary", trait="birthday", local_time=time(9)),
        ),
        (
            "{anniversary: signup_date, at: '18:30'}",
            Entry("anniversary", trait="signup_date", local_time=time(18, 30)),
        ),
    ],
)
def test_entries(text: str, expected: Entry) -> None:
    j = parsed_ok(f"journey: j\nentry: {text}\nsteps:\n  - wait: 1h\n")
    assert j.entry == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("re_entry: always", ("always", timedelta(0))),
        ("re_entry: never", ("never", timedelta(0))),
        ("re_entry: {after: 90d}", ("after", timedelta(days=90))),
    ],
)
def test_re_entry(text: str, expected: tuple[str, timedelta]) -> None:
    j = parsed_ok(HEAD + text + "\nsteps:\n  - wait: 1h\n")
    assert (j.re_entry, j.cooldown) == expected


@pytest.mark.parametrize(
    ("raw", "share"),
    [("10%", 0.10), (" 2.5% ", 0.025), ("0%", 0.0), ("100%", 1.0), (0.2, 0.2), (0, 0.0), (1, 1.0)],
)
def test_parse_share(raw: Any, share: float) -> None:
    assert parse_share(raw) == pytest.approx(share)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("ten%", "expected a percentage such as 10%; got 'ten%'"),
        ("10", "expected a percentage such as 10%; got '10'"),
        (True, "expected a percentage such as 10%; got True"),
        (10, "expected a share from 0% to 100%; got 10"),
        ("150%", "expected a share from 0% to 100%; got '150%'"),
        ("-1%", "expected a share from 0% to 100%; got '-1%'"),
    ],
)
def test_parse_share_refuses(raw: Any, message: str) -> None:
    with pytest.raises(ValueError, match="expected a") as raised:
        parse_share(raw)
    assert str(raised.value) == message


# --- problems, each with its path ------------------------------------------------------


@pytest.mark.parametrize(
    ("steps", "expected"),
    [
        pytest.param(
            "  - id: a\n    update: {traits: {x: 1}}\n    next: b\n"
            "  - id: b\n    update: {traits: {x: 2}}\n    next: a\n",
            ["steps[0]: a loop through step 'a' has no wait longer than 0s in it"],
            id="loop-without-wait",
        ),
        pytest.param(
            "  - id: a\n    message: {content: x}\n  - id: b\n    wait: 0s\n    next: a\n",
            ["steps[0]: a loop through step 'a' has no wait longer than 0s in it"],
            id="loop-with-a-zero-wait",
        ),
        pytest.param(
            "  - id: a\n    branch:\n      - if: {trait: vip}\n        next: a\n"
            "      - else: end\n",
            ["steps[0]: a loop through step 'a' has no wait longer than 0s in it"],
            id="branch-to-itself",
        ),
        pytest.param(
            "  - id: a\n    message: {content: x}\n  - id: b\n    wait: 1d\n    next: a\n",
            [],
            id="loop-with-a-wait-is-fine",
        ),
        pytest.param(
            "  - id: a\n    wait: 1h\n    next: nowhere\n",
            ["steps[0].next: leads to unknown step 'nowhere'"],
            id="unknown-next",
        ),
        pytest.param(
            "  - id: a\n    wait_for: {event: X, timeout: 1h}\n    on_timeout: nowhere\n",
            ["steps[0].on_timeout: leads to unknown step 'nowhere'"],
            id="unknown-on-timeout",
        ),
        pytest.param(
            "  - split:\n      - {weight: 1, next: end}\n      - {weight: 1, next: nowhere}\n",
            ["steps[0].split[1].next: leads to unknown step 'nowhere'"],
            id="unknown-split-path",
        ),
        pytest.param(
            "  - branch:\n      - if: {trait: vip}\n        next: nowhere\n",
            ["steps[0].branch: leads to unknown step 'nowhere'"],
            id="unknown-branch-target",
        ),
        pytest.param(
            "  - id: a\n    wait: 1h\n  - id: a\n    wait: 2h\n",
            ["steps[1].id: duplicate step id 'a'"],
            id="duplicate-ids",
        ),
        pytest.param(
            "  - id: end\n    wait: 1h\n",
            ["steps[0].id: expected a step id other than 'end'"],
            id="id-end",
        ),
        pytest.param(
            "  - message: {channels: [email, fax, 3], content: x}\n",
            [
                "steps[0].message.channels[1]: unknown channel 'fax'; "
                "expected one of email, sms, push, webhook, onsite",
                "steps[0].message.channels[2]: unknown channel 3; "
                "expected one of email, sms, push, webhook, onsite",
            ],
            id="unknown-channels",
        ),
        pytest.param(
            "  - wait: 3 days\n",
            ["steps[0].wait: expected a duration such as 30m, 1h, 7d or 2w; got '3 days'"],
            id="bad-wait",
        ),
        pytest.param(
            "  - wait_for: {event: X, timeout: soon}\n",
            [
                "steps[0].wait_for.timeout: "
                "expected a duration such as 30m, 1h, 7d or 2w; got 'soon'"
            ],
            id="bad-timeout",
        ),
        pytest.param(
            "  - wait_for: {event: X, match: [a]}\n    on_timeout: 5\n",
            [
                "steps[0].wait_for.match: "
                "expected a mapping: {properties.cart_id: trigger.properties.cart_id}",
                "steps[0].wait_for.timeout: "
                "expected a duration such as 30m, 1h, 7d or 2w; got None",
                "steps[0].on_timeout: expected a step id or end",
            ],
            id="wait-for-several",
        ),
        pytest.param(
            "  - message: {content: x, expires: never}\n",
            [
                "steps[0].message.expires: "
                "expected a duration such as 30m, 1h, 7d or 2w; got 'never'"
            ],
            id="bad-expiry",
        ),
        pytest.param(
            "  - wait: {until: 10:00}\n",
            [
                'steps[0].wait.until: expected a time of day such as "09:00"; got 600 '
                "(YAML reads an unquoted 10:00 as 600; quote it)"
            ],
            id="unquoted-time",
        ),
        pytest.param(
            '  - wait: {until: "10:00", weekdays: [mon, funday]}\n',
            ["steps[0].wait.weekdays[1]: expected one of mon, tue, wed, thu, fri, sat, sun"],
            id="bad-weekday",
        ),
        pytest.param(
            '  - wait_until: "25:00"\n',
            ["steps[0].wait_until: expected a time of day such as \"09:00\"; got '25:00'"],
            id="bad-wait-until",
        ),
        pytest.param(
            "  - wait: 1h\n    message: {content: x}\n",
            [
                "steps[0]: a step needs exactly one of: wait, wait_until, wait_for, branch, "
                "split, message, update, webhook, start_journey, exit"
            ],
            id="two-kinds",
        ),
        pytest.param("  - exit: false\n", ["steps[0].exit: write exit: true"], id="exit-false"),
        pytest.param(
            "  - wait: 1h\n    colour: red\n",
            ["steps[0].colour: unknown field; expected one of id, next, wait"],
            id="unknown-step-field",
        ),
        pytest.param(
            "  - split: [{weight: 0, next: end}, {weight: x, next: end}]\n",
            [
                "steps[0].split[0].weight: expected a positive number",
                "steps[0].split[1].weight: expected a positive number",
            ],
            id="bad-weights",
        ),
        pytest.param(
            "  - split: [{weight: 1, next: end}]\n",
            [
                "steps[0].split: expected at least two paths: "
                "[{weight: 50, next: a}, {weight: 50, next: b}]"
            ],
            id="one-path-split",
        ),
        pytest.param(
            "  - webhook: {url: 'ftp://x', method: DELETE, body: [1]}\n",
            [
                "steps[0].webhook.url: expected an http:// or https:// URL",
                "steps[0].webhook.method: expected POST, PUT, PATCH or GET",
                "steps[0].webhook.body: expected a mapping",
            ],
            id="bad-webhook",
        ),
        pytest.param(
            "  - update: {traits: {}}\n",
            ["steps[0].update.traits: expected a mapping of trait: value"],
            id="empty-update",
        ),
        pytest.param(
            "  - message: {content: x, value: lots, urgent: yes please, priority: 1.5}\n",
            [
                "steps[0].message.value: expected a number",
                "steps[0].message.urgent: expected true or false",
                "steps[0].message.priority: expected a whole number",
            ],
            id="bad-message-fields",
        ),
        pytest.param(
            "  - branch:\n      - if: {trait: vip, eq: [1]}\n        next: end\n",
            ["steps[0].branch[0].if.eq: expected one value, not a list (use in for several)"],
            id="branch-condition-path",
        ),
        pytest.param(
            "  - wait: 1h\n  - id: orphan\n    wait: 1h\n    next: end\n"
            "  - id: x\n    exit: true\n",
            ["steps[2]: step 'x' can never be reached"],
            id="unreachable-after-an-explicit-end",
        ),
        pytest.param("  - 5\n", ["steps[0]: expected a step (a mapping), got a number (5)"]),
    ],
)
def test_step_problems(steps: str, expected: list[str]) -> None:
    assert steps_problems(steps) == expected


def test_unreachable_steps_are_a_warning() -> None:
    problems = Problems()
    parse_journey(
        yaml.safe_load(
            HEAD + "steps:\n  - wait: 1h\n    next: end\n  - id: orphan\n    wait: 1h\n"
        ),
        problems,
    )
    assert [(str(p), p.level) for p in problems.items] == [
        ("steps[1]: step 'orphan' can never be reached", "warning")
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            "journey: ''\nentry: {event: X}\nsteps: [{wait: 1h}]\n",
            ["journey: expected a name, got text ('')"],
            id="no-id",
        ),
        pytest.param(
            "journey: j\nentry: {event: X}\nsteps: []\n",
            ["steps: expected a non-empty list of steps"],
            id="no-steps",
        ),
        pytest.param(
            "journey: j\nentry: {tweet: X}\nsteps: [{wait: 1h}]\n",
            ["entry: expected one of: event, segment, schedule, anniversary"],
            id="unknown-entry",
        ),
        pytest.param(
            "journey: j\nentry: {event: X, key: [1]}\nsteps: [{wait: 1h}]\n",
            ["entry.key: expected a path such as properties.cart_id"],
            id="bad-key",
        ),
        pytest.param(
            "journey: j\nentry: {segment: s, on: change}\nsteps: [{wait: 1h}]\n",
            ["entry.on: expected enter or exit"],
            id="bad-on",
        ),
        pytest.param(
            "journey: j\nentry: {schedule: {cron: 'every day'}}\nsteps: [{wait: 1h}]\n",
            [
                "entry.schedule.cron: expected a cron expression such as '0 9 * * MON', "
                "got 'every day'"
            ],
            id="bad-cron",
        ),
        pytest.param(
            "journey: j\nentry: {schedule: {cron: '0 9 * * *', at: 2026-12-01}}\n"
            "steps: [{wait: 1h}]\n",
            ["entry.schedule: give either cron (repeating) or at (once)"],
            id="cron-and-at",
        ),
        pytest.param(
            "journey: j\nentry: {anniversary: birthday, at: noon}\nsteps: [{wait: 1h}]\n",
            ["entry.at: expected a time of day such as \"09:00\"; got 'noon'"],
            id="bad-anniversary-time",
        ),
        pytest.param(
            HEAD + "re_entry: sometimes\nsteps: [{wait: 1h}]\n",
            ["re_entry: expected never, always, or {after: 7d}"],
            id="bad-re-entry",
        ),
        pytest.param(
            HEAD + "re_entry: {after: a while}\nsteps: [{wait: 1h}]\n",
            ["re_entry.after: expected a duration such as 30m, 1h, 7d or 2w; got 'a while'"],
            id="bad-cooldown",
        ),
        pytest.param(
            HEAD + "holdout: 200%\nmax_concurrent: 0\nentry_cap: -3\nsteps: [{wait: 1h}]\n",
            [
                "holdout: expected a share from 0% to 100%; got '200%'",
                "max_concurrent: expected a whole number of at least 1, got a number (0)",
                "entry_cap: expected a whole number of at least 1, got a number (-3)",
            ],
            id="bad-numbers",
        ),
        pytest.param(
            HEAD + "topic: [a]\ntransactional: maybe\nsteps: [{wait: 1h}]\n",
            ["topic: expected a topic name", "transactional: expected true or false"],
            id="bad-topic-flag",
        ),
        pytest.param(
            HEAD + "goal: {event: Order Completed, within: 1 week, value: true}\n"
            "steps: [{wait: 1h}]\n",
            [
                "goal.within: expected a duration such as 30m, 1h, 7d or 2w; got '1 week'",
                "goal.value: expected a number or a property path such as properties.revenue",
            ],
            id="bad-goal",
        ),
        pytest.param(
            HEAD + "exit_when: {event: X}\nsteps: [{wait: 1h}]\n",
            ["exit_when: expected a list of exit rules"],
            id="exit-when-not-a-list",
        ),
        pytest.param(
            HEAD + "exit_when: [{segment: s, on: enter}, {evnt: X}]\nsteps: [{wait: 1h}]\n",
            [
                "exit_when[0].on: a segment exit rule fires on exit",
                "exit_when[1].evnt: unknown field; expected one of event, match, where",
                "exit_when[1].event: expected a name, got nothing",
            ],
            id="bad-exit-rules",
        ),
        pytest.param(
            HEAD + "migrate: {old: missing}\nsteps: [{id: a, wait: 1h}]\n",
            ["migrate.old: no step 'missing' in this version"],
            id="migrate-unknown",
        ),
        pytest.param(
            HEAD + "migrate: [a]\nsteps: [{id: a, wait: 1h}]\n",
            ["migrate: expected a mapping of old step id: new step id"],
            id="migrate-not-a-mapping",
        ),
        pytest.param(
            HEAD + "colour: red\nsteps: [{wait: 1h}]\n",
            [
                "colour: unknown field; expected one of description, entry, entry_cap, exit_when,"
                " goal, holdout, journey, max_concurrent, migrate, name, re_entry, steps, topic,"
                " transactional"
            ],
            id="unknown-field",
        ),
    ],
)
def test_journey_problems(text: str, expected: list[str]) -> None:
    assert parse(text)[1] == expected


def test_every_problem_is_reported_at_once() -> None:
    _, problems = parse(
        HEAD
        + "holdout: lots\n"
        + "steps:\n"
        + "  - wait: forever\n"
        + "  - message: {channels: [fax], content: x}\n"
        + "    next: nowhere\n"
        + "  - id: step-2\n    wait: 1h\n"
    )
    assert problems == [
        "holdout: expected a percentage such as 10%; got 'lots'",
        "steps[0].wait: expected a duration such as 30m, 1h, 7d or 2w; got 'forever'",
        "steps[1].message.channels[0]: unknown channel 'fax'; "
        "expected one of email, sms, push, webhook, onsite",
        "steps[1].next: leads to unknown step 'nowhere'",
        "steps[2].id: duplicate step id 'step-2'",
    ]


def test_goal_values() -> None:
    fixed = parsed_ok(HEAD + "goal: {event: A, value: 12.5}\nsteps: [{wait: 1h}]\n").goal
    text = parsed_ok(HEAD + "goal: {event: A, value: '12.5'}\nsteps: [{wait: 1h}]\n").goal
    path = parsed_ok(HEAD + "goal: {event: A, value: properties.total}\nsteps: [{wait: 1h}]\n")
    assert fixed == Goal(EventMatch("A"), timedelta(days=7), 12.5)
    assert text == Goal(EventMatch("A"), timedelta(days=7), 12.5)
    assert path.goal == Goal(EventMatch("A"), timedelta(days=7), 0.0, "properties.total")


def test_match_literals_keep_their_type() -> None:
    j = parsed_ok(
        HEAD + "steps:\n  - wait_for: {event: A, match: {properties.n: 3, properties.k: web},"
        " timeout: 1h}\n"
    )
    assert j.steps[0].event == EventMatch("A", match=(("properties.n", 3), ("properties.k", "web")))


def test_not_a_mapping() -> None:
    assert parse("[1, 2]") == (None, ["(file): expected a mapping, got a list"])


def test_a_very_long_journey_is_refused_without_exhausting_the_stack() -> None:
    steps = [{"update": {"traits": {"n": i}}} for i in range(1500)]
    problems = Problems()
    parsed = parse_journey({"journey": "j", "entry": {"event": "E"}, "steps": steps}, problems)
    assert [str(p) for p in problems.items] == ["steps: at most 200 steps"]
    assert parsed is not None
    assert len(parsed.steps) == 1500
    looped = [*steps, {"update": {"traits": {"n": -1}}, "next": "step-1"}]
    problems = Problems()
    parse_journey({"journey": "j", "entry": {"event": "E"}, "steps": looped}, problems)
    assert [str(p) for p in problems.items] == [
        "steps: at most 200 steps",
        "steps[0]: a loop through step 'step-1' has no wait longer than 0s in it",
    ]
