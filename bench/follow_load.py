"""Load benchmark of live follow (SPEC §1): one walletd process, many follow streams.

One walletd (`python -m walletd serve`, uvloop, pinned to core 0, started and stopped by
bench/stream_load.py's process handling) on the demo source with live trades every
second (DEMO_LIVE_INTERVAL=1); this client (core 1, the lean asyncio client of
stream_load.py) opens --streams follow streams spread over --wallets demo wallets,
waits for every `caught_up`, then measures a --window of the live phase:

- upstream polls per poll interval (walletdoctor_live_poll_seconds_count): one per
  wallet, whatever the number of followers;
- p99 from a batch's detection (the end of its poll) to its write on a follower's
  socket (walletdoctor_live_delivery_seconds; every follower's write is a sample, so
  the p99 is about the last followers served);
- RSS per follow stream (after every stream caught up, minus before any);
- server CPU per live trade delivered (trades counted by this client: `"signature"`
  occurrences in what it read), and this client's CPU (a run where it is above 90 % of
  its core is flagged: the client, not walletd, may be the limit).

    python3 bench/follow_load.py [--quick] [--streams N] [--wallets W] [--window S]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # tests.fake_helius and walletd, run as bench/follow_load.py
    sys.path.insert(0, str(REPO))

import base58  # noqa: E402

from bench.stream_load import (  # noqa: E402
    CONNECT_GATE,
    HOST,
    RESULTS_DIR,
    SIGNATURE,
    BenchError,
    Children,
    Server,
    Usage,
    execute,
    git_describe,
    open_stream,
    prepare_process,
    read_more,
    read_until_event,
    start_walletd,
    stream_path,
    wait_for,
)
from tests.fake_helius import synthetic_transactions  # noqa: E402

CAUGHT_UP = b"event: caught_up\n"
TARGET_P99_S = 0.050
TARGET_KB = 20.0
CLIENT_CPU_FLAG = 0.90


def demo_wallets(count: int) -> list[str]:
    """`count` demo addresses that have a history (so they trade live)."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        address = base58.b58encode(hashlib.sha256(b"follow-load-%d" % n).digest()).decode()
        n += 1
        if synthetic_transactions(address, 1):
            found.append(address)
    return found


@dataclass
class Tally:
    caught_up: int = 0
    trades: int = 0
    failed: list[BaseException] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)


async def follow(port: int, wallet: str, gate: asyncio.Semaphore, tally: Tally) -> None:
    """Open a follow stream, read to `caught_up`, then count the live trades read."""
    try:
        async with gate:
            reader, writer, _ = await open_stream(port, stream_path(wallet) + "?follow=true")
        try:
            await read_until_event(reader, CAUGHT_UP, b"")
            tally.caught_up += 1
            while True:
                data = await read_more(reader)  # (not `+=` across an await: lost updates)
                tally.trades += data.count(SIGNATURE)
        finally:
            writer.close()
    except asyncio.CancelledError:
        raise
    except BaseException as exc:
        tally.failed.append(exc)


