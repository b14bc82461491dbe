"""The workspace as code: files to documents, cross-checks with file paths, settings, diffs."""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import time, timedelta
from pathlib import Path
from typing import Any

import pytest

from airspace.domain.consent import Topic
from airspace.domain.definitions import (
    Change,
    Document,
    Region,
    Store,
    Workspace,
    cross_check,
    diff,
    documents_from_files,
    load_documents,
)
from airspace.domain.problems import Problem, Problems
from airspace.domain.segments import Segment, SegmentCondition
from airspace.domain.workspace_settings import Cap, ChannelSettings, WorkspaceSettings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def example_files() -> dict[str, str]:
    return {str(p.relative_to(EXAMPLES)): p.read_text() for p in sorted(EXAMPLES.rglob("*.yaml"))}


def load(files: dict[str, str]) -> tuple[Workspace, list[str]]:
    """Load files; every problem as `path: message`, warnings marked."""
    problems = Problems()
    docs = documents_from_files(files, problems)
    workspace, found = load_documents(docs)
    return workspace, [_show(p) for p in [*problems.items, *found]]


def _show(problem: Problem) -> str:
    return f"warning: {problem}" if problem.level == "warning" else str(problem)


def with_examples(**files: str) -> list[str]:
    """The problems of the examples with some files added or replaced."""
    return load({**example_files(), **files})[1]


# --- the examples --------------------------------------------------------------------------


def test_the_examples_load_without_any_problem() -> None:
    workspace, problems = load(example_files())
    assert problems == []
    assert sorted(workspace.journeys) == [
        "abandoned-cart",
        "birthday",
        "returns",
        "welcome",
        "win-back",
    ]
    assert sorted(workspace.segments) == ["customers", "high-value", "lapsed-customers"]
    assert workspace.topics == {
        "promotions": Topic("promotions", "opt_out", "Offers, vouchers and reminders."),
        "service": Topic("service", "opt_out", "Surveys and messages about orders and returns."),
        "newsletter": Topic("newsletter", "opt_in", "The weekly newsletter."),
    }
    assert workspace.regions["bavaria"] == Region("bavaria", "Bavaria", "Europe/Berlin")
    assert workspace.stores["paris-rivoli"] == Store(
        "paris-rivoli", "Paris Rivoli", 48.8606, 2.3476, 120.0, "ile-de-france", "Europe/Paris"
    )
    assert workspace.settings == WorkspaceSettings(
        timezone="Europe/Paris",
        decision_window=timedelta(minutes=5),
        caps=(Cap("marketing", 3, timedelta(days=7)), Cap("channel:sms", 1, timedelta(days=1))),
        quiet_hours=None,
        global_control=0.05,
        message_holdout=0.05,
        channels={
            "email": ChannelSettings(0.001, "opted_in"),
            "sms": ChannelSettings(0.03, "opted_out"),
            "push": ChannelSettings(0.0005, "opted_in"),
            "webhook": ChannelSettings(0.0, "opted_in"),
            "onsite": ChannelSettings(0.0, "opted_in"),
        },
    )
    assert workspace.segment_order() == ["customers", "high-value", "lapsed-customers"]


def test_documents_carry_their_file_and_number() -> None:
    problems = Problems()
    docs = documents_from_files(example_files(), problems)
    assert problems.items == []
    assert [(d.kind, d.id, d.source) for d in docs if d.source.startswith("stores")] == [
        ("region", "ile-de-france", "stores.yaml"),
        ("region", "bavaria", "stores.yaml#2"),
        ("store", "paris-rivoli", "stores.yaml#3"),
        ("store", "munich-marienplatz", "stores.yaml#4"),
    ]
    assert ("settings", "settings", "settings.yaml") in [(d.kind, d.id, d.source) for d in docs]


# --- reading files -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"segments/bad.yaml": "segment: x\nall: [\n"},
            [
                "segments/bad.yaml: not valid YAML (line 3, column 1): "
                "expected the node content, but found '<stream end>'"
            ],
            id="invalid-yaml",
        ),
        pytest.param(
            {"misc.yaml": "- a\n- b\n"},
            [
                "misc.yaml: expected a mapping starting with segment, journey, topic, store or "
                "region (or a settings.yaml); got a list"
            ],
            id="not-a-definition",
        ),
        pytest.param(
            {"segments/x.yaml": "segment: 'has spaces'\ntrait: a\n"},
            [
                "segments/x.yaml: segment: expected an id of letters, digits, '-', '_' or '.' "
                "(at most 100)"
            ],
            id="bad-id",
        ),
        pytest.param(
            {"topics.yaml": "topic: a\n---\ntopic: [b]\n"},
            [
                "topics.yaml#2: topic: expected an id of letters, digits, '-', '_' or '.' "
                "(at most 100)"
            ],
            id="bad-id-second-document",
        ),
    ],
)
def test_reading_files(files: dict[str, str], expected: list[str]) -> None:
    assert load(files)[1] == expected


