"""Segments, journeys and the controller, carried out in the worker's transaction.

`JourneyRuntime.react` runs right after a batch of events is applied, in the
same transaction: it loads the touched people's memberships, enrollments and
event facts, calls the pure `domain.reactor.react`, and writes the result
(with timers for every wait and re-check). `run_timers` does the same for due
timers: wake-ups, segment re-checks, anniversaries, scheduled enrollments and
controller decisions. A person is only ever changed under their profile lock.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, time, timedelta
from typing import Any

import numpy as np
from croniter import croniter
from sqlalchemy import Connection

from airspace.domain import controller, reactor, timing
from airspace.domain.batch import Person, decide_people
from airspace.domain.controller import Candidate, Decision, Estimator, PolicyName, Recipient
from airspace.domain.definitions import Workspace
from airspace.domain.identity import Identifier
from airspace.domain.journeys import CallWebhook, Enrollment, Journey, bucket
from airspace.domain.profiles import Profile
from airspace.domain.reactor import Input, PersonState, Reaction, TimerInput
from airspace.domain.uplift import Evidence, stratum_of
from airspace.engine.ids import new_id
from airspace.store import decisions as log_repo
from airspace.store import definitions as defs_repo
from airspace.store import identity as identity_repo
from airspace.store import journeys as repo
from airspace.store.database import Database
from airspace.store.journeys import DueTimer, PersonWrite

# The earliest time zone is UTC+14: its day starts this much before the UTC day.
LOCAL_LEAD = timedelta(hours=14)
# How often (in clock time) the uplift tallies are read again.
EVIDENCE_REFRESH = timedelta(minutes=1)
# From this many people at once, the controller decides those who fit the batch form
# together (`domain.batch.decide_people`); fewer are not worth building the arrays for.
BATCH_AT = 64


@dataclass
class ReactStats:
    """What one call did, for metrics and tests."""

    people: int = 0
    enrollments: int = 0
    proposals: int = 0
    entered: int = 0
    exited: int = 0
    sent: int = 0
    timers: int = 0
    retraited: set[str] = field(default_factory=set)  # people whose traits were written
    entries: dict[str, int] = field(default_factory=dict)  # journey → people it took


class EntryCapRace(Exception):
    """Another worker took the last places of a capped journey while this batch ran: roll
    the batch back and run it again (it will see the journey full)."""


@dataclass
class JourneyRuntime:
    """The journey side of a worker: caches the workspace and old journey versions."""

    db: Database
    policy: PolicyName | None = None  # None: the workspace's setting
    estimator: Estimator | None = None  # None: Thompson draws from the learned evidence
    batch_at: int = BATCH_AT  # decide this many people or more in the batch form
    _workspace: Workspace | None = None
    _revision: int | None = None
    _versions: dict[tuple[str, int], Journey] = field(default_factory=dict)
    _evidence: Evidence | None = None
    _evidence_at: datetime | None = None
    queued_calls: int = 0

    def workspace(self, conn: Connection) -> Workspace:
        """The live definitions, reloaded when any changed."""
        revision = defs_repo.revision(conn)
        if self._workspace is None or revision != self._revision:
            self._workspace = defs_repo.current_workspace(conn)
            self._revision = revision
        return self._workspace

    def _versions_for(
        self, conn: Connection, ws: Workspace, enrollments: Iterable[Enrollment]
    ) -> dict[tuple[str, int], Journey]:
        found: dict[tuple[str, int], Journey] = {}
        for e in enrollments:
            key = (e.journey_id, e.version)
            current = ws.journeys.get(e.journey_id)
            if current is not None and current.version == e.version:
                continue
            if key not in self._versions:
                old = defs_repo.journey_version(conn, *key)
                if old is None:
                    continue
                self._versions[key] = old
            found[key] = self._versions[key]
        return found

    # --- reacting to events and timers

    def react(
        self,
        conn: Connection,
        people: Mapping[str, Sequence[Input]],
        profiles: Mapping[str, Profile],
        now: datetime,
        *,
        fresh: Iterable[str] = (),
        identifiers: Mapping[str, set[Identifier]] | None = None,
        ws: Workspace | None = None,
    ) -> ReactStats:
        """Carry out every person's reaction to their inputs (see `domain.reactor`).
        `identifiers`: the people's identifiers, and `ws` the workspace, when the caller
        holds them already (read in this transaction)."""
        ws = ws or self.workspace(conn)
        stats = ReactStats(people=len(people))
        if not people or not (ws.journeys or ws.segments):
            return stats
        fresh = set(fresh)
        pids = sorted(people)
        affected: dict[str, list[str]] = {}
        for pid in pids:
            if pid in fresh:
                affected[pid] = ws.segment_order()
            else:
                affected[pid] = reactor.affected_segments(ws, reactor.stimulus_of(people[pid]))
        wanted = {sid for ids in affected.values() for sid in ids}
        facts = repo.event_facts(conn, pids, reactor.conditions_needing_events(ws, wanted), now)
        members = repo.memberships(conn, pids)
        enrollments = repo.enrollments_of(conn, pids)
        owned = identifiers if identifiers is not None else identity_repo.identifiers_of(conn, pids)
        # Entry caps: each person's reaction sees the entries of those before them in the
        # batch; `count_entries` checks against other workers at the end.
        capped = {j.id for j in ws.journeys.values() if j.entry_cap is not None}
        totals = repo.entered_totals(conn, capped)
        writes: list[PersonWrite] = []
        webhooks: list[tuple[str, str, Enrollment, CallWebhook]] = []
        changed_profiles: list[Profile] = []
        known: dict[str, tuple[Profile, Mapping[str, str]]] = {}
        for pid in pids:
            profile = profiles[pid]
            known[pid] = (profile, _addresses(profile, owned.get(pid, set())))
            mine = enrollments.get(pid, [])
            state = PersonState(
                profile=profile,
                segments=members.get(pid, {}),
                enrollments=mine,
                events=facts.get(pid, {}),
                addresses=known[pid][1],
                versions=self._versions_for(conn, ws, mine),
                entered_totals=dict(totals),
            )
            inputs = list(people[pid])
            if pid in fresh:
                inputs += [TimerInput("segment", sid, now) for sid in ws.segments]
            reaction = reactor.react(ws, state, inputs, now, lambda: new_id(now))
            for jid, n in reaction.entries.items():
                stats.entries[jid] = stats.entries.get(jid, 0) + n
                if jid in capped:
                    totals[jid] = totals.get(jid, 0) + n
            writes.append(self._person_write(pid, reaction, mine))
            for call in reaction.webhooks:
                enrollment = reaction.enrollments[call.enrollment_id]
                webhooks.append((pid, new_id(now), enrollment, call))
            if reaction.traits:
                changed_profiles.append(_with_traits(profile, reaction.traits, now))
                known[pid] = (changed_profiles[-1], known[pid][1])
            stats.enrollments += sum(
                1 for e in reaction.enrollments.values() if e.entered_at == now
            )
            stats.proposals += len(reaction.proposals)
            stats.entered += len(reaction.entered)
            stats.exited += len(reaction.exited)
        repo.write_people(conn, writes, now)
        repo.queue_webhooks(conn, webhooks, now)
        self.queued_calls += len(webhooks)
        if changed_profiles:
            identity_repo.save_profiles(conn, changed_profiles, now)
            stats.retraited.update(p.profile_id for p in changed_profiles)
        stats.sent += self._decide_or_schedule(conn, ws, writes, now, known)
        return stats

    def count_entries(self, conn: Connection, stats: ReactStats) -> None:
        """Count the people this transaction's reactions took into capped journeys: its
        last step, for the counters stay locked until commit. Caps are read again under
        `hold_counters`, so a journey given a cap while the batch ran counts it too.
        `EntryCapRace` when a counter goes over its cap: another worker took places since
        this one read it, or the batch entered people before it knew of the cap."""
        if not stats.entries:
            return
        repo.hold_counters(conn, restart=False)
        ws = self.workspace(conn)  # read again under the lock: a cap given meanwhile shows
        capped = {
            jid: n
            for jid, n in stats.entries.items()
            if jid in ws.journeys and ws.journeys[jid].entry_cap is not None
        }
        for jid, total in repo.add_entries(conn, capped).items():
            cap = ws.journeys[jid].entry_cap
            if cap is not None and total > cap:
                raise EntryCapRace(
                    f"journey {jid!r} would take {total} people, over its cap of {cap}"
                )

    def _person_write(
        self, pid: str, reaction: Reaction, before: Sequence[Enrollment]
    ) -> PersonWrite:
        timers: dict[tuple[str, str], datetime | None] = {}
        waited = {e.id for e in before if e.wake_at is not None}
        for e in reaction.enrollments.values():
            if e.active and e.wake_at is not None:
                timers["enrollment", e.id] = e.wake_at
            elif e.id in waited:
                timers["enrollment", e.id] = None
        for sid, due in reaction.segment_timers.items():
            timers["segment", sid] = due
        for jid, due in reaction.anniversary_timers.items():
            timers["anniversary", jid] = due
        proposals = []
        for proposal in reaction.proposals:
            status = "pending" if proposal.layer == "treated" else "held_out"
            proposals.append((new_id(proposal.expires_at), proposal, status))
        return PersonWrite(
            profile_id=pid,
            entered=reaction.entered,
            exited=reaction.exited,
            enrollments=list(reaction.enrollments.values()),
            proposals=proposals,
            withdrawals=reaction.withdrawals,
            timers=timers,
        )

    # --- the controller

    def _decide_or_schedule(
        self,
        conn: Connection,
        ws: Workspace,
        writes: Sequence[PersonWrite],
        now: datetime,
        known: Mapping[str, tuple[Profile, Mapping[str, str]]],
    ) -> int:
        """People with new candidates: decide now if due, else set their decision timer."""
        proposing = [w.profile_id for w in writes if any(s == "pending" for _, _, s in w.proposals)]
        if not proposing:
            return 0
        open_ = repo.open_candidates(conn, proposing)
        due_now: list[str] = []
        later: list[tuple[str, str, str, datetime | None]] = []
        for pid in proposing:
            pending = [c for c in open_.get(pid, []) if c.created_at == now]
            due = controller.decision_due(pending, ws.settings.decision_window, now)
            if due <= now:
                due_now.append(pid)
            else:
                later.append((pid, "decide", "", due))
        _keep_earliest_decisions(conn, later)
        if not due_now:
            return 0
        return self.decide(conn, due_now, now, ws=ws, candidates=open_, known=known)

    def decide(
        self,
        conn: Connection,
        pids: Sequence[str],
        now: datetime,
        *,
        ws: Workspace | None = None,
        candidates: Mapping[str, list[Candidate]] | None = None,
        known: Mapping[str, tuple[Profile, Mapping[str, str]]] | None = None,
        profiles: Mapping[str, Profile] | None = None,
    ) -> int:
        """Run the controller for these people; return the number of messages sent.
        `known`: profiles and addresses the caller has loaded already; `profiles`: profiles
        it has loaded in this transaction (their addresses are still to be found)."""
        ws = ws or self.workspace(conn)
        candidates = candidates if candidates is not None else repo.open_candidates(conn, pids)
        settings = ws.settings
        longest = max(
            [c.per for c in settings.caps]
            + [x.per for x in settings.exclusions]
            + [settings.fatigue_window, timedelta(days=1)]
        )
        history = repo.sent_since(conn, pids, now - longest)
        people = dict(known or {})
        missing = [pid for pid in pids if pid not in people]
        if missing:
            held = profiles or {}
            loaded = {pid: held[pid] for pid in missing if pid in held}
            unread = [pid for pid in missing if pid not in held]
            if unread:
                loaded.update(identity_repo.load_profiles(conn, self.db, unread))
            owned = identity_repo.identifiers_of(conn, missing)
            for pid, profile in loaded.items():
                people[pid] = (profile, _addresses(profile, owned.get(pid, set())))
        stratified = ws.settings.strata or ws.settings.substrata
        members = repo.memberships(conn, pids) if stratified else {}
        evidence = self.evidence(conn, ws, now)
        policy = self.policy or ws.settings.policy
        crowd = [
            Person(
                candidates[pid],
                _recipient(ws, *people[pid], members.get(pid, {}), now),
                history.get(pid, []),
            )
            for pid in pids
            if candidates.get(pid) and pid in people
        ]
        if policy == "airspace" and self.estimator is None and len(crowd) >= self.batch_at:
            records = decide_people(crowd, settings, now, evidence)
        else:
            records = [
                controller.decide(
                    p.candidates,
                    p.recipient,
                    p.history,
                    settings,
                    now,
                    policy=policy,
                    estimator=self.estimator or controller.thompson(evidence),
                    rng=_rng(p.recipient.profile_id, now) if policy == "random" else None,
                )
                for p in crowd
            ]
        decided: list[tuple[Candidate, Decision, str]] = []
        retries: list[tuple[str, str, str, datetime | None]] = []
        trials: list[log_repo.Trial] = []
        for record in records:
            addresses = people[record.profile_id][1]
            for a in record.assessments:
                d = a.decision
                decided.append((a.candidate, d, addresses.get(d.channel or "", "")))
                trial = controller.trial(a, settings)
                if trial is not None:
                    arm, channel, weight = trial
                    journey, stratum = a.candidate.journey_id, record.stratum
                    matures = _goal_closes(ws, a.candidate, now)
                    trials.append((d.candidate_id, journey, arm, channel, stratum, weight, matures))
            retry = [d.retry_at for d in record.decisions if d.retry_at is not None]
            if retry:
                # Without a retry any decision timer left is stale, and harmless.
                retries.append((record.profile_id, "decide", "", min(retry)))
        log_repo.write_log(conn, records)
        log_repo.count_trials(conn, trials)
        repo.write_decisions(conn, decided, now)
        repo.set_timers(conn, retries)
        return sum(1 for _, d, _ in decided if d.outcome == "send")

    def evidence(self, conn: Connection, ws: Workspace, now: datetime) -> Evidence:
        """The uplift tallies as evidence, read again every EVIDENCE_REFRESH of clock time,
        after the trials whose goal window has closed since have joined them."""
        if (
            self._evidence is None
            or self._evidence_at is None
            or not self._evidence_at <= now < self._evidence_at + EVIDENCE_REFRESH
        ):
            log_repo.mature_trials(conn, now)
            self._evidence = Evidence(
                log_repo.tallies(conn), ws.settings.prior_strength, ws.settings.exploration
            )
            self._evidence_at = now
        return self._evidence

    # --- timers

    def run_timers(self, conn: Connection, now: datetime, limit: int = 1000) -> ReactStats:
        """Claim due timers and carry them out; return what was done."""
        due = repo.claim_due(conn, self.db, now, limit)
        if not due:
            return ReactStats()
        ws = self.workspace(conn)
        schedules = [t for t in due if t.kind == "schedule"]
        personal = [t for t in due if t.kind != "schedule"]
        for timer in schedules:
            self._fan_out(conn, ws, timer, now)
        locked = repo.lock_profiles_skip_locked(conn, self.db, {t.profile_id for t in personal})
        mine = [t for t in personal if t.profile_id in locked]
        repo.delete_timers(conn, [t.id for t in schedules] + [t.id for t in mine])
        profiles = identity_repo.load_profiles(conn, self.db, {t.profile_id for t in mine})
        people: dict[str, list[Input]] = {}
        deciding: list[str] = []
        for timer in mine:
            if timer.profile_id not in profiles:
                continue  # erased or merged away
            if timer.kind == "decide":
                deciding.append(timer.profile_id)
            else:
                people.setdefault(timer.profile_id, []).append(
                    TimerInput(timer.kind, timer.ref, timer.due_at, timer.payload)  # type: ignore[arg-type]
                )
        stats = self.react(conn, people, profiles, now, ws=ws) if people else ReactStats()
        if deciding:
            # Their profiles as loaded above, unless a reaction has just written new traits.
            unchanged = {pid: profiles[pid] for pid in deciding if pid not in stats.retraited}
            stats.sent += self.decide(conn, sorted(set(deciding)), now, ws=ws, profiles=unchanged)
        stats.timers = len(schedules) + len(mine)
        self.count_entries(conn, stats)
        return stats

    def _fan_out(self, conn: Connection, ws: Workspace, timer: DueTimer, now: datetime) -> None:
        """A journey's schedule fired: one `enroll` timer per person in its audience."""
        journey = ws.journeys.get(timer.ref)
        if journey is None or journey.entry.kind != "schedule" or timer.ref in ws.paused:
            return
        entry = journey.entry
        occurrence = datetime.fromisoformat(str(timer.payload.get("occurrence", timer.due_at)))
        payload = {"schedule": occurrence.isoformat()}
        if entry.local_time is None:
            repo.enroll_audience(conn, journey.id, entry.segment, timer.due_at, payload)
        else:
            self._fan_out_local(conn, ws, journey, occurrence, payload)
        if entry.cron:
            schedule_next(conn, journey, now, after=occurrence)

    def _fan_out_local(
        self,
        conn: Connection,
        ws: Workspace,
        journey: Journey,
        occurrence: datetime,
        payload: dict[str, Any],
    ) -> None:
        """At a local time: each person's enrollment waits for that time in their zone."""
        entry = journey.entry
        assert entry.local_time is not None  # checked by the caller
        ids = repo.audience_ids(conn, entry.segment)
        day = occurrence.date()
        for chunk in repo.chunks(ids, 2000):
            profiles = identity_repo.load_profiles(conn, self.db, chunk)
            rows = []
            for pid, profile in profiles.items():
                tz = timing.timezone_of(profile, ws.settings.timezone)
                # The schedule names the day; local_time the hour on that day, in each zone.
                due = timing.local_instant(day, entry.local_time, tz)
                rows.append((pid, "enroll", journey.id, due))
            repo.set_timers(conn, rows, {(r[0], r[1], r[2]): payload for r in rows})


