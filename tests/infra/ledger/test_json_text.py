"""The ledger's JSON text is json.dumps's, byte for byte, and both engines write it."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from sqlalchemy import insert

from core.decision import Decision
from infra.ledger.database import engine_for
from infra.ledger.json_text import dumps
from infra.ledger.mappers import decision_values
from infra.ledger.models import DecisionRow

_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text()
)
JSON_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES)
def test_dumps_when_given_any_json_value_then_the_text_is_json_dumps(value: Any) -> None:
    assert dumps(value) == json.dumps(value)


@pytest.mark.parametrize("value", [object(), {1j: 1}, b"bytes"])
def test_dumps_when_a_value_is_not_json_then_type_error_as_json_dumps(value: Any) -> None:
    with pytest.raises(TypeError):
        json.dumps(value)
    with pytest.raises(TypeError):
        dumps(value)


def test_insert_when_decisions_are_stored_then_their_json_columns_hold_json_dumps_text(
    ledger: Any, ledger_url: str, decisions: list[Decision]
) -> None:
    values = [decision_values(d) for d in decisions[:3]]
    with engine_for(ledger_url).begin() as c:
        c.execute(insert(DecisionRow.__table__), values)
        ids = ", ".join(f"'{v['decision_id']}'" for v in values)
        text = "SELECT CAST(votes AS TEXT), CAST(contributions AS TEXT) FROM decisions"
        sql = f"{text} WHERE decision_id IN ({ids})"
        texts = sorted(tuple(row) for row in c.exec_driver_sql(sql).all())
    expected = sorted((json.dumps(v["votes"]), json.dumps(v["contributions"])) for v in values)
    assert texts == expected
