"""One decision through the policy: the holding's age from its entry, and an exit that waits
for an entry still filling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from core.agents.base import AgentContext, Vote
from core.agents.panel import Deliberation
from core.consensus import ConsensusConfig
from core.decision import DecisionInput, Sizing, decide, holding_of
from core.models.policy import PolicyConfig
from core.risk.limits import RiskLimits, RiskState
from core.types import Action, Symbol

BTC = Symbol("BTC/USDT")
T = datetime(2024, 3, 1, 12, tzinfo=UTC)  # open of the candle just closed
HOUR = timedelta(hours=1)
LIMITS = RiskLimits(
    whitelist=(BTC,),
    max_order_notional=Decimal(1500),
    max_position_notional=Decimal(3000),
    max_total_exposure=Decimal(5000),
    max_daily_loss=Decimal(300),
)


class Quiet:
    name = "quiet"

    def vote(self, context: AgentContext) -> Vote:
        return Vote(self.name, Action.HOLD, 0.5, "no view")


QUIET = Deliberation((Quiet().vote(AgentContext(BTC, {}, 0.5)),))


def inp(edge: float) -> DecisionInput:
    return DecisionInput(
        "paper", BTC, "1h", T, Decimal(50_000), {}, 0.6, "m", "1", "fs", edge, True
    )


def state(held: str = "0", open_buy: str = "0", entered: datetime | None = None) -> RiskState:
    return RiskState(
        cash=Decimal(10_000),
        positions={BTC: Decimal(held)},
        prices={BTC: Decimal(50_000)},
        open_buys={BTC: Decimal(open_buy)},
        entered_at={BTC: entered} if entered else {},
    )


@pytest.mark.parametrize(("entered", "held_for"), [(T + HOUR, 0), (T - 2 * HOUR, 2)])
def test_holding_of_when_entered_then_candles_held_before_this_one(
    entered: datetime,
    held_for: int,
) -> None:
    """Filled at the close of the entry's candle; the policy's step adds the candle just held."""
    holding = holding_of(inp(0.0), state("0.1", entered=entered), horizon=4)
    assert (holding.fraction, holding.held_for) == (1.0, held_for)


def test_holding_of_when_age_unknown_then_past_the_horizon() -> None:
    assert holding_of(inp(0.0), state("0.1"), horizon=4).held_for == 4


def test_decide_when_edge_reverses_but_entry_still_filling_then_exit_waits() -> None:
    cfg = ConsensusConfig(policy=PolicyConfig(horizon=4))
    out = decide(inp(-0.01), QUIET, cfg, Sizing(Decimal(1000)), state(open_buy="0.02"),
                 LIMITS, T + 2 * HOUR)  # fmt: skip
    assert out.consensus.action is Action.HOLD
    assert out.consensus.reason.startswith("exit waits")
    assert out.order is None


def test_decide_when_edge_half_the_full_size_edge_then_half_the_notional() -> None:
    cfg = ConsensusConfig(policy=PolicyConfig(horizon=4, full_size_edge=0.004))
    out = decide(inp(0.002), QUIET, cfg, Sizing(Decimal(1000)), state(), LIMITS,
                 T + 2 * HOUR)  # fmt: skip
    assert out.order is not None
    assert out.order.quantity * Decimal(50_000) == pytest.approx(Decimal(500), rel=Decimal("0.01"))
