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
    Capture,
    Children,
    Server,
    Usage,
    dechunk,
    execute,
    frames_of,
    git_describe,
    open_stream,
    prepare_process,
    read_more,
    read_until_event,
    save_capture,
    save_headers,
    start_raw,
    start_walletd,
    stream_path,
    wait_for,
)
from walletd.upstream.demo_data import history_size  # noqa: E402

CAUGHT_UP = b"event: caught_up\n"
TARGET_P99_S = 0.050
TARGET_KB = 20.0
CLIENT_CPU_FLAG = 0.90


def demo_wallets(count: int, max_history: int | None = None) -> list[str]:
    """`count` demo addresses that have a history (so they trade live), of at most
    `max_history` static transactions when given (the live ticks of the last
    WINDOW_TICKS intervals come on top of it)."""
    found: list[str] = []
    n = 0
    while len(found) < count:
        address = base58.b58encode(hashlib.sha256(b"follow-load-%d" % n).digest()).decode()
        n += 1
        if 0 < history_size(address) <= (max_history or history_size(address)):
            found.append(address)
    return found


@dataclass
class Tally:
    caught_up: int = 0
    trades: int = 0
    failed: list[BaseException] = field(default_factory=list)


async def follow(port: int, path: str, gate: asyncio.Semaphore, tally: Tally) -> None:
    """Open a follow stream, read to `caught_up`, then count the live trades read."""
    try:
        async with gate:
            reader, writer, _ = await open_stream(port, path)
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


def p99(after: dict[str, float], before: dict[str, float], name: str) -> tuple[float, float]:
    """The 99th percentile of a histogram over the window: (the upper bound of the bucket
    holding it, the value interpolated linearly inside that bucket, as Prometheus's
    histogram_quantile does)."""
    buckets = sorted(
        (float(key.split('le="')[1].split('"')[0]), delta(after, before, key))
        for key in after
        if key.startswith(name + "_bucket{")
    )
    rank = 0.99 * (buckets[-1][1] if buckets else 0.0)
    lower, below = 0.0, 0.0
    for bound, count in buckets:
        if count >= rank and count > 0:
            if bound == float("inf"):
                return bound, lower
            return bound, lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return float("inf"), float("inf")


async def ramp(
    server: Server, wallets: list[str], query: str, streams: int, tasks: list[Any]
) -> Ramp:
    """Open `streams` follow streams over `wallets` and wait for every `caught_up`. One
    per wallet first: what the server holds per wallet (cached histories, pollers) is
    measured before the rest, so it is not counted as per-stream memory."""
    tally, gate = Tally(), asyncio.Semaphore(CONNECT_GATE)
    started = time.perf_counter()

    def open_streams(count: int) -> None:
        tasks.extend(
            asyncio.create_task(
                follow(server.port, stream_path(wallets[i % len(wallets)]) + query, gate, tally)
            )
            for i in range(len(tasks), len(tasks) + count)
        )

    open_streams(len(wallets))
    async with asyncio.timeout(1800):
        await wait_for(lambda: tally.caught_up + len(tally.failed) >= len(wallets), tasks)
        await asyncio.sleep(1)
        rss_before = server.rss_kb()
        open_streams(streams - len(wallets))
        await wait_for(lambda: tally.caught_up + len(tally.failed) >= streams, tasks)
    if tally.failed:
        raise BenchError(f"{len(tally.failed)} streams failed: {tally.failed[0]!r}")
    return Ramp(tally, time.perf_counter() - started, rss_before)


@dataclass
class Ramp:
    tally: Tally
    seconds: float
    rss_before_kb: int  # with one stream per wallet


async def live_window(server: Server, load: Ramp, seconds: float) -> Window:
    """The server's RSS, then its CPU and the live trades the client read over `seconds`."""
    rss_kb, trades0, usage = server.rss_kb(), load.tally.trades, Usage(server)
    await asyncio.sleep(seconds)
    used = usage.finish()
    trades = load.tally.trades - trades0
    return Window(used, trades, rss_kb, used["server_cpu_s"] / max(trades, 1) * 1e6)


@dataclass
class Window:
    used: dict[str, float]
    trades: int
    rss_kb: int
    cpu_us_per_trade: float


async def capture_live(port: int, path: str) -> tuple[Capture, bytes]:
    """walletd's follow stream at `path` up to its `caught_up`, and its first live
    `trades` frame: what the raw baseline replays."""
    reader, writer, head = await open_stream(port, path)
    raw = bytearray()
    try:
        async with asyncio.timeout(60):
            while True:
                raw += await read_more(reader)
                body, _ = dechunk(bytes(raw))
                frames = frames_of(body[: body.rfind(b"\n\n") + 2])
                ends = [i for i, frame in enumerate(frames) if CAUGHT_UP in frame]
                # A batch of one tick: what each follower gets each second.
                live = [f for f in frames[ends[0] :] if f.count(SIGNATURE) == 1] if ends else []
                if live:
                    return Capture(head.headers, b"".join(frames[: ends[0] + 1])), live[0]
    finally:
        writer.close()


