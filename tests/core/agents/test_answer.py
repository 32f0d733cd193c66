"""read_answer: an LLM's answer becomes a vote only when it validates; else the reason why."""

from __future__ import annotations

import json
from typing import Any

import pytest

from core.agents.answer import InvalidAnswer, read_answer
from core.types import Action


def answer_text(**changes: Any) -> str:
    answer: dict[str, Any] = {
        "action": "BUY",
        "confidence": 0.72,
        "horizon": 6,
        "reasons": ["higher highs on rising volume", "funding is flat"],
        "risk_flags": ["CPI print tomorrow"],
    }
    answer.update(changes)
    return json.dumps(answer)


def test_read_answer_when_valid_json_then_vote_with_every_field() -> None:
    vote = read_answer("bull", answer_text())

    assert vote.agent == "bull"
    assert vote.action is Action.BUY
    assert vote.confidence == 0.72
    assert vote.horizon == 6
    assert vote.reasons == ("higher highs on rising volume", "funding is flat")
    assert vote.reason == "higher highs on rising volume; funding is flat"
    assert vote.risk_flags == ("CPI print tomorrow",)
    assert vote.voted


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (answer_text(leverage=10), r"^leverage: Extra inputs are not permitted"),
        (answer_text(confidence=1.5), r"^confidence: .*less than or equal to 1"),
        (answer_text(reasons=["a", "b", "c", "d"]), r"^reasons: .*at most 3 items"),
        (answer_text(action="YOLO"), r"^action: "),
        ("", r"^empty answer$"),
        ("   \n", r"^empty answer$"),
        ('{"action": "BUY", "confid', r"^answer: Invalid JSON"),
        ("Sure! I think BUY.", r"^answer: Invalid JSON"),
    ],
    ids=[
        "extra-field",
        "confidence-1.5",
        "four-reasons",
        "unknown-action",
        "empty",
        "blank",
        "cut-off-json",
        "prose",
    ],
)
def test_read_answer_when_answer_breaks_schema_then_invalid_answer_names_the_field(
    text: str, message: str
) -> None:
    with pytest.raises(InvalidAnswer, match=message):
        read_answer("bear", text)
