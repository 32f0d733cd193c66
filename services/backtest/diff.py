"""Backtest against paper: re-run a period that paper (or live) trading recorded through the
backtest engine and list, trade by trade, what differs and the cause where it can be named
(freqtrade's issue #6002).

Trades are matched on (symbol, open time of the decided candle): decision and client order
ids embed the account, and a re-run trades under its own. A trade that differs in several ways
gives one row per way (quantity, timing, price), each with its own causes. A cause is
"<name>: <detail>", the name one of `Cause`.

Only the window is compared: the paper's decisions on its candles, their orders, and the fills
before its end (the backtest sees no later candle). Paper enters the window with whatever it
held; the backtest starts flat with its starting cash (the report says when that differs).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import NamedTuple

from core.agents.base import Vote
from core.candles.timeframe import timeframe_delta
from core.orders import Fill, Order, OrderStatus
from core.ports import TradingLedger
from core.records import DecisionRecord
from core.types import ClientOrderId, Side, Symbol
from services.backtest.engine import BacktestWindow, CandleReader
from services.backtest.session import BacktestParts, run_backtest

ZERO = Decimal(0)
_BPS = Decimal(10_000)


class DiffKind(StrEnum):
    MISSING = "missing"  # paper traded, the backtest did not
    EXTRA = "extra"  # the backtest traded, paper did not
    DECISION = "decision"  # both traded, on opposite sides
    QUANTITY = "quantity"  # ordered or filled another quantity
    TIMING = "timing"  # first filled at another candle
    PRICE = "price"  # another average fill price


_KIND_ORDER = {k: i for i, k in enumerate(DiffKind)}


class Cause(StrEnum):
    FILL_LATENCY = "fill latency"
    PARTIAL_FILL = "partial fill"
    NOT_FILLED = "not filled"
    SLIPPAGE = "slippage"
    RISK_STATE = "risk state"
    MODEL_VERSION = "model version"
    AGENT_VOTES = "agent votes"
    MODEL_INPUT = "model input"
    CONSENSUS = "consensus"
    POSITION_HELD = "position held"
    SIZING = "sizing"
    NO_DECISION = "no decision"
    UNEXPLAINED = "unexplained"


def cause(name: Cause, detail: str) -> str:
    return f"{name.value}: {detail}"


def cause_name(text: str) -> str:
    return text.partition(": ")[0]


@dataclass(frozen=True, slots=True)
class FillAt:
    candles: int  # whole candles between the close of the decided candle and this fill
    quantity: Decimal
    price: Decimal


@dataclass(frozen=True, slots=True)
class TradeSide:
    """One side's trade at a candle: what was ordered and how it filled in the window."""

    side: Side
    ordered: Decimal
    status: OrderStatus  # as the ledger holds it now (it may have filled after the window)
    fills: tuple[FillAt, ...]  # oldest first

    @property
    def filled(self) -> Decimal:
        return sum((f.quantity for f in self.fills), ZERO)

    @property
    def average_price(self) -> Decimal | None:
        filled = self.filled
        if not filled:
            return None
        return sum((f.quantity * f.price for f in self.fills), ZERO) / filled

    @property
    def latency(self) -> int | None:
        """Candles from the decided candle's close to the first fill; None when unfilled."""
        return self.fills[0].candles if self.fills else None

    @property
    def partial(self) -> bool:
        return len(self.fills) != 1 or self.filled < self.ordered


@dataclass(frozen=True, slots=True)
class TradeDiff:
    symbol: Symbol
    candle_time: datetime  # open time of the decided candle
    kind: DiffKind
    paper: TradeSide | None
    backtest: TradeSide | None
    causes: tuple[str, ...]

    @property
    def cause_names(self) -> frozenset[str]:
        return frozenset(cause_name(c) for c in self.causes)


Key = tuple[Symbol, datetime]


class _At(NamedTuple):
    decision: DecisionRecord | None
    trade: TradeSide | None


def diff_runs(
    paper_decisions: Sequence[DecisionRecord],
    paper_orders: Sequence[Order],
    paper_fills: Sequence[Fill],
    backtest_decisions: Sequence[DecisionRecord],
    backtest_orders: Sequence[Order],
    backtest_fills: Sequence[Fill],
    timeframe: str,
) -> list[TradeDiff]:
    """Every way a trade of one run differs from the other's at the same symbol and candle.
    Orders whose decision is not among the decisions given are left out (placed by the kill
    switch, or decided outside the window)."""
    step = timeframe_delta(timeframe)
    paper = _sides(paper_decisions, paper_orders, paper_fills, step)
    backtest = _sides(backtest_decisions, backtest_orders, backtest_fills, step)
    out: list[TradeDiff] = []
    for key in sorted(paper[1].keys() | backtest[1].keys()):
        out += _diff_at(key, _at(paper, key), _at(backtest, key))
    return sorted(out, key=lambda d: (d.candle_time, d.symbol, _KIND_ORDER[d.kind]))


