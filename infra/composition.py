"""Builds the object graph from Settings: one place where configuration becomes objects."""

from __future__ import annotations

import threading
from datetime import datetime
from decimal import Decimal
from functools import lru_cache

from core.agents.base import Agent
from core.agents.rules import BearAgent, BullAgent
from core.clock import SystemClock
from core.consensus import ConsensusConfig
from core.decision import Sizing
from core.features.registry import feature_set_version
from core.risk.limits import RiskLimits
from infra.brokers.paper import PaperBroker
from infra.jobs.decisions import DecisionConfig
from infra.jobs.training import TrainingConfig
from infra.ledger.database import migrate, session_factory
from infra.ledger.repository import Ledger
from infra.market_data.ccxt_source import CcxtMarketSource, make_exchange
from infra.settings import Settings
from registry.mlflow_registry import ChampionCache, configure

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


@lru_cache(maxsize=16)
def _paper_broker(account: str, slippage_bps: str, fee_rate: str) -> PaperBroker:
    return PaperBroker(Decimal(slippage_bps), Decimal(fee_rate))


def paper_broker(settings: Settings) -> PaperBroker:
    return _paper_broker(settings.account, str(settings.slippage_bps), str(settings.fee_rate))


def mlflow_store(settings: Settings) -> None:
    configure(settings.tracking_uri, settings.artifacts_dir)


@lru_cache(maxsize=16)
def _champion_cache(name: str, tracking_uri: str) -> ChampionCache:
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
        limits=RiskLimits(
            whitelist=frozenset(settings.whitelist),
            max_order_notional=settings.max_order_notional,
            max_position_notional=settings.max_position_notional,
            max_total_exposure=settings.max_total_exposure,
            max_daily_loss=settings.max_daily_loss,
        ),
    )
