"""Holds in bulk: the decisions of flat symbols whose policy holds, most of a backtest's.

A symbol that holds nothing (no position, no buy working) and whose model's edge does not
clear the policy's entry bar proposes no order. Neither the risk state nor the risk gate has a
say then: its decision (the agents' votes, the consensus' HOLD, or NO_TRADE when the agents
could not vote) depends on the candle alone. A replay sets these candles aside as it goes
(`HoldRows`: a few columns per candle) and `HoldDecider` decides them later, on a flat account:
in bulk from the very functions `decide` calls (the agents' cases, the consensus' weighing and
reason; the model's share and the net score as numpy's copy of their float operations, held
equal to them by tests/infra/ledger/test_hold_tuples.py), or by `decide` itself. Where that
runs is the recorder's choice: a backtest's runs it beside the replay, on the other core
(infra.ledger.decision_writer).

Only for a panel whose votes read the candle alone (`candle_only`: the offline rule panel). An
LLM panel reads a brief of the account and of the recent decisions, and deliberates on the
symbols of a candle time together.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np

from core.agents.base import Agent, Vote
from core.agents.brief import REGIME_FEATURES, regime_at
from core.agents.panel import Panel, PanelRequest, RulePanel
from core.agents.rules import (
    RULE_FEATURES,
    BearAgent,
    BullAgent,
    bear_case,
    bear_signs,
    bull_case,
    bull_signs,
    cited,
    readings,
)
from core.candles.timeframe import timeframe_delta
from core.consensus import (
    ConsensusConfig,
    Weighing,
    about_of,
    hold_reason,
    model_scores,
    weighing,
)
from core.decision import Decision, DecisionInput, Sizing, agent_context, decide
from core.errors import FatalError
from core.features.book_specs import BOOK_FEATURE_NAMES
from core.features.row import FeatureRow
from core.models.policy import holds_flat
from core.orders import decision_id_at, decision_id_for
from core.risk.limits import RiskLimits, RiskState
from core.types import Symbol, floats_to_decimals, to_decimal

# The state a hold is decided on: holding nothing is all the consensus reads of it.
_FLAT_ACCOUNT = RiskState(cash=Decimal(0), positions={}, prices={})


class NotAHold(FatalError, AssertionError):
    """A candle set aside as a hold proposed an order: it was chosen wrongly."""


def candle_only(panel: Panel) -> bool:
    """Whether `panel`'s votes read the candle alone, so its holds can be decided apart."""
    return isinstance(panel, RulePanel)


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


@dataclass(frozen=True)
class HoldColumns:
    """Holds decided in bulk (`HoldDecider.columns`), a list per column: item i of each is
    the i-th hold read apart. A rule vote's action and confidence take a few values and its
    reason quotes the candle: row i's votes are `vote_cases[case[i]]`, each one's reason its
    case's trend word between `said[i]` and `seen[i]` (`vote_reasons`). Its contributions are
    the model's `model_share[i]` and the agents' shares of `weighings[weighed[i]]`, one
    weighing per votes' case and regime (`contributions`). Rows whose votes cannot be read
    apart are in `decided`, whole."""

    decision_id: list[str]
    symbol: list[str]
    candle_time: list[datetime]
    decided_at: list[datetime]
    price: list[Decimal]
    probability: list[float]
    vote_cases: tuple[tuple[Vote, ...], ...]
    case: list[int]
    said: list[str]
    seen: list[str]
    score: list[float]
    reason: list[str]
    weighings: tuple[Weighing, ...]
    weighed: list[int]
    model_share: list[float]
    regime: list[str]
    decided: list[Decision]

    def __len__(self) -> int:
        return len(self.decision_id) + len(self.decided)

    def vote_reasons(self, i: int) -> tuple[str, ...]:
        said, seen = self.said[i], self.seen[i]
        return tuple(said + vote.reason + seen for vote in self.vote_cases[self.case[i]])

    @classmethod
    def whole(cls, decided: list[Decision]) -> HoldColumns:
        """None read apart: every hold decided whole."""
        empty: dict[str, Any] = {f.name: [] for f in fields(cls)}
        return cls(**empty | {"vote_cases": (), "weighings": (), "decided": decided})


