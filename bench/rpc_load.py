"""Benchmark of walletd's `rpc` upstream against the fake JSON-RPC provider with latency
and a strict rate limit: gTFA and the signatures path side by side.

Why: the `rpc` source should show its first trades about as soon as one page can be
fetched, and fetch a whole history about as fast as the provider's rate limit allows;
its credit cost per 1,000 transactions decides which history method to run in production.

One invocation: the fake provider (tests/fake_rpc.py) in a process of its own
(bench/fake_process.py), walletd
(`python3 -m walletd serve`, UPSTREAM=rpc, CACHE_TTL=0) as a child per history method,
the lean timed stream client, verification and the process handling of helius_load.py
and stream_load.py (imported, not copied). The fake meters every call of a JSON-RPC
batch, as real providers do (walletd/upstream/pacing.py cites them). For each method,
--rounds full streams of the --signatures wallet, one at a time: time to the first trades
event vs 3 x latency, total time vs 1.25 x the rate-limit bound (JSON-RPC calls / RPS),
and upstream calls and credits per 1,000 transactions, counted from the fake's request
log. The Helius figures
of bench/README.md come from helius_load.py with the same options.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # tests.fake_rpc and walletd, run as bench/rpc_load.py
    sys.path.insert(0, str(REPO))

from bench.fake_process import FakeProcess, FakeSpec  # noqa: E402
from bench.helius_load import (  # noqa: E402
    STREAM_TIMEOUT_S,
    TARGET_FIRST_X,
    TARGET_TOTAL_X,
    WARM_SIGNATURES,
    WARM_WALLET,
    Row,
    Run,
    print_table,
    timed_stream,
    verify,
)
from bench.stream_load import (  # noqa: E402
    CLIENT_CORE,
    HOST,
    LARGE_WALLET,
    Children,
    add_loop_arg,
    execute,
    free_port,
    prepare_process,
    start_walletd,
    stream_path,
)
from tests.fake_rpc import FakeRpc, RpcLogEntry, TokenBucket  # noqa: E402

METHODS = ("gtfa", "signatures")
# Between streams: the last getTransaction batch (up to TRANSACTIONS_BATCH calls) has
# reserved its calls' share of the rate limit; each timed stream starts on an idle budget.
IDLE_S = 2.5
# Credits per call, Helius's price list (https://www.helius.dev/docs/billing/credits):
# getTransactionsForAddress 100; getSignaturesForAddress and getTransaction are archival
# calls, 10 each (a batch is billed per call in it).
CREDITS = {"getTransactionsForAddress": 100, "getSignaturesForAddress": 10, "getTransaction": 10}


@dataclass
class Provider:
    fake: FakeProcess
    port: int

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"


def calls_of(entries: list[RpcLogEntry]) -> dict[str, float]:
    """HTTP requests, JSON-RPC calls by method (batch members counted) and credits."""
    ok = [e for e in entries if e.status == 200]
    by_method: dict[str, int] = {}
    for e in ok:
        for method in e.calls or (e.method or "?",):
            by_method[method] = by_method.get(method, 0) + 1
    return {
        "http_requests": len(ok),
        "http_429": sum(1 for e in entries if e.status == 429),
        "gtfa_calls": by_method.get("getTransactionsForAddress", 0),
        "signature_calls": by_method.get("getSignaturesForAddress", 0),
        "transaction_calls": by_method.get("getTransaction", 0),
        "credits": sum(CREDITS.get(m, 1) * n for m, n in by_method.items()),
    }


async def one_method(run: Run, provider: Provider, method: str) -> None:
    args = run.args
    settings = {
        "UPSTREAM": "rpc",
        "RPC_URL": provider.url,
        "RPC_HISTORY_METHOD": method,
        "UPSTREAM_RPS": f"{args.rps:g}",
        "CACHE_TTL": "0",
        "LOG_LEVEL": "WARNING",
    }
    walletd = await start_walletd(run.children, f"walletd-{method}", **settings)
    async with asyncio.timeout(STREAM_TIMEOUT_S):  # opens walletd's upstream connection
        await timed_stream(walletd.port, stream_path(WARM_WALLET), keep=False)
    await asyncio.sleep(IDLE_S)
    print(f"{method}: {args.rounds} streams of {args.signatures:,} transactions", flush=True)
    for _ in range(args.rounds):
        mark = await provider.fake.log_size()
        # Up to one metered call per transaction: the signatures path needs minutes.
        async with asyncio.timeout(STREAM_TIMEOUT_S + 2 * args.signatures / args.rps):
            timed = await timed_stream(walletd.port, stream_path(args.wallet), keep=True)
        trades = verify(timed, args.signatures)
        if run.trades and trades != run.trades:
            raise AssertionError(f"{method}: {trades} trades, other runs {run.trades}")
        run.trades = trades
        figures = calls_of(await provider.fake.entries(mark))
        figures["first_ms"] = 1000 * timed.first_s
        figures["total_s"] = timed.total_s
        calls = figures["gtfa_calls"] + figures["signature_calls"] + figures["transaction_calls"]
        figures["bound_s"] = calls / args.rps  # the provider meters every call of a batch
        figures["total_x_bound"] = figures["total_s"] / figures["bound_s"]
        per_k = 1000 / args.signatures
        figures["http_per_1k"] = figures["http_requests"] * per_k
        figures["calls_per_1k"] = calls * per_k
        figures["credits_per_1k"] = figures["credits"] * per_k
        run.record(method, figures)
        await asyncio.sleep(IDLE_S)
    run.children.stop(walletd)


def rows_of(run: Run) -> list[Row]:
    rows, args = [], run.args
    for method in METHODS:
        if method not in run.rounds:
            continue

        def row(metric: str, key: str, method: str = method) -> Row:
            r = Row(method, metric, [f[key] for f in run.rounds[method]])
            rows.append(r)
            return r

        limit = args.latency_ms * TARGET_FIRST_X
        first = row("first trades event (ms)", "first_ms")
        first.target, first.passed = f"<= {limit:g} ms (3 x latency)", first.median <= limit
        row("total stream time (s)", "total_s")
        row("rate-limit bound: calls / RPS (s)", "bound_s")
        ratio = row("total / bound", "total_x_bound")
        ratio.target = f"<= {TARGET_TOTAL_X:g}"
        ratio.passed = ratio.median <= TARGET_TOTAL_X
        row("HTTP requests per 1,000 tx", "http_per_1k")
        row("JSON-RPC calls per 1,000 tx", "calls_per_1k")
        row("Helius credits per 1,000 tx", "credits_per_1k")
        row("429s received", "http_429")
    return rows


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--method", choices=(*METHODS, "all"), default="all")
    parser.add_argument("--wallet", default=LARGE_WALLET)
    parser.add_argument("--signatures", type=int, default=10_000, help="the wallet's history")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="upstream latency")
    parser.add_argument("--rps", type=float, default=50.0, help="fake's limit and UPSTREAM_RPS")
    parser.add_argument("--burst", type=float, default=1.0, help="the fake's bucket size")
    parser.add_argument(
        "--loop-stamps",
        action="store_true",
        help="no wire relay: the fake stamps arrivals when its loop gets to them (the old way)",
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 round, 2,000 transactions")
    add_loop_arg(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.signatures = 1, 2000
    args.py_spy = False
    return args


def build_fake(args: argparse.Namespace) -> FakeRpc:
    """The fake provider (in its process), metering every call of a batch; its clock on
    perf_counter (CLOCK_MONOTONIC, the same in every process)."""
    fake = FakeRpc(meter_calls=True, clock=time.perf_counter)
    fake.add_synthetic(args.wallet, args.signatures)
    fake.add_synthetic(WARM_WALLET, WARM_SIGNATURES)
    fake.faults.latency_s = args.latency_ms / 1000
    fake.faults.limiter = TokenBucket(args.rps, args.burst, clock=fake.clock)
    return fake


async def run_all(run: Run) -> None:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    args = run.args
    print(f"fake RPC: building {args.signatures:,} synthetic transactions", flush=True)
    port = free_port()
    fake = FakeProcess(
        FakeSpec(build_fake, args, HOST, port, free_port(), CLIENT_CORE, relay=not args.loop_stamps)
    )
    provider = Provider(fake, port)
    try:
        await fake.start()
        for method in METHODS if args.method == "all" else (args.method,):
            await one_method(run, provider, method)
    finally:
        run.children.stop_all()
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_process()
    with tempfile.TemporaryDirectory(prefix="walletd-rpc-bench-") as tmp:
        run = Run(args, Children(Path(tmp)))
        if (status := execute(run_all, run)) is not None:
            return status
    rows = rows_of(run)
    print(
        f"\nwalletd {run.commit}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
        f"{args.signatures:,} transactions, {run.trades:,} trades per stream; "
        f"{args.latency_ms:g} ms latency, {args.rps:g} RPS (burst {args.burst:g})"
    )
    print_table(rows, args.rounds)
    return 0 if all(r.passed is not False for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
