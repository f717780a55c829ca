"""The cost of instrumentation (issue 5): streaming with metrics and JSON logs on vs off.

Two walletd processes take turns on the server core under the same load client as
stream_load.py:

- bare: LOG_LEVEL=WARNING (no access or stream_finished lines) and nobody reading
  /metrics;
- instrumented: LOG_LEVEL=INFO with LOG_FORMAT=json to a file (what journald gets: one
  access line and one stream_finished line per stream), and /metrics scraped every
  --scrape-interval (15) seconds during the load.

walletd's metrics cost nothing per event (streams count their own events; a collector
sums them at scrape time), so this measures what remains: the per-stream counters, the
log lines, the scrapes. Target: instrumented >= 90 % of bare in server CPU per unit of
work (bare's CPU per 1M trades, or per new stream in churn, over instrumented's): the
load client saturates first in the throughput scenario, so events/s there measures the
client. The rates are printed beside.

    python3 bench/instrumentation_load.py             # 5 rounds, about 2.5 minutes
    python3 bench/instrumentation_load.py --quick     # 1 round, short
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import stream_load as sl

TARGET_RATIO = 0.90
SIDES = ("instrumented", "bare")
SETTINGS = {
    "instrumented": {"LOG_LEVEL": "INFO", "LOG_FORMAT": "json"},
    "bare": {"LOG_LEVEL": "WARNING"},
}


@dataclass
class Run(sl.Run):
    scrapes: int = 0  # of /metrics, by the instrumented side's scraper
    log_lines: dict[str, int] = field(default_factory=dict)  # the instrumented log, by message


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--streams", type=int, default=500, help="throughput streams")
    parser.add_argument("--clients", type=int, default=50, help="churn clients")
    parser.add_argument("--duration", type=float, default=10.0, help="churn seconds per round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--scrape-interval", type=float, default=15.0, help="Prometheus-like")
    parser.add_argument("--quick", action="store_true", help="1 round, 20 streams, 3 s")
    sl.add_loop_arg(parser)
    args = parser.parse_args(argv)
    if args.quick:
        args.rounds, args.streams, args.duration = 1, 20, 3.0
    return args


@contextlib.asynccontextmanager
async def scraping(server: sl.Server, interval_s: float, scrapes: list[int]) -> AsyncIterator[None]:
    """GET /metrics every `interval_s` while the block runs, as Prometheus would."""

    async def loop() -> None:
        async with aiohttp.ClientSession() as http:
            while True:
                async with http.get(f"http://{sl.HOST}:{server.port}/metrics") as resp:
                    if resp.status != 200:
                        raise sl.BenchError(f"/metrics answered {resp.status}")
                    await resp.read()
                scrapes.append(1)
                await asyncio.sleep(interval_s)

    task = asyncio.create_task(loop())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def run_all(run: Run) -> None:
    args = run.args
    servers = {side: await sl.start_walletd(run.children, side, **SETTINGS[side]) for side in SIDES}
    expected = 0
    for side, server in servers.items():
        print(f"warming {side} (pid {server.proc.pid})", flush=True)
        _, expected = await sl.warm_and_capture(server, sl.LARGE_WALLET)
        await sl.warm_and_capture(server, sl.NORMAL_WALLET)
    scrapes: list[int] = []
    for round_no in range(args.rounds):
        order = SIDES if round_no % 2 == 0 else SIDES[::-1]
        for side in order:
            server = servers[side]
            instrumented = side == "instrumented"
            interval = args.scrape_interval if instrumented else float("inf")
            async with scraping(server, interval, scrapes if instrumented else []):
                run.record("throughput", side, await sl.throughput(server, args.streams, expected))
                figures = await sl.churn(server, args.clients, args.duration, sl.NORMAL_WALLET)
                run.record("churn", side, figures)
    run.scrapes = len(scrapes)
    run.log_lines = count_lines(servers["instrumented"].log)


def count_lines(log: Path) -> dict[str, int]:
    """Lines of the instrumented server's log by message: proof that it logged."""
    counts: dict[str, int] = {}
    for line in log.read_text(errors="replace").splitlines():
        with contextlib.suppress(ValueError, KeyError, TypeError):
            message = json.loads(line)["message"]
            counts[message] = counts.get(message, 0) + 1
    return counts


@dataclass
class Row:
    scenario: str
    metric: str
    on: float  # instrumented
    off: float  # bare
    efficiency: float | None = None  # off / on for a cost judged against the target

    @property
    def passed(self) -> bool | None:
        return None if self.efficiency is None else self.efficiency >= TARGET_RATIO

    @property
    def ratio(self) -> str:
        if "(cores)" in self.metric:
            return ""
        return f"{self.on / self.off:.0%}"


def rows_of(run: Run) -> list[Row]:
    rows: list[Row] = []
    for scenario, metric, key, judged in (
        ("throughput", "server CPU s per 1M trades", "cpu_s_per_mtrades", True),
        ("churn", "server CPU per new stream (ms)", "cpu_ms_per_stream", True),
        ("throughput", "events/s (trades/s / 100)", "trades_s", False),
        ("churn", "new streams/s", "streams_s", False),
        ("churn", "first trades p99 (ms)", "p99_ms", False),
        ("throughput", "server CPU (cores)", "server_cpu", False),
        ("churn", "server CPU (cores)", "server_cpu", False),
    ):
        on, off = (run.median(scenario, side, key) for side in SIDES)
        if key == "trades_s":
            on, off = on / 100, off / 100
        rows.append(Row(scenario, metric, on, off, off / on if judged else None))
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    sl.prepare_process()
    with tempfile.TemporaryDirectory(prefix="walletd-bench-") as tmp:
        run = Run(args, sl.Children(Path(tmp)))
        if (status := sl.execute(run_all, run)) is not None:
            return status
    rows = rows_of(run)
    lines = [("scenario", "metric", "instrumented", "bare", "ratio", "efficiency", "result")]
    for row in rows:
        efficiency = (
            "" if row.efficiency is None else f"{row.efficiency:.0%} (>= {TARGET_RATIO:.0%})"
        )
        lines.append(
            (
                row.scenario,
                row.metric,
                sl.fmt(row.on),
                sl.fmt(row.off),
                row.ratio,
                efficiency,
                sl.verdict(row.passed),
            )
        )
    print(f"\nwalletd {run.commit}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    sl.print_columns(lines)
    sl.print_saturation(run.rounds)
    logged = run.log_lines
    print(
        f"\ninstrumented: {run.scrapes} scrapes of /metrics, "
        f"{sum(logged.values()):,} log lines ({logged.get('stream_finished', 0):,} "
        f"stream_finished, {logged.get('http_request', 0):,} http_request)"
    )
    sl.RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = sl.RESULTS_DIR / f"instrumentation_load-{run.stamp}.json"
    path.write_text(
        json.dumps(
            {
                "walletd_commit": run.commit,
                "settings": vars(args),
                "rounds": run.rounds,
                "log_lines": logged,
                "scrapes": run.scrapes,
            },
            indent=2,
        )
    )
    print(f"figures: {path}")
    return 0 if all(row.passed is not False for row in rows) else 2


if __name__ == "__main__":
    started = time.monotonic()
    status = main()
    print(f"({time.monotonic() - started:.0f} s)")
    sys.exit(status)
