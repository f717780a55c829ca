"""Benchmark of walletd's Helius source against a fake Helius with latency and a rate limit.

Why: the Helius source is meant to be as fast as the upstream's rate limit allows, and
to show the first trades about as soon as one signature page and one transaction batch
can be fetched (issue 3). Both are about waiting, not CPU, so the figures are absolute,
set against the upstream latency and the lower bound the rate limit puts on the calls
needed, which this benchmark counts from the fake's own request log.

One invocation runs everything: the fake Helius (tests/fake_helius.py) in a process of
its own on core 1, beside this client (bench/fake_process.py: in this process's event
loop it stamped requests late while the client worked, and refused some that walletd had
sent paced); walletd (`python3 -m walletd serve`) as a child process on core 0, pointed
at the fake. Scenarios:

    single      --rounds full streams of the wallet, one at a time, CACHE_TTL=0 (every
                stream fetches the whole history): time to the first trades event vs
                3x latency, total time vs 1.25x the rate-limit bound, 429s received
    concurrent  --streams concurrent streams of the wallet on a fresh walletd with
                CACHE_TTL=3600 (they share one fetch): upstream calls and wall time vs
                one stream; then as many again, served from the cache

The stream client is the lean one of stream_load.py (plain asyncio protocols and a
hand-written HTTP/1.1 GET), which also supplies the process handling (children pinned to
core 0, tied to this process with PR_SET_PDEATHSIG, stopped in a `finally`) and the
capture checks. Everything listens on 127.0.0.1 only, and every wait is bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import itertools
import json
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # tests.fake_helius and walletd, run as bench/helius_load.py
    sys.path.insert(0, str(REPO))

from bench.fake_process import FakeProcess, FakeSpec  # noqa: E402
from bench.stream_load import (  # noqa: E402
    CLIENT_CORE,
    HOST,
    LARGE_WALLET,
    NORMAL_WALLET,
    RESULTS_DIR,
    TRADES_EVENT,
    BenchError,
    Children,
    DrainProtocol,
    Server,
    Usage,
    add_loop_arg,
    dechunk,
    event_data,
    execute,
    frames_of,
    free_port,
    get_request,
    git_describe,
    percentile,
    prepare_process,
    print_columns,
    print_profiles,
    start_py_spy,
    start_walletd,
    stop_py_spy,
    stream_path,
    top_frames,
    verdict,
    verify_full_stream,
)
from tests.fake_helius import RPC, TRANSACTIONS, FakeHelius, LogEntry  # noqa: E402

KEY = "bench-helius-key"
WARM_WALLET = NORMAL_WALLET  # a small history that opens walletd's upstream connections
WARM_SIGNATURES = 300
STREAM_TIMEOUT_S = 120.0  # any one stream, or one batch of concurrent streams
TARGET_FIRST_X = 3.0  # first trades event <= 3 x the upstream latency
TARGET_TOTAL_X = 1.25  # total stream time <= 1.25 x the rate-limit bound
ERROR_EVENT = b"event: error\n"


# ---------------------------------------------------------------------------------------
# The fake Helius, in a process of its own (bench/fake_process.py)


@dataclass
class Upstream:
    """The fake Helius and what it knows about the benchmark's wallet."""

    fake: FakeProcess
    port: int
    signatures: int  # in the wallet's history
    failed: int  # of them, failed transactions (listed, never fetched by walletd)
    expected_rpc: int  # signature pages walletd needs, counted from its side
    expected_tx: int  # transaction batches walletd needs, counted from its side

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}"


def build_fake(args: argparse.Namespace) -> FakeHelius:
    """The fake (in its process), its clock on perf_counter (CLOCK_MONOTONIC, the same in
    every process) so its log lines up with the client's."""
    fake = FakeHelius(
        KEY,
        synthetic={args.wallet: args.signatures, WARM_WALLET: WARM_SIGNATURES},
        clock=time.perf_counter,
    )
    fake.faults.set_latency(args.latency_ms / 1000)
    fake.faults.limit_rps(args.rps, args.burst, shared=args.shared_rps)
    return fake