async def walletd_figures(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    """walletd under the load; then its bytes captured for the raw baseline (workdir)."""
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
    tasks: list[Any] = []
    try:
        load = await ramp(server, args.addresses, follow_query(args), args.streams, tasks)
        await asyncio.sleep(2 * args.poll + 1)  # every feed in its live cadence
        before = await metrics(server.port)
        window = await live_window(server, load, args.window)
        after = await metrics(server.port)
    finally:
        await cancel(tasks)
    prefix, frame = await capture_live(
        server.port, stream_path(args.addresses[0]) + follow_query(args)
    )
    children.stop(server)
    workdir = children.workdir
    save_capture(workdir, "follow", prefix)
    save_headers(workdir, prefix)
    (workdir / "live.sse").write_bytes(frame)
    wall_s = window.used["wall_s"]
    polls = delta(after, before, "walletdoctor_live_poll_seconds_count")
    writes = delta(after, before, "walletdoctor_live_delivery_seconds_count")
    bucket, interpolated = p99(after, before, "walletdoctor_live_delivery_seconds")
    return {
        "ramp_s": load.seconds,
        "window_s": wall_s,
        "polls_per_interval": polls / (wall_s / args.poll),
        "delivery_p99_le_s": bucket,
        "delivery_p99_s": interpolated,
        "delivery_mean_s": delta(after, before, "walletdoctor_live_delivery_seconds_sum")
        / max(writes, 1),
        "live_writes": writes,
        "trades_delivered": window.trades,
        "kb_per_stream": (window.rss_kb - load.rss_before_kb) / (args.streams - args.wallets),
        "rss_before_kb": load.rss_before_kb,
        "rss_after_kb": window.rss_kb,
        "server_cpu": window.used["server_cpu"],
        "server_cpu_us_per_trade": window.cpu_us_per_trade,
        "client_cpu": window.used["client_cpu"],
        "other_cpu": window.used["other_cpu"],
        "client_saturated": window.used["client_cpu"] > CLIENT_CPU_FLAG,
    }


async def raw_figures(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    """The raw baseline under the same load: every stream gets walletd's captured bytes
    up to `caught_up`, then walletd's live frame each second per wallet."""
    workdir = children.workdir
    raw = await start_raw(
        children,
        "raw",
        dict.fromkeys(args.addresses, workdir / "follow.sse"),
        workdir / "headers.json",
        options=["--live", str(workdir / "live.sse"), "--live-every", "1"],
    )
    tasks: list[Any] = []
    try:
        load = await ramp(raw, args.addresses, "?follow=true", args.streams, tasks)
        await asyncio.sleep(2)  # every ticker ticking
        window = await live_window(raw, load, args.window)
    finally:
        await cancel(tasks)
    children.stop(raw)
    return {
        "raw_ramp_s": load.seconds,
        "raw_trades_delivered": window.trades,
        "raw_kb_per_stream": (window.rss_kb - load.rss_before_kb) / (args.streams - args.wallets),
        "raw_server_cpu": window.used["server_cpu"],
        "raw_cpu_us_per_trade": window.cpu_us_per_trade,
        "raw_client_cpu": window.used["client_cpu"],
    }


def follow_query(args: argparse.Namespace) -> str:
    """The follow streams' query: with --limit, histories of at most that many trades."""
    return "?follow=true" + (f"&limit={args.limit}" if args.limit else "")


async def cancel(tasks: list[Any]) -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def measure(args: argparse.Namespace, children: Children) -> dict[str, Any]:
    figures = {
        "streams": args.streams,
        "wallets": args.wallets,
        "max_history": args.max_history,
        "history_limit": args.limit,
        "poll_interval_s": args.poll,
        **await walletd_figures(args, children),
        **await raw_figures(args, children),
        "load_avg": os.getloadavg(),
    }
    figures["cpu_per_trade_ratio"] = (
        figures["server_cpu_us_per_trade"] / figures["raw_cpu_us_per_trade"]
    )
    return figures


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="bench/follow_load.py", description=__doc__)
    parser.add_argument("--streams", type=int, default=10_000)
    parser.add_argument("--wallets", type=int, default=100)
    parser.add_argument(
        "--max-history", type=int, default=None, help="only wallets of at most N transactions"
    )
    parser.add_argument(
        "--limit", type=int, default=None, help="each follower's history: at most N trades"
    )
    parser.add_argument("--poll", type=float, default=0.25, help="FOLLOW_POLL_INTERVAL")
    parser.add_argument("--window", type=float, default=20.0, help="seconds measured")
    parser.add_argument("--quick", action="store_true", help="1000 streams, a 5 s window")
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.window = 1000, 5.0
    args.addresses = demo_wallets(args.wallets, args.max_history)
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
    print(
        f"targets: polls / interval = {f['wallets']}: {f['polls_per_interval']:.2f}; "
        f"delivery p99 <= {TARGET_P99_S * 1000:g} ms: {f['delivery_p99_s'] * 1000:.1f} ms "
        f"(bucket <= {f['delivery_p99_le_s'] * 1000:g} ms); RSS / stream <= {TARGET_KB:g} KB: "
        f"{f['kb_per_stream']:.1f} KB; CPU / live trade: {f['server_cpu_us_per_trade']:.1f} µs, "
        f"{f['cpu_per_trade_ratio']:.2f}x raw ({f['raw_cpu_us_per_trade']:.1f} µs)"
    )
    passed = f["delivery_p99_s"] <= TARGET_P99_S and f["kb_per_stream"] <= TARGET_KB
    if f["client_saturated"]:
        print("  FLAG: the load client was above 90 % of its core")
    RESULTS_DIR.mkdir(exist_ok=True)
    path = RESULTS_DIR / f"follow-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps({"commit": git_describe(), **f}, indent=2))
    print(f"figures: {path}")
    return 0 if passed else 2


if __name__ == "__main__":
    sys.exit(main())
