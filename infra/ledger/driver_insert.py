"""Many rows into one table through the driver's own executemany.

A backtest streams hundreds of thousands of decisions. SQLAlchemy's bulk insert spent most of
that time on its per-row parameter handling (a dict per row, a processor lookup per value),
more than the decision step itself. Here each column's values are converted in one pass by the
dialect's own bind processor, the very function SQLAlchemy would apply, so what is stored
reads back exactly as an ORM insert would have stored it (a test compares the two on SQLite and
PostgreSQL)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from itertools import repeat
from typing import Any, NamedTuple

from sqlalchemy import JSON, Connection, DateTime, Dialect, String, Table

from infra.ledger.json_text import JsonText


class DriverInsert:
    """`INSERT INTO table (columns) VALUES (...)` for rows given as tuples in `columns` order."""

    def __init__(self, table: Table, columns: Sequence[str], dialect: Dialect) -> None:
        quote = dialect.identifier_preparer.quote
        self._mark = "?" if dialect.paramstyle == "qmark" else "%s"
        self.columns, self.table = tuple(columns), table.name
        self._into = (
            f"INSERT INTO {dialect.identifier_preparer.format_table(table)} "
            f"({', '.join(quote(c) for c in self.columns)}) VALUES "
        )
        self.sql = self._statement({})
        self._literal = _literals(dialect)
        self._statements: dict[tuple[tuple[str, str], ...], str] = {(): self.sql}
        self._processors: list[Callable[[Any], Any] | None] = []
        for name in self.columns:
            kind = table.c[name].type
            process = kind.dialect_impl(dialect).bind_processor(dialect)
            if process is not None and isinstance(kind, JSON):
                process = _json_constants(process, _text_as_json(dialect))
            elif process is not None and isinstance(getattr(kind, "impl", kind), DateTime):
                process = _repeats(process)
            self._processors.append(process)

    def parameters(self, rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
        """The rows as the driver takes them: converted a column at a time."""
        if not rows:
            return []
        width = len(self.columns)
        bad = next((i for i, row in enumerate(rows) if len(row) != width), None)
        if bad is not None:
            raise ValueError(
                f"{self.table}: row {bad} has {len(rows[bad])} values for the {width} columns "
                f"{', '.join(self.columns)}"
            )
        by_column = zip(*rows, strict=True)
        converted = [
            values if process is None else list(map(process, values))
            for process, values in zip(self._processors, by_column, strict=True)
        ]
        return list(zip(*converted, strict=True))

    def execute(self, connection: Connection, rows: Sequence[tuple[Any, ...]]) -> None:
        if rows:
            connection.exec_driver_sql(self.sql, self.parameters(rows))

    def column_parameters(
        self, columns: Mapping[str, Sequence[Any] | Same]
    ) -> list[tuple[Any, ...]]:
        """Rows given as a list of values per column (or one value for all: `Same`), every
        value as the driver binds it (`sql`'s parameters). A column's value that repeats is
        converted once."""
        return self._column_rows(columns, literals=False).parameters

    def column_rows(self, columns: Mapping[str, Sequence[Any] | Same]) -> Rows:
        """`column_parameters`, but a `Same` column whose value converts to text, an integer
        or NULL is written into the statement as its literal: the driver binds the other
        columns alone (a backtest's holds have 11 of 22 columns alike, and binding them for
        every row was a sixth of SQLite's time)."""
        return self._column_rows(columns, literals=True)

    def _column_rows(self, columns: Mapping[str, Sequence[Any] | Same], literals: bool) -> Rows:
        n = self._length(columns)
        written: dict[str, str] = {}
        bound: list[Iterable[Any]] = []
        for name, process in zip(self.columns, self._processors, strict=True):
            values = columns[name]
            if not isinstance(values, Same):
                bound.append(values if process is None else map(process, values))
                continue
            one = values.value if process is None else process(values.value)
            literal = self._literal(one) if literals else None
            if literal is None:
                bound.append(repeat(one, n))
            else:
                written[name] = literal
        key = tuple(written.items())
        sql = self._statements.get(key)
        if sql is None:
            sql = self._statements[key] = self._statement(written)
        return Rows(sql, list(zip(*bound, strict=True)) if bound else [()] * n)

    def _length(self, columns: Mapping[str, Sequence[Any] | Same]) -> int:
        """The rows' count; ValueError when a column is missing, unknown or of another length."""
        if set(columns) != set(self.columns):
            missing, extra = set(self.columns) - set(columns), set(columns) - set(self.columns)
            raise ValueError(
                f"{self.table}: columns missing {sorted(missing)}, unknown {sorted(extra)}"
            )
        lengths = {name: len(v) for name, v in columns.items() if not isinstance(v, Same)}
        if len(set(lengths.values())) > 1:
            raise ValueError(f"{self.table}: columns of different lengths {lengths}")
        return next(iter(lengths.values()), 0)

    def _statement(self, written: Mapping[str, str]) -> str:
        values = ", ".join(written.get(c, self._mark) for c in self.columns)
        return f"{self._into}({values})"


class Same(NamedTuple):
    """One value for every row of a column (DriverInsert.column_parameters)."""

    value: Any


class Rows(NamedTuple):
    """Rows ready for the driver (DriverInsert.column_rows): the statement, with the values
    alike in every row written in, and each row's other values in `parameters`."""

    sql: str
    parameters: list[tuple[Any, ...]]

    def execute(self, connection: Connection) -> None:
        if self.parameters:
            connection.exec_driver_sql(self.sql, self.parameters)


def _literals(dialect: Dialect) -> Callable[[Any], str | None]:
    """A converted value as an SQL literal of `dialect` (its own quoting of text), or None
    where it is bound instead: floats (SQLite 3.40 reads some shortest reprs back one unit in
    the last place off), booleans, a driver's wrapper objects, and text with a backslash or a
    NUL (PostgreSQL reads backslashes as escapes where standard_conforming_strings is off)."""
    # The dialect's own quoting: it doubles a % too where the driver's placeholders use it.
    quoted = String().literal_processor(dialect)

    def literal(value: Any) -> str | None:
        kind = type(value)
        if value is None:
            return "NULL"
        if kind is str and quoted is not None and "\\" not in value and "\x00" not in value:
            return quoted(value)
        if kind is int:
            return repr(value)
        return None

    return literal


def _json_constants(
    process: Callable[[Any], Any], as_text: Callable[[str], Any]
) -> Callable[[Any], Any]:
    """None and [] are most of a backtest's JSON values (no order book, no denial, no
    provenance): each is serialised once, not once a row. A JsonText is written already."""
    null, empty = process(None), process([])

    def convert(value: Any) -> Any:
        if value is None:
            return null
        if type(value) is JsonText:
            return as_text(value)
        if isinstance(value, list) and not value:
            return empty
        return process(value)

    return convert


def _text_as_json(dialect: Dialect) -> Callable[[str], Any]:
    """How JSON already written as text is bound: psycopg takes a JSON value wrapped, and
    writes it when sending (here: as the text it is); the other drivers take the text."""
    if dialect.driver == "psycopg":
        from psycopg.types.json import Json

        return lambda text: Json(text, dumps=str)
    return str


def _repeats(process: Callable[[Any], Any]) -> Callable[[Any], Any]:
    """A time repeats down a column (every symbol of a candle is decided at its close): an
    equal value is converted once."""
    last: list[Any] = [object(), None]

    def convert(value: Any) -> Any:
        if value != last[0]:
            last[0], last[1] = value, process(value)
        return last[1]

    return convert
