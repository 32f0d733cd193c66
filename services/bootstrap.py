"""Builds the object graph from Settings: the one place where configuration becomes objects.

The edges (tasks, the API, the CLI) ask here for what they need; services receive it as
arguments. The model side (MLflow, xgboost, lightgbm, TA-Lib) is imported only by the functions
that need it, so the API starts without it.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.agents.base import Agent
from core.agents.budget import BudgetLimits, Prices
from core.agents.panel import Panel, RulePanel
from core.agents.prompt import PromptTemplate
from core.agents.rules import BearAgent, BullAgent
from core.clock import Clock, SystemClock
from core.consensus import ConsensusConfig
from core.decision import Sizing
from core.errors import ConfigurationError
from core.features.registry import feature_set_version
from core.models.policy import PolicyConfig
from core.ports import (
    Broker,
    CandleSource,
    ChampionSource,
    ChatModel,
    Ledger,
    Model,
    ModelRegistry,
    SimulatedExchange,
)
from core.risk.breaker import BreakerConfig
from core.risk.limits import UNLIMITED, MarketRules, RiskLimits
from core.types import base_of
from infra.alerts import Alerts
from infra.brokers.dummy import DummyBroker
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.ledger import forget_ledgers, open_ledger
from infra.settings import Settings, get_settings

if TYPE_CHECKING:  # heavy: imported by the functions that need them
    from core.models.members import Member
    from infra.ledger.listen import FileWatch, OutboxListener, OutboxWatch
    from infra.market_data.ccxt_source import CcxtMarketSource
    from registry.model_cache import ModelCache
    from services.debate import CacheMode
    from services.decide.config import DecisionConfig
    from services.drift import DriftConfig
    from services.evaluation import EvaluationConfig
    from services.manual_orders import ManualOrders
    from services.ml import MlService
    from services.safety_requests import SafetyDesk
    from services.training import TrainingConfig
    from services.webhooks import WebhookDispatcher

__all__ = ["Settings", "get_settings"]


def configure_logging(settings: Settings) -> None:
    """JSON log lines with correlation ids and secrets redacted (infra/logging.py), unless
    this process set them up already (the tradeflow CLI does, first thing)."""
    from infra import logging as logs

    if not logs.is_configured():
        logs.configure_logging(settings)


def ledger(settings: Settings) -> Ledger:
    """The migrated ledger with this account in it (checked and opened once per process)."""
    led = open_ledger(settings.ledger_url)
    if (settings.ledger_url, settings.account) not in _OPENED:
        _open_account(settings, led)
        _OPENED.add((settings.ledger_url, settings.account))
    return led


_OPENED: set[tuple[str, str]] = set()  # (ledger URL, account) already checked by this process


def _open_account(settings: Settings, led: Ledger) -> None:
    """Refuse a ledger that belongs to another account, else create this one on its first
    start. A real exchange account starts from its own balances: its quote balance is the
    starting cash, and whatever it already held of the traded assets is recorded as not ours
    (never sold, left out of reconciliation)."""
    names = led.accounts.names()
    others = [a for a in names if a != settings.account]
    if others:  # the breaker, reconciliation and kill switch are the ledger's, not an account's
        raise ConfigurationError(
            f"the ledger at {settings.ledger_url} belongs to account {others[0]!r}, not "
            f"{settings.account!r}: its safety controls would be shared; give this account its "
            "own ledger (TRADEFLOW_DATABASE_URL)"
        )
    if settings.account in names:
        return
    if settings.broker == "ccxt":
        cash, holdings = exchange_balances(settings)
        led.accounts.ensure(settings.account, cash, SystemClock().now(), holdings)
    else:
        led.accounts.ensure(settings.account, settings.starting_cash, SystemClock().now())


def exchange_balances(settings: Settings) -> tuple[Decimal, dict[str, Decimal]]:
    """(quote balance, holdings of the traded base assets) of the exchange account now."""
    balances = broker(settings).balances()
    quote = balances.get(settings.quote_currency)
    held = {
        base: balances[base].total
        for base in sorted({base_of(s) for s in settings.symbols})
        if base in balances and balances[base].total
    }
    return (quote.total if quote else Decimal(0)), held


def ledger_unmigrated(settings: Settings) -> Ledger:
    """The ledger as it is: for health checks, which must answer while the database is down."""
    return open_ledger(settings.ledger_url, migrated=False)


def outbox_listener(settings: Settings) -> OutboxListener | None:
    """What wakes the API's WebSocket hub when another process commits an event: a LISTEN
    connection on PostgreSQL (opened on first use); None on SQLite, where the hub polls."""
    if not settings.ledger_url.startswith("postgresql"):
        return None
    from infra.ledger.listen import OutboxListener

    return OutboxListener(settings.ledger_url)


def outbox_watch(settings: Settings) -> OutboxWatch | FileWatch | None:
    """What tells the API that nothing has committed since it built an answer, without reading
    a table (infra.ledger.listen.watch_for)."""
    from infra.ledger.listen import watch_for

    return watch_for(settings.ledger_url)


def paper_book_path(settings: Settings) -> Path:
    """The paper exchange's book belongs to one account in one ledger: another ledger URL gets
    another book, so changing only the database never trades against someone else's book."""
    return settings.var_dir / f"paper-exchange-{settings.account}-{settings.ledger_tag}.json"


