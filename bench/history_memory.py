"""Memory held per cached trade: record demo histories in a HistoryCache, measure.

Why: HISTORY_MEMORY_MB (SPEC §5) is enforced on an estimate, the cache's trade count
times HISTORY_BYTES_PER_TRADE (walletd/upstream/history.py). This prints what a cached
trade really costs, by tracemalloc (Python allocations) and by RSS (what the kernel
charges), so the estimate can be checked against the build it ships with.

    python3 bench/history_memory.py [--wallets 40] [--seed 1]

Wallets are random valid addresses (base58 of 32 random bytes, a fixed seed): their demo
histories are a realistic mix of sizes. Results go to stdout; bench/README.md records them.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import random
import tracemalloc

import base58
import psutil

from walletd.upstream.demo import DemoSource
from walletd.upstream.history import HISTORY_BYTES_PER_TRADE, HistoryCache


def wallets(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [base58.b58encode(rng.randbytes(32)).decode() for _ in range(count)]


async def record(cache: HistoryCache, addresses: list[str]) -> None:
    for address in addresses:
        async with cache.open(address, None) as recording:
            index = 0
            while await recording.page(index) is not None:
                index += 1


async def cached_bytes(addresses: list[str], *, traced: bool) -> tuple[int, int]:
    """(trades cached, bytes they added): by tracemalloc when `traced`, else by RSS."""
    source = DemoSource()
    cache = HistoryCache(source, ttl_s=3600, max_trades=10**9, memory_bytes=2**50)
    await record(HistoryCache(source, ttl_s=0, max_trades=0), addresses[:1])  # warm up
    gc.collect()
    process = psutil.Process()
    if traced:
        tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0] if traced else process.memory_info().rss
    await record(cache, addresses)
    await source.close()  # the demo generator's own state is not the cache's
    gc.collect()
    after = tracemalloc.get_traced_memory()[0] if traced else process.memory_info().rss
    if traced:
        tracemalloc.stop()
    trades = cache.trade_count
    await cache.close()
    return trades, after - before


async def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--wallets", type=int, default=40)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args(argv)
    addresses = wallets(args.wallets, args.seed)
    trades, rss = await cached_bytes(addresses, traced=False)
    traced_trades, traced = await cached_bytes(addresses, traced=True)
    print(f"wallets {args.wallets}, trades cached {trades}")
    print(f"RSS per cached trade          {rss / trades:7.0f} bytes")
    print(f"tracemalloc per cached trade  {traced / traced_trades:7.0f} bytes")
    print(f"estimate (HISTORY_BYTES_PER_TRADE) {HISTORY_BYTES_PER_TRADE} bytes")


if __name__ == "__main__":
    asyncio.run(main())
