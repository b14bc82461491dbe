"""The driver: runs a world against the real engine on a simulated clock.

Each simulated day the world's actions go in as tracking calls (parsed and
queued exactly as the HTTP API does), the worker applies them and carries out
every due timer, and the messages the engine hands to its capture channel go
back to the world, whose responses (purchases, unsubscribes, days later) are
queued in turn. The clock moves in ticks (15 minutes by default): events are
stamped with their own time and applied at the end of their tick.

A policy is the workspace's controller policy (`airspace`, `first_come`,
`priority`, `random`), or `oracle`: the same mechanics with the world's true
expected incremental value in place of the learned estimate, or
`stratum_oracle`: that truth averaged over each stratum (journey, channel and
stratum, over the candidates scored so far), which is the most the learning
controller could know with unlimited data and the workspace's strata, or
`measured_oracle`: those averages as a perfect experiment would have measured them
by now, which is the most it could know from the run's own data.
"""

from __future__ import annotations

import heapq
import importlib
import inspect
import itertools
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal, cast

import numpy as np
from sqlalchemy import bindparam, func, select

from airspace.bootstrap import Services, build_services
from airspace.domain.clock import SimulatedClock
from airspace.domain.controller import Candidate, Guess, PolicyName, Recipient
from airspace.domain.eligibility import Sent, in_scope
from airspace.domain.errors import InvalidInput
from airspace.domain.events import Event, parse_message
from airspace.domain.workspace_settings import WorkspaceSettings
from airspace.engine import ids
from airspace.engine.definitions import apply, read_folder
from airspace.settings import Settings
from airspace.sim.world import Action, Baseline, Delivery, Truth, World
from airspace.store.definitions import current_workspace
from airspace.store.inbox import accept
from airspace.store.journeys import sent_since
from airspace.store.keys import create_key
from airspace.store.migrate import migrate
from airspace.store.tables import DecisionRow, IdentifierRow, MessageRow

# The messages sent since the last look (built once: it runs every tick).
_NEW_MESSAGES = (
    select(
        MessageRow.id,
        MessageRow.sent_at,
        MessageRow.profile_id,
        MessageRow.journey_id,
        MessageRow.channel,
        MessageRow.content,
    )
    .where(MessageRow.id > bindparam("after"))
    .order_by(MessageRow.id)
)

SimPolicy = PolicyName | Literal["stratum_oracle", "measured_oracle"]
POLICIES: tuple[SimPolicy, ...] = (
    "airspace",
    "oracle",
    "stratum_oracle",
    "measured_oracle",
    "first_come",
    "priority",
    "random",
)


@dataclass(frozen=True, slots=True)
class SimResult:
    """One run: the world's truth and what the engine did."""

    world: str
    policy: str
    seed: int
    customers: int
    days: int
    truth: Truth
    sent: int
    decisions: int
    cap_violations: int
    seconds: float

    @property
    def net_value(self) -> float:
        return self.truth.net_value


def load_world(spec: str, customers: int, seed: int) -> World:
    """A world from `module:Class` (or a short name: standard, misaligned)."""
    short = {
        "standard": "airspace.sim.worlds.standard:StandardWorld",
        "misaligned": "airspace.sim.worlds.misaligned:MisalignedWorld",
    }
    module_name, _, class_name = short.get(spec, spec).partition(":")
    if not module_name or not class_name or module_name.startswith("."):
        raise InvalidInput(
            f"expected a world as module:Class (an absolute module path) or standard|misaligned;"
            f" got {spec!r}"
        )
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise InvalidInput(f"cannot load world {spec!r}: {error}") from None
    if not inspect.isclass(cls):
        raise InvalidInput(f"{spec!r} is not a class (see docs/simulator.md)")
    try:
        world: Any = cls(customers=customers, seed=seed)
    except TypeError as error:
        raise InvalidInput(
            f"cannot make world {spec!r}: a world is made as Class(customers=N, seed=N) ({error})"
        ) from None
    if not isinstance(world, World):
        raise InvalidInput(
            f"{spec!r} does not implement the World protocol (see docs/simulator.md)"
        )
    return world


