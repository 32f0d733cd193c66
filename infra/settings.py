"""All configuration, read once at the edge (CLI, flow entry, API start) and passed inward.

Every value is checked against what it may be (a negative notional, a fee of 50 % or a secret
of four characters are refused), an unknown TRADEFLOW_* variable is refused with the nearest
known name (a typo must not silently trade the defaults), and a refusal names each bad
variable, its value and what is allowed, one line each.
"""

from __future__ import annotations

import difflib
import hashlib
import os
from collections.abc import Collection, Mapping
from datetime import timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
)

from core.agents.brief import REGIMES
from core.candles.gaps import GapPolicy
from core.candles.timeframe import InvalidTimeframe, timeframe_delta
from core.consensus import INPUTS
from core.errors import ConfigurationError
from core.types import quote_of

PROJECT_ROOT = Path(__file__).resolve().parent.parent
SAMPLE_DATA_DIR = Path(__file__).resolve().parent / "sample_data"
PREFIX = "TRADEFLOW_"
# TRADEFLOW_* variables that are not settings: the tests' and benches' data location, the
# Dask scheduler the walk-forward flow fans out to (read by that flow's task runner, which is
# chosen before any task reads settings), and where secret files are read from.
SECRETS_DIR_VARIABLE = "TRADEFLOW_SECRETS_DIR"
NOT_SETTINGS = frozenset({"TRADEFLOW_SHARED_DATA", "TRADEFLOW_DASK_ADDRESS", SECRETS_DIR_VARIABLE})
# Where Docker and Compose mount a container's secrets, one file per secret.
DEFAULT_SECRETS_DIR = Path("/run/secrets")
MIN_SECRET_BYTES = 32

# Prefect and MLflow phone home unless told not to; this system runs offline by default.
OFFLINE_ENV = {
    "DO_NOT_TRACK": "true",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "60",
    "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    # tradeflow's own loggers (alerts, progress) go to each flow run's logs in the Prefect UI.
    "PREFECT_LOGGING_EXTRA_LOGGERS": "tradeflow",
}

Money = Annotated[Decimal, Field(gt=0, allow_inf_nan=False)]
Fraction = Annotated[Decimal, Field(gt=0, le=1, allow_inf_nan=False)]


def apply_offline_env(var_dir: Path) -> None:
    """Set the offline variables and Prefect's home under var/, unless the user set them."""
    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.setdefault("PREFECT_HOME", str(var_dir / "prefect"))
    os.environ.setdefault("GIT_PYTHON_REFRESH", "quiet")


# Alert severities, most urgent first (alert_routes' keys).
SEVERITIES = ("critical", "warning", "info")

MODEL_MEMBERS = ("xgboost", "lightgbm", "lstm", "transformer")


class SettingsError(ConfigurationError):
    """Settings the system refuses to run with; the message has one line per problem."""


