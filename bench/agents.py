"""The LLM debate's speed: a 2-symbol decision with one debate round, against a loopback
OpenAI-compatible server that answers every request after 300 ms, with references in one run.

Run: .venv/bin/python -m bench.agents [--decisions N] [--delay-ms MS] [--reference-decisions N]
     (from the repo root; TRADEFLOW_SHARED_DATA if the data is elsewhere)

Workload: services.debate.LlmPanel exactly as the decision flow holds it (the real openai SDK
through infra.llm.openai_chat.OpenAiChat, the repository's prompt templates, rounds=1, the
replay cache off, no budget limit) deliberating on BTC/USDT and ETH/USDT 1h at once. The briefs
are real: core.decision.agent_context on the features core.features.build makes of the 2024
Binance candles (genetrader files), one decision per candle time, the N newest candle times
whose features are all complete. The model's probability and edge are fixed numbers (this
measures the debate, not the model). The server (tests/llm_server.py) answers by the system
prompt: "You are the Bull" -> BUY, "You are the Bear" -> HOLD; its token counts are its own
estimate (4 characters a token), not a tokenizer's.

Figures: wall time per decision p50/p95/p99/max (target p99 < 1.5 s), calls per
symbol-decision (target <= 4), tokens, and our overhead beside the server's sleep, split into
the HTTP/SDK part (the slowest call of each round beyond its sleep) and the panel's own part.

References: the floor, 2 rounds x the server's delay (the least a 1-round debate can take); the
same 8 calls a decision made one after another by a plain loop of raw openai SDK calls (how a
naive implementation such as TradingAgents' sequential agents runs), measured here -> our
speed-up; and, not measured, TradingAgents' 12 min 56 s per decision (their issue #111).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd

from bench.loadgen import percentile
from core.alerts import Severity
from infra.shared_data import locate_shared_data

DATA = locate_shared_data() / "ohlcv" / "genetrader-binance-spot-2024"
SYMBOLS = ("BTC/USDT", "ETH/USDT")
TIMEFRAME = "1h"
ROUNDS = 1
MODEL = "bench-chat"
PROBABILITY, EDGE = 0.56, 0.0012  # fixed: the model is not what this measures
TARGET_P99_S = 1.5
TARGET_CALLS = 4  # per symbol-decision: 2 agents x (the opening + 1 rebuttal round)
TRADINGAGENTS_S = 12 * 60 + 56  # TradingAgents issue #111: one decision, a real provider
CHARS_PER_TOKEN = 4
log = logging.getLogger("bench.agents")


# -- the panel's surroundings ----------------------------------------------------------------


class NoCallLog:
    """core.ports.AgentCallLog with nothing spent and nothing cached: every call goes out."""

    def spent_since(self, since: datetime) -> tuple[int, Decimal]:
        return 0, Decimal(0)

    def cached(self, model: str, prompt_hash: str) -> None:
        return None


class LogNotifier:
    """core.ports.Notifier that only logs (a budget stop would show here)."""

    def send(self, title: str, body: str, *, severity: Severity = Severity.WARNING) -> bool:
        log.warning("%s: %s", title, body)
        return True


def make_panel(base_url: str, traced: bool = False) -> Any:
    """The panel as `make run` builds it; `traced`: every call an MLflow trace, as by default
    (the store must be configured first)."""
    from core.clock import SystemClock
    from infra.llm.openai_chat import OpenAiChat
    from infra.llm.prompts import repo_templates
    from registry.tracing import TracedChat
    from services.debate import DebateConfig, LlmPanel

    cfg = DebateConfig(rounds=ROUNDS, cache="off")
    chat = OpenAiChat(
        base_url, MODEL, None, timeout_s=10.0, max_output_tokens=cfg.max_output_tokens
    )
    wrapped = TracedChat(chat) if traced else chat
    return LlmPanel(wrapped, repo_templates(), NoCallLog(), cfg, SystemClock(), LogNotifier())


def run_traced(base_url: str, batches: Sequence[Sequence[Any]]) -> list[Sample]:
    """The same decisions with MLflow tracing on, into a throwaway sqlite store."""
    import tempfile

    from registry.mlflow_registry import configure
    from registry.tracing import flush_traces

    with tempfile.TemporaryDirectory(prefix="bench-agents-") as tmp:
        configure(f"sqlite:///{tmp}/mlflow.db", Path(tmp) / "artifacts")
        panel = make_panel(base_url, traced=True)
        try:
            return run_ours(panel, batches)[1:]
        finally:
            panel.close()
            flush_traces()


def responder(delay_s: float) -> Any:
    """The server's answer to each request: the agent's vote after `delay_s`."""
    from tests.llm_server import Reply, answer, status

    def reply(request: dict[str, Any]) -> Reply:
        messages = request.get("messages") or [{}]
        system = str(messages[0].get("content", ""))
        if "You are the Bull" in system:
            body = answer("BUY", 0.64, 4, ("rsi_14 rebounds from 41",))
        elif "You are the Bear" in system:
            body = answer("HOLD", 0.55, 4, ("adx_14 below 20: no trend",))
        else:  # a prompt the bench does not know: fail loudly, never answer it
            return status(400, "neither the Bull nor the Bear")
        chars = sum(len(str(m.get("content", ""))) for m in messages)
        usage = (chars // CHARS_PER_TOKEN, len(body.content or "") // CHARS_PER_TOKEN)
        return replace(body, delay_s=delay_s, usage=usage)

    return reply


# -- real briefs -----------------------------------------------------------------------------


def complete_features() -> tuple[dict[str, pd.DataFrame], dict[str, pd.Series]]:
    """Each symbol's feature rows with every feature present, and its closes, by open time."""
    from core.features.build import build_features
    from core.features.registry import FEATURE_NAMES
    from infra.market_data.files import read_candle_file

    frames = {
        s: read_candle_file(DATA / f"{s.replace('/', '_')}-{TIMEFRAME}.feather") for s in SYMBOLS
    }
    btc = frames["BTC/USDT"]
    features = {
        s: build_features(f, btc).loc[:, list(FEATURE_NAMES)].dropna() for s, f in frames.items()
    }
    closes = {s: f.set_index("open_time")["close"] for s, f in frames.items()}
    return features, closes


