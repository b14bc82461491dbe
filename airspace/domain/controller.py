"""The controller: which proposed messages go out, and why the others do not.

Journeys propose `Candidate`s; the controller decides per person (`decide`).
Each eligibility rule is a named function returning a reason or None:
expiry, a paused journey, the global control group, quiet hours, consent,
a reachable address, suppression (hard bounce, complaint), frequency caps and
mutual-exclusion groups. Transactional messages bypass arbitration, consent,
caps and quiet hours. What remains competes: the policy ranks the eligible
candidates — `airspace` by expected incremental value (a Thompson draw of the
uplift for people like this one, times the goal's value and the person's channel
response, minus the channel's cost and a fatigue cost per recent message), `oracle`
the same with the true value, `first_come`, `priority` and `random` the
baselines — and the best that fit the caps are sent, `per_decision` at most.
The first winner may be withheld (the message holdout): then nothing is sent
in that decision. A candidate whose learned score is not above 0 is declined
(final: its Thompson draw is sticky). Losers compete again after `retry_after`
until they expire;
a candidate blocked by a cap waits until the cap frees. Caps are counted over
what was sent before plus what this decision sends, so they are exact.
Every decision comes back as a `DecisionRecord`: all candidates, their rule
results, scores and the reason for each outcome, in plain words.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Literal, NamedTuple

import numpy as np

from airspace.domain.eligibility import (
    Candidate,
    Recipient,
    Sent,
    addresses,
    rule_address,
    rule_caps,
    rule_consent,
    rule_exclusion,
    rule_global_control,
    rule_journey_running,
    rule_not_expired,
    rule_quiet_hours,
    rule_suppression,
)
from airspace.domain.uplift import (
    Arm,
    Evidence,
    candidate_uniforms,
    channel_response,
    sticky_uplift,
)
from airspace.domain.workspace_settings import WorkspaceSettings

# The people and messages the controller decides about come with the rules.
__all__ = [
    "NOTHING_ELSE",
    "Assessment",
    "Candidate",
    "Contender",
    "Decision",
    "DecisionRecord",
    "Estimator",
    "Guess",
    "PolicyName",
    "Recipient",
    "Score",
    "Sent",
    "addresses",
    "assess",
    "decide",
    "decision_due",
    "decline",
    "first_come",
    "lost_to",
    "not_worth",
    "propensity",
    "recent_marketing",
    "retry",
    "rule_caps",
    "score_of",
    "thompson",
    "trial",
    "win",
]

Outcome = Literal["send", "defer", "suppress", "withhold"]
PolicyName = Literal["airspace", "oracle", "first_come", "priority", "random"]


@dataclass(frozen=True, slots=True)
class Decision:
    """What happens to one candidate, with the reason in plain words."""

    candidate_id: str
    outcome: Outcome
    reason: str
    channel: str | None = None
    retry_at: datetime | None = None
    declined: bool = False  # not worth sending for its draw: a control trial (see `trial`)


# --- scores -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Score:
    """What sending a candidate on one channel is worth now."""

    channel: str
    mean: float  # the estimated uplift on the goal rate (posterior mean, or the truth)
    draw: float  # the Thompson draw the decision used
    value: float  # the goal's value per conversion
    response: float  # the person's response to the channel relative to their others
    cost: float  # the channel's cost per message
    fatigue: float  # the cost of one more message after the recent ones
    learning: bool = False  # too little evidence yet: sent to learn even if the draw is low
    spread: float = 0.0  # the uplift's posterior standard deviation
    propensity: float = 1.0  # the chance a Thompson draw finds it worth sending (total > 0)

    @property
    def total(self) -> float:
        return self.draw * self.value * self.response - self.cost - self.fatigue


class Guess(NamedTuple):
    """An estimator's answer for one (candidate, channel)."""

    mean: float  # the uplift's posterior mean (or the truth)
    draw: float  # the Thompson draw to score with
    value: float  # the goal's value per conversion
    learning: bool = False  # evidence still too thin to hold the message back for its score
    spread: float = 0.0  # the uplift's posterior standard deviation (0: known)


# An estimator: a guess per (candidate, channel) pair.
Estimator = Callable[[Sequence[tuple[Candidate, str]], Recipient, datetime], Sequence[Guess]]


