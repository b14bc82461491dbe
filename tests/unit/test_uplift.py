"""Uplift posteriors: pooling from journey to channel to stratum, Thompson draws, strata."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from airspace.domain.profiles import Computed, Profile
from airspace.domain.uplift import (
    Beta,
    Evidence,
    Tally,
    candidate_key,
    candidate_uniforms,
    channel_response,
    lifecycle_stage,
    parent_of,
    raw_uplift,
    sticky_uplift,
    stratum_of,
    uniforms_of_keys,
)
from airspace.domain.workspace_settings import Stratum, WorkspaceSettings

NOW = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)


def test_a_journey_nothing_is_known_about_has_a_weak_prior_centred_on_no_uplift() -> None:
    estimate = Evidence({}).estimate("new-journey", "email", "repeat")
    assert estimate.uplift == pytest.approx(0.0)
    assert estimate.spread > 0.2
    assert estimate.treated.mean == pytest.approx(0.5)
    assert estimate.treated.weight == pytest.approx(2.0)
    assert estimate.value == 1.0  # no conversion anywhere yet


def test_a_well_measured_stratum_follows_its_own_data() -> None:
    evidence = Evidence(
        {
            ("cart", "treated", "email", "repeat"): Tally(10_000, 1_500, 75_000),
            ("cart", "control", "", "repeat"): Tally(10_000, 500, 25_000),
        }
    )
    estimate = evidence.estimate("cart", "email", "repeat")
    assert estimate.uplift == pytest.approx(0.10, abs=0.002)
    assert estimate.value == pytest.approx(50.0, rel=0.01)


def test_a_thin_stratum_borrows_from_its_journey() -> None:
    tallies = {
        ("cart", "treated", "email", "repeat"): Tally(5_000, 1_000, 0),
        ("cart", "control", "", "repeat"): Tally(5_000, 500, 0),
        # Three people in a new stratum, all of whom bought without the message.
        ("cart", "treated", "email", "prospect"): Tally(1, 0, 0),
        ("cart", "control", "", "prospect"): Tally(2, 2, 0),
    }
    thin = Evidence(tallies, strength=20).estimate("cart", "email", "prospect")
    # Raw it says about -60%; pooled it stays near the journey's +10%.
    raw, _ = raw_uplift(Tally(1, 0), Tally(2, 2))
    assert raw < -0.5
    assert 0.0 < thin.uplift < 0.10


def test_strata_that_buy_anyway_do_not_look_better_for_it() -> None:
    """Both strata gain 2 points from the message, but one buys 20% of the time without
    it and the other 1%. With few control trials in each, pooling each arm apart towards
    the journey's rate would credit the first with the gap between the baselines."""
    tallies = {
        ("cart", "treated", "email", "loyal"): Tally(2_000, 440, 0),
        ("cart", "control", "", "loyal"): Tally(30, 6, 0),
        ("cart", "treated", "email", "lapsing"): Tally(2_000, 60, 0),
        ("cart", "control", "", "lapsing"): Tally(30, 0, 0),
    }
    evidence = Evidence(tallies)
    for stratum in ("loyal", "lapsing"):
        estimate = evidence.estimate("cart", "email", stratum)
        assert estimate.uplift == pytest.approx(0.02, abs=0.04)
    loyal = evidence.estimate("cart", "email", "loyal").uplift
    lapsing = evidence.estimate("cart", "email", "lapsing").uplift
    assert abs(loyal - lapsing) < 0.05


def test_the_spread_between_strata_is_learned_from_the_data() -> None:
    alike = {
        (j, arm, "" if arm == "control" else "email", s): Tally(5_000, rate * 5_000)
        for j in ("a", "b")
        for s in ("x", "y", "z")
        for arm, rate in (("treated", 0.12), ("control", 0.10))
    }
    apart = dict(alike)
    apart["a", "treated", "email", "x"] = Tally(5_000, 0.30 * 5_000)
    apart["b", "treated", "email", "y"] = Tally(5_000, 0.02 * 5_000)
    assert Evidence(alike).between == pytest.approx(0.005)
    assert Evidence(apart).between > 0.05


