from __future__ import annotations

from dataclasses import replace

import pytest

from core.agents.base import AgentContext, InvalidVote, Vote
from core.agents.panel import Deliberation
from core.agents.rules import RULE_FEATURES, BearAgent, BullAgent
from core.consensus import ConsensusConfig, ModelSignal, combine
from core.features.build import build_features
from core.features.registry import FEATURE_NAMES
from core.models.policy import FLAT, Holding, PolicyConfig
from core.types import Action, Symbol

UP = {"ema_ratio_12": 0.01, "macd_hist": 0.001, "rsi_14": 0.55}
DOWN = {"ema_ratio_12": -0.01, "macd_hist": -0.001, "rsi_14": 0.75}


def ctx(features: dict[str, float], p: float) -> AgentContext:
    return AgentContext(Symbol("BTC/USDT"), features, p)


def test_bull_when_uptrend_and_model_bullish_then_votes_buy_with_reason() -> None:
    vote = BullAgent().vote(ctx(UP, 0.7))
    assert vote.action is Action.BUY
    assert 0 <= vote.confidence <= 1
    assert "uptrend" in vote.reason
    assert "\n" not in vote.reason


def test_bull_when_downtrend_and_model_bearish_then_holds() -> None:
    assert BullAgent().vote(ctx(DOWN, 0.3)).action is Action.HOLD


def test_bear_when_downtrend_and_model_bearish_then_votes_sell() -> None:
    assert BearAgent().vote(ctx(DOWN, 0.3)).action is Action.SELL


def test_rule_agents_when_reading_features_then_every_one_is_in_the_registry() -> None:
    assert set(RULE_FEATURES) <= set(FEATURE_NAMES)


def test_rule_agents_when_real_feature_rows_then_vote_without_failing(btc_1h) -> None:  # type: ignore[no-untyped-def]
    rows = build_features(btc_1h.head(600), btc_1h.head(600)).dropna().tail(50)
    assert len(rows) == 50
    actions = set()
    for _, row in rows.iterrows():
        for agent in (BullAgent(), BearAgent()):
            vote = agent.vote(ctx(row.to_dict(), 0.5))
            actions.add(vote.action)
            assert vote.reason.startswith("model p_up=0.50")
    assert actions >= {Action.HOLD}


def test_agents_when_book_imbalance_present_then_it_adds_evidence_and_is_cited() -> None:
    plain = BullAgent().vote(ctx(UP, 0.55))
    with_book = BullAgent().vote(ctx(UP | {"book_imbalance_top5": 0.6}, 0.55))
    assert with_book.confidence == pytest.approx(plain.confidence + 0.05)
    assert "book imbalance +0.60" in with_book.reason
    against = BearAgent().vote(ctx(DOWN | {"book_imbalance_top5": 0.6}, 0.45))
    assert against.confidence == BearAgent().vote(ctx(DOWN, 0.45)).confidence


def test_agents_when_same_input_twice_then_same_vote() -> None:
    assert BullAgent().vote(ctx(UP, 0.6)) == BullAgent().vote(ctx(UP, 0.6))


def test_vote_when_confidence_out_of_range_then_invalid() -> None:
    with pytest.raises(InvalidVote):
        Vote("x", Action.BUY, 1.5, "r")


def test_agents_when_only_the_model_probability_changes_then_same_score() -> None:
    """The agents argue from the market: the model is counted once, by the policy."""
    for agent in (BullAgent(), BearAgent()):
        low, high = agent.vote(ctx(UP, 0.1)), agent.vote(ctx(UP, 0.9))
        assert low.action is high.action
        assert low.confidence == high.confidence


POLICY = PolicyConfig(horizon=4, full_size_edge=0.004)
CFG = ConsensusConfig(threshold=0.15, policy=POLICY)
HOLDS = [Vote("bull", Action.HOLD, 0.45, "r"), Vote("bear", Action.HOLD, 0.4, "r")]


def signal(edge: float, tradeable: bool = True) -> ModelSignal:
    return ModelSignal(0.5, edge, tradeable)


def test_consensus_when_edge_beats_costs_and_flat_then_buy_sized_by_edge() -> None:
    out = combine(signal(0.002), Deliberation(HOLDS), FLAT, CFG)
    assert out.action is Action.BUY
    assert out.fraction == pytest.approx(0.5)  # half the full-size edge
    assert "enters" in out.reason


def test_consensus_when_model_not_tradeable_then_never_buys() -> None:
    out = combine(signal(0.01, tradeable=False), Deliberation(HOLDS), FLAT, CFG)
    assert out.action is Action.HOLD
    assert "abstains" in out.reason


def test_consensus_when_edge_negative_and_flat_then_hold_not_sell() -> None:
    """A SELL only closes a holding: a bearish model never makes an order when flat."""
    bears = [Vote("bear", Action.SELL, 0.9, "r")]
    assert combine(signal(-0.01), Deliberation(bears), FLAT, CFG).action is Action.HOLD


def test_consensus_when_agents_oppose_an_entry_beyond_threshold_then_vetoed() -> None:
    bears = [Vote("bull", Action.HOLD, 0.4, "r"), Vote("bear", Action.SELL, 0.9, "r")]
    out = combine(signal(0.0005), Deliberation(bears), FLAT, CFG)
    assert out.action is Action.HOLD
    assert "veto" in out.reason


