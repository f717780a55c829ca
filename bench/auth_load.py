"""Benchmark of access control (issue 4): requests/s through API-key auth and the limiter.

Why ratios: this machine is small (2 cores) and noisy, so absolute figures move from run
to run; three walletd processes measured in the same invocation move together. The same
cheap endpoint is loaded on

    baseline  API_KEY_REQUIRED=false: counted per client IP in memory, no key
    memory    API_KEY_REQUIRED=true, keys in a file, per-key window in memory
    redis     API_KEY_REQUIRED=true, keys and per-key window in a Redis this benchmark
              starts (redis-server on a free port; else --redis-url or $REDIS_URL)

each for --duration seconds a round, in slices of about a second taken in turn, and the
ratio of a keyed backend's requests/s to the baseline's of the same round is walletd's
cost of authentication and of that backend's counting. Every round starts fresh
processes: two identical ones differ by a few per cent (their memory layout), which
--same measures. Also shown: walletd's CPU time per request, whose ratio is what a core
of its own would give.

The cheap endpoint is the stream route with an invalid query, `?limit=x`: walletd answers
400 INVALID_PARAMETER right after access control, so every request runs the whole
authenticate-and-count path and nothing expensive after it. Every response is checked
(status 400, that code, RateLimit-* headers: the request was counted), as is Redis's own
count of the window entries its scripts added; any other answer fails the run.

Process handling, CPU pinning (walletd on core 0, this client on core 1), exit codes and
the results JSON are stream_load.py's. The client is a small keep-alive loop: each of
--connections asyncio protocols sends the request again as soon as the answer is in,
framing answers by Content-Length.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import secrets
import shutil
import signal
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # walletd and bench.stream_load, run as bench/auth_load.py
    sys.path.insert(0, str(REPO))

import redis.asyncio as redis  # noqa: E402

from bench.stream_load import (  # noqa: E402
    CLIENT_CORE,
    HOST,
    NORMAL_WALLET,
    RESULTS_DIR,
    BenchError,
    Children,
    Exchange,
    Server,
    Usage,
    add_loop_arg,
    execute,
    free_port,
    get_request,
    git_describe,
    percentile,
    prepare_process,
    print_profiles,
    profiled,
    start_walletd,
    stream_path,
)
from walletd.auth.keys import open_keystore  # noqa: E402
from walletd.config import Settings  # noqa: E402

BACKENDS = ("baseline", "memory", "redis")
SAME = ("baseline", "same")  # --same: two unauthenticated walletd, for the noise floor
TARGETS = {"memory": 0.85, "redis": 0.50}  # requests/s as a share of the baseline's
CHEAP_QUERY = "?limit=x"  # 400 INVALID_PARAMETER, raised just after access control
EXPECTED_STATUS = b"HTTP/1.1 400 "
EXPECTED_CODE = re.compile(rb'"code":\s*"INVALID_PARAMETER"')  # any JSON spacing
COUNTED = b"\r\nRateLimit-Limit: "  # only a request the limiter counted carries it
CONTENT_LENGTH = b"\r\nContent-Length: "
# A 1 s window and a limit nothing reaches: no request is refused, and the window's log
# (one entry per accepted request) stays at one second's requests, as in normal use.
WINDOW_S = "1"
LIMIT = "1000000"
WARMUP_S = 1.0
REDO_LIMIT = 5  # times a noisy slice is measured again
REDO_PAUSE_S = 1.0  # before measuring it again: such bursts last a few seconds


# ---------------------------------------------------------------------------------------
# The keep-alive client


@dataclass
class Tally:
    """What one load phase received: latencies of good answers, and every other kind."""

    latencies: list[float] = field(default_factory=list)
    unexpected: Counter[str] = field(default_factory=Counter)

    def add(self, head: bytes, body: bytes, latency_s: float) -> None:
        if not head.startswith(EXPECTED_STATUS):
            self.unexpected[head[9:12].decode("latin-1")] += 1
        elif not EXPECTED_CODE.search(body):
            self.unexpected["400 other code"] += 1
        elif COUNTED not in head:
            self.unexpected["400 not counted"] += 1
        else:
            self.latencies.append(latency_s)

    @property
    def answers(self) -> int:
        return len(self.latencies) + self.unexpected.total()


class KeepAlive(Exchange, asyncio.Protocol):
    """One connection sending `request` back to back until `until`, one in flight at a time.

    walletd's error answers carry Content-Length, which frames them without parsing more
    of the head; a connection the server closes fails the phase (keep-alive is the premise).
    """

    def __init__(self, request: bytes, until: float, tally: Tally) -> None:
        super().__init__(request)
        self.until = until
        self.tally = tally
        self.buf = b""
        self.sent_at = 0.0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.sent_at = time.perf_counter()
        super().connection_made(transport)

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data
        end = buf.find(b"\r\n\r\n")
        if end < 0 or self.done.done():
            self.buf = buf
            return
        at = buf.find(CONTENT_LENGTH, 0, end)
        if at < 0:
            self.fail("an answer without Content-Length")
            return
        body_at = end + 4
        body_end = body_at + int(buf[at + len(CONTENT_LENGTH) : buf.index(b"\r\n", at + 2)])
        if len(buf) < body_end:
            self.buf = buf
            return
        now = time.perf_counter()
        self.tally.add(buf[:end], buf[body_at:body_end], now - self.sent_at)
        self.buf = buf[body_end:]
        if now >= self.until:
            self.finish(ok=True)
        else:
            self.sent_at = now
            assert self.transport is not None
            self.transport.write(self.request)

    def fail(self, why: str) -> None:
        assert self.transport is not None
        self.transport.close()
        if not self.done.done():
            self.done.set_exception(BenchError(why))


async def keep_alive(port: int, request: bytes, until: float, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(lambda: KeepAlive(request, until, tally), HOST, port)
    try:
        await proto.done
    except asyncio.CancelledError:
        proto.abandon()
        raise


def cheap_request(port: int, key: str | None) -> bytes:
    """The GET of the cheap endpoint, with the key's X-API-Key header when there is one."""
    request = get_request(port, stream_path(NORMAL_WALLET) + CHEAP_QUERY)
    return request if key is None else request[:-2] + f"X-API-Key: {key}\r\n\r\n".encode()


