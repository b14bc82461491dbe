"""Segments and journeys through the engine: events in, enrollments, timers, messages."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select

from airspace.bootstrap import Services
from airspace.domain.clock import SimulatedClock
from airspace.domain.definitions import documents_from_files
from airspace.domain.problems import Problems
from airspace.domain.uplift import Tally
from airspace.engine.definitions import apply, set_status
from airspace.engine.worker import Worker
from airspace.store.tables import (
    CandidateRow,
    EnrollmentRow,
    MessageRow,
    SegmentMemberRow,
    TimerRow,
)

from .conftest import Send

EXAMPLES = Path(__file__).parents[2] / "examples"


def example_documents(*, holdouts: bool = True, **overrides: str) -> list:
    """The example definitions (with `overrides` by file name); without `holdouts`,
    every journey's holdout, the global control and the message holdout are 0 so that
    tests never depend on the random draw."""
    files = {str(p.relative_to(EXAMPLES)): p.read_text() for p in EXAMPLES.rglob("*.yaml")}
    files.update(overrides)
    problems = Problems()
    docs = documents_from_files(files, problems)
    assert not problems.items
    for doc in docs:
        if doc.kind == "journey" and not holdouts:
            doc.body["holdout"] = 0  # type: ignore[index]
        if doc.kind == "settings" and not holdouts:
            controller = doc.body.setdefault("controller", {})  # type: ignore[attr-defined]
            controller.update(global_control=0, message_holdout=0)
    return docs


SETTINGS_NOW = """
timezone: Europe/Paris
controller:
  decision_window: 0s
  global_control: 0%
  message_holdout: 0%
  caps:
    - {scope: marketing, max: 3, per: 7d}
