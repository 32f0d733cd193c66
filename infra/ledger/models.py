"""Ledger tables. Every change goes through an Alembic migration (infra/migrations)."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from infra.ledger.types import ExactDecimal, UtcDateTime

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class CandleRow(Base):
    __tablename__ = "candles"
    __table_args__ = (
        UniqueConstraint("exchange", "symbol", "timeframe", "open_time_ms", name="uq_candles_key"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(8))
    open_time_ms: Mapped[int] = mapped_column(BigInteger)
    open: Mapped[Decimal] = mapped_column(ExactDecimal)
    high: Mapped[Decimal] = mapped_column(ExactDecimal)
    low: Mapped[Decimal] = mapped_column(ExactDecimal)
    close: Mapped[Decimal] = mapped_column(ExactDecimal)
    volume: Mapped[Decimal] = mapped_column(ExactDecimal)
    # A synthetic candle inserted by the ffill gap policy; never a training label.
    is_filled: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class CandleGapRow(Base):
    """Candles missing from the timeframe grid, as found at ingestion, and the policy applied."""

    __tablename__ = "candle_gaps"
    __table_args__ = (
        UniqueConstraint(
            "exchange", "symbol", "timeframe", "first_missing_ms", name="uq_candle_gaps_key"
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(8))
    first_missing_ms: Mapped[int] = mapped_column(BigInteger)
    last_missing_ms: Mapped[int] = mapped_column(BigInteger)
    missing: Mapped[int] = mapped_column(Integer)
    policy: Mapped[str] = mapped_column(String(8))
    source: Mapped[str] = mapped_column(Text)
    detected_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OrderBookLevelRow(Base):
    """One level of one side of an order-book snapshot (top N levels, stored when live)."""

    __tablename__ = "order_book_levels"
    __table_args__ = (
        UniqueConstraint(
            "exchange", "symbol", "taken_at_ms", "side", "level", name="uq_order_book_levels_key"
        ),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    taken_at_ms: Mapped[int] = mapped_column(BigInteger)
    nonce: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    side: Mapped[str] = mapped_column(String(3))
    level: Mapped[int] = mapped_column(Integer)
    price: Mapped[Decimal] = mapped_column(ExactDecimal)
    amount: Mapped[Decimal] = mapped_column(ExactDecimal)


class PublicTradeRow(Base):
    """A public trade on the exchange (not ours), kept for microstructure features."""

    __tablename__ = "public_trades"
    __table_args__ = (
        UniqueConstraint("exchange", "symbol", "trade_id", name="uq_public_trades_key"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    exchange: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    trade_id: Mapped[str] = mapped_column(String(64))
    traded_at_ms: Mapped[int] = mapped_column(BigInteger, index=True)
    side: Mapped[str] = mapped_column(String(4))
    price: Mapped[Decimal] = mapped_column(ExactDecimal)
    amount: Mapped[Decimal] = mapped_column(ExactDecimal)


class AccountRow(Base):
    __tablename__ = "accounts"
    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    starting_cash: Mapped[Decimal] = mapped_column(ExactDecimal)
    cash: Mapped[Decimal] = mapped_column(ExactDecimal)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # When the system first started on this account (NULL for accounts older than the column).
    opened_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class DecisionRow(Base):
    __tablename__ = "decisions"
    __table_args__ = (
        Index("ix_decisions_account_candle", "account", "candle_time"),
        # Unique where set (migration 0014): most decisions propose no order, and indexing
        # their NULLs cost a tenth of each decision's insert.
        Index(
            "uq_decisions_client_order_id",
            "client_order_id",
            unique=True,
            sqlite_where=text("client_order_id IS NOT NULL"),
            postgresql_where=text("client_order_id IS NOT NULL"),
        ),
    )
    decision_id: Mapped[str] = mapped_column(String(128), primary_key=True)
    account: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))
    timeframe: Mapped[str] = mapped_column(String(8))
    candle_time: Mapped[datetime] = mapped_column(UtcDateTime)
    price: Mapped[Decimal] = mapped_column(ExactDecimal)
    feature_set_version: Mapped[str] = mapped_column(String(32))
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(32))
    probability: Mapped[float] = mapped_column(Float)
    votes: Mapped[list[dict[str, Any]]] = mapped_column(JSON)
    # The live order book's features at the candle close, when one was stored (else NULL).
    order_book_features: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    action: Mapped[str] = mapped_column(String(8))
    score: Mapped[float] = mapped_column(Float)
    consensus_reason: Mapped[str] = mapped_column(Text)
    risk_approved: Mapped[bool | None] = mapped_column(Boolean, nullable=True)
    risk_reasons: Mapped[list[str]] = mapped_column(JSON)
    client_order_id: Mapped[str | None] = mapped_column(String(64), nullable=True)
    decided_at: Mapped[datetime] = mapped_column(UtcDateTime)
    # How each input (the model, each agent) moved the consensus score, and the regime it
    # was weighed in (NULL for decisions older than the columns).
    contributions: Mapped[dict[str, float] | None] = mapped_column(JSON, nullable=True)
    regime: Mapped[str | None] = mapped_column(String(32), nullable=True)
    # What replaying the decision bit for bit needs: candle range, model version, risk state,
    # the decisions its brief cited, the panel (services.decide.step.provenance).
    provenance: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)


class AgentCallRow(Base):
    """One call of an LLM agent, answered or not: the audit trail and the replay cache."""

    __tablename__ = "agent_calls"
    __table_args__ = (
        UniqueConstraint("decision_id", "agent", "round", name="uq_agent_calls_turn"),
        Index("ix_agent_calls_cache", "model", "prompt_hash"),
        Index("ix_agent_calls_called_at", "called_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    decision_id: Mapped[str] = mapped_column(ForeignKey("decisions.decision_id"))
    agent: Mapped[str] = mapped_column(String(32))
    round: Mapped[int] = mapped_column(Integer)
    model: Mapped[str] = mapped_column(String(128))
    endpoint: Mapped[str] = mapped_column(String(255))
    template: Mapped[str] = mapped_column(String(128))
    template_version: Mapped[str] = mapped_column(String(64))
    prompt_hash: Mapped[str] = mapped_column(String(64))
    prompt: Mapped[str] = mapped_column(Text)
    response: Mapped[str] = mapped_column(Text)
    vote: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    outcome: Mapped[str] = mapped_column(String(16))
    error: Mapped[str] = mapped_column(Text)
    tokens_in: Mapped[int] = mapped_column(Integer)
    tokens_out: Mapped[int] = mapped_column(Integer)
    latency_ms: Mapped[float] = mapped_column(Float)
    cost: Mapped[Decimal] = mapped_column(ExactDecimal)
    finish_reason: Mapped[str] = mapped_column(String(32))
    called_at: Mapped[datetime] = mapped_column(UtcDateTime)


class OrderRow(Base):
    __tablename__ = "orders"
    # The API's orders list: an account's newest first, a page at a time (keyset pagination).
    __table_args__ = (
        Index("ix_orders_account_created", "account", "created_at", "client_order_id"),
    )
    client_order_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    # NULL for orders the safety layer places itself (kill switch closing a position).
    decision_id: Mapped[str | None] = mapped_column(
        ForeignKey("decisions.decision_id"), unique=True, nullable=True
    )
    origin: Mapped[str] = mapped_column(String(16), default="decision", server_default="decision")
    account: Mapped[str] = mapped_column(String(64))
    broker: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    order_type: Mapped[str] = mapped_column(String(16))
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal)
    limit_price: Mapped[Decimal | None] = mapped_column(ExactDecimal, nullable=True)
    filled_quantity: Mapped[Decimal] = mapped_column(ExactDecimal, default=Decimal(0))
    filled_cost: Mapped[Decimal] = mapped_column(ExactDecimal, default=Decimal(0))
    status: Mapped[str] = mapped_column(String(16), index=True)
    market_time: Mapped[datetime] = mapped_column(UtcDateTime)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)
    submit_attempts: Mapped[int] = mapped_column(Integer, default=0)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)


class FillRow(Base):
    __tablename__ = "fills"
    # The API's trades list, as the orders list.
    __table_args__ = (Index("ix_fills_account_filled", "account", "filled_at", "fill_id"),)
    fill_id: Mapped[str] = mapped_column(String(96), primary_key=True)
    client_order_id: Mapped[str] = mapped_column(ForeignKey("orders.client_order_id"), index=True)
    account: Mapped[str] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[str] = mapped_column(String(8))
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal)
    price: Mapped[Decimal] = mapped_column(ExactDecimal)
    fee: Mapped[Decimal] = mapped_column(ExactDecimal)
    realised_pnl: Mapped[Decimal] = mapped_column(ExactDecimal)
    filled_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    # The fee was taken in the base asset (else in the quote currency).
    fee_in_base: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())


class HoldingRow(Base):
    """What an exchange account held of each asset when the system first started on it: not
    ours to trade, and left out when positions are compared with the exchange."""

    __tablename__ = "account_holdings"
    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    asset: Mapped[str] = mapped_column(String(32), primary_key=True)
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal)
    recorded_at: Mapped[datetime] = mapped_column(UtcDateTime)


class PositionRow(Base):
    __tablename__ = "positions"
    account: Mapped[str] = mapped_column(String(64), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32), primary_key=True)
    quantity: Mapped[Decimal] = mapped_column(ExactDecimal)
    avg_price: Mapped[Decimal] = mapped_column(ExactDecimal)
    realised_pnl: Mapped[Decimal] = mapped_column(ExactDecimal)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class SafetyStateRow(Base):
    """Current state of each safety control (one row per control: 'kill_switch')."""

    __tablename__ = "safety_state"
    control: Mapped[str] = mapped_column(String(32), primary_key=True)
    active: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    changed_at: Mapped[datetime] = mapped_column(UtcDateTime)
    until: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)  # cooldown end


class SafetyEventRow(Base):
    """Every step a safety control takes (kill switch cancels and closes, breaker trips,
    trading-state changes, reconciliations), in order, with what it saw and did."""

    __tablename__ = "safety_events"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    control: Mapped[str] = mapped_column(String(32))
    step: Mapped[str] = mapped_column(String(64))
    detail: Mapped[dict[str, Any]] = mapped_column(JSON)


class KillSwitchEventRow(Base):
    """Signed safety requests: every accepted one, and refused ones up to a per-client budget
    per minute (beyond it they are only counted in RefusalCountRow)."""

    __tablename__ = "kill_switch_events"
    __table_args__ = (Index("ix_kill_switch_events_accepted_at", "accepted", "at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    at: Mapped[datetime] = mapped_column(UtcDateTime)
    action: Mapped[str | None] = mapped_column(String(16), nullable=True)
    accepted: Mapped[bool] = mapped_column(Boolean)
    reason: Mapped[str | None] = mapped_column(Text, nullable=True)
    rejection: Mapped[str | None] = mapped_column(Text, nullable=True)
    client: Mapped[str | None] = mapped_column(String(128), nullable=True)
    request_timestamp: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class UsedSignatureRow(Base):
    """Signatures already accepted: the primary key turns a replay into an integrity error."""

    __tablename__ = "used_signatures"
    signature: Mapped[str] = mapped_column(String(64), primary_key=True)
    used_at: Mapped[datetime] = mapped_column(UtcDateTime)


class RefusalCountRow(Base):
    """Refused safety requests per client per 10-second bucket: what the rate limit reads."""

    __tablename__ = "safety_refusal_counts"
    client: Mapped[str] = mapped_column(String(128), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True, index=True)
    refusals: Mapped[int] = mapped_column(Integer)


class RefusalTotalRow(Base):
    """Refused safety requests from everyone, per 10-second bucket ("10s") and per hour ("1h"):
    what the status shows, read from at most a few hundred rows however many clients flood."""

    __tablename__ = "safety_refusal_totals"
    granularity: Mapped[str] = mapped_column(String(4), primary_key=True)
    window_start: Mapped[datetime] = mapped_column(UtcDateTime, primary_key=True)
    refusals: Mapped[int] = mapped_column(Integer)


class BacktestRunRow(Base):
    """One backtest run; its decisions, orders and fills are stored under its own account."""

    __tablename__ = "backtest_runs"
    run_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    account: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)
    symbols: Mapped[list[str]] = mapped_column(JSON)
    timeframe: Mapped[str] = mapped_column(String(8))
    start: Mapped[datetime] = mapped_column(UtcDateTime)
    end: Mapped[datetime] = mapped_column(UtcDateTime)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(32))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    summary: Mapped[dict[str, Any]] = mapped_column(JSON)
    report_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    starting_cash: Mapped[Decimal] = mapped_column(ExactDecimal)
    cash: Mapped[Decimal] = mapped_column(ExactDecimal)


class DriftCheckRow(Base):
    """One drift check of the champion: the windows compared, what evidently found, and
    whether it triggered retraining (the debounce reads the newest triggered one)."""

    __tablename__ = "drift_checks"
    __table_args__ = (Index("ix_drift_checks_model_checked", "model_name", "checked_at"),)
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    checked_at: Mapped[datetime] = mapped_column(UtcDateTime)
    model_name: Mapped[str] = mapped_column(String(128))
    model_version: Mapped[str] = mapped_column(String(32))
    reference_start: Mapped[datetime] = mapped_column(UtcDateTime)
    reference_end: Mapped[datetime] = mapped_column(UtcDateTime)
    current_start: Mapped[datetime] = mapped_column(UtcDateTime)
    current_end: Mapped[datetime] = mapped_column(UtcDateTime)
    reference_rows: Mapped[int] = mapped_column(Integer)
    current_rows: Mapped[int] = mapped_column(Integer)
    # Statistics, not money: floats (ExactDecimal is for amounts that must add up exactly).
    share_drifted: Mapped[float] = mapped_column(Float)
    dataset_drift: Mapped[bool] = mapped_column(Boolean)
    prediction_drift: Mapped[bool] = mapped_column(Boolean)
    prediction_score: Mapped[float | None] = mapped_column(Float, nullable=True)
    drifted_columns: Mapped[list[str]] = mapped_column(JSON)
    matured_rows: Mapped[int] = mapped_column(Integer)
    auc_current: Mapped[float | None] = mapped_column(Float, nullable=True)
    auc_reference: Mapped[float | None] = mapped_column(Float, nullable=True)
    retrain_triggered: Mapped[bool] = mapped_column(Boolean)
    flow_run_id: Mapped[str | None] = mapped_column(Text, nullable=True)
    report_path: Mapped[str | None] = mapped_column(Text, nullable=True)
    target_rate_current: Mapped[float | None] = mapped_column(Float, nullable=True)
    target_rate_reference: Mapped[float | None] = mapped_column(Float, nullable=True)
    target_drift: Mapped[bool | None] = mapped_column(Boolean, nullable=True)


# -- operating the API (issue 14) -------------------------------------------------------------

# An id that autoincrements on both databases: SQLite only does so for INTEGER PRIMARY KEY.
EventId = BigInteger().with_variant(Integer, "sqlite")


class ApiTokenRow(Base):
    """A bearer token of the REST API: only the SHA-256 of its secret part is kept."""

    __tablename__ = "api_tokens"
    token_id: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), index=True)
    scopes: Mapped[list[str]] = mapped_column(JSON)
    secret_hash: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    expires_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    revoked_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    last_used_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class EventRow(Base):
    """The outbox: what happened (a decision, an order's change, a fill, a safety control),
    written in the same transaction as the change itself. The API's WebSocket and the webhook
    dispatcher read it in id order, from whichever process wrote it."""

    __tablename__ = "events"
    id: Mapped[int] = mapped_column(EventId, primary_key=True, autoincrement=True)
    channel: Mapped[str] = mapped_column(String(16))
    kind: Mapped[str] = mapped_column(String(48))
    correlation_id: Mapped[str | None] = mapped_column(String(128), nullable=True, index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime, index=True)


class CursorRow(Base):
    """How far a reader of the outbox has got (the webhook dispatcher's fan-out)."""

    __tablename__ = "event_cursors"
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookSubscriptionRow(Base):
    __tablename__ = "webhook_subscriptions"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    url: Mapped[str] = mapped_column(Text)
    # Event kinds ("order.filled") or channels ("orders"); ["*"] for all.
    events: Mapped[list[str]] = mapped_column(JSON)
    # The HMAC key deliveries are signed with: kept as is, since signing needs it.
    secret: Mapped[str] = mapped_column(String(128))
    description: Mapped[str] = mapped_column(String(255), default="")
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)


class WebhookDeliveryRow(Base):
    """One event to one subscription: pending until delivered, or dead (the dead-letter
    queue) after the last attempt, with its last error. Kept across restarts."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        UniqueConstraint("subscription_id", "event_id", name="uq_webhook_deliveries_event"),
        Index("ix_webhook_deliveries_due", "status", "next_attempt_at"),
    )
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    subscription_id: Mapped[int] = mapped_column(ForeignKey("webhook_subscriptions.id"))
    event_id: Mapped[int] = mapped_column(ForeignKey("events.id"))
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_error: Mapped[str | None] = mapped_column(Text, nullable=True)
    last_status_code: Mapped[int | None] = mapped_column(Integer, nullable=True)
    created_at: Mapped[datetime] = mapped_column(UtcDateTime)
    delivered_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)


class AlertStateRow(Base):
    """The debounce of one alert (by key): when it was last sent and how often it repeated
    since, so a repeating failure sends one alert, then a summary."""

    __tablename__ = "alert_states"
    key: Mapped[str] = mapped_column(String(128), primary_key=True)
    severity: Mapped[str] = mapped_column(String(16))
    first_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_seen_at: Mapped[datetime] = mapped_column(UtcDateTime)
    last_sent_at: Mapped[datetime | None] = mapped_column(UtcDateTime, nullable=True)
    suppressed: Mapped[int] = mapped_column(Integer, default=0)
    last_title: Mapped[str] = mapped_column(Text, default="")
    last_body: Mapped[str] = mapped_column(Text, default="")
