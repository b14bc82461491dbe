"""Read-side queries of the admin API about segments, journeys and messages."""

from __future__ import annotations

from datetime import datetime, time
from typing import Any

from sqlalchemy import func, select

from airspace.domain import timing
from airspace.domain.decision_log import explain
from airspace.domain.errors import NotFound
from airspace.domain.uplift import ANY, Evidence, Tally
from airspace.store import decisions as decisions_repo
from airspace.store.admin import current_profile_id
from airspace.store.database import Database
from airspace.store.definitions import current_workspace
from airspace.store.identity import load_profiles
from airspace.store.tables import (
    CandidateRow,
    EnrollmentRow,
    MessageRow,
    SegmentMemberRow,
    SegmentSizeRow,
    SegmentTransitionRow,
)


def _json(row: Any) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in row._mapping.items()}


def _live(db: Database, profile_id: str) -> str:
    with db.read() as conn:
        live = current_profile_id(conn, profile_id)
    if live is None:
        raise NotFound(f"no profile {profile_id!r}")
    return live


def segment_members(db: Database, segment_id: str, after: str, limit: int) -> list[dict[str, Any]]:
    """Members of a segment, in profile id order, after `after`."""
    with db.read() as conn:
        rows = conn.execute(
            select(SegmentMemberRow.profile_id, SegmentMemberRow.entered_at)
            .where(SegmentMemberRow.segment_id == segment_id, SegmentMemberRow.profile_id > after)
            .order_by(SegmentMemberRow.profile_id)
            .limit(limit)
        ).all()
    return [_json(r) for r in rows]


def segment_sizes(db: Database, segment_id: str, limit: int) -> dict[str, Any]:
    """A segment's size now and its recorded sizes, newest first."""
    with db.read() as conn:
        now = conn.execute(
            select(func.count()).where(SegmentMemberRow.segment_id == segment_id)
        ).scalar()
        history = conn.execute(
            select(SegmentSizeRow.at, SegmentSizeRow.size)
            .where(SegmentSizeRow.segment_id == segment_id)
            .order_by(SegmentSizeRow.at.desc())
            .limit(limit)
        ).all()
    return {"segment": segment_id, "size": now, "history": [_json(r) for r in history]}


def journey_report(db: Database, journey_id: str) -> dict[str, Any]:
    """Enrollments of a journey by version, layer and status, with conversions."""
    with db.read() as conn:
        rows = conn.execute(
            select(
                EnrollmentRow.version,
                EnrollmentRow.layer,
                EnrollmentRow.status,
                func.count().label("enrollments"),
                func.count(EnrollmentRow.converted_at).label("converted"),
                func.coalesce(func.sum(EnrollmentRow.conversion_value), 0).label("value"),
            )
            .where(EnrollmentRow.journey_id == journey_id)
            .group_by(EnrollmentRow.version, EnrollmentRow.layer, EnrollmentRow.status)
            .order_by(EnrollmentRow.version, EnrollmentRow.layer, EnrollmentRow.status)
        ).all()
        steps = conn.execute(
            select(EnrollmentRow.step_id, func.count().label("people"))
            .where(EnrollmentRow.journey_id == journey_id, EnrollmentRow.status == "active")
            .group_by(EnrollmentRow.step_id)
            .order_by(EnrollmentRow.step_id)
        ).all()
    return {
        "journey": journey_id,
        "groups": [_json(r) for r in rows],
        "active_by_step": {r.step_id: r.people for r in steps},
    }


def journey_enrollments(
    db: Database, journey_id: str, status: str | None, after: str, limit: int
) -> list[dict[str, Any]]:
    with db.read() as conn:
        query = select(EnrollmentRow).where(
            EnrollmentRow.journey_id == journey_id, EnrollmentRow.id > after
        )
        if status:
            query = query.where(EnrollmentRow.status == status)
        rows = conn.execute(query.order_by(EnrollmentRow.id).limit(limit)).all()
    return [_json(r) for r in rows]


