"""The controller over real HTTP: a return, an abandoned cart and a birthday in one decision
window give exactly one marketing message, and the decision log (API and `airspace explain`)
shows all three candidates with their scores and reasons."""

from __future__ import annotations

from datetime import timedelta

import httpx

from airspace.domain.clock import SimulatedClock
from tests.conftest import LiveServer
from tests.e2e.test_definitions_http import ok, track
from tests.test_cli_definitions import airspace

YAML = {"Content-Type": "application/yaml"}
SETTINGS = """\
timezone: UTC
controller:
  decision_window: 5m
  global_control: 0%
  message_holdout: 0%
  caps:
    - {scope: marketing, max: 3, per: 7d}
"""
JOURNEYS = {
    "returns": """\
journey: returns
entry: {event: Product Returned}
holdout: 0
goal: {event: Order Completed, within: 7d, value: properties.revenue}
steps:
  - message: {channels: [email], content: returns-offer, priority: 1}
""",
    "cart": """\
journey: cart
entry: {event: Cart Abandoned}
holdout: 0
goal: {event: Order Completed, within: 7d, value: properties.revenue}
steps:
  - message: {channels: [email, push], content: cart-reminder, priority: 2}
""",
    "birthday": """\
journey: birthday
entry: {anniversary: traits.birthday, at: "09:03"}
holdout: 0
goal: {event: Order Completed, within: 7d, value: properties.revenue}
steps:
  - message: {channels: [email], content: birthday-greeting, priority: 3}
""",
}


def test_three_journeys_collide_and_exactly_one_message_goes(
    live_server: LiveServer, admin: httpx.Client, clock: SimulatedClock, database_url: str
) -> None:
    ok(admin.put("/settings", content=SETTINGS.encode(), headers=YAML))
    for ref, text in JOURNEYS.items():
        ok(admin.put(f"/journeys/{ref}", content=text.encode(), headers=YAML))
    worker = live_server.services.worker()
    t0 = clock.now()  # Monday 2 November, 09:00 UTC
    track(
        live_server,
        {
            "type": "identify",
            "userId": "rosa",
            "traits": {"email": "rosa@example.com", "birthday": "1990-11-02"},
        },
        {"type": "track", "userId": "rosa", "event": "Product Returned"},
        {"type": "track", "userId": "rosa", "event": "Cart Abandoned"},
    )
    pid = ok(admin.get("/profiles", params={"identifier": "user_id:rosa"}))["id"]
    clock.advance(timedelta(minutes=3))  # the birthday greeting is proposed at 09:03
    worker.drain()
    assert ok(admin.get("/messages"))["items"] == []  # still inside the decision window
    clock.advance(timedelta(minutes=2))  # the window closes 5 minutes after the first
    worker.drain()

    sent = ok(admin.get(f"/profiles/{pid}/messages"))["items"]
    assert len(sent) == 1
    found = ok(admin.get(f"/profiles/{pid}/decisions"))
    [decision] = found["decisions"]
    assert decision["at"] == (t0 + timedelta(minutes=5)).isoformat()
    assert decision["policy"] == "airspace"
    assert decision["stratum"] == "prospect"
    outcomes = {c["journey_id"]: c for c in decision["candidates"]}
    assert set(outcomes) == {"returns", "cart", "birthday"}
    winners = [j for j, c in outcomes.items() if c["outcome"] == "send"]
    assert winners == [sent[0]["journey_id"]]
    for journey, c in outcomes.items():
        assert c["scores"], journey  # every candidate was scored
        fields = {"uplift_mean", "uplift_draw", "uplift_spread", "value", "cost", "fatigue"}
        assert fields | {"score"} <= set(c["scores"][0])
        if journey not in winners:
            assert c["outcome"] in ("defer", "suppress")
            assert c["reason"].startswith(f"lost to {winners[0]}/")
    explanation = "\n".join(found["explanation"])
    for journey in ("returns", "cart", "birthday"):
        assert journey in explanation
    assert f"sent: {winners[0]}/" in explanation

    # The same story from the command line (the real command, in its own process).
    result = airspace(
        "explain", "rosa@example.com", "--days", "300", "--database-url", database_url
    )
    assert result.returncode == 0, result.stderr
    assert "lost to" in result.stdout
    assert f"profile {pid}" in result.stdout
    unknown = airspace("explain", "nobody", "--database-url", database_url)
    assert unknown.returncode == 1
    assert "no person" in unknown.stdout


def test_uplift_report_lists_what_was_measured(
    live_server: LiveServer, admin: httpx.Client, clock: SimulatedClock
) -> None:
    ok(admin.put("/settings", content=SETTINGS.encode(), headers=YAML))
    ok(admin.put("/journeys/cart", content=JOURNEYS["cart"].encode(), headers=YAML))

    def abandon_cart(user: str) -> None:
        """A new person leaves a cart; the decision window passes and the worker decides."""
        track(
            live_server,
            {"type": "identify", "userId": user, "traits": {"email": f"{user}@example.com"}},
            {"type": "track", "userId": user, "event": "Cart Abandoned"},
        )
        clock.advance(timedelta(minutes=5))
        live_server.services.worker().drain()

    abandon_cart("ann")
    track(
        live_server,
        {
            "type": "track",
            "userId": "ann",
            "event": "Order Completed",
            "properties": {"revenue": 40},
        },
    )
    assert ok(admin.get("/uplift")) == []  # the goal window is open: the outcome is not known
    # A week later the trial has matured; the next decision folds it into its cell.
    clock.advance(timedelta(days=7))
    abandon_cart("bo")
    [row] = ok(admin.get("/uplift"))
    assert (row["journey_id"], row["channel"], row["stratum"]) == ("cart", "email", "prospect")
    assert row["treated"] == {"trials": 1.0, "conversions": 1.0}
    assert row["control"] == {"trials": 0.0, "conversions": 0.0}
    low, high = row["uplift_90"]
    assert low < row["uplift"] < high
    assert row["value_per_conversion"] > 1.0  # pulled towards the one 40 seen
