"""Caps are exact with several workers: nobody exceeds a cap, whoever decides for them.

Three people each browse on six devices (anonymous ids linked to their profile, so
their events fall into different inbox partitions) and every visit makes four
marketing journeys propose an offer (by SMS if it may go, else by email; by email
only under the `airspace` policy, see JOURNEYS). The caps bind hard (2 marketing
messages per 7 days, 1 SMS per day) while three workers, each with its own engine
and connections, apply the events (decided at once) or carry out the journeys'
wake-up timers (decided when they fire) at the same time, with tiny batches, so
that two workers often hold work for the same person (on SQLite their write
transactions take turns). Afterwards the stored messages keep every cap in every
rolling window, and the candidates that lost to a cap say so.

On PostgreSQL the timers case fails when the profile lock of `run_timers` is taken
away; in the events case the second worker also waits on the profile row that
applying its events updates, before it reads what was sent."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from airspace.bootstrap import Services
from airspace.domain.clock import SimulatedClock
from airspace.domain.definitions import documents_from_files
from airspace.domain.problems import Problems
from airspace.engine.definitions import apply
from airspace.store.tables import CandidateRow, DecisionRow, MessageRow, QuarantineRow

from .conftest import Send, run_workers

PEOPLE = 3
DEVICES = 6  # anonymous ids per person: their events spread over inbox partitions
VISITS = 4  # offer views per device
MARKETING_CAP = 2  # per 7 days
SMS_CAP = 1  # per day
# (scope, max, per, does a message on this channel count?), as in SETTINGS below;
# written out here so that the check does not lean on the code under test.
CAPS = (
    ("marketing", MARKETING_CAP, timedelta(days=7), lambda channel: True),
    ("channel:sms", SMS_CAP, timedelta(days=1), lambda channel: channel == "sms"),
)
SETTINGS = f"""
controller:
  policy: POLICY
  decision_window: 0s
  global_control: 0%
  message_holdout: 0%
  caps:
    - {{scope: marketing, max: {MARKETING_CAP}, per: 7d}}
    - {{scope: "channel:sms", max: {SMS_CAP}, per: 1d}}
channels:
  sms: {{consent_default: opted_in}}