def real_requests(decisions: int) -> list[list[Any]]:
    """One request per symbol for each of the `decisions` newest candle times at which every
    symbol's features are complete, newest first."""
    from core.agents.panel import PanelRequest
    from core.consensus import ConsensusConfig
    from core.decision import agent_context
    from core.orders import decision_id_for
    from core.risk.limits import RiskState
    from core.types import Symbol

    features, closes = complete_features()
    common = features[SYMBOLS[0]].index
    for s in SYMBOLS[1:]:
        common = common.intersection(features[s].index)
    if len(common) < decisions:
        raise ValueError(f"only {len(common)} complete candle times, {decisions} asked")
    horizon = ConsensusConfig().policy.horizon
    batches = []
    for t in reversed(common[-decisions:]):
        prices = {Symbol(s): Decimal(str(closes[s][t])) for s in SYMBOLS}
        state = RiskState(cash=Decimal(10_000), positions={}, prices=prices)
        batch = []
        for s in SYMBOLS:
            inp = decision_input(s, t, prices[Symbol(s)], features[s].loc[t])
            did = decision_id_for(inp.account, s, TIMEFRAME, inp.candle_time)
            batch.append(PanelRequest(did, agent_context(inp, state, horizon)))
        batches.append(batch)
    return batches


def decision_input(symbol: str, t: pd.Timestamp, price: Decimal, row: pd.Series) -> Any:
    from core.decision import DecisionInput
    from core.features.registry import feature_set_version
    from core.types import Symbol

    return DecisionInput(
        account="bench",
        symbol=Symbol(symbol),
        timeframe=TIMEFRAME,
        candle_time=t.to_pydatetime(),
        price=price,
        features={k: float(v) for k, v in row.items()},
        model_probability=PROBABILITY,
        model_name="fixed",
        model_version="0",
        feature_set_version=feature_set_version(),
        model_edge=EDGE,
        model_tradeable=True,
    )


# -- ours ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """One decision through the panel."""

    wall_s: float
    calls: tuple[int, ...]  # AgentCalls per symbol
    unanswered: int  # calls whose outcome is not OK
    tokens_in: int
    tokens_out: int
    slowest_calls_s: float  # the slowest call of each round, summed: the wait on the network


def sample_of(wall_s: float, deliberations: Sequence[Any]) -> Sample:
    calls = [c for d in deliberations for c in d.calls]
    slowest: dict[int, float] = {}
    for c in calls:
        slowest[c.round] = max(slowest.get(c.round, 0.0), c.latency_ms / 1e3)
    return Sample(
        wall_s=wall_s,
        calls=tuple(len(d.calls) for d in deliberations),
        unanswered=sum(not c.outcome.answered for c in calls),
        tokens_in=sum(c.tokens_in for c in calls),
        tokens_out=sum(c.tokens_out for c in calls),
        slowest_calls_s=sum(slowest.values()),
    )