def secrets_dir(environ: Mapping[str, str] = os.environ) -> Path | None:
    """The directory secret files are read from: TRADEFLOW_SECRETS_DIR, else /run/secrets where
    it exists (in a container), else none. One file per setting, named like its variable in
    either case (tradeflow_kill_switch_secret); the environment and .env win over a file."""
    named = environ.get(SECRETS_DIR_VARIABLE)
    if not named:
        return DEFAULT_SECRETS_DIR if DEFAULT_SECRETS_DIR.is_dir() else None
    if not Path(named).is_dir():  # a mistyped path must not leave the API without its secret
        raise SettingsError(f"{SECRETS_DIR_VARIABLE}={named}: not a directory")
    return Path(named)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix=PREFIX, env_file=".env", extra="forbid", frozen=True
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
    model_name: str = Field("tradeflow-direction", min_length=1)
    # Serving: loaded model versions one process keeps (least recently used dropped first), and
    # how long the API trusts where an alias points before asking MLflow again (0: at every
    # request; the decision flow always asks).
    model_cache_size: int = Field(4, ge=1, le=64)
    model_alias_ttl_s: float = Field(30.0, ge=0, le=3600)
    # torch intra-op threads once a model with torch members is served (0: torch's default).
    torch_threads: int = Field(1, ge=0, le=256)
    label_horizon: int = Field(4, ge=1, le=1000)  # candles of the timeframe, counted in time
    # The log return a label must beat; default: the round trip's fees and slippage
    # (2 * (fee_rate + slippage_bps / 10,000)).
    label_cost: float | None = Field(None, ge=0, lt=1)
    label_kind: Literal["fixed", "triple_barrier"] = "fixed"
    barrier_take_profit: float = Field(0.01, gt=0, lt=1)  # triple barrier, log returns
    barrier_stop_loss: float = Field(0.01, gt=0, lt=1)
    # The ensemble: which members, how many out-of-fold folds, how probabilities are calibrated.
    model_members: Annotated[tuple[str, ...], NoDecode] = (
        "xgboost",
        "lightgbm",
        "lstm",
        "transformer",
    )
    training_folds: int = Field(3, ge=2, le=20)
    calibration: Literal["platt", "isotonic"] = "platt"
    sequence_window: int = Field(16, ge=2, le=512)  # candles an LSTM/Transformer reads
    sequence_hidden: int = Field(32, ge=4, le=1024)
    sequence_epochs: int = Field(12, ge=1, le=500)
    sequence_max_windows: int = Field(40_000, ge=1000)
    seed: int = 42
    # Promotion: a challenger becomes champion only when it beats the champion on rows neither
    # trained on by this much log-loss, and passes the gates.
    promotion_margin: float = Field(0.001, ge=0)
    promotion_min_rows: int = Field(200, ge=1)
    promotion_max_ece: float = Field(0.05, gt=0, le=1)
    promotion_max_latency_ms: float = Field(250.0, gt=0)  # one row through the whole ensemble

    # Drift watch (flows/drift.py): the newest candles vs the champion's training window.
    drift_window_candles: int = Field(500, ge=50, le=100_000)  # per symbol
    drift_reference_rows: int = Field(5000, ge=50, le=1_000_000)
    drift_threshold: float = Field(0.5, gt=0, le=1)  # share of drifted features that is drift
    drift_target_z: float = Field(3.0, gt=0)  # |z| of the label base-rate test: target drift
    drift_debounce_hours: float = Field(24, ge=0)  # at most one drift retraining per this

    # Decisions
    account: str = Field("paper", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    replay_candles: int = Field(240, ge=1)  # the most recent window `make run` replays
    catch_up_candles: int = Field(24, ge=1, le=1000)  # live: most closed candles one run decides
    # Live: a candle decided longer than this after it closed trades nothing (STALE_CANDLE).
    # Default: one timeframe + 5 minutes.
    max_candle_age_s: int | None = Field(None, ge=1)
    # The paper exchange's starting balance; a ccxt account starts from the exchange's quote
    # balance at its first start instead.
    starting_cash: Money = Decimal("10000")
    order_notional: Money = Decimal("1000")  # quote currency per BUY
    consensus_threshold: float = Field(0.15, ge=0, le=1)  # agents' net score that vetoes a BUY
    # The decision policy: enter when the calibrated expected edge (net of the round trip's
    # costs) beats policy_min_edge; leave early when it falls below -policy_exit_edge, else
    # after label_horizon candles; full size at policy_full_size_edge.
    policy_min_edge: float = Field(0.0, ge=0, lt=1)
    policy_exit_edge: float = Field(0.0, ge=0, lt=1)
    policy_full_size_edge: float = Field(0.004, gt=0, lt=1)
    # Trade only a model whose out-of-fold edge was significant (else it abstains). Off is for
    # experiments and tests on windows too short to prove anything.
    policy_require_significance: bool = True
    model_weight: float = Field(0.5, ge=0)
    agent_weight: float = Field(0.25, ge=0)
    # Weights per regime, JSON: {"trend_up": {"model": 0.6, "bull": 0.3, "bear": 0.1}, ...}
    # (regimes: trend_up, trend_down, range, each optionally "_high_vol"); a regime not listed
    # uses model_weight and agent_weight.
    consensus_regime_weights: dict[str, dict[str, Annotated[float, Field(ge=0)]]] = {}
    consensus_disagreement: float = Field(0.6, gt=0, le=1)  # Bull BUY and Bear SELL this sure

    # LLM agents (Bull and Bear) through any OpenAI-compatible endpoint. No base URL: the
    # deterministic offline rule agents.
    llm_base_url: str | None = Field(None, pattern=r"^https?://")
    llm_model: str = Field("gpt-4o-mini", min_length=1, max_length=128)
    llm_api_key: SecretStr | None = None  # no default: a local server needs none
    llm_timeout_s: float = Field(20.0, gt=0, le=600)  # one call
    llm_decision_timeout_s: float = Field(60.0, gt=0, le=3600)  # a candle time's whole debate
    llm_max_output_tokens: int = Field(300, ge=32, le=8192)
    llm_temperature: float = Field(0.0, ge=0, le=2)
    llm_price_input_per_1k: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] = Decimal(0)
    llm_price_output_per_1k: Annotated[Decimal, Field(ge=0, allow_inf_nan=False)] = Decimal(0)
    llm_debate_rounds: int = Field(1, ge=0, le=2)
    llm_parallel: int = Field(8, ge=1, le=64)  # calls in flight at once
    # Budgets: a call whose worst case (prompt + max output) would cross one is not made and
    # the decision is NO_TRADE (BUDGET_EXCEEDED). None: no limit of that kind.
    llm_decision_max_tokens: int | None = Field(20_000, ge=1)
    llm_decision_max_cost: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)] | None = None
    llm_day_max_tokens: int | None = Field(5_000_000, ge=1)
    llm_day_max_cost: Annotated[Decimal, Field(gt=0, allow_inf_nan=False)] | None = Decimal(5)
    # What an agent's failure does: no_trade (its abstention counts; all abstained: NO_TRADE)
    # or offline_agents (the rule agent votes in its place, said in the vote's reason).
    llm_on_failure: Literal["no_trade", "offline_agents"] = "no_trade"
    # read: a prompt answered before is answered from the ledger, not the provider; off: always
    # call. (Replaying a recorded decision never calls: tradeflow replay-decision.)
    llm_replay_cache: Literal["off", "read"] = "read"
    # mlflow: the repository's templates are synced into MLflow's Prompt Registry and loaded
    # by alias (an operator may pin or roll back there); repo: the repository's text as is.
    llm_prompt_source: Literal["mlflow", "repo"] = "mlflow"
    llm_prompt_alias: str = Field("production", pattern=r"^[A-Za-z0-9_-]+$")
    llm_tracing: bool = True  # every call an MLflow trace tagged with its decision id

    # Risk gate: every limit in quote currency or as a fraction of equity (1 = 100 %).
    whitelist: Annotated[tuple[str, ...], NoDecode] = ("BTC/USDT", "ETH/USDT")
    max_order_notional: Money = Decimal("1500")
    max_position_notional: Money = Decimal("3000")
    max_quote_exposure: Money | None = None  # all pairs in the quote currency; None: no cap
    max_total_exposure: Money = Decimal("5000")
    max_daily_loss: Money = Decimal("300")
    max_order_pct_equity: Fraction = Decimal(1)
    max_position_pct_equity: Fraction = Decimal(1)
    max_quote_pct_equity: Fraction = Decimal(1)
    max_total_pct_equity: Fraction = Decimal(1)
    max_daily_loss_pct: Fraction = Decimal(1)  # of the equity at 00:00 UTC
    max_leverage: Annotated[Decimal, Field(gt=0, le=10)] = Decimal(1)  # 1 = spot
    max_open_orders: int = Field(50, ge=1, le=10_000)
    max_price_deviation_pct: Fraction = Decimal("0.05")  # a limit price vs the last price

    # Broker: paper (the simulated exchange, its book under var/), dummy (accepts, never
    # fills) or ccxt (the real exchange; needs API keys).
    broker: Literal["paper", "dummy", "ccxt"] = "paper"
    exchange_sandbox: bool = False  # ccxt: the exchange's testnet (set_sandbox_mode)
    slippage_bps: Annotated[Decimal, Field(ge=0, le=1000)] = Decimal("5")
    fee_rate: Annotated[Decimal, Field(ge=0, lt=Decimal("0.1"))] = Decimal("0.001")
    paper_liquidity: Fraction | None = None  # fraction of a candle's volume one order may take
    paper_latency_candles: int = Field(0, ge=0, le=100)
    paper_reject_rate: float = Field(0.0, ge=0, le=1)
    exchange_api_key: SecretStr | None = None
    exchange_api_secret: SecretStr | None = None

    # Circuit breaker: any threshold crossed halts trading for the cooldown.
    breaker_daily_loss_pct: Fraction = Decimal("0.05")
    breaker_max_drawdown_pct: Fraction = Decimal("0.15")
    breaker_consecutive_losses: int = Field(6, ge=1)
    breaker_min_win_rate: float = Field(0.25, ge=0, le=1)
    breaker_win_rate_window: int = Field(20, ge=1)
    breaker_min_sharpe: float = -0.5
    breaker_sharpe_window: int = Field(30, ge=2)
    breaker_cooldown_hours: float = Field(24, gt=0)

    # Safety
    close_positions_on_kill: bool = True  # kill switch: close every position (else freeze)
    alert_urls: Annotated[tuple[str, ...], NoDecode] = ()  # apprise URLs, comma-separated
    safety_rate_limit: int = Field(10, ge=1)  # refused safety requests per client per minute
    safety_refusal_retention_days: int = Field(30, ge=1)  # refused requests kept this long
    # Addresses of reverse proxies whose X-Forwarded-For is believed (default: none).
    trusted_proxies: Annotated[tuple[str, ...], NoDecode] = ()

    # Safety API. No default secret: the API refuses to start without one.
    kill_switch_secret: SecretStr | None = None
    kill_switch_window_s: int = Field(30, ge=1, le=3600)

    # Operating the API (issue 14).
    # Redis for per-token rate limits and for events between processes; None: in memory, one
    # process's own count (said in the README).
    redis_url: str | None = Field(None, pattern=r"^(redis|rediss|unix)://")
    # Requests per token, in the `limits` notation ("50/second", "1000/minute"); ";"-separated
    # for several windows.
    api_rate_limit: str = Field("50/second", pattern=r"^\s*\d+\s*(/|per)\s*\d*\s*[a-z]+")
    # Origins allowed to call the API from a browser (comma-separated); none: CORS off.
    cors_origins: Annotated[tuple[str, ...], NoDecode] = ()
    # WebSocket: events a slow client may have waiting before it is dropped; heartbeat period.
    ws_queue_size: int = Field(256, ge=1, le=100_000)
    ws_heartbeat_s: float = Field(15.0, gt=0, le=3600)
    # Webhooks: attempts before a delivery is dead-lettered; first retry delay (doubling, with
    # jitter); one attempt's timeout.
    webhook_max_attempts: int = Field(8, ge=1, le=100)
    webhook_backoff_s: float = Field(1.0, gt=0, le=3600)
    webhook_timeout_s: float = Field(5.0, gt=0, le=120)
    # Alerts by severity: JSON {"critical": ["tgram://…"], "warning": [...], "info": [...]};
    # alert_urls receive every severity. A repeating alert is sent once per debounce window,
    # then summarised.
    alert_routes: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    alert_debounce_s: float = Field(300.0, ge=0, le=86_400)
    # Logs: one JSON object per line (for a collector) or readable console lines.
    log_format: Literal["json", "console"] = "json"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The directory is looked up at each construction, not fixed in model_config: it may
        # not exist (outside a container), which pydantic-settings would warn about.
        files = SecretsSettingsSource(settings_cls, secrets_dir=secrets_dir())
        return init_settings, env_settings, dotenv_settings, files

    @field_validator(
        "symbols",
        "whitelist",
        "extra_timeframes",
        "alert_urls",
        "trusted_proxies",
        "model_members",
        "cors_origins",
        mode="before",
    )
    @classmethod
    def _split_csv(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(s.strip() for s in value.split(",") if s.strip())
        return value

    @field_validator("symbols", "whitelist")
    @classmethod
    def _unified_symbols(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [s for s in value if s.count("/") != 1 or not all(s.split("/"))]
        if bad:
            raise ValueError(f"symbols are BASE/QUOTE, as ccxt writes them (got {bad})")
        return value

    @field_validator("timeframe", "extra_timeframes")
    @classmethod
    def _timeframes(cls, value: str | tuple[str, ...]) -> str | tuple[str, ...]:
        for tf in (value,) if isinstance(value, str) else value:
            try:
                timeframe_delta(tf)
            except InvalidTimeframe as exc:
                raise ValueError(str(exc)) from None
        return value

    @field_validator("kill_switch_secret")
    @classmethod
    def _long_secret(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        secret = value.get_secret_value()
        if not secret.strip() or len(secret.encode()) < MIN_SECRET_BYTES:
            raise ValueError(
                f"must be at least {MIN_SECRET_BYTES} bytes and not blank "
                "(e.g. `openssl rand -hex 32`)"
            )
        return value

    @model_validator(mode="after")
    def _consistent(self) -> Settings:
        if self.reference_symbol not in self.symbols:
            raise ValueError(
                f"reference_symbol {self.reference_symbol} must be one of symbols "
                f"{list(self.symbols)}: cross-asset features need its candles"
            )
        quotes = {quote_of(s) for s in self.symbols}
        if len(quotes) > 1:
            raise ValueError(
                f"symbols must share one quote currency (the account's cash), got {sorted(quotes)}"
            )
        if self.order_notional > self.max_order_notional:
            raise ValueError(
                f"order_notional {self.order_notional} is above max_order_notional "
                f"{self.max_order_notional}: every BUY would be refused"
            )
        return self

    @field_validator("consensus_regime_weights")
    @classmethod
    def _known_regimes(cls, value: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
        """A misspelt regime or input would be ignored without a word: refuse it."""
        bad = [r for r in value if r not in REGIMES]
        bad += [f"{r}.{i}" for r, w in value.items() for i in w if i not in INPUTS]
        if bad:
            raise ValueError(
                f"unknown {bad}: regimes are {list(REGIMES)}, each weighing {list(INPUTS)}"
            )
        return value

    @field_validator("api_rate_limit")
    @classmethod
    def _rate_limit(cls, value: str) -> str:
        from limits import parse_many  # only here: settings load before the API needs limits

        try:
            parse_many(value)
        except ValueError:
            raise ValueError(
                'a rate in the `limits` notation, e.g. "50/second" or "10/second;500/minute"'
            ) from None
        return value

    @field_validator("alert_routes")
    @classmethod
    def _severities(cls, value: dict[str, tuple[str, ...]]) -> dict[str, tuple[str, ...]]:
        bad = sorted(set(value) - set(SEVERITIES))
        if bad:
            raise ValueError(f"unknown severities {bad}: they are {list(SEVERITIES)}")
        return value

    @field_validator("model_members")
    @classmethod
    def _known_members(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [m for m in value if m not in MODEL_MEMBERS]
        if bad or not value:
            raise ValueError(f"members are some of {list(MODEL_MEMBERS)} (got {list(value)})")
        return value

    @property
    def round_trip_cost(self) -> float:
        """The log return a trade must beat: fee and slippage, in and out."""
        if self.label_cost is not None:
            return self.label_cost
        return 2 * (float(self.fee_rate) + float(self.slippage_bps) / 10_000)

    @property
    def quote_currency(self) -> str:
        return quote_of(self.symbols[0])

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
        return f"sqlite:///{self.var_dir / f'mlflow-{self.ledger_tag}.db'}"

    @property
    def ledger_tag(self) -> str:
        """A short name for the ledger a piece of local state belongs to (its URL's hash)."""
        return hashlib.sha256(self.ledger_url.encode()).hexdigest()[:10]

    @property
    def artifacts_dir(self) -> Path:
        return self.var_dir / "artifacts"


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """TRADEFLOW_* variables that name no setting, each with the nearest known name."""
    known = {PREFIX + name.upper() for name in Settings.model_fields}
    lines = []
    for name in sorted(environ):
        if name.startswith(PREFIX) and name not in known and name not in NOT_SETTINGS:
            near = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {near[0]}?)" if near else ""
            lines.append(f"{name}: unknown setting{hint}")
    return lines


def secret_files(directory: Path | None) -> tuple[frozenset[str], list[str]]:
    """The settings `directory` has a file for, and one line per tradeflow_* file that names
    none, with the nearest known name (a misspelt secret file would be ignored without a word)."""
    if directory is None:
        return frozenset(), []
    known = {PREFIX + name.upper() for name in Settings.model_fields}
    found: set[str] = set()
    lines = []
    for path in sorted(directory.iterdir()):
        name = path.name.upper()  # read case-insensitively, as pydantic-settings does
        if not name.startswith(PREFIX):
            continue  # another program's secret
        if name in known:
            found.add(name.removeprefix(PREFIX).lower())
            continue
        near = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {near[0].lower()}?)" if near else ""
        lines.append(f"{path}: unknown setting{hint}")
    return frozenset(found), lines


def describe(error: ValidationError, hidden: Collection[str] = ()) -> list[str]:
    """One line per problem: the variable, the value given and what is allowed; secrets and
    the `hidden` fields (read from secret files) as ***."""
    lines = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"] if not isinstance(part, int)]
        if not loc:
            lines.append(f"settings: {item['msg'].removeprefix('Value error, ')}")
            continue
        name = PREFIX + loc[0].upper()
        secret = "secret" in loc[0] or "key" in loc[0] or loc[0] in hidden
        value = "***" if secret else _shown(item.get("input"))
        lines.append(f"{name}={value}: {item['msg'].removeprefix('Value error, ')}")
    return lines


def _shown(value: Any) -> str:
    text = repr(value) if not isinstance(value, str) else value
    return text if len(text) <= 80 else text[:77] + "..."


def load_settings(**values: Any) -> Settings:
    """Settings from the environment, .env, secret files and `values`, or a SettingsError
    naming every bad or unknown variable or secret file, one line each."""
    problems = unknown_variables(os.environ)
    try:
        from_files, unknown_files = secret_files(secrets_dir())
    except SettingsError as exc:
        raise SettingsError("\n".join([*problems, str(exc)])) from None
    problems += unknown_files
    try:
        settings = Settings(**values)
    except ValidationError as exc:
        problems += describe(exc, hidden=from_files)
    if problems:
        raise SettingsError("\n".join(problems))
    return settings


@lru_cache
def get_settings() -> Settings:
    return load_settings()