def expected_calls(fake: FakeHelius, args: argparse.Namespace) -> tuple[int, int, int]:
    """(failed transactions, signature pages, transaction batches) walletd needs.

    Pages of 1000 until one comes back short (a history of exactly k*1000 needs an empty
    page k+1 to know it ended); batches of 100 signatures, less those whose signatures
    all failed (walletd fetches no failed transaction, so asks nothing for them).
    """
    entries = fake.histories[args.wallet].entries
    failed = sum(1 for e in entries if e.err is not None)
    pages = len(entries) // 1000 + 1
    batches = sum(
        1
        for start in range(0, len(entries), 100)
        if any(e.err is None for e in entries[start : start + 100])
    )
    return failed, pages, batches


# ---------------------------------------------------------------------------------------
# A timed stream


class TimedStream(DrainProtocol):
    """A whole stream, with the time its first trades event was complete; `keep` keeps
    every byte (to verify the stream), else only the tail, as stream_load's readers do."""

    def __init__(self, request: bytes, *, keep: bool) -> None:
        super().__init__(request)
        self.keep = keep
        self.raw = bytearray()
        self.head = bytearray()  # up to the first trades event's end
        self.t_first: float | None = None
        self.t_end: float | None = None

    def buffer_updated(self, nbytes: int) -> None:
        if self.done.done():
            return
        if self.keep:
            self.raw += self.buf[:nbytes]
        if self.t_first is None:
            self.head += self.buf[:nbytes]
            at = self.head.find(TRADES_EVENT)
            if at >= 0 and self.head.find(b"\n\n", at) >= 0:
                self.t_first = time.perf_counter()
                self.head = bytearray()
        super().buffer_updated(nbytes)
        if self.done.done() and self.t_end is None:
            self.t_end = time.perf_counter()


@dataclass
class Timed:
    t0: float  # before the connect
    proto: TimedStream

    @property
    def first_s(self) -> float:
        if self.proto.t_first is None:
            raise BenchError("the stream ended without a trades event")
        return self.proto.t_first - self.t0

    @property
    def total_s(self) -> float:
        assert self.proto.t_end is not None
        return self.proto.t_end - self.t0


async def timed_stream(port: int, path: str, *, keep: bool) -> Timed:
    loop = asyncio.get_running_loop()
    request = get_request(port, path)
    t0 = time.perf_counter()
    _, proto = await loop.create_connection(lambda: TimedStream(request, keep=keep), HOST, port)
    try:
        await proto.done
    except asyncio.CancelledError:
        proto.abandon()
        raise
    return Timed(t0, proto)


def verify(timed: Timed, signatures: int) -> int:
    """The trades of a kept stream, checked; it must have scanned the whole history."""
    body, ended = dechunk(bytes(timed.proto.raw.partition(b"\r\n\r\n")[2]))
    if not ended:
        raise BenchError("the stream did not end with its last chunk")
    if ERROR_EVENT in body:
        frame = next(f for f in frames_of(body) if f.startswith(ERROR_EVENT))
        raise BenchError(f"the stream ended with an error: {frame.decode()[:300]}")
    trades = verify_full_stream(body)
    complete = next(f for f in frames_of(body) if f.startswith(b"event: complete\n"))
    scanned = event_data(complete)["signatures_scanned"]
    if scanned != signatures:
        raise BenchError(f"the stream scanned {scanned} signatures, not {signatures}")
    return trades


# ---------------------------------------------------------------------------------------
# The request log: calls, 429s, the bound and idle gaps


def ok(entry: LogEntry) -> bool:
    return entry.status == 200


def is_429(entry: LogEntry) -> bool:
    return entry.status == 429


def bound_s(rpc_ok: int, tx_ok: int, rps: float, shared: bool) -> float:
    """The least time `rps` allows for the calls needed: with one budget for both
    endpoints, all calls / rps; with one budget each, the busier endpoint's calls / rps."""
    return (rpc_ok + tx_ok) / rps if shared else max(rpc_ok, tx_ok) / rps