def test_consensus_when_holding_inside_horizon_and_edge_merely_weak_then_hold() -> None:
    out = combine(
        signal(-0.0001),
        Deliberation(HOLDS),
        Holding(1.0, 1),
        replace(CFG, policy=replace(POLICY, exit_edge=0.001)),
    )
    assert out.action is Action.HOLD


def test_consensus_when_holding_and_edge_reverses_then_sell_even_if_agents_bullish() -> None:
    bulls = [Vote("bull", Action.BUY, 0.9, "r")]
    out = combine(signal(-0.01), Deliberation(bulls), Holding(1.0, 1), CFG)
    assert out.action is Action.SELL
    assert "exits" in out.reason


def test_consensus_when_horizon_passed_and_edge_gone_then_sell() -> None:
    out = combine(
        signal(-0.0001),
        Deliberation(HOLDS),
        Holding(1.0, 3),
        replace(CFG, policy=replace(POLICY, exit_edge=0.01)),
    )
    assert out.action is Action.SELL


BULL_SURE = Vote("bull", Action.BUY, 0.8, "r")
BEAR_SURE = Vote("bear", Action.SELL, 0.7, "r")


def test_consensus_when_votes_given_then_contributions_sum_to_the_score() -> None:
    out = combine(signal(0.002), Deliberation((BULL_SURE, HOLDS[1])), FLAT, CFG)
    assert set(out.contributions) == {"model", "bull", "bear"}
    assert sum(out.contributions.values()) == pytest.approx(out.score, abs=1e-5)
    assert out.contributions["bull"] > 0
    assert out.contributions["bear"] == 0.0


def test_consensus_when_an_agent_abstained_then_it_weighs_nothing() -> None:
    abstained = Vote.abstain("bear", "timeout", "no answer in 20 s")
    out = combine(signal(0.002), Deliberation((BULL_SURE, abstained)), FLAT, CFG)
    assert "bear" not in out.contributions
    both = combine(signal(0.002), Deliberation((BULL_SURE, HOLDS[1])), FLAT, CFG)
    assert out.score > both.score  # the abstainer's weight is not a HOLD dragging it down


def test_consensus_when_regime_weights_given_then_used_for_that_regime_only() -> None:
    cfg = replace(CFG, regime_weights={"trend_down": {"model": 0.0, "bull": 0.0, "bear": 1.0}})
    votes = Deliberation((BULL_SURE, BEAR_SURE))
    down = combine(signal(0.002), votes, FLAT, cfg, regime="trend_down_high_vol")
    assert down.score == pytest.approx(-0.7)
    assert down.regime == "trend_down_high_vol"
    assert down.action is Action.HOLD  # vetoed: the bear alone speaks in a downtrend
    up = combine(signal(0.002), votes, FLAT, cfg, regime="trend_up")
    assert up.score == pytest.approx(combine(signal(0.002), votes, FLAT, CFG).score)


def test_consensus_when_bull_and_bear_both_sure_and_opposed_then_no_entry() -> None:
    cfg = replace(CFG, threshold=1.0)  # no veto: only the disagreement rule can stop it
    out = combine(signal(0.004), Deliberation((BULL_SURE, BEAR_SURE)), FLAT, cfg)
    assert out.action is Action.HOLD
    assert "strong disagreement" in out.reason
    mild = replace(BEAR_SURE, confidence=0.5)
    assert combine(signal(0.004), Deliberation((BULL_SURE, mild)), FLAT, cfg).action is Action.BUY


def test_consensus_when_budget_exceeded_then_no_trade_but_an_exit_still_leaves() -> None:
    stopped = Deliberation(
        (Vote.abstain("bull", "budget_exceeded"), Vote.abstain("bear", "budget_exceeded")),
        budget_exceeded="round 0, bull: day cost: 5.01 would exceed the limit 5",
    )
    flat = combine(signal(0.01), stopped, FLAT, CFG)
    assert flat.action is Action.NO_TRADE
    assert flat.reason.startswith("BUDGET_EXCEEDED: round 0, bull: day cost")
    held = combine(signal(-0.01), stopped, Holding(1.0, 1), CFG)
    assert held.action is Action.SELL  # leaving is the cautious side: never blocked


def test_consensus_when_budget_exceeded_and_exiting_then_the_reason_names_it() -> None:
    stopped = Deliberation((), budget_exceeded="round 0, bull: day tokens: 9 would exceed 5")
    held = combine(signal(-0.01), stopped, Holding(1.0, 1), CFG)
    assert held.action is Action.SELL
    assert held.reason.endswith(
        "despite BUDGET_EXCEEDED: round 0, bull: day tokens: 9 would exceed 5"
    )


@pytest.mark.parametrize(
    "vote",
    [
        Vote("bull", Action.BUY, 0.6, "trend up"),
        Vote("bear", Action.SELL, 0.4, "r1; r2", 4, ("r1", "r2"), ("thin book",)),
        Vote.abstain("bear", "timeout", "no answer in 20 s"),
    ],
)
def test_vote_when_through_json_short_or_full_then_identical(vote: Vote) -> None:
    assert Vote.from_json(vote.as_json()) == vote
    short = vote.as_json(full=False)
    assert Vote.from_json(short) == vote
    assert ("reasons" in short) is bool(vote.reasons or vote.abstained)