"""


@pytest.fixture
def workspace(services: Services) -> None:
    docs = example_documents(holdouts=False, **{"settings.yaml": SETTINGS_NOW})
    apply(services.db, docs, services.clock.now())


def rows(services: Services, table, **where):
    with services.db.read() as conn:
        query = select(table)
        for key, value in where.items():
            query = query.where(getattr(table, key) == value)
        return conn.execute(query).all()


def test_abandoned_cart_reminds_after_an_hour_then_stops_on_purchase(
    services: Services, send: Send, clock: SimulatedClock, workspace: None
) -> None:
    worker = services.worker()
    send(
        {"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}},
        {
            "type": "track",
            "userId": "ann",
            "event": "Cart Abandoned",
            "properties": {"cart_id": "c1"},
        },
    )
    worker.drain()
    [enrollment] = rows(services, EnrollmentRow, journey_id="abandoned-cart")
    assert enrollment.step_id == "wait-for-purchase"
    assert enrollment.wake_at == clock.now() + timedelta(hours=1)
    assert rows(services, MessageRow) == []

    clock.advance(timedelta(minutes=59))
    worker.drain()
    assert rows(services, MessageRow) == []
    clock.advance(timedelta(minutes=1))
    worker.drain()
    [message] = rows(services, MessageRow)
    assert (message.channel, message.content, message.address) == (
        "email",
        "cart-reminder",
        "ann@example.com",
    )
    [enrollment] = rows(services, EnrollmentRow, journey_id="abandoned-cart")
    assert enrollment.step_id == "wait-a-day"

    clock.advance(timedelta(hours=3))
    send(
        {
            "type": "track",
            "userId": "ann",
            "event": "Order Completed",
            "properties": {"cart_id": "c1", "revenue": 42.5},
        }
    )
    worker.drain()
    [enrollment] = rows(services, EnrollmentRow, journey_id="abandoned-cart")
    assert enrollment.status == "exited"
    assert enrollment.exit_reason == "exit event Order Completed"
    assert enrollment.converted_at is not None
    assert enrollment.conversion_value == 42.5
    assert rows(services, TimerRow, kind="enrollment") == []
    clock.advance(timedelta(days=2))
    worker.drain()
    assert len(rows(services, MessageRow)) == 1
    assert {m.segment_id for m in rows(services, SegmentMemberRow)} == {"customers"}


def test_purchase_of_another_cart_does_not_stop_the_reminder(
    services: Services, send: Send, clock: SimulatedClock, workspace: None
) -> None:
    worker = services.worker()
    send(
        {"type": "identify", "userId": "bob", "traits": {"email": "bob@example.com"}},
        {
            "type": "track",
            "userId": "bob",
            "event": "Cart Abandoned",
            "properties": {"cart_id": "c1"},
        },
    )
    worker.drain()
    clock.advance(timedelta(minutes=10))
    send(
        {
            "type": "track",
            "userId": "bob",
            "event": "Order Completed",
            "properties": {"cart_id": "other"},
        }
    )
    worker.drain()
    clock.advance(timedelta(hours=1))
    worker.drain()
    assert [m.content for m in rows(services, MessageRow)] == ["cart-reminder"]


def test_win_back_enters_when_ninety_days_pass_and_exits_on_order(
    services: Services, send: Send, clock: SimulatedClock, workspace: None
) -> None:
    worker = services.worker()
    send(
        {"type": "identify", "userId": "cy", "traits": {"email": "cy@example.com"}},
        {
            "type": "track",
            "userId": "cy",
            "event": "Order Completed",
            "properties": {"revenue": 10},
        },
    )
    worker.drain()
    assert {m.segment_id for m in rows(services, SegmentMemberRow)} == {"customers"}
    [timer] = rows(services, TimerRow, kind="segment", ref="lapsed-customers")
    assert timer.due_at == clock.now() + timedelta(days=90)
    clock.advance(timedelta(days=90))
    worker.drain()
    assert {m.segment_id for m in rows(services, SegmentMemberRow)} == {
        "customers",
        "lapsed-customers",
    }
    [enrollment] = rows(services, EnrollmentRow, journey_id="win-back")
    assert [m.content for m in rows(services, MessageRow)] == ["win-back-1"]
    clock.advance(timedelta(days=2))
    send(
        {"type": "track", "userId": "cy", "event": "Order Completed", "properties": {"revenue": 30}}
    )
    worker.drain()
    [enrollment] = rows(services, EnrollmentRow, journey_id="win-back")
    assert enrollment.status == "exited"
    assert enrollment.exit_reason == "left segment lapsed-customers"
    assert enrollment.conversion_value == 30
    clock.advance(timedelta(days=7))
    worker.drain()
    assert [m.content for m in rows(services, MessageRow)] == ["win-back-1"]
    assert rows(services, CandidateRow, status="pending") == []


def put(services: Services, *yaml_texts: str) -> None:
    """Apply definitions given as YAML text on top of what is stored."""
    files = {
        "settings.yaml" if "controller:" in text else f"doc{i}.yaml": text
        for i, text in enumerate(yaml_texts)
    }
    problems = Problems()
    docs = documents_from_files(files, problems)
    assert not problems.items
    apply(services.db, docs, services.clock.now(), complete=False)


class Receiver:
    """A real HTTP server that records what it receives and answers with given codes."""

    def __init__(self, codes: list[int]) -> None:
        import http.server
        import threading

        self.received: list[tuple[dict[str, str], dict]] = []
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers["Content-Length"])
                import json

                receiver.received.append((dict(self.headers), json.loads(self.rfile.read(length))))
                self.send_response(codes.pop(0) if codes else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_webhook_step_calls_the_url_after_commit_and_retries_with_the_same_key(
    services: Services, send: Send, clock: SimulatedClock
) -> None:
    receiver = Receiver([503])
    try:
        put(
            services,
            f"""
journey: crm-sync
entry: {{event: Signed Up}}
holdout: 0
steps:
  - webhook: {{url: "{receiver.url}", body: {{list: newcomers}}}}
""",
            "controller: {global_control: 0%, message_holdout: 0%}",
        )
        worker = services.worker()
        send({"type": "track", "userId": "dee", "event": "Signed Up"})
        worker.drain()
        [message] = rows(services, MessageRow, channel="webhook")
        assert message.status == "pending"
        assert worker.deliver() == 1
        [message] = rows(services, MessageRow, channel="webhook")
        assert message.status == "pending"  # 503: retried, a few seconds later
        assert worker.deliver() == 0
        clock.advance(timedelta(seconds=5))
        assert worker.deliver() == 1
        [message] = rows(services, MessageRow, channel="webhook")
        assert message.status == "delivered"
        assert len(receiver.received) == 2
        keys = {headers["Idempotency-Key"] for headers, _ in receiver.received}
        assert keys == {message.idempotency_key}
        body = receiver.received[-1][1]
        assert (body["journey_id"], body["data"]) == ("crm-sync", {"list": "newcomers"})
        assert body["profile_id"] == message.profile_id
    finally:
        receiver.close()


def test_scheduled_journey_enrolls_the_segment_at_local_time(
    services: Services, send: Send, clock: SimulatedClock
) -> None:
    put(
        services,
        """
segment: newsletter-readers
event: Newsletter Opened
""",
        """
journey: weekly-digest
entry:
  schedule: {cron: "0 9 * * MON", local_time: "09:00"}
  segment: newsletter-readers
