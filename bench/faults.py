"""Fault injection at scale: decision/order cycles on the simulated exchange under timeouts
(before and after the exchange accepted), 429s, ledger outages, duplicate fill events and
SIGKILLed processes restarted with reconciliation. Prints the counts the safety promise rests on.

Run: .venv/bin/python -m bench.faults [--cycles N] [--kills K] [--database-url URL]

Reference, measured in the same run: the same cycles with every fault switched off; the ratio
is what surviving the faults costs in time.
"""

from __future__ import annotations

import argparse
import tempfile
from dataclasses import replace
from pathlib import Path

from infra.shared_data import locate_shared_data
from tests.faults.harness import FaultPlan, FaultReport, run_cycles

ROOT = Path(__file__).resolve().parents[1]
SHARED = locate_shared_data()
CALM = FaultPlan(
    timeout_before=0, timeout_after=0, rate_limited=0, duplicate_fill=0, db_outage_every=0, kills=0
)


def run(cycles: int, plan: FaultPlan, database_url: str | None) -> FaultReport:
    with tempfile.TemporaryDirectory(prefix="tradeflow-faults-") as tmp:
        url = database_url or f"sqlite:///{Path(tmp) / 'ledger.db'}"
        if database_url:
            from bench.schemas import fresh_schema

            url = fresh_schema(database_url)[1]
        return run_cycles(url, SHARED, cycles, plan, Path(tmp))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=1000)
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--database-url", default=None)
    args = parser.parse_args()
    try:
        faulty = run(args.cycles, FaultPlan(seed=args.seed, kills=args.kills), args.database_url)
        calm = run(args.cycles, replace(CALM, seed=args.seed), args.database_url)
    finally:
        if args.database_url:
            from bench.schemas import drop_schemas

            drop_schemas(args.database_url)
    where = "PostgreSQL" if args.database_url else "SQLite"
    print(f"fault injection: {faulty.cycles} cycles on the simulated exchange, {where} ledger")
    print(f"orders decided: {faulty.orders}   fills: {faulty.fills}")
    print("faults injected:")
    for kind, count in sorted(faulty.faults.items()):
        print(f"  {kind:24s} {count:6d}")
    print(f"duplicated orders:                 {faulty.duplicated_orders}   (must be 0)")
    print(f"lost fills:                        {faulty.lost_fills}   (must be 0)")
    print(f"position mismatches after recon.:  {faulty.position_mismatches}   (must be 0)")
    print(f"cash mismatches after recon.:      {faulty.cash_mismatches}   (must be 0)")
    print(f"orders sent while ledger down:     {faulty.placed_while_ledger_down}   (must be 0)")
    print(f"failed reconciliations:            {faulty.reconciliations_failed}")
    per = faulty.seconds / faulty.cycles * 1000
    print(f"time: {faulty.seconds:.1f} s ({per:.1f} ms/cycle, {args.kills} kill/restart episodes)")
    print(
        f"reference (same cycles, no faults): {calm.seconds:.1f} s; "
        f"ratio faulty / reference: {faulty.seconds / calm.seconds:.2f}x"
    )
    bad = (
        faulty.duplicated_orders
        + faulty.lost_fills
        + faulty.position_mismatches
        + faulty.cash_mismatches
        + faulty.placed_while_ledger_down
    )
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