# ---------------------------------------------------------------------------------------
# Redis: the benchmark's own redis-server, or one it is given


@dataclass
class RedisTarget:
    """The Redis the redis backend uses; `prefix` keeps this run's keys apart."""

    url: str
    prefix: str
    server: Server | None  # ours, when we started it

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)


async def start_redis(run: Run) -> RedisTarget:
    """redis-server on a free port, nothing on disk, on the client's core: in production
    Redis runs beside walletd, not inside its CPU budget. Else --redis-url / $REDIS_URL."""
    prefix = f"walletd-bench-{secrets.token_hex(4)}:"
    binary = shutil.which("redis-server")
    url = run.args.redis_url or (None if binary else os.environ.get("REDIS_URL"))
    if url:
        target = RedisTarget(url, prefix, None)
    elif binary is None:
        raise BenchError("no redis-server on PATH: pass --redis-url or set REDIS_URL")
    else:
        port = free_port()
        argv = [binary, "--port", str(port), "--bind", HOST, "--save", "", "--appendonly", "no"]
        argv += ["--dir", str(run.children.workdir)]
        server = run.children.start("redis", argv, dict(os.environ), port)
        target = RedisTarget(f"redis://{HOST}:{port}/0", prefix, server)
    await wait_redis(target)
    if target.server is not None:
        pin_threads(target.server.proc.pid, CLIENT_CORE)
    return target


