"""The API's background loop: a pass that fails is logged and the loop goes on, pausing longer
while failures last."""

from __future__ import annotations

import asyncio
import threading

import pytest

from core.errors import LedgerUnavailable
from serving.background import next_pause, run_forever


def test_run_forever_when_passes_fail_then_logged_and_the_loop_goes_on_until_stopped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls: list[str] = []
    third = threading.Event()
    failures: list[Exception] = [LedgerUnavailable("ledger database unavailable"), KeyError("bug")]

    def work() -> bool:
        calls.append(threading.current_thread().name)
        if failures:
            raise failures.pop(0)
        third.set()
        return False

    async def main() -> None:
        stop = asyncio.Event()
        task = asyncio.create_task(run_forever(work, stop, period_s=0.001, max_pause_s=0.004))
        await asyncio.wait_for(asyncio.to_thread(third.wait), 10)
        stop.set()
        await asyncio.wait_for(task, 10)

    asyncio.run(main())

    assert len(calls) >= 3
    assert threading.main_thread().name not in calls  # passes run off the event loop's thread
    assert "background pass failed: ledger database unavailable" in caplog.text
    assert "KeyError: 'bug'" in caplog.text  # an unexpected error keeps its traceback


def test_run_forever_when_work_says_more_then_next_pass_without_the_pause() -> None:
    backlog = [True, True, True, False]
    drained = threading.Event()

    def work() -> bool:
        more = backlog.pop(0)
        if not more:
            drained.set()
        return more

    async def main() -> None:
        # an hour's pause: only passes that follow at once drain the backlog within the wait
        stop = asyncio.Event()
        task = asyncio.create_task(run_forever(work, stop, period_s=3600, max_pause_s=3600))
        drained_in_time = await asyncio.to_thread(drained.wait, 10)
        stop.set()  # ends the hour's pause at once
        await asyncio.wait_for(task, 10)
        assert drained_in_time

    asyncio.run(main())

    assert backlog == []


@pytest.mark.parametrize(
    ("pause", "failed", "expected"),
    [(0.5, True, 1.0), (16.0, True, 30.0), (30.0, True, 30.0), (30.0, False, 0.5)],
)
def test_next_pause_when_failing_then_doubles_up_to_the_cap_and_resets_after_success(
    pause: float, failed: bool, expected: float
) -> None:
    assert next_pause(pause, failed, 0.5, 30.0) == expected
