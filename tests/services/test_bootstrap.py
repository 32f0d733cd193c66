"""The object graph built from settings: the broker each setting selects."""

from __future__ import annotations

from pathlib import Path

import pytest

from core.errors import ConfigurationError
from infra.brokers.ccxt_broker import CcxtBroker
from infra.brokers.dummy import DummyBroker
from infra.brokers.simulated import SimulatedBroker
from infra.settings import Settings
from services import bootstrap


def test_broker_when_paper_then_simulated_exchange_with_its_book_under_var(tmp_path: Path) -> None:
    broker = bootstrap.broker(Settings(var_dir=tmp_path))
    assert isinstance(broker, SimulatedBroker)
    assert broker.state_path == bootstrap.paper_book_path(Settings(var_dir=tmp_path))
    assert broker.state_path.parent == tmp_path
    assert broker.state_path.exists()


def test_paper_book_when_only_the_database_url_changes_then_another_book(tmp_path: Path) -> None:
    sqlite = Settings(var_dir=tmp_path)
    postgres = Settings(var_dir=tmp_path, database_url="postgresql+psycopg://u@h:5432/db")
    assert bootstrap.paper_book_path(sqlite) != bootstrap.paper_book_path(postgres)
    assert sqlite.tracking_uri != postgres.tracking_uri


def test_broker_when_dummy_then_dummy(tmp_path: Path) -> None:
    assert isinstance(bootstrap.broker(Settings(var_dir=tmp_path, broker="dummy")), DummyBroker)


def test_broker_when_ccxt_without_keys_then_refuses_naming_the_variables(tmp_path: Path) -> None:
    with pytest.raises(
        ConfigurationError, match="TRADEFLOW_EXCHANGE_API_KEY and TRADEFLOW_EXCHANGE_API_SECRET"
    ):
        bootstrap.broker(Settings(var_dir=tmp_path, broker="ccxt"))


def test_broker_when_ccxt_with_keys_then_authenticated_exchange(tmp_path: Path) -> None:
    settings = Settings(
        var_dir=tmp_path, broker="ccxt", exchange_api_key="k", exchange_api_secret="s"
    )
    broker = bootstrap.broker(settings)
    assert isinstance(broker, CcxtBroker)
    assert (broker.exchange.apiKey, broker.exchange.secret, broker.name) == ("k", "s", "binance")


def test_ledger_when_it_holds_another_account_then_refused_naming_both(tmp_path: Path) -> None:
    bootstrap.forget()
    bootstrap.ledger(Settings(var_dir=tmp_path, account="paper"))
    with pytest.raises(ConfigurationError, match="belongs to account 'paper', not 'live'"):
        bootstrap.ledger(Settings(var_dir=tmp_path, account="live"))
    bootstrap.forget()


def test_ledger_when_asked_again_in_the_same_process_then_the_account_is_not_read_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bootstrap.forget()
    settings = Settings(var_dir=tmp_path, account="paper")
    led = bootstrap.ledger(settings)

    def read_again() -> list[str]:
        raise AssertionError("the account was checked again")

    monkeypatch.setattr(led.accounts, "names", read_again)
    assert bootstrap.ledger(settings) is led  # every task asks; one check per process
    bootstrap.forget()


def test_champion_when_built_from_settings_then_one_shared_cache_with_the_settings_threads(
    app_settings,  # type: ignore[no-untyped-def]
) -> None:
    settings = app_settings()
    source = bootstrap.champion(settings)
    assert source.cache is bootstrap.model_cache(settings)  # type: ignore[attr-defined]
    assert bootstrap.model_cache(settings).torch_threads == settings.torch_threads == 1
