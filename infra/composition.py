"""Builds the object graph from Settings: one place where configuration becomes objects."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta
from functools import lru_cache
from typing import TYPE_CHECKING

import ccxt

from core.agents.base import Agent
from core.agents.rules import BearAgent, BullAgent
from core.clock import SystemClock
from core.consensus import ConsensusConfig
from core.decision import Sizing
from core.features.registry import feature_set_version
from core.ports import Broker
from core.risk.breaker import BreakerConfig
from core.risk.limits import RiskLimits
from infra.alerts import Alerts
from infra.brokers.dummy import DummyBroker
from infra.brokers.simulated import SimulatedBroker, SimulationConfig
from infra.ledger.database import migrate, session_factory
from infra.ledger.repository import Ledger
from infra.market_data.ccxt_source import CcxtMarketSource, make_exchange
from infra.settings import Settings

if TYPE_CHECKING:  # heavy (mlflow, xgboost, lightgbm, TA-Lib): imported by what needs them
    from infra.jobs.decisions import DecisionConfig
    from infra.jobs.training import TrainingConfig
    from registry.mlflow_registry import ChampionCache

_MIGRATING = threading.Lock()


@lru_cache(maxsize=16)
def _migrated_ledger(url: str) -> Ledger:
    migrate(url)
    return Ledger(session_factory(url))


def ledger_at(url: str) -> Ledger:
    """Migrated once per process and URL (Alembic upgrade on start), even from mapped tasks
    running in threads."""
    with _MIGRATING:
        return _migrated_ledger(url)


def ledger(settings: Settings) -> Ledger:
    led = ledger_at(settings.ledger_url)
    led.ensure_account(settings.account, settings.starting_cash, SystemClock().now())
    return led


def broker(settings: Settings) -> Broker:
    if settings.broker == "dummy":
        return _dummy_broker(settings.account)
    if settings.broker == "ccxt":
        from infra.brokers.ccxt_broker import CcxtBroker

        return CcxtBroker(authenticated_exchange(settings))
    return SimulatedBroker(
        SimulationConfig(
            fee_rate=settings.fee_rate,
            slippage_bps=settings.slippage_bps,
            liquidity=settings.paper_liquidity,
            latency_candles=settings.paper_latency_candles,
            reject_rate=settings.paper_reject_rate,
            seed=settings.seed,
            starting_cash=settings.starting_cash,
        ),
        state_path=settings.var_dir / f"paper-exchange-{settings.account}.json",
    )


@lru_cache(maxsize=4)
def _dummy_broker(account: str) -> DummyBroker:
    return DummyBroker()


def authenticated_exchange(settings: Settings) -> ccxt.Exchange:
    if settings.exchange_api_key is None or settings.exchange_api_secret is None:
        raise ValueError(
            "TRADEFLOW_BROKER=ccxt needs TRADEFLOW_EXCHANGE_API_KEY and "
            "TRADEFLOW_EXCHANGE_API_SECRET"
        )
    exchange = make_exchange(settings.exchange)
    exchange.apiKey = settings.exchange_api_key.get_secret_value()
    exchange.secret = settings.exchange_api_secret.get_secret_value()
    return exchange


def alerts(settings: Settings) -> Alerts:
    return Alerts(settings.alert_urls)


def mlflow_store(settings: Settings) -> None:
    from registry.mlflow_registry import configure

    configure(settings.tracking_uri, settings.artifacts_dir)


@lru_cache(maxsize=16)
def _champion_cache(name: str, tracking_uri: str) -> ChampionCache:
    from registry.mlflow_registry import ChampionCache

    return ChampionCache(name, feature_set_version())


def champion_cache(settings: Settings) -> ChampionCache:
    mlflow_store(settings)
    return _champion_cache(settings.model_name, settings.tracking_uri)


def market_source(settings: Settings) -> CcxtMarketSource:
    return CcxtMarketSource(make_exchange(settings.exchange), SystemClock())


def ccxt_since(settings: Settings) -> datetime:
    return datetime.fromisoformat(settings.ccxt_since.replace("Z", "+00:00"))


def agents(settings: Settings) -> list[Agent]:
    return [BullAgent(), BearAgent()]


def training_config(settings: Settings) -> TrainingConfig:
    from infra.jobs.training import TrainingConfig

    return TrainingConfig(
        exchange=settings.exchange,
        symbols=settings.symbols,
        timeframe=settings.timeframe,
        model_name=settings.model_name,
        reference_symbol=settings.reference_symbol,
        label_horizon=settings.label_horizon,
        fee_threshold=settings.fee_threshold,
        validation_fraction=settings.validation_fraction,
        test_fraction=settings.test_fraction,
        seed=settings.seed,
    )


def decision_config(settings: Settings) -> DecisionConfig:
    from infra.jobs.decisions import DecisionConfig

    return DecisionConfig(
        account=settings.account,
        exchange=settings.exchange,
        symbols=settings.symbols,
        timeframe=settings.timeframe,
        reference_symbol=settings.reference_symbol,
        consensus=ConsensusConfig(
            settings.model_weight, settings.agent_weight, settings.consensus_threshold
        ),
        sizing=Sizing(settings.order_notional),
        breaker=BreakerConfig(
            max_daily_loss_pct=settings.breaker_daily_loss_pct,
            max_drawdown_pct=settings.breaker_max_drawdown_pct,
            max_consecutive_losses=settings.breaker_consecutive_losses,
            min_win_rate=settings.breaker_min_win_rate,
            win_rate_window=settings.breaker_win_rate_window,
            min_sharpe=settings.breaker_min_sharpe,
            sharpe_window=settings.breaker_sharpe_window,
            cooldown=timedelta(hours=settings.breaker_cooldown_hours),
        ),
        limits=RiskLimits(
            whitelist=frozenset(settings.whitelist),
            max_order_notional=settings.max_order_notional,
            max_position_notional=settings.max_position_notional,
            max_total_exposure=settings.max_total_exposure,
            max_daily_loss=settings.max_daily_loss,
        ),
    )