@dataclass(frozen=True)
class HoldDecider:
    """Decides holds on a flat account at each candle's close.

    `decisions` runs `decide` itself, one hold at a time, in order. `columns` gives the same
    decisions in bulk, as the values their records hold (a test holds the two equal); it
    refuses (NotAHold) agents other than one Bull and one Bear rule agent: ask `decisions`."""

    settings: HoldSettings
    panel: Panel

    def __post_init__(self) -> None:
        if not candle_only(self.panel):
            raise NotAHold(f"the {self.panel.name} panel does not vote on the candle alone")

    @property
    def plain(self) -> bool:
        """Whether `columns` can read these holds' votes apart: rule agents, one of each kind."""
        agents = getattr(self.panel, "agents", ())
        kinds = [type(a) for a in agents]
        return bool(kinds) and all(k in _RULES for k in kinds) and len(set(kinds)) == len(kinds)

    def decisions(self, rows: HoldRows) -> Iterator[Decision]:
        settings, step_ = self.settings, timeframe_delta(rows.timeframe)
        horizon = settings.consensus.policy.horizon
        for i in range(len(rows)):
            inp = _input(rows, i, settings)
            did = decision_id_for(rows.account, inp.symbol, inp.timeframe, inp.candle_time)
            now = inp.candle_time + step_
            request = PanelRequest(did, agent_context(inp, _FLAT_ACCOUNT, horizon))
            deliberation = self.panel.deliberate((request,), now)[did]
            decision = decide(
                inp, deliberation, settings.consensus, settings.sizing, _FLAT_ACCOUNT,
                settings.limits, now, did,
            )  # fmt: skip
            if decision.proposed is not None:
                raise NotAHold(f"{did} proposed {decision.consensus.action.value}: not a hold")
            yield decision

    def columns(self, rows: HoldRows) -> HoldColumns:
        """The holds' decisions as the values their records hold, from the functions `decide`
        calls for a flat hold of the Bull and Bear rule agents (the signs of their evidence,
        their cases, the regime, the weighing and the reason; the model's share and the net
        score a column at a time, `_shares`) without the objects around them: a backtest
        records hundreds of thousands of holds, and those objects were most of their cost. A
        row whose agents read an order book, or could not vote (a feature missing), is decided
        whole by `decisions`."""
        if not self.plain:
            raise NotAHold(f"the agents of the {self.panel.name} panel are not Bull and Bear")
        if any(n not in rows.index for n in RULE_FEATURES) or _BOOKS & rows.index.keys():
            return HoldColumns.whole(list(self.decisions(rows)))
        with_book = np.zeros(len(rows), dtype=bool)
        with_book[list(rows.books)] = True
        if not with_book.any():
            return _read_apart(self, rows, [])
        return _read_apart(self, rows.take(~with_book), list(self.decisions(rows.take(with_book))))


# The rule agents whose votes `columns` reads apart: the signs of their evidence, their case.
_RULES = {BullAgent: (bull_signs, bull_case), BearAgent: (bear_signs, bear_case)}
_BOOKS = frozenset(BOOK_FEATURE_NAMES)
_TREND, _VOL = REGIME_FEATURES

VoteCases = tuple[tuple[Vote, ...], ...]


def _vote_cases(agents: Sequence[Agent], rows: HoldRows) -> tuple[np.ndarray, VoteCases]:
    """Each row's case (an index into the cases) and the cases: every combination of the
    agents' votes, each vote's reason its trend word (a row's reasons quote its features)."""
    f, ix = rows.features, rows.index
    ema, macd, rsi = (f[:, ix[name]] for name in RULE_FEATURES)
    code = np.zeros(len(rows), dtype=np.int64)
    each: list[list[Vote]] = []
    for agent in agents:
        signs, case = _RULES[type(agent)]  # type: ignore[index]
        first, second = signs(ema, macd, rsi)
        code = code * 4 + first.astype(np.int64) * 2 + second.astype(np.int64)
        least = agent.min_confidence  # type: ignore[attr-defined]
        each.append([Vote(agent.name, *case(c > 1, c % 2 == 1, 0.0, least)) for c in range(4)])
    last = len(each) - 1
    cases = tuple(
        tuple(votes[(c >> 2 * (last - j)) & 3] for j, votes in enumerate(each))
        for c in range(4 ** len(each))
    )
    return code, cases


