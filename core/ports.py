"""What the use cases need from the outside world, as Protocols (no adapter imports here).

infra/ implements the exchange, market-data, ledger and alert ports; registry/ the model ports.
services/ is written against these alone, so a use case can be tested with any implementation.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from core.agents.calls import AgentCall, AgentUsage, ChatReply
from core.alerts import Alert, AlertState, Notice, Severity
from core.auth import ApiToken, StoredToken
from core.browse import BrowseQueries
from core.candles.bar import Bar
from core.decision import Decision
from core.events import Event, EventKind
from core.holds import HoldDecider, HoldRows
from core.orders import Fill, Order, OrderChange, OrderEvent, OrderStatus
from core.portfolio import Position
from core.records import (
    AccountRecords,
    BacktestRun,
    CandleGapRecord,
    ControlState,
    DecisionRecord,
    DriftCheck,
    HealthOverview,
    KillSwitchState,
    SafetyEvent,
    SafetyOverview,
    SafetyRequest,
    TradingCounts,
)
from core.risk.breaker import TradeResult
from core.risk.state import SafetyFlags, StateChange
from core.types import ClientOrderId, DecisionId, Side, Symbol, as_price, as_quantity
from core.webhooks import Delivery, DeliveryStatus, Outcome, Outgoing, Subscription

if TYPE_CHECKING:  # sklearn, pandas and pandera behind them: only the types are needed here
    # (the decision writer process loads this module and would be about 100 MB larger)
    import pandas as pd

    from core.candles.gaps import Gap
    from core.market.order_book import OrderBookSnapshot, PublicTrade
    from core.models.promotion import PromotionEvidence, PromotionPolicy

# -- exchange ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BrokerOrder:
    """An order as the broker sees it."""

    client_order_id: ClientOrderId
    exchange_order_id: str | None
    symbol: Symbol
    side: Side
    status: OrderStatus
    quantity: Decimal
    filled: Decimal
    average_price: Decimal | None = None
    limit_price: Decimal | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "quantity", as_quantity(self.quantity))
        object.__setattr__(self, "filled", as_quantity(self.filled))
        for name in ("average_price", "limit_price"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, as_price(getattr(self, name)))


@dataclass(frozen=True, slots=True)
class Balance:
    asset: str
    free: Decimal
    used: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.used


class Broker(Protocol):
    """One interface for every venue. Never-twice is the caller's lookup: submit_order asks
    `get_order` for the client order id before it calls `place`, so a send whose answer was lost
    is found, not repeated. `place` itself only sends. Errors are core.errors' exchange tree."""

    name: str

    def place(self, order: Order) -> BrokerOrder: ...

    def cancel(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder: ...

    def get_order(self, client_order_id: ClientOrderId, symbol: Symbol) -> BrokerOrder | None: ...

    def open_orders(self, symbol: Symbol | None = None) -> Sequence[BrokerOrder]: ...

    def fills(self, symbol: Symbol, since: datetime | None = None) -> Sequence[Fill]: ...

    def balances(self) -> dict[str, Balance]: ...

    def positions(self, symbols: Sequence[Symbol]) -> dict[Symbol, Decimal]: ...


class MarketReplay(Protocol):
    """A simulated market: working orders of `symbol` match against one more candle."""

    def on_candle(self, symbol: Symbol, bar: Bar) -> list[Fill]: ...

    def working(self, symbol: Symbol) -> bool:
        """Whether any order of `symbol` may still fill: if not, a candle changes nothing."""
        ...


class SimulatedExchange(Broker, MarketReplay, Protocol):
    """The only venue a replay may trade on: it fills on history, never on a real account."""


class CandleSource(Protocol):
    """Closed candles of one venue, in validated batches (pages) oldest first, so that each can
    be stored before the next is asked for. `exchange` is the ledger's key for them."""

    exchange: str

    def describe(self, symbol: str, timeframe: str) -> str: ...

    def fetch(self, symbol: str, timeframe: str, since: datetime) -> Iterator[pd.DataFrame]: ...


class MicrostructureSource(Protocol):
    """Order-book snapshots and public trades of one venue; `exchange` is the ledger's key."""

    exchange: str

    def order_book(self, symbol: str, depth: int) -> OrderBookSnapshot: ...

    def trades(self, symbol: str, since: datetime | None) -> list[PublicTrade]: ...


class Notifier(Protocol):
    def send(self, title: str, body: str, *, severity: Severity = Severity.WARNING) -> bool:
        """Tell the operator; `severity` picks the notifiers (TRADEFLOW_ALERT_ROUTES)."""
        ...


# -- LLM agents -------------------------------------------------------------------------------


class ChatModel(Protocol):
    """One OpenAI-compatible chat model. `ask` never raises for what a provider or the network
    can do (a timeout, 429, 5xx, a refusal, a cut-off answer): it returns a ChatReply whose
    outcome says so, having retried what may be retried while `deadline` allows."""

    model: str  # the model id sent to the provider
    endpoint: str  # the base URL's host, for the audit row

    def ask(self, system: str, user: str, deadline: float, tags: Mapping[str, str]) -> ChatReply:
        """`deadline` is a time.monotonic() instant; `tags` (decision id, agent, round) go on
        the call's trace."""
        ...


class AgentCallLog(Protocol):
    """The audit ledger's view for the panel: what today cost so far, and the replay cache."""

    def spent_since(self, since: datetime) -> tuple[int, Decimal]:
        """Tokens and cost of every call made at or after `since`."""
        ...

    def cached(self, model: str, prompt_hash: str) -> AgentCall | None:
        """The newest answered call for this model and rendered prompt, if any."""
        ...

    def for_decision(self, decision_id: str) -> list[AgentCall]:
        """Every call recorded for a decision (a strict replay answers from them)."""
        ...


class AgentCallStore(AgentCallLog, Protocol):
    def usage(self, account: str, since: datetime | None = None) -> AgentUsage: ...


# -- models -----------------------------------------------------------------------------------


class Model(Protocol):
    """A served model: P(up beyond fees) for each row of features it was trained on."""

    name: str
    version: str
    feature_set_version: str
    tradeable: bool  # its out-of-fold edge was significant; else the policy abstains
    context: int  # rows of a symbol's past a prediction reads (sequence members)
    quality: Mapping[str, float]  # how it did out of sample (empty when unknown)

    def predict(self, features: pd.DataFrame) -> np.ndarray: ...

    def edge(self, probabilities: np.ndarray) -> np.ndarray:
        """The expected net log return of entering, for each probability."""
        ...


class ChampionSource(Protocol):
    def get(self) -> Model: ...


@dataclass(frozen=True, slots=True)
class Registered:
    name: str
    version: str
    run_id: str


@dataclass(frozen=True, slots=True)
class Promotion:
    promoted: bool
    champion_version: str
    reason: str


class ModelRegistry(Protocol):
    def register(
        self,
        model: Any,
        name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        example: pd.DataFrame,
    ) -> Registered: ...

    def promote_if_better(
        self, registered: Registered, evidence: PromotionEvidence, policy: PromotionPolicy
    ) -> Promotion:
        """`challenger` moves to the new version; `champion` only if it passes the gates and
        beats the champion on rows neither trained on."""
        ...

    def version_tags(self, name: str, version: str) -> Mapping[str, str]:
        """A version's tags over its training run's."""
        ...

    def run_metrics(self, name: str, version: str) -> Mapping[str, float]:
        """The metrics of the run that trained a version."""
        ...

    def log_run(
        self,
        experiment: str,
        run_name: str,
        params: Mapping[str, Any],
        metrics: Mapping[str, float],
        tags: Mapping[str, str],
        files: Sequence[Path],
    ) -> str:
        """A tracked run (an evaluation, say) with files as artifacts; returns its id."""
        ...

    def attach(
        self, name: str, version: str, folder: str, files: Sequence[Path], tags: Mapping[str, str]
    ) -> str:
        """Files (a backtest's report) kept beside a version's training run; returns its id."""
        ...


# -- the ledger -------------------------------------------------------------------------------


class CandleStore(Protocol):
    def upsert(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        frame: pd.DataFrame,
        gaps: Sequence[Gap] = (),
        gap_policy: str = "keep",
        source: str = "",
        now: datetime | None = None,
    ) -> int: ...

    def gaps(self, exchange: str, symbol: str, timeframe: str) -> list[CandleGapRecord]: ...

    def last_time(self, exchange: str, symbol: str, timeframe: str) -> datetime | None: ...

    def count(self, exchange: str, symbol: str, timeframe: str) -> int: ...

    def load(
        self,
        exchange: str,
        symbol: str,
        timeframe: str,
        *,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> pd.DataFrame: ...

    def last_close(
        self, exchange: str, symbol: str, timeframe: str, until: datetime | None = None
    ) -> Decimal | None: ...


class AccountStore(Protocol):
    def ensure(
        self,
        account: str,
        starting_cash: Decimal,
        now: datetime,
        holdings: Mapping[str, Decimal] | None = None,
    ) -> bool: ...

    def opened_at(self, account: str) -> datetime | None: ...

    def names(self) -> list[str]: ...

    def holdings(self, account: str) -> dict[str, Decimal]: ...

    def cash(self, account: str) -> Decimal: ...

    def starting_cash(self, account: str) -> Decimal: ...


class OrderStore(Protocol):
    def record_decision(self, decision: Decision, broker: str) -> bool: ...

    def record_holds(self, rows: HoldRows, decide: HoldDecider, broker: str) -> None:
        """Record the holds `rows` (core.holds) as `decide` decides them, but for any already
        recorded; a store may decide them later, elsewhere, as long as `hold_actions` waits."""
        ...

    def hold_actions(self) -> Counter[str]:
        """How many holds recorded since last asked took each action (HOLD, NO_TRADE): all of
        those handed to `record_holds`, decided by then."""
        ...

    def decisions(self, account: str, since: datetime | None = None) -> list[DecisionRecord]: ...

    def last_decided(self, account: str, symbol: str, timeframe: str) -> datetime | None: ...

    def decision(self, decision_id: str) -> DecisionRecord | None: ...

    def recent_decisions(
        self, account: str, symbol: str, timeframe: str, before: datetime, limit: int
    ) -> list[DecisionRecord]:
        """The newest `limit` decisions of a symbol on candles opening before `before`, oldest
        first."""
        ...

    def decided_ids(self, account: str, timeframe: str, since: datetime) -> set[DecisionId]: ...

    def get(self, client_order_id: ClientOrderId) -> Order | None: ...

    def find(
        self, account: str, status: OrderStatus | None = None, symbol: str | None = None
    ) -> list[Order]: ...

    def open(self, account: str, symbol: str | None = None) -> list[Order]: ...

    def insert_many(self, orders: Sequence[Order], account: str, broker: str) -> set[str]: ...

    def apply(self, changes: Sequence[OrderChange], now: datetime) -> list[Order]: ...

    def submit_attempts(self, client_order_id: ClientOrderId) -> int: ...

    def claim_for_sending(self, client_order_id: ClientOrderId, now: datetime) -> bool: ...

    def cancel_unsent(self, client_order_id: ClientOrderId, now: datetime, error: str) -> bool: ...

    def mark_submitted(self, client_order_id: ClientOrderId, now: datetime) -> Order | None: ...

    def transition(
        self,
        client_order_id: ClientOrderId,
        event: OrderEvent,
        now: datetime,
        error: str | None = None,
    ) -> Order: ...


class FillStore(Protocol):
    def record(self, account: str, fill: Fill) -> bool: ...

    def history(
        self, account: str, after: datetime | None = None, until: datetime | None = None
    ) -> list[Fill]: ...

    def count(self, account: str, until: datetime | None = None) -> int: ...

    def positions(self, account: str) -> dict[Symbol, Position]: ...

    def closed_trades(
        self, account: str, until: datetime | None = None, limit: int = 500
    ) -> list[TradeResult]: ...


class SafetyStore(Protocol):
    def control(self, name: str) -> ControlState | None: ...

    def set_control(
        self,
        name: str,
        active: bool,
        reason: str | None,
        now: datetime,
        until: datetime | None = None,
        event: str | None = None,
        detail: Mapping[str, object] | None = None,
    ) -> StateChange | None: ...

    def record_event(
        self, control: str, step: str, detail: Mapping[str, object], now: datetime
    ) -> None: ...

    def events(self, control: str | None = None, limit: int = 100) -> list[SafetyEvent]: ...

    def flags(self, now: datetime | None = None) -> SafetyFlags: ...

    def kill_switch(self) -> KillSwitchState: ...


class SafetyRequestStore(Protocol):
    """Signed safety requests: a signature is used once; every answer is kept or counted."""

    def set_kill_switch(
        self,
        active: bool,
        reason: str,
        signature: str,
        now: datetime,
        client: str | None,
        request_timestamp: int,
    ) -> KillSwitchState: ...

    def reset_circuit_breaker(
        self,
        reason: str,
        signature: str,
        now: datetime,
        client: str | None,
        request_timestamp: int,
    ) -> bool: ...

    def record_refusal(
        self,
        action: str | None,
        reason: str | None,
        rejection: str,
        now: datetime,
        client: str | None,
        request_timestamp: int | None,
        detail_budget: int = 10,
    ) -> int: ...

    def count_refusals(self, client: str | None, since: datetime) -> int: ...

    def prune_refusals(self, before: datetime) -> int: ...

    def recent(self, limit: int = 20, accepted: bool | None = None) -> list[SafetyRequest]: ...


class MicrostructureStore(Protocol):
    def record_order_book(self, snapshot: OrderBookSnapshot) -> bool: ...

    def order_books(
        self, exchange: str, symbol: str, since: datetime, until: datetime
    ) -> list[OrderBookSnapshot]: ...

    def record_trades(self, trades: Sequence[PublicTrade]) -> int: ...

    def last_trade_time(self, exchange: str, symbol: str) -> datetime | None: ...

    def count_trades(self, exchange: str, symbol: str) -> int: ...


class OverviewQueries(Protocol):
    def safety(self, now: datetime, steps: int = 10, accepted: int = 10) -> SafetyOverview: ...

    def health(self, now: datetime, account: str) -> HealthOverview: ...

    def trading_counts(self, now: datetime, account: str) -> TradingCounts: ...


class TradingLedger(Protocol):
    """The stores a decision run reads and writes: what a backtest keeps in memory."""

    candles: CandleStore
    accounts: AccountStore
    orders: OrderStore
    fills: FillStore
    safety: SafetyStore
    microstructure: MicrostructureStore


class DecisionSink(Protocol):
    """Where a long run's decisions go as they are made, in chunks."""

    def add(self, decision: Decision, broker: str) -> None: ...

    def add_holds(self, rows: HoldRows, decide: HoldDecider, broker: str) -> None: ...

    def hold_actions(self) -> Counter[str]:
        """As OrderStore.hold_actions: every hold added by then decided and counted."""
        ...

    def flush(self) -> None: ...

    def close(self) -> None:
        """Flush, and let go of what writes (a writer process): nothing is written after."""
        ...


class BacktestStore(Protocol):
    def save(self, run: BacktestRun, records: AccountRecords) -> None: ...

    def decision_sink(self, account: str, in_process: bool = False) -> DecisionSink: ...

    def discard(self, account: str) -> int:
        """Remove what an unfinished run wrote under its account; returns the rows removed."""
        ...

    def get(self, run_id: str) -> BacktestRun | None: ...

    def recent(self, limit: int = 20) -> list[BacktestRun]: ...


class DriftCheckStore(Protocol):
    """Drift checks of the champion, newest first; the debounce of drift-triggered
    retraining reads `last_triggered`."""

    def save(self, check: DriftCheck) -> int:
        """Store one check; returns the id the ledger gave it."""
        ...

    def set_flow_run(self, check_id: int, flow_run_id: str) -> None:
        """The retraining run the stored check `check_id` started (idempotent)."""
        ...

    def latest(self, model_name: str | None = None) -> DriftCheck | None: ...

    def recent(self, model_name: str | None = None, limit: int = 20) -> list[DriftCheck]: ...

    def last_triggered(self, model_name: str) -> datetime | None:
        """When a check of the model (any version) last triggered retraining."""
        ...


class EventLog(Protocol):
    """The outbox of what happened (core.events), read in id order by other processes."""

    def publish(
        self,
        kind: EventKind,
        payload: Mapping[str, Any],
        now: datetime,
        correlation_id: str | None = None,
    ) -> int: ...

    def after(
        self, event_id: int, limit: int = 500, kinds: Sequence[EventKind] | None = None
    ) -> list[Event]: ...

    def last_id(self) -> int: ...

    def for_correlation(self, correlation_id: str) -> list[Event]: ...


class TokenStore(Protocol):
    """API tokens, with the SHA-256 of each secret (never the secret)."""

    def create(self, token: ApiToken, secret_hash: str) -> None: ...

    def get(self, token_id: str) -> StoredToken | None: ...

    def list(self) -> list[ApiToken]:
        """Every token, revoked and expired ones too, oldest first."""
        ...

    def revoke(self, token_id: str, now: datetime) -> ApiToken:
        """Revoke (idempotent: the first time is kept); core.auth.UnknownToken if none."""
        ...


class WebhookStore(Protocol):
    """Subscriptions, their deliveries and the dead-letter queue (infra/ledger/webhooks.py)."""

    def subscribe(
        self, url: str, events: Sequence[str], secret: str, description: str, now: datetime
    ) -> Subscription: ...

    def subscriptions(self) -> list[Subscription]: ...

    def subscription(self, subscription_id: int) -> Subscription | None: ...

    def unsubscribe(self, subscription_id: int) -> bool: ...

    def cursor(self) -> int | None:
        """The last outbox event fanned out (None: no subscription was ever made)."""
        ...

    def fan_out(self, events: Sequence[Event], now: datetime, position: int | None = None) -> int:
        """One pending delivery per event and matching subscription (idempotent); the cursor
        moved to `position` (default: past the events)."""
        ...

    def claim_due(self, now: datetime, limit: int, lease: timedelta) -> list[Outgoing]:
        """Due deliveries claimed for one attempt; never one another dispatcher holds."""
        ...

    def record(self, outgoing: Outgoing, outcome: Outcome, now: datetime) -> bool: ...

    def record_all(self, results: Sequence[tuple[Outgoing, Outcome, datetime]]) -> set[int]: ...

    def deliveries(
        self, subscription_id: int, status: DeliveryStatus | None = None, limit: int = 100
    ) -> list[Delivery]: ...

    def delivery(self, delivery_id: int) -> Delivery | None: ...

    def replay(self, subscription_id: int, now: datetime, delivery_id: int | None = None) -> int:
        """Dead deliveries (or the one named, dead or delivered) back to pending; how many."""
        ...


class WebhookSender(Protocol):
    """One HTTP POST of a delivery: the receiver's status code, whatever it is; no answer
    (refused, reset, timed out) raises core.webhooks.SendFailed (SendTimeout)."""

    def send(self, url: str, body: bytes, headers: Mapping[str, str], timeout: float) -> int: ...


class AlertStateStore(Protocol):
    """The alerts' debounce, shared by every process (core.alerts decides)."""

    def occur(self, alert: Alert, now: datetime, window: timedelta) -> Notice | None: ...

    def get(self, key: str) -> AlertState | None: ...

    def flush(self, now: datetime, window: timedelta) -> list[Notice]: ...


class ScratchLedger(TradingLedger, Protocol):
    """A trading ledger kept for one run (a backtest's, in memory) that hands over what an
    account recorded, to be stored in the real ledger in one go."""

    def records(self, account: str) -> AccountRecords: ...

    def close(self) -> None:
        """Let go of what writes on the run's behalf (its decision sink's writer)."""
        ...


class Ledger(TradingLedger, Protocol):
    """The whole ledger: trading, plus signed safety requests, backtests, drift checks and the
    read models."""

    requests: SafetyRequestStore
    overview: OverviewQueries
    backtests: BacktestStore
    drift: DriftCheckStore
    agent_calls: AgentCallStore
    events: EventLog
    webhooks: WebhookStore
    alerts: AlertStateStore
    browse: BrowseQueries
    tokens: TokenStore