# --- problems with their files and paths ---------------------------------------------------

CART = """
journey: cart
entry: {event: Cart Abandoned}
topic: promotions
steps:
  - message: {channels: [email], content: a}
  - message: {channels: [email], content: b}
  - wait: 3 days
"""


@pytest.mark.parametrize(
    ("files", "expected"),
    [
        pytest.param(
            {"journeys/cart.yaml": CART},
            [
                "journeys/cart.yaml: steps[2].wait: "
                "expected a duration such as 30m, 1h, 7d or 2w; got '3 days'"
            ],
            id="journey-path",
        ),
        pytest.param(
            {
                "journeys/cart.yaml": (
                    "journey: cart\nentry: {segment: nobody}\n"
                    "exit_when: [{segment: gone}]\nsteps:\n"
                    "  - branch:\n      - if: {not: {segment: ghosts}}\n        next: end\n"
                )
            },
            [
                "journeys/cart.yaml: entry.segment: unknown segment 'nobody'",
                "journeys/cart.yaml: exit_when[0].segment: unknown segment 'gone'",
                "journeys/cart.yaml: steps[0].branch: unknown segment 'ghosts'",
            ],
            id="unknown-segments-in-a-journey",
        ),
        pytest.param(
            {"segments/a.yaml": "segment: a\nall:\n  - segment: customers\n  - segment: nobody\n"},
            [
                "segments/a.yaml: all[1].segment: unknown segment 'nobody'",
                "warning: segments/a.yaml: no journey, content item or other segment uses this "
                "segment",
            ],
            id="unknown-segment-in-a-segment",
        ),
        pytest.param(
            {
                "segments/a.yaml": "segment: a\nany: [{segment: b}, {trait: vip}]\n",
                "segments/b.yaml": "segment: b\nnot: {segment: c}\n",
                "segments/c.yaml": "segment: c\nsegment_of: x\n",
            },
            [
                "segments/c.yaml: unknown condition; start it with one of: "
                "all, any, not, event, trait, computed, segment, reachable, consent",
                "warning: segments/a.yaml: no journey, content item or other segment uses this "
                "segment",
            ],
            id="unknown-condition-at-the-root",
        ),
        pytest.param(
            {
                "segments/a.yaml": "segment: a\nany: [{segment: b}, {trait: vip}]\n",
                "segments/b.yaml": "segment: b\nnot: {segment: c}\n",
                "segments/c.yaml": "segment: c\nall: [{segment: a}]\n",
            },
            ["segments/a.yaml: segments refer to each other in a loop: a → b → c → a"],
            id="segment-cycle",
        ),
        pytest.param(
            {"segments/lonely.yaml": "segment: lonely\ntrait: vip\n"},
            [
                "warning: segments/lonely.yaml: no journey, content item or other segment "
                "uses this segment"
            ],
            id="unused-segment",
        ),
        pytest.param(
            {
                "journeys/cart.yaml": (
                    "journey: cart\nentry: {event: X}\ntopic: deals\nsteps:\n"
                    "  - message: {content: a}\n"
                    "  - message: {content: b, topic: promotions}\n"
                    "  - message: {content: c, topic: gossip}\n"
                )
            },
            [
                "journeys/cart.yaml: topic: unknown topic 'deals'; define it in topics",
                "journeys/cart.yaml: steps[2].message.topic: unknown topic 'gossip'; "
                "define it in topics",
            ],
            id="unknown-topics",
        ),
        pytest.param(
            {
                "journeys/cart.yaml": (
                    "journey: cart\nentry: {event: X}\nsteps:\n  - wait: 1h\n"
                    "  - start_journey: welcome\n  - start_journey: nowhere\n"
                )
            },
            ["journeys/cart.yaml: steps[2].start_journey: unknown journey 'nowhere'"],
            id="unknown-journey",
        ),
        pytest.param(
            {
                "journeys/cart.yaml": "journey: cart\nentry: {event: X}\nsteps:\n"
                "  - message: {channels: [email, pigeon], content: a}\n"
            },
            [
                "journeys/cart.yaml: steps[0].message.channels[1]: unknown channel 'pigeon'; "
                "expected one of email, sms, push, webhook, onsite"
            ],
            id="unknown-channel",
        ),
        pytest.param(
            {"journeys/again.yaml": "journey: welcome\nentry: {event: X}\nsteps: [{wait: 1h}]\n"},
            ["journeys/welcome.yaml: journey 'welcome' is also defined in journeys/again.yaml"],
            id="defined-twice",
        ),
        pytest.param(
            {
                "more-stores.yaml": "store: lyon\nname: Lyon\nlatitude: 45.76\nlongitude: 94.8\n"
                "region: rhone\ntimezone: Europe/Lyon\nradius_m: 0\n"
            },
            [
                "more-stores.yaml: radius_m: expected a number from 1 to 100000, got a number (0)",
                "more-stores.yaml: timezone: unknown time zone 'Europe/Lyon'; "
                "expected an IANA name such as Europe/Paris",
                "more-stores.yaml: region: unknown region 'rhone'",
            ],
            id="store",
        ),
        pytest.param(
            {"topics-2.yaml": "topic: deals\nkind: maybe\ncolour: red\n"},
            [
                "topics-2.yaml: colour: unknown field; expected one of description, kind, "
                "name, topic",
                "topics-2.yaml: kind: expected opt_in or opt_out",
            ],
            id="topic",
        ),
    ],
)
def test_problems_name_their_file_and_path(files: dict[str, str], expected: list[str]) -> None:
    assert with_examples(**files) == expected


