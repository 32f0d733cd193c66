"""End to end with LLM agents on real candles: the pipeline flow debates every decision through
the real openai client against a loopback OpenAI-compatible server, records each call, syncs the
prompts into MLflow's Prompt Registry and traces every call there; then every decision of the
run (and of an offline run) replays bit for bit without a single new call."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import mlflow
import pytest
from typer.testing import CliRunner

from cli.main import app
from core.agents.calls import CallOutcome
from services import bootstrap
from tests.flows.test_pipeline_e2e import write_real_candles
from tests.llm_server import LlmServer, answer

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("prefect_harness")]

REPLAY = 6


@pytest.fixture
def env(app_settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    monkeypatch.setenv("TRADEFLOW_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("TRADEFLOW_REPLAY_CANDLES", str(REPLAY))
    monkeypatch.setenv("TRADEFLOW_MODEL_MEMBERS", "xgboost,lightgbm")
    monkeypatch.setenv("TRADEFLOW_LABEL_COST", "0")
    monkeypatch.setenv("TRADEFLOW_POLICY_REQUIRE_SIGNIFICANCE", "false")
    write_real_candles(tmp_path / "data", 1200)
    app_settings.cache_clear()
    return app_settings()


def by_agent(body: dict[str, Any]) -> Any:
    if "You are the Bull" in body["messages"][0]["content"]:
        return answer("BUY", 0.7, reasons=("ema12 above ema26",))
    return answer("HOLD", 0.5, reasons=("rsi mid-range",), risk_flags=("thin book",))


def test_pipeline_when_llm_agents_then_every_call_recorded_traced_and_replayable(
    env,
    llm_server: LlmServer,
    monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
) -> None:
    from flows.pipeline import pipeline

    pipeline()  # offline first: the rule agents decide the first window
    llm_server.answer_with(by_agent)
    monkeypatch.setenv("TRADEFLOW_LLM_BASE_URL", llm_server.base_url)
    monkeypatch.setenv("TRADEFLOW_LLM_MODEL", "loopback-model")
    monkeypatch.setenv("TRADEFLOW_REPLAY_CANDLES", str(2 * REPLAY))  # REPLAY new candles
    bootstrap.forget()
    settings = bootstrap.get_settings()
    pipeline()

    ledger = bootstrap.ledger(settings)
    decisions = ledger.orders.decisions(settings.account)
    llm = [d for d in decisions if str(d.provenance.get("panel", "")).startswith("llm:")]
    assert len(llm) == REPLAY * 2
    assert len(llm_server.requests) == REPLAY * 2 * 4  # 2 + 2 x 1 round per symbol
    for d in llm:
        calls = ledger.agent_calls.for_decision(d.decision_id)
        assert [c.outcome for c in calls] == [CallOutcome.OK] * 4
        assert {c.template_version.split("+")[0] for c in calls} == {"1"}  # registry version
    assert llm[0].votes[1].risk_flags == ("thin book",)

    # Prompts are versioned in MLflow and every call is a trace tagged with its decision.
    assert mlflow.genai.load_prompt("prompts:/tradeflow-bull@production").version == 1
    traces = mlflow.search_traces(
        filter_string=f"tags.decision_id = '{llm[0].decision_id}'", return_type="list"
    )
    assert len(traces) == 4

    sent = len(llm_server.requests)
    result = CliRunner().invoke(app, ["replay-decision", "--all"])
    assert result.exit_code == 0, result.output
    assert f"{len(decisions)} decision(s) replayed" in result.output
    assert result.output.count("identical") == len(decisions)
    assert len(llm_server.requests) == sent, "a replay called the provider"