def pin_threads(pid: int, core: int) -> None:
    """Move every thread of `pid` to `core` (Children pins only the main thread's start)."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):  # a thread that has just ended
            os.sched_setaffinity(int(task.name), {core})


async def wait_redis(target: RedisTarget, within_s: float = 15.0) -> None:
    client = target.client()
    try:
        async with asyncio.timeout(within_s):
            while True:
                if target.server is not None and target.server.proc.poll() is not None:
                    raise BenchError(f"redis-server exited:\n{target.server.log_tail()}")
                with contextlib.suppress(redis.RedisError, OSError):
                    await client.ping()
                    return
                await asyncio.sleep(0.1)
    except TimeoutError:
        raise BenchError(f"no answer from Redis within {within_s:g}s") from None
    finally:
        await client.aclose()


async def redis_stats(target: RedisTarget) -> tuple[int, float]:
    """(window entries added, CPU seconds) so far, from Redis itself: the count checks that
    every request was counted in Redis, not in walletd's memory fallback. walletd sends
    the window checks of many requests in one script call, so the calls are not counted:
    the ZADDs its scripts run are (Redis counts a script's commands too), one per counted
    request (the 400 path holds no stream lease, the other ZADD)."""
    client = target.client()
    try:
        commands = await client.info("commandstats")
        cpu = await client.info("cpu")
    finally:
        await client.aclose()
    added = commands.get("cmdstat_zadd", {}).get("calls", 0)
    return int(added), float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"])


async def forget_keys(target: RedisTarget) -> None:
    """Delete this run's keys from a Redis we were given (our own dies with its data)."""
    client = target.client()
    try:
        async for name in client.scan_iter(match=f"{target.prefix}*", count=1000):
            await client.delete(name)
    finally:
        await client.aclose()


# ---------------------------------------------------------------------------------------
# The three walletd processes


def backend_settings(
    backend: str, workdir: Path, secret: str, target: RedisTarget | None
) -> dict[str, str]:
    settings = {"RATE_LIMIT_REQUESTS": LIMIT, "RATE_LIMIT_WINDOW": WINDOW_S}
    if backend in SAME:
        return {**settings, "API_KEY_REQUIRED": "false"}
    settings.update(API_KEY_REQUIRED="true", SECRET_KEY=secret)
    if backend == "memory":
        return {**settings, "KEYSTORE": "file", "API_KEYS_FILE": str(workdir / "api_keys.json")}
    assert target is not None
    return {**settings, "KEYSTORE": "redis", "REDIS_URL": target.url, "REDIS_PREFIX": target.prefix}


async def create_key(settings: dict[str, str]) -> str:
    """A `stream` key in the store these settings select, made through walletd's own API."""
    store = open_keystore(Settings.from_env(settings))
    try:
        key, _ = await store.create("bench", ["stream"], None)
    finally:
        await store.close()
    return key


@dataclass
class Target:
    """One walletd under test and the request that loads it."""

    backend: str
    server: Server
    request: bytes


async def start_targets(run: Run, redis_target: RedisTarget | None) -> list[Target]:
    """A fresh walletd per backend, each with a new key, warmed up."""
    secret = secrets.token_urlsafe(48)
    targets = []
    for backend in run.backends:
        settings = backend_settings(backend, run.children.workdir, secret, redis_target)
        key = None if backend in SAME else await create_key(settings)
        server = await start_walletd(run.children, f"walletd-{backend}", **settings)
        targets.append(Target(backend, server, cheap_request(server.port, key)))
    for target in targets:  # code paths, Redis connections and scripts, key caches
        # One request alone first: the file key store reads its file on first use, and
        # requests arriving during that read see no keys yet (401), a start-up race of
        # walletd's that is not what this benchmark measures.
        await load(target, 1, 0.0, redis_target)
        await load(target, run.args.connections, WARMUP_S, redis_target)
    return targets


def fallbacks_logged(server: Server) -> int:
    """walletd's warnings that Redis was unreachable (LOG_LEVEL=WARNING keeps them)."""
    log = server.log.read_text(errors="replace")
    return log.count("redis_unreachable") + log.count("keystore_unreachable")


# ---------------------------------------------------------------------------------------
# Load: each backend in slices, interleaved with the others'


async def load(
    target: Target, connections: int, duration_s: float, redis_target: RedisTarget | None
) -> tuple[dict[str, float], list[float]]:
    """--connections keep-alive loops for `duration_s` on one walletd: (CPU use, latencies
    of the answers). Raises BenchError unless every answer was the expected, counted 400
    (and, on Redis, every request was counted there)."""
    tally = Tally()
    counted0, redis_cpu0 = 0, 0.0
    if target.backend == "redis":
        assert redis_target is not None
        counted0, redis_cpu0 = await redis_stats(redis_target)
    usage = Usage(target.server)
    until = time.perf_counter() + duration_s
    async with asyncio.timeout(duration_s + 30):
        await asyncio.gather(
            *(
                keep_alive(target.server.port, target.request, until, tally)
                for _ in range(connections)
            )
        )
    figures = usage.finish()
    if tally.unexpected:
        raise BenchError(
            f"{target.backend}: {tally.unexpected.total()} of {tally.answers} answers were not "
            f"a counted 400 INVALID_PARAMETER: {dict(tally.unexpected)}"
        )
    if redis_target is not None and target.backend == "redis":
        counted, redis_cpu = await redis_stats(redis_target)
        if counted - counted0 < tally.answers or fallbacks_logged(target.server):
            raise BenchError(
                f"redis: {tally.answers} requests but {counted - counted0} were counted in "
                f"Redis (walletd fell back to memory?):\n{target.server.log_tail()}"
            )
        figures["redis_cpu"] = (redis_cpu - redis_cpu0) / figures["wall_s"]
        figures["other_cpu"] = max(0.0, figures["other_cpu"] - figures["redis_cpu"])
    return figures, tally.latencies


CPU_KEYS = ("server_cpu", "client_cpu", "redis_cpu", "other_cpu")


@dataclass
class Share:
    """One backend's slices of a round, summed: its figures are over all of them."""

    wall_s: float = 0.0
    cpu_s: dict[str, float] = field(default_factory=dict)  # core-seconds, by CPU_KEYS
    latencies: list[float] = field(default_factory=list)
    redone: int = 0  # slices measured again because other processes were busy

    def add(self, usage: dict[str, float], latencies: list[float]) -> None:
        self.wall_s += usage["wall_s"]
        for key in CPU_KEYS:
            if key in usage:
                self.cpu_s[key] = self.cpu_s.get(key, 0.0) + usage[key] * usage["wall_s"]
        self.latencies += latencies

    def figures(self) -> dict[str, float]:
        requests_s = len(self.latencies) / self.wall_s
        cpu = {key: seconds / self.wall_s for key, seconds in self.cpu_s.items()}
        return {
            "requests_s": requests_s,
            # walletd's CPU per request: what a dedicated core would turn into requests/s,
            # whatever share of its core the noise of this machine left it.
            "cpu_us": 1e6 * cpu["server_cpu"] / requests_s,
            "p50_ms": 1000 * percentile(self.latencies, 0.50),
            "p99_ms": 1000 * percentile(self.latencies, 0.99),
            **cpu,
            "wall_s": self.wall_s,
            "requests": len(self.latencies),
            "redone_slices": self.redone,
        }


# ---------------------------------------------------------------------------------------
# Orchestration


@dataclass
class Run:
    """The benchmark's children, and every round's figures per backend for the report."""

    args: argparse.Namespace
    children: Children
    rounds: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    profiles: dict[str, list[str]] = field(default_factory=dict)  # filled by `profiled`
    stamp: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))
    commit: str = field(default_factory=git_describe)  # what the servers ran

    @property
    def backends(self) -> tuple[str, ...]:
        return SAME if self.args.same else BACKENDS


