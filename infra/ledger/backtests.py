"""Backtest runs: the run's row, and everything its account recorded, written in one
transaction with bulk inserts (a run is hundreds of thousands of decisions)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import replace
from typing import Any, NamedTuple, TypeVar

from sqlalchemy import Dialect, delete, insert, select

from core.decision import Decision
from core.errors import FatalError
from core.holds import HoldDecider, HoldRows
from core.ports import DecisionSink
from core.records import AccountRecords, BacktestRun
from core.types import Action
from infra.ledger.driver_insert import DriverInsert, Rows
from infra.ledger.mappers import (
    DECISION_COLUMNS,
    call_values,
    decision_tuple,
    fill_values,
    hold_columns,
    order_values,
)
from infra.ledger.models import (
    AgentCallRow,
    BacktestRunRow,
    DecisionRow,
    FillRow,
    OrderRow,
    PositionRow,
)
from infra.ledger.sessions import Sessions

_CHUNK = 5_000  # rows per INSERT batch: bounded memory for the parameters
_Row = TypeVar("_Row")


class RunAlreadyStored(FatalError):
    pass


class BacktestRuns:
    def __init__(self, sessions: Sessions) -> None:
        self._sessions = sessions

    def save(self, run: BacktestRun, records: AccountRecords) -> None:
        """Store the run and its account's records, all or nothing. The account gets no row in
        `accounts`: that table holds the ledger's one trading account."""
        if records.account != run.account:
            raise ValueError(f"records of {records.account!r} for run account {run.account!r}")
        with self._sessions.write() as s:
            if s.get(BacktestRunRow, run.run_id) is not None:
                raise RunAlreadyStored(f"backtest run {run.run_id} is already stored")
            s.add(_run_row(replace(run, starting_cash=records.starting_cash, cash=records.cash)))
            s.flush()
            insert_decisions = decision_insert(self._sessions.dialect)
            for chunk in _chunks(decision_tuple(d) for d, _ in records.decisions):
                insert_decisions.execute(s.connection(), chunk)
            calls = (call_values(d.decision_id, c) for d, _ in records.decisions for c in d.calls)
            _bulk(s, AgentCallRow, calls)
            orders = (
                order_values(
                    o.order, run.account, o.broker, o.updated_at, o.submit_attempts, o.error
                )
                for o in records.orders
            )
            _bulk(s, OrderRow, orders)
            _bulk(s, FillRow, (fill_values(run.account, f, r) for f, r in records.fills))
            _bulk(s, PositionRow, _positions(records))

    def decision_sink(self, account: str, in_process: bool = False) -> DecisionSink:
        """Where a run of `account` streams its decisions: a writer process on the other core
        (infra.ledger.decision_writer) where the ledger allows one, else this process."""
        from infra.ledger.decision_writer import DecisionWriter, can_write_apart

        url = self._sessions.url
        if in_process or not can_write_apart(url):
            return DecisionStream(self._sessions, account)
        return DecisionWriter(url, account, self._sessions.dialect)

    def discard(self, account: str) -> int:
        """Delete every row of a backtest account whose run was never stored (a run that
        failed after streaming some decisions). A stored run is kept."""
        with self._sessions.write() as s:
            if s.scalar(select(BacktestRunRow.run_id).where(BacktestRunRow.account == account)):
                raise RunAlreadyStored(f"{account} belongs to a stored run: not discarded")
            ids = select(DecisionRow.decision_id).where(DecisionRow.account == account)
            removed = s.execute(
                delete(AgentCallRow).where(AgentCallRow.decision_id.in_(ids))
            ).rowcount
            for model in (FillRow, OrderRow, DecisionRow, PositionRow):
                removed += s.execute(delete(model).where(model.account == account)).rowcount
            return removed

    def get(self, run_id: str) -> BacktestRun | None:
        with self._sessions.read() as s:
            row = s.get(BacktestRunRow, run_id)
            return None if row is None else _run_of(row)

    def recent(self, limit: int = 20) -> list[BacktestRun]:
        q = select(BacktestRunRow).order_by(BacktestRunRow.created_at.desc()).limit(limit)
        with self._sessions.read() as s:
            return [_run_of(r) for r in s.scalars(q)]


class DecisionStream:
    """A backtest's decisions, written as they are made, `_CHUNK` per transaction: memory
    stays flat however long the run. Until the run's row is stored they are an unfinished
    run's, which `BacktestRuns.discard` removes."""

    def __init__(self, sessions: Sessions, account: str) -> None:
        self._sessions, self.account = sessions, account
        self._insert = decision_insert(sessions.dialect)
        self._rows: list[tuple[Any, ...]] = []
        self._holds: list[Rows] = []  # holds read apart, converted (prepare_holds)
        self._pending = 0  # rows in both
        self._calls: list[dict[str, Any]] = []  # the LLM calls behind those decisions
        self._held: Counter[str] = Counter()  # actions of the holds added, until asked
        self.written = 0

    def add(self, decision: Decision, broker: str) -> None:
        row, calls = stream_values(decision, self.account)
        self.add_values([row], calls)

    def add_values(self, rows: list[tuple[Any, ...]], calls: list[dict[str, Any]]) -> None:
        """Decisions as `stream_values` made them (a writer process is handed these)."""
        self._rows.extend(rows)
        self._calls.extend(calls)
        self._added(len(rows))

    def add_holds(self, rows: HoldRows, decide: HoldDecider, broker: str) -> None:
        """Holds read apart where their agents allow (HoldDecider.columns), else decided."""
        self.add_prepared(prepare_holds(self._insert, self.account, rows, decide))

    def add_prepared(self, holds: PreparedHolds) -> None:
        """Holds `prepare_holds` made, here or in another process."""
        self._rows.extend(holds.rows)
        self._calls.extend(holds.calls)
        apart = holds.apart
        if self._holds and self._holds[-1].sql == apart.sql:  # one executemany for both
            self._holds[-1].parameters.extend(apart.parameters)
        elif apart.parameters:
            self._holds.append(Rows(apart.sql, list(apart.parameters)))
        self._held.update(holds.held)
        self._added(len(holds.rows) + len(apart.parameters))

    def hold_actions(self) -> Counter[str]:
        counts, self._held = self._held, Counter()
        return counts

    def close(self) -> None:
        self.flush()

    def flush(self) -> None:
        if not self._pending:
            return
        with self._sessions.write() as s:
            self._insert.execute(s.connection(), self._rows)
            for rows in self._holds:
                rows.execute(s.connection())
            if self._calls:
                s.execute(insert(AgentCallRow.__table__), self._calls)
        self.written += self._pending
        self._rows, self._holds, self._calls, self._pending = [], [], [], 0

    def _added(self, n: int) -> None:
        self._pending += n
        if self._pending >= _CHUNK:
            self.flush()


