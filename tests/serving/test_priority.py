"""Signed safety writes go first: while one is under way, requests that arrive wait at the door,
until the write says it is in the ledger (from its thread) or its block ends; the safety routes
themselves never wait. The desk says "written" once the ledger holds the change, before the
broker is asked to cancel anything."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest
from starlette.types import Receive, Scope, Send

from core.safety.signing import sign
from infra.ledger.ledger import open_ledger
from infra.settings import Settings
from services.bootstrap import safety_desk
from services.safety_requests import Refusal, SignedRequest, Verified
from serving.priority import MAX_HOLD_S, HostDoor, SafetyFirst, SafetyFirstGate
from tests.serving.conftest import SECRET

NOW = datetime(2026, 11, 30, 9, tzinfo=UTC)


async def _blocked(waiter: asyncio.Task[None]) -> bool:
    await asyncio.sleep(0.02)
    return not waiter.done()


def test_wait_when_nothing_is_written_then_it_returns_at_once() -> None:
    async def main() -> None:
        await asyncio.wait_for(SafetyFirst().wait(), 0.5)

    asyncio.run(main())


def test_wait_when_a_write_is_under_way_then_held_until_its_thread_says_written() -> None:
    async def main() -> None:
        first = SafetyFirst()
        async with first.writing() as written:
            waiter = asyncio.create_task(first.wait())
            assert await _blocked(waiter)
            threading.Thread(target=written).start()  # as the desk's thread calls it
            await asyncio.wait_for(waiter, 1.0)  # the door opened before the block ended

    asyncio.run(main())


def test_wait_when_the_write_fails_before_written_then_the_block_end_opens_the_door() -> None:
    async def main() -> None:
        first = SafetyFirst()
        waiters: list[asyncio.Task[None]] = []

        async def failing_write() -> None:
            async with first.writing():
                waiters.append(asyncio.create_task(first.wait()))
                assert await _blocked(waiters[0])
                raise RuntimeError("ledger down")

        with pytest.raises(RuntimeError):
            await failing_write()
        await asyncio.wait_for(waiters[0], 1.0)

    asyncio.run(main())


def test_wait_when_two_writes_overlap_then_held_until_both_are_written() -> None:
    async def main() -> None:
        first = SafetyFirst()
        async with first.writing() as one, first.writing() as two:
            waiter = asyncio.create_task(first.wait())
            one()
            one()  # said twice: counted once
            assert await _blocked(waiter)
            two()
            await asyncio.wait_for(waiter, 1.0)

    asyncio.run(main())


def _gate_calls(path: str, kind: str = "http") -> tuple[bool, bool]:
    """(reached the app while a write was under way, reached it after it was written)."""
    reached: list[str] = []

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        reached.append(scope["path"])

    async def main() -> tuple[bool, bool]:
        first = SafetyFirst()
        gate = SafetyFirstGate(app, first)
        async with first.writing() as written:
            call = asyncio.create_task(gate({"type": kind, "path": path}, None, None))  # type: ignore[arg-type]
            await asyncio.sleep(0.02)
            during = bool(reached)
            written()
            await asyncio.wait_for(call, 1.0)
        return during, bool(reached)

    return asyncio.run(main())


@pytest.mark.parametrize(
    ("path", "kind"),
    [("/api/v1/orders", "http"), ("/api/v1/health", "http"), ("/api/v1/ws", "websocket")],
)
def test_gate_when_a_write_is_under_way_then_other_requests_wait(path: str, kind: str) -> None:
    assert _gate_calls(path, kind) == (False, True)


@pytest.mark.parametrize("path", ["/api/v1/safety/kill-switch", "/api/v1/safety/status"])
def test_gate_when_a_safety_route_then_it_never_waits(path: str) -> None:
    assert _gate_calls(path) == (True, True)


def _request(action: str, ts: int) -> SignedRequest:
    body = json.dumps({"action": action, "reason": "drill"}).encode()
    return SignedRequest(body, str(ts), sign(SECRET, action, ts), "tester")


def test_desk_when_kill_switch_activated_then_written_once_the_ledger_holds_it_before_cancels(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    settings = Settings(database_url=url, kill_switch_secret=SECRET, var_dir=tmp_path)
    ledger = open_ledger(url)
    desk = safety_desk(settings)
    seen: list[tuple[bool, list[str]]] = []

    def written() -> None:
        steps = [e.step for e in ledger.overview.safety(NOW).kill_switch_steps]
        seen.append((ledger.safety.kill_switch().active, steps))

    req = _request("activate", int(NOW.timestamp()))
    verified = desk.check(req, "kill_switch", NOW)
    assert isinstance(verified, Verified)
    answer = desk.apply_kill_switch(req, verified, NOW, written)
    assert answer.status == 200
    assert len(seen) == 1
    active, steps_then = seen[0]
    assert active
    steps_after = [e.step for e in ledger.overview.safety(NOW).kill_switch_steps]
    assert len(steps_after) > len(steps_then)  # the cancel/close steps came after "written"


def test_desk_when_the_signature_is_forged_then_refused_by_the_check_without_io(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    settings = Settings(database_url=url, kill_switch_secret=SECRET, var_dir=tmp_path)
    forged = SignedRequest(b'{"action":"activate","reason":"x"}', str(int(NOW.timestamp())),
                           "0" * 64, "tester")  # fmt: skip
    # The ledger does not even exist: checking reads and writes nothing (the API runs it on
    # its event loop, and only a verified request holds the door).
    checked = safety_desk(settings).check(forged, "kill_switch", NOW)
    assert isinstance(checked, Refusal)
    assert checked.status == 401
    assert not (tmp_path / "ledger.db").exists()


def test_wait_when_the_write_takes_longer_than_the_hold_then_let_through() -> None:
    async def main() -> None:
        first = SafetyFirst(max_hold_s=0.05)
        async with first.writing():
            await asyncio.wait_for(first.wait(), 1.0)  # the database is slow: not everyone

    asyncio.run(main())


def test_writing_when_the_door_opens_then_on_written_runs_first_on_the_loop() -> None:
    async def main() -> list[str]:
        first, order = SafetyFirst(), []
        async with first.writing(on_written=lambda: order.append("news")) as written:
            waiter = asyncio.create_task(first.wait())
            written()
            await waiter
            order.append("reader")
        return order

    assert asyncio.run(main()) == ["news", "reader"]


def test_safety_first_when_used_on_two_loops_one_after_the_other_then_both_work() -> None:
    first = SafetyFirst()

    async def one_round() -> None:
        async with first.writing() as written:
            waiter = asyncio.create_task(first.wait())
            written()
            await asyncio.wait_for(waiter, 1.0)

    asyncio.run(one_round())
    asyncio.run(one_round())  # an Event of the first loop would refuse the second


def test_process_settings_when_apps_overlap_then_kept_until_the_last_stops() -> None:
    import gc
    import sys

    from serving.priority import GIL_TURN_S, safety_first_process

    before = sys.getswitchinterval()

    async def main() -> None:
        outer, inner = safety_first_process(), safety_first_process()
        await outer.__aenter__()
        await inner.__aenter__()
        await outer.__aexit__(None, None, None)  # the first to start stops first
        assert sys.getswitchinterval() == pytest.approx(GIL_TURN_S)
        assert gc.get_freeze_count() > 0
        await inner.__aexit__(None, None, None)

    asyncio.run(main())
    assert sys.getswitchinterval() == before
    assert gc.get_freeze_count() == 0


def _two_workers(tmp_path: Path, max_hold_s: float = MAX_HOLD_S) -> tuple[SafetyFirst, SafetyFirst]:
    """Two workers' doors over one host file, each with its own mapping of it."""
    path = tmp_path / "api-door"
    return (
        SafetyFirst(max_hold_s, host=HostDoor(path)),
        SafetyFirst(max_hold_s, host=HostDoor(path)),
    )


def test_wait_when_another_worker_is_writing_then_held_until_it_is_written(
    tmp_path: Path,
) -> None:
    async def main() -> None:
        writer, other = _two_workers(tmp_path)
        async with writer.writing() as written:
            waiter = asyncio.create_task(other.wait())
            assert await _blocked(waiter)
            written()
            await asyncio.wait_for(waiter, 1.0)
        await asyncio.wait_for(other.wait(), 0.1)  # open again for good

    asyncio.run(main())


def test_wait_when_another_worker_died_mid_write_then_held_no_longer_than_the_hold(
    tmp_path: Path,
) -> None:
    async def main() -> float:
        _, other = _two_workers(tmp_path, max_hold_s=0.05)
        HostDoor(tmp_path / "api-door").close_until(time.monotonic() + 3600)  # never opened
        started = time.monotonic()
        await other.wait()
        return time.monotonic() - started

    assert asyncio.run(main()) < 0.5


def test_host_door_when_its_file_cannot_be_made_then_only_this_worker_is_held(
    tmp_path: Path,
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the folder should be")
    door = HostDoor(blocker / "api-door")
    door.close_until(time.monotonic() + 60)
    assert door.closed_until() == 0.0
