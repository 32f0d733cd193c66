"""Run the freqtrade CLI with Binance markets served from ccxt's recorded responses.

Usage (with the freqtrade venv's interpreter, never tradeflow's):
    python -P offline_freqtrade.py <ccxt-static-dir> backtesting --config ...

freqtrade has no offline mode: every command builds an Exchange, which calls
`load_markets()` on ccxt's async Binance client and copies the result to the sync one.
We replace Binance's `fetch_markets`/`fetch_currencies` (sync and async classes; ccxt.pro's
class inherits the async one) so that `load_markets()` still runs ccxt's own `set_markets()`
on markets parsed by ccxt's own `parse_market()` from the recorded raw `exchangeInfo`
entries. Any other HTTP request is refused, so a forgotten call fails loudly instead of
waiting for a network timeout.
"""

from __future__ import annotations

import copy
import json
import sys
from pathlib import Path
from typing import Any

import ccxt
import ccxt.async_support as ccxt_async
from freqtrade.main import main as freqtrade_main

# The recording has 7 spot USDT markets; SOL, LINK and AVAX are missing. We clone BTCUSDT's
# raw entry with these Binance spot filters (tick size, lot step, 2024 values; approximate),
# which only steer amount/price rounding and the 5 USDT minimum, not the signals.
_SYNTHETIC_SPOT = {
    "SOL": ("0.01000000", "0.00100000"),
    "LINK": ("0.01000000", "0.01000000"),
    "AVAX": ("0.01000000", "0.01000000"),
}


def _recorded_spot_infos(static_dir: Path) -> list[dict[str, Any]]:
    markets = json.loads((static_dir / "markets" / "binance.json").read_text())
    infos = [m["info"] for m in markets.values() if m.get("type") == "spot"]
    template = markets["BTC/USDT"]["info"]
    for base, (tick, step) in _SYNTHETIC_SPOT.items():
        if f"{base}/USDT" not in markets:
            infos.append(_clone_spot_info(template, base, tick, step))
    return infos


def _clone_spot_info(template: dict[str, Any], base: str, tick: str, step: str) -> dict[str, Any]:
    info = copy.deepcopy(template)
    info.update(symbol=f"{base}USDT", baseAsset=base)
    for flt in info["filters"]:
        if flt["filterType"] == "PRICE_FILTER":
            flt.update(minPrice=tick, maxPrice="100000.00000000", tickSize=tick)
        elif flt["filterType"] in ("LOT_SIZE", "MARKET_LOT_SIZE"):
            flt.update(minQty=step, maxQty="9000000.00000000", stepSize=step)
    return info


def _parse_markets(exchange: Any, infos: list[dict[str, Any]]) -> list[Any]:
    # parse_market looks these up; the live client fills them from margin endpoints.
    exchange.options.setdefault("crossMarginPairsData", [])
    exchange.options.setdefault("isolatedMarginPairsData", [])
    return [exchange.parse_market(copy.deepcopy(info)) for info in infos]


def install(static_dir: Path) -> None:
    """Patch ccxt's Binance classes (sync and async) to serve the recorded markets."""
    infos = _recorded_spot_infos(static_dir)
    currencies = json.loads((static_dir / "currencies" / "binance.json").read_text())

    def fetch_markets(self: Any, params: dict | None = None) -> list[Any]:
        return _parse_markets(self, infos)

    def fetch_currencies(self: Any, params: dict | None = None) -> dict[str, Any]:
        return copy.deepcopy(currencies)

    async def fetch_markets_async(self: Any, params: dict | None = None) -> list[Any]:
        return _parse_markets(self, infos)

    async def fetch_currencies_async(self: Any, params: dict | None = None) -> dict[str, Any]:
        return copy.deepcopy(currencies)

    def refuse(self: Any, url: str, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"offline freqtrade bench: no network, refused {url}")

    async def refuse_async(self: Any, url: str, *args: Any, **kwargs: Any) -> Any:
        refuse(self, url)

    ccxt.binance.fetch_markets = fetch_markets
    ccxt.binance.fetch_currencies = fetch_currencies
    ccxt_async.binance.fetch_markets = fetch_markets_async
    ccxt_async.binance.fetch_currencies = fetch_currencies_async
    ccxt.Exchange.fetch = refuse
    ccxt_async.Exchange.fetch = refuse_async


def main() -> None:
    if len(sys.argv) < 3:
        sys.exit("usage: offline_freqtrade.py <ccxt-static-dir> <freqtrade arguments...>")
    install(Path(sys.argv[1]))
    freqtrade_main(sys.argv[2:])


if __name__ == "__main__":
    main()