@dataclass(frozen=True, slots=True)
class Assessment:
    """One candidate in a decision: its rule results, its scores and what became of it."""

    candidate: Candidate
    decision: Decision
    refusals: tuple[tuple[str, str], ...] = ()  # (channel or "", reason)
    scores: tuple[Score, ...] = ()

    @property
    def score(self) -> Score | None:
        """The score of the channel it was (or would have been) sent on."""
        chosen = self.decision.channel
        return next((s for s in self.scores if s.channel == chosen), None)


@dataclass(frozen=True, slots=True)
class DecisionRecord:
    """A decision about one person at one instant, for the decision log."""

    profile_id: str
    at: datetime
    policy: str
    stratum: str
    assessments: tuple[Assessment, ...]

    @property
    def decisions(self) -> list[Decision]:
        return [a.decision for a in self.assessments]

    @property
    def summary(self) -> str:
        """The outcome in a few words."""
        for verb, outcome in (("sent", "send"), ("withheld (message holdout)", "withhold")):
            chosen = [a for a in self.assessments if a.decision.outcome == outcome]
            if chosen:
                names = ", ".join(
                    f"{a.candidate.journey_id}/{a.candidate.content} on {a.decision.channel}"
                    for a in chosen
                )
                return f"{verb}: {names}"
        return "nothing sent"


# --- deciding -----------------------------------------------------------------------------


@dataclass
class Contender:
    """A candidate that passed the rules on some channels, competing for the decision."""

    candidate: Candidate
    channels: list[str]  # eligible now, in the message's order of preference
    refusals: list[tuple[str, str]]
    scores: list[Score] = field(default_factory=list)
    best: Score | None = None


def decide(
    candidates: Sequence[Candidate],
    recipient: Recipient,
    history: Sequence[Sent],
    settings: WorkspaceSettings,
    now: datetime,
    *,
    policy: PolicyName = "first_come",
    estimator: Estimator | None = None,
    rng: np.random.Generator | None = None,
    salt: str = "airspace",
) -> DecisionRecord:
    """Decide what happens to each of one person's open candidates (see the module)."""
    sent = list(history)
    done: dict[str, Assessment] = {}
    contenders: list[Contender] = []
    for candidate in sorted(candidates, key=lambda c: (c.created_at, c.id)):
        assessed = assess(candidate, recipient, sent, settings, now)
        if isinstance(assessed, Assessment):
            done[candidate.id] = assessed
            if assessed.decision.outcome == "send" and assessed.decision.channel:
                sent.append(_sent(candidate, assessed.decision.channel, now))
        else:
            contenders.append(assessed)
    if contenders:
        learned = policy in ("airspace", "oracle") and estimator is not None
        if learned and estimator is not None:
            _score(contenders, recipient, sent, settings, now, estimator)
        ranked = _rank(contenders, policy, rng)
        done.update(_choose(ranked, recipient, sent, settings, now, policy, learned, salt))
    return DecisionRecord(
        recipient.profile_id,
        now,
        policy,
        recipient.stratum,
        tuple(done[c.id] for c in sorted(candidates, key=lambda c: (c.created_at, c.id))),
    )


def _sent(candidate: Candidate, channel: str, now: datetime) -> Sent:
    return Sent(now, channel, candidate.journey_id, candidate.topic, candidate.transactional)


def assess(
    candidate: Candidate,
    recipient: Recipient,
    sent: Sequence[Sent],
    settings: WorkspaceSettings,
    now: datetime,
) -> Assessment | Contender:
    """Run the rules: a final `Assessment` (suppressed, deferred, or a transactional message
    sent), or a `Contender` with the channels it may go on now."""
    reason = (
        rule_not_expired(candidate, now)
        or rule_journey_running(candidate, recipient)
        or rule_global_control(candidate, recipient)
    )
    if reason:
        return Assessment(candidate, Decision(candidate.id, "suppress", reason), (("", reason),))
    quiet = rule_quiet_hours(candidate, recipient, settings.quiet_hours, now)
    if quiet is not None:
        return Assessment(candidate, _defer_or_expire(candidate, *quiet), (("", quiet[0]),))
    refusals: list[tuple[str, str]] = []
    earliest: tuple[str, datetime] | None = None
    channels: list[str] = []
    for channel in candidate.channels:
        reason = (
            rule_consent(candidate, channel, recipient, settings)
            or rule_address(channel, recipient)
            or rule_suppression(channel, recipient)
        )
        blocked = None if reason else _blocked(candidate, channel, sent, settings, now)
        if reason:
            refusals.append((channel, reason))
        elif blocked is not None:
            refusals.append((channel, blocked[0]))
            if earliest is None or blocked[1] < earliest[1]:
                earliest = blocked
        else:
            if candidate.transactional:
                decision = Decision(
                    candidate.id, "send", f"transactional, sent on {channel}", channel
                )
                return Assessment(candidate, decision, tuple(refusals))
            channels.append(channel)
    if channels:
        return Contender(candidate, channels, refusals)
    if earliest is not None:
        return Assessment(candidate, _defer_or_expire(candidate, *earliest), tuple(refusals))
    why = "; ".join(r for _, r in refusals) or "no channel"
    return Assessment(candidate, Decision(candidate.id, "suppress", why), tuple(refusals))


