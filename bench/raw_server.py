"""The baseline of bench/stream_load.py: a bare aiohttp server that replays walletd's bytes.

Why: walletd's throughput, churn and memory only mean something next to the best that
aiohttp on this machine can do with the very same bytes. This server does nothing but
that: for each request it writes the frames captured from walletd (one
`await resp.write(frame)` per SSE frame, as walletd does) with walletd's headers, so the
ratio walletd/raw is walletd's own cost, independent of the machine and its noise.

Inputs are handed over as files (stream_load.py captures them from the running walletd):
    --body WALLET=FILE   the decoded SSE body walletd sent for WALLET (repeatable)
    --headers FILE       JSON list of [name, value] response headers walletd sent

With --heartbeat N (the idle baseline) each request instead gets the frames before the
capture's first heartbeat, then a heartbeat frame every N seconds until the client leaves.

With --live FILE (the live-follow baseline of bench/follow_load.py) each request gets its
body (walletd's follow stream up to `caught_up`), then the frame in FILE (a live `trades`
event walletd wrote) every --live-every seconds until the client leaves: one ticker per
wallet wakes that wallet's streams, as walletd's poller wakes its followers, the
wallets' tickers spread over the period.

--loop uvloop|asyncio picks the event loop, as WALLETD_LOOP does for walletd (uvloop, the
default of both): the baseline runs the way `walletd serve` does. GET /health answers
like walletd's, and the stream route with `?limit=x` answers a JSON 400 like walletd's
INVALID_PARAMETER: the baselines of bench/request_load.py.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from pathlib import Path

from aiohttp import web

STREAM_ROUTE = "/v4/wallet/{address}/stream"
DEFAULT_HEADERS = [("Content-Type", "text/event-stream"), ("Cache-Control", "no-cache")]
HEARTBEAT_EVENT = b"event: heartbeat\n"
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def split_frames(body: bytes) -> list[bytes]:
    """The SSE frames of `body`, each keeping its b"\\n\\n" terminator."""
    parts = body.split(b"\n\n")
    if parts[-1]:
        raise ValueError("the body does not end with a complete SSE frame")
    return [part + b"\n\n" for part in parts[:-1]]


def idle_prefix(frames: list[bytes]) -> list[bytes]:
    """The frames before the first heartbeat: what an idle stream sends before it idles."""
    for i, frame in enumerate(frames):
        if HEARTBEAT_EVENT in frame:
            return frames[:i]
    return frames


def heartbeat_frame() -> bytes:
    """Byte for byte what walletd's sse.event_frame("heartbeat", ...) writes."""
    return b'event: heartbeat\ndata: {"timestamp":%d}\n\n' % int(time.time())


class Ticker:
    """Wakes every stream of one wallet each `every_s` seconds, from `phase_s` on."""

    def __init__(self, every_s: float, phase_s: float) -> None:
        self.every_s, self.phase_s = every_s, phase_s
        self._tick = asyncio.Event()

    async def wait(self) -> None:
        await self._tick.wait()

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        due = loop.time() + self.phase_s
        while True:
            await asyncio.sleep(max(due - loop.time(), 0))
            due += self.every_s
            tick, self._tick = self._tick, asyncio.Event()
            tick.set()


def stream_handler(
    bodies: dict[str, list[bytes]],
    headers: list[tuple[str, str]],
    then_s: float | None,
    live: tuple[bytes, dict[str, Ticker]] | None = None,
) -> Handler:
    """Replay a wallet's frames; with `then_s`, then a heartbeat every `then_s` seconds;
    with `live`, then its frame at each tick of the wallet's ticker."""

    async def handler(request: web.Request) -> web.StreamResponse:
        if "limit" in request.query:
            return bad_request()
        address = request.match_info["address"]
        frames = bodies.get(address)
        if frames is None:
            raise web.HTTPNotFound()
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        try:
            for frame in frames:
                await resp.write(frame)
            while then_s is not None:
                await asyncio.sleep(then_s)
                await resp.write(heartbeat_frame())
            if live is not None:
                frame, tickers = live
                while True:
                    await tickers[address].wait()
                    await resp.write(frame)
        except ConnectionResetError:
            pass  # the client left, as walletd's streams do
        return resp

    return handler


async def health(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def bad_request() -> web.Response:
    """What a bare aiohttp app answers to a bad query: a JSON 400, walletd's body shape."""
    body = {
        "code": "INVALID_PARAMETER",
        "error": "'limit' must be an integer from 1 to 20000",
        "request_id": "0123456789abcdef0123456789abcdef",
    }
    return web.json_response(body, status=400)


def build_app(
    bodies: dict[str, list[bytes]],
    headers: list[tuple[str, str]],
    heartbeat_s: float | None,
    live: tuple[bytes, float] | None = None,
) -> web.Application:
    app = web.Application()
    if heartbeat_s is not None:  # idle mode: what walletd sends before it idles, then beats
        bodies = {wallet: idle_prefix(frames) for wallet, frames in bodies.items()}
    ticking = None
    if live is not None:
        frame, every_s = live
        tickers = {
            wallet: Ticker(every_s, every_s * i / len(bodies)) for i, wallet in enumerate(bodies)
        }
        ticking = (frame, tickers)

        async def tick(app: web.Application) -> AsyncIterator[None]:
            tasks = [asyncio.create_task(ticker.run()) for ticker in tickers.values()]
            yield
            for task in tasks:
                task.cancel()

        app.cleanup_ctx.append(tick)
    handler = stream_handler(bodies, headers, heartbeat_s, ticking)
    app.router.add_get(STREAM_ROUTE, handler, allow_head=False)
    app.router.add_get("/health", health)
    return app


def body_arg(value: str) -> tuple[str, Path]:
    wallet, sep, path = value.partition("=")
    if not sep or not wallet or not path:
        raise argparse.ArgumentTypeError("expected WALLET=FILE")
    return wallet, Path(path)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--body", type=body_arg, action="append", required=True)
    parser.add_argument("--headers", type=Path, help="JSON list of [name, value] pairs")
    parser.add_argument("--heartbeat", type=float, metavar="SECONDS", help="idle mode")
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    parser.add_argument("--live", type=Path, help="a live frame: the live-follow mode")
    parser.add_argument("--live-every", type=float, default=1.0, metavar="SECONDS")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    headers = DEFAULT_HEADERS
    if args.headers is not None:
        headers = [(name, value) for name, value in json.loads(args.headers.read_text())]
    bodies = {wallet: split_frames(path.read_bytes()) for wallet, path in args.body}
    live = None if args.live is None else (args.live.read_bytes(), args.live_every)
    app = build_app(bodies, headers, args.heartbeat, live)
    # The same serving options as walletd's cli.serve, minus its access logger (off at
    # WARNING there anyway).
    loop = new_event_loop(args.loop)
    web.run_app(
        app,
        host=args.host,
        port=args.port,
        handler_cancellation=True,
        access_log=None,
        print=None,
        loop=loop,
    )


def new_event_loop(name: str) -> asyncio.AbstractEventLoop:
    if name == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


if __name__ == "__main__":
    main()
