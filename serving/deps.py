"""FastAPI dependencies: every object comes from services.bootstrap, once per process."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from core.clock import Clock, SystemClock
from core.ports import Ledger
from services import bootstrap
from services.bootstrap import Settings, get_settings
from services.safety_requests import SafetyDesk

SettingsDep = Annotated[Settings, Depends(get_settings)]


def get_ledger(settings: SettingsDep) -> Ledger:
    return bootstrap.ledger_unmigrated(settings)


def get_clock() -> Clock:
    return SystemClock()


def get_desk(request: Request) -> SafetyDesk:
    desk: SafetyDesk = request.app.state.desk
    return desk


LedgerDep = Annotated[Ledger, Depends(get_ledger)]
ClockDep = Annotated[Clock, Depends(get_clock)]
DeskDep = Annotated[SafetyDesk, Depends(get_desk)]
