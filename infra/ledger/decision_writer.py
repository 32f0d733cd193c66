"""A backtest's decision stream on the machine's other core.

The replay's loop runs on one core and decides the candles that may trade. Recording is the
other half of the work: deciding the holds the loop set apart (core.holds, most of a
backtest's candles), turning every decision into its row and inserting it. A child process
does that half, handed chunks through a pipe: the decisions the loop made as rows, the holds as
columns together with what decides them (core.holds.HoldDecider: in bulk, from the very
functions the loop's `decide` calls). The pipe's buffer bounds what waits: a loop that runs
ahead waits for the child.

When the child falls behind (messages waiting for it: the loop would soon wait), the loop
prepares the next chunk of holds itself, to the very rows the child would have made
(infra.ledger.backtests.prepare_holds), and hands those over instead: the work goes to whichever
core is free. Which of the two made a row changes nothing stored.

The child has its own connection to the ledger, so this needs one that two processes can open
(a SQLite file, PostgreSQL): `decision_sink` writes in process otherwise. A failure in the
child is kept and raised in the parent at its next flush; the child drops what comes after it,
and the run fails and is discarded as any failed run.
"""

from __future__ import annotations

import contextlib
import gc
import queue
import socket
import subprocess
import sys
import threading
import traceback
import weakref
from collections import Counter
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from sqlalchemy import Dialect

from core.decision import Decision
from core.errors import FatalError
from core.holds import HoldDecider, HoldRows
from infra.ledger.backtests import DecisionStream, decision_insert, prepare_holds, stream_values

_CHUNK = 5_000  # decisions per hand-over: rows the loop made, sent as one message
_WAITING = 4  # messages that may wait for the child, beyond the one it reads
_BEHIND = 2  # messages in the outbox from which the loop prepares holds itself (behind)
_JOIN_SECONDS = 60.0  # the most a closing writer is given to finish what it was handed
# The collector's thresholds in a process that allocates millions of short-lived objects and
# makes few cycles: a young collection every 50,000 allocations, not 700.
RARE_COLLECTIONS = (50_000, 20, 100)


class DecisionWriterFailed(FatalError):
    """The writer process could not record what it was handed (its traceback says why)."""


def can_write_apart(url: str) -> bool:
    """Whether a child process can open the ledger at `url` (not an in-memory SQLite)."""
    return not (url.startswith("sqlite") and (url.endswith(":memory:") or url.endswith("//")))


# The child's start: the project on its path, then `serve` on the socket it was handed. A new
# interpreter, not multiprocessing's spawn: that re-runs the caller's main module, which a
# script without a main guard (or a notebook) cannot survive.
_BOOT = (
    "import sys; sys.path.insert(0, sys.argv[2]); "
    "from infra.ledger.decision_writer import boot; boot(int(sys.argv[1]))"
)
_ROOT = str(Path(__file__).resolve().parents[2])


class DecisionWriter:
    """A DecisionSink whose recording runs in a child process (see the module)."""

    def __init__(self, url: str, account: str, dialect: Dialect) -> None:
        """`dialect`: the ledger's, for the rows this process prepares when the child is behind."""
        self.account = account
        self._insert = decision_insert(dialect)
        ours, theirs = socket.socketpair()
        with theirs:
            self._process = subprocess.Popen(
                [sys.executable, "-c", _BOOT, str(theirs.fileno()), _ROOT],
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
            )
        self._pipe = Connection(ours.detach())
        self._sender = _Sender(self._pipe)
        # A writer dropped without close() (or left at exit) still stops its child.
        self._stop = weakref.finalize(self, _stop, self._sender, self._process, self._pipe)
        self._send((url, account))  # on the socket, not the command line: it may hold a password
        self._rows: list[tuple[Any, ...]] = []
        self._calls: list[dict[str, Any]] = []
        self._held: Counter[str] = Counter()  # the holds' actions the child has reported
        self.written = 0
        self.peak_mb: float | None = None  # the child's peak resident memory, at its last flush

    def add(self, decision: Decision, broker: str) -> None:
        row, calls = stream_values(decision, self.account)
        self._rows.append(row)
        self._calls.extend(calls)
        if len(self._rows) >= _CHUNK:
            self._hand_over()

    def add_holds(self, rows: HoldRows, decide: HoldDecider, broker: str) -> None:
        """To the child, which decides them (HoldDecider: a few arrays to send); decided here
        when the child is behind (the module says why)."""
        if rows.account != self.account:
            raise ValueError(f"holds of {rows.account!r} for {self.account!r}")
        self._hand_over()
        if self._sender.behind():
            self._send(("prepared", prepare_holds(self._insert, self.account, rows, decide)))
        else:
            self._send(("holds", rows, decide, broker))

    def hold_actions(self) -> Counter[str]:
        self.flush()
        counts, self._held = self._held, Counter()
        return counts

    def flush(self) -> None:
        """Everything handed over is decided and written when this returns."""
        self._hand_over()
        self._send(("flush",))
        reply = self._reply()
        if reply[0] == "error":
            raise DecisionWriterFailed(f"the decision writer failed:\n{reply[1]}")
        _, self.written, held, self.peak_mb = reply
        self._held.update(held)

    def close(self) -> None:
        """Stop the child once it has done what it was handed (or after _JOIN_SECONDS)."""
        self._stop()

    def _reply(self) -> tuple[Any, ...]:
        """The child's answer to a flush."""
        try:
            reply: tuple[Any, ...] = self._pipe.recv()
        except (EOFError, OSError) as exc:  # gone: closed, or reset with data unread
            raise self._died() from exc
        return reply

    def _hand_over(self) -> None:
        if self._rows:
            rows, calls, self._rows, self._calls = self._rows, self._calls, [], []
            self._send(("rows", rows, calls))

    def _send(self, message: tuple[Any, ...]) -> None:
        if not self._sender.put(message):
            raise self._died() from self._sender.failure

    def _died(self) -> DecisionWriterFailed:
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(1.0)
        return DecisionWriterFailed(
            f"the decision writer process ended (exit code {self._process.returncode})"
        )