def paper_exchange(settings: Settings) -> SimulatedBroker:
    return SimulatedBroker(simulation_config(settings), state_path=paper_book_path(settings))


def simulation_config(settings: Settings) -> SimulationConfig:
    """How the paper exchange (and a backtest, which fills as paper would) fills orders."""
    return SimulationConfig(
        fee_rate=settings.fee_rate,
        slippage_bps=settings.slippage_bps,
        liquidity=settings.paper_liquidity,
        latency_candles=settings.paper_latency_candles,
        reject_rate=settings.paper_reject_rate,
        seed=settings.seed,
        starting_cash=settings.starting_cash,
        quote=settings.quote_currency,
    )


def broker(settings: Settings) -> Broker:
    if settings.broker == "dummy":
        return _dummy_broker(settings.account)
    if settings.broker == "ccxt":
        from infra.brokers.ccxt_broker import CcxtBroker

        return CcxtBroker(authenticated_exchange(settings))
    return paper_exchange(settings)


def paper_market(live_broker: Broker) -> SimulatedExchange | None:
    """The live broker when it is the paper exchange, which fills only on the candles it is
    shown (the live run shows it each new one); None for an exchange that fills by itself."""
    return live_broker if isinstance(live_broker, SimulatedBroker) else None


def replay_exchange(settings: Settings) -> SimulatedExchange:
    """A replay trades history on the simulated exchange, never anywhere else."""
    if settings.broker != "paper":
        raise ConfigurationError(
            f"a replay trades past candles on the simulated exchange only; "
            f"TRADEFLOW_BROKER={settings.broker} would send them to a "
            f"{'real exchange' if settings.broker == 'ccxt' else 'dummy broker'}: "
            "set TRADEFLOW_BROKER=paper for `tradeflow run`"
        )
    return paper_exchange(settings)


@lru_cache(maxsize=4)
def _dummy_broker(account: str) -> DummyBroker:
    return DummyBroker()


def authenticated_exchange(settings: Settings):  # type: ignore[no-untyped-def]
    from infra.market_data.ccxt_source import make_exchange

    if settings.exchange_api_key is None or settings.exchange_api_secret is None:
        raise ConfigurationError(
            "TRADEFLOW_BROKER=ccxt needs TRADEFLOW_EXCHANGE_API_KEY and "
            "TRADEFLOW_EXCHANGE_API_SECRET"
        )
    exchange = make_exchange(settings.exchange, settings.exchange_sandbox)
    exchange.apiKey = settings.exchange_api_key.get_secret_value()
    exchange.secret = settings.exchange_api_secret.get_secret_value()
    return exchange


def alerts(settings: Settings, clock: Clock | None = None, led: Ledger | None = None) -> Alerts:
    """Alerts routed by severity and debounced in the ledger (every process shares the
    debounce); the ledger as it is unless `led` is given, so building them needs no database
    (an alert raised while it is down is sent undebounced)."""
    return Alerts(
        settings.alert_urls,
        routes=settings.alert_routes,
        states=(led or ledger_unmigrated(settings)).alerts,
        debounce=timedelta(seconds=settings.alert_debounce_s),
        clock=clock,
    )


def webhook_dispatcher(
    settings: Settings, clock: Clock | None = None, led: Ledger | None = None
) -> WebhookDispatcher:
    """The webhook dispatcher over the ledger as it is (or `led`); its pass also flushes the
    alerts' due summaries."""
    import random

    from core.webhooks import Backoff
    from infra.webhooks import HttpxSender
    from services.webhooks import DispatchConfig, WebhookDispatcher

    led, clock = led or ledger_unmigrated(settings), clock or SystemClock()
    config = DispatchConfig(
        max_attempts=settings.webhook_max_attempts,
        backoff=Backoff(base_s=settings.webhook_backoff_s),
        timeout_s=settings.webhook_timeout_s,
    )
    return WebhookDispatcher(
        led.events,
        led.webhooks,
        HttpxSender(),
        config,
        clock,
        random.Random(),
        alerts(settings, clock, led),
    )