def stream_values(decision: Decision, account: str) -> tuple[tuple[Any, ...], list[dict[str, Any]]]:
    """A decision's row (DECISION_COLUMNS) and its LLM calls' rows, for a run of `account`."""
    if decision.input.account != account:
        raise ValueError(f"a decision of {decision.input.account!r} for {account!r}")
    # An LLM panel's calls; the offline panel makes none.
    calls = [call_values(decision.decision_id, c) for c in decision.calls]
    return decision_tuple(decision), calls


class PreparedHolds(NamedTuple):
    """Holds as a decision stream stores them (`prepare_holds`)."""

    apart: Rows  # the holds read apart, as the driver takes them
    rows: list[tuple[Any, ...]]  # the holds decided whole, as `stream_values` gives them
    calls: list[dict[str, Any]]  # their LLM calls' rows
    held: Counter[str]  # the actions of them all


def prepare_holds(
    insert: DriverInsert, account: str, rows: HoldRows, decide: HoldDecider
) -> PreparedHolds:
    """Holds read apart where their agents allow (HoldDecider.columns), else decided whole, as
    the rows `insert` takes. The work is the same wherever it runs: the writer process does it,
    or the loop when the writer is behind (infra.ledger.decision_writer)."""
    if rows.account != account:
        raise ValueError(f"holds of {rows.account!r} for {account!r}")
    holds = decide.columns(rows) if decide.plain else None
    whole, calls, held = [], [], Counter[str]()
    for decision in decide.decisions(rows) if holds is None else holds.decided:
        row, made = stream_values(decision, account)
        whole.append(row)
        calls.extend(made)
        held[decision.consensus.action.value] += 1
    apart = Rows(insert.sql, [])
    if holds is not None and holds.decision_id:
        apart = insert.column_rows(hold_columns(holds, rows, decide.settings))
        held[_HOLD] += len(apart.parameters)
    return PreparedHolds(apart, whole, calls, held)


_HOLD = Action.HOLD.value


def decision_insert(dialect: Dialect) -> DriverInsert:
    """Decisions go in through the driver (infra.ledger.driver_insert): a run has hundreds of
    thousands."""
    return DriverInsert(DecisionRow.__table__, DECISION_COLUMNS, dialect)


def _chunks(rows: Iterable[_Row]) -> Iterator[list[_Row]]:
    """`rows` in lists of _CHUNK: bounded memory for the parameters."""
    batch: list[_Row] = []
    for row in rows:
        batch.append(row)
        if len(batch) == _CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _bulk(s: Any, model: type, rows: Iterable[dict[str, Any]]) -> None:
    for chunk in _chunks(rows):
        s.execute(insert(model.__table__), chunk)  # type: ignore[attr-defined]


def _positions(records: AccountRecords) -> Iterator[dict[str, Any]]:
    last = max((f.filled_at for f, _ in records.fills), default=records.opened_at)
    for symbol, p in records.positions.items():
        yield {
            "account": records.account,
            "symbol": symbol,
            "quantity": p.quantity,
            "avg_price": p.avg_price,
            "realised_pnl": p.realised_pnl,
            "updated_at": last,
        }


def _run_row(run: BacktestRun) -> BacktestRunRow:
    return BacktestRunRow(
        run_id=run.run_id,
        account=run.account,
        created_at=run.created_at,
        symbols=list(run.symbols),
        timeframe=run.timeframe,
        start=run.start,
        end=run.end,
        model_name=run.model_name,
        model_version=run.model_version,
        params=dict(run.params),
        summary=dict(run.summary),
        report_path=run.report_path,
        starting_cash=run.starting_cash,
        cash=run.cash,
    )


def _run_of(row: BacktestRunRow) -> BacktestRun:
    return BacktestRun(
        run_id=row.run_id,
        account=row.account,
        created_at=row.created_at,
        symbols=tuple(row.symbols),
        timeframe=row.timeframe,
        start=row.start,
        end=row.end,
        model_name=row.model_name,
        model_version=row.model_version,
        params=row.params,
        summary=row.summary,
        report_path=row.report_path,
        starting_cash=row.starting_cash,
        cash=row.cash,
    )


__all__: Sequence[str] = ("BacktestRuns", "DecisionStream", "RunAlreadyStored")
