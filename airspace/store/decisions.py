"""The decision log and the uplift tallies the controller learns from.

A decided candidate becomes an uplift *trial* when it is sent (arm treated), or
withheld by the message holdout or declined for its Thompson draw (arm control),
with a weight (`controller.trial`); its arm, the person's stratum, the weight and
the moment its goal window closes are written on the candidate. A trial joins
its cell once that moment has passed (`mature_trials`): counted with its
conversion (and revenue) if its enrollment reached the goal after the trial was
proposed. Counting a trial before its outcome is known would count it as not
converted for a while — and the arms do not fill at the same pace (control
trials multiply as the controller learns to decline), so the newer arm would
look worse than it is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update

from airspace.domain.controller import DecisionRecord
from airspace.domain.decision_log import HeldOut, record_to_json
from airspace.domain.uplift import ANY, Tally, TallyKey, cell_of
from airspace.store.bulk import upsert_many
from airspace.store.journeys import chunks
from airspace.store.tables import (
    CandidateRow,
    DecisionRow,
    EnrollmentRow,
    UpliftTallyRow,
    core,
)

# candidate id, journey, arm, channel, stratum, weight, when its goal window closes
Trial = tuple[str, str, str, str, str, float, datetime]


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
            CandidateRow.created_at, CandidateRow.journey_id, CandidateRow.spec, CandidateRow.layer
        ).where(
            CandidateRow.profile_id == profile_id,
            CandidateRow.status == "held_out",
            CandidateRow.created_at >= since,
            CandidateRow.created_at <= until,
        )
    ).all()
    return [
        HeldOut(r.created_at, r.journey_id, str(r.spec.get("content", "")), r.layer) for r in rows
    ]


_MARK_TRIAL = (
    update(core(CandidateRow))
    .where(CandidateRow.id == bindparam("b_id"))
    .values(
        arm=bindparam("b_arm"),
        stratum=bindparam("b_stratum"),
        weight=bindparam("b_w"),
        matures_at=bindparam("b_matures"),
    )
)


def count_trials(conn: Connection, trials: Sequence[Trial]) -> None:
    """Mark candidates as uplift trials, to join their cells when they mature."""
    if trials:
        conn.execute(
            _MARK_TRIAL,
            [
                {"b_id": cid, "b_arm": arm, "b_stratum": stratum[:100], "b_w": w, "b_matures": at}
                for cid, _, arm, _, stratum, w, at in trials
            ],
        )


_candidates = core(CandidateRow)
_MATURED = (
    select(CandidateRow.id, CandidateRow.matures_at)
    .where(CandidateRow.matures_at <= bindparam("now"))
    .order_by(CandidateRow.matures_at)
    .limit(bindparam("limit"))
)
# Claimed by clearing `matures_at`: with several workers, each trial is counted once.
_CLAIM_MATURE = (
    update(_candidates)
    .where(
        _candidates.c.id.in_(bindparam("ids", expanding=True)),
        _candidates.c.matures_at.is_not(None),
    )
    .values(matures_at=None)
    .returning(
        _candidates.c.id,
        _candidates.c.enrollment_id,
        _candidates.c.journey_id,
        _candidates.c.arm,
        _candidates.c.channel,
        _candidates.c.stratum,
        _candidates.c.created_at,
        _candidates.c.weight,
    )
)
_CONVERSIONS_OF = select(
    EnrollmentRow.id, EnrollmentRow.converted_at, EnrollmentRow.conversion_value
).where(
    EnrollmentRow.id.in_(bindparam("ids", expanding=True)), EnrollmentRow.converted_at.is_not(None)
)


def mature_trials(conn: Connection, now: datetime, limit: int = 20_000) -> int:
    """Add the trials whose window has closed by `now` to their cells (the `limit`
    oldest: a blast's trials all mature at once, and the rest can wait for the next
    call), each with its conversion if its enrollment reached the goal after the trial
    was proposed and before its window closed; return how many."""
    closes = {
        row.id: row.matures_at for row in conn.execute(_MATURED, {"now": now, "limit": limit})
    }
    if not closes:
        return 0
    trials = conn.execute(_CLAIM_MATURE, {"ids": list(closes)}).all()
    if not trials:
        return 0
    converted: dict[str, tuple[datetime, float]] = {}
    for chunk in chunks(sorted({t.enrollment_id for t in trials})):
        for row in conn.execute(_CONVERSIONS_OF, {"ids": chunk}):
            converted[row.id] = (row.converted_at, row.conversion_value or 0.0)
    cells: dict[TallyKey, Tally] = {}
    for t in trials:
        key = cell_of(t.journey_id, t.arm, t.channel or ANY, t.stratum)
        found = converted.get(t.enrollment_id)
        value = found[1] if found is not None and t.created_at <= found[0] <= closes[t.id] else None
        cells[key] = cells.get(key, Tally()) + Tally.of_trial(t.weight, value)
    add_tallies(conn, cells)
    return len(trials)


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