def schedule_next(
    conn: Connection, journey: Journey, now: datetime, after: datetime | None = None
) -> None:
    """Keep the journey's next run as a timer (none once a one-off run is past or done).

    A run at a local time fires at the start of its day in the earliest time zone
    (UTC+14) and gives each person an enrollment timer at that time in their zone.
    """
    entry = journey.entry
    occurrence: datetime | None = None
    if entry.cron:
        occurrence = croniter(entry.cron, after or now).get_next(datetime)
    elif entry.at is not None and after is None:
        occurrence = entry.at
    due = None
    if occurrence is not None:
        due = occurrence
        if entry.local_time is not None:
            midnight = datetime.combine(occurrence.date(), time(0), tzinfo=UTC)
            due = midnight - LOCAL_LEAD
        if entry.cron is None and max(due, occurrence) < now:
            due = None  # a one-off run that is long past
    payload = {"occurrence": occurrence.isoformat()} if occurrence else {}
    repo.set_timers(
        conn,
        [("", "schedule", journey.id, due)],
        {("", "schedule", journey.id): payload},
    )


def sync_schedules(
    conn: Connection, ws: Workspace, now: datetime, replan: Iterable[str] = ()
) -> None:
    """Every scheduled journey has its next-run timer (re-planned for `replan`, whose
    schedule may have changed); others have none."""
    existing = repo.planned_schedules(conn)
    for journey in ws.journeys.values():
        planned = journey.id in existing and journey.id not in set(replan)
        if journey.entry.kind == "schedule" and not planned:
            schedule_next(conn, journey, now)
    stale = existing - {j.id for j in ws.journeys.values() if j.entry.kind == "schedule"}
    repo.set_timers(conn, [("", "schedule", jid, None) for jid in stale])


