"""The decision log: every controller decision as stored, and explained in plain words.

`record_to_json` is the stored shape (a contract: the admin API returns it).
`explain` answers "why did this person get X and not Y, and why nothing on
Tuesday": one paragraph per decision, the candidates held out before any
decision, and the days on which nothing was proposed at all.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from airspace.domain.controller import Assessment, DecisionRecord

_MARKS = {"send": "sent", "withhold": "withheld", "defer": "deferred", "suppress": "suppressed"}


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


def _assessment_to_json(a: Assessment) -> dict[str, Any]:
    c, d = a.candidate, a.decision
    return {
        "candidate_id": c.id,
        "journey_id": c.journey_id,
        "step_id": c.step_id,
        "content": c.content,
        "channels": list(c.channels),
        "created_at": c.created_at.isoformat(),
        "expires_at": c.expires_at.isoformat(),
        "transactional": c.transactional,
        "priority": c.priority,
        "tier": c.tier,
        "rules": [{"channel": channel, "reason": reason} for channel, reason in a.refusals],
        "scores": [
            {
                "channel": s.channel,
                "uplift_mean": round(s.mean, 6),
                "uplift_draw": round(s.draw, 6),
                "uplift_spread": round(s.spread, 6),
                "value": round(s.value, 4),
                "response": round(s.response, 4),
                "cost": s.cost,
                "fatigue": round(s.fatigue, 4),
                "score": round(s.total, 6),
                "propensity": round(s.propensity, 4),
            }
            for s in a.scores
        ],
        "outcome": d.outcome,
        "reason": d.reason,
        "channel": d.channel,
        "retry_at": _iso(d.retry_at),
    }


def record_to_json(record: DecisionRecord) -> dict[str, Any]:
    """A decision as the log stores it."""
    return {
        "at": record.at.isoformat(),
        "policy": record.policy,
        "stratum": record.stratum,
        "summary": record.summary,
        "candidates": [_assessment_to_json(a) for a in record.assessments],
    }


@dataclass(frozen=True, slots=True)
class HeldOut:
    """A candidate that never reached the controller (journey holdout, global control)."""

    at: datetime
    journey_id: str
    content: str
    layer: str  # domain.journeys.Layer


# Why a held-out candidate was never sent, in words.
_HELD_OUT = {
    "journey_holdout": (
        "held out: the person is in this journey's holdout group, which it never messages,"
        " to measure what the journey adds"
    ),
    "global_control": (
        "held out: the person is in the global control group, which no marketing reaches,"
        " to measure what all journeys add together"
    ),
}


def _score_words(score: Mapping[str, Any]) -> str:
    response = score.get("response", 1.0)
    response_words = f" x response {response:g}" if response != 1.0 else ""
    return (
        f"uplift {score['uplift_mean']:+.2%} ± {score.get('uplift_spread', 0.0):.2%}"
        f" (drawn {score['uplift_draw']:+.2%}) x value {score['value']:.2f}{response_words}"
        f" - cost {score['cost']:g} - fatigue {score['fatigue']:g}"
        f" = {score['score']:+.4f}"
        f" (worth sending for {score.get('propensity', 1.0):.0%} of draws)"
    )


def _candidate_lines(candidate: Mapping[str, Any], tz: ZoneInfo) -> list[str]:
    name = f"{candidate['journey_id']}/{candidate['content']}"
    word = _MARKS.get(candidate["outcome"], candidate["outcome"])
    reason = candidate["reason"]
    if retry := candidate.get("retry_at"):  # the stored reason says when in UTC
        local = datetime.fromisoformat(retry).astimezone(tz)
        reason = reason.replace(retry, f"{local:%a %d %b %Y %H:%M}")
    lines = [f"  {word} {name}: {reason}"]
    chosen = candidate.get("channel")
    for score in candidate.get("scores", []):
        if score["channel"] == chosen or chosen is None:
            lines.append(f"      {score['channel']}: {_score_words(score)}")
    for rule in candidate.get("rules", []):
        where = f"{rule['channel']}: " if rule["channel"] else ""
        if rule["reason"] not in candidate["reason"]:
            lines.append(f"      {where}{rule['reason']}")
    return lines


def explain(
    records: Sequence[Mapping[str, Any]],
    held_out: Sequence[HeldOut],
    tz: ZoneInfo,
    since: datetime,
    until: datetime,
    *,
    limit: int | None = None,
) -> list[str]:
    """The person's decisions between `since` and `until` in plain words, oldest first,
    in their time zone, with the local days on which nothing was proposed.

    `records` are all the decisions of the period, or, when there are `limit` of them,
    its newest: then the days before the oldest are not called quiet, and the
    explanation says that older decisions are left out."""
    lines: list[str] = []
    if limit is not None and len(records) >= limit and records:
        since = max(since, min(datetime.fromisoformat(r["at"]) for r in records))
        held_out = [h for h in held_out if h.at >= since]
        lines.append(
            f"Only the newest {limit} decisions are shown; older ones are left out"
            f" (from {since.astimezone(tz):%a %d %b %Y %H:%M} on)."
        )
    busy: set[date] = set()
    entries: list[tuple[datetime, list[str]]] = []
    for record in records:
        at = datetime.fromisoformat(record["at"]).astimezone(tz)
        busy.add(at.date())
        head = (
            f"{at:%a %d %b %Y %H:%M} — {record['summary']} "
            f"(policy {record['policy']}, people like this: {record['stratum'] or 'n/a'})"
        )
        body = [line for c in record["candidates"] for line in _candidate_lines(c, tz)]
        entries.append((at, [head, *body]))
    for item in held_out:
        at = item.at.astimezone(tz)
        busy.add(at.date())
        why = _HELD_OUT.get(item.layer, f"held out ({item.layer})")
        entries.append((at, [f"{at:%a %d %b %Y %H:%M} — {item.journey_id}/{item.content}: {why}"]))
    quiet: list[date] = []
    day = since.astimezone(tz).date()
    while day <= until.astimezone(tz).date():
        if day not in busy:
            quiet.append(day)
        day += timedelta(days=1)
    for _, block in sorted(entries, key=lambda e: e[0]):
        lines.extend(block)
    if quiet:
        lines.append(f"No journey proposed a message on: {_ranges(quiet)}.")
    if not entries and not quiet:
        lines.append("No decisions in this period.")
    return lines


def _ranges(days: Sequence[date]) -> str:
    """Sorted days as runs: "Mon 02 Nov, Wed 04 Nov to Sun 08 Nov"."""
    runs: list[list[date]] = []
    for day in days:
        if runs and day - runs[-1][-1] == timedelta(days=1):
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(
        f"{run[0]:%a %d %b}" if len(run) == 1 else f"{run[0]:%a %d %b} to {run[-1]:%a %d %b}"
        for run in runs
    )