holdout: 0
steps:
  - message: {channels: [email], content: digest}
""",
        """
timezone: UTC
controller: {decision_window: 0s, global_control: 0%, message_holdout: 0%}
""",
    )
    worker = services.worker()
    send(
        {
            "type": "identify",
            "userId": "paris",
            "traits": {"email": "p@example.com", "timezone": "Europe/Paris"},
        },
        {
            "type": "identify",
            "userId": "ny",
            "traits": {"email": "n@example.com", "timezone": "America/New_York"},
        },
        {"type": "track", "userId": "paris", "event": "Newsletter Opened"},
        {"type": "track", "userId": "ny", "event": "Newsletter Opened"},
        {"type": "identify", "userId": "nobody", "traits": {"email": "x@example.com"}},
    )
    worker.drain()
    # The clock starts on Monday 2026-11-02 09:00 UTC: the next run is Monday 9 November.
    sent: dict[str, object] = {}
    for _ in range(7 * 24 * 4 + 40):
        clock.advance(timedelta(minutes=15))
        worker.drain()
        for m in rows(services, MessageRow):
            sent.setdefault(m.address, m.sent_at)
    assert sent == {
        "p@example.com": clock.now().replace(year=2026, month=11, day=9, hour=8, minute=0),
        "n@example.com": clock.now().replace(year=2026, month=11, day=9, hour=14, minute=0),
    }


def test_birthday_greeting_at_nine_local_time(
    services: Services, send: Send, clock: SimulatedClock, workspace: None
) -> None:
    worker = services.worker()
    send(
        {
            "type": "identify",
            "userId": "eve",
            "traits": {
                "email": "eve@example.com",
                "birthday": "1990-11-04",
                "timezone": "Asia/Tokyo",
            },
        }
    )
    worker.drain()
    [timer] = rows(services, TimerRow, kind="anniversary")
    assert timer.due_at == clock.now().replace(day=4, hour=0, minute=0)  # 09:00 in Tokyo
    clock.set(timer.due_at - timedelta(seconds=1))
    worker.drain()
    assert rows(services, MessageRow) == []
    clock.advance(timedelta(seconds=1))
    worker.drain()
    [message] = rows(services, MessageRow)
    assert (message.content, message.sent_at) == ("birthday-greeting", timer.due_at)
    [timer] = rows(services, TimerRow, kind="anniversary")
    assert timer.due_at.year == 2027


def test_webhook_of_a_held_out_person_is_recorded_not_called(
    services: Services, send: Send
) -> None:
    put(
        services,
        """
journey: crm-sync
entry: {event: Signed Up}
steps:
  - webhook: {url: "http://127.0.0.1:9/never", body: {list: newcomers}}
