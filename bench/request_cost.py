"""Instructions per request through walletd's whole chain, against raw_server.py.

Why: request_load.py's CPU ratios move by more than a lever worth a few per cent from
run to run on this small shared machine; user-space instructions do not. Each server runs
under `valgrind --tool=callgrind` with request_load.py's settings (the JSON access line
at INFO, CORS with an `Origin` on every request, metrics; `keyed`: keys in a file), and
--connections keep-alive connections send request_load.py's request back to back. After
--warmup requests the counters are zeroed, then --requests more are counted; the dump's
total / --requests is the figure. Controlling callgrind and reading its dumps are
stream_cost.py's.

    python3 bench/request_cost.py                              # every side, the 400
    python3 bench/request_cost.py --side keyed --endpoint health --keep DIR

Instructions undercount a longer path's CPU time a little (more code and data touched per
request): bench/README.md compares both.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import secrets
import sys
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from bench import request_load as rl  # noqa: E402
from bench import stream_cost as sc  # noqa: E402
from bench import stream_load as sl  # noqa: E402
from bench.auth_load import create_key  # noqa: E402

_LENGTH = re.compile(rb"content-length: *(\d+)", re.IGNORECASE)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--side", choices=(*rl.SIDES, "all"), default="all")
    parser.add_argument("--endpoint", choices=tuple(rl.ENDPOINTS), default="400")
    parser.add_argument("--requests", type=int, default=1000, help="requests counted")
    parser.add_argument("--warmup", type=int, default=400, help="requests before counting")
    parser.add_argument("--connections", type=int, default=8, help="keep-alive connections")
    parser.add_argument("--keep", type=Path, help="keep the profiles in this directory")
    parser.add_argument("--loop", choices=sl.EVENT_LOOPS, default="uvloop")
    return parser.parse_args(argv)


async def send(port: int, request: bytes, total: int, connections: int) -> None:
    """`total` requests over `connections` keep-alive connections, one in flight on each;
    any answer but the expected status fails the run."""
    left = total

    async def connection() -> None:
        nonlocal left
        reader, writer = await asyncio.open_connection(sl.HOST, port)
        try:
            while left > 0:
                left -= 1
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                length = _LENGTH.search(head)
                if length is None:
                    raise sl.BenchError(f"an answer without Content-Length: {head[:80]!r}")
                await reader.readexactly(int(length.group(1)))
        finally:
            writer.close()

    await asyncio.gather(*(connection() for _ in range(connections)))


async def start(children: sl.Children, side: str, settings: dict[str, str]) -> sl.Server:
    """`side` under callgrind (walletd with `settings`), ready."""
    workdir = children.workdir
    port = sl.free_port()
    if side == "raw":
        headers, body = workdir / "headers.json", workdir / "body.sse"
        headers.write_text('[["Content-Type", "text/event-stream"]]')
        body.write_bytes(b"event: x\ndata: {}\n\n")
        argv = [sys.executable, str(REPO / "bench" / "raw_server.py"), "--port", str(port)]
        argv += ["--headers", str(headers), "--loop", sl.event_loop]
        argv += ["--body", f"{sl.NORMAL_WALLET}={body}"]
        env = sl.walletd_env(port)
    else:
        argv = [sys.executable, "-m", "walletd", "serve"]
        env = sl.walletd_env(port, **settings)
    server = children.start(side, sc.under_valgrind(argv, workdir / side), env, port)
    await sl.wait_ready(server, sc.START_WITHIN_S)
    return server


async def measure(args: argparse.Namespace, children: sl.Children) -> dict[str, int]:
    sides = rl.SIDES if args.side == "all" else (args.side,)
    per_request: dict[str, int] = {}
    for side in sides:
        settings = rl.walletd_settings(side, children.workdir, secrets.token_urlsafe(48))
        key = await create_key(settings) if side == "keyed" else None
        server = await start(children, side, settings)
        request = rl.request_of(server.port, args.endpoint, key)
        await send(server.port, request, args.warmup, args.connections)
        load = send(server.port, request, args.requests, args.connections)
        profile = await sc.counted(server, children.workdir / side, load)
        per_request[side] = sc.total_instructions(profile) // args.requests
        print(f"{side} {args.endpoint}: {per_request[side]:,} instructions per request", flush=True)
        children.stop(server)
    return per_request


def main(argv: Sequence[str] | None = None) -> int:
    results = sc.counts_of(parse_args(argv), measure)
    if isinstance(results, int):
        return results
    for side in ("open", "keyed"):
        if side in results and "raw" in results:
            print(f"{side} / raw: {results[side] / results['raw']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
