"""The misaligned world: uplift follows a hidden trait, not the lifecycle.

Same customers, journeys and definitions as the standard world, but each
customer is also a *deal seeker* or not, with nearly the same odds in every
type. No trait says so, and neither days since the last order nor the number
of orders tells them apart; deal seekers only browse and abandon carts more.
Their response to a message is mostly set by that hidden attribute (80%) and
only a little by their type (20%): vouchers and reminders work on deal
seekers and do nothing or harm for the others, who prefer suggestions.
A controller that learns only per lifecycle stratum averages the two away.
"""

from __future__ import annotations

import numpy as np

from airspace.sim.worlds.standard import JOURNEYS, Groups, StandardWorld, type_table

DEAL_SEEKER_SHARE = {
    "bargain-hunter": 0.45,
    "loyal-high-spender": 0.35,
    "occasional": 0.40,
    "lapsing": 0.40,
    "new": 0.40,
}
HIDDEN_WEIGHT = 0.8  # uplift = 0.8 * the hidden attribute's + 0.2 * the type's
# Base uplift by email, without fatigue: [full-price shopper, deal seeker].
HIDDEN_UPLIFT: tuple[dict[str, float], dict[str, float]] = (
    {
        "abandoned-cart": -0.02, "browse-abandonment": -0.005, "cross-sell": 0.04,
        "returns": 0.01, "birthday": 0.02, "welcome": 0.03, "win-back": -0.02,
        "newsletter": -0.002,
    },
    {
        "abandoned-cart": 0.09, "browse-abandonment": 0.04, "cross-sell": -0.01,
        "returns": 0.05, "birthday": 0.07, "welcome": 0.08, "win-back": 0.08,
        "newsletter": 0.006,
    },
)  # fmt: skip
# What deal seekers (and the others) look like from outside: view and cart multipliers.
VIEW = (0.8, 1.8)
CART = (0.9, 1.6)


class MisalignedWorld(StandardWorld):
    """The standard world whose uplift hides behind an attribute no stratum names."""

    name = "misaligned"

    def groups(self, rng: np.random.Generator) -> Groups:
        """Group = type * deal seeker; its uplift mixes the hidden table with the type's."""
        share = np.array([DEAL_SEEKER_SHARE[t.name] for t in self.types])[self.type_of]
        seeker = (rng.random(self.size) < share).astype(np.int64)
        hidden = np.array([[h.get(j, 0.0) for j in JOURNEYS] for h in HIDDEN_UPLIFT])
        by_type = type_table(self.types)
        # Row 2 * type + seeker of the table belongs to that type and attribute.
        table = HIDDEN_WEIGHT * np.repeat(hidden[None, :, :], len(self.types), axis=0) + (
            1.0 - HIDDEN_WEIGHT
        ) * np.repeat(by_type[:, None, :], 2, axis=1)
        self.deal_seeker = seeker.astype(np.bool_)
        return Groups(
            group=2 * self.type_of + seeker,
            table=table.reshape(2 * len(self.types), len(JOURNEYS)),
            view=np.array(VIEW)[seeker],
            cart=np.array(CART)[seeker],
        )