""",
        "controller: {global_control: 100%}",
    )
    worker = services.worker()
    send({"type": "track", "userId": "dee", "event": "Signed Up"})
    worker.drain()
    [message] = rows(services, MessageRow, channel="webhook")
    assert message.status == "held_out"
    assert worker.deliver() == 0


def test_many_exits_in_one_batch_withdraw_every_pending_candidate(
    services: Services, send: Send, clock: SimulatedClock
) -> None:
    """Two people leave a journey in the same batch while their messages wait in the
    decision window: both candidates are withdrawn, nothing is sent."""
    put(
        services,
        "journey: cart\nentry: {event: Cart Abandoned}\nholdout: 0\n"
        "exit_when: [{event: Order Completed}]\n"
        "steps:\n  - message: {channels: [email], content: cart-reminder}\n  - wait: 1d\n",
        "controller: {decision_window: 5m, global_control: 0%, message_holdout: 0%}",
    )
    worker = services.worker()
    people = ("ann", "bo", "cy")
    send(
        *[
            {"type": "identify", "userId": u, "traits": {"email": f"{u}@example.com"}}
            for u in people
        ],
        *[{"type": "track", "userId": u, "event": "Cart Abandoned"} for u in people],
    )
    worker.drain()
    assert len(rows(services, CandidateRow, status="pending")) == 3
    clock.advance(timedelta(minutes=1))
    send(*[{"type": "track", "userId": u, "event": "Order Completed"} for u in people])
    worker.drain()
    clock.advance(timedelta(minutes=10))
    worker.drain()
    assert [c.status for c in rows(services, CandidateRow)] == ["withdrawn"] * 3
    assert rows(services, MessageRow) == []


CART_WITH_GOAL = (
    "journey: cart\nentry: {event: Cart Abandoned}\nholdout: 0\n"
    "goal: {event: Order Completed, within: 7d, value: properties.revenue}\n"
    "steps:\n  - message: {channels: [email], content: cart-reminder}\n"
)


def _declining_cart(services: Services, settings: str) -> Worker:
    """The cart journey with a goal, decided at once under the airspace policy, with no
    holdouts and these controller `settings` more; its worker's estimator finds a fifth
    of draws worth sending, so a candidate is held back with a chance of 0.8."""
    from airspace.domain.controller import Guess

    put(
        services,
        CART_WITH_GOAL,
        "controller: {policy: airspace, decision_window: 0s, global_control: 0%,"
        f" message_holdout: 0%, {settings}}}",
    )
    worker = services.worker()
    worker.journeys.estimator = lambda pairs, who, now: [
        Guess(-0.00764, -0.02, 80.0, False, 0.01) for _ in pairs
    ]
    return worker


def test_a_candidate_declined_for_its_draw_is_a_weighted_control_trial(
    services: Services, send: Send, clock: SimulatedClock
) -> None:
    """Under the airspace policy a message whose draw is not worth sending is suppressed
    for good and counts as a control trial, weighted by one over its chance of being
    held back; its person's later order converts it once its goal window has closed."""
    from airspace.store.decisions import mature_trials, tallies

    worker = _declining_cart(services, "unsure_holdout: 0%")
    send(
        {"type": "identify", "userId": "bo", "traits": {"email": "bo@example.com"}},
        {"type": "track", "userId": "bo", "event": "Cart Abandoned"},
    )
    worker.drain()
    [candidate] = rows(services, CandidateRow)
    assert (candidate.status, candidate.arm) == ("suppressed", "control")
    assert candidate.reason.startswith("expected incremental value")
    assert candidate.weight == pytest.approx(1 / 0.8, rel=0.005)
    assert rows(services, MessageRow) == []
    clock.advance(timedelta(hours=2))
    send(
        {
            "type": "track",
            "userId": "bo",
            "event": "Order Completed",
            "properties": {"revenue": 80},
        }
    )
    worker.drain()
    with services.db.read() as conn:
        assert tallies(conn) == {}  # its goal window is still open: the outcome is not known
    [candidate] = rows(services, CandidateRow)
    assert candidate.matures_at == candidate.created_at + timedelta(days=7)
    clock.advance(timedelta(days=7))
    with services.db.write() as conn:
        assert mature_trials(conn, clock.now()) == 1
        assert mature_trials(conn, clock.now()) == 0  # counted once
        [(key, tally)] = tallies(conn).items()
    assert key == ("cart", "control", "", "prospect")
    # One trial, converted, whatever its weight: worth one plain trial.
    assert (tally.trials, tally.conversions) == (pytest.approx(1.0), pytest.approx(1.0))
    assert tally.revenue == pytest.approx(80.0)


def test_a_learning_window_reads_outcomes_sooner_and_counts_only_conversions_within_it(
    services: Services, send: Send, clock: SimulatedClock
) -> None:
    """With `learning_window: 1d` a trial of a journey whose goal window is 7 days joins
    its cell a day after it was proposed, converted only by an order within that day."""
    from airspace.store.decisions import mature_trials, tallies

    worker = _declining_cart(services, "learning_window: 1d")
    people = ("bo", "cy")
    send(
        *[
            {"type": "identify", "userId": u, "traits": {"email": f"{u}@example.com"}}
            for u in people
        ],
        *[{"type": "track", "userId": u, "event": "Cart Abandoned"} for u in people],
    )
    worker.drain()
    candidates = rows(services, CandidateRow)
    assert [c.arm for c in candidates] == ["control", "control"]
    assert all(c.matures_at == c.created_at + timedelta(days=1) for c in candidates)
    order = {"type": "track", "event": "Order Completed", "properties": {"revenue": 80}}
    clock.advance(timedelta(hours=2))
    send({**order, "userId": "bo"})  # within the learning window
    clock.advance(timedelta(hours=28))
    send({**order, "userId": "cy"})  # within the goal window, after the learning window
    worker.drain()
    with services.db.write() as conn:
        assert mature_trials(conn, clock.now()) == 2
        [(key, tally)] = tallies(conn).items()
    assert key == ("cart", "control", "", "prospect")
    assert tally.conversions / tally.trials == pytest.approx(0.5)
    assert [c.status for c in rows(services, CandidateRow)] == ["suppressed", "suppressed"]