async def metrics(port: int) -> dict[str, float]:
    """The samples of walletd's /metrics, by name with labels."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(f"GET /metrics HTTP/1.1\r\nHost: {HOST}\r\nConnection: close\r\n\r\n".encode())
    raw = await reader.read()
    writer.close()
    body = raw.partition(b"\r\n\r\n")[2].decode()
    out = {}
    for line in body.splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name] = float(value)
    return out


def delta(after: dict[str, float], before: dict[str, float], name: str) -> float:
    return after.get(name, 0.0) - before.get(name, 0.0)


def p99_bound(after: dict[str, float], before: dict[str, float], name: str) -> float:
    """The upper bound of the histogram bucket holding the 99th percentile of the window."""
    buckets = sorted(
        (float(key.split('le="')[1].split('"')[0]), delta(after, before, key))
        for key in after
        if key.startswith(name + "_bucket{")
    )
    total = buckets[-1][1] if buckets else 0.0
    return next((le for le, count in buckets if count >= 0.99 * total), float("inf"))


async def measure(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    server: Server = await start_walletd(
        children,
        "walletd",
        UPSTREAM="demo",
        DEMO_LIVE_INTERVAL="1",
        FOLLOW_POLL_INTERVAL=str(args.poll),
        SSE_KEEPALIVE_INTERVAL="15",
        SSE_MAX_STREAM_DURATION="3600",
        STALE_STREAM_TIMEOUT="3600",
        MAX_STREAMS=str(args.streams + 100),
        WALLETD_LOOP="uvloop",
    )
    wallets = demo_wallets(args.wallets)
    tally, gate = Tally(), asyncio.Semaphore(CONNECT_GATE)
    started = time.perf_counter()
    # One follower per wallet first: histories cached and pollers running are not
    # per-stream memory.
    tasks = [asyncio.create_task(follow(server.port, w, gate, tally)) for w in wallets]
    try:
        async with asyncio.timeout(600):
            await wait_for(lambda: tally.caught_up + len(tally.failed) >= len(wallets), tasks)
            await asyncio.sleep(1)
            rss_before = server.rss_kb()
            tasks += [
                asyncio.create_task(follow(server.port, wallets[i % len(wallets)], gate, tally))
                for i in range(args.streams - len(wallets))
            ]
            await wait_for(lambda: tally.caught_up + len(tally.failed) >= args.streams, tasks)
        if tally.failed:
            raise BenchError(f"{len(tally.failed)} streams failed: {tally.failed[0]!r}")
        ramp_s = time.perf_counter() - started
        await asyncio.sleep(2 * args.poll + 1)  # every feed in its live cadence
        rss_after = server.rss_kb()
        before, trades0, usage = await metrics(server.port), tally.trades, Usage(server)
        await asyncio.sleep(args.window)
        used, after, trades = usage.finish(), await metrics(server.port), tally.trades - trades0
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    polls = delta(after, before, "walletdoctor_live_poll_seconds_count")
    writes = delta(after, before, "walletdoctor_live_delivery_seconds_count")
    return {
        "streams": args.streams,
        "wallets": args.wallets,
        "poll_interval_s": args.poll,
        "window_s": used["wall_s"],
        "ramp_s": ramp_s,
        "polls_per_interval": polls / (used["wall_s"] / args.poll),
        "delivery_p99_le_s": p99_bound(after, before, "walletdoctor_live_delivery_seconds"),
        "delivery_mean_s": delta(after, before, "walletdoctor_live_delivery_seconds_sum")
        / max(writes, 1),
        "live_writes": writes,
        "trades_delivered": trades,
        "kb_per_stream": (rss_after - rss_before) / (args.streams - args.wallets),
        "rss_before_kb": rss_before,
        "rss_after_kb": rss_after,
        "server_cpu": used["server_cpu"],
        "server_cpu_us_per_trade": used["server_cpu"] * used["wall_s"] / max(trades, 1) * 1e6,
        "client_cpu": used["client_cpu"],
        "other_cpu": used["other_cpu"],
        "client_saturated": used["client_cpu"] > CLIENT_CPU_FLAG,
        "load_avg": os.getloadavg(),
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/follow_load.py", description=__doc__)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--wallets", type=int, default=100)
    parser.add_argument("--poll", type=float, default=0.25, help="FOLLOW_POLL_INTERVAL")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--quick", action="store_true", help="1000 streams, a 5 s window")
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.window = 1000, 5.0
    return args


@dataclass
class Run:
    args: argparse.Namespace
    children: Children
    figures: dict[str, Any] = field(default_factory=dict)


async def run_all(run: Run) -> None:
    run.figures = await measure(run.args, run.children)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_process()
    with tempfile.TemporaryDirectory(prefix="walletd-follow-bench-") as tmp:
        run = Run(args, Children(Path(tmp)))
        if (status := execute(run_all, run)) is not None:
            return status
    f = run.figures
    print(f"walletd {git_describe()}, {os.cpu_count()} cores, load {f['load_avg'][0]:.2f}")
    for name, value in f.items():
        print(f"  {name:26} {value}")
    passed = f["delivery_p99_le_s"] <= TARGET_P99_S and f["kb_per_stream"] <= TARGET_KB
    if f["client_saturated"]:
        print("  FLAG: the load client was above 90 % of its core")
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"follow-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"commit": git_describe(), **f}, indent=2))
    print(f"figures: {path}")
    return 0 if passed else 2


if __name__ == "__main__":
    sys.exit(main())