def test_without_topics_defined_any_topic_is_accepted() -> None:
    files = {k: v for k, v in example_files().items() if k != "topics.yaml"}
    assert load(files)[1] == []


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param(
            "timezone: Mars/Base\n",
            [
                "settings.yaml: timezone: unknown time zone 'Mars/Base'; "
                "expected an IANA name such as Europe/Paris"
            ],
            id="timezone",
        ),
        pytest.param(
            "channels:\n  fax: {cost: 1}\n  sms: {cost: -1, consent_default: maybe}\n",
            [
                "settings.yaml: channels.fax: unknown field; "
                "expected one of email, onsite, push, sms, webhook",
                "settings.yaml: channels.sms.cost: expected a number from 0 to 1000, "
                "got a number (-1)",
                "settings.yaml: channels.sms.consent_default: expected opted_in or opted_out",
            ],
            id="channels",
        ),
        pytest.param(
            "controller:\n  caps:\n    - {scope: everything, max: 3, per: 7d}\n"
            "    - {scope: 'channel:fax', max: 1, per: 1d}\n"
            "    - {scope: marketing, max: -1, per: 1d}\n"
            "    - {scope: marketing, max: 1, per: 0s}\n"
            "    - {scope: marketing, max: 1, per: a week}\n",
            [
                "settings.yaml: controller.caps[0].scope: "
                "expected marketing, channel:NAME, topic:NAME or journey:ID",
                "settings.yaml: controller.caps[1].scope: unknown channel 'fax'",
                "settings.yaml: controller.caps[2].max: expected a whole number",
                "settings.yaml: controller.caps[3].per: "
                "expected a duration longer than 0s, such as 4h or 7d",
                "settings.yaml: controller.caps[4].per: "
                "expected a duration such as 30m, 1h, 7d or 2w; got 'a week'",
            ],
            id="caps",
        ),
        pytest.param(
            "controller:\n  decision_window: soon\n  global_control: 120%\n"
            "  quiet_hours: {from: '22:00', to: 8}\n  colour: red\n",
            [
                "settings.yaml: controller.colour: unknown field; expected one of caps, "
                "decision_window, exclusive, exploration, fatigue, global_control, "
                "learning_window, message_holdout, per_decision, policy, prior_strength, "
                "purchase_event, "
                "quiet_hours, retry_after, strata, substrata, unsure_holdout",
                "settings.yaml: controller.decision_window: "
                "expected a duration such as 30m, 1h, 7d or 2w; got 'soon'",
                'settings.yaml: controller.quiet_hours.to: expected a time of day such as "09:00";'
                " got 8",
                "settings.yaml: controller.global_control: "
                "expected a share from 0% to 100%; got '120%'",
            ],
            id="controller",
        ),
        pytest.param(
            "controller:\n  retry_after: 0s\n  fatigue: {cost: 1, per: 0s}\n"
            "  learning_window: -1d\n",
            [
                "settings.yaml: controller.retry_after: "
                "expected a duration longer than 0s, such as 4h or 7d",
                "settings.yaml: controller.fatigue.per: "
                "expected a duration longer than 0s, such as 4h or 7d",
                "settings.yaml: controller.learning_window: "
                "expected a duration such as 30m, 1h, 7d or 2w; got '-1d'",
            ],
            id="durations above zero",
        ),
    ],
)
def test_settings_problems(settings: str, expected: list[str]) -> None:
    assert with_examples(**{"settings.yaml": settings}) == expected