def _blocked(
    candidate: Candidate,
    channel: str,
    sent: Sequence[Sent],
    settings: WorkspaceSettings,
    now: datetime,
) -> tuple[str, datetime] | None:
    found = [
        b
        for b in (
            rule_caps(candidate, channel, sent, settings.caps, now),
            rule_exclusion(candidate, sent, settings.exclusions, now),
        )
        if b is not None
    ]
    return max(found, key=lambda b: b[1]) if found else None


def _score(
    contenders: Sequence[Contender],
    recipient: Recipient,
    sent: Sequence[Sent],
    settings: WorkspaceSettings,
    now: datetime,
    estimator: Estimator,
) -> None:
    pairs = [(c.candidate, ch) for c in contenders for ch in c.channels]
    estimates = iter(estimator(pairs, recipient, now))
    fatigue = settings.fatigue_cost * recent_marketing(sent, settings, now)
    for contender in contenders:
        shared: float | None = None
        for channel in contender.channels:
            mean, draw, value, learning, spread = next(estimates)
            if learning:
                # While a journey is new, its channels share one draw: the channel is chosen
                # by cost and the person's response, ties in the message's order.
                shared = draw if shared is None else shared
                draw = shared
            if contender.candidate.value is not None:
                value = contender.candidate.value
            response = channel_response(recipient.engaged, channel, contender.channels)
            contender.scores.append(
                score_of(
                    contender,
                    channel,
                    mean,
                    draw,
                    value,
                    response,
                    learning,
                    spread,
                    settings,
                    fatigue,
                )
            )
        contender.best = max(contender.scores, key=lambda s: s.total)


def recent_marketing(sent: Sequence[Sent], settings: WorkspaceSettings, now: datetime) -> int:
    """Marketing messages the person got in the fatigue window."""
    since = now - settings.fatigue_window
    return sum(1 for s in sent if not s.transactional and s.at > since)


def score_of(
    contender: Contender,
    channel: str,
    mean: float,
    draw: float,
    value: float,
    response: float,
    learning: bool,
    spread: float,
    settings: WorkspaceSettings,
    fatigue: float,
) -> Score:
    """What sending `contender` on `channel` is worth now, with the chance that its draw
    finds it worth sending (1 when it is sent regardless: learning, or a tier)."""
    cost = settings.channels[channel].cost if channel in settings.channels else 0.0
    always = learning or contender.candidate.tier > 0
    worth = 1.0 if always else propensity(mean, spread, value * response, cost + fatigue)
    return Score(channel, mean, draw, value, response, cost, fatigue, learning, spread, worth)


# Standard logistic quantiles (variance 1) in units of the logistic function's argument.
LOGISTIC_SCALE = math.pi / math.sqrt(3.0)


def propensity(mean: float, spread: float, scale: float, costs: float) -> float:
    """The chance, over the candidate's sticky quantile, that its draw is worth sending:
    draw x scale > costs (scale: value x response; costs: channel and fatigue), where the
    draw is the posterior mean plus a standard logistic quantile times the spread."""
    if scale <= 0.0:  # a conversion worth nothing: only a free message is worth sending
        return 1.0 if costs < 0.0 else 0.0
    threshold = costs / scale
    if spread <= 0.0:
        return 1.0 if mean > threshold else 0.0
    z = (threshold - mean) / spread * LOGISTIC_SCALE
    return 1.0 / (1.0 + math.exp(min(z, 700.0)))


