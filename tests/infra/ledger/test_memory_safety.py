"""The memory ledger's safety store answers as the SQL one does, for the same control changes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from core.risk.state import Control
from infra.ledger.ledger import Ledger
from infra.ledger.memory import MemoryLedger

T0 = datetime(2024, 3, 1, tzinfo=UTC)


def test_set_control_when_the_breaker_trips_and_clears_then_memory_and_sql_record_the_same(
    ledger: Ledger,
) -> None:
    memory = MemoryLedger()
    steps = [
        (Control.CIRCUIT_BREAKER, True, "DAILY_LOSS", T0, T0 + timedelta(hours=24), "tripped"),
        (Control.OPERATOR, True, "reducing", T0 + timedelta(hours=1), None, None),
        (Control.CIRCUIT_BREAKER, False, "cooldown over", T0 + timedelta(hours=25), None,
         "cooldown_over"),
        (Control.OPERATOR, False, "active", T0 + timedelta(hours=26), None, None),
    ]  # fmt: skip
    for name, active, reason, at, until, event in steps:
        sql = ledger.safety.set_control(name, active, reason, at, until=until, event=event)
        mem = memory.safety.set_control(name, active, reason, at, until=until, event=event)
        assert mem == sql
        assert memory.safety.flags(at) == ledger.safety.flags(at)
    assert memory.safety.events() == ledger.safety.events()
    assert memory.safety.control(Control.OPERATOR) == ledger.safety.control(Control.OPERATOR)