def test_control_is_pooled_over_channels_and_treated_is_not() -> None:
    evidence = Evidence(
        {
            ("news", "treated", "email", "new"): Tally(4_000, 400, 0),
            ("news", "treated", "sms", "new"): Tally(4_000, 800, 0),
            ("news", "control", "", "new"): Tally(4_000, 400, 0),
        }
    )
    email = evidence.estimate("news", "email", "new")
    sms = evidence.estimate("news", "sms", "new")
    assert email.spread == sms.spread
    assert email.uplift == pytest.approx(0.0, abs=0.005)
    assert sms.uplift == pytest.approx(0.10, abs=0.005)


def test_the_posterior_narrows_with_evidence() -> None:
    few = Evidence(
        {
            ("j", "treated", "email", "s"): Tally(20, 4, 0),
            ("j", "control", "", "s"): Tally(20, 2, 0),
        }
    ).estimate("j", "email", "s")
    many = Evidence(
        {
            ("j", "treated", "email", "s"): Tally(20_000, 4_000, 0),
            ("j", "control", "", "s"): Tally(20_000, 2_000, 0),
        }
    ).estimate("j", "email", "s")
    assert many.uplift == pytest.approx(0.10, abs=0.002)
    assert few.spread > 10 * many.spread


def test_beta_mean_and_weight() -> None:
    assert Beta(1, 3).mean == 0.25
    assert Beta(1, 3).weight == 4
    assert Beta(1, 3).variance == pytest.approx(3 / 80)


def _buyer(purchases: int, last: datetime | None) -> Profile:
    return Profile(
        "p1",
        NOW - timedelta(days=900),
        computed=Computed(
            counts_by_event={"Order Completed": purchases} if purchases else {},
            last_by_event={"Order Completed": last} if last else {},
        ),
    )


@pytest.mark.parametrize(
    ("purchases", "days_ago", "stage"),
    [
        (0, None, "prospect"),
        (1, 10, "new"),
        (4, 90, "repeat"),
        (4, 91, "lapsing"),
        (1, 180, "lapsing"),
        (9, 181, "lapsed"),
    ],
)
def test_lifecycle_stage(purchases: int, days_ago: int | None, stage: str) -> None:
    last = NOW - timedelta(days=days_ago) if days_ago is not None else None
    assert lifecycle_stage(_buyer(purchases, last), "Order Completed", NOW) == stage


@pytest.mark.parametrize(
    ("traits", "stage"),
    [
        ({"orders_count": 5, "last_order_at": "2026-10-20T10:00:00Z"}, "repeat"),
        ({"orders_count": 1, "last_order_at": "2026-10-20"}, "new"),
        ({"orders_count": 3, "last_order_at": "2026-06-01T00:00:00+00:00"}, "lapsing"),
        ({"orders_count": 3}, "lapsed"),
        ({"orders_count": "many", "last_order_at": "yesterday"}, "prospect"),
        ({}, "prospect"),
    ],
)
def test_declared_purchase_history_counts(traits: dict[str, object], stage: str) -> None:
    person = Profile("p1", NOW - timedelta(days=900), traits=dict(traits))
    assert lifecycle_stage(person, "Order Completed", NOW) == stage


def test_the_later_of_seen_and_declared_purchases_counts() -> None:
    person = _buyer(1, NOW - timedelta(days=2))
    declared = Profile(
        "p1",
        person.created_at,
        traits={"orders_count": 6, "last_order_at": "2026-01-01T00:00:00Z"},
        computed=person.computed,
    )
    assert lifecycle_stage(declared, "Order Completed", NOW) == "repeat"


def test_configured_strata_come_first_in_order() -> None:
    settings = WorkspaceSettings(strata=(Stratum("vip", "high-value"), Stratum("fans", "fans")))
    person = _buyer(3, NOW - timedelta(days=3))
    assert stratum_of(person, {"fans", "high-value"}, settings, NOW) == "vip"
    assert stratum_of(person, {"fans"}, settings, NOW) == "fans"
    assert stratum_of(person, set(), settings, NOW) == "repeat"