def background_dispatcher(
    settings: Settings, clock: Clock
) -> tuple[WebhookDispatcher, Callable[[], None]]:
    """The API's background dispatcher, on a connection pool of its own (infra/ledger/own.py),
    and what stops it: waits for the sends under way, then closes its connections."""
    from infra.ledger.own import own_ledger

    led, dispose = own_ledger(settings.ledger_url)
    dispatcher = webhook_dispatcher(settings, clock, led)

    def close() -> None:
        dispatcher.close()
        dispose()

    return dispatcher, close


def mlflow_store(settings: Settings) -> None:
    from registry.mlflow_registry import configure

    configure(settings.tracking_uri, settings.artifacts_dir)


@lru_cache(maxsize=16)
def _model_cache(
    tracking_uri: str, size: int, alias_ttl_s: float, torch_threads: int
) -> ModelCache:
    from registry.model_cache import ModelCache

    return ModelCache(
        feature_set_version(),
        size,
        alias_ttl_s,
        tracking_uri=tracking_uri,
        torch_threads=torch_threads,
    )


def model_cache(settings: Settings) -> ModelCache:
    """The process's one cache of loaded models: the API's predictions and the decision
    flow's champion share it (registry/model_cache.py)."""
    return _model_cache(
        settings.tracking_uri,
        settings.model_cache_size,
        settings.model_alias_ttl_s,
        settings.torch_threads,
    )


def champion(settings: Settings) -> ChampionSource:
    from registry.model_cache import CachedChampion

    mlflow_store(settings)
    return CachedChampion(model_cache(settings), settings.model_name, feature_set_version())


def ml_service(settings: Settings) -> MlService:
    """What the API's model routes use. Builds no client and imports no MLflow: the first
    request does."""
    from registry.model_catalog import MlflowCatalog
    from services.ml import MlService, PredictConfig

    config = PredictConfig(
        settings.exchange, settings.timeframe, settings.reference_symbol, settings.model_name
    )
    return MlService(
        model_cache(settings),
        MlflowCatalog(settings.tracking_uri),
        ledger_unmigrated(settings),
        config,
    )


def model_registry(settings: Settings) -> ModelRegistry:
    from registry.mlflow_registry import MlflowRegistry

    mlflow_store(settings)
    return MlflowRegistry()


def candle_source(settings: Settings) -> CandleSource:
    if settings.source == "ccxt":
        return market_source(settings)
    from infra.market_data.files import FileCandleSource

    return FileCandleSource(settings.data_dir, settings.exchange)


def market_source(settings: Settings) -> CcxtMarketSource:
    from infra.market_data.ccxt_source import CcxtMarketSource, make_exchange

    return CcxtMarketSource(
        make_exchange(settings.exchange, settings.exchange_sandbox), SystemClock()
    )


def ccxt_since(settings: Settings) -> datetime:
    return datetime.fromisoformat(settings.ccxt_since.replace("Z", "+00:00"))


def rule_agents() -> list[Agent]:
    return [BullAgent(), BearAgent()]


def panel(
    settings: Settings, cache: CacheMode | None = None, chat: ChatModel | None = None
) -> Panel:
    """The offline rule agents, or, with an LLM base URL, Bull and Bear debating through it.
    `cache` overrides the replay cache's mode (a strict replay never calls the provider), and
    `chat` the chat model (a replay's stands in for the one recorded)."""
    if settings.llm_base_url is None and chat is None:
        return RulePanel(rule_agents())
    from services.debate import DebateConfig, LlmPanel

    cfg = DebateConfig(
        rounds=settings.llm_debate_rounds,
        decision_timeout_s=settings.llm_decision_timeout_s,
        parallel=settings.llm_parallel,
        on_failure=settings.llm_on_failure,
        cache=cache or settings.llm_replay_cache,
        limits=BudgetLimits(
            settings.llm_decision_max_tokens,
            settings.llm_decision_max_cost,
            settings.llm_day_max_tokens,
            settings.llm_day_max_cost,
        ),
        prices=Prices(settings.llm_price_input_per_1k, settings.llm_price_output_per_1k),
        max_output_tokens=settings.llm_max_output_tokens,
    )
    return LlmPanel(
        chat or chat_model(settings),
        prompt_templates(settings),
        ledger(settings).agent_calls,
        cfg,
        SystemClock(),
        alerts(settings),
        fallback=rule_agents(),
    )