def run_ours(panel: Any, batches: Sequence[Sequence[Any]]) -> list[Sample]:
    samples = []
    for requests in batches:
        started = time.perf_counter()
        result = panel.deliberate(requests, datetime.now(tz=UTC))
        wall = time.perf_counter() - started
        samples.append(sample_of(wall, [result[r.decision_id] for r in requests]))
    return samples


# -- the reference: raw SDK calls, one after another ----------------------------------------


def run_reference(base_url: str, batches: Sequence[Sequence[Any]]) -> tuple[list[float], int]:
    """Wall seconds per decision of a plain sequential loop of raw openai SDK calls, each
    symbol's Bull then Bear, round after round, on the same rendered prompts; and the calls
    made per decision."""
    import openai

    from infra.llm.prompts import repo_templates

    client = openai.OpenAI(base_url=base_url, api_key="not-needed", max_retries=0, timeout=10.0)
    templates = repo_templates()
    walls, calls = [], 0
    for requests in batches:
        started, calls = time.perf_counter(), 0
        for request in requests:
            said: dict[str, str] = {}
            for round_ in range(ROUNDS + 1):
                for agent, other in (("bull", "bear"), ("bear", "bull")):
                    opponent = (
                        f"The {other.title()} answered: {said[other]}. Keep or revise your answer."
                        if round_
                        else ""
                    )
                    messages = raw_messages(templates, request.context, agent, round_, opponent)
                    said[agent] = raw_call(client, messages)
                    calls += 1
        walls.append(time.perf_counter() - started)
    return walls, calls