def tx_gaps(entries: list[LogEntry], rps: float) -> dict[str, float]:
    """Idle time on the transactions endpoint: arrival gaps beyond 1/rps, and how much of
    it fell in gaps during which a signature page was asked for."""
    tx = sorted(e.t for e in entries if e.endpoint == TRANSACTIONS)
    rpc = [e.t for e in entries if e.endpoint == RPC]
    interval = 1 / rps
    excess = excess_at_page = 0.0
    long_gaps = long_at_page = 0
    gaps = [b - a for a, b in itertools.pairwise(tx)]
    for a, gap in zip(tx, gaps, strict=False):
        extra = max(0.0, gap - interval)
        at_page = any(a < t < a + gap for t in rpc)
        excess += extra
        excess_at_page += extra if at_page else 0.0
        if gap > 2 * interval:
            long_gaps += 1
            long_at_page += at_page
    return {
        "tx_gap_p50_ms": 1000 * statistics.median(gaps) if gaps else 0.0,
        "tx_gap_max_ms": 1000 * max(gaps) if gaps else 0.0,
        "tx_idle_excess_s": excess,
        "tx_idle_excess_at_page_s": excess_at_page,
        "tx_long_gaps": long_gaps,
        "tx_long_gaps_at_page": long_at_page,
    }


def gap_before_429_ms(entries: list[LogEntry], shared: bool) -> float:
    """The longest time between a 429 and the previous accepted request it competed with
    (same endpoint, or any with one shared limit). A token bucket of burst 1 refuses
    exactly the requests that arrive sooner than 1/rps after the last accepted one."""
    longest, accepted = 0.0, {}
    for e in sorted(entries, key=lambda e: e.t):
        budget = "shared" if shared else e.endpoint
        if is_429(e) and budget in accepted:
            longest = max(longest, e.t - accepted[budget])
        elif ok(e):
            accepted[budget] = e.t
    return 1000 * longest


def call_figures(entries: list[LogEntry], args: argparse.Namespace) -> dict[str, float]:
    rpc = [e for e in entries if e.endpoint == RPC]
    tx = [e for e in entries if e.endpoint == TRANSACTIONS]
    rpc_ok, tx_ok = sum(map(ok, rpc)), sum(map(ok, tx))
    return {
        "calls": len(entries),
        "rpc_ok": rpc_ok,
        "tx_ok": tx_ok,
        "http_429": sum(map(is_429, entries)),
        "gap_429_max_ms": gap_before_429_ms(entries, args.shared_rps),
        "other_failed": sum(1 for e in entries if not ok(e) and not is_429(e)),
        "bound_s": bound_s(rpc_ok, tx_ok, args.rps, args.shared_rps),
        # walletd's one pacer spaces every call, of either endpoint, 1/UPSTREAM_RPS apart
        "walletd_floor_s": (rpc_ok + tx_ok) / (args.helius_rps or args.rps),
    }


def timeline(entries: list[LogEntry], t0: float) -> list[list[Any]]:
    """The requests of one stream, relative to its connect: [ms, endpoint, status, ms]."""
    return [
        [
            round(1000 * (e.t - t0), 1),
            e.endpoint,
            e.status,
            round(1000 * ((e.t_end or e.t) - e.t), 1),
        ]
        for e in entries
    ]


def retries_logged(server: Server) -> int:
    """walletd's upstream_retry warnings so far (LOG_LEVEL=WARNING keeps them)."""
    with contextlib.suppress(OSError):
        return server.log.read_text(errors="replace").count("upstream_retry")
    return 0


# ---------------------------------------------------------------------------------------
# Scenarios