def replay_panel(settings: Settings, provenance: Mapping[str, Any]) -> Panel:
    """The panel a recorded decision was made by, rebuilt from its provenance (the model and
    endpoint, rounds, failure mode, prompt versions), answering only from the decision's own
    recorded calls: replaying never calls a provider and never touches the prompt registry."""
    recorded = provenance.get("panel_settings") or {}
    if "model" not in recorded:
        return RulePanel(rule_agents())
    from services.debate import CacheOnlyChat, DebateConfig, LlmPanel

    cfg = DebateConfig(
        rounds=int(recorded["rounds"]), on_failure=recorded["on_failure"], cache="strict"
    )
    return LlmPanel(
        CacheOnlyChat(str(recorded["model"]), str(recorded["endpoint"])),
        recorded_templates(settings, recorded["templates"]),
        ledger(settings).agent_calls,
        cfg,
        SystemClock(),
        alerts(settings),
        fallback=rule_agents(),
    )


def recorded_templates(
    settings: Settings, versions: Mapping[str, str]
) -> dict[str, PromptTemplate]:
    """The prompt templates at the versions a decision used: the repository's text when it was
    used as is (it must not have changed since), else the Prompt Registry's version."""
    from core.agents.prompt import PromptError
    from infra.llm.prompts import repo_template

    out = {}
    for name, version in versions.items():
        if version.startswith("repo-"):
            out[name] = repo_template(name)
            if out[name].version != version:
                raise PromptError(
                    f"{name}: the repository's template is {out[name].version} now, the decision "
                    f"used {version}: restore that text to replay it"
                )
            continue
        from registry.prompts import load_prompt_version

        mlflow_store(settings)
        out[name] = load_prompt_version(name, version)
    return out


def model_loader(settings: Settings) -> Callable[[str, str], Model]:
    """Registered model versions by (name, version), each loaded once."""
    from registry.mlflow_registry import load_version

    mlflow_store(settings)
    expected = feature_set_version()

    @lru_cache(maxsize=8)
    def load(name: str, version: str) -> Model:
        return load_version(name, version, expected)

    return load


def chat_model(settings: Settings) -> ChatModel:
    from infra.llm.openai_chat import OpenAiChat

    if settings.llm_base_url is None:
        raise ConfigurationError("TRADEFLOW_LLM_BASE_URL is not set: no chat model to build")
    key = settings.llm_api_key
    chat: ChatModel = OpenAiChat(
        base_url=settings.llm_base_url,
        model=settings.llm_model,
        api_key=None if key is None else key.get_secret_value(),
        timeout_s=settings.llm_timeout_s,
        max_output_tokens=settings.llm_max_output_tokens,
        temperature=settings.llm_temperature,
    )
    if settings.llm_tracing:
        from registry.tracing import TracedChat

        mlflow_store(settings)
        chat = TracedChat(chat)
    return chat


@contextmanager
def agent_panel(settings: Settings) -> Iterator[Panel]:
    """The panel for one run; afterwards its call threads stop and the traces still queued
    (MLflow logs them in the background) are sent."""
    built = panel(settings)
    try:
        yield built
    finally:
        close = getattr(built, "close", None)
        if close is not None:
            close()
        if settings.llm_base_url is not None and settings.llm_tracing:
            from registry.tracing import flush_traces

            flush_traces()


def prompt_templates(settings: Settings) -> dict[str, PromptTemplate]:
    """The repository's templates, or (the default) what MLflow's Prompt Registry serves under
    the alias, once the repository's text is synced into it."""
    from infra.llm.prompts import repo_templates

    templates = repo_templates()
    if settings.llm_prompt_source == "repo":
        return templates
    from registry.prompts import load_prompts, sync_prompts

    mlflow_store(settings)
    sync_prompts(templates, settings.llm_prompt_alias)
    return load_prompts(list(templates), settings.llm_prompt_alias)


