"""Holds in bulk: the decisions of flat symbols whose policy holds, most of a backtest's.

A symbol that holds nothing (no position, no buy working) and whose model's edge does not
clear the policy's entry bar proposes no order. Neither the risk state nor the risk gate has a
say then: its decision (the agents' votes, the consensus' HOLD, or NO_TRADE when the agents
could not vote) depends on the candle alone. A replay sets these candles aside as it goes
(`HoldRows`: a few columns per candle) and `decide_holds` decides them later with the very
`decide` every decision goes through, on a flat account. Where that runs is the recorder's
choice: a backtest's runs it beside the replay, on the other core (infra.ledger.hold_writer).

Only for a panel whose votes read the candle alone (`candle_only`: the offline rule panel). An
LLM panel reads a brief of the account and of the recent decisions, and deliberates on the
symbols of a candle time together.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal

import numpy as np

from core.agents.panel import Panel, PanelRequest, RulePanel
from core.candles.timeframe import timeframe_delta
from core.consensus import ConsensusConfig
from core.decision import Decision, DecisionInput, Sizing, agent_context, decide
from core.errors import FatalError
from core.features.row import FeatureRow
from core.models.policy import FLAT, step
from core.orders import decision_id_for
from core.risk.limits import RiskLimits, RiskState
from core.types import Action, Symbol, to_decimal

# The state a hold is decided on: holding nothing is all the consensus reads of it.
_FLAT_ACCOUNT = RiskState(cash=Decimal(0), positions={}, prices={})


class NotAHold(FatalError, AssertionError):
    """A candle set aside as a hold proposed an order: it was chosen wrongly."""


def candle_only(panel: Panel) -> bool:
    """Whether `panel`'s votes read the candle alone, so its holds can be decided apart."""
    return isinstance(panel, RulePanel)


def holds_when_flat(edge: float, tradeable: bool, consensus: ConsensusConfig) -> bool:
    """The policy's answer for a flat symbol is HOLD (the very `step` decide() asks)."""
    return step(FLAT, edge, consensus.policy, tradeable)[0] is _HOLD


_HOLD = Action.HOLD


@dataclass(frozen=True)
class HoldSettings:
    """What every hold of a run shares: the run's model and the decision settings."""

    model_name: str
    model_version: str
    feature_set_version: str
    tradeable: bool
    quality: Mapping[str, float]
    consensus: ConsensusConfig
    sizing: Sizing
    limits: RiskLimits


@dataclass(frozen=True)
class HoldRows:
    """Candles set aside as holds, as columns (plain arrays: cheap to hand to another process).
    Row i is `symbols[symbol[i]]` at the candle opening at `opened[i]` (epoch seconds)."""

    account: str
    timeframe: str
    symbols: tuple[str, ...]
    symbol: np.ndarray  # int, an index into `symbols`
    opened: np.ndarray  # int64 epoch seconds
    close: np.ndarray  # float64: the candle's close, the price decided on
    probability: np.ndarray  # float64
    edge: np.ndarray  # float64
    index: Mapping[str, int]  # feature name -> column of `features`
    features: np.ndarray  # float64, one row per hold
    books: Mapping[int, Mapping[str, float]]  # row -> order-book features, where one was seen

    def __len__(self) -> int:
        return len(self.opened)

    def take(self, keep: np.ndarray) -> HoldRows:
        """The rows where `keep` is True, in order."""
        at = np.flatnonzero(keep)
        renumber = {int(old): new for new, old in enumerate(at)}
        return replace(
            self,
            symbol=self.symbol[at],
            opened=self.opened[at],
            close=self.close[at],
            probability=self.probability[at],
            edge=self.edge[at],
            features=self.features[at],
            books={renumber[i]: b for i, b in self.books.items() if i in renumber},
        )


# What records holds: decides `HoldRows` into their decisions, one at a time, in order.
HoldDecider = Callable[[HoldRows], Iterator[Decision]]


def decide_holds(rows: HoldRows, settings: HoldSettings, panel: Panel) -> Iterator[Decision]:
    """Each hold's decision, by `decide` on a flat account at its candle's close. One at a
    time: a chunk's worth of decision objects alive at once would keep the garbage collector
    walking them."""
    if not candle_only(panel):
        raise NotAHold(f"the {panel.name} panel does not vote on the candle alone")
    step_ = timeframe_delta(rows.timeframe)
    horizon = settings.consensus.policy.horizon
    for i in range(len(rows)):
        inp = _input(rows, i, settings)
        did = decision_id_for(rows.account, inp.symbol, inp.timeframe, inp.candle_time)
        now = inp.candle_time + step_
        request = PanelRequest(did, agent_context(inp, _FLAT_ACCOUNT, horizon))
        deliberation = panel.deliberate((request,), now)[did]
        decision = decide(
            inp, deliberation, settings.consensus, settings.sizing, _FLAT_ACCOUNT,
            settings.limits, now, did,
        )  # fmt: skip
        if decision.proposed is not None:
            raise NotAHold(f"{did} proposed {decision.consensus.action.value}: not a hold")
        yield decision


def _input(rows: HoldRows, i: int, settings: HoldSettings) -> DecisionInput:
    return DecisionInput(
        account=rows.account,
        symbol=Symbol(rows.symbols[int(rows.symbol[i])]),
        timeframe=rows.timeframe,
        candle_time=datetime.fromtimestamp(int(rows.opened[i]), UTC),
        price=to_decimal(float(rows.close[i])),
        features=FeatureRow(rows.index, rows.features, i, rows.books.get(i)),
        model_probability=float(rows.probability[i]),
        model_edge=float(rows.edge[i]),
        model_tradeable=settings.tradeable,
        model_quality=settings.quality,
        model_name=settings.model_name,
        model_version=settings.model_version,
        feature_set_version=settings.feature_set_version,
    )