@dataclass
class Run:
    args: argparse.Namespace
    children: Children
    upstream: Upstream | None = None
    rounds: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    timelines: dict[str, list[list[Any]]] = field(default_factory=dict)
    profiles: dict[str, list[str]] = field(default_factory=dict)
    trades: int = 0
    stamp: str = field(default_factory=lambda: datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    commit: str = field(default_factory=lambda: git_describe())

    def record(self, scenario: str, figures: dict[str, float]) -> None:
        self.rounds.setdefault(scenario, []).append(figures)
        shown = ", ".join(f"{k}={v:,.4g}" for k, v in figures.items())
        print(f"  {scenario:<11} {shown}", flush=True)


def walletd_settings(run: Run, cache_ttl: int) -> dict[str, str]:
    assert run.upstream is not None
    return {
        "HELIUS_KEY": KEY,
        "HELIUS_RPC_URL": run.upstream.url,
        "HELIUS_API_URL": run.upstream.url,
        "UPSTREAM_RPS": f"{run.args.helius_rps or run.args.rps:g}",
        "CACHE_TTL": str(cache_ttl),
        "LOG_LEVEL": "WARNING",
    }


async def start_helius_walletd(run: Run, name: str, cache_ttl: int) -> Server:
    """walletd on the fake; one stream of a small wallet opens its upstream connections."""
    walletd = await start_walletd(run.children, name, **walletd_settings(run, cache_ttl))
    async with asyncio.timeout(STREAM_TIMEOUT_S):
        await timed_stream(walletd.port, stream_path(WARM_WALLET), keep=False)
    await asyncio.sleep(0.5)  # the token buckets refill; the pacer's slots are in the past
    return walletd


@contextlib.contextmanager
def sampled(run: Run, server: Server, label: str) -> Any:
    """py-spy on walletd while the block runs, with --py-spy."""
    if not run.args.py_spy:
        yield
        return
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"pyspy-helius-{run.stamp}-{label}.txt"
    spy = start_py_spy(server.proc.pid, out)
    time.sleep(1)  # attached
    try:
        yield
    finally:
        stop_py_spy(spy)
    if out.exists():
        run.profiles[label] = top_frames(out)


async def single(run: Run) -> None:
    """Full streams one at a time, each fetching the whole history (CACHE_TTL=0)."""
    assert run.upstream is not None
    up, args = run.upstream, run.args
    walletd = await start_helius_walletd(run, "walletd-single", cache_ttl=0)
    print(f"single: {args.rounds} streams of {args.signatures:,} signatures", flush=True)
    path = stream_path(args.wallet)
    for round_no in range(args.rounds):
        mark, retries = await up.fake.log_size(), retries_logged(walletd)
        usage = Usage(walletd)
        with sampled(run, walletd, f"single-{round_no}"):
            async with asyncio.timeout(STREAM_TIMEOUT_S):
                timed = await timed_stream(walletd.port, path, keep=True)
        cpu = usage.finish()
        trades = verify(timed, up.signatures)
        if run.trades and trades != run.trades:
            raise BenchError(f"round {round_no}: {trades} trades, earlier rounds {run.trades}")
        run.trades = trades
        entries = await up.fake.entries(mark)
        first_tx = next(e.t for e in entries if e.endpoint == TRANSACTIONS)
        figures = {
            "first_ms": 1000 * timed.first_s,
            "total_s": timed.total_s,
            **call_figures(entries, args),
            "walletd_retries": retries_logged(walletd) - retries,
            "first_rpc_ms": 1000 * (entries[0].t - timed.t0),
            "first_tx_ms": 1000 * (first_tx - timed.t0),
            "last_answer_s": max(e.t_end or e.t for e in entries) - timed.t0,
            **tx_gaps(entries, args.rps),
            "walletd_cpu": cpu["server_cpu"],
        }
        figures["total_x_bound"] = figures["total_s"] / figures["bound_s"]
        run.record("single", figures)
        run.timelines[f"single-{round_no}"] = timeline(entries, timed.t0)
        await asyncio.sleep(0.5)
    run.children.stop(walletd)


async def concurrent_streams(run: Run, walletd: Server, count: int) -> dict[str, float]:
    assert run.upstream is not None
    up = run.upstream
    mark, retries = await up.fake.log_size(), retries_logged(walletd)
    path = stream_path(run.args.wallet)
    usage = Usage(walletd)
    async with asyncio.timeout(STREAM_TIMEOUT_S):
        streams = await asyncio.gather(
            *(timed_stream(walletd.port, path, keep=False) for _ in range(count))
        )
    cpu = usage.finish()
    short = [s.proto.trades for s in streams if s.proto.trades != run.trades]
    if short:
        raise BenchError(f"{len(short)} streams got {short[:3]}... trades, not {run.trades}")
    entries = await up.fake.entries(mark)
    firsts = [s.first_s for s in streams]
    start = min(s.t0 for s in streams)
    return {
        "streams": count,
        "wall_s": max(s.proto.t_end or 0.0 for s in streams) - start,
        "first_p50_ms": 1000 * percentile(firsts, 0.5),
        "first_max_ms": 1000 * max(firsts),
        "total_p50_s": percentile([s.total_s for s in streams], 0.5),
        **call_figures(entries, run.args),
        "walletd_retries": retries_logged(walletd) - retries,
        "walletd_cpu": cpu["server_cpu"],
    }


async def concurrent(run: Run) -> None:
    """--streams streams of the wallet at once, each round on a fresh walletd (cold cache)."""
    args = run.args
    if not run.trades:
        raise BenchError("the concurrent scenario needs the single one's verified trade count")
    print(f"concurrent: {args.streams} streams at once, CACHE_TTL=3600", flush=True)
    for round_no in range(args.rounds):
        walletd = await start_helius_walletd(run, f"walletd-concurrent-{round_no}", 3600)
        run.record("concurrent", await concurrent_streams(run, walletd, args.streams))
        run.record("cached", await concurrent_streams(run, walletd, args.streams))
        run.children.stop(walletd)


# ---------------------------------------------------------------------------------------
# Report


@dataclass
class Row:
    scenario: str
    metric: str
    values: list[float]
    target: str = ""
    passed: bool | None = None

    @property
    def median(self) -> float:
        return statistics.median(self.values)


def fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if value == int(value):
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3g}" if abs(value) >= 1 else f"{value:.2f}"


