"""FastAPI dependencies: every object comes from services.bootstrap, once per process."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from core.clock import Clock, SystemClock
from core.ports import Broker, Ledger, Notifier
from services import bootstrap
from services.bootstrap import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_ledger(settings: SettingsDep) -> Ledger:
    return bootstrap.ledger_unmigrated(settings)


def get_clock() -> Clock:
    return SystemClock()


def get_broker(settings: SettingsDep) -> Broker:
    return bootstrap.broker(settings)


def get_alerts(settings: SettingsDep) -> Notifier:
    return bootstrap.alerts(settings)


LedgerDep = Annotated[Ledger, Depends(get_ledger)]
ClockDep = Annotated[Clock, Depends(get_clock)]
BrokerDep = Annotated[Broker, Depends(get_broker)]
AlertsDep = Annotated[Notifier, Depends(get_alerts)]
