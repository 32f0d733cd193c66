"""Fixtures over a throwaway MLflow store holding one real trained model (the serving tests:
tests/services/test_ml.py, tests/serving/test_ml_routes.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.registry.test_model_cache import Store, new_store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return new_store(tmp_path)


@pytest.fixture
def champion(store: Store) -> str:
    version = store.register()
    store.move("champion", version)
    return version