_Sides = tuple[dict[Key, DecisionRecord], dict[Key, TradeSide]]


def _at(sides: _Sides, key: Key) -> _At:
    return _At(sides[0].get(key), sides[1].get(key))


def _sides(
    decisions: Sequence[DecisionRecord],
    orders: Sequence[Order],
    fills: Sequence[Fill],
    step: timedelta,
) -> _Sides:
    """(decisions, trades) by (symbol, candle time)."""
    by_id = {d.decision_id: d for d in decisions}
    fills_of: dict[ClientOrderId, list[Fill]] = defaultdict(list)
    for fill in sorted(fills, key=lambda f: (f.filled_at, f.fill_id)):
        fills_of[fill.client_order_id].append(fill)
    trades = {}
    for order in orders:
        decision = None if order.decision_id is None else by_id.get(order.decision_id)
        if decision is not None:
            trades[(decision.symbol, decision.candle_time)] = _trade_side(
                order, fills_of[order.client_order_id], step
            )
    return {(d.symbol, d.candle_time): d for d in decisions}, trades


def _trade_side(order: Order, fills: Sequence[Fill], step: timedelta) -> TradeSide:
    at = tuple(
        FillAt((f.filled_at - order.market_time) // step, f.quantity, f.price) for f in fills
    )
    return TradeSide(order.side, order.quantity, order.status, at)


def _diff_at(key: Key, paper: _At, backtest: _At) -> list[TradeDiff]:
    symbol, t = key

    def row(kind: DiffKind, causes: Sequence[str]) -> TradeDiff:
        return TradeDiff(symbol, t, kind, paper.trade, backtest.trade, tuple(causes))

    p, b = paper.trade, backtest.trade
    if b is None:
        return [row(DiffKind.MISSING, decision_causes(paper.decision, backtest.decision))]
    if p is None:
        return [row(DiffKind.EXTRA, decision_causes(paper.decision, backtest.decision))]
    if p.side is not b.side:
        return [row(DiffKind.DECISION, decision_causes(paper.decision, backtest.decision))]
    found = [
        (DiffKind.QUANTITY, quantity_causes(p, b, paper.decision, backtest.decision)),
        (DiffKind.TIMING, timing_causes(p, b)),
        (DiffKind.PRICE, price_causes(p, b)),
    ]
    return [row(kind, causes) for kind, causes in found if causes]


# -- what filled differently --------------------------------------------------------------
def quantity_causes(
    paper: TradeSide,
    backtest: TradeSide,
    paper_decision: DecisionRecord | None,
    backtest_decision: DecisionRecord | None,
) -> tuple[str, ...]:
    """Why the two ordered or filled (in the window) other quantities; () when they did not.
    An order filled whole in several fills differs in timing, not quantity."""
    causes = []
    if paper.ordered != backtest.ordered:
        causes.append(_sizing_cause(paper, backtest, paper_decision, backtest_decision))
    if paper.filled != backtest.filled:
        named = (("paper", paper), ("the backtest", backtest))
        causes += [_fill_cause(who, s) for who, s in named if s.filled < s.ordered]
    return tuple(causes)


def _sizing_cause(
    paper: TradeSide,
    backtest: TradeSide,
    paper_decision: DecisionRecord | None,
    backtest_decision: DecisionRecord | None,
) -> str:
    ordered = f"paper ordered {_num(paper.ordered)}, the backtest {_num(backtest.ordered)}"
    if paper.side is Side.SELL:
        return cause(
            Cause.POSITION_HELD, f"{ordered} (a sell closes what is held: earlier fills differed)"
        )
    prices = (
        (paper_decision.price, backtest_decision.price)
        if paper_decision and backtest_decision
        else None
    )
    if prices and prices[0] != prices[1]:
        ordered += f" at a price of {_num(prices[0])} vs {_num(prices[1])}"
    return cause(Cause.SIZING, ordered)


def _fill_cause(who: str, side: TradeSide) -> str:
    if not side.fills:
        return cause(
            Cause.NOT_FILLED, f"{who}'s order ({side.status.value}) filled nothing in the window"
        )
    return cause(
        Cause.PARTIAL_FILL,
        f"{who} filled {_num(side.filled)} of {_num(side.ordered)} in {len(side.fills)} "
        "fill(s) before the window's end",
    )


def timing_causes(paper: TradeSide, backtest: TradeSide) -> tuple[str, ...]:
    """Why the first or the last fill came at another candle; () when neither did (or one
    side never filled)."""
    if not paper.fills or not backtest.fills:
        return ()
    causes = []
    if paper.latency != backtest.latency:
        causes.append(_latency_cause(paper, backtest))
    p, b = paper.fills[-1].candles, backtest.fills[-1].candles
    if p != b and (len(paper.fills) > 1 or len(backtest.fills) > 1):
        detail = (
            f"paper filled in {len(paper.fills)} fill(s), the last {p} candle(s) after its "
            f"candle closed; the backtest in {len(backtest.fills)}, the last {b} after"
        )
        causes.append(cause(Cause.PARTIAL_FILL, detail))
    return tuple(causes)


def _latency_cause(paper: TradeSide, backtest: TradeSide) -> str:
    return cause(
        Cause.FILL_LATENCY,
        f"paper first filled {paper.latency} candle(s) after its candle closed, "
        f"the backtest {backtest.latency}",
    )


def price_causes(paper: TradeSide, backtest: TradeSide) -> tuple[str, ...]:
    """Why the average fill prices differ; () when they do not (or one never filled)."""
    p, b = paper.average_price, backtest.average_price
    if p is None or b is None or p == b:
        return ()
    causes = []
    if paper.latency != backtest.latency:
        causes.append(
            cause(
                Cause.FILL_LATENCY,
                f"paper filled from {paper.latency} candle(s) after its candle closed, the "
                f"backtest from {backtest.latency}: other candles' prices",
            )
        )
    slipped = _same_candle_prices(paper, backtest)
    if slipped is not None:
        n, pp, bp = slipped
        causes.append(
            cause(
                Cause.SLIPPAGE,
                f"same candle (+{n}), paper {_num(pp)} vs the backtest {_num(bp)} "
                f"({(pp - bp) / bp * _BPS:+.1f} bps)",
            )
        )
    if paper.partial or backtest.partial:
        counts = f"{len(paper.fills)} fill(s) on paper, {len(backtest.fills)} in the backtest"
        causes.append(cause(Cause.PARTIAL_FILL, f"the averages are over {counts}"))
    return tuple(causes) or (cause(Cause.UNEXPLAINED, f"paper {_num(p)}, the backtest {_num(b)}"),)


def _same_candle_prices(
    paper: TradeSide, backtest: TradeSide
) -> tuple[int, Decimal, Decimal] | None:
    """The first candle both filled in at different prices: (candles after, paper, backtest)."""
    theirs = {f.candles: f.price for f in backtest.fills}
    for fill in paper.fills:
        other = theirs.get(fill.candles)
        if other is not None and other != fill.price:
            return fill.candles, fill.price, other
    return None


# -- what was decided differently ---------------------------------------------------------
def decision_causes(
    paper: DecisionRecord | None, backtest: DecisionRecord | None
) -> tuple[str, ...]:
    """Why one side traded at a candle and the other did not (or not on the same side)."""
    if paper is None:
        return (cause(Cause.NO_DECISION, "paper recorded no decision on this candle"),)
    if backtest is None:
        return (
            cause(
                Cause.NO_DECISION,
                "the backtest did not decide this candle (not among its symbols, or no "
                "features yet)",
            ),
        )
    found = [
        _model_cause(paper, backtest),
        _votes_cause(paper.votes, backtest.votes),
        _input_cause(paper, backtest),
        _risk_cause(paper, backtest),
    ]
    causes = tuple(c for c in found if c is not None)
    if causes:
        return causes
    if paper.action is not backtest.action:
        detail = (
            f"paper {paper.action.value}, the backtest {backtest.action.value}, from the same "
            "model and votes"
        )
        return (cause(Cause.CONSENSUS, detail),)
    return (cause(Cause.UNEXPLAINED, f"both decided {paper.action.value} alike"),)


def _model_cause(paper: DecisionRecord, backtest: DecisionRecord) -> str | None:
    if (paper.model_name, paper.model_version) == (backtest.model_name, backtest.model_version):
        return None
    return cause(
        Cause.MODEL_VERSION,
        f"paper {paper.model_name} v{paper.model_version} ({paper.action.value}), "
        f"the backtest {backtest.model_name} v{backtest.model_version} "
        f"({backtest.action.value})",
    )


def _votes_cause(paper: Sequence[Vote], backtest: Sequence[Vote]) -> str | None:
    """The agents whose answers differ (action or confidence; the reason text is not
    compared): an LLM agent asked again need not answer the same."""
    mine = {v.agent: v for v in paper}
    theirs = {v.agent: v for v in backtest}
    differ = [
        f"{agent}: paper {_vote(mine.get(agent))}, the backtest {_vote(theirs.get(agent))}"
        for agent in sorted(mine.keys() | theirs.keys())
        if _answer(mine.get(agent)) != _answer(theirs.get(agent))
    ]
    return cause(Cause.AGENT_VOTES, "; ".join(differ)) if differ else None


def _answer(vote: Vote | None) -> tuple[str, float] | None:
    return None if vote is None else (vote.action.value, round(vote.confidence, 6))


def _vote(vote: Vote | None) -> str:
    return "no vote" if vote is None else f"{vote.action.value} {vote.confidence:.2f}"


def _input_cause(paper: DecisionRecord, backtest: DecisionRecord) -> str | None:
    """The same model gave another probability: it saw other features."""
    same_model = (paper.model_name, paper.model_version) == (
        backtest.model_name,
        backtest.model_version,
    )
    if not same_model or round(paper.probability, 9) == round(backtest.probability, 9):
        return None
    detail = (
        f"same model, probability {paper.probability:.3f} on paper vs {backtest.probability:.3f}"
    )
    if bool(paper.order_book_features) != bool(backtest.order_book_features):
        who = "paper" if paper.order_book_features else "the backtest"
        detail += f"; only {who} had order-book features"
    if paper.price != backtest.price:
        detail += f"; the candle closed at {_num(paper.price)} vs {_num(backtest.price)}"
    return cause(Cause.MODEL_INPUT, detail)


def _risk_cause(paper: DecisionRecord, backtest: DecisionRecord) -> str | None:
    """The same action, and one side's risk gate said no."""
    if paper.action is not backtest.action or paper.risk_approved == backtest.risk_approved:
        return None
    who, denied = ("paper", paper) if paper.risk_approved is False else ("the backtest", backtest)
    codes = ", ".join(dict.fromkeys(d.code.value for d in denied.denials)) or "no code"
    return cause(Cause.RISK_STATE, f"{who}'s risk gate denied the {denied.action.value} ({codes})")


def _num(value: Decimal) -> str:
    return f"{value.normalize():f}"


# -- the use case -------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunRecords:
    """What one account recorded in a window: its decisions on the window's candles, the
    orders of those decisions, and their fills before the window's end."""

    decisions: tuple[DecisionRecord, ...]
    orders: tuple[Order, ...]
    fills: tuple[Fill, ...]

    def trade_keys(self) -> set[Key]:
        by_id = {d.decision_id: d for d in self.decisions}
        return {
            (d.symbol, d.candle_time)
            for o in self.orders
            if o.decision_id is not None and (d := by_id.get(o.decision_id)) is not None
        }


def recorded(
    ledger: TradingLedger, account: str, window: BacktestWindow, timeframe: str
) -> RunRecords:
    """What `account` recorded in `window` (any ledger: the SQL one, a scratch one)."""
    decisions = tuple(
        d
        for d in ledger.orders.decisions(account, since=window.start)
        if d.candle_time < window.end and d.timeframe == timeframe
    )
    ids = {d.decision_id for d in decisions}
    orders = tuple(o for o in ledger.orders.find(account) if o.decision_id in ids)
    coids = {o.client_order_id for o in orders}
    fills = tuple(
        f
        for f in ledger.fills.history(account, after=window.start)
        if f.client_order_id in coids and f.filled_at < window.end
    )
    return RunRecords(decisions, orders, fills)


@dataclass(frozen=True, slots=True)
class ModelUse:
    """One model version paper decided with in the window."""

    name: str
    version: str
    decisions: int
    first: datetime  # candle time of its first decision in the window
    last: datetime


def models_used(decisions: Iterable[DecisionRecord]) -> tuple[ModelUse, ...]:
    """The versions decided with, in the order they were first used."""
    seen: dict[tuple[str, str], list[datetime]] = {}
    for d in sorted(decisions, key=lambda d: (d.candle_time, d.symbol)):
        seen.setdefault((d.model_name, d.model_version), []).append(d.candle_time)
    return tuple(ModelUse(n, v, len(ts), ts[0], ts[-1]) for (n, v), ts in seen.items())


def choose_version(used: Sequence[ModelUse], champion: str | None) -> str | None:
    """The version a re-run uses: the one paper used; of several, the champion when it is one
    of them, else the newest paper used (the latest to decide). None: paper decided nothing."""
    if not used:
        return None
    versions = {m.version for m in used}
    if len(versions) > 1 and champion in versions:
        return champion
    return max(used, key=lambda m: m.last).version


@dataclass(frozen=True)
class DiffReport:
    account: str  # the paper (or live) account compared
    backtest_account: str  # the re-run's own account (never stored)
    window: BacktestWindow
    paper_models: tuple[ModelUse, ...]
    backtest_model: tuple[str, str]  # (name, version)
    paper_trades: int
    backtest_trades: int
    identical: int  # trades both made alike
    diffs: tuple[TradeDiff, ...]
    notes: tuple[str, ...]  # what the reader should know before reading the rows

    def by_kind(self) -> Mapping[DiffKind, int]:
        counts = Counter(d.kind for d in self.diffs)
        return {k: counts[k] for k in DiffKind if counts[k]}


def backtest_diff(
    ledger: TradingLedger,
    read: CandleReader,
    parts: BacktestParts,
    account: str,
    window: BacktestWindow,
    paper: RunRecords | None = None,
) -> DiffReport:
    """Re-run `window` on `parts` (fresh, built without a decision sink: the decisions are read
    back from its scratch ledger; nothing is stored) and compare it with what `account`
    recorded in the ledger (`paper`, when the caller has read it already)."""
    cfg = parts.cfg
    if paper is None:
        paper = recorded(ledger, account, window, cfg.timeframe)
    run_backtest(read, parts, window, cfg.account, window.end)
    ours = recorded(parts.scratch, cfg.account, window, cfg.timeframe)
    diffs = diff_runs(*_records(paper), *_records(ours), cfg.timeframe)
    both = paper.trade_keys() & ours.trade_keys()
    differing = {(d.symbol, d.candle_time) for d in diffs} & both
    used = models_used(paper.decisions)
    model = (parts.model.name, parts.model.version)
    earlier = ledger.fills.count(account, until=window.start)
    return DiffReport(
        account=account,
        backtest_account=cfg.account,
        window=window,
        paper_models=used,
        backtest_model=model,
        paper_trades=len(paper.trade_keys()),
        backtest_trades=len(ours.trade_keys()),
        identical=len(both) - len(differing),
        diffs=tuple(diffs),
        notes=diff_notes(paper, used, model, earlier, parts),
    )


def _records(r: RunRecords) -> tuple[Sequence[DecisionRecord], Sequence[Order], Sequence[Fill]]:
    return r.decisions, r.orders, r.fills


def diff_notes(
    paper: RunRecords,
    used: Sequence[ModelUse],
    model: tuple[str, str],
    earlier_fills: int,
    parts: BacktestParts,
) -> tuple[str, ...]:
    notes = []
    if not paper.decisions:
        notes.append("paper recorded no decision in the window: every backtest trade is extra")
    if len(used) > 1:
        listed = ", ".join(
            f"{m.name} v{m.version} ({m.decisions} decisions, {m.first:%F %H:%M}.."
            f"{m.last:%F %H:%M})"
            for m in used
        )
        notes.append(
            f"paper decided with {len(used)} model versions in the window: {listed}; the "
            f"backtest used v{model[1]} throughout (cause 'model version' where it mattered)"
        )
    elif used and (used[0].name, used[0].version) != model:
        notes.append(
            f"paper decided with {used[0].name} v{used[0].version}, the backtest with "
            f"{model[0]} v{model[1]}"
        )
    if earlier_fills:
        notes.append(
            f"paper had {earlier_fills} fill(s) before the window: it may have entered it "
            f"with positions and cash the backtest, starting flat with "
            f"{_num(parts.starting_cash)} cash, did not have (expect 'risk state' and "
            "'position held' early on)"
        )
    others = sorted({d.symbol for d in paper.decisions} - set(parts.cfg.symbols))
    if others:
        notes.append(f"paper decided {', '.join(others)}, which the backtest does not trade")
    return tuple(notes)