def test_settings_fields() -> None:
    workspace, problems = load(
        {
            "settings.yaml": (
                "settings:\n  timezone: Asia/Tokyo\n  controller:\n    decision_window: 0s\n"
                "    quiet_hours: {from: '21:00', to: '08:00'}\n    global_control: 0%\n"
                "    message_holdout: 10%\n"
                "    caps: [{scope: 'journey:cart', max: 0, per: 1d}]\n"
                "  channels:\n    push: {consent_default: opted_out}\n"
            )
        }
    )
    assert problems == []
    assert workspace.settings == WorkspaceSettings(
        timezone="Asia/Tokyo",
        decision_window=timedelta(0),
        caps=(Cap("journey:cart", 0, timedelta(days=1)),),
        quiet_hours=(time(21), time(8)),
        global_control=0.0,
        message_holdout=0.10,
        channels={
            **WorkspaceSettings().channels,
            "push": ChannelSettings(0.0005, "opted_out"),
        },
    )


def test_paused_journeys_are_carried() -> None:
    docs = documents_from_files(example_files(), Problems())
    workspace, _ = load_documents(docs, paused=frozenset({"welcome"}))
    assert workspace.paused == frozenset({"welcome"})


# --- diff ----------------------------------------------------------------------------------


def test_diff_plans_creates_updates_and_leaves_the_rest() -> None:
    current = [
        Document("segment", "customers", {"segment": "customers", "event": "Order Completed"}),
        Document("topic", "promotions", {"topic": "promotions", "kind": "opt_out"}),
        Document("journey", "old", {"journey": "old"}),
        Document("segment", "gone", {"segment": "gone"}),
    ]
    wanted = [
        # Same content written in another key order is unchanged.
        Document("topic", "promotions", {"kind": "opt_out", "topic": "promotions"}),
        Document("segment", "customers", {"segment": "customers", "event": "Signed Up"}),
        Document("segment", "new", {"segment": "new", "trait": "vip"}),
    ]
    changes = diff(current, wanted)
    assert changes == [
        Change("unchanged", "topic", "promotions"),
        Change("update", "segment", "customers"),
        Change("create", "segment", "new"),
        Change("absent", "journey", "old"),
        Change("absent", "segment", "gone"),
    ]
    assert [str(c) for c in changes] == [
        "= topic promotions",
        "~ segment customers",
        "+ segment new",
        "? journey old",
        "? segment gone",
    ]


def test_diff_of_identical_workspaces_is_all_unchanged() -> None:
    docs = documents_from_files(example_files(), Problems())
    assert {c.action for c in diff(docs, docs)} == {"unchanged"}
    assert len(diff(docs, docs)) == len(docs)


# --- hostile YAML: problems, quickly, never an exception -----------------------------------