def person_journeys(db: Database, profile_id: str) -> dict[str, Any]:
    """A person's segments (with entry and exit history), enrollments and candidates."""
    live = _live(db, profile_id)
    with db.read() as conn:
        members = conn.execute(
            select(SegmentMemberRow.segment_id, SegmentMemberRow.entered_at).where(
                SegmentMemberRow.profile_id == live
            )
        ).all()
        moves = conn.execute(
            select(
                SegmentTransitionRow.segment_id,
                SegmentTransitionRow.entered,
                SegmentTransitionRow.at,
            )
            .where(SegmentTransitionRow.profile_id == live)
            .order_by(SegmentTransitionRow.id)
        ).all()
        enrollments = conn.execute(
            select(EnrollmentRow)
            .where(EnrollmentRow.profile_id == live)
            .order_by(EnrollmentRow.entered_at)
        ).all()
        candidates = conn.execute(
            select(CandidateRow)
            .where(CandidateRow.profile_id == live)
            .order_by(CandidateRow.created_at)
        ).all()
    return {
        "profile_id": live,
        "segments": [_json(r) for r in members],
        "segment_history": [_json(r) for r in moves],
        "enrollments": [_json(r) for r in enrollments],
        "candidates": [_json(r) for r in candidates],
    }


def messages(
    db: Database, profile_id: str | None, after_id: int, limit: int
) -> list[dict[str, Any]]:
    """Messages handed to channels (the capture channel keeps them for viewing)."""
    live = _live(db, profile_id) if profile_id else None
    with db.read() as conn:
        query = select(MessageRow).where(MessageRow.id > after_id)
        if live:
            query = query.where(MessageRow.profile_id == live)
        rows = conn.execute(query.order_by(MessageRow.id).limit(limit)).all()
    return [_json(r) for r in rows]


def person_decisions(
    db: Database, profile_id: str, since: datetime, until: datetime, limit: int
) -> dict[str, Any]:
    """A person's controller decisions in the period (newest first), and the same explained
    in plain words in their time zone (oldest first)."""
    live = _live(db, profile_id)
    with db.read() as conn:
        profile = load_profiles(conn, db, [live]).get(live)
        settings = current_workspace(conn).settings
        tz = timing.timezone_of(profile, settings.timezone) if profile else timing.zone(None, "UTC")
        # From the start of the person's day: a day is called quiet only if all of it was.
        since = datetime.combine(since.astimezone(tz).date(), time(), tz)
        records = decisions_repo.decisions_of(conn, live, since, until, limit)
        held = decisions_repo.held_out_of(conn, live, since, until)
    return {
        "profile_id": live,
        "timezone": tz.key,
        "explanation": explain(list(reversed(records)), held, tz, since, until, limit=limit),
        "decisions": records,
    }


def uplift_report(db: Database) -> list[dict[str, Any]]:
    """What each journey's messages add, per channel and stratum: effective trials and
    conversions of each arm (`Tally.effective`) and the uplift's posterior mean with a 90%
    credible interval."""
    with db.read() as conn:
        tallies = decisions_repo.tallies(conn)
        settings = current_workspace(conn).settings
    evidence = Evidence(tallies, settings.prior_strength)
    rows: list[dict[str, Any]] = []
    cells = sorted({(j, ch, s) for (j, arm, ch, s) in tallies if arm == "treated"})
    for journey, channel, stratum in cells:
        estimate = evidence.estimate(journey, channel, stratum)
        treated = tallies[journey, "treated", channel, stratum]
        control = tallies.get((journey, "control", ANY, stratum), Tally())
        rows.append(
            {
                "journey_id": journey,
                "channel": channel,
                "stratum": stratum,
                "treated": {"trials": treated.trials, "conversions": treated.conversions},
                "control": {"trials": control.trials, "conversions": control.conversions},
                "uplift": round(estimate.uplift, 6),
                "uplift_90": [
                    round(estimate.uplift + z * estimate.spread, 6) for z in (-1.645, 1.645)
                ],
                "value_per_conversion": round(estimate.value, 4),
                "incremental_value_per_message": round(estimate.uplift * estimate.value, 6),
            }
        )
    return rows
