"""The decision log and the uplift tallies the controller learns from.

A decided candidate becomes an uplift *trial* when it is sent (arm treated), or
withheld by the message holdout or declined for its Thompson draw (arm control),
with a weight (`controller.trial`); its arm, the person's stratum and the weight
are written on the candidate. When an enrollment reaches its goal, each of its
trials proposed before the conversion counts a weighted conversion (and its
revenue) in its cell.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from airspace.domain.controller import DecisionRecord
from airspace.domain.decision_log import HeldOut, record_to_json
from airspace.domain.uplift import ANY, Tally, TallyKey
from airspace.store.bulk import upsert_many
from airspace.store.journeys import chunks
from airspace.store.tables import CandidateRow, DecisionRow, UpliftTallyRow, core

# candidate id, journey, arm, channel, stratum, weight
Trial = tuple[str, str, str, str, str, float]


def prune_log(conn: Connection, before: datetime, batch: int = 1_000) -> int:
    """Forget decisions made before `before`, oldest first. Ids grow with time, so the
    oldest rows are read by the primary key and nothing is scanned when none is due."""
    removed = 0
    while True:
        rows = conn.execute(
            select(DecisionRow.id, DecisionRow.at).order_by(DecisionRow.id).limit(batch)
        ).all()
        old = [row.id for row in rows if row.at < before]
        if old:
            conn.execute(delete(core(DecisionRow)).where(core(DecisionRow).c.id.in_(old)))
            removed += len(old)
        if len(old) < batch:
            return removed


_INSERT_DECISION = core(DecisionRow).insert()


def write_log(conn: Connection, records: Sequence[DecisionRecord]) -> None:
    """Store decisions in the log."""
    rows = [
        {
            "profile_id": r.profile_id,
            "at": r.at,
            "policy": r.policy,
            "stratum": r.stratum[:100],
            "summary": r.summary[:500],
            "record": record_to_json(r),
        }
        for r in records
    ]
    if rows:
        conn.execute(_INSERT_DECISION, rows)


def decisions_of(
    conn: Connection, profile_id: str, since: datetime, until: datetime, limit: int = 200
) -> list[dict[str, Any]]:
    """A person's logged decisions in the period, newest first."""
    rows = conn.execute(
        select(DecisionRow.record)
        .where(
            DecisionRow.profile_id == profile_id,
            DecisionRow.at >= since,
            DecisionRow.at <= until,
        )
        .order_by(DecisionRow.at.desc(), DecisionRow.id.desc())
        .limit(limit)
    ).scalars()
    return list(rows)


def held_out_of(
    conn: Connection, profile_id: str, since: datetime, until: datetime
) -> list[HeldOut]:
    """A person's candidates held out before reaching the controller, in the period."""
    rows = conn.execute(
        select(
            CandidateRow.created_at, CandidateRow.journey_id, CandidateRow.spec, CandidateRow.reason
        ).where(
            CandidateRow.profile_id == profile_id,
            CandidateRow.status == "held_out",
            CandidateRow.created_at >= since,
            CandidateRow.created_at <= until,
        )
    ).all()
    return [
        HeldOut(r.created_at, r.journey_id, str(r.spec.get("content", "")), r.reason) for r in rows
    ]


_MARK_TRIAL = (
    update(core(CandidateRow))
    .where(CandidateRow.id == bindparam("b_id"))
    .values(arm=bindparam("b_arm"), stratum=bindparam("b_stratum"), weight=bindparam("b_w"))
)


def count_trials(conn: Connection, trials: Sequence[Trial]) -> None:
    """Mark candidates as uplift trials and add them to their cells."""
    if not trials:
        return
    conn.execute(
        _MARK_TRIAL,
        [
            {"b_id": cid, "b_arm": arm, "b_stratum": stratum[:100], "b_w": weight}
            for cid, _, arm, _, stratum, weight in trials
        ],
    )
    cells: dict[TallyKey, Tally] = {}
    for _, journey, arm, channel, stratum, weight in trials:
        key = _key(journey, arm, channel, stratum)
        cells[key] = cells.get(key, Tally()) + Tally(weight, squares=weight * weight)
    add_tallies(conn, cells)


def count_conversions(conn: Connection, conversions: Sequence[tuple[str, datetime, float]]) -> None:
    """Enrollments that reached their goal (id, when, value): each of their trials
    proposed before then converts."""
    if not conversions:
        return
    by_enrollment = {eid: (at, value) for eid, at, value in conversions}
    cells: dict[TallyKey, Tally] = {}
    for chunk in chunks(list(by_enrollment)):
        for row in conn.execute(_TRIALS_OF, {"ids": chunk}):
            at, value = by_enrollment[row.enrollment_id]
            if row.created_at <= at:
                key = _key(row.journey_id, row.arm, row.channel or ANY, row.stratum)
                w = row.weight
                cells[key] = cells.get(key, Tally()) + Tally(0.0, w, w * value)
    add_tallies(conn, cells)


_TRIALS_OF = select(
    CandidateRow.enrollment_id,
    CandidateRow.journey_id,
    CandidateRow.arm,
    CandidateRow.channel,
    CandidateRow.stratum,
    CandidateRow.created_at,
    CandidateRow.weight,
).where(CandidateRow.enrollment_id.in_(bindparam("ids", expanding=True)), CandidateRow.arm != "")


def _key(journey: str, arm: str, channel: str, stratum: str) -> TallyKey:
    # Not sending is the same on every channel: the control arm is counted once.
    return (
        journey,
        "treated" if arm == "treated" else "control",
        channel if arm == "treated" else ANY,
        stratum,
    )


def add_tallies(conn: Connection, cells: Mapping[TallyKey, Tally]) -> None:
    """Add to the cells' trials, conversions and revenue (creating the cells)."""
    upsert_many(
        conn,
        UpliftTallyRow.__tablename__,
        {
            c: "plain"
            for c in (
                "journey_id",
                "arm",
                "channel",
                "stratum",
                "trials",
                "conversions",
                "revenue",
                "squares",
            )
        },
        [
            {
                "journey_id": j,
                "arm": arm,
                "channel": ch,
                "stratum": s,
                "trials": t.trials,
                "conversions": t.conversions,
                "revenue": t.revenue,
                "squares": t.squares,
            }
            for (j, arm, ch, s), t in sorted(cells.items())
        ],
        ["journey_id", "arm", "channel", "stratum"],
        increment=True,
    )


def tallies(conn: Connection) -> dict[TallyKey, Tally]:
    """Every cell, for the controller's `Evidence`: weighted trials as the equally weighted
    ones they are worth (`Tally.effective`)."""
    return {
        (r.journey_id, "treated" if r.arm == "treated" else "control", r.channel, r.stratum): Tally(
            r.trials, r.conversions, r.revenue, r.squares
        ).effective()
        for r in conn.execute(_TALLIES)
    }


_TALLIES = select(UpliftTallyRow)