class Simulation:
    """A world, a fresh database and a worker with the given policy."""

    def __init__(
        self,
        world: World,
        policy: SimPolicy,
        *,
        database_url: str | None = None,
        tick: timedelta = timedelta(minutes=15),
    ) -> None:
        if policy not in POLICIES:
            raise InvalidInput(f"unknown policy {policy!r}; expected one of {', '.join(POLICIES)}")
        if policy == "measured_oracle" and not isinstance(world, Baseline):
            raise InvalidInput(
                f"the world {world.name!r} has no baseline(user_id, at): the measured oracle "
                "needs each customer's chance to convert with no message (docs/simulator.md)"
            )
        self.world = world
        self.policy = policy
        self.tick = tick
        self._tmp = None
        if database_url is None:
            self._tmp = tempfile.TemporaryDirectory(prefix="airspace-sim-")
            database_url = f"sqlite:///{Path(self._tmp.name) / 'sim.db'}"
        self.clock = SimulatedClock(world.start())
        # Same seed, same run: ids (and so holdout draws) from the seed, and batches sized
        # by count, not by how long they took (which batch an event falls in changes what
        # is decided together).
        ids.repeatable(getattr(world, "seed", 0))
        settings = Settings(database_url=database_url, secret="sim")
        self.services: Services = build_services(settings, clock=self.clock)
        migrate(self.services.db)
        documents, problems = read_folder(world.definitions)
        if problems:
            raise InvalidInput(f"the world's definitions have problems: {problems[:3]}")
        apply(self.services.db, documents, self.clock.now())
        key, _ = create_key(self.services.db, "write", "simulator", self.clock.now())
        self._key_id = key.id
        self.worker = self.services.worker(paced=False)
        if policy == "oracle" or policy == "stratum_oracle" or policy == "measured_oracle":
            self.worker.journeys.policy = "airspace"
            self.worker.journeys.estimator = {
                "oracle": self._oracle,
                "stratum_oracle": self._stratum_oracle,
                "measured_oracle": self._measured_oracle,
            }[policy]
        else:
            self.worker.journeys.policy = policy
        self._queue: list[tuple[datetime, int, dict[str, Any]]] = []
        self._order = itertools.count()
        self._ids = itertools.count()
        self._last_message = 0
        self._users: dict[str, str] = {}  # profile id -> userId
        # (journey, channel, stratum) -> sums of the true uplift, uplift x value, and count
        self._cells: dict[tuple[str, str, str], list[float]] = {}
        self._measured = _Measurements(getattr(world, "seed", 0))

    # --- what goes in

    def _push(self, at: datetime, message: dict[str, Any]) -> None:
        heapq.heappush(self._queue, (at, next(self._order), message))

    def _track(self, action: Action) -> None:
        self._push(
            action.at,
            {
                "type": "track",
                "userId": action.user_id,
                "event": action.event,
                "properties": dict(action.properties),
                "timestamp": action.at.isoformat(),
            },
        )

    def _identify_everyone(self) -> None:
        start = self.world.start()
        for customer in self.world.customers():
            context: dict[str, Any] = {
                "consent": {"categoryPreferences": dict(customer.consent)},
            }
            if customer.push_token:
                context["device"] = {"token": customer.push_token}
            at = customer.joined or start
            self._push(
                at,
                {
                    "type": "identify",
                    "userId": customer.user_id,
                    "traits": dict(customer.traits),
                    "context": context,
                    "timestamp": at.isoformat(),
                },
            )

    def _ingest_until(self, end: datetime) -> int:
        events: list[Event] = []
        now = self.clock.now()
        while self._queue and self._queue[0][0] < end:
            _, _, message = heapq.heappop(self._queue)
            events.append(
                parse_message(message, received_at=now, new_message_id=f"sim-{next(self._ids)}")
            )
        if events:
            accept(self.services.db, self._key_id, events, [], now)
        return len(events)

    # --- what comes out

    def _deliveries(self) -> list[Delivery]:
        with self.services.db.read() as conn:
            rows = conn.execute(_NEW_MESSAGES, {"after": self._last_message}).all()
            unknown = {r.profile_id for r in rows} - set(self._users)
            if unknown:
                self._users.update(self._user_ids(conn, unknown))
        if rows:
            self._last_message = rows[-1].id
        return [
            Delivery(
                r.sent_at, self._users.get(r.profile_id, ""), r.journey_id, r.channel, r.content
            )
            for r in rows
        ]

    def _user_ids(self, conn: Any, profile_ids: Iterable[str]) -> dict[str, str]:
        found: dict[str, str] = {}
        ids = list(profile_ids)
        for start in range(0, len(ids), 1000):
            for row in conn.execute(
                select(IdentifierRow.profile_id, IdentifierRow.value).where(
                    IdentifierRow.profile_id.in_(ids[start : start + 1000]),
                    IdentifierRow.type == "user_id",
                )
            ):
                found[row.profile_id] = row.value
        return found

    def _truth(
        self, pairs: Sequence[tuple[Candidate, str]], recipient: Recipient, now: datetime
    ) -> list[tuple[float, float]]:
        user = self._users.get(recipient.profile_id)
        if user is None:
            with self.services.db.read() as conn:
                self._users.update(self._user_ids(conn, [recipient.profile_id]))
            user = self._users.get(recipient.profile_id, "")
        return [self.world.uplift(user, c.journey_id, channel, now) for c, channel in pairs]

    def _oracle(
        self, pairs: Sequence[tuple[Candidate, str]], recipient: Recipient, now: datetime
    ) -> list[Guess]:
        return [Guess(u, u, value) for u, value in self._truth(pairs, recipient, now)]

    def _stratum_oracle(
        self, pairs: Sequence[tuple[Candidate, str]], recipient: Recipient, now: datetime
    ) -> list[Guess]:
        found = []
        for (candidate, channel), (uplift, value) in zip(
            pairs, self._truth(pairs, recipient, now), strict=True
        ):
            sums = self._cells.setdefault(
                (candidate.journey_id, channel, recipient.stratum), [0.0, 0.0, 0.0]
            )
            sums[0] += uplift
            sums[1] += uplift * value
            sums[2] += 1.0
            mean = sums[0] / sums[2]
            found.append(Guess(mean, mean, sums[1] / sums[0] if sums[0] else value))
        return found

    def _measured_oracle(
        self, pairs: Sequence[tuple[Candidate, str]], recipient: Recipient, now: datetime
    ) -> list[Guess]:
        truths = self._truth(pairs, recipient, now)
        baseline = cast(Baseline, self.world).baseline(
            self._users.get(recipient.profile_id, ""), now
        )
        found = []
        measured: set[str] = set()
        for (candidate, channel), (uplift, value) in zip(pairs, truths, strict=True):
            journey = candidate.journey_id
            sums = self._cells.setdefault((journey, channel, recipient.stratum), [0.0, 0.0, 0.0])
            self._measured.see(journey, sums, uplift, value)
            if journey not in measured:  # one outcome per candidate, on whichever channel
                measured.add(journey)
                self._measured.observe(journey, recipient.stratum, baseline)
            mean = self._measured.estimate(journey, recipient.stratum, sums[0] / sums[2])
            found.append(Guess(mean, mean, sums[1] / sums[0] if sums[0] else value))
        return found

    # --- the run

    def run(self, days: int, progress: Callable[[int, int], None] | None = None) -> SimResult:
        """Simulate `days` days; return the scoreboard."""
        began = time.perf_counter()
        self._identify_everyone()
        start = self.world.start()
        for day in range(days):
            day_start = start + timedelta(days=day)
            for action in self.world.day(day_start):
                self._track(action)
            moment = day_start
            while moment < day_start + timedelta(days=1):
                moment += self.tick
                self._ingest_until(moment)
                self.clock.set(moment)
                self.worker.maintain()
                self.worker.drain()
                for delivery in self._deliveries():
                    for action in self.world.deliver(delivery):
                        self._track(action)
            if progress is not None:
                progress(day + 1, days)
        return self._result(days, time.perf_counter() - began)

    def _result(self, days: int, seconds: float) -> SimResult:
        with self.services.db.read() as conn:
            settings = current_workspace(conn).settings
            people = list(conn.execute(select(MessageRow.profile_id).distinct()).scalars())
            history = sent_since(conn, people, self.world.start() - timedelta(days=1))
            decisions = conn.execute(select(func.count()).select_from(DecisionRow)).scalar_one()
        seed = getattr(self.world, "seed", 0)
        return SimResult(
            world=self.world.name,
            policy=self.policy,
            seed=int(seed) if isinstance(seed, int) else 0,
            customers=len(self.world.customers()),
            days=days,
            truth=self.world.truth(),
            sent=sum(len(sent) for sent in history.values()),
            decisions=decisions,
            cap_violations=sum(cap_violations(sent, settings) for sent in history.values()),
            seconds=seconds,
        )

    def close(self) -> None:
        ids.repeatable(None)
        self.services.db.engine.dispose()
        if self._tmp is not None:
            self._tmp.cleanup()