"""
# journey: priority. Under the `priority` policy every offer goes by SMS if it may, else
# by email: a person's first decision sends an SMS, the SMS cap turns their second to
# email, and the marketing cap stops everything after that. Under `airspace` the offers
# go by email only, so that the controller's batch form can decide them.
JOURNEYS = {"offer-a": 3, "offer-b": 2, "offer-c": 1, "offer-d": 0}


def _definitions(path: str, policy: str) -> list[Any]:
    """`events`: each person is in every journey from sign-up on, and each offer view
    moves every enrollment to its message and back to listening (no new entries).
    `timers`: each offer view enters
    every journey, which waits an hour before its message."""
    files = {"settings.yaml": SETTINGS.replace("POLICY", policy)}
    for name, priority in JOURNEYS.items():
        channels = "[sms, email]" if policy == "priority" else "[email]"
        message = f"{{channels: {channels}, content: {name}, priority: {priority}, expires: 30d}}"
        if path == "events":
            files[f"journeys/{name}.yaml"] = (
                f"journey: {name}\nentry: {{event: Signed Up}}\nholdout: 0\nsteps:\n"
                "  - id: listen\n    wait_for: {event: Offer Viewed, timeout: 30d}\n"
                "    on_timeout: end\n"
                f"  - {{id: offer, message: {message}, next: listen}}\n"
            )
        else:
            files[f"journeys/{name}.yaml"] = (
                f"journey: {name}\nentry: {{event: Offer Viewed}}\nre_entry: always\n"
                "max_concurrent: 1000\nholdout: 0\nsteps:\n  - {id: pause, wait: 1h}\n"
                f"  - {{id: offer, message: {message}}}\n"
            )
    problems = Problems()
    docs = documents_from_files(files, problems)
    assert not problems.items, problems.items
    return docs


def _device(person: int, device: int) -> str:
    return f"device-{person}-{device}"


def _sign_up(send: Send) -> None:
    """Each person signs up and identifies on each of their devices: one profile, many
    anonymous ids."""
    for p in range(PEOPLE):
        traits = {"email": f"user-{p}@example.com", "phone": f"+3361234000{p}"}
        send(
            {"type": "identify", "userId": f"user-{p}", "traits": traits},
            {"type": "track", "userId": f"user-{p}", "event": "Signed Up"},
            *(
                {"type": "identify", "userId": f"user-{p}", "anonymousId": _device(p, d)}
                for d in range(DEVICES)
            ),
        )


def _offer_views(send: Send) -> None:
    """Anonymous offer views, interleaved across people and devices."""
    send(
        *(
            {"type": "track", "anonymousId": _device(p, d), "event": "Offer Viewed"}
            for _ in range(VISITS)
            for d in range(DEVICES)
            for p in range(PEOPLE)
        )
    )


def _over_caps(messages: Sequence[Any]) -> list[str]:
    """Every rolling window (ending at each message) that holds more than its cap allows."""
    sent: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    for m in messages:
        if not m.transactional:
            sent[m.profile_id].append((m.sent_at, m.channel))
    broken = []
    for pid, mine in sent.items():
        for scope, most, per, counts in CAPS:
            times = sorted(at for at, channel in mine if counts(channel))
            for end in times:
                inside = sum(1 for at in times if end - per < at <= end)
                if inside > most:
                    broken.append(f"{pid}: {inside} messages under {scope} (max {most}) by {end}")
    return broken


@pytest.mark.parametrize("policy", ["priority", "airspace"])
@pytest.mark.parametrize("path", ["events", "timers"])
def test_several_workers_never_let_a_person_exceed_a_cap(
    services: Services,
    send: Send,
    clock: SimulatedClock,
    path: str,
    policy: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """`events`: the offers are proposed and decided while the events are applied;
    `timers`: each journey waits an hour first, and the decisions happen when the
    workers carry out the wake-up timers. Under `airspace` the workers decide with the
    controller's batch form (`domain.batch`) as for a crowd of people, even for one: it
    takes each person who still has room under the caps."""
    apply(services.db, _definitions(path, policy), clock.now())
    _sign_up(send)
    services.worker().drain()  # one worker: the identity graph is built in order
    _offer_views(send)
    if path == "timers":
        services.worker().drain()  # enrolls everyone; each enrollment waits an hour
        clock.advance(timedelta(hours=1))
    with caplog.at_level(logging.WARNING, logger="airspace.worker"):
        run_workers(services, clock, batch_at=1 if policy == "airspace" else None)

    with services.db.read() as conn:
        messages = conn.execute(select(MessageRow)).all()
        candidates = conn.execute(select(CandidateRow.status, CandidateRow.reason)).all()
        quarantined = conn.execute(select(QuarantineRow.reason)).all()
        decisions = [
            (pid, json.dumps(record))
            for pid, record in conn.execute(select(DecisionRow.profile_id, DecisionRow.record))
        ]
    assert quarantined == []
    proposed = PEOPLE * DEVICES * VISITS * len(JOURNEYS)
    assert len(candidates) == proposed  # every wake-up and every event was carried out

    assert _over_caps(messages) == []
    per_person: dict[str, list[str]] = defaultdict(list)
    for m in messages:
        per_person[m.profile_id].append(m.channel)
    # Each person got exactly what the caps allow, and no more ...
    assert len(per_person) == PEOPLE
    assert all(len(c) == MARKETING_CAP for c in per_person.values()), per_person
    if policy == "priority":
        assert all(sorted(c) == ["email", "sms"] for c in per_person.values()), per_person
    # ... because the caps bound for everyone: some of their decisions turned channels or
    # candidates away for each cap, and every candidate left unsent waits for the
    # marketing cap to free (named first when the SMS cap blocks too).
    blocked = defaultdict(set)
    for pid, record in decisions:
        for scope, most, _, _ in CAPS:
            if f"{scope} {most} per" in record:  # `cap marketing 2 per 7d` or `caps ..., ...`
                blocked[scope].add(pid)
    assert blocked["marketing"] == set(per_person), "the marketing cap did not bind for all"
    if policy == "priority":
        assert blocked["channel:sms"] == set(per_person), "the SMS cap did not bind for all"
    unsent = [(s, r) for s, r in candidates if s != "sent"]
    assert len(unsent) == proposed - len(messages)
    assert all(
        s == "deferred"
        and r.startswith(f"cap{'s' if 'sms' in r else ''} marketing {MARKETING_CAP} per ")
        for s, r in unsent
    ), {r for _, r in unsent}
    rolled_back = [r.getMessage() for r in caplog.records if "rolled back" in r.getMessage()]
    print(
        f"\n  {path}, {policy}: {len(messages)} sent, {len(decisions)} decisions, "
        f"{len(unsent)} candidates deferred for a cap; {len(rolled_back)} batches rolled back"
    )