def holdout_share(score: Score | None, settings: WorkspaceSettings) -> float:
    """The chance a winner is withheld: the message holdout, or more for a winner whose
    posterior leaves the sign of its uplift unsure — the chance it has the other sign, up
    to `unsure_holdout`. Withholding such a message costs little (its value is near
    nothing either way) and feeds the control arm it most lacks: a cell sent to nearly
    everyone would otherwise keep an early lucky estimate for good."""
    base = settings.message_holdout
    if score is None or score.learning or score.spread <= 0.0:
        return base
    # The chance the uplift lies beyond zero on the other side: of -|mean| being above 0.
    unsure = propensity(-abs(score.mean), score.spread, 1.0, 0.0)
    return max(base, min(settings.unsure_holdout, unsure))


# The least chance of an arm a trial's weight assumes: rarer assignments would make single
# trials weigh without bound.
LEAST_PROPENSITY = 0.02


def trial(assessment: Assessment, settings: WorkspaceSettings) -> tuple[Arm, str, float] | None:
    """The uplift trial a decided candidate is, as (arm, channel, weight), or None.

    A candidate that reached a learned score was assigned by chance twice: its sticky
    Thompson quantile decided whether it was worth sending (`Score.propensity`), and the
    message holdout whether a winner was withheld. So a sent winner is a treated trial,
    and a withheld winner or a candidate declined for its draw a control trial, each
    weighted by one over the chance of its arm, so that the arms compare like with like
    however the chances moved as the estimates did (inverse propensity weighting). Under
    the baseline policies every winner has the same chances and every weight is alike."""
    decision = assessment.decision
    if decision.channel is None:
        return None
    worth = max((s.propensity for s in assessment.scores), default=1.0)
    mine = next((s for s in assessment.scores if s.channel == decision.channel), None)
    sent = worth * (1.0 - holdout_share(mine, settings))
    if decision.outcome == "send":
        return "treated", decision.channel, 1.0 / max(sent, LEAST_PROPENSITY)
    if decision.outcome == "withhold" or decision.declined:
        return "control", decision.channel, 1.0 / max(1.0 - sent, LEAST_PROPENSITY)
    return None


def _rank(
    contenders: list[Contender], policy: PolicyName, rng: np.random.Generator | None
) -> list[Contender]:
    if policy == "random":
        order = (rng or np.random.default_rng(0)).permutation(len(contenders))
        return [contenders[i] for i in order]
    if policy == "priority":
        return sorted(contenders, key=lambda c: -c.candidate.priority)  # stable: arrival order
    if policy in ("airspace", "oracle") and all(c.best is not None for c in contenders):
        return sorted(
            contenders,
            key=lambda c: (-c.candidate.tier, -(c.best.total if c.best else 0.0)),
        )
    return contenders  # first come


def _choose(
    ranked: Sequence[Contender],
    recipient: Recipient,
    sent: list[Sent],
    settings: WorkspaceSettings,
    now: datetime,
    policy: PolicyName,
    learned: bool,
    salt: str,
) -> dict[str, Assessment]:
    """Send the best contenders that fit; withhold the first winner if the message holdout
    draws it; the others lose, with the reason."""
    result: dict[str, Assessment] = {}
    winners: list[Contender] = []
    withheld = False
    for contender in ranked:
        candidate = contender.candidate
        refusals = tuple(contender.refusals)
        scores = tuple(contender.scores)
        channel = contender.best.channel if contender.best else contender.channels[0]
        why_not, declined = _why_not(contender, winners, withheld, settings, learned)
        if why_not is None:
            blocked = _blocked(candidate, channel, sent, settings, now)
            if blocked is not None:
                decision = _defer_or_expire(candidate, *blocked)
                result[candidate.id] = Assessment(candidate, decision, refusals, scores)
                continue
        if why_not is not None and declined:
            decision = decline(candidate, why_not, channel)
        elif why_not is not None:
            decision = retry(candidate, why_not, channel, settings, now)
        elif not winners and candidate_uniforms(candidate.id, salt)[0] < holdout_share(
            contender.best, settings
        ):
            withheld = True
            winners.append(contender)
            decision = win(contender, channel, policy, withheld=True)
        else:
            winners.append(contender)
            sent.append(_sent(candidate, channel, now))
            decision = win(contender, channel, policy, withheld=False)
        result[candidate.id] = Assessment(candidate, decision, refusals, scores)
    return result


# The reason of every loser after a winner withheld by the message holdout.
NOTHING_ELSE = "the winner of this decision was withheld (message holdout): nothing else is sent"


