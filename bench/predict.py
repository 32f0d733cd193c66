"""Prediction speed through the shared model cache, on a model trained and registered in this run.

Run: .venv/bin/python -m bench.predict [--candles N] [--members xgboost,lightgbm,...]
     [--calls N] [--torch-threads N]   (from the repo root; TRADEFLOW_SHARED_DATA if the data
     is elsewhere)

Model: trained by services/training.py's train_and_register (bootstrap's training config, the
members named, default all of settings' model_members) on the newest N real Binance 1h candles
of BTC/USDT and ETH/USDT 2024 (genetrader files), registered in a temp MLflow store; then served
by registry/model_cache.py's ModelCache exactly as the API and the decision flow get it:
`cache.get(name, "champion").predict(frame)`. Nothing here reads the ensemble's internals.

Figures:
- load: the first get (registry asked, artifacts loaded) and a warm get (a hit);
- one row: p50/p99 of get + predict for one real feature row (a different row each call),
  target p50 < 10 ms; and the whole POST /predict use case by candle (services/ml.py: ledger
  read of 801 candles per symbol, features, the decision flow's model call);
- batch: rows/s for 1,000 and 100,000 real feature rows (100,000 real 5m candles, BTC then
  ETH as bench/features.py joins them);
- reference, same rows, same run: a raw XGBoost classifier of 300 depth-3 trees (the size of
  the first ensemble's XGBoost member), trained here on the same 1h rows, called with
  `predict_proba` on a float32 matrix: what one gradient-boosted model costs without MLflow,
  schema checks or the rest of the ensemble. Printed as ratios ours / reference.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bench.features import real_5m_candles
from infra.shared_data import locate_shared_data

DATA = locate_shared_data() / "ohlcv" / "genetrader-binance-spot-2024"
SYMBOLS = ("BTC/USDT", "ETH/USDT")
NAME = "bench-predict"
TARGET_ONE_ROW_MS = 10.0
BATCHES = (1_000, 100_000)


def ledger_with_candles(candles: int) -> Any:
    from infra.ledger.memory import MemoryLedger
    from infra.market_data.files import read_candle_file

    ledger = MemoryLedger()
    for s in SYMBOLS:
        frame = read_candle_file(DATA / f"{s.replace('/', '_')}-1h.feather").tail(candles)
        ledger.candles.upsert("binance", s, "1h", frame)
    return ledger


def train(ledger: Any, var: Path, members: Sequence[str] | None) -> tuple[Any, float]:
    """Train and register through the service; the store is `var`'s. Returns the settings and
    the seconds it took."""
    from infra.settings import Settings
    from services import bootstrap
    from services.training import train_and_register

    extra = {"model_members": tuple(members)} if members else {}
    settings = Settings(var_dir=var, symbols=SYMBOLS, whitelist=SYMBOLS, model_name=NAME, **extra)
    started = time.perf_counter()
    report = train_and_register(
        ledger, bootstrap.model_registry(settings), bootstrap.training_config(settings)
    )
    seconds = time.perf_counter() - started
    from mlflow import MlflowClient

    # Champion whatever the promotion gates said: this measures serving, not model quality.
    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    client.set_registered_model_alias(NAME, "champion", report.registered.version)
    return settings, seconds


def weights_tag(settings: Any) -> str:
    """The members' stacking weights as training tagged the version (a registry read)."""
    from mlflow import MlflowClient

    client = MlflowClient(settings.tracking_uri, registry_uri=settings.tracking_uri)
    version = client.get_model_version_by_alias(NAME, "champion")
    return str(version.tags.get("members", "untagged"))


def percentiles_ms(samples: Sequence[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p99 = ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))]
    return statistics.median(ordered) * 1e3, p99 * 1e3


def timed_calls(fn: Callable[[int], object], calls: int, warm: int = 20) -> list[float]:
    for i in range(warm):
        fn(i)
    out = []
    for i in range(calls):
        started = time.perf_counter()
        fn(i)
        out.append(time.perf_counter() - started)
    return out


