from __future__ import annotations

import math
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.labels import forward_log_return, forward_return_label
from core.models.policy import (
    FLAT,
    Holding,
    Payoff,
    PolicyConfig,
    PolicyError,
    edge_t_statistic,
    expected_edge,
    holds_flat,
    payoff_of,
    positions,
    round_trip_cost,
    significant_edge,
    step,
)
from core.types import Action

CFG = PolicyConfig(horizon=4, min_edge=0.001, exit_edge=0.002, full_size_edge=0.004)

edges_st = st.lists(st.one_of(st.floats(-0.02, 0.02), st.just(math.nan)), min_size=1, max_size=120)
configs_st = st.builds(
    PolicyConfig,
    horizon=st.integers(1, 12),
    min_edge=st.floats(0.0, 0.005),
    exit_edge=st.floats(0.0, 0.005),
    full_size_edge=st.floats(0.0005, 0.02),
    min_fraction=st.floats(0.01, 1.0),
)


def test_payoff_of_when_hand_rows_then_means_per_label() -> None:
    returns = np.array([0.02, 0.01, -0.01, 0.001, np.nan])
    payoff = payoff_of(returns, np.array([1, 1, 0, 0, 1]), 0.002)
    assert (payoff.gain, payoff.loss, payoff.cost) == pytest.approx((0.015, 0.0045, 0.002))


def test_payoff_of_when_real_btc_labels_then_gain_beats_cost_and_edge_at_base_rate_is_real(
    btc_1h: pd.DataFrame,
) -> None:
    cost = round_trip_cost(0.001, 0.0005)
    forward = forward_log_return(btc_1h, timedelta(hours=4)).to_numpy()
    label = forward_return_label(btc_1h, timedelta(hours=4), cost).to_numpy()
    payoff = payoff_of(forward, label, cost)
    assert payoff.gain > cost  # a label-1 row beat the cost by definition
    # At the base rate the edge is the mean forward return less the cost, by construction.
    base = float(np.nanmean(label))
    assert expected_edge(base, payoff) == pytest.approx(np.nanmean(forward) - cost, abs=1e-12)


def test_payoff_of_when_one_label_only_then_policy_error() -> None:
    with pytest.raises(PolicyError, match="both labels"):
        payoff_of(np.array([0.01, 0.02]), np.array([1, 1]), 0.002)


def test_payoff_of_when_shapes_differ_then_policy_error() -> None:
    with pytest.raises(PolicyError, match="shape"):
        payoff_of(np.array([0.01, 0.02]), np.array([1, 0, 1]), 0.002)


def test_expected_edge_when_scalar_or_array_then_same_formula() -> None:
    payoff = Payoff(gain=0.01, loss=0.008, cost=0.002)
    assert expected_edge(0.5, payoff) == pytest.approx(-0.001)
    assert isinstance(expected_edge(0.5, payoff), float)
    np.testing.assert_allclose(expected_edge(np.array([0.0, 1.0]), payoff), [-0.01, 0.008])


def test_round_trip_cost_when_fee_and_slippage_then_two_sides_as_log_return() -> None:
    assert round_trip_cost(0.001, 0.0005) == pytest.approx(-2 * math.log(0.9985))
    with pytest.raises(PolicyError):
        round_trip_cost(0.6, 0.5)


@pytest.mark.parametrize(
    ("edge", "fraction"), [(0.0011, 0.275), (0.0005 + 0.001, 0.375), (0.003, 0.75), (0.05, 1.0)]
)
def test_step_when_flat_and_edge_beats_min_then_buy_sized_by_edge(
    edge: float, fraction: float
) -> None:
    action, traded, holding = step(FLAT, edge, CFG)
    assert (action, holding) == (Action.BUY, Holding(traded, 0))
    assert traded == pytest.approx(fraction)


def test_step_when_flat_and_small_edge_then_min_fraction() -> None:
    cfg = PolicyConfig(horizon=4, min_edge=0.0, full_size_edge=0.004, min_fraction=0.25)
    assert step(FLAT, 0.0001, cfg)[1] == 0.25


@pytest.mark.parametrize("edge", [0.001, 0.0, -0.01, math.nan])
def test_step_when_flat_and_edge_not_above_min_then_hold_flat(edge: float) -> None:
    assert step(FLAT, edge, CFG) == (Action.HOLD, 0.0, FLAT)


def test_step_when_not_tradeable_then_never_buys() -> None:
    assert step(FLAT, 0.05, CFG, tradeable=False) == (Action.HOLD, 0.0, FLAT)


def test_step_when_holding_before_horizon_and_edge_weak_then_hold_and_count() -> None:
    assert step(Holding(0.5, 0), -0.001, CFG) == (Action.HOLD, 0.0, Holding(0.5, 1))


def test_step_when_edge_reversed_before_horizon_then_sell_all() -> None:
    assert step(Holding(0.5, 0), -0.0021, CFG) == (Action.SELL, 0.5, FLAT)


