"""A flow run a Prefect worker starts from a deployment sets up the JSON logs itself; any other
run keeps the process's own set-up."""

from __future__ import annotations

from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from flows import run_logs
from infra import logging as logs


@pytest.fixture
def fresh_logging(app_settings: object) -> Iterator[None]:
    logs.reset_logging()
    yield
    logs.reset_logging()


def test_set_up_logs_when_run_from_a_deployment_then_configured(
    fresh_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(run_logs, "deployment", SimpleNamespace(id="a-deployment-id"))

    run_logs.set_up_logs()

    assert logs.is_configured()


def test_set_up_logs_when_not_from_a_deployment_then_left_alone(fresh_logging: None) -> None:
    run_logs.set_up_logs()

    assert not logs.is_configured()