def in_turn(targets: list[Target], turn: int) -> list[Target]:
    """Rotate the order every slice, so each backend runs first, second and third alike."""
    shift = turn % len(targets)
    return targets[shift:] + targets[:shift]


async def run_round(
    run: Run, targets: list[Target], redis_target: RedisTarget | None, no: int
) -> None:
    """--duration seconds of each backend, in slices of about --slice seconds taken in
    turn, so that a drift of the machine hits every backend of the round alike.

    Other processes on this shared machine come in bursts that take a good part of
    walletd's core: a slice during which they used more than --max-noise cores is
    measured again after a pause, up to REDO_LIMIT times (the last attempt then counts
    as it is).
    """
    args = run.args
    slices = max(1, round(args.duration / args.slice))
    shares = {target.backend: Share() for target in targets}
    for slice_no in range(slices):
        for target in in_turn(targets, no * slices + slice_no):
            share = shares[target.backend]
            for attempt in range(REDO_LIMIT + 1):
                usage, latencies = await load(
                    target, args.connections, args.duration / slices, redis_target
                )
                if usage["other_cpu"] <= args.max_noise or attempt == REDO_LIMIT:
                    break
                share.redone += 1
                await asyncio.sleep(REDO_PAUSE_S)
            share.add(usage, latencies)
    for backend, share in shares.items():
        figures = share.figures()
        run.rounds.setdefault(backend, []).append(figures)
        print(f"  {backend:<8}", ", ".join(f"{k}={v:,.4g}" for k, v in figures.items()), flush=True)


async def run_all(run: Run) -> None:
    """Fresh walletd processes every round: a process's speed depends a few per cent on
    its memory layout (two identical ones can differ by as much as a keyed backend costs,
    see --same), so each round is a new draw of it."""
    # SIGTERM unwinds like Ctrl-C, so the `finally` that stops the children runs.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    args = run.args
    redis_target = None if args.same else await start_redis(run)
    print(
        f"walletd {', '.join(run.backends)}: {args.rounds} rounds of {args.duration:g}s each "
        f"in slices of ~{args.slice:g}s, {args.connections} connections",
        flush=True,
    )
    try:
        for round_no in range(args.rounds):
            targets = await start_targets(run, redis_target)
            await run_round(run, targets, redis_target, round_no)
            if args.py_spy and round_no == args.rounds - 1:  # sampling slows walletd: after
                for target in targets:
                    async with profiled(run, target.server, target.backend):
                        await load(target, args.connections, args.duration, redis_target)
            for target in targets:
                run.children.stop(target.server)
    finally:
        run.children.stop_all()
        if redis_target is not None and redis_target.server is None:
            await forget_keys(redis_target)


# ---------------------------------------------------------------------------------------
# Report


