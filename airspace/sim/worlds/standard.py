"""The standard world: five customer types, eight journeys that collide.

Each customer has a latent type that sets how they browse, abandon carts, buy
and return, which channels they opted into, and how much each journey's
message truly changes their chance of buying within the goal window (7 days).
The journey that proposes first is often not the one that pays: the weekly
newsletter and browse reminders arrive early and often, while abandoned-cart,
birthday, welcome and win-back messages are worth far more to the types they
fit, and some journeys do nothing or harm for some types.

Randomness never depends on call interleaving: the population comes from
`seed`, a day's behaviour from `(seed, day)`, and the response to a message
from `(seed, customer, how many messages that customer had before)`.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from airspace.domain.errors import InvalidInput
from airspace.sim.world import CONSENT_EVENT, Action, Customer, Delivery, Truth

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]
Bools = npt.NDArray[np.bool_]

DEFINITIONS = Path(__file__).resolve().parents[1] / "definitions"
START = datetime(2026, 3, 2, tzinfo=UTC)  # a Monday, so the newsletter runs on day 0
DAY = 86_400.0
WEEK = 7 * DAY

JOURNEYS = (
    "abandoned-cart",
    "browse-abandonment",
    "cross-sell",
    "returns",
    "birthday",
    "welcome",
    "win-back",
    "newsletter",
)
CHANNELS = ("email", "sms", "push")
COSTS = {"email": 0.002, "sms": 0.05, "push": 0.001}  # equal to definitions/settings.yaml
# Share of the order value a journey's voucher gives away on the orders it causes.
DISCOUNTS = {"returns": 0.10, "birthday": 0.15, "welcome": 0.10, "win-back": 0.20}
UNSUBSCRIBE_BY_CHANNEL = {"email": 1.0, "sms": 2.0, "push": 1.5}
UNSUBSCRIBE_GROWTH = 1.5  # unsubscribe probability * this per message in the last 7 days
HARM_GROWTH = 0.5  # a harmful message harms (1 + this * recent messages) times as much
ENGAGEMENT_FATIGUE = 0.95  # daily view probability * this per message in the last 7 days
ORDER_VALUE_SIGMA = 0.5  # order values are lognormal with this sigma around the type's mean
CART_OPEN = 3 * DAY  # an order within this long after an abandoned cart carries its cart_id
RETURN_DELAY = (3 * DAY, 14 * DAY)
JOIN_SPAN = 56 * DAY  # new customers sign up uniformly over the first 8 weeks
CAUSED_DELAY_MEAN = DAY  # caused orders come 15 minutes plus an exponential delay later
RECENT = 16  # deliveries remembered per customer for fatigue
CATEGORIES = ("shoes", "dresses", "shirts", "bags", "jackets", "accessories")
FIRST_NAMES = (
    "Alice", "Bruno", "Chloé", "David", "Emma", "Farid", "Giulia", "Hugo", "Inès", "Jonas",
    "Karin", "Léo", "Maya", "Noah", "Olga", "Pablo", "Rosa", "Sami", "Tess", "Yann",
)  # fmt: skip
# Relative weight of each hour (UTC) for spontaneous browsing and buying.
HOUR_WEIGHTS = (
    1, 1, 1, 1, 1, 1, 2, 3, 4, 5, 5, 5, 6, 6, 5, 5, 5, 6, 7, 8, 8, 7, 4, 2,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class CustomerType:
    """A latent kind of customer: behaviour, consent and true response to messages."""

    name: str
    share: float
    view: float  # daily probability of viewing a product
    cart: float  # probability that a view ends in an abandoned cart
    buy: float  # daily probability of a spontaneous order
    order_value: float  # mean order value
    returns: float  # probability that an order is returned
    consent: Mapping[str, float]  # share opted in, per channel
    response: Mapping[str, float]  # uplift multiplier per channel
    fatigue: float  # uplift * this per message in the last 7 days
    unsubscribe: float  # probability of unsubscribing from one email with no recent message
    uplift: Mapping[str, float]  # incremental conversion probability per journey, by email
    last_order_days: tuple[float, float] = (0.0, 0.0)  # days before the start of the last order
    orders: tuple[int, int] = (0, 0)  # orders before the start (inclusive range)
    joins: bool = False  # signs up during the run


TYPES: tuple[CustomerType, ...] = (
    CustomerType(
        name="bargain-hunter",
        share=0.25,
        view=0.10,
        cart=0.35,
        buy=0.010,
        order_value=45.0,
        returns=0.12,
        consent={"email": 0.92, "sms": 0.35, "push": 0.55},
        response={"email": 1.0, "sms": 1.3, "push": 1.2},
        fatigue=0.8,
        unsubscribe=0.002,
        uplift={
            "abandoned-cart": 0.08, "browse-abandonment": 0.03, "cross-sell": 0.0,
            "returns": 0.04, "birthday": 0.05, "welcome": 0.05, "win-back": 0.06,
            "newsletter": 0.004,
        },
        last_order_days=(3.0, 60.0),
        orders=(2, 12),
    ),
    CustomerType(
        name="loyal-high-spender",
        share=0.15,
        view=0.08,
        cart=0.15,
        buy=0.025,
        order_value=140.0,
        returns=0.05,
        consent={"email": 0.95, "sms": 0.50, "push": 0.50},
        response={"email": 1.0, "sms": 1.2, "push": 0.8},
        fatigue=0.7,
        unsubscribe=0.001,
        uplift={
            "abandoned-cart": 0.0, "browse-abandonment": -0.005, "cross-sell": 0.05,
            "returns": 0.04, "birthday": 0.06, "welcome": 0.0, "win-back": -0.02,
            "newsletter": -0.003,
        },
        last_order_days=(1.0, 20.0),
        orders=(8, 40),
    ),
    CustomerType(
        name="occasional",
        share=0.30,
        view=0.05,
        cart=0.25,
        buy=0.006,
        order_value=70.0,
        returns=0.08,
        consent={"email": 0.85, "sms": 0.20, "push": 0.30},
        response={"email": 1.0, "sms": 1.0, "push": 0.6},
        fatigue=0.6,
        unsubscribe=0.004,
        uplift={
            "abandoned-cart": 0.05, "browse-abandonment": 0.01, "cross-sell": 0.0,
            "returns": -0.01, "birthday": 0.07, "welcome": 0.0, "win-back": 0.03,
            "newsletter": 0.002,
        },
        last_order_days=(20.0, 85.0),
        orders=(1, 5),
    ),
    CustomerType(
        name="lapsing",
        share=0.20,
        view=0.02,
        cart=0.20,
        buy=0.002,
        order_value=80.0,
        returns=0.08,
        consent={"email": 0.80, "sms": 0.10, "push": 0.15},
        response={"email": 1.0, "sms": 0.7, "push": 0.3},
        fatigue=0.5,
        unsubscribe=0.008,
        uplift={
            "abandoned-cart": 0.03, "browse-abandonment": 0.0, "cross-sell": -0.01,
            "returns": 0.0, "birthday": 0.03, "welcome": 0.0, "win-back": 0.06,
            "newsletter": -0.003,
        },
        last_order_days=(31.0, 89.0),
        orders=(1, 3),
    ),
    CustomerType(
        name="new",
        share=0.10,
        view=0.12,
        cart=0.30,
        buy=0.012,
        order_value=60.0,
        returns=0.06,
        consent={"email": 0.90, "sms": 0.25, "push": 0.45},
        response={"email": 1.0, "sms": 1.0, "push": 1.0},
        fatigue=0.75,
        unsubscribe=0.003,
        uplift={
            "abandoned-cart": 0.06, "browse-abandonment": 0.02, "cross-sell": 0.02,
            "returns": 0.0, "birthday": 0.02, "welcome": 0.09, "win-back": 0.0,
            "newsletter": 0.008,
        },
        joins=True,
    ),
)  # fmt: skip


def type_table(types: Sequence[CustomerType]) -> Floats:
    """Base uplift (email, no fatigue) of each type and journey."""
    return np.array([[t.uplift.get(j, 0.0) for j in JOURNEYS] for t in types], dtype=np.float64)


@dataclass(frozen=True, slots=True)
class Groups:
    """Who shares a true response: each customer's uplift group, the base uplift of each
    group and journey (email, no fatigue), and multipliers of each customer's view and cart
    rates (what the groups look like from outside)."""

    group: Ints
    table: Floats
    view: Floats
    cart: Floats


class StandardWorld:
    """Five customer types whose best journey is rarely the one that asks first."""

    name = "standard"
    definitions = DEFINITIONS
    types: tuple[CustomerType, ...] = TYPES

    def __init__(self, customers: int = 50_000, seed: int = 0) -> None:
        if customers < 1:
            raise InvalidInput(f"customers must be at least 1; got {customers}")
        if seed < 0:
            raise InvalidInput(f"seed must be 0 or more; got {seed}")
        self.seed = seed
        self.size = customers
        rng = np.random.default_rng([seed, 0])
        shares = np.array([t.share for t in self.types])
        self.type_of: Ints = rng.choice(len(self.types), size=customers, p=shares / shares.sum())
        self._populate(rng)
        self._customers: list[Customer] | None = None
        self._index = {self.user_id(i): i for i in range(customers)}
        self._returns: dict[int, list[tuple[float, int, str]]] = {}
        self._truth = Truth(0, 0.0, 0.0, 0.0, 0, 0, 0.0)
        self._by_journey: dict[tuple[str, str], tuple[int, float]] = {}

    # --- the population ---------------------------------------------------------------

    def groups(self, rng: np.random.Generator) -> Groups:
        """Uplift groups: here, simply the types."""
        ones = np.ones(self.size)
        return Groups(self.type_of.copy(), type_table(self.types), ones, ones)

    def _populate(self, rng: np.random.Generator) -> None:
        t = self.type_of
        n = self.size

        def per_type(attribute: str) -> Floats:
            return np.array([getattr(k, attribute) for k in self.types], dtype=np.float64)[t]

        groups = self.groups(np.random.default_rng([self.seed, 2]))
        self.group = groups.group
        self._table: list[list[float]] = groups.table.tolist()
        self._response = [[k.response.get(c, 0.0) for c in CHANNELS] for k in self.types]
        self.view_p: Floats = np.clip(per_type("view") * groups.view, 0.0, 1.0)
        self.cart_p: Floats = np.clip(per_type("cart") * groups.cart, 0.0, 1.0)
        self.buy_p: Floats = per_type("buy")
        self.return_p: Floats = per_type("returns")
        self.value_mean: Floats = per_type("order_value")
        self.fatigue: Floats = per_type("fatigue")
        self.unsubscribe_p: Floats = per_type("unsubscribe")
        consent = np.array([[k.consent[c] for c in CHANNELS] for k in self.types])[t]
        self.consent: Bools = rng.random((n, len(CHANNELS))) < consent
        self.reachable: Bools = self.consent.copy()
        joins = np.array([k.joins for k in self.types])[t]
        self.joined: Floats = np.where(joins, np.floor(rng.random(n) * JOIN_SPAN), -math.inf)
        low = np.array([k.last_order_days[0] for k in self.types])[t]
        high = np.array([k.last_order_days[1] for k in self.types])[t]
        before = np.floor(low + rng.random(n) * (high - low))
        fewest = np.array([k.orders[0] for k in self.types])[t]
        most = np.array([k.orders[1] for k in self.types])[t]
        extra = np.floor(rng.random(n) * (most - fewest + 1)).astype(np.int64)
        self.orders_before: Ints = fewest + extra
        self.last_order: Floats = np.where(joins, -math.inf, -before * DAY)
        self.birthday_offset: Ints = rng.integers(0, 365, n)
        self.birth_year: Ints = rng.integers(1955, 2006, n)
        self.has_phone: Bools = self.consent[:, 1] | (rng.random(n) < 0.2)
        self.first_name: Ints = rng.integers(0, len(FIRST_NAMES), n)
        # Mutable state: fatigue memory, cancelled purchases, carts, message counts.
        self.recent: Floats = np.full((n, RECENT), -math.inf)
        self.messages_of: Ints = np.zeros(n, dtype=np.int64)
        self.cancel_pending: Ints = np.zeros(n, dtype=np.int64)
        self.cancel_from: Floats = np.zeros(n)
        self.cancel_until: Floats = np.full(n, -math.inf)
        self.cart_id: list[str | None] = [None] * n
        self.cart_at: Floats = np.full(n, -math.inf)
        self.orders: Ints = np.zeros(n, dtype=np.int64)
        self.caused = 0
        self.cancelled = 0

    @staticmethod
    def user_id(index: int) -> str:
        """The user id of the customer at this index."""
        return f"u{index:06d}"

    def customers(self) -> Sequence[Customer]:
        """Everyone, built once; new customers carry the instant they sign up."""
        if self._customers is None:
            self._customers = [self._customer(i) for i in range(self.size)]
        return self._customers

    def _customer(self, i: int) -> Customer:
        user_id = self.user_id(i)
        born = date(int(self.birth_year[i]), 1, 1) + timedelta(days=int(self.birthday_offset[i]))
        traits: dict[str, Any] = {
            "email": f"{user_id}@example.com",
            "first_name": FIRST_NAMES[int(self.first_name[i])],
            "birthday": born.isoformat(),
            "orders_count": int(self.orders_before[i]),
        }
        if self.has_phone[i]:
            traits["phone"] = f"+336{10_000_000 + i:08d}"
        if math.isfinite(self.last_order[i]):
            traits["last_order_at"] = (
                (START + timedelta(seconds=self.last_order[i])).date().isoformat()
            )
        joined = None
        if math.isfinite(self.joined[i]):
            joined = START + timedelta(seconds=round(self.joined[i]))
            traits["signed_up_at"] = joined.isoformat()
        consent = {c: bool(self.consent[i, k]) for k, c in enumerate(CHANNELS)}
        token = f"push-{user_id}" if consent["push"] else None
        return Customer(user_id, traits, consent, push_token=token, joined=joined)

    def type_name(self, user_id: str) -> str:
        """The latent type of a customer (for reports and tests; the engine never sees it)."""
        return self.types[int(self.type_of[self._index[user_id]])].name

    # --- the protocol -----------------------------------------------------------------

    def start(self) -> datetime:
        """Midnight UTC of Monday 2 March 2026."""
        return START

    def cost(self, channel: str) -> float:
        """The channel's per-message cost, as in definitions/settings.yaml."""
        return COSTS.get(channel, 0.0)

    def truth(self) -> Truth:
        """The scoreboard so far, with where the value went by journey and type."""
        return dataclasses.replace(self._truth, by_journey=dict(self._by_journey))

    def uplift(
        self, user_id: str, journey_id: str, channel: str, at: datetime
    ) -> tuple[float, float]:
        """True incremental conversion probability of sending now (fatigue included) and the
        expected value of the order it changes: discounted when caused, full when cancelled."""
        i = self._index.get(user_id)
        if i is None:
            return 0.0, 0.0
        return self._uplift(i, journey_id, channel, self._seconds(at))

    def _uplift(self, i: int, journey_id: str, channel: str, at: float) -> tuple[float, float]:
        value = float(self.value_mean[i])
        if journey_id not in JOURNEYS or channel not in CHANNELS:
            return 0.0, value
        c = CHANNELS.index(channel)
        if at < self.joined[i] or not self.reachable[i, c]:
            return 0.0, value
        base = self._table[int(self.group[i])][JOURNEYS.index(journey_id)]
        base *= self._response[int(self.type_of[i])][c]
        recent = self._recent_count(i, at)
        if base >= 0.0:
            caused = base * float(self.fatigue[i]) ** recent
            return caused, value * (1.0 - DISCOUNTS.get(journey_id, 0.0))
        harm = base * (1.0 + HARM_GROWTH * recent)
        return max(harm, -0.9 * self._week_purchase(i)), value

    def baseline(self, user_id: str, at: datetime) -> float:
        """The chance of at least one spontaneous order in the seven-day goal window."""
        i = self._index.get(user_id)
        return 0.0 if i is None or self._seconds(at) < self.joined[i] else self._week_purchase(i)

    def _recent_count(self, i: int, at: float) -> int:
        row = self.recent[i]
        return int(np.count_nonzero((row > at - WEEK) & (row <= at)))

    def _week_purchase(self, i: int) -> float:
        """Probability of at least one spontaneous order in seven whole days."""
        return 1.0 - (1.0 - float(self.buy_p[i])) ** 7

    def deliver(self, delivery: Delivery) -> list[Action]:
        """Realise the response: maybe an order (later, within the goal window), maybe a
        cancelled order (the next spontaneous one in the following seven days), maybe an
        unsubscribe from this channel; then remember the message for fatigue."""
        at = self._seconds(delivery.at)
        cost = self.cost(delivery.channel)
        i = self._index.get(delivery.user_id)
        if i is None:
            self._add(messages=1, message_cost=cost)
            return []
        caused, value = self._uplift(i, delivery.journey_id, delivery.channel, at)
        key = (delivery.journey_id, self.types[int(self.type_of[i])].name)
        messages, net = self._by_journey.get(key, (0, 0.0))
        self._by_journey[key] = (messages + 1, net + caused * value - cost)
        self._add(
            messages=1,
            message_cost=cost,
            incremental_conversions=caused,
            incremental_revenue=caused * value,
        )
        draw = random.Random(f"{self.seed}:{i}:{int(self.messages_of[i])}")
        self.messages_of[i] += 1
        actions: list[Action] = []
        reached = delivery.channel in CHANNELS and bool(
            self.reachable[i, CHANNELS.index(delivery.channel)]
        )
        if reached and at >= self.joined[i]:
            recent = self._recent_count(i, at)
            roll = draw.random()
            if caused > 0.0 and roll < caused:
                actions.append(self._caused_order(i, delivery, at, value, draw))
            elif caused < 0.0 and roll < -caused / self._week_purchase(i):
                self._cancel_next(i, at)
            unsubscribe = (
                float(self.unsubscribe_p[i])
                * UNSUBSCRIBE_BY_CHANNEL[delivery.channel]
                * UNSUBSCRIBE_GROWTH**recent
            )
            if draw.random() < unsubscribe:
                self.reachable[i, CHANNELS.index(delivery.channel)] = False
                self._add(unsubscribes=1)
                when = at + 60.0 + draw.random() * 7200.0
                properties = {"channel": delivery.channel, "status": "opted_out"}
                actions.append(
                    Action(self._instant(when), delivery.user_id, CONSENT_EVENT, properties)
                )
        self._remember(i, at)
        return sorted(actions, key=lambda a: a.at)

    def _caused_order(
        self, i: int, delivery: Delivery, at: float, value: float, draw: random.Random
    ) -> Action:
        delay = min(900.0 + draw.expovariate(1.0 / CAUSED_DELAY_MEAN), WEEK - 60.0)
        when = at + delay
        mu = math.log(value) - ORDER_VALUE_SIGMA**2 / 2
        revenue = round(draw.lognormvariate(mu, ORDER_VALUE_SIGMA), 2)
        order_id = f"order-m{int(self.messages_of[i])}-{i}"
        properties: dict[str, Any] = {"order_id": order_id, "revenue": revenue}
        cart = self._open_cart(i, when)
        if cart is not None:
            properties["cart_id"] = cart
            self.cart_id[i] = None
        if draw.random() < self.return_p[i]:
            back = when + RETURN_DELAY[0] + draw.random() * (RETURN_DELAY[1] - RETURN_DELAY[0])
            self._returns.setdefault(int(back // DAY), []).append((back, i, order_id))
        self.orders[i] += 1
        self.caused += 1
        self._add(purchases=1, revenue=revenue)
        return Action(self._instant(when), delivery.user_id, "Order Completed", properties)

    def _open_cart(self, i: int, at: float) -> str | None:
        cart = self.cart_id[i]
        if cart is not None and self.cart_at[i] < at <= self.cart_at[i] + CART_OPEN:
            return cart
        return None

    def _cancel_next(self, i: int, at: float) -> None:
        # Spontaneous orders of the delivery's own day are already out, so the window is the
        # seven whole days after it: cancelling with probability -uplift / P(an order in
        # seven days) removes -uplift orders in expectation.
        begin = (math.floor(at / DAY) + 1) * DAY
        if self.cancel_until[i] <= begin:
            self.cancel_pending[i] = 0
            self.cancel_from[i] = begin
        self.cancel_pending[i] += 1
        self.cancel_until[i] = begin + WEEK

    def _remember(self, i: int, at: float) -> None:
        row = self.recent[i]
        row[int(np.argmin(row))] = at

    def _add(self, **amounts: float) -> None:
        t = self._truth
        self._truth = Truth(
            messages=t.messages + int(amounts.get("messages", 0)),
            message_cost=t.message_cost + amounts.get("message_cost", 0.0),
            incremental_conversions=t.incremental_conversions
            + amounts.get("incremental_conversions", 0.0),
            incremental_revenue=t.incremental_revenue + amounts.get("incremental_revenue", 0.0),
            unsubscribes=t.unsubscribes + int(amounts.get("unsubscribes", 0)),
            purchases=t.purchases + int(amounts.get("purchases", 0)),
            revenue=t.revenue + amounts.get("revenue", 0.0),
        )

    # --- a day of spontaneous behaviour -----------------------------------------------

    def day(self, start: datetime) -> list[Action]:
        """Sign-ups, product views, abandoned carts, orders and returns in [start, +1 day)."""
        d = self._day_index(start)
        t0 = d * DAY
        n = self.size
        rng = np.random.default_rng([self.seed, 1, d])
        u = rng.random((4, n))
        view_at = t0 + self._time_of_day(rng, n)
        buy_at = t0 + self._time_of_day(rng, n)
        cart_at = view_at + 120.0 + rng.random(n) * 1680.0
        product = rng.integers(1, 500, n)
        category = rng.integers(0, len(CATEGORIES), n)
        log_value = np.log(self.value_mean) - ORDER_VALUE_SIGMA**2 / 2
        revenue: Floats = np.round(
            np.exp(log_value + ORDER_VALUE_SIGMA * rng.standard_normal(n)), 2
        ).astype(np.float64)
        back_at = buy_at + RETURN_DELAY[0] + rng.random(n) * (RETURN_DELAY[1] - RETURN_DELAY[0])

        recent = np.count_nonzero(self.recent > t0 - WEEK, axis=1)
        views = (u[0] < self.view_p * ENGAGEMENT_FATIGUE**recent) & (view_at > self.joined)
        carts = views & (u[1] < self.cart_p) & (cart_at < t0 + DAY)
        buys = (u[2] < self.buy_p) & (buy_at > self.joined)
        cancel = (
            buys
            & (self.cancel_pending > 0)
            & (buy_at >= self.cancel_from)
            & (buy_at < self.cancel_until)
        )
        self.cancel_pending[cancel] -= 1
        self.cancelled += int(np.count_nonzero(cancel))
        buys &= ~cancel
        returned = buys & (u[3] < self.return_p)

        events: list[tuple[float, int, str, dict[str, Any]]] = []
        signed_up = self.joined + 1.0
        for i in np.flatnonzero((signed_up >= t0) & (signed_up < t0 + DAY)).tolist():
            events.append((float(signed_up[i]), i, "Signed Up", {}))
        viewers = np.flatnonzero(views)
        for i, at, item, kind in zip(
            viewers.tolist(),
            view_at[viewers].tolist(),
            product[viewers].tolist(),
            category[viewers].tolist(),
            strict=True,
        ):
            properties = {"product_id": f"p{item}", "category": CATEGORIES[kind]}
            events.append((at, i, "Product Viewed", properties))
        for i in np.flatnonzero(carts).tolist():
            self.cart_id[i] = f"cart-{d}-{i}"
            self.cart_at[i] = cart_at[i]
            events.append((float(cart_at[i]), i, "Cart Abandoned", {"cart_id": self.cart_id[i]}))
        events.extend(self._orders(d, buys, buy_at, revenue))
        for i in np.flatnonzero(returned).tolist():
            back = float(back_at[i])
            self._returns.setdefault(int(back // DAY), []).append((back, i, f"order-{d}-{i}"))
        for back, i, order_id in self._returns.pop(d, []):
            events.append((back, i, "Order Returned", {"order_id": order_id}))
        events.sort(key=lambda e: (e[0], e[1]))
        return [Action(self._instant(at), self.user_id(i), name, p) for at, i, name, p in events]

    def _orders(
        self, d: int, buys: Bools, buy_at: Floats, revenue: Floats
    ) -> list[tuple[float, int, str, dict[str, Any]]]:
        events: list[tuple[float, int, str, dict[str, Any]]] = []
        total = 0.0
        for i in np.flatnonzero(buys).tolist():
            at = float(buy_at[i])
            properties: dict[str, Any] = {
                "order_id": f"order-{d}-{i}",
                "revenue": float(revenue[i]),
            }
            cart = self._open_cart(i, at)
            if cart is not None:
                properties["cart_id"] = cart
                self.cart_id[i] = None
            total += float(revenue[i])
            events.append((at, i, "Order Completed", properties))
        self.orders[buys] += 1
        self._add(purchases=len(events), revenue=total)
        return events

    @staticmethod
    def _time_of_day(rng: np.random.Generator, n: int) -> Floats:
        """Seconds into the day, busier in the evening."""
        weights = np.array(HOUR_WEIGHTS, dtype=np.float64)
        cumulative = np.cumsum(weights / weights.sum())
        hour = np.minimum(np.searchsorted(cumulative, rng.random(n), side="right"), 23)
        seconds: Floats = np.floor((hour + rng.random(n)) * 3600.0)
        return seconds

    # --- time -------------------------------------------------------------------------

    def _seconds(self, at: datetime) -> float:
        if at.tzinfo is None:
            raise InvalidInput(f"expected an aware datetime; got {at.isoformat()}")
        return (at - START).total_seconds()

    def _instant(self, seconds: float) -> datetime:
        return START + timedelta(seconds=round(seconds))

    def _day_index(self, start: datetime) -> int:
        seconds = self._seconds(start)
        if seconds < 0 or seconds % DAY:
            raise InvalidInput(
                f"a day starts at a midnight UTC on or after {START.isoformat()}; "
                f"got {start.isoformat()}"
            )
        return int(seconds // DAY)