def best_rate(fn: Callable[[], object], rows: int, repeats: int) -> float:
    """Rows per second of the fastest of `repeats` runs (after one warm-up run)."""
    fn()
    best = min(_seconds(fn) for _ in range(repeats))
    return rows / best


def _seconds(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def real_feature_rows(rows: int) -> pd.DataFrame:
    from core.features.build import build_features
    from core.features.registry import FEATURE_NAMES

    candles = real_5m_candles(rows + 1_000)
    features = build_features(candles, candles).loc[:, list(FEATURE_NAMES)].dropna()
    return features.head(rows)


def reference_model(ledger: Any) -> Any:
    """A raw XGBoost classifier on the same 1h rows: label = the close 4 candles later is
    more than 0.2% above this one (a stand-in target: only its cost is measured)."""
    import xgboost as xgb

    from core.features.build import build_features
    from core.features.registry import FEATURE_NAMES

    btc = ledger.candles.load("binance", "BTC/USDT", "1h")
    features = build_features(btc, btc).loc[:, list(FEATURE_NAMES)]
    close = btc.set_index("open_time")["close"].astype("float64")
    label = (np.log(close.shift(-4) / close) > 0.002).astype("int32")
    keep = features.notna().all(axis=1) & close.shift(-4).notna().to_numpy()
    x = features[keep].to_numpy(dtype=np.float32)
    model = xgb.XGBClassifier(
        n_estimators=300, max_depth=3, learning_rate=0.03, tree_method="hist", n_jobs=2
    )
    return model.fit(x, label[keep].to_numpy())


def one_row_figures(cache: Any, ref: Any, rows: pd.DataFrame, calls: int) -> dict[str, Any]:
    matrix = rows.to_numpy(dtype=np.float32)
    singles = [rows.iloc[[i]] for i in range(min(len(rows), 1_000))]
    bare = cache.get(NAME, "champion").model.unwrap_python_model()

    def ours(i: int) -> object:
        return cache.get(NAME, "champion").predict(singles[i % len(singles)])

    def unwrapped(i: int) -> object:
        return bare.predict(None, singles[i % len(singles)])

    def reference(i: int) -> object:
        return ref.predict_proba(matrix[i % len(singles)].reshape(1, -1))

    return {
        "ours": percentiles_ms(timed_calls(ours, calls)),
        "unwrapped": percentiles_ms(timed_calls(unwrapped, calls)),
        "reference": percentiles_ms(timed_calls(reference, calls)),
    }


def candle_use_case_ms(cache: Any, ledger: Any, calls: int) -> tuple[float, float]:
    """services.ml.predict by candle: what POST /api/v1/ml/predict does behind the route."""
    from services import ml

    config = ml.PredictConfig("binance", "1h", "BTC/USDT", NAME)
    times = list(ledger.candles.load("binance", "ETH/USDT", "1h")["open_time"].iloc[-200:])

    def call(i: int) -> object:
        at = pd.Timestamp(times[i % len(times)]).to_pydatetime()
        return ml.predict(cache, ledger, ml.CandleQuery("ETH/USDT", at), config)

    return percentiles_ms(timed_calls(call, calls, warm=5))


def batch_figures(
    cache: Any, ref: Any, rows: pd.DataFrame
) -> dict[int, tuple[float, float, float]]:
    """rows/s: ours, the same model unwrapped from MLflow's pyfunc, the raw XGBoost."""
    bare = cache.get(NAME, "champion").model.unwrap_python_model()
    out = {}
    for n in BATCHES:
        frame = rows.head(n)
        matrix = frame.to_numpy(dtype=np.float32)
        repeats = 5 if n <= 10_000 else 2
        ours = best_rate(lambda f=frame: cache.get(NAME, "champion").predict(f), n, repeats)
        unwrapped = best_rate(lambda f=frame: bare.predict(None, f), n, repeats)
        theirs = best_rate(lambda m=matrix: ref.predict_proba(m), n, repeats)
        out[n] = (ours, unwrapped, theirs)
    return out


def load_figures(cache: Any) -> tuple[float, float]:
    cold = _seconds(lambda: cache.get(NAME, "champion"))
    warm = statistics.median(_seconds(lambda: cache.get(NAME, "champion")) for _ in range(200))
    return cold, warm


def report(figures: dict[str, Any], args: argparse.Namespace) -> None:
    print(
        f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}, "
        f"Python {platform.python_version()}, torch threads "
        f"{args.torch_threads or 'default'}"
    )
    print(
        f"model: {NAME}, members asked {figures['members']}, trained on {args.candles:,} real "
        f"1h candles x {len(SYMBOLS)} symbols in {figures['train_s']:.1f} s; "
        f"weights (its 'members' tag) {figures['weights']}"
    )
    if all(w.endswith("=0.000") for w in figures["weights"].split(",")):
        print("WARNING: no member earned a weight: the ensemble answers its base rate, so the")
        print("         figures below measure the serving path around a constant (more --candles)")
    cold, warm = figures["load"]
    print(f"cache: first get (load) {cold:.2f} s, warm get {warm * 1e6:.0f} us")
    one = figures["one_row"]
    (p50, p99), (u50, u99), (r50, r99) = one["ours"], one["unwrapped"], one["reference"]
    verdict = "met" if p50 < TARGET_ONE_ROW_MS else "MISSED"
    print(
        f"one row via the cache:       p50 {p50:7.3f} ms, p99 {p99:7.3f} ms "
        f"(target p50 < {TARGET_ONE_ROW_MS:.0f} ms: {verdict})"
    )
    print(f"same model, pyfunc unwrapped: p50 {u50:7.3f} ms, p99 {u99:7.3f} ms")
    print(f"reference raw XGBoost:        p50 {r50:7.3f} ms, p99 {r99:7.3f} ms")
    print(f"ratio ours / reference, one row p50: {p50 / r50:.1f}x (unwrapped: {u50 / r50:.1f}x)")
    c50, c99 = figures["candle"]
    print(f"predict by candle (ledger + features + model): p50 {c50:.2f} ms, p99 {c99:.2f} ms")
    for n, (ours, unwrapped, theirs) in figures["batch"].items():
        print(
            f"batch {n:>7,} rows: ours {ours:>11,.0f} rows/s, unwrapped {unwrapped:>11,.0f}, "
            f"reference {theirs:>11,.0f}; ratio reference / ours {theirs / ours:.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--candles", type=int, default=8_760, help="per symbol; 8,760: 2024")
    parser.add_argument("--members", default="", help="comma-separated; default: all")
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument(
        "--torch-threads", type=int, default=0, help="torch intra-op threads; 0: torch's default"
    )
    args = parser.parse_args()
    if args.torch_threads:  # before anything runs: changing it mid-run skews what follows
        import torch

        torch.set_num_threads(args.torch_threads)
    warnings.simplefilter("ignore")
    from infra.settings import OFFLINE_ENV

    for key, value in OFFLINE_ENV.items():
        os.environ.setdefault(key, value)
    from core.features.registry import feature_set_version
    from registry.model_cache import ModelCache

    members = [m for m in args.members.split(",") if m]
    ledger = ledger_with_candles(args.candles)
    with tempfile.TemporaryDirectory() as tmp:
        settings, train_s = train(ledger, Path(tmp), members)
        cache = ModelCache(feature_set_version(), tracking_uri=settings.tracking_uri)
        ref = reference_model(ledger)
        rows = real_feature_rows(max(BATCHES))
        figures = {
            "members": ",".join(settings.model_members),
            "weights": weights_tag(settings),
            "train_s": train_s,
            "load": load_figures(cache),
            "one_row": one_row_figures(cache, ref, rows, args.calls),
            "candle": candle_use_case_ms(cache, ledger, min(args.calls, 200)),
            "batch": batch_figures(cache, ref, rows),
        }
    report(figures, args)


if __name__ == "__main__":
    main()