def raw_messages(
    templates: Mapping[str, Any], context: Any, agent: str, round_: int, opponent: str
) -> list[dict[str, str]]:
    values = {"symbol": context.symbol, "timeframe": TIMEFRAME}
    system = templates[f"tradeflow-{agent}"].render(values)
    user = templates["tradeflow-turn"].render(
        {
            "round": str(round_),
            "rounds": str(ROUNDS),
            "brief": context.brief.render(),
            "opponent": opponent,
        }
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def raw_call(client: Any, messages: list[dict[str, str]]) -> str:
    completion = client.chat.completions.create(
        model=MODEL,
        messages=messages,
        max_tokens=300,
        temperature=0.0,
        response_format={"type": "json_object"},
    )
    content = completion.choices[0].message.content or ""
    return json.dumps(json.loads(content), sort_keys=True)  # what the next prompt quotes


# -- the report ------------------------------------------------------------------------------


def spread(values: Sequence[float]) -> str:
    p50, p95, p99 = (percentile(list(values), q) for q in (0.5, 0.95, 0.99))
    return f"p50 {p50:.3f} s, p95 {p95:.3f} s, p99 {p99:.3f} s, max {max(values):.3f} s"


def verdicts(samples: Sequence[Sample]) -> tuple[bool, bool, bool]:
    """p99 under target, calls per symbol under target, every call answered."""
    p99 = percentile([s.wall_s for s in samples], 0.99)
    most = max(c for s in samples for c in s.calls)
    return p99 < TARGET_P99_S, most <= TARGET_CALLS, not any(s.unanswered for s in samples)


def report_ours(samples: Sequence[Sample], first_s: float, floor_s: float) -> None:
    walls = [s.wall_s for s in samples]
    per_symbol = [c for s in samples for c in s.calls]
    fast, few, _ = verdicts(samples)
    print(f"first decision (connections opening, not in the figures): {first_s:.3f} s")
    print(
        f"wall per decision: {spread(walls)} "
        f"(target p99 < {TARGET_P99_S} s: {'PASS' if fast else 'FAIL'})"
    )
    print(
        f"calls per symbol-decision: {statistics.mean(per_symbol):g} (min {min(per_symbol)}, "
        f"max {max(per_symbol)}; target <= {TARGET_CALLS}: {'PASS' if few else 'FAIL'}); "
        f"unanswered calls: {sum(s.unanswered for s in samples)}"
    )
    print(
        f"tokens per decision (the server's estimate, {CHARS_PER_TOKEN} chars a token): "
        f"in {statistics.mean(s.tokens_in for s in samples):,.0f}, "
        f"out {statistics.mean(s.tokens_out for s in samples):,.0f}"
    )
    over = [w - floor_s for w in walls]
    http = [s.slowest_calls_s - floor_s for s in samples]
    own = [s.wall_s - s.slowest_calls_s for s in samples]
    print(
        f"our overhead beside the server's sleep (wall - {floor_s:.3f} s): "
        f"p50 {percentile(over, 0.5) * 1e3:.1f} ms, p99 {percentile(over, 0.99) * 1e3:.1f} ms; "
        f"of which HTTP + SDK p50 {percentile(http, 0.5) * 1e3:.1f} ms, "
        f"panel p50 {percentile(own, 0.5) * 1e3:.1f} ms"
    )


def report_references(
    samples: Sequence[Sample], floor_s: float, reference: tuple[list[float], int], delay_s: float
) -> None:
    p50 = percentile([s.wall_s for s in samples], 0.5)
    p99 = percentile([s.wall_s for s in samples], 0.99)
    walls, calls = reference
    ref50 = percentile(walls, 0.5)
    print(
        f"floor, {ROUNDS + 1} rounds x {delay_s * 1e3:.0f} ms (the least a {ROUNDS}-round debate "
        f"can take): {floor_s:.3f} s; ratio ours p50 / floor {p50 / floor_s:.2f}x"
    )
    print(
        f"reference, raw openai SDK in a sequential loop ({calls} calls a decision, "
        f"{len(walls)} decisions): p50 {ref50:.3f} s, max {max(walls):.3f} s; overhead beside "
        f"{calls} x {delay_s * 1e3:.0f} ms p50 {(ref50 - calls * delay_s) * 1e3:.1f} ms"
    )
    print(f"speed-up, reference p50 / ours p50: {ref50 / p50:.2f}x")
    print(
        f"external, not measured here: TradingAgents {TRADINGAGENTS_S // 60} min "
        f"{TRADINGAGENTS_S % 60} s per decision (their issue #111, a real provider's latency); "
        f"/ ours p99: {TRADINGAGENTS_S / p99:,.0f}x"
    )


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--decisions", type=int, default=30)
    parser.add_argument("--delay-ms", type=float, default=300.0, help="the server's answer time")
    parser.add_argument(
        "--reference-decisions", type=int, default=3, help="decisions the raw-SDK loop makes"
    )
    parser.add_argument(
        "--no-tracing", action="store_true", help="skip the run with MLflow tracing on"
    )
    args = parser.parse_args(argv)
    if args.decisions < 1 or args.reference_decisions < 1 or args.delay_ms <= 0:
        parser.error("--decisions and --reference-decisions >= 1, --delay-ms > 0")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    import openai

    from tests.llm_server import serving

    args = parse(argv)
    delay_s, floor_s = args.delay_ms / 1e3, (ROUNDS + 1) * args.delay_ms / 1e3
    batches = real_requests(args.decisions + 1)  # the extra one opens the connections
    brief_chars = len(batches[0][0].context.brief.render())
    with serving() as server:
        server.answer_with(responder(delay_s))
        panel = make_panel(server.base_url)
        try:
            first, *samples = run_ours(panel, batches)
        finally:
            panel.close()
        traced = [] if args.no_tracing else run_traced(server.base_url, batches)
        reference = run_reference(server.base_url, batches[: args.reference_decisions + 1])
    reference = (reference[0][1:], reference[1])  # its first decision opened its connection
    print(
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
        f"Python {platform.python_version()}, openai {openai.__version__}"
    )
    print(
        f"workload: {args.decisions} decisions x {len(SYMBOLS)} symbols ({', '.join(SYMBOLS)} "
        f"{TIMEFRAME}, the newest complete 2024 feature rows; briefs ~{brief_chars:,} chars; "
        f"model p {PROBABILITY} and edge {EDGE} fixed), {ROUNDS} debate round, cache off, "
        f"server answers after {args.delay_ms:.0f} ms"
    )
    report_ours(samples, first.wall_s, floor_s)
    if traced:
        walls, plain = [s.wall_s for s in traced], [s.wall_s for s in samples]
        print(
            f"with MLflow tracing on (the default; every call a trace, sqlite store): "
            f"{spread(walls)}; tracing adds p50 "
            f"{(percentile(walls, 0.5) - percentile(plain, 0.5)) * 1e3:.1f} ms a decision"
        )
    report_references(samples, floor_s, reference, delay_s)
    print(f"verdict: {'PASS' if all(verdicts(samples)) else 'FAIL'}")


if __name__ == "__main__":
    main()