def _read_apart(decider: HoldDecider, rows: HoldRows, decided: list[Decision]) -> HoldColumns:
    """HoldDecider.columns on rows whose votes can be read apart: what `decide` computes for
    each, a column at a time (a backtest has hundreds of thousands)."""
    settings = decider.settings
    consensus = settings.consensus
    tradeable = settings.tradeable or not consensus.require_significance
    entering = ~holds_flat(rows.edge, consensus.policy, tradeable)
    if entering.any():
        i = int(np.argmax(entering))
        symbol = rows.symbols[int(rows.symbol[i])]
        raise NotAHold(f"{symbol} at {int(rows.opened[i])}: the policy enters, not a hold")
    code, cases = _vote_cases(decider.panel.agents, rows)  # type: ignore[attr-defined]
    f, ix, n = rows.features, rows.index, len(rows)
    ema, macd, rsi = (f[:, ix[name]].tolist() for name in RULE_FEATURES)
    trend = f[:, ix[_TREND]].tolist() if _TREND in ix else [0.0] * n
    vol = f[:, ix[_VOL]].tolist() if _VOL in ix else [None] * n
    p, edge, case = rows.probability.tolist(), rows.edge.tolist(), code.tolist()
    regime = list(map(regime_at, trend, vol))
    weighings, weighed = _weighings(cases, case, regime, consensus)
    share, score = _shares(rows.edge, weighings, weighed, consensus)
    ids, symbol, candle_time, decided_at = _keys(rows)
    return HoldColumns(
        decision_id=ids,
        symbol=symbol,
        candle_time=candle_time,
        decided_at=decided_at,
        price=floats_to_decimals(rows.close.tolist()),
        probability=p,
        vote_cases=cases,
        case=case,
        said=list(map(cited, p)),
        seen=list(map(readings, ema, macd, rsi)),
        score=score,
        reason=[
            hold_reason(about_of(e, q, s), tradeable)
            for e, q, s in zip(edge, p, score, strict=True)
        ],
        weighings=weighings,
        weighed=weighed.tolist(),
        model_share=share,
        regime=regime,
        decided=decided,
    )


def _weighings(
    cases: VoteCases, case: list[int], regime: list[str], consensus: ConsensusConfig
) -> tuple[tuple[Weighing, ...], np.ndarray]:
    """The weighings of the rows' votes' cases and regimes (a few a run), and each row's (an
    index into them)."""
    first: dict[tuple[int, str], int] = {}  # each (case, regime) -> its weighing's index
    weighed = [first.setdefault(key, len(first)) for key in zip(case, regime, strict=True)]
    weighings = tuple(weighing(cases[c], r, consensus) for c, r in first)
    return weighings, np.array(weighed, dtype=np.int64)


def _shares(
    edge: np.ndarray,
    weighings: tuple[Weighing, ...],
    weighed: np.ndarray,
    consensus: ConsensusConfig,
) -> tuple[list[float], list[float]]:
    """Each row's model share and net score, for all rows at once: `model_scores`, then the
    float operations of model_share and net_score, in their order (a test holds them equal)."""
    if not len(edge):
        return [], []
    scored = model_scores(edge, consensus)
    total = np.array([w.total for w in weighings])[weighed]
    weight = np.array([w.model_weight for w in weighings])[weighed]
    with np.errstate(divide="ignore", invalid="ignore"):  # a zero total's share is 0.0
        share = np.where(total != 0, weight * scored / total, 0.0)
    net = 0.0 + share
    # Agents' shares, the missing ones as 0.0: adding 0.0 changes only a -0.0, and a sum
    # from 0.0 is never one.
    width = max(len(w.agent_shares) for w in weighings)
    for j in range(width):
        agent = [w.agent_shares[j] if j < len(w.agent_shares) else 0.0 for w in weighings]
        net = net + np.array(agent)[weighed]
    return share.tolist(), [round(x, 6) for x in net.tolist()]


def _keys(rows: HoldRows) -> tuple[list[str], list[str], list[datetime], list[datetime]]:
    """Each row's decision id, symbol, candle time and decision time."""
    symbol = np.array(rows.symbols, dtype=object)[rows.symbol].tolist()
    opened = rows.opened.tolist()
    account, timeframe = rows.account, rows.timeframe
    ids = [decision_id_at(account, s, timeframe, o) for s, o in zip(symbol, opened, strict=True)]
    # Each candle time is made once, however many symbols' holds share it.
    distinct, at = np.unique(rows.opened, return_inverse=True)
    starts = [datetime.fromtimestamp(o, UTC) for o in distinct.tolist()]
    step = timeframe_delta(rows.timeframe)
    candle_time = np.array(starts, dtype=object)[at].tolist()
    decided_at = np.array([t + step for t in starts], dtype=object)[at].tolist()
    return ids, symbol, candle_time, decided_at


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