class _Measurements:
    """What a perfect experiment would have measured of each cell by now, for the measured
    oracle: every candidate scored adds one outcome to its journey and stratum (all its
    channels share it), with the noise of a conversion whose no-message chance p is known
    (variance p (1 - p)); the measurement, the cell's true mean plus that noise, is shrunk
    towards its journey's true mean by the true spread between the journey's cells, and
    read at the posterior mean (every candidate informs, so exploring is worth nothing).
    A learner cannot know more from the run's data: it must hold messages back to see what
    happens without them, and it knows neither a journey's mean nor its spread."""

    def __init__(self, seed: int) -> None:
        self._rng = np.random.default_rng([seed, 0x6D65617375726564])
        self._noise: dict[tuple[str, str], list[float]] = {}  # count, noise, variance
        self._journeys: dict[str, list[float]] = {}  # count, sum, sum of count x mean^2

    def see(self, journey: str, cell: list[float], uplift: float, value: float) -> None:
        """Add a candidate's true uplift and value to its cell (the stratum oracle's sums:
        uplift, uplift x value, count) and to its journey's spread between cells."""
        sums = self._journeys.setdefault(journey, [0.0, 0.0, 0.0])
        before = cell[0] * cell[0] / cell[2] if cell[2] else 0.0
        cell[0] += uplift
        cell[1] += uplift * value
        cell[2] += 1.0
        sums[0] += 1.0
        sums[1] += uplift
        sums[2] += cell[0] * cell[0] / cell[2] - before

    def observe(self, journey: str, stratum: str, baseline: float) -> None:
        variance = baseline * (1.0 - baseline)
        noise = self._noise.setdefault((journey, stratum), [0.0, 0.0, 0.0])
        noise[0] += 1.0
        noise[1] += float(self._rng.normal()) * variance**0.5
        noise[2] += variance

    def estimate(self, journey: str, stratum: str, truth: float) -> float:
        count, noise, variance = self._noise[journey, stratum]
        measured, measured_variance = truth + noise / count, max(variance, 1e-12) / count**2
        seen, total, squares = self._journeys[journey]
        prior = total / seen
        spread = max(squares / seen - prior * prior, 1e-12)
        precision = 1.0 / spread + 1.0 / measured_variance
        return (prior / spread + measured / measured_variance) / precision