@contextmanager
def within_seconds(seconds: int) -> Iterator[None]:
    """Fail instead of hanging (SIGALRM: the main thread on Unix)."""

    def expire(_signum: int, _frame: Any) -> None:
        raise TimeoutError(f"still running after {seconds} s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


BOMB = "*a8"  # stands for nine to the ninth "lol"s once expanded


def laughs(document: str) -> str:
    """`document` after a "billion laughs": each anchor repeats the one before nine times."""
    lines = ['  - &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"  - &a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 9)]
    return "anchors:\n" + "\n".join(lines) + "\n" + document


def errors_of(text: str) -> list[str]:
    with within_seconds(5):
        problems = Problems()
        docs = documents_from_files({"x.yaml": text}, problems)
        _, found = load_documents(docs)
    return [str(p) for p in [*problems.items, *found] if p.level == "error"]


JOURNEY_FIELDS = (
    "description, entry, entry_cap, exit_when, goal, holdout, journey, max_concurrent, "
    "migrate, name, re_entry, steps, topic, transactional"
)
CHANNEL_LIST = "expected one of email, sms, push, webhook, onsite"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param("[" * 800, ["x.yaml: not valid YAML: nested too deeply"], id="deep"),
        pytest.param(
            "segment: a\ntrait: n\ngt: " + "9" * 5000 + "\n",
            [
                "x.yaml: not valid YAML: Exceeds the limit (4300 digits) for integer string "
                "conversion: value has 5000 digits; use sys.set_int_max_str_digits() "
                "to increase the limit"
            ],
            id="huge-integer",
        ),
        pytest.param(
            laughs(
                f"journey: j\nentry: {{event: E}}\nsteps: [{{wait: 1h}}]\n"
                f"name: {BOMB}\ndescription: {BOMB}\n"
            ),
            [
                f"x.yaml: anchors: unknown field; expected one of {JOURNEY_FIELDS}",
                "x.yaml: name: expected text, got a list",
                "x.yaml: description: expected text, got a list",
            ],
            id="laughs-in-a-name",
        ),
        pytest.param(
            laughs(
                f"segment: s\nany:\n  - {{trait: tier, in: {BOMB}}}\n"
                f"  - {{event: E, where: {{properties.x: {{not_in: {BOMB}}}}}}}\n"
            ),
            [
                "x.yaml: anchors: unknown field; expected one of any",
                "x.yaml: any[0].in: expected a list of plain values (text, numbers, dates)",
                "x.yaml: any[1].where.properties.x.not_in: "
                "expected a list of plain values (text, numbers, dates)",
            ],
            id="laughs-in-comparisons",
        ),
        pytest.param(
            laughs(
                "journey: j\nentry: {event: E}\nsteps:\n"
                f"  - message: {{content: c, channels: {BOMB}}}\n"
                f"  - webhook: {{url: 'https://x.example', method: {BOMB}, body: {{a: {BOMB}}}}}\n"
                f"  - update: {{traits: {{a: {BOMB}}}}}\n"
                f"  - wait: {BOMB}\n"
            ),
            [
                f"x.yaml: anchors: unknown field; expected one of {JOURNEY_FIELDS}",
                *[
                    f"x.yaml: steps[0].message.channels[{i}]: unknown channel a list; "
                    f"{CHANNEL_LIST}"
                    for i in range(9)
                ],
                "x.yaml: steps[1].webhook.method: expected POST, PUT, PATCH or GET",
                "x.yaml: steps[1].webhook.body: expected at most 10000 values",
                "x.yaml: steps[2].update.traits: expected at most 10000 values",
                "x.yaml: steps[3].wait: expected a duration such as 30m, 1h, 7d or 2w; got a list",
            ],
            id="laughs-in-steps",
        ),
        pytest.param(
            "segment: s\nall: &a [{any: *a}]\n",
            ["x.yaml: all[0].any[0]: a condition that contains itself (through a YAML alias)"],
            id="condition-contains-itself",
        ),
    ],
)
def test_hostile_yaml_gives_problems_quickly(text: str, expected: list[str]) -> None:
    assert errors_of(text) == expected


def test_long_chains_of_segments_do_not_exhaust_the_stack() -> None:
    count = 1500  # deeper than Python's recursion limit
    segments = {
        f"s{i}": Segment(f"s{i}", SegmentCondition(f"s{i - 1}") if i else SegmentCondition("x"))
        for i in range(count)
    }
    workspace = Workspace(segments=segments)
    order = workspace.segment_order()
    assert len(order) == count
    assert order.index("s10") < order.index("s11")
    assert [str(p) for p in cross_check(workspace) if p.level == "error"] == [
        "segment:s0:segment: unknown segment 'x'"
    ]
    looped = {**segments, "s0": Segment("s0", SegmentCondition(f"s{count - 1}"))}
    [cycle] = [p for p in cross_check(Workspace(segments=looped)) if "loop" in p.message]
    assert cycle.message.startswith("segments refer to each other in a loop: s0 → s1499 → s1498")


