"""Apply one batch of inbox events in one transaction.

The batch's state (identifiers, profiles) is loaded once, every event is
folded in by the pure domain functions, and all effects are written and the
inbox rows deleted in the same commit: a worker killed at any point loses
nothing and applies nothing twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import orjson
from sqlalchemy import Connection

from airspace.domain import identity, profiles
from airspace.domain.events import Event
from airspace.domain.identity import Identifier, IdentityRules, KnownProfile
from airspace.domain.journeys import Happening
from airspace.domain.profiles import Profile
from airspace.domain.reactor import EventInput, Input
from airspace.engine import ids as id_source
from airspace.store import identity as repo
from airspace.store import journeys as journeys_repo
from airspace.store.database import Database
from airspace.store.identity import BatchWrite, InboxItem, MergeRecord
from airspace.store.inbox import Refused, quarantine


@dataclass(frozen=True, slots=True)
class ApplyContext:
    """What applying needs besides the data: rules, the erasure key, the time."""

    rules: IdentityRules
    secret: bytes
    now: datetime


@dataclass
class BatchResult:
    """What one batch did: counts, and the people it touched (for journeys)."""

    applied: int = 0
    quarantined: int = 0
    dropped_erased: int = 0
    merges: int = 0
    touched: dict[str, list[Input]] = field(default_factory=dict)
    profiles: dict[str, Profile] = field(default_factory=dict)
    merged_into: set[str] = field(default_factory=set)
    identifiers: dict[str, set[Identifier]] = field(default_factory=dict)


def new_profile_id(now: datetime, sequence: int) -> str:
    """A profile id that sorts by creation: milliseconds, order within the batch, random."""
    return f"{int(now.timestamp() * 1000):012x}{sequence:06x}{id_source.token(5)}"


@dataclass
class _State:
    """The batch's working copy of every profile and identifier it touches."""

    owner: dict[Identifier, str]
    ids_of: dict[str, set[Identifier]]
    profiles: dict[str, Profile]
    stored: set[str]
    redirect: dict[str, str] = field(default_factory=dict)
    dirty: set[str] = field(default_factory=set)
    new_links: dict[Identifier, str] = field(default_factory=dict)
    merges: list[MergeRecord] = field(default_factory=list)
    created: int = 0

    def final(self, profile_id: str) -> str:
        while profile_id in self.redirect:
            profile_id = self.redirect[profile_id]
        return profile_id

    def known(self, ids: list[Identifier]) -> dict[Identifier, KnownProfile]:
        result: dict[Identifier, KnownProfile] = {}
        for i in ids:
            owner = self.owner.get(i)
            if owner is not None:
                profile = self.profiles[owner]
                result[i] = KnownProfile(owner, profile.created_at, self.ids_of[owner])
        return result


def _identifiers_for(event: Event, rules: IdentityRules) -> list[Identifier]:
    ids = identity.extract_identifiers(event, rules)
    return ids + identity.alias_candidates(event) if event.type == "alias" else ids


def _load_state(
    conn: Connection, db: Database, keys: set[str]
) -> tuple[dict[str, str], dict[str, Profile]]:
    """Resolve identifiers to profiles and lock those profiles, until the answer is stable."""
    owners = repo.owners_of(conn, keys)
    loaded: dict[str, Profile] = {}
    while True:
        missing = set(owners.values()) - set(loaded)
        if not missing:
            return owners, loaded
        loaded.update(repo.load_profiles(conn, db, missing, lock=True))
        if not db.is_postgres:
            return owners, loaded
        # Another worker may have merged a profile away while we waited for its lock.
        owners = repo.owners_of(conn, keys)