class _Sender:
    """Sends the writer's messages from a thread: a send waits while the child reads, and the
    loop should go on deciding meanwhile. The queue's bound is what may wait in memory."""

    def __init__(self, pipe: Connection) -> None:
        self._pipe = pipe
        self._outbox: queue.Queue[tuple[Any, ...] | None] = queue.Queue(maxsize=_WAITING)
        self.failure: OSError | None = None
        # A daemon: an interpreter that exits does not wait for it (the finalizer stops it).
        self._thread = threading.Thread(target=self._run, name="decision-writer", daemon=True)
        self._thread.start()

    def behind(self) -> bool:
        """Whether messages wait in the outbox, not yet handed to the pipe (which holds more):
        then the loop prepares holds itself. Waiting for a full outbox instead left the loop
        idle a fifth of the time (8-pair bench: 60k -> 62-63.6k symbol-candles/s)."""
        return self._outbox.qsize() >= _BEHIND

    def put(self, message: tuple[Any, ...]) -> bool:
        """False when the child can no longer be reached."""
        if self.failure is not None or not self._thread.is_alive():
            return False
        self._outbox.put(message)
        return True

    def stop(self) -> None:
        if self._thread.is_alive():
            self._outbox.put(("close",))
            self._outbox.put(None)
            self._thread.join(_JOIN_SECONDS)

    def _run(self) -> None:
        while (message := self._outbox.get()) is not None:
            if self.failure is None:  # else drained, so that put() never blocks for good
                try:
                    self._pipe.send(message)
                except OSError as exc:  # the child is gone: a broken pipe
                    self.failure = exc


def _stop(sender: _Sender, process: subprocess.Popen[bytes], pipe: Connection) -> None:
    sender.stop()
    if process.poll() is None:
        try:
            process.wait(_JOIN_SECONDS)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    pipe.close()


def boot(fd: int) -> None:
    """The child's entry: the ledger and account come first on the socket."""
    pipe = Connection(fd)
    try:
        url, account = pipe.recv()
    except EOFError:
        return
    serve(pipe, url, account)


def serve(pipe: Connection, url: str, account: str) -> None:
    """The child: record what comes through `pipe` until it closes or says so."""
    from infra.ledger.database import bulk_sessions
    from infra.ledger.sessions import Sessions

    # Not synced at each commit: a run whose rows were lost fails, and is discarded and redone.
    # Checkpointed on a thread of this process: the inserts go on while the disk syncs.
    sessions, checkpoints = bulk_sessions(url)
    # What is loaded by now lives as long as the process: the collector need not walk it again,
    # and its runs (about a tenth of this process's time at the defaults) come less often.
    gc.freeze()
    gc.set_threshold(*RARE_COLLECTIONS)
    try:
        _record(pipe, DecisionStream(Sessions(sessions), account))
    finally:
        if checkpoints is not None:
            checkpoints.close()


def _record(pipe: Connection, stream: DecisionStream) -> None:
    failure = ""
    while True:
        try:
            message = pipe.recv()
        except EOFError:
            return
        kind = message[0]
        if kind == "close":
            return
        if kind == "flush":
            failure = failure or _do(stream.flush)
            reply = (
                ("error", failure)
                if failure
                else ("ok", stream.written, stream.hold_actions(), resident_peak_mb())
            )
            pipe.send(reply)
        elif not failure:  # after a failure, what follows is dropped: the run will fail
            failure = _do(_handle, stream, message)


def resident_peak_mb() -> float | None:
    """This process's peak resident memory in MiB since its program started (Linux's VmHWM;
    None elsewhere). Not getrusage's ru_maxrss: a child started by fork and exec keeps there
    what its parent had resident at the fork, though it never used those pages."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def _handle(stream: DecisionStream, message: tuple[Any, ...]) -> None:
    if message[0] == "rows":
        stream.add_values(message[1], message[2])
    elif message[0] == "prepared":
        stream.add_prepared(message[1])
    else:
        _, rows, decide, broker = message
        stream.add_holds(rows, decide, broker)


def _do(action: Any, *args: Any) -> str:
    """'' when `action(*args)` returned, else its traceback."""
    try:
        action(*args)
    except Exception:
        return traceback.format_exc()
    return ""
