"""bench.agents smoke-run small (2 decisions, a 50 ms server): its figures are printed and
hold what a 1-round debate on 2 symbols must show."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest

from bench import agents

DELAY_S = 0.05


@pytest.fixture(scope="module")
def printed(shared_data: Path) -> str:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        agents.main(
            ["--decisions", "2", "--delay-ms", "50", "--reference-decisions", "1", "--no-tracing"]
        )
    return out.getvalue()


def figure(text: str, pattern: str) -> float:
    found = re.search(pattern, text)
    assert found is not None, f"{pattern!r} not in:\n{text}"
    return float(found.group(1).replace(",", ""))


def test_bench_when_run_small_then_every_figure_is_printed(printed: str) -> None:
    for start in (
        "machine:",
        "workload: 2 decisions x 2 symbols",
        "first decision",
        "wall per decision: p50",
        "calls per symbol-decision:",
        "tokens per decision",
        "our overhead beside the server's sleep",
        "floor, 2 rounds x 50 ms",
        "reference, raw openai SDK in a sequential loop (8 calls a decision, 1 decisions)",
        "speed-up, reference p50 / ours p50:",
        "external, not measured here: TradingAgents 12 min 56 s",
        "verdict: PASS",
    ):
        assert any(line.startswith(start) for line in printed.splitlines()), start


def test_bench_when_one_debate_round_then_4_calls_per_symbol_all_answered(printed: str) -> None:
    assert "calls per symbol-decision: 4 (min 4, max 4; target <= 4: PASS)" in printed
    assert figure(printed, r"unanswered calls: (\d+)") == 0
    assert figure(printed, r"tokens per decision .*?: in ([\d,]+)") > 1_000  # real briefs


def test_bench_when_server_sleeps_then_walls_are_above_their_floors(printed: str) -> None:
    ours = figure(printed, r"wall per decision: p50 ([\d.]+) s")
    reference = figure(printed, r"sequential loop .*?: p50 ([\d.]+) s")
    assert ours >= 2 * DELAY_S  # two rounds, each at least one server sleep
    assert reference >= 8 * DELAY_S  # eight calls, one after another
    assert figure(printed, r"speed-up, reference p50 / ours p50: ([\d.]+)x") == pytest.approx(
        reference / ours, rel=0.02
    )
