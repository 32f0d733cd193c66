"""What one /metrics scrape costs the ledger, with tens of thousands of decisions.

Run: .venv/bin/python -m bench.metrics_scrape [--decisions N] [--scrapes K] [--postgres URL]
     (from the repo root; --postgres "" skips PostgreSQL)

Workload: N decisions of one account (2 symbols, 1h, ~1 KB of provenance each, shaped as the
decision flow writes it, with `timings`; one in twenty denied), plus N/10 of another account,
bulk-inserted into a fresh SQLite file and a fresh PostgreSQL schema. Then K scrapes' worth of
reads:
- histograms query: the one query bucketing decision latency and model time over every
  decision (infra/ledger/overview.py `_TIMINGS`), alone: what a scrape pays after new decisions;
- trading_counts, none new: everything /metrics reads from the ledger when no decision was
  added since the last scrape (the histograms come from the overview's cache);
- trading_counts, one new: the same with one decision inserted before each scrape (not timed):
  the histograms are recomputed.
Printed: median and p95 milliseconds of each.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import create_engine, insert, text

from core.consensus import Consensus
from core.decision import Decision, DecisionInput
from core.orders import decision_id_for
from core.risk.limits import Denial, DenialCode, RiskVerdict
from core.types import Action, Symbol
from infra.ledger.database import engine_for
from infra.ledger.ledger import open_ledger
from infra.ledger.mappers import decision_values
from infra.ledger.models import DecisionRow
from infra.ledger.overview import _TIMINGS

POSTGRES = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
T0 = datetime(2023, 1, 1, tzinfo=UTC)
SYMBOLS = ("BTC/USDT", "ETH/USDT")


def provenance(rng: random.Random, t: datetime) -> dict[str, Any]:
    """The shape services.decide.step.provenance writes, with eight symbols' prices."""
    prices = {f"S{i}/USDT": str(round(rng.uniform(1, 60000), 2)) for i in range(8)}
    return {
        "candles": {"first": (t - timedelta(hours=800)).isoformat(), "last": t.isoformat(),
                    "reference_first": (t - timedelta(hours=800)).isoformat()},
        "feature_set_version": "fs-0123456789ab",
        "model": {"name": "tradeflow-ensemble", "version": "12"},
        "risk_state": {"cash": "8000.19", "positions": {}, "prices": prices, "daily_pnl": "0",
                       "day_start_equity": "10000", "open_buys": {}, "open_sells": {},
                       "open_orders": 0, "trading_state": "active", "halt_reason": "",
                       "candle_age_s": 12.0, "entered_at": {}},
        "recent": [{"candle_time": (t - timedelta(hours=k)).isoformat(), "action": "HOLD",
                    "price": "2303.36"} for k in (1, 2, 3)],
        "panel": "offline", "panel_settings": {}, "config": "e7ade3706914f766", "llm": [],
        "timings": {"decide_s": rng.uniform(1e-5, 30), "predict_s": rng.lognormvariate(-7, 1),
                    "predict_rows": 2},
    }  # fmt: skip


def decisions(account: str, n: int, rng: random.Random) -> Iterator[dict[str, Any]]:
    for i in range(n):
        symbol = SYMBOLS[i % 2]
        t = T0 + timedelta(hours=i // 2)
        inp = DecisionInput(account, Symbol(symbol), "1h", t, Decimal("43000.5"), {}, 0.55,
                            "tradeflow-ensemble", "12", "fs-0123456789ab", 0.001, True)  # fmt: skip
        # One in twenty was a trade the gate denied; the rest held (nothing to gate).
        denial = Denial(DenialCode.STALE_CANDLE, "candle age 2h > 1h")
        verdict = RiskVerdict((denial,)) if i % 20 == 0 else None
        d = Decision(
            decision_id_for(account, symbol, "1h", t), inp, (),
            Consensus(Action.HOLD, 0.0, 0.0, "no edge"), None, verdict, None,
            t + timedelta(hours=1, seconds=rng.lognormvariate(2, 1.5)),
        )  # fmt: skip
        yield decision_values(replace(d, provenance=provenance(rng, t)))


def fill(url: str, n: int) -> None:
    open_ledger(url)  # migrated
    rng = random.Random(7)
    with engine_for(url).begin() as c:
        for account, count in (("paper", n), ("other", n // 10)):
            rows = list(decisions(account, count, rng))
            for i in range(0, len(rows), 5000):
                c.execute(insert(DecisionRow.__table__), rows[i : i + 5000])


def timed(
    scrapes: int, read: Callable[[], object], before: Callable[[int], object] = lambda i: None
) -> tuple[float, float]:
    read()  # warm: connection pool, statement cache
    ms = []
    for i in range(scrapes):
        before(i)
        started = time.perf_counter()
        read()
        ms.append((time.perf_counter() - started) * 1000)
    ms.sort()
    return statistics.median(ms), ms[min(len(ms) - 1, int(0.95 * len(ms)))]


def measure(name: str, url: str, n: int, scrapes: int) -> None:
    started = time.perf_counter()
    fill(url, n)
    print(f"{name}: {n:,} decisions (+{n // 10:,} of another account) in "
          f"{time.perf_counter() - started:.1f} s")  # fmt: skip
    ledger = open_ledger(url)
    now = datetime.now(UTC)

    def histograms() -> object:
        with engine_for(url).connect() as c:
            return c.execute(_TIMINGS, {"account": "paper"}).one()

    counts = ledger.overview.trading_counts(now, "paper")
    print(f"  latency count {counts.decision_latency.count:,}, "
          f"predict count {counts.predict_seconds.count:,}")  # fmt: skip
    later = random.Random(11)
    fresh = iter(list(decisions("paper", n + scrapes, later))[n:])

    def add_one(_: int) -> None:
        with engine_for(url).begin() as c:
            c.execute(insert(DecisionRow.__table__), [next(fresh)])

    def scrape() -> object:
        return ledger.overview.trading_counts(now, "paper")

    for label, read, before in (
        ("histograms query", histograms, lambda i: None),
        ("trading_counts, none new", scrape, lambda i: None),
        ("trading_counts, one new", scrape, add_one),
    ):
        p50, p95 = timed(scrapes, read, before)
        print(f"  {label:<25} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms")


@contextmanager
def postgres_schema(url: str) -> Iterator[str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(url)
    with admin.begin() as c:
        c.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        with admin.begin() as c:
            c.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--decisions", type=int, default=50_000)
    parser.add_argument("--scrapes", type=int, default=20)
    parser.add_argument("--postgres", default=POSTGRES)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        measure("sqlite", f"sqlite:///{d}/ledger.db", args.decisions, args.scrapes)
    if args.postgres:
        with postgres_schema(args.postgres) as url:
            measure("postgresql", url, args.decisions, args.scrapes)
            engine_for(url).dispose()


if __name__ == "__main__":
    main()
