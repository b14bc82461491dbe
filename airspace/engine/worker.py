"""The worker loop: claim a batch, apply it, commit; repeat until told to stop.

On SQLite run one worker (inside `airspace serve`). On PostgreSQL run any
number of `airspace worker` processes: batches are claimed per inbox
partition with `FOR UPDATE SKIP LOCKED`, people are locked per identifier.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from airspace import metrics
from airspace.channels.base import Channel, DeliveryResult, OutboundMessage
from airspace.channels.webhook import WebhookChannel
from airspace.domain.clock import Clock
from airspace.domain.identity import IdentityRules
from airspace.engine.apply import ApplyContext, BatchResult, apply_batch
from airspace.engine.journeys import EntryCapRace, JourneyRuntime, ReactStats, sync_schedules
from airspace.engine.segments import record_sizes
from airspace.store import decisions as log_repo
from airspace.store import identity as repo
from airspace.store import journeys as journeys_repo
from airspace.store.database import Database
from airspace.store.inbox import Refused, prune_message_ids, quarantine

log = logging.getLogger("airspace.worker")

_ATTEMPTS = 3
DELIVERY_SWEEP = timedelta(seconds=5)
POSTPONE = timedelta(hours=1)


@dataclass(frozen=True, slots=True)
class WorkerConfig:
    """How a worker behaves."""

    rules: IdentityRules
    secret: bytes
    batch_size: int = 500
    idle_seconds: float = 0.05
    dedupe_retention: timedelta = timedelta(days=7)
    prune_every: timedelta = timedelta(minutes=10)
    decision_retention: timedelta = timedelta(days=365)
    batch_seconds: float | None = 0.05  # None: every batch `batch_size` (repeatable runs)


@dataclass
class Pace:
    """Sizes batches so that one takes about `target` seconds: small batches keep the
    time from an event to its effects short; under load each batch still takes many.
    With no target every batch is `most`: what a batch holds then never depends on how
    fast the machine was (the simulator's runs repeat exactly)."""

    target: float | None
    most: int
    least: int = 20
    per_item: float = 0.001

    def limit(self) -> int:
        if self.target is None:
            return self.most
        return max(self.least, min(self.most, int(self.target / self.per_item)))

    def observe(self, items: int, seconds: float) -> None:
        if items:
            self.per_item = 0.7 * self.per_item + 0.3 * (seconds / items)


class Worker:
    """Applies inbox events to profiles, exactly once, batch by batch."""

    def __init__(self, db: Database, clock: Clock, config: WorkerConfig) -> None:
        self.db = db
        self.clock = clock
        self.config = config
        self._last_prune: datetime | None = None
        self._last_log_prune: datetime | None = None
        self.journeys = JourneyRuntime(db)
        self._last_delivery: datetime | None = None
        self.pace = Pace(config.batch_seconds, config.batch_size)
        # Due timers tolerate a little more wait than fresh events: larger batches.
        seconds = config.batch_seconds
        self.timer_pace = Pace(None if seconds is None else seconds * 4, config.batch_size)
        self.channels: dict[str, Channel] = {"webhook": WebhookChannel()}

    def deliver(self, limit: int = 100) -> int:
        """Hand pending outbound messages (webhooks) to their channels, outside any
        transaction; return how many were handled. A sender that dies mid-way leaves the
        message `sending`; it is retried with the same idempotency key after a while."""
        now = self.clock.now()
        # Looking costs a write transaction: look when this worker queued calls, and
        # otherwise (calls of other workers, retries) every few seconds.
        queued = self.journeys.queued_calls
        last = self._last_delivery
        if not queued and last is not None and now - last < DELIVERY_SWEEP:
            return 0
        self._last_delivery = now
        self.journeys.queued_calls = 0
        with self.db.write() as conn:
            outgoing = journeys_repo.claim_outgoing(
                conn, self.db, now, limit, now - timedelta(minutes=5)
            )
        for message in outgoing:
            channel = self.channels.get(message.channel)
            if channel is None:
                result = DeliveryResult(False, f"no adapter for channel {message.channel}")
            else:
                result = channel.deliver(
                    OutboundMessage(
                        message.idempotency_key, message.channel, message.address, message.body
                    )
                )
            status = "delivered" if result.delivered else ("pending" if result.retry else "failed")
            with self.db.write() as conn:
                journeys_repo.record_delivery(
                    conn, message.id, status, result.detail, self.clock.now()
                )
        return len(outgoing)

    def run_timers(self, limit: int | None = None) -> ReactStats:
        """Carry out due timers (wake-ups, re-checks, schedules, decisions) in one batch."""
        now = self.clock.now()
        with self.db.read() as conn:  # the common case, nothing due, takes no write lock
            due = journeys_repo.next_due(conn)
        if due is None or due > now:
            return ReactStats()
        while True:
            started = time.perf_counter()
            try:
                with self.db.write() as conn:
                    stats = self.journeys.run_timers(
                        conn, self.clock.now(), limit or self.timer_pace.limit()
                    )
                break
            except EntryCapRace as race:  # as for `run_once`
                log.info("timers run again: %s", race)
        self.timer_pace.observe(stats.timers, time.perf_counter() - started)
        metrics.TIMERS_FIRED.inc(stats.timers)
        metrics.ENROLLMENTS.inc(stats.enrollments)
        metrics.MESSAGES_SENT.inc(stats.sent)
        return stats

    def run_once(self, limit: int | None = None) -> BatchResult:
        """Claim and apply one batch; return what it did (all zero when idle). A batch that
        lost a race for a capped journey's places runs again at once (it then sees them
        taken): that is no failure."""
        while True:
            try:
                return self._run_once(limit)
            except EntryCapRace as race:
                log.info("batch run again: %s", race)

    def _run_once(self, limit: int | None) -> BatchResult:
        started = time.perf_counter()
        now = self.clock.now()
        with self.db.write() as conn:
            partition, items = repo.claim_batch(conn, self.db, limit or self.pace.limit())
            if not items:
                return BatchResult()
            result = apply_batch(
                conn, self.db, items, ApplyContext(self.config.rules, self.config.secret, now)
            )
            stats = self.journeys.react(
                conn,
                result.touched,
                result.profiles,
                now,
                fresh=result.merged_into,
                identifiers=result.identifiers,
            )
            repo.finish_batch(conn, partition, [item.id for item in items], now)
            self.journeys.count_entries(conn, stats)  # last: see count_entries
        elapsed = time.perf_counter() - started
        self.pace.observe(len(items), elapsed)
        metrics.BATCH_SECONDS.observe(elapsed)
        metrics.ENROLLMENTS.inc(stats.enrollments)
        metrics.MESSAGES_SENT.inc(stats.sent)
        metrics.EVENTS_APPLIED.inc(result.applied)
        metrics.EVENTS_DROPPED_ERASED.inc(result.dropped_erased)
        metrics.PROFILES_MERGED.inc(result.merges)
        if result.quarantined:
            metrics.EVENTS_QUARANTINED.labels("apply").inc(result.quarantined)
        return result

    def drain(self) -> int:
        """Apply until the inbox is empty and no timer is due; return the events applied."""
        total = 0
        while True:
            result = self.run_once()
            processed = result.applied + result.quarantined + result.dropped_erased
            total += result.applied
            if processed == 0 and self.run_timers().timers == 0:
                return total

    def maintain(self) -> None:
        """Housekeeping that runs every few minutes: forget old messageIds, keep the
        schedules' timers, record segment sizes; once a day, forget decisions older than
        the decision log's retention."""
        now = self.clock.now()
        if self._last_log_prune is None or now - self._last_log_prune >= timedelta(days=1):
            with self.db.write() as conn:
                log_repo.prune_log(conn, now - self.config.decision_retention)
            self._last_log_prune = now
        if self._last_prune is None or now - self._last_prune >= self.config.prune_every:
            prune_message_ids(self.db, now, self.config.dedupe_retention)
            with self.db.write() as conn:
                ws = self.journeys.workspace(conn)
                sync_schedules(conn, ws, now)
                record_sizes(conn, now, list(ws.segments))
            self._last_prune = now

    def quarantine_next(self, reason: str) -> None:
        """Move the next inbox event to the quarantine: it cannot be applied."""
        with self.db.write() as conn:
            partition, items = repo.claim_batch(conn, self.db, 1)
            for item in items:
                quarantine(
                    conn, item.write_key_id, "apply", [Refused(item.raw, reason)], self.clock.now()
                )
            repo.finish_batch(conn, partition, [item.id for item in items], self.clock.now())
        metrics.EVENTS_QUARANTINED.labels("apply").inc(len(items))

    def isolate(self, stop: threading.Event) -> None:
        """After a batch failed again and again: apply one event at a time, and quarantine
        the one that fails, so one bad event cannot stop its partition for good."""
        for _ in range(self.config.batch_size):
            last: Exception | None = None
            for attempt in range(_ATTEMPTS):
                try:
                    result = self.run_once(limit=1)
                    break
                except Exception as error:
                    if stop.wait(self.config.idle_seconds * 2**attempt):
                        return
                    last = error
            else:
                log.error("quarantining an event that cannot be applied: %s", last)
                self.quarantine_next(f"could not be applied: {type(last).__name__}: {last}"[:2000])
                continue
            if result.applied + result.quarantined + result.dropped_erased == 0:
                return

    def isolate_timers(self, stop: threading.Event) -> None:
        """After timer batches failed again and again: carry out due timers one at a time;
        one that keeps failing is postponed by an hour (logged), never dropped, so it
        cannot hold back every timer due after it."""
        last: Exception | None = None
        for _ in range(self.config.batch_size):
            for attempt in range(_ATTEMPTS):
                try:
                    if self.run_timers(limit=1).timers == 0:
                        return
                    break
                except Exception as error:
                    if stop.wait(self.config.idle_seconds * 2**attempt):
                        return
                    last = error
            else:
                now = self.clock.now()
                with self.db.write() as conn:
                    moved = journeys_repo.postpone_earliest(conn, now, POSTPONE)
                log.error("postponed timer %s by %s: %s", moved, POSTPONE, last)

    def run_forever(self, stop: threading.Event) -> None:
        """Work until `stop` is set. A failed batch is retried (deadlocks and lost
        connections pass); one that keeps failing is taken apart event by event."""
        failures = timer_failures = 0
        while not stop.is_set():
            try:
                self.maintain()
                result = self.run_once()
                failures = 0
            except Exception as error:
                failures += 1
                log.warning("batch rolled back (%d in a row): %s", failures, error)
                if failures >= _ATTEMPTS:
                    self.isolate(stop)
                    failures = 0
                stop.wait(self.config.idle_seconds * 2 ** min(failures, 6))
                continue
            try:
                timers = self.run_timers()
                self.deliver()
                timer_failures = 0
            except Exception as error:
                timer_failures += 1
                log.warning("timers rolled back (%d in a row): %s", timer_failures, error)
                if timer_failures >= _ATTEMPTS:
                    self.isolate_timers(stop)
                    timer_failures = 0
                stop.wait(self.config.idle_seconds * 2 ** min(timer_failures, 6))
                continue
            if result.applied + result.quarantined + result.dropped_erased + timers.timers == 0:
                stop.wait(self.config.idle_seconds)