def test_step_when_horizon_reached_and_edge_gone_then_sell() -> None:
    assert step(Holding(0.5, 3), 0.001, CFG) == (Action.SELL, 0.5, FLAT)
    assert step(Holding(0.5, 3), math.nan, CFG) == (Action.SELL, 0.5, FLAT)


def test_step_when_horizon_reached_and_edge_still_there_then_keep_holding() -> None:
    assert step(Holding(0.5, 3), 0.0011, CFG) == (Action.HOLD, 0.0, Holding(0.5, 4))


def test_step_when_not_tradeable_and_holding_then_exits_by_the_same_rules() -> None:
    assert step(Holding(1.0, 3), 0.0, CFG, tradeable=False)[0] is Action.SELL
    assert step(Holding(1.0, 1), 0.0, CFG, tradeable=False)[0] is Action.HOLD


def test_positions_when_one_strong_edge_then_held_exactly_the_horizon() -> None:
    edges = np.array([0.004, 0, 0, 0, 0, 0])
    np.testing.assert_array_equal(positions(edges, CFG), [1, 1, 1, 1, 0, 0])


@pytest.mark.parametrize(
    "kwargs",
    [
        {"horizon": 0},
        {"horizon": 4, "min_edge": -0.001},
        {"horizon": 4, "exit_edge": -0.001},
        {"horizon": 4, "full_size_edge": 0.0},
        {"horizon": 4, "min_fraction": 0.0},
        {"horizon": 4, "min_fraction": 1.5},
    ],
)
def test_policy_config_when_invalid_then_policy_error(kwargs: dict[str, float]) -> None:
    with pytest.raises(PolicyError):
        PolicyConfig(**kwargs)  # type: ignore[arg-type]


@settings(max_examples=200, deadline=None)
@given(edges=edges_st, cfg=configs_st, tradeable=st.lists(st.booleans(), min_size=120))
def test_positions_when_any_edges_then_equal_to_iterating_step_and_within_bounds(
    edges: list[float], cfg: PolicyConfig, tradeable: list[bool]
) -> None:
    allowed = np.array(tradeable[: len(edges)])
    held = positions(np.array(edges), cfg, allowed)
    holding, expected = FLAT, []
    for edge, ok in zip(edges, allowed, strict=True):
        action, traded, holding = step(holding, edge, cfg, bool(ok))
        assert 0.0 <= traded <= 1.0
        assert action is not Action.BUY or (ok and cfg.min_fraction <= traded)
        expected.append(holding.fraction)
    np.testing.assert_array_equal(held, expected)
    assert ((held >= 0) & (held <= 1)).all()


@settings(max_examples=200, deadline=None)
@given(edges=edges_st, cfg=configs_st)
def test_positions_when_not_tradeable_then_never_in_a_position(
    edges: list[float], cfg: PolicyConfig
) -> None:
    assert not positions(np.array(edges), cfg, tradeable=False).any()


@settings(max_examples=200, deadline=None)
@given(edges=edges_st, cfg=configs_st)
def test_positions_when_closed_early_then_only_because_the_edge_reversed(
    edges: list[float], cfg: PolicyConfig
) -> None:
    held = positions(np.array(edges), cfg)
    entered = None
    for t in range(len(edges)):
        before = held[t - 1] if t else 0.0
        if before == 0 and held[t] > 0:
            entered = t
        elif before > 0 and held[t] == 0:
            assert entered is not None
            assert t - entered >= cfg.horizon or edges[t] < -cfg.exit_edge


def test_significant_edge_when_too_few_trades_then_false() -> None:
    assert not significant_edge(np.linspace(0.01, 0.02, 29))
    assert significant_edge(np.linspace(0.01, 0.02, 30))


def test_significant_edge_when_mean_near_zero_then_false() -> None:
    noise = np.random.default_rng(0).normal(0.0, 0.01, 500)
    assert not significant_edge(noise - noise.mean())


def test_edge_t_statistic_when_hand_values_then_mean_over_standard_error() -> None:
    r = np.array([0.01, 0.03, -0.01, 0.01])
    assert edge_t_statistic(r) == pytest.approx(0.01 / (np.std(r, ddof=1) / 2))
    assert edge_t_statistic(np.full(40, 0.002)) == math.inf
    assert edge_t_statistic(np.full(40, -0.002)) == 0.0
    with pytest.raises(PolicyError):
        edge_t_statistic(np.array([0.01, math.nan]))


@settings(max_examples=300, deadline=None)
@given(
    edges=st.lists(
        st.floats(-1, 1) | st.sampled_from([math.nan, math.inf, -math.inf, 0.0, 0.001, 0.005]),
        min_size=1,
        max_size=60,
    ),
    cfg=configs_st,
    tradeable=st.booleans(),
)
def test_holds_flat_when_any_edges_then_what_step_answers_for_a_flat_holding(
    edges: list[float], cfg: PolicyConfig, tradeable: bool
) -> None:
    # NaN (no prediction), infinities and an edge exactly at min_edge included.
    expected = [step(FLAT, e, cfg, tradeable)[0] is Action.HOLD for e in edges]
    assert holds_flat(np.array(edges), cfg, tradeable).tolist() == expected