def test_uplift_is_learned_from_sent_and_withheld_winners_only(
    services: Services, send: Send, clock: SimulatedClock
) -> None:
    """A sent winner is a treated trial, a withheld one (message holdout) a control trial;
    journey-holdout candidates are not trials (they are not winners: comparing them with
    winners would bias the estimate; measured, it did). A goal reached converts the trial,
    with its value, once the goal window has closed."""
    from airspace.store.decisions import tallies

    journey = CART_WITH_GOAL
    put(
        services,
        journey,
        "controller: {decision_window: 0s, global_control: 0%, message_holdout: 100%}",
    )
    worker = services.worker()
    send(
        {
            "type": "identify",
            "userId": "bo",
            "traits": {"email": "bo@example.com", "orders_count": 4, "last_order_at": "2026-10-30"},
        },
        {"type": "track", "userId": "bo", "event": "Cart Abandoned"},
    )
    worker.drain()
    put(
        services,
        journey,
        "controller: {decision_window: 0s, global_control: 0%, message_holdout: 0%}",
    )
    send(
        {"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}},
        {"type": "track", "userId": "ann", "event": "Cart Abandoned"},
    )
    worker.drain()
    put(
        services,
        journey.replace("holdout: 0", "holdout: 100%"),
        "controller: {decision_window: 0s}",
    )
    send(
        {"type": "identify", "userId": "cy", "traits": {"email": "cy@example.com"}},
        {"type": "track", "userId": "cy", "event": "Cart Abandoned"},
    )
    worker.drain()
    assert [m.address for m in rows(services, MessageRow)] == ["ann@example.com"]
    clock.advance(timedelta(hours=2))
    send(
        *[
            {
                "type": "track",
                "userId": u,
                "event": "Order Completed",
                "properties": {"revenue": 80},
            }
            for u in ("bo", "cy")
        ]
    )
    worker.drain()
    # The trials join their cells when their goal window has closed, as the next decision
    # reads the tallies.
    clock.advance(timedelta(days=7))
    put(services, journey, "controller: {decision_window: 0s, global_control: 0%}")
    send(
        {"type": "identify", "userId": "di", "traits": {"email": "di@example.com"}},
        {"type": "track", "userId": "di", "event": "Cart Abandoned"},
    )
    worker.drain()
    with services.db.read() as conn:
        found = tallies(conn)
    assert found == {
        ("cart", "control", "", "repeat"): Tally(1.0, 1.0, 80.0),
        ("cart", "treated", "email", "prospect"): Tally(1.0, 0.0, 0.0),
    }


def test_a_journey_paused_at_the_instant_it_was_applied_takes_nobody(
    services: Services, send: Send, workspace: None
) -> None:
    worker = services.worker()
    send({"type": "identify", "userId": "ann", "traits": {"email": "ann@example.com"}})
    worker.drain()  # the worker now holds the workspace
    set_status(services.db, "journey", "abandoned-cart", "paused", services.clock.now())
    send(
        {
            "type": "track",
            "userId": "ann",
            "event": "Cart Abandoned",
            "properties": {"cart_id": "c1"},
        }
    )
    worker.drain()
    assert rows(services, EnrollmentRow, journey_id="abandoned-cart") == []


def test_an_urgent_message_is_decided_at_once_the_others_after_the_window(
    services: Services, send: Send, clock: SimulatedClock
) -> None:
    """A 5-minute decision window: ann's sign-in code (urgent) goes out as soon as it is
    proposed; bo's tip waits for the window to close."""
    put(
        services,
        "journey: codes\nentry: {event: Code Requested}\nholdout: 0\n"
        "steps:\n  - message: {channels: [email], content: code, urgent: true}\n",
        "journey: tips\nentry: {event: Tip Requested}\nholdout: 0\n"
        "steps:\n  - message: {channels: [email], content: tip}\n",
        "controller: {decision_window: 5m, global_control: 0%, message_holdout: 0%}",
    )
    worker = services.worker()
    send(
        *[
            {"type": "identify", "userId": u, "traits": {"email": f"{u}@example.com"}}
            for u in ("ann", "bo")
        ],
        {"type": "track", "userId": "ann", "event": "Code Requested"},
        {"type": "track", "userId": "bo", "event": "Tip Requested"},
    )
    worker.drain()
    assert [m.content for m in rows(services, MessageRow)] == ["code"]
    clock.advance(timedelta(minutes=4, seconds=59))
    worker.drain()
    assert [m.content for m in rows(services, MessageRow)] == ["code"]
    clock.advance(timedelta(seconds=1))
    worker.drain()
    assert sorted(m.content for m in rows(services, MessageRow)) == ["code", "tip"]