def test_substrata_split_each_stratum() -> None:
    settings = WorkspaceSettings(
        strata=(Stratum("vip", "high-value"),),
        substrata=(Stratum("loyal", "frequent"), Stratum("recent", "recent-buyers")),
    )
    person = _buyer(3, NOW - timedelta(days=3))
    assert stratum_of(person, {"high-value", "recent-buyers"}, settings, NOW) == "vip/recent"
    assert stratum_of(person, {"frequent", "recent-buyers"}, settings, NOW) == "repeat/loyal"
    assert stratum_of(person, set(), settings, NOW) == "repeat/other"
    assert (parent_of("repeat/loyal"), parent_of("repeat")) == ("repeat", None)


def _cells(journey: str, stratum: str, n: float, treated: float, control: float) -> dict:
    return {
        (journey, "treated", "email", stratum): Tally(n, treated * n),
        (journey, "control", "", stratum): Tally(n, control * n),
    }


def test_a_thin_substratum_borrows_from_its_stratum_not_its_journey() -> None:
    """`vip` gains 10 points from the message and `new` nothing; a substratum of `vip`
    with three trials starts from `vip`'s uplift, not from the journey's average."""
    tallies = {
        **_cells("cart", "vip/loyal", 4_000, 0.30, 0.20),
        **_cells("cart", "vip/other", 4_000, 0.30, 0.20),
        **_cells("cart", "new/loyal", 4_000, 0.10, 0.10),
        **_cells("cart", "new/other", 4_000, 0.10, 0.10),
        **_cells("cart", "vip/recent", 3, 0.0, 0.34),
    }
    evidence = Evidence(tallies)
    thin = evidence.estimate("cart", "email", "vip/recent")
    assert thin.uplift == pytest.approx(0.10, abs=0.02)
    assert evidence.estimate("cart", "email", "new/recent").uplift == pytest.approx(0.0, abs=0.02)
    assert evidence.estimate("cart", "email", "vip/loyal").uplift == pytest.approx(0.10, abs=0.01)
    assert evidence.between > 0.05  # vip and new differ
    assert evidence.within == pytest.approx(0.005)  # their substrata do not


def test_a_well_measured_substratum_follows_its_own_data() -> None:
    tallies = {
        **_cells("cart", "vip/loyal", 8_000, 0.20, 0.20),
        **_cells("cart", "vip/other", 8_000, 0.30, 0.20),
        **_cells("cart", "new/loyal", 8_000, 0.20, 0.10),
        **_cells("cart", "new/other", 8_000, 0.10, 0.10),
    }
    evidence = Evidence(tallies)
    for stratum, uplift in (("vip/loyal", 0.0), ("vip/other", 0.1), ("new/loyal", 0.1)):
        estimate = evidence.estimate("cart", "email", stratum)
        assert estimate.uplift == pytest.approx(uplift, abs=0.01), stratum
    assert evidence.within > 0.04


def test_channel_response_prefers_where_the_person_engages() -> None:
    assert channel_response({}, "email", ["email", "push"]) == 1.0
    engaged = {"push": 6}
    assert channel_response(engaged, "push", ["email", "push"]) > 1.0
    assert channel_response(engaged, "email", ["email", "push"]) < 1.0
    assert channel_response(engaged, "email", []) == 1.0


def test_sticky_numbers_are_the_same_one_by_one_and_in_bulk() -> None:
    ids = ["019d45b234802d43d3c5064c34", "c-cart", "01a1a0d9f10065fc3deb908f99", ""]
    keys = np.array([candidate_key(i) for i in ids], dtype=np.uint64)
    assert np.array_equal(uniforms_of_keys(keys), np.array([candidate_uniforms(i) for i in ids]))
    assert candidate_uniforms("c-cart") == candidate_uniforms("c-cart")
    assert candidate_uniforms("c-cart") != candidate_uniforms("c-cart", salt="other")