def rows_of(run: Run) -> list[Row]:
    args, rows = run.args, []

    def row(scenario: str, metric: str, key: str) -> Row:
        r = Row(scenario, metric, [f[key] for f in run.rounds[scenario]])
        rows.append(r)
        return r

    if "single" in run.rounds:
        limit = args.latency_ms * TARGET_FIRST_X
        first = row("single", "first trades event (ms)", "first_ms")
        first.target, first.passed = f"<= {limit:g} ms (3 x latency)", first.median <= limit
        row("single", "total stream time (s)", "total_s")
        row("single", "rate-limit bound (s)", "bound_s")
        ratio = row("single", "total / bound", "total_x_bound")
        ratio.target, ratio.passed = f"<= {TARGET_TOTAL_X:g}", ratio.median <= TARGET_TOTAL_X
        row("single", "walletd floor: all calls / UPSTREAM_RPS (s)", "walletd_floor_s")
        row("single", "signature pages (200)", "rpc_ok")
        row("single", "transaction batches (200)", "tx_ok")
        r429 = row("single", "429s received", "http_429")
        r429.target, r429.passed = "0", max(r429.values) == 0
        row("single", "longest gap before a 429 (ms)", "gap_429_max_ms")
        row("single", "other failed calls", "other_failed")
        row("single", "first page asked (ms after connect)", "first_rpc_ms")
        row("single", "first batch asked (ms after connect)", "first_tx_ms")
        row("single", "last upstream answer (s)", "last_answer_s")
        row("single", "tx endpoint idle beyond 1/rps (s)", "tx_idle_excess_s")
        row("single", "  of it while a page was asked (s)", "tx_idle_excess_at_page_s")
        row("single", "walletd CPU (cores)", "walletd_cpu")
    for scenario in ("concurrent", "cached"):
        if scenario in run.rounds:
            row(scenario, "streams", "streams")
            row(scenario, "upstream calls", "calls")
            row(scenario, "429s received", "http_429")
            row(scenario, "longest gap before a 429 (ms)", "gap_429_max_ms")
            row(scenario, "wall time, first connect to last end (s)", "wall_s")
            row(scenario, "first trades event p50 (ms)", "first_p50_ms")
            row(scenario, "first trades event max (ms)", "first_max_ms")
            row(scenario, "walletd CPU (cores)", "walletd_cpu")
    return rows