def training_config(settings: Settings) -> TrainingConfig:
    from core.labels import TripleBarrier
    from core.models.dataset import LabelSpec
    from core.models.members import default_members
    from core.models.promotion import PromotionPolicy
    from core.models.sequence import SequenceConfig
    from core.models.training import EnsembleConfig
    from services.training import TrainingConfig, label_horizon

    horizon = label_horizon(settings.timeframe, settings.label_horizon)
    barrier = (
        TripleBarrier(settings.barrier_take_profit, settings.barrier_stop_loss)
        if settings.label_kind == "triple_barrier"
        else None
    )
    sequence = SequenceConfig(
        window=settings.sequence_window,
        hidden=settings.sequence_hidden,
        epochs=settings.sequence_epochs,
        max_train_windows=settings.sequence_max_windows,
    )
    ensemble = EnsembleConfig(
        horizon=horizon,
        cost=settings.round_trip_cost,
        folds=settings.training_folds,
        calibration=settings.calibration,
        sequence=sequence,
        seed=settings.seed,
    )
    return TrainingConfig(
        exchange=settings.exchange,
        symbols=settings.symbols,
        timeframe=settings.timeframe,
        model_name=settings.model_name,
        reference_symbol=settings.reference_symbol,
        label=LabelSpec(horizon, settings.round_trip_cost, barrier),
        ensemble=ensemble,
        members=[m for m in default_members(sequence) if m.name in settings.model_members],
        promotion=PromotionPolicy(
            margin=settings.promotion_margin,
            min_rows=settings.promotion_min_rows,
            max_ece=settings.promotion_max_ece,
            max_latency_ms=settings.promotion_max_latency_ms,
        ),
    )


def evaluation_config(
    settings: Settings, members: Sequence[str] | None = None, folds: int = 4
) -> EvaluationConfig:
    """The evaluation trains exactly what training would (labels, members, calibration) and
    trades the decision policy with the paper exchange's fee and slippage."""
    from core.candles.timeframe import timeframe_delta
    from services.evaluation import EvaluationConfig

    training = training_config(settings)
    wanted = set(members or settings.model_members)
    return EvaluationConfig(
        label=training.label,
        ensemble=training.ensemble,
        members=[m for m in _all_members(training) if m.name in wanted],
        policy=policy_config(settings),
        fee_rate=float(settings.fee_rate),
        slippage=float(settings.slippage_bps) / 10_000,
        periods_per_year=timedelta(days=365) / timeframe_delta(settings.timeframe),
        reference_symbol=settings.reference_symbol,
        folds=folds,
    )


def _all_members(training: TrainingConfig) -> list[Member]:
    from core.models.members import default_members

    return default_members(training.ensemble.sequence)


def drift_config(settings: Settings) -> DriftConfig:
    from services.drift import DriftConfig

    return DriftConfig(
        exchange=settings.exchange,
        symbols=tuple(settings.symbols),
        timeframe=settings.timeframe,
        reference_symbol=settings.reference_symbol,
        window_candles=settings.drift_window_candles,
        reference_rows=settings.drift_reference_rows,
        threshold=settings.drift_threshold,
        target_z=settings.drift_target_z,
        debounce=timedelta(hours=settings.drift_debounce_hours),
        label_horizon=settings.label_horizon,
        fee_threshold=settings.round_trip_cost,
        barrier=training_config(settings).label.barrier,
        report_dir=settings.var_dir / "reports" / "drift",
    )


def decision_config(settings: Settings) -> DecisionConfig:
    from services.decide.config import DecisionConfig

    return DecisionConfig(
        account=settings.account,
        exchange=settings.exchange,
        symbols=settings.symbols,
        timeframe=settings.timeframe,
        reference_symbol=settings.reference_symbol,
        consensus=ConsensusConfig(
            settings.model_weight,
            settings.agent_weight,
            settings.consensus_threshold,
            policy_config(settings),
            settings.policy_require_significance,
            regime_weights=settings.consensus_regime_weights,
            disagreement=settings.consensus_disagreement,
        ),
        sizing=Sizing(settings.order_notional),
        breaker=breaker_config(settings),
        limits=risk_limits(settings),
        catch_up_candles=settings.catch_up_candles,
    )


def policy_config(settings: Settings) -> PolicyConfig:
    return PolicyConfig(
        horizon=settings.label_horizon,
        min_edge=settings.policy_min_edge,
        exit_edge=settings.policy_exit_edge,
        full_size_edge=settings.policy_full_size_edge,
    )


def breaker_config(settings: Settings) -> BreakerConfig:
    return BreakerConfig(
        max_daily_loss_pct=settings.breaker_daily_loss_pct,
        max_drawdown_pct=settings.breaker_max_drawdown_pct,
        max_consecutive_losses=settings.breaker_consecutive_losses,
        min_win_rate=settings.breaker_min_win_rate,
        win_rate_window=settings.breaker_win_rate_window,
        min_sharpe=settings.breaker_min_sharpe,
        sharpe_window=settings.breaker_sharpe_window,
        cooldown=timedelta(hours=settings.breaker_cooldown_hours),
    )