def _recipient(
    ws: Workspace,
    profile: Profile,
    addresses: Mapping[str, str],
    segments: Iterable[str],
    now: datetime,
) -> Recipient:
    settings = ws.settings
    pid = profile.profile_id
    return Recipient(
        pid,
        profile.consent,
        addresses,
        ws.topics,
        ws.paused,
        timing.timezone_of(profile, settings.timezone),
        suppressed=profile.computed.suppressed,
        engaged=profile.computed.engaged,
        stratum=stratum_of(profile, segments, settings, now),
        control=bucket(pid, "airspace", "global-control") < settings.global_control,
    )


def _rng(profile_id: str, now: datetime) -> np.random.Generator:
    """The controller's random draws: reproducible per person and instant."""
    seed = hashlib.sha256(f"{profile_id}|{now.isoformat()}".encode()).digest()
    return np.random.default_rng(int.from_bytes(seed[:8], "big"))


def _goal_closes(ws: Workspace, candidate: Candidate, now: datetime) -> datetime:
    """When a trial's outcome is read: its journey's goal window, or the workspace's
    learning window if shorter, counted from the candidate (its enrollment began no
    later), has closed; at once without a goal."""
    journey = ws.journeys.get(candidate.journey_id)
    if journey is None or journey.goal is None:
        return now
    window = journey.goal.within
    if ws.settings.learning_window is not None:
        window = min(window, ws.settings.learning_window)
    return candidate.created_at + window


def _addresses(profile: Profile, owned: Iterable[Identifier]) -> dict[str, str]:
    return controller.addresses(profile.traits, ((i.type, i.value) for i in owned))


def _keep_earliest_decisions(
    conn: Connection, timers: list[tuple[str, str, str, datetime | None]]
) -> None:
    """A decision timer only ever moves earlier: a later candidate does not delay the first."""
    if not timers:
        return
    current = repo.decision_times(conn, [t[0] for t in timers])
    keep = [t for t in timers if t[0] not in current or (t[3] is not None and t[3] < current[t[0]])]
    repo.set_timers(conn, keep)


def _with_traits(profile: Profile, traits: Mapping[str, Any], now: datetime) -> Profile:
    times = {**profile.trait_times, **dict.fromkeys(traits, now)}
    return replace(profile, traits={**profile.traits, **traits}, trait_times=times)