def cap_violations(messages: Sequence[Sent], settings: WorkspaceSettings) -> int:
    """How many messages to one person broke a cap (counted against the messages before
    them in the cap's rolling window)."""
    broken = 0
    marketing = sorted((m for m in messages if not m.transactional), key=lambda m: m.at)
    for cap in settings.caps:
        scoped = [m.at for m in marketing if in_scope(cap, m.channel, m.journey_id, m.topic)]
        for i, at in enumerate(scoped):
            inside = [t for t in scoped[: i + 1] if t > at - cap.per]
            broken += len(inside) > cap.max
    return broken


def simulate(
    world: str,
    policy: SimPolicy,
    *,
    days: int,
    customers: int,
    seed: int,
    database_url: str | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SimResult:
    """Build the world, run it under the policy, clean up; the scoreboard."""
    simulation = Simulation(load_world(world, customers, seed), policy, database_url=database_url)
    try:
        return simulation.run(days, progress)
    finally:
        simulation.close()


def share_of_oracle(results: Mapping[str, float]) -> float | None:
    """(V(policy) - V(first-come)) / (V(oracle) - V(first-come)), per the benchmark."""
    gap = results["oracle"] - results["first_come"]
    if gap <= 0:
        return None
    return (results["airspace"] - results["first_come"]) / gap
