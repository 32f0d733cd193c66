"""Readiness: may this deployment take traffic? The ledger answers, reconciliation is not
pending or failed, and the configured model has a champion to serve. Each check gives "ok" or
a reason code; liveness (/health) asks none of this."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from core.errors import RetryableError, TradeflowError
from core.records import HealthOverview
from services.ml import CHAMPION, RegistryReader

OK = "ok"


@dataclass(frozen=True, slots=True)
class Readiness:
    checks: dict[str, str]  # check -> "ok" or a reason code

    @property
    def ready(self) -> bool:
        return all(v == OK for v in self.checks.values())


def readiness(
    health: Callable[[], HealthOverview], catalog: RegistryReader, model_name: str
) -> Readiness:
    checks = {"ledger": OK, "reconciliation": OK, "model": _model(catalog, model_name)}
    try:
        flags = health().flags
    except TradeflowError as exc:
        checks["ledger"] = "ledger_unavailable" if isinstance(exc, RetryableError) else (
            "ledger_misconfigured"
        )  # fmt: skip
        checks["reconciliation"] = "unknown"
        return Readiness(checks)
    if not flags.reconciled:
        checks["reconciliation"] = "reconciliation_pending"
    return Readiness(checks)


def _model(catalog: RegistryReader, name: str) -> str:
    try:
        versions = catalog.versions(name)
    except RetryableError:
        return "registry_unavailable"
    except LookupError:
        return "no_model"
    if not any(CHAMPION in v.aliases for v in versions):
        return "no_champion"
    return OK
