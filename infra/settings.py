"""All configuration, read once at the edge (CLI, flow entry, API start) and passed inward."""

from __future__ import annotations

import hashlib
import os
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from core.candles.gaps import GapPolicy
from core.candles.timeframe import timeframe_delta

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA_DIR = Path(__file__).resolve().parent / "sample_data"

# Prefect and MLflow phone home unless told not to; this system runs offline by default.
OFFLINE_ENV = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
}


def apply_offline_env(var_dir: Path) -> None:
    """Set the offline variables and Prefect's home under var/, unless the user set them."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(var_dir / "prefect"))
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="TRADEFLOW_", env_file=".env", extra="ignore", frozen=True
    )

    var_dir: Path = PROJECT_ROOT / "var"
    database_url: str | None = None  # default: SQLite file under var_dir
    mlflow_tracking_uri: str | None = None  # default: SQLite store under var_dir

    # Market data
    source: Literal["files", "ccxt"] = "files"
    data_dir: Path = SAMPLE_DATA_DIR
    exchange: str = "binance"
    # Comma-separated in the environment: TRADEFLOW_SYMBOLS=BTC/USDT,ETH/USDT
    symbols: Annotated[tuple[str, ...], NoDecode] = ("BTC/USDT", "ETH/USDT")
    timeframe: str = "1h"  # the one the models train and decide on
    # Ingested as well (comma-separated); the decision timeframe is always included.
    extra_timeframes: Annotated[tuple[str, ...], NoDecode] = ()
    # Cross-asset features are measured against this symbol; it must be one of `symbols`.
    reference_symbol: str = "BTC/USDT"
    ccxt_since: str = "2024-01-01T00:00:00Z"  # first candle asked for when nothing is stored
    gap_policy: GapPolicy = GapPolicy.KEEP  # keep | ffill | reject
    # Live (ccxt) only: top-N order-book levels and recent public trades stored at each ingest;
    # 0 turns both off.
    order_book_depth: int = Field(20, ge=0, le=5000)

    # Training
    model_name: str = "tradeflow-direction"
    label_horizon: int = Field(4, ge=1)
    fee_threshold: float = Field(0.002, ge=0)  # log return to beat (fees + slippage round trip)
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)
    test_fraction: float = Field(0.15, gt=0, lt=0.5)
    seed: int = 42

    # Decisions
    account: str = "paper"
    replay_candles: int = Field(240, ge=1)  # the most recent window `make run` replays
    catch_up_candles: int = Field(24, ge=1)  # live: the most closed candles one run decides
    # Live: a candle decided longer than this after it closed trades nothing (STALE_CANDLE).
    # Default: one timeframe + 5 minutes.
    max_candle_age_s: int | None = Field(None, ge=1)
    starting_cash: Decimal = Decimal("10000")
    order_notional: Decimal = Decimal("1000")
    consensus_threshold: float = 0.15
    model_weight: float = 0.5
    agent_weight: float = 0.25

    # Risk gate
    whitelist: Annotated[tuple[str, ...], NoDecode] = ("BTC/USDT", "ETH/USDT")
    max_order_notional: Decimal = Decimal("1500")
    max_position_notional: Decimal = Decimal("3000")
    max_total_exposure: Decimal = Decimal("5000")
    max_daily_loss: Decimal = Decimal("300")

    # Broker: paper (the simulated exchange, its book under var/), dummy (accepts, never
    # fills) or ccxt (the real exchange; needs API keys).
    broker: Literal["paper", "dummy", "ccxt"] = "paper"
    slippage_bps: Decimal = Decimal("5")
    fee_rate: Decimal = Decimal("0.001")
    paper_liquidity: Decimal | None = None  # fraction of a candle's volume one order may take
    paper_latency_candles: int = Field(0, ge=0)
    paper_reject_rate: float = Field(0.0, ge=0, le=1)
    exchange_api_key: SecretStr | None = None
    exchange_api_secret: SecretStr | None = None

    # Circuit breaker: any threshold crossed halts trading for the cooldown.
    breaker_daily_loss_pct: Decimal = Decimal("0.05")
    breaker_max_drawdown_pct: Decimal = Decimal("0.15")
    breaker_consecutive_losses: int = Field(6, ge=1)
    breaker_min_win_rate: float = Field(0.25, ge=0, le=1)
    breaker_win_rate_window: int = Field(20, ge=1)
    breaker_min_sharpe: float = -0.5
    breaker_sharpe_window: int = Field(30, ge=2)
    breaker_cooldown_hours: float = Field(24, gt=0)

    # Safety
    close_positions_on_kill: bool = True  # kill switch: close every position (else freeze)
    alert_urls: Annotated[tuple[str, ...], NoDecode] = ()  # apprise URLs, comma-separated
    safety_rate_limit: int = Field(10, ge=1)  # rejected safety requests per client per minute

    # Safety API. No default secret: the API refuses to start without one.
    kill_switch_secret: SecretStr | None = None
    kill_switch_window_s: int = Field(30, ge=1)

    @field_validator("symbols", "whitelist", "extra_timeframes", "alert_urls", mode="before")
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(s.strip() for s in value.split(",") if s.strip())
        return value

    @model_validator(mode="after")
    def _reference_is_ingested(self) -> Settings:
        if self.reference_symbol not in self.symbols:
            raise ValueError(
                f"reference_symbol {self.reference_symbol} must be one of symbols "
                f"{list(self.symbols)}: cross-asset features need its candles"
            )
        return self

    @property
    def ingest_timeframes(self) -> tuple[str, ...]:
        return (self.timeframe, *(t for t in self.extra_timeframes if t != self.timeframe))

    @property
    def max_candle_age(self) -> timedelta:
        if self.max_candle_age_s is not None:
            return timedelta(seconds=self.max_candle_age_s)
        return timeframe_delta(self.timeframe) + timedelta(minutes=5)

    @property
    def ledger_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'ledger.db'}"

    @property
    def tracking_uri(self) -> str:
        """Models belong with the ledger whose candles trained them: a ledger other than the
        default gets its own MLflow store unless TRADEFLOW_MLFLOW_TRACKING_URI names one."""
        if self.mlflow_tracking_uri:
            return self.mlflow_tracking_uri
        if self.database_url is None:
            return f"sqlite:///{self.var_dir / 'mlflow.db'}"
        tag = hashlib.sha256(self.database_url.encode()).hexdigest()[:10]
        return f"sqlite:///{self.var_dir / f'mlflow-{tag}.db'}"

    @property
    def artifacts_dir(self) -> Path:
        return self.var_dir / "artifacts"


@lru_cache
def get_settings() -> Settings:
    return Settings()