def apply_batch(
    conn: Connection, db: Database, items: list[InboxItem], ctx: ApplyContext
) -> BatchResult:
    """Apply `items` (one partition, arrival order) to profiles; write every effect."""
    result = BatchResult()
    events = [(item, Event.from_stored(item.payload)) for item in items]
    ids_per_event = [_identifiers_for(event, ctx.rules) for _, event in events]
    all_ids = {i for ids in ids_per_event for i in ids}
    repo.lock_identifiers(conn, db, (i.key for i in all_ids))
    hashes = {i: identity.erasure_hash(i, ctx.secret) for i in all_ids}
    erased = repo.erased_among(conn, hashes.values())
    owners, loaded = _load_state(conn, db, {i.key for i in all_ids})
    by_key = {i.key: i for i in all_ids}
    state = _State(
        owner={by_key[key]: pid for key, pid in owners.items()},
        ids_of={pid: set() for pid in loaded},
        profiles=loaded,
        stored=set(loaded),
    )
    for pid, owned in repo.identifiers_of(conn, loaded).items():
        state.ids_of[pid] = owned
        for i in owned:
            state.owner[i] = pid
    event_rows: list[dict[str, Any]] = []
    applied_events: list[Input] = []
    refused: dict[int, list[Refused]] = {}
    for (item, event), ids in zip(events, ids_per_event, strict=True):
        if any(hashes[i] in erased for i in ids):
            result.dropped_erased += 1
            continue
        if not ids:
            # Only placeholder values ("anonymous", "null", ...): no person to put it on.
            reason = "no usable identifier: userId and anonymousId are empty or placeholders"
            refused.setdefault(item.write_key_id, []).append(Refused(item.raw, reason))
            continue
        profile_id = _resolve(state, event, ids, ctx, refused.setdefault(item.write_key_id, []))
        if profile_id is None:
            continue
        state.profiles[profile_id] = profiles.apply_event(state.profiles[profile_id], event)
        state.dirty.add(profile_id)
        event_rows.append(_event_row(item, event, profile_id))
        applied_events.append(
            EventInput(Happening(event.name, event.timestamp, item.payload), event.type)
        )
        result.applied += 1
    for row, stored in zip(event_rows, applied_events, strict=True):
        row["profile_id"] = state.final(row["profile_id"])
        result.touched.setdefault(row["profile_id"], []).append(stored)
    live = {pid for pid in state.dirty if pid not in state.redirect}
    repo.write_batch(
        conn,
        BatchWrite(
            new_profiles=[state.profiles[p] for p in live if p not in state.stored],
            updated_profiles=[state.profiles[p] for p in live if p in state.stored],
            merges=[replace(m, survivor_id=state.final(m.survivor_id)) for m in state.merges],
            new_identifiers=[(i, state.final(p)) for i, p in state.new_links.items()],
            events=event_rows,
        ),
        ctx.now,
    )
    for write_key_id, items_refused in refused.items():
        quarantine(conn, write_key_id, "apply", items_refused, ctx.now)
    for merge in state.merges:
        if merge.existed:
            journeys_repo.follow_merge(conn, merge.merged_id, state.final(merge.survivor_id))
        result.merged_into.add(state.final(merge.survivor_id))
    result.quarantined = sum(len(r) for r in refused.values())
    result.merges = len(state.merges)
    result.profiles = {pid: state.profiles[pid] for pid in result.touched}
    result.identifiers = {pid: state.ids_of.get(pid, set()) for pid in result.touched}
    return result


def _resolve(
    state: _State, event: Event, ids: list[Identifier], ctx: ApplyContext, refused: list[Refused]
) -> str | None:
    """Find or create the event's profile, merging as the identity rules say."""
    strict = event.type == "alias"
    if strict:
        ids = identity.alias_identifiers(event, ctx.rules, state.known(ids))
    resolution = identity.resolve(ids, state.known(ids), ctx.rules, strict=strict)
    if resolution.conflict is not None:
        refused.append(
            Refused(orjson.dumps(event.to_stored()).decode(), f"alias {resolution.conflict}")
        )
        return None
    profile_id = resolution.profile_id
    if profile_id is None:
        state.created += 1
        profile_id = new_profile_id(ctx.now, state.created)
        state.profiles[profile_id] = Profile(profile_id=profile_id, created_at=ctx.now)
        state.ids_of[profile_id] = set()
    for merged in resolution.merged:
        _merge(state, profile_id, merged, event, ids)
    for i in resolution.link:
        state.owner[i] = profile_id
        state.ids_of[profile_id].add(i)
        state.new_links[i] = profile_id
    return profile_id


def _merge(state: _State, survivor: str, merged: str, event: Event, ids: list[Identifier]) -> None:
    state.profiles[survivor] = profiles.merge_profiles(
        state.profiles[survivor], state.profiles.pop(merged)
    )
    for i in state.ids_of.pop(merged):
        state.owner[i] = survivor
        state.ids_of[survivor].add(i)
    state.redirect[merged] = survivor
    state.dirty.add(survivor)
    cause = f"{event.type} carried " + ", ".join(i.key for i in ids)
    state.merges.append(
        MergeRecord(survivor, merged, event.message_id, cause, existed=merged in state.stored)
    )


def _event_row(item: InboxItem, event: Event, profile_id: str) -> dict[str, Any]:
    return {
        "profile_id": profile_id,
        "write_key_id": item.write_key_id,
        "message_id": event.message_id,
        "type": event.type,
        "name": event.name,
        "timestamp": event.timestamp,
        "received_at": event.received_at,
        "payload": item.raw,
    }