def test_sticky_numbers_are_uniform_and_independent() -> None:
    u = np.array([candidate_uniforms(f"{i:026x}") for i in range(20_000)])
    assert np.all((u > 0) & (u < 1))
    assert np.allclose(u.mean(axis=0), 0.5, atol=0.01)
    assert abs(np.corrcoef(u.T)[0, 1]) < 0.03


def test_the_sticky_draw_reads_the_posterior_at_the_candidates_quantile() -> None:
    estimate = Evidence(
        {
            ("j", "treated", "email", "s"): Tally(400, 80, 0),
            ("j", "control", "", "s"): Tally(400, 40, 0),
        }
    ).estimate("j", "email", "s")
    middle = sticky_uplift(estimate, 0.5)
    assert middle == pytest.approx(estimate.uplift)
    assert sticky_uplift(estimate, 0.95) > middle > sticky_uplift(estimate, 0.05)
    draws = [sticky_uplift(estimate, candidate_uniforms(str(i))[1]) for i in range(3000)]
    assert np.mean(draws) == pytest.approx(estimate.uplift, abs=0.005)
    assert np.std(draws) == pytest.approx(estimate.spread, rel=0.1)


def test_exploration_narrows_the_draws_not_the_posterior() -> None:
    tallies = {
        ("j", "treated", "email", "s"): Tally(400, 80, 0),
        ("j", "control", "email", "s"): Tally(400, 40, 0),
    }
    full = Evidence(tallies).estimate("j", "email", "s")
    cautious = Evidence(tallies, exploration=0.25).estimate("j", "email", "s")
    assert (cautious.uplift, cautious.spread) == (full.uplift, full.spread)
    assert cautious.reach == pytest.approx(full.spread / 4)
    for u in (0.05, 0.3, 0.9):
        gap = sticky_uplift(cautious, u) - cautious.uplift
        assert gap == pytest.approx((sticky_uplift(full, u) - full.uplift) / 4)


def test_a_thin_control_arm_borrows_its_strata_rate_from_other_journeys() -> None:
    """Journey b has five control trials among loyal customers, none of whom bought; the
    other journeys show loyal customers buy 20% of the time without a message, and b's
    customers elsewhere buy as the others' do. Its control estimate follows them."""
    tallies = {
        ("a", "control", "", "loyal"): Tally(2_000, 400),
        ("a", "control", "", "lapsing"): Tally(2_000, 20),
        ("b", "control", "", "lapsing"): Tally(1_000, 10),
        ("b", "control", "", "loyal"): Tally(5, 0),
    }
    evidence = Evidence(tallies)
    assert evidence.control("b", "loyal").mean == pytest.approx(0.20, abs=0.03)
    assert evidence.control("b", "lapsing").mean == pytest.approx(0.01, abs=0.005)
    # A journey whose customers buy half as often as the others' carries its ratio over.
    halved = dict(tallies)
    halved["b", "control", "", "lapsing"] = Tally(4_000, 20)
    assert Evidence(halved).control("b", "loyal").mean < evidence.control("b", "loyal").mean - 0.02


def test_weighted_trials_count_as_what_they_are_worth() -> None:
    # Equal weights: as many trials as there were.
    assert Tally(10.0, 4.0, 200.0, 10.0).effective() == Tally(10.0, 4.0, 200.0)
    # One trial of weight 1 and one of weight 3 (converted): worth 1.6 trials at 75%.
    mixed = Tally(1.0, 0.0, 0.0, 1.0) + Tally(3.0, 3.0, 150.0, 9.0)
    found = mixed.effective()
    assert found.trials == pytest.approx(1.6)
    assert found.conversions / found.trials == pytest.approx(0.75)
    assert found.revenue / found.conversions == pytest.approx(50.0)
    # Tallies without weights (squares 0) are taken as they are.
    assert Tally(5.0, 1.0).effective() == Tally(5.0, 1.0)