@dataclass
class Row:
    backend: str
    ratios: list[float]  # requests/s, to the baseline's of the same round
    cpu_ratios: list[float]  # baseline's CPU per request / this one's, same round
    figures: dict[str, float]  # medians over the rounds
    target: float | None

    @property
    def ratio(self) -> float:
        return statistics.median(self.ratios)

    @property
    def passed(self) -> bool | None:
        return None if self.target is None else self.ratio >= self.target


def rows_of(run: Run) -> list[Row]:
    base = run.rounds["baseline"]
    rows = []
    for backend in run.backends:
        rounds = run.rounds[backend]
        medians = {k: statistics.median(r[k] for r in rounds) for k in rounds[0]}
        ratios = [r["requests_s"] / b["requests_s"] for r, b in zip(rounds, base, strict=True)]
        cpu_ratios = [b["cpu_us"] / r["cpu_us"] for r, b in zip(rounds, base, strict=True)]
        rows.append(Row(backend, ratios, cpu_ratios, medians, TARGETS.get(backend)))
    return rows


def print_table(rows: list[Row]) -> None:
    def figure(row: Row, key: str, form: str = ".2f") -> str:
        return format(row.figures[key], form) if key in row.figures else "-"

    lines = [
        (
            "backend", "requests/s", "vs baseline", "rounds", "CPU us/req", "by CPU",
            "p50 ms", "p99 ms", "walletd CPU", "client CPU", "Redis CPU", "other CPU",
            "target", "result",
        )
    ]  # fmt: skip
    for r in rows:
        lines.append(
            (
                r.backend,
                figure(r, "requests_s", ",.0f"),
                f"{r.ratio:.1%}",
                " ".join(f"{v:.0%}" for v in r.ratios),
                figure(r, "cpu_us", ".0f"),
                f"{statistics.median(r.cpu_ratios):.1%}",
                figure(r, "p50_ms", ".1f"),
                figure(r, "p99_ms", ".1f"),
                *(figure(r, key) for key in CPU_KEYS),
                "" if r.target is None else f">= {r.target:.0%}",
                "" if r.passed is None else ("PASS" if r.passed else "FAIL"),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def save_results(run: Run, rows: list[Row]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"auth_load-{run.stamp}.json"
    results: dict[str, Any] = {
        "walletd_commit": run.commit,
        "settings": {**vars(run.args), "RATE_LIMIT_WINDOW": WINDOW_S, "RATE_LIMIT_REQUESTS": LIMIT},
        "rounds": run.rounds,
        "table": [{**vars(r), "ratio": r.ratio, "passed": r.passed} for r in rows],
        "profiles": run.profiles,
    }
    path.write_text(json.dumps(results, indent=1))
    return path


# ---------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=32, help="keep-alive connections")
    parser.add_argument(
        "--duration", type=float, default=5.0, help="seconds of each backend per round"
    )
    parser.add_argument(
        "--slice", type=float, default=1.0, help="seconds of one backend before the next's turn"
    )
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--max-noise",
        type=float,
        default=0.15,
        help="CPU (cores) other processes may use during a slice before it is redone",
    )
    parser.add_argument(
        "--redis-url", default=None, help="use this Redis, not a redis-server of our own"
    )
    parser.add_argument("--py-spy", action="store_true", help="then sample each walletd")
    parser.add_argument(
        "--same",
        action="store_true",
        help="a second unauthenticated walletd instead of the keyed ones: the noise floor",
    )
    parser.add_argument("--quick", action="store_true", help="a smoke run: 1 round of 2 s")
    add_loop_arg(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration = 1, 2.0
    return args


def report(run: Run) -> int:
    """Print the table and save the figures; the exit status the targets give (0 or 2)."""
    rows = rows_of(run)
    print_profiles(run)
    print(f"\nwalletd {run.commit}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print_table(rows)
    checked = sum(int(r["requests"]) for rounds in run.rounds.values() for r in rounds)
    print(
        f"\n{checked:,} answers in the rounds, each a 400 INVALID_PARAMETER with RateLimit-* "
        "headers (no 429, no other status)"
        + ("" if run.args.same else "; Redis counted each of its requests in a window")
    )
    redone = {b: sum(int(r["redone_slices"]) for r in run.rounds[b]) for b in run.backends}
    print(
        f"slices measured again because other processes used over {run.args.max_noise:g} "
        f"cores: {', '.join(f'{b} {n}' for b, n in redone.items())}"
    )
    print(f"\nfigures: {save_results(run, rows)}")
    return 0 if all(r.passed is not False for r in rows) else 2


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_process()
    with tempfile.TemporaryDirectory(prefix="walletd-auth-bench-") as tmp:
        run = Run(args, Children(Path(tmp)))
        status = execute(run_all, run)
    return report(run) if status is None else status


if __name__ == "__main__":
    sys.exit(main())