def print_table(rows: list[Row], rounds: int) -> None:
    header = ("scenario", "metric", "median", *(f"r{i + 1}" for i in range(rounds)))
    lines = [(*header, "target", "result")]
    for r in rows:
        cells = [fmt(v) for v in r.values] + [""] * (rounds - len(r.values))
        lines.append((r.scenario, r.metric, fmt(r.median), *cells, r.target, verdict(r.passed)))
    print_columns(lines)


def save_results(run: Run, rows: list[Row]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"helius_load-{run.stamp}.json"
    up = run.upstream
    results = {
        "walletd_commit": run.commit,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(run.args).items()},
        "history": None
        if up is None
        else {
            "signatures": up.signatures,
            "failed": up.failed,
            "expected_rpc": up.expected_rpc,
            "expected_tx": up.expected_tx,
        },
        "trades": run.trades,
        "rounds": run.rounds,
        "table": [{**vars(r), "median": r.median} for r in rows],
        "timelines": run.timelines,  # [ms after connect, endpoint, status, ms to answer]
        "profiles": run.profiles,
    }
    path.write_text(json.dumps(results, indent=1))
    return path


# ---------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=("single", "concurrent", "all"), default="all")
    parser.add_argument("--wallet", default=LARGE_WALLET)
    parser.add_argument("--signatures", type=int, default=10_000, help="the wallet's history")
    parser.add_argument("--latency-ms", type=float, default=50.0, help="upstream latency")
    parser.add_argument("--rps", type=float, default=50.0, help="fake's limit and UPSTREAM_RPS")
    parser.add_argument(
        "--helius-rps", type=float, default=None, help="walletd's UPSTREAM_RPS (default: --rps)"
    )
    parser.add_argument("--burst", type=float, default=1.0, help="the fake's bucket size")
    parser.add_argument(
        "--loop-stamps",
        action="store_true",
        help="no wire relay: the fake stamps arrivals when its loop gets to them (the old way)",
    )
    parser.add_argument(
        "--shared-rps", action="store_true", help="one limit for both endpoints (default: each)"
    )
    parser.add_argument("--streams", type=int, default=50, help="concurrent streams")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--py-spy", action="store_true", help="sample walletd (single streams)")
    parser.add_argument("--quick", action="store_true", help="1 round, 2,000 signatures")
    add_loop_arg(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.signatures = 1, 2000
    return args


async def run_all(run: Run) -> None:
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    args = run.args
    port = free_port()
    fake = FakeProcess(
        FakeSpec(
            build_fake,
            args,
            HOST,
            port,
            free_port(),
            CLIENT_CORE,
            expected_calls,
            relay=not args.loop_stamps,
        )
    )
    print(f"fake Helius: building {args.signatures:,} synthetic transactions", flush=True)
    try:
        failed, pages, batches = await fake.start()
        run.upstream = Upstream(fake, port, args.signatures, failed, pages, batches)
        limit = "one shared limit" if args.shared_rps else "a limit per endpoint"
        print(
            f"fake Helius on {run.upstream.url}: {args.latency_ms:g} ms, {args.rps:g} RPS "
            f"({limit}, burst {args.burst:g}); {args.signatures:,} signatures, {failed} failed: "
            f"walletd needs {pages} pages + {batches} batches; "
            f"UPSTREAM_RPS={args.helius_rps or args.rps:g}",
            flush=True,
        )
        await single(run)
        if args.scenario in ("concurrent", "all"):
            await concurrent(run)
    finally:
        run.children.stop_all()
        await fake.stop()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_process()
    with tempfile.TemporaryDirectory(prefix="walletd-helius-bench-") as tmp:
        run = Run(args, Children(Path(tmp)))
        if (status := execute(run_all, run)) is not None:
            return status
    rows = rows_of(run)
    print_profiles(run)
    print(
        f"\nwalletd {run.commit}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}; "
        f"{args.signatures:,} signatures, {run.trades:,} trades per stream"
    )
    print_table(rows, args.rounds)
    print(f"\nfigures: {save_results(run, rows)}")
    return 0 if all(r.passed is not False for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