def win(contender: Contender, channel: str, policy: PolicyName, *, withheld: bool) -> Decision:
    """The winner's decision: sent on `channel`, or withheld by the message holdout."""
    candidate = contender.candidate
    if withheld:
        reason = f"won ({_why_won(contender, policy)}); withheld by the message holdout"
        return Decision(candidate.id, "withhold", reason, channel)
    return Decision(
        candidate.id, "send", f"{_why_won(contender, policy)}, sent on {channel}", channel
    )


def retry(
    candidate: Candidate, reason: str, channel: str, settings: WorkspaceSettings, now: datetime
) -> Decision:
    """A loser competes again after `retry_after`, if it is still alive then."""
    return replace(_defer_or_expire(candidate, reason, now + settings.retry_after), channel=channel)


def decline(candidate: Candidate, reason: str, channel: str) -> Decision:
    """Not worth sending for its draw. Final: the draw is sticky, so competing again would
    mostly repeat the answer."""
    return Decision(candidate.id, "suppress", reason, channel, declined=True)


def lost_to(winner: Candidate) -> str:
    """Why a contender lost to the decision's winner."""
    return f"lost to {winner.journey_id}/{winner.content}"


def not_worth(score: Score) -> str:
    """Why a contender was declined for its score."""
    return f"expected incremental value {score.total:.4f} is not above 0"


def _why_not(
    contender: Contender,
    winners: Sequence[Contender],
    withheld: bool,
    settings: WorkspaceSettings,
    learned: bool,
) -> tuple[str | None, bool]:
    """Why a contender is not sent now, if it is not, and whether that is final (declined
    for its score)."""
    if withheld:
        return NOTHING_ELSE, False
    if len(winners) >= settings.per_decision:
        return lost_to(winners[0].candidate), False
    best_score = contender.best
    if (
        learned
        and best_score is not None
        and not best_score.learning
        and contender.candidate.tier <= 0
        and best_score.total <= 0
    ):
        return not_worth(best_score), True
    return None, False


def _why_won(contender: Contender, policy: PolicyName) -> str:
    candidate = contender.candidate
    if candidate.tier > 0 and policy in ("airspace", "oracle"):
        return f"tier {candidate.tier}"
    if contender.best is not None:
        return f"best expected incremental value {contender.best.total:.4f}"
    return {
        "first_come": "first come",
        "priority": f"priority {candidate.priority}",
        "random": "random draw",
    }.get(policy, policy)


def thompson(evidence: Evidence) -> Estimator:
    """The airspace policy's estimator: posterior means and one Thompson draw per pair, at
    the candidate's own sticky quantile (`uplift.candidate_uniforms`): its channels share
    its optimism, and it keeps it when it competes again."""

    def estimate(
        pairs: Sequence[tuple[Candidate, str]], recipient: Recipient, now: datetime
    ) -> list[Guess]:
        found: list[Guess] = []
        sticky: dict[str, tuple[float, float]] = {}
        for candidate, channel in pairs:
            e = evidence.estimate(candidate.journey_id, channel, recipient.stratum)
            u = sticky.get(candidate.id)
            if u is None:
                u = sticky[candidate.id] = candidate_uniforms(candidate.id)
            draw = sticky_uplift(e, u[1])
            learning = evidence.learning(candidate.journey_id)
            found.append(Guess(e.uplift, draw, e.value, learning, e.reach))
        return found

    return estimate


Policy = Callable[
    [Sequence[Candidate], Recipient, Sequence[Sent], WorkspaceSettings, datetime], list[Decision]
]


def first_come(
    candidates: Sequence[Candidate],
    recipient: Recipient,
    history: Sequence[Sent],
    settings: WorkspaceSettings,
    now: datetime,
) -> list[Decision]:
    """First come, first served under caps: the baseline policy our peers use."""
    return decide(candidates, recipient, history, settings, now, policy="first_come").decisions


def _defer_or_expire(candidate: Candidate, reason: str, until: datetime) -> Decision:
    """Wait until `until` if the candidate is still alive then; else it is suppressed."""
    if until < candidate.expires_at:
        return Decision(
            candidate.id, "defer", f"{reason}; retry at {until.isoformat()}", retry_at=until
        )
    return Decision(candidate.id, "suppress", f"{reason} until after it expires")


def decision_due(candidates: Sequence[Candidate], window: timedelta, now: datetime) -> datetime:
    """When a person's pending candidates are decided: at once if any is urgent or
    transactional, else when the first one has waited the decision window."""
    if (
        not candidates
        or window <= timedelta(0)
        or any(c.urgent or c.transactional for c in candidates)
    ):
        return now
    return min(c.created_at for c in candidates) + window
