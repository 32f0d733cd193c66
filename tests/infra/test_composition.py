"""The object graph built from settings: the broker each setting selects."""

from __future__ import annotations

from pathlib import Path

import pytest

from infra import composition
from infra.brokers.ccxt_broker import CcxtBroker
from infra.brokers.dummy import DummyBroker
from infra.brokers.simulated import SimulatedBroker
from infra.settings import Settings


def test_broker_when_paper_then_simulated_exchange_with_its_book_under_var(tmp_path: Path) -> None:
    broker = composition.broker(Settings(var_dir=tmp_path))
    assert isinstance(broker, SimulatedBroker)
    assert broker.state_path == tmp_path / "paper-exchange-paper.json"
    assert broker.state_path.exists()


def test_broker_when_dummy_then_dummy(tmp_path: Path) -> None:
    assert isinstance(composition.broker(Settings(var_dir=tmp_path, broker="dummy")), DummyBroker)


def test_broker_when_ccxt_without_keys_then_refuses_naming_the_variables(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match="TRADEFLOW_EXCHANGE_API_KEY and TRADEFLOW_EXCHANGE_API_SECRET"
    ):
        composition.broker(Settings(var_dir=tmp_path, broker="ccxt"))


def test_broker_when_ccxt_with_keys_then_authenticated_exchange(tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path, broker="ccxt", exchange_api_key="k", exchange_api_secret="s"
    )
    broker = composition.broker(settings)
    assert isinstance(broker, CcxtBroker)
    assert (broker.exchange.apiKey, broker.exchange.secret, broker.name) == ("k", "s", "binance")
