"""The driver-level insert stores exactly what SQLAlchemy's own insert stores (SQLite and
PostgreSQL): same columns, same stored values, read back at the driver level."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import Connection, Engine, delete, insert

from core.decision import Decision
from infra.ledger.database import engine_for
from infra.ledger.driver_insert import DriverInsert, Same
from infra.ledger.mappers import DECISION_COLUMNS, decision_tuple, decision_values
from infra.ledger.models import DecisionRow


@pytest.fixture
def engine(ledger: Any, ledger_url: str) -> Engine:
    """The ledger's engine, its schema migrated (by the `ledger` fixture)."""
    return engine_for(ledger_url)


@pytest.fixture
def insert_decisions(engine: Engine) -> DriverInsert:
    return DriverInsert(DecisionRow.__table__, DECISION_COLUMNS, engine.dialect)


def stored(connection: Connection) -> list[tuple[Any, ...]]:
    columns = ", ".join(DECISION_COLUMNS)
    sql = f"SELECT {columns} FROM decisions ORDER BY decision_id"
    return [tuple(r) for r in connection.exec_driver_sql(sql).all()]


def test_execute_when_decisions_are_inserted_then_stored_as_sqlalchemy_stores_them(
    engine: Engine, insert_decisions: DriverInsert, decisions: list[Decision]
) -> None:
    table = DecisionRow.__table__
    with engine.begin() as c:
        c.execute(insert(table), [decision_values(d) for d in decisions])
        expected = stored(c)
        c.execute(delete(table))
        insert_decisions.execute(c, [decision_tuple(d) for d in decisions])
        assert stored(c) == expected
    assert any(d.order is not None for d in decisions)  # the sample has orders
    assert any(d.verdict is not None for d in decisions)  # and risk verdicts


def test_parameters_when_a_row_is_short_then_refused_and_nothing_sent(
    engine: Engine, insert_decisions: DriverInsert, decisions: list[Decision]
) -> None:
    rows = [decision_tuple(d) for d in decisions[:2]]
    with pytest.raises(ValueError, match=r"decisions: row 1 has 21 values for the 22 columns"):
        insert_decisions.parameters([rows[0], rows[1][:-1]])
    with engine.connect() as c:
        assert stored(c) == []


def test_execute_when_a_value_is_refused_then_the_error_names_it_and_no_row_is_written(
    engine: Engine, insert_decisions: DriverInsert, decisions: list[Decision]
) -> None:
    rows = [decision_tuple(d) for d in decisions[:3]]
    at = DECISION_COLUMNS.index("decided_at")
    naive = (*rows[2][:at], rows[2][at].replace(tzinfo=None), *rows[2][at + 1 :])
    with pytest.raises(ValueError, match="naive datetime"), engine.begin() as c:
        insert_decisions.execute(c, [*rows[:2], naive])
    with engine.connect() as c:
        assert stored(c) == []


def _columns(decisions: list[Decision]) -> dict[str, Any]:
    """The decisions' values a column at a time; their one account as a Same column."""
    rows = [decision_tuple(d) for d in decisions]
    by_column = {name: [row[j] for row in rows] for j, name in enumerate(DECISION_COLUMNS)}
    (account,) = set(by_column["account"])
    return by_column | {"account": Same(account)}


def test_column_parameters_when_decisions_are_inserted_then_stored_as_row_by_row(
    engine: Engine, insert_decisions: DriverInsert, decisions: list[Decision]
) -> None:
    with engine.begin() as c:
        insert_decisions.execute(c, [decision_tuple(d) for d in decisions])
        expected = stored(c)
        c.execute(delete(DecisionRow.__table__))
        c.exec_driver_sql(
            insert_decisions.sql, insert_decisions.column_parameters(_columns(decisions))
        )
        assert stored(c) == expected


def _rows_of(columns: dict[str, Any]) -> list[tuple[Any, ...]]:
    """`columns` as the row tuples the row-by-row insert takes."""
    (n,) = {len(v) for v in columns.values() if not isinstance(v, Same)}
    full = [[v.value] * n if isinstance(v, Same) else v for v in map(columns.get, DECISION_COLUMNS)]
    return list(zip(*full, strict=True))


def test_column_parameters_when_a_column_is_missing_or_short_then_refused_and_nothing_sent(
    engine: Engine, insert_decisions: DriverInsert, decisions: list[Decision]
) -> None:
    columns = _columns(decisions[:3])
    without = {k: v for k, v in columns.items() if k != "regime"}
    with pytest.raises(ValueError, match=r"decisions: columns missing \['regime'\], unknown \[\]"):
        insert_decisions.column_parameters(without)
    short = columns | {"score": columns["score"][:2]}
    with pytest.raises(ValueError, match="decisions: columns of different lengths"):
        insert_decisions.column_parameters(short)
    with engine.connect() as c:
        assert stored(c) == []


def _alike(decisions: list[Decision], account: str) -> dict[str, Any]:
    """The decisions' columns, every value that is one for all of them given as a `Same`
    (text, numbers, NULL, JSON), the account replaced by `account`."""
    columns = _columns(decisions) | {"account": Same(account)}
    for name, values in list(columns.items()):
        if not isinstance(values, Same) and all(v == values[0] for v in values):
            columns[name] = Same(values[0])
    return columns


@pytest.mark.parametrize("account", ["paper", "o'brien; 5% --", "a ? and a %s"])
def test_column_rows_when_constants_are_written_into_the_statement_then_stored_the_same(
    engine: Engine, insert_decisions: DriverInsert, decisions: list[Decision], account: str
) -> None:
    # The literals are quoted by the dialect (a quote, a %, placeholders inside the text).
    columns = _alike(decisions[1:], account)
    with engine.begin() as c:
        insert_decisions.execute(c, _rows_of(columns))  # the row-by-row insert
        expected = stored(c)
        c.execute(delete(DecisionRow.__table__))
        rows = insert_decisions.column_rows(columns)
        rows.execute(c)
        assert stored(c) == expected
    # Account, timeframe and the model's names written in: fewer values bound.
    assert len(rows.parameters[0]) <= len(DECISION_COLUMNS) - 5
    assert {row[DECISION_COLUMNS.index("account")] for row in expected} == {account}


@pytest.mark.parametrize(
    ("column", "value", "text"),
    [
        ("score", 88.6764444228616, "88.676"),  # SQLite 3.40 reads this literal 1 ulp off
        ("score", float("nan"), "nan"),
        ("account", "back\\slash", "back"),  # an escape where standard_conforming_strings is off
    ],
)
def test_column_rows_when_a_value_is_a_float_or_text_with_a_backslash_then_bound(
    engine: Engine,
    insert_decisions: DriverInsert,
    decisions: list[Decision],
    column: str,
    value: object,
    text: str,
) -> None:
    columns = _alike(decisions[1:], "paper") | {column: Same(value)}
    rows = insert_decisions.column_rows(columns)
    assert f"'{text}" not in rows.sql
    assert f", {text}" not in rows.sql
    bound = rows.parameters[0]
    assert any(v is value or (type(v) is type(value) and v == value) for v in bound)
    if column == "score" and value == value:  # stored exactly (not NaN: SQLite stores NULL)
        with engine.begin() as c:
            rows.execute(c)
            stored_scores = {r[0] for r in c.exec_driver_sql("SELECT score FROM decisions")}
        assert stored_scores == {value}
