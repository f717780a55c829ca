"""Per-request cost of walletd's whole request chain, as ratios to a bare aiohttp server.

Every request walletd answers runs its chain: the boundary every route's handler is
wrapped in (request id, error rendering, the HTTP request counter), admission (client
address, size checks, API key, rate limit), the headers of every response (security
headers, RateLimit-*, CORS) and the access log. This loads two cheap endpoints through
it, with everything on as in production (`LOG_LEVEL=INFO` JSON lines to a file,
`ALLOWED_ORIGINS` and an `Origin` on every request, metrics), and the same endpoints of
raw_server.py:

    health   GET /health
    400      the stream route with `?limit=x`: 400 INVALID_PARAMETER right after access
             control (counted by the limiter; authenticated when keys are on)

on three processes taking turns in one-second slices: `raw`, walletd with keys off
(`open`) and walletd with keys on, a file key store (`keyed`). Figures per endpoint:
requests/s and the server's CPU per request (µs), each as a ratio to raw's in the same
round; CPU per request is the figure that does not depend on the client, which is
flagged when it used over 90 % of its core. Process handling, pinning, the client's
event loop (`--loop`) and exit codes are stream_load.py's; the slices and their noise
check are auth_load.py's.

    python3 bench/request_load.py [--quick] [--rounds 3] [--duration 4] [--loop asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import secrets
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import stream_load as sl  # noqa: E402
from bench.auth_load import (  # noqa: E402
    CONTENT_LENGTH,
    KeepAlive,
    Share,
    Tally,
    create_key,
    in_turn,
)

ORIGIN = "https://app.example.com"
ENDPOINTS = {"health": "/health", "400": sl.stream_path(sl.NORMAL_WALLET) + "?limit=x"}
EXPECTED = {"health": b"HTTP/1.1 200 ", "400": b"HTTP/1.1 400 "}
SIDES = ("raw", "open", "keyed")
TARGET_CPU_RATIO = 2.0  # walletd's CPU per request, at most this times raw's
TARGET_RATE_RATIO = 0.50  # walletd's requests/s, at least this share of raw's
WARMUP_S = 1.0
MAX_NOISE = 0.25  # cores used by other processes during a slice before it is redone
REDO_LIMIT = 3


class StatusTally(Tally):
    """Counts answers with the expected status line; anything else fails the run."""

    def __init__(self, expected: bytes) -> None:
        super().__init__()
        self.expected = expected

    def add(self, head: bytes, body: bytes, latency_s: float) -> None:
        if head.startswith(self.expected) and CONTENT_LENGTH[2:] in head:
            self.latencies.append(latency_s)
        else:
            self.unexpected[head[9:12].decode("latin-1")] += 1


@dataclass
class Target:
    side: str
    endpoint: str
    server: sl.Server
    request: bytes


def request_of(port: int, endpoint: str, key: str | None) -> bytes:
    head = (
        f"GET {ENDPOINTS[endpoint]} HTTP/1.1\r\nHost: {sl.HOST}:{port}\r\nOrigin: {ORIGIN}\r\n"
        "Accept: */*\r\n"
    )
    if key is not None:
        head += f"X-API-Key: {key}\r\n"
    return (head + "\r\n").encode()


async def keep_alive(target: Target, until: float, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    _, proto = await loop.create_connection(
        lambda: KeepAlive(target.request, until, tally), sl.HOST, target.server.port
    )
    try:
        await proto.done
    except asyncio.CancelledError:
        proto.abandon()
        raise


async def load(target: Target, connections: int, duration_s: float) -> tuple[dict, list[float]]:  # type: ignore[type-arg]
    tally = StatusTally(EXPECTED[target.endpoint])
    usage = sl.Usage(target.server)
    until = time.perf_counter() + duration_s
    async with asyncio.timeout(duration_s + 30):
        await asyncio.gather(*(keep_alive(target, until, tally) for _ in range(connections)))
    figures = usage.finish()
    if tally.unexpected:
        raise sl.BenchError(
            f"{target.side} {target.endpoint}: unexpected answers {dict(tally.unexpected)}"
        )
    return figures, tally.latencies


@dataclass
class Run:
    args: argparse.Namespace
    children: sl.Children
    rounds: dict[str, list[dict[str, float]]] = field(default_factory=dict)
    profiles: dict[str, list[str]] = field(default_factory=dict)
    stamp: str = field(default_factory=lambda: time.strftime("%Y%m%d-%H%M%S"))
    commit: str = field(default_factory=sl.git_describe)


def walletd_settings(side: str, workdir: Path, secret: str) -> dict[str, str]:
    settings = {
        "LOG_LEVEL": "INFO",  # the access line of every request
        "LOG_FORMAT": "json",
        "ALLOWED_ORIGINS": ORIGIN,
        "RATE_LIMIT_REQUESTS": "1000000",
        "RATE_LIMIT_WINDOW": "1",
    }
    if side == "open":
        return {**settings, "API_KEY_REQUIRED": "false"}
    return {
        **settings,
        "API_KEY_REQUIRED": "true",
        "SECRET_KEY": secret,
        "KEYSTORE": "file",
        "API_KEYS_FILE": str(workdir / "api_keys.json"),
    }


async def start_targets(run: Run) -> list[Target]:
    workdir = run.children.workdir
    headers = workdir / "headers.json"
    headers.write_text(json.dumps([["Content-Type", "text/event-stream"]]))
    body = workdir / "body.sse"
    body.write_bytes(b"event: x\ndata: {}\n\n")
    raw = await sl.start_raw(run.children, "raw", {sl.NORMAL_WALLET: body}, headers)
    targets = [Target("raw", e, raw, request_of(raw.port, e, None)) for e in ENDPOINTS]
    secret = secrets.token_urlsafe(48)
    for side in SIDES[1:]:
        settings = walletd_settings(side, workdir, secret)
        key = await create_key(settings) if side == "keyed" else None
        server = await sl.start_walletd(run.children, f"walletd-{side}", **settings)
        targets += [Target(side, e, server, request_of(server.port, e, key)) for e in ENDPOINTS]
    for target in targets:
        await load(target, 1, 0.0)  # the key file is read on first use
        await load(target, run.args.connections, WARMUP_S)
    return targets


async def run_all(run: Run) -> None:
    targets = await start_targets(run)
    args = run.args
    slices = max(1, round(args.duration / args.slice))
    for round_no in range(args.rounds):
        shares = {(t.side, t.endpoint): Share() for t in targets}
        for turn in range(slices):
            for target in in_turn(targets, turn + round_no):
                share = shares[(target.side, target.endpoint)]
                for _ in range(REDO_LIMIT + 1):
                    usage, latencies = await load(target, args.connections, args.slice)
                    if usage["other_cpu"] <= args.max_noise:
                        break
                    share.redone += 1
                    await asyncio.sleep(0.5)
                share.add(usage, latencies)
        for (side, endpoint), share in shares.items():
            figures = {**share.figures(), "load1": os.getloadavg()[0]}
            run.rounds.setdefault(f"{side} {endpoint}", []).append(figures)
            print(
                f"  round {round_no + 1} {side:<6} {endpoint:<7}"
                f" {figures['requests_s']:>8,.0f} req/s  {figures['cpu_us']:6.1f} µs CPU/req"
                f"  client {figures['client_cpu']:.2f}  other {figures['other_cpu']:.2f}"
                f"{sl.saturation_note(figures)}",
                flush=True,
            )


@dataclass
class Row:
    side: str
    endpoint: str
    requests_s: float
    cpu_us: float
    rate_ratio: float
    cpu_ratio: float

    @property
    def passed(self) -> bool | None:
        if self.side == "raw":
            return None
        return self.cpu_ratio <= TARGET_CPU_RATIO and self.rate_ratio >= TARGET_RATE_RATIO


def rows_of(run: Run) -> list[Row]:
    def median(name: str, key: str) -> float:
        return statistics.median(r[key] for r in run.rounds[name])

    def ratios(name: str, raw: str, key: str) -> float:
        # The median of each round's ratio: the round's noise hits both sides alike.
        pairs = zip(run.rounds[name], run.rounds[raw], strict=True)
        return statistics.median(a[key] / b[key] for a, b in pairs)

    rows = []
    for side in SIDES:
        for endpoint in ENDPOINTS:
            name, raw = f"{side} {endpoint}", f"raw {endpoint}"
            rows.append(
                Row(
                    side,
                    endpoint,
                    median(name, "requests_s"),
                    median(name, "cpu_us"),
                    ratios(name, raw, "requests_s"),
                    ratios(name, raw, "cpu_us"),
                )
            )
    return rows


def print_table(rows: list[Row]) -> None:
    lines = [("server", "endpoint", "req/s", "vs raw", "CPU µs/req", "vs raw", "target", "result")]
    for r in rows:
        target = "" if r.side == "raw" else f"CPU <= {TARGET_CPU_RATIO:g}x, req/s >= 50%"
        lines.append(
            (
                r.side,
                r.endpoint,
                f"{r.requests_s:,.0f}",
                f"{r.rate_ratio:.0%}",
                f"{r.cpu_us:.1f}",
                f"{r.cpu_ratio:.2f}x",
                target,
                sl.verdict(r.passed),
            )
        )
    sl.print_columns(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--duration", type=float, default=4.0, help="seconds per side per round")
    parser.add_argument("--slice", type=float, default=1.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--max-noise", type=float, default=MAX_NOISE)
    parser.add_argument("--quick", action="store_true", help="1 round of 1 s per side")
    parser.add_argument("--py-spy", action="store_true", help=argparse.SUPPRESS)
    sl.add_loop_arg(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.duration, args.slice, args.max_noise = 1, 1.0, 0.5, 2.0
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sl.prepare_process()
    with tempfile.TemporaryDirectory(prefix="walletd-bench-") as tmp:
        run = Run(args, sl.Children(Path(tmp)))
        if (status := sl.execute(run_all, run)) is not None:
            return status
    rows = rows_of(run)
    print(f"\nwalletd {run.commit}, loop {args.loop}, load {os.getloadavg()[0]:.2f}")
    print_table(rows)
    flagged = [
        f"{name} round {i + 1}"
        for name, rounds in run.rounds.items()
        for i, f in enumerate(rounds)
        if sl.saturation_note(f)
    ]
    if flagged:
        print(f"WARNING: load client above 90% CPU in: {', '.join(flagged)}")
    sl.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = sl.RESULTS_DIR / f"request_load-{run.stamp}.json"
    table = [{**vars(r), "passed": r.passed} for r in rows]
    out.write_text(json.dumps({"commit": run.commit, "rounds": run.rounds, "table": table}))
    print(f"\nfigures: {out}")
    return 0 if all(r.passed is not False for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
