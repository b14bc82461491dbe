"""Uplift: what a journey's message adds to its goal, learned from Airspace's own holdouts.

Evidence is counted per journey, arm, channel and stratum: a *treated* trial is
a decision's winner that was sent; a *control* trial a winner withheld by the
message holdout or a candidate declined for its Thompson draw. Both are chance
assignments, and each trial is weighted by one over the chance of its arm
(`controller.trial`), so the arms compare like with like. A trial counts once its
goal window has closed: converted if its enrollment reached the journey's goal
after it was proposed.

What is pooled is the *uplift*, not each arm's rate. People of different
strata buy at very different rates whether messaged or not; shrinking a thin
stratum's control rate towards its journey's (as pooling each arm apart would)
mixes those baselines into the uplift and favours the strata that buy anyway.
So the uplift of a journey for a stratum is a normal posterior whose prior is
the journey's uplift measured on the *other* strata, widened by how much
uplifts really differ between strata (estimated from the data of every journey,
empirical Bayes), and whose data is the stratum's own treated-minus-control
difference. A thin stratum thus borrows its journey's uplift, a well-measured
one follows its own, and a new journey starts from a weak prior centred on no
uplift. Control trials are the scarce ones (a few percent of winners), so a
cell's control rate borrows too: it starts from the stratum's rate over all
journeys times the journey's ratio to the rates of its other strata — people
of one stratum buy at much the same rate without a message whichever journey
proposed it. Not sending is the same on every channel, so a channel changes the
estimate only by its treated rate against the stratum's (pooled journey →
channel → stratum). The controller reads each candidate's draw at a sticky
quantile of that posterior, `exploration` spreads wide (Thompson sampling), so it
keeps exploring while it exploits.

Strata are "people like this one": the first configured stratum (a segment)
the person is in, else a lifecycle stage from their purchases.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Literal

import numpy as np

from airspace.domain.profiles import Profile
from airspace.domain.workspace_settings import WorkspaceSettings

Arm = Literal["treated", "control"]
ARMS: tuple[Arm, ...] = ("treated", "control")
ANY = ""  # the channel of the control arm, and "all strata" in pooled keys
# The prior of a journey nothing is known about: any goal rate alike (Beta(1, 1)), and an
# uplift centred on none but wide enough (standard deviation 0.25) that it gets tried.
PRIOR_A = 1.0
PRIOR_B = 1.0
PRIOR_UPLIFT_SD = 0.25
# How much a journey's uplift differs between strata (standard deviation) when the data
# cannot say yet, and the bounds of what the data may say.
SPREAD_DEFAULT = 0.03
SPREAD_BOUNDS = (0.005, 0.10)
# The control rate expected of a journey in a stratum (the stratum's rate over all journeys
# times the journey's ratio to it) counts as at most this many control trials of the cell;
# a journey's ratio starts from 1 with this many expected conversions' worth of doubt.
BASELINE_CAP = 200.0
RATIO_PRIOR = 10.0
LIFECYCLE = ("prospect", "new", "repeat", "lapsing", "lapsed")
OTHER = "other"  # the substratum of people in none of the configured ones


@dataclass(frozen=True, slots=True)
class Tally:
    """Trials, conversions and the revenue of the conversions of one cell. Each trial counts
    with its weight (one over the chance it had of landing in its arm), so `trials` and
    `conversions` are weighted sums and `squares` the sum of the squared weights (0: not
    recorded, each trial taken as weighing 1)."""

    trials: float = 0.0
    conversions: float = 0.0
    revenue: float = 0.0
    squares: float = 0.0

    def __add__(self, other: Tally) -> Tally:
        return Tally(
            self.trials + other.trials,
            self.conversions + other.conversions,
            self.revenue + other.revenue,
            self.squares + other.squares,
        )

    def effective(self) -> Tally:
        """As many equally weighted trials as the weighted ones are worth (Kish's effective
        sample size), at the weighted conversion rate (Hajek's estimator)."""
        if self.squares <= 0.0 or self.trials <= 0.0:
            return Tally(self.trials, self.conversions, self.revenue)
        scale = self.trials / self.squares
        return Tally(self.trials * scale, self.conversions * scale, self.revenue * scale)

    @staticmethod
    def of_trial(weight: float, value: float | None) -> Tally:
        """One trial of `weight`: converted with an order worth `value`, or not (None)."""
        if value is None:
            return Tally(weight, squares=weight * weight)
        return Tally(weight, weight, weight * value, weight * weight)


TallyKey = tuple[str, Arm, str, str]  # journey, arm, channel, stratum


def cell_of(journey: str, arm: str, channel: str, stratum: str) -> TallyKey:
    """The cell a trial joins. Not sending is the same on every channel: the control arm
    is counted once, on no channel (`ANY`)."""
    return (
        journey,
        "treated" if arm == "treated" else "control",
        channel if arm == "treated" else ANY,
        stratum,
    )


@dataclass(frozen=True, slots=True)
class Beta:
    """A Beta(a, b) posterior over a conversion rate."""

    a: float
    b: float

    @property
    def mean(self) -> float:
        return self.a / (self.a + self.b)

    @property
    def weight(self) -> float:
        return self.a + self.b

    @property
    def variance(self) -> float:
        n = self.a + self.b
        return self.a * self.b / (n * n * (n + 1.0))


@dataclass(frozen=True, slots=True)
class Estimate:
    """What Airspace believes one message adds for people of one stratum."""

    uplift: float  # the posterior mean of the uplift on the goal rate
    spread: float  # its posterior standard deviation
    treated: Beta  # the goal rate when sent on this channel (pooled)
    value: float  # the goal's value per conversion
    exploration: float = 1.0  # how far a Thompson draw reaches, in spreads

    @property
    def reach(self) -> float:
        """The standard deviation Thompson draws read: the spread times the exploration."""
        return self.spread * self.exploration


def _observe(prior: Beta, tally: Tally) -> Beta:
    failures = max(tally.trials - tally.conversions, 0.0)
    return Beta(prior.a + tally.conversions, prior.b + failures)


def _minus(whole: Tally, part: Tally) -> Tally:
    return Tally(
        max(whole.trials - part.trials, 0.0),
        max(whole.conversions - part.conversions, 0.0),
        whole.revenue - part.revenue,
    )


def raw_uplift(treated: Tally, control: Tally) -> tuple[float, float]:
    """Treated minus control rate from these trials alone, and its variance. Each arm's
    weak prior (one trial) sits at both arms' rate together, so an empty arm says "no
    difference, very unsure" rather than "50%"."""
    both = (treated.conversions + control.conversions + 1.0) / (
        treated.trials + control.trials + 2.0
    )
    prior = Beta(both, 1.0 - both)
    t, c = _observe(prior, treated), _observe(prior, control)
    return t.mean - c.mean, t.variance + c.variance


def _combine(
    mean: float, variance: float, data: float, data_variance: float
) -> tuple[float, float]:
    """A normal prior updated by a normal measurement: precision-weighted."""
    precision = 1.0 / variance + 1.0 / data_variance
    return (mean / variance + data / data_variance) / precision, 1.0 / precision


@dataclass
class Evidence:
    """The tallies of a workspace, with their pooled sums; answers `estimate` quickly."""

    tallies: Mapping[TallyKey, Tally]
    strength: float = 20.0
    exploration: float = 1.0
    _sums: dict[TallyKey, Tally] = field(default_factory=dict, init=False)
    _value: dict[str, tuple[float, float]] = field(default_factory=dict, init=False)
    _cache: dict[tuple[str, str, str], Estimate] = field(default_factory=dict, init=False)
    _strata: dict[tuple[str, str], tuple[float, float]] = field(default_factory=dict, init=False)
    _splits: dict[tuple[str, str], tuple[float, float, float, float]] = field(
        default_factory=dict, init=False
    )
    _base: dict[str, Tally] = field(default_factory=dict, init=False)  # control per stratum
    _rates: dict[str, float] = field(default_factory=dict, init=False)  # and its rate
    _controls: dict[str, dict[str, Tally]] = field(default_factory=dict, init=False)
    _learning: dict[str, bool] = field(default_factory=dict, init=False)
    between: float = field(default=SPREAD_DEFAULT, init=False)
    within: float = field(default=SPREAD_DEFAULT, init=False)  # between substrata of a stratum

    def __post_init__(self) -> None:
        sums: dict[TallyKey, Tally] = {}
        for (journey, arm, channel, stratum), tally in self.tallies.items():
            if arm == "control":
                channel = ANY
            keys = {
                (journey, arm, ANY, ANY),
                (journey, arm, ANY, stratum),
                (journey, arm, channel, ANY),
                (journey, arm, channel, stratum),
            }
            parent = parent_of(stratum)
            if parent is not None:
                keys |= {(journey, arm, ANY, parent), (journey, arm, channel, parent)}
            for key in keys:
                sums[key] = sums.get(key, Tally()) + tally
        self._sums = sums
        total = Tally()
        for (_, _, channel, stratum), tally in sums.items():
            if channel == ANY and stratum == ANY:
                total += tally
        mean_value = total.revenue / total.conversions if total.conversions else 1.0
        for (journey, _, channel, stratum), tally in sums.items():
            if channel == ANY and stratum == ANY:
                revenue, conversions = self._value.get(journey, (0.0, 0.0))
                self._value[journey] = (revenue + tally.revenue, conversions + tally.conversions)
        # A journey's value per conversion, pooled towards the workspace's with 5 conversions.
        self._value = {
            j: ((revenue + 5 * mean_value) / (conversions + 5), conversions)
            for j, (revenue, conversions) in self._value.items()
        }
        self._value[ANY] = (mean_value, total.conversions)
        for (journey, arm, channel, stratum), tally in sums.items():
            if arm == "control" and channel == ANY and stratum != ANY:
                self._base[stratum] = self._base.get(stratum, Tally()) + tally
                if parent_of(stratum) is None:  # each trial once: its stratum, not its sub
                    self._base[ANY] = self._base.get(ANY, Tally()) + tally
                self._controls.setdefault(journey, {})[stratum] = tally
        self._rates = {s: self._stratum_rate(s, Tally()).mean for s in self._base}
        self.between = self._spread(substrata=False)
        self.within = self._spread(substrata=True)

    def _sum(self, journey: str, arm: Arm, channel: str, stratum: str) -> Tally:
        return self._sums.get((journey, arm, channel, stratum), Tally())

    def _stratum_rate(self, stratum: str, leave_out: Tally) -> Beta:
        """The control rate of a stratum over every journey (without `leave_out`), from a
        prior of two trials at the rate of everyone."""
        everyone = self._base.get(ANY, Tally())
        overall = (everyone.conversions + 1.0) / (everyone.trials + 2.0)
        mine = _minus(self._base.get(stratum, Tally()), leave_out)
        return _observe(Beta(2.0 * overall, 2.0 * (1.0 - overall)), mine)

    def control(self, journey: str, stratum: str) -> Beta:
        """The control rate of a journey in a stratum. People of one stratum buy at much the
        same rate without a message whichever journey proposed it, so the cell's own (few)
        control trials start from what the other cells predict: the stratum's rate over all
        journeys times this journey's ratio to the rates of the strata it reached, worth as
        many trials as that prediction is sure (`BASELINE_CAP` at most)."""
        own = self._sum(journey, "control", ANY, stratum)
        rate = self._stratum_rate(stratum, own)
        observed = expected = 0.0
        level = parent_of(stratum) is None
        for other, tally in self._controls.get(journey, {}).items():
            if other != stratum and (parent_of(other) is None) == level:
                observed += tally.conversions
                expected += tally.trials * self._rates[other]
        ratio = (observed + RATIO_PRIOR) / (expected + RATIO_PRIOR)
        p = min(rate.mean * ratio, 0.99)
        # The prediction's variance: the stratum rate's and the ratio's (relative 1 / count).
        variance = rate.variance * ratio**2 + p * p / (observed + RATIO_PRIOR)
        weight = min(p * (1.0 - p) / variance, BASELINE_CAP)
        return _observe(Beta(weight * p, weight * (1.0 - p)), own)

    def _split(self, journey: str, stratum: str) -> tuple[float, float, float, float]:
        """The raw uplift (and variance) of a journey in one stratum and on all the others —
        of a substratum, on the other substrata of its stratum (computed once: the spread
        between strata and each stratum's posterior use it)."""
        found = self._splits.get((journey, stratum))
        if found is not None:
            return found
        mine_t = self._sum(journey, "treated", ANY, stratum)
        mine_c = self._sum(journey, "control", ANY, stratum)
        whole = parent_of(stratum) or ANY
        others_t = _minus(self._sum(journey, "treated", ANY, whole), mine_t)
        others_c = _minus(self._sum(journey, "control", ANY, whole), mine_c)
        control = self.control(journey, stratum)
        treated = _observe(Beta(control.mean, 1.0 - control.mean), mine_t)
        found = self._splits[journey, stratum] = (
            treated.mean - control.mean,
            treated.variance + control.variance,
            *raw_uplift(others_t, others_c),
        )
        return found

    def _spread(self, *, substrata: bool) -> float:
        """How much uplifts differ between the strata of a journey (or the substrata of a
        stratum), a standard deviation, by the method of moments over every measured
        (journey, stratum): the squared gap between a stratum and the rest of its journey
        (a substratum and the rest of its stratum) beyond what noise explains."""
        excess = weights = 0.0
        for journey, arm, channel, stratum in self._sums:
            if arm != "control" or channel != ANY or stratum == ANY:
                continue
            if (parent_of(stratum) is not None) != substrata:
                continue
            mine, mine_var, others, others_var = self._split(journey, stratum)
            noise = mine_var + others_var
            if self._sum(journey, "control", ANY, stratum).trials < 10 or noise <= 0.0:
                continue
            excess += ((mine - others) ** 2 - noise) / noise
            weights += 1.0 / noise
        if not weights:
            return SPREAD_DEFAULT
        low, high = SPREAD_BOUNDS
        return float(np.clip(np.sqrt(max(excess / weights, 0.0)), low, high))

    def _chain(self, keys: Sequence[TallyKey]) -> Beta:
        """The posterior of the finest cell: each level's prior is its parent's evidence
        *without the cell itself* (so no trial counts twice), shrunk to `strength`."""
        prior = Beta(PRIOR_A, PRIOR_B)
        tallies = [self._sums.get(key, Tally()) for key in keys]
        for i, tally in enumerate(tallies):
            if i > 0:
                others = _minus(tallies[i - 1], tally)
                parent = _observe(prior, others)
                weight = min(self.strength, parent.weight)
                prior = Beta(weight * parent.mean, weight * (1 - parent.mean))
        return _observe(prior, tallies[-1])

    def learning(self, journey: str) -> bool:
        """Is a journey still too new to hold its messages back: fewer trials in either arm
        than the pooling strength? (It is then sent whenever it wins, to learn.)"""
        found = self._learning.get(journey)
        if found is None:
            found = self._learning[journey] = any(
                self._sums.get((journey, arm, ANY, ANY), Tally()).trials < max(self.strength, 1.0)
                for arm in ARMS
            )
        return found

    def stratum_uplift(self, journey: str, stratum: str) -> tuple[float, float]:
        """The posterior mean and variance of a journey's uplift in a stratum, whatever the
        channel: the journey's uplift on the other strata (from a weak prior), widened by
        the spread between strata, updated by the stratum's own difference. A substratum's
        prior is its stratum's uplift measured on the other substrata (itself from the
        other strata), widened by the spread between substrata."""
        key = (journey, stratum)
        found = self._strata.get(key)
        if found is None:
            parent = parent_of(stratum)
            top = parent if parent is not None else stratum
            _, _, others, others_var = self._split(journey, top)
            mean, variance = _combine(0.0, PRIOR_UPLIFT_SD**2, others, others_var)
            variance += self.between**2
            mine, mine_var, siblings, siblings_var = self._split(journey, stratum)
            if parent is not None:
                mean, variance = _combine(mean, variance, siblings, siblings_var)
                variance += self.within**2
            found = self._strata[key] = _combine(mean, variance, mine, mine_var)
        return found

    def estimate(self, journey: str, channel: str, stratum: str) -> Estimate:
        """The posterior of sending this journey's message on `channel` to people of
        `stratum` versus not sending it."""
        key = (journey, channel, stratum)
        found = self._cache.get(key)
        if found is None:
            mean, variance = self.stratum_uplift(journey, stratum)
            path = [stratum] if (parent := parent_of(stratum)) is None else [parent, stratum]
            arm: Arm = "treated"
            treated = self._chain(
                [(journey, arm, ANY, ANY), (journey, arm, channel, ANY)]
                + [(journey, arm, channel, s) for s in path]
            )
            any_channel = self._chain(
                [(journey, arm, ANY, ANY)] + [(journey, arm, ANY, s) for s in path]
            )
            value = self._value.get(journey, self._value[ANY])[0]
            found = self._cache[key] = Estimate(
                mean + treated.mean - any_channel.mean,
                float(np.sqrt(variance)),
                treated,
                value,
                self.exploration,
            )
        return found


_MASK = (1 << 64) - 1
_GOLDEN = 0x9E3779B97F4A7C15


def candidate_key(candidate_id: str) -> int:
    """A 64-bit key of a candidate id: the id's own bits when it is hexadecimal (Airspace's
    ids are: time then random), else a hash of it."""
    try:
        value = int(candidate_id, 16)
    except ValueError:
        return int.from_bytes(hashlib.sha256(candidate_id.encode()).digest()[:8], "big")
    return (value ^ (value >> 64)) & _MASK


@functools.cache
def _salt_key(salt: str) -> int:
    return int.from_bytes(hashlib.sha256(salt.encode()).digest()[:8], "big")


def _mix(x: int) -> int:
    """SplitMix64's finaliser: every bit of the key stirs every bit of the result."""
    x = (x + _GOLDEN) & _MASK
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & _MASK
    return x ^ (x >> 31)


def candidate_uniforms(candidate_id: str, salt: str = "airspace") -> tuple[float, float]:
    """Two sticky numbers in (0, 1) fixed by a candidate's id: its message-holdout draw and
    the quantile at which its Thompson draw reads the uplift's posterior. A
    candidate decided again keeps them, so losing and competing again is not a new
    lottery ticket each time. `uniforms_of_keys` computes the same for many at once."""
    key = candidate_key(candidate_id) ^ _salt_key(salt)
    first, second = (_mix((key + i * _GOLDEN) & _MASK) for i in range(2))
    return ((first + 0.5) / 2**64, (second + 0.5) / 2**64)


def uniforms_of_keys(keys: np.ndarray, salt: str = "airspace") -> np.ndarray:
    """`candidate_uniforms` of many candidates by their `candidate_key`s (uint64): shape
    keys.shape + (2,)."""
    base = keys.astype(np.uint64) ^ np.uint64(_salt_key(salt))
    out = np.empty((*keys.shape, 2))
    with np.errstate(over="ignore"):
        for i in range(2):
            x = base + np.uint64((i * _GOLDEN) & _MASK) + np.uint64(_GOLDEN)
            x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
            x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
            x = x ^ (x >> np.uint64(31))
            out[..., i] = (x.astype(np.float64) + 0.5) / 2.0**64
    return out


def optimism(u: np.ndarray) -> np.ndarray:
    """Uniform draws as standardised logistic ones (mean 0, variance 1): the quantile at
    which a candidate reads its posteriors."""
    result: np.ndarray = np.log(u / (1.0 - u)) * (np.sqrt(3.0) / np.pi)
    return result


def sticky_uplift(estimate: Estimate, u: float) -> float:
    """A candidate's Thompson draw of the uplift at its sticky number `u` in (0, 1)."""
    return estimate.uplift + float(optimism(np.array(u))) * estimate.reach


# Traits by which a customer's own systems declare purchase history from before Airspace.
ORDERS_TRAIT = "orders_count"
LAST_ORDER_TRAIT = "last_order_at"


def lifecycle_stage(profile: Profile, purchase_event: str, now: datetime) -> str:
    """The default stratum: prospect, new, repeat, lapsing (90 days) or lapsed (180 days),
    from the purchases Airspace has seen and the `orders_count` / `last_order_at` traits
    (whichever says more)."""
    seen = profile.computed.counts_by_event.get(purchase_event, 0)
    declared = profile.traits.get(ORDERS_TRAIT)
    purchases = max(seen, int(declared) if isinstance(declared, int | float) else 0)
    last = profile.computed.last_by_event.get(purchase_event)
    declared_last = _instant(profile.traits.get(LAST_ORDER_TRAIT))
    if declared_last is not None and (last is None or declared_last > last):
        last = declared_last
    if purchases == 0 and last is None:
        return "prospect"
    if last is None:
        return "lapsed"
    quiet = now - last
    if quiet > timedelta(days=180):
        return "lapsed"
    if quiet > timedelta(days=90):
        return "lapsing"
    return "new" if purchases <= 1 else "repeat"


def _instant(value: object) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        found = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return found if found.tzinfo else found.replace(tzinfo=UTC)


def stratum_of(
    profile: Profile, segments: Iterable[str], settings: WorkspaceSettings, now: datetime
) -> str:
    """People like this one: the first configured stratum whose segment holds them, else
    their lifecycle stage; with substrata, that name, '/', and the first substratum that
    holds them (else `other`)."""
    member = set(segments)
    found = next((s.name for s in settings.strata if s.segment in member), None)
    if found is None:
        found = lifecycle_stage(profile, settings.purchase_event, now)
    if not settings.substrata:
        return found
    sub = next((s.name for s in settings.substrata if s.segment in member), OTHER)
    return f"{found}/{sub}"


def parent_of(stratum: str) -> str | None:
    """The stratum a substratum (`stratum/sub`) belongs to; None for a stratum."""
    head, slash, _ = stratum.partition("/")
    return head if slash else None


def channel_response(engaged: Mapping[str, int], channel: str, channels: Sequence[str]) -> float:
    """How welcome a channel is for this person relative to the others they could get:
    opens and clicks per channel, smoothed towards 1 (no data: 1 everywhere)."""
    if not channels:
        return 1.0
    smoothing = 2.0
    mean = sum(engaged.get(c, 0) for c in channels) / len(channels)
    return (engaged.get(channel, 0) + smoothing) / (mean + smoothing)