def risk_limits(settings: Settings) -> RiskLimits:
    return RiskLimits(
        whitelist=frozenset(settings.whitelist),
        max_order_notional=settings.max_order_notional,
        max_position_notional=settings.max_position_notional,
        max_total_exposure=settings.max_total_exposure,
        max_daily_loss=settings.max_daily_loss,
        max_order_pct_equity=settings.max_order_pct_equity,
        max_position_pct_equity=settings.max_position_pct_equity,
        max_quote_exposure=settings.max_quote_exposure or UNLIMITED,
        max_quote_pct_equity=settings.max_quote_pct_equity,
        max_total_pct_equity=settings.max_total_pct_equity,
        max_daily_loss_pct=settings.max_daily_loss_pct,
        max_leverage=settings.max_leverage,
        max_open_orders=settings.max_open_orders,
        max_price_deviation_pct=settings.max_price_deviation_pct,
        max_candle_age=settings.max_candle_age,
        rules=market_rules(settings),
    )


def reconciliation_since(settings: Settings, led: Ledger) -> datetime | None:
    """A real account's history before the first start is not ours; the paper exchange's
    replayed fills are dated in the past, so there everything counts."""
    return led.accounts.opened_at(settings.account) if settings.broker == "ccxt" else None


def reconciliation_dust(settings: Settings) -> dict[str, Decimal]:
    """Per symbol, the difference no order can move (below the exchange's minimum amount or
    one amount step): tolerated when a real account is reconciled; the paper exchange is exact."""
    if settings.broker != "ccxt":
        return {}
    rules = market_rules(settings)
    return {s: max(r.min_amount, r.amount_step) for s, r in rules.items()}


def market_rules(settings: Settings) -> dict[str, MarketRules]:
    """From the exchange's markets when trading or reading a live exchange (loaded once per
    process), from the documented default table for file data."""
    from infra.market_data.markets import default_rules

    if settings.broker == "ccxt" or settings.source == "ccxt":
        return dict(_exchange_rules(settings.exchange, settings.exchange_sandbox, settings.symbols))
    return default_rules(settings.symbols)


@lru_cache(maxsize=8)
def _exchange_rules(
    exchange_id: str, sandbox: bool, symbols: tuple[str, ...]
) -> dict[str, MarketRules]:
    from infra.market_data.ccxt_source import make_exchange
    from infra.market_data.markets import rules_from_exchange

    return rules_from_exchange(make_exchange(exchange_id, sandbox), symbols)


class MissingSecret(ConfigurationError):
    pass


def safety_desk(settings: Settings) -> SafetyDesk:
    """The API's answerer of signed safety requests; its broker is built only when an
    activation needs it."""
    from services.safety_requests import DeskConfig, SafetyDesk

    if settings.kill_switch_secret is None:
        raise MissingSecret(
            "no kill-switch secret: set TRADEFLOW_KILL_SWITCH_SECRET (e.g. in .env) to 32 or "
            "more random bytes (`openssl rand -hex 32`); clients sign requests with it"
        )
    config = DeskConfig(
        secret=settings.kill_switch_secret.get_secret_value(),
        window_s=settings.kill_switch_window_s,
        rate_limit=settings.safety_rate_limit,
        retention=timedelta(days=settings.safety_refusal_retention_days),
        account=settings.account,
        close_positions=settings.close_positions_on_kill,
    )
    return SafetyDesk(
        ledger_unmigrated(settings), config, alerts(settings), lambda: broker(settings)
    )


def manual_orders(settings: Settings) -> ManualOrders:
    """The API's manual orders: the decision flow's risk limits and broker (built on the first
    order, then kept), over the ledger as it is (the app's start migrated it)."""
    from services.manual_orders import ManualConfig, ManualOrders

    config = ManualConfig(
        account=settings.account,
        exchange=settings.exchange,
        timeframe=settings.timeframe,
        symbols=tuple(settings.symbols),
        limits=risk_limits(settings),
    )
    return ManualOrders(ledger_unmigrated(settings), lambda: broker(settings), config)


def forget() -> None:
    """Drop every per-process cache (settings, ledgers, brokers, models): tests use it."""
    for cache in (get_settings, _dummy_broker, _model_cache, _exchange_rules):
        cache.cache_clear()
    _OPENED.clear()
    forget_ledgers()
