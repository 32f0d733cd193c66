from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from core.clock import Clock, SystemClock
from core.ports import Broker
from infra import composition
from infra.alerts import Alerts
from infra.ledger.database import session_factory
from infra.ledger.repository import Ledger
from infra.settings import Settings, get_settings

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_ledger(settings: SettingsDep) -> Ledger:
    return Ledger(session_factory(settings.ledger_url))


def get_clock() -> Clock:
    return SystemClock()


LedgerDep = Annotated[Ledger, Depends(get_ledger)]
ClockDep = Annotated[Clock, Depends(get_clock)]


def get_broker(settings: SettingsDep) -> Broker:
    return composition.broker(settings)


def get_alerts(settings: SettingsDep) -> Alerts:
    return composition.alerts(settings)


BrokerDep = Annotated[Broker, Depends(get_broker)]
AlertsDep = Annotated[Alerts, Depends(get_alerts)]