def test_controller_settings_name_real_segments_and_journeys() -> None:
    settings = (
        "controller:\n"
        "  policy: airspace\n"
        "  strata: [{name: vip, segment: high-value}, {name: ghosts, segment: nope}]\n"
        "  substrata: [{name: fans, segment: high-value}, {name: shades, segment: nowhere}]\n"
        "  exclusive: [{name: offers, journeys: [win-back, welcome, gone], per: 14d}]\n"
        "  fatigue: {cost: 0.5, per: 3d}\n"
        "  per_decision: 2\n"
        "  retry_after: 2h\n"
    )
    assert with_examples(**{"settings.yaml": settings}) == [
        "settings.yaml: controller.strata[1].segment: unknown segment 'nope'",
        "settings.yaml: controller.substrata[1].segment: unknown segment 'nowhere'",
        "settings.yaml: controller.exclusive[0].journeys: unknown journey 'gone'",
    ]
    workspace, _ = load({**example_files(), "settings.yaml": settings.replace(", gone", "")})
    s = workspace.settings
    assert (s.per_decision, s.retry_after, s.fatigue_cost, s.fatigue_window) == (
        2,
        timedelta(hours=2),
        0.5,
        timedelta(days=3),
    )
    assert [x.name for x in s.strata] == ["vip", "ghosts"]
    assert [x.name for x in s.substrata] == ["fans", "shades"]
    assert s.exclusions[0].journeys == frozenset({"win-back", "welcome"})


@pytest.mark.parametrize(
    ("controller", "problem"),
    [
        (
            "policy: loudest",
            "controller.policy: expected one of airspace, first_come, priority, random",
        ),
        (
            "per_decision: 0",
            "controller.per_decision: expected a whole number ≥ 1, got a number (0)",
        ),
        (
            "exclusive: [{journeys: [welcome]}]",
            "controller.exclusive[0].journeys: expected a list of two journeys or more",
        ),
        ("strata: [{name: vip}]", "controller.strata[0].segment: expected a segment id"),
        (
            "substrata: [{name: a/b, segment: high-value}]",
            "controller.substrata[0].name: expected a name of at most 40 characters without"
            " '/' (a substratum's name is its stratum's, '/', its own)",
        ),
        ("substrata: {name: x}", "controller.substrata: expected a list of {name, segment}"),
        (
            "fatigue: {cost: -1}",
            "controller.fatigue.cost: expected a number from 0 to 1000000.0, got a number (-1)",
        ),
        ("purchase_event: ''", "controller.purchase_event: expected an event name"),
    ],
)
def test_controller_settings_problems(controller: str, problem: str) -> None:
    found = with_examples(**{"settings.yaml": f"controller:\n  {controller}\n"})
    assert f"settings.yaml: {problem}" in found, found


def test_exploration_is_a_bounded_number_of_spreads() -> None:
    from airspace.domain.workspace_settings import parse_settings

    problems = Problems()
    assert parse_settings({"controller": {"exploration": 0.3}}, problems).exploration == 0.3
    assert parse_settings({}, problems).exploration == 1.0
    assert not problems.items
    wrong = parse_settings({"controller": {"exploration": 9}}, problems)
    assert wrong.exploration == 1.0
    [problem] = problems.items
    assert problem.path == "controller.exploration"
    assert "4" in problem.message


def test_the_learning_window_is_a_positive_duration() -> None:
    from airspace.domain.workspace_settings import parse_settings

    problems = Problems()
    assert parse_settings({}, problems).learning_window is None
    found = parse_settings({"controller": {"learning_window": "2d"}}, problems)
    assert found.learning_window == timedelta(days=2)
    assert not problems.items
    for wrong, says in (("0s", "longer than 0s"), ("a while", "duration such as")):
        problems = Problems()
        assert (
            parse_settings({"controller": {"learning_window": wrong}}, problems).learning_window
            is None
        )
        [problem] = problems.items
        assert problem.path == "controller.learning_window"
        assert says in problem.message


def test_the_unsure_holdout_is_a_share() -> None:
    from airspace.domain.workspace_settings import parse_settings

    problems = Problems()
    assert parse_settings({}, problems).unsure_holdout == 0
    assert parse_settings({"controller": {"unsure_holdout": "50%"}}, problems).unsure_holdout == 0.5
    assert not problems.items
    assert parse_settings({"controller": {"unsure_holdout": "150%"}}, problems).unsure_holdout == 0
    [problem] = problems.items
    assert problem.path == "controller.unsure_holdout"
