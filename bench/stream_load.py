"""Load benchmark of walletd's SSE stream, as ratios to a raw aiohttp baseline (raw_server.py).

Why ratios: this machine is small (2 cores) and noisy, so absolute figures move from run
to run; walletd and a bare aiohttp server replaying walletd's exact bytes, run in the
same invocation under the same load, move together. The ratio is walletd's own cost.

One invocation starts every process it needs (walletd and the raw server pinned to
core 0, this client pinned to core 1), warms walletd's history cache, captures the bytes
the raw server replays, runs the scenarios against both, prints a table with the targets
and writes the figures as JSON to bench/results/. Children are always killed at exit.

    throughput  --streams concurrent streams of the large demo wallet read to the end
    churn       --clients clients looping connect, read to the first trades event, close
    idle        --idle-streams streams held open on a source that never answers

The client is deliberately lean, so that it stays below its core's limit while the
servers reach theirs: a hand-written HTTP/1.1 GET over plain asyncio connections
(protocols on the hot paths), no SSE parsing under load: throughput streams count bytes
and read the `total` of their last trades event from the stream's tail; churn streams
scan for the end of the first trades event. That is sound because aiohttp writes each
`resp.write(frame)` as one HTTP chunk, so chunk-size lines only ever sit between SSE
frames; and every stream's count is checked against a fully decoded, verified capture.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import datetime
import json
import os
import resource
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

REPO = Path(__file__).resolve().parent.parent
# The walletd the servers run: this repository, or another tree (say `git archive` of an
# older commit) for before/after figures from the same benchmark code.
WALLETD_TREE = Path(os.environ.get("BENCH_WALLETD_TREE", REPO)).resolve()
RESULTS_DIR = REPO / "bench" / "results"
LARGE_WALLET = "GFmfk7ocGPRt19DuyGC6ezLtY1PtT6Zn1R53P169oSiL"  # ~15,400 trades
NORMAL_WALLET = "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2"  # 111 transactions
HOST = "127.0.0.1"
SERVER_CORE, CLIENT_CORE = 0, 1
READ_SIZE = 1 << 18
LAST_CHUNK = b"\r\n0\r\n\r\n"  # the end of a chunked body
SIGNATURE = b'"signature"'  # once per trade
TOTAL_FIELD = b',"total":'  # a trades event ends with ,"total":N}
TAIL_SIZE = 2048  # holds the last trades event's end, the complete event and the last chunk
TRADES_EVENT = b"\nevent: trades\n"
CONNECTED_EVENT = b"event: connected\n"
HEARTBEAT_EVENT = b"event: heartbeat\n"
CONNECT_GATE = 64  # connects in flight at once: stays under aiohttp's listen backlog (128)
IDLE_KEEPALIVE_S = 5.0
CLK_TCK = os.sysconf("SC_CLK_TCK")
CLIENT_SATURATED = 0.90  # a load client above this share of its core may be the limit
# The event loop of every server and of this client: uvloop, as `walletd serve` runs
# (WALLETD_LOOP); `--loop asyncio` measures the stdlib loop. Set by main() of each script.
EVENT_LOOPS = ("uvloop", "asyncio")
event_loop = "uvloop"

# Targets: ratios are walletd / raw of the same run; the others are absolute.
TARGET_TRADES_RATIO = 0.70
TARGET_CPU_PER_TRADE_RATIO = 1.33  # server CPU per 1M trades, walletd / raw
TARGET_CHURN_RATIO = 0.50
TARGET_P99_MS = 50.0
TARGET_FIRST_TRADES_RATIO = 1.25  # churn p50 and p99, walletd / raw
TARGET_IDLE_KB = 16.0
TARGET_CONNECT_RATIO = 2.0  # time to connect every idle stream, walletd / raw


class BenchError(Exception):
    """A scenario could not produce a trustworthy figure."""


# ---------------------------------------------------------------------------------------
# Child processes


def _pin_and_tie_to_parent() -> None:
    """preexec_fn: run on the server core, and die with the benchmark (PR_SET_PDEATHSIG)."""
    os.sched_setaffinity(0, {SERVER_CORE})
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


@dataclass
class Server:
    """A server process on core 0, with the figures /proc gives about it."""

    name: str
    proc: subprocess.Popen[bytes]
    port: int
    log: Path

    def rss_kb(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        line = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
        return int(line.split()[1])

    def cpu_s(self) -> float:
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime + stime

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return self.log.read_text(errors="replace")[-2000:]
        return ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


@dataclass
class Children:
    """Every process the benchmark started; stop_all() runs however the benchmark ends."""

    workdir: Path
    servers: list[Server] = field(default_factory=list)

    def start(self, name: str, argv: list[str], env: dict[str, str], port: int) -> Server:
        log = self.workdir / f"{name}.log"
        with log.open("wb") as out:
            proc = subprocess.Popen(
                argv,
                cwd=WALLETD_TREE,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_pin_and_tie_to_parent,
            )
        server = Server(name, proc, port, log)
        self.servers.append(server)
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        self.servers.remove(server)

    def stop_all(self) -> None:
        for server in list(self.servers):
            server.stop()
        self.servers.clear()


def walletd_env(port: int, **settings: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(WALLETD_TREE), env.get("PYTHONPATH")]))
    env.update(
        HOST=HOST,
        PORT=str(port),
        LOG_LEVEL="WARNING",  # logging must not dominate what is measured
        CACHE_TTL="86400",  # the warmed history stays for the whole run
        SHUTDOWN_GRACE="1",
        # One load client is one address: the per-client limits (SPEC §3) would refuse
        # it; bench/auth_load.py measures the limiter itself.
        RATE_LIMIT_REQUESTS="1000000",
        RATE_LIMIT_WINDOW="1",
        RATE_LIMIT_STREAMING_CONNECTIONS="100000",
        WALLETD_LOOP=event_loop,
    )
    env.update(settings)
    return env


async def start_walletd(children: Children, name: str, **settings: str) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "walletd", "serve"]
    server = children.start(name, argv, walletd_env(port, **settings), port)
    await wait_ready(server)
    return server


async def start_raw(
    children: Children,
    name: str,
    bodies: dict[str, Path],
    headers: Path,
    heartbeat: float = 0,
    options: Sequence[str] = (),
) -> Server:
    """raw_server.py replaying `bodies`; `options`: more of its arguments (--live...)."""
    port = free_port()
    argv = [sys.executable, str(REPO / "bench" / "raw_server.py"), "--port", str(port)]
    argv += ["--headers", str(headers), "--loop", event_loop, *options]
    for wallet, path in bodies.items():
        argv += ["--body", f"{wallet}={path}"]
    if heartbeat:
        argv += ["--heartbeat", str(heartbeat)]
    server = children.start(name, argv, walletd_env(port), port)
    await wait_ready(server)
    return server


async def wait_ready(server: Server, within_s: float = 30.0) -> None:
    deadline = time.monotonic() + within_s
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(f"{server.name} exited:\n{server.log_tail()}")
        with contextlib.suppress(OSError):
            reader, writer = await asyncio.open_connection(HOST, server.port)
            writer.write(b"GET /health HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")
            status = await reader.readline()
            writer.close()
            if b" 200 " in status:
                return
        await asyncio.sleep(0.1)
    raise BenchError(f"{server.name} not ready within {within_s}s:\n{server.log_tail()}")


# ---------------------------------------------------------------------------------------
# The lean HTTP/SSE client


def stream_path(wallet: str) -> str:
    return f"/v4/wallet/{wallet}/stream"


def get_request(port: int, path: str) -> bytes:
    return (
        f"GET {path} HTTP/1.1\r\nHost: {HOST}:{port}\r\nAccept: text/event-stream\r\n"
        "Cache-Control: no-cache\r\n\r\n"
    ).encode()


@dataclass
class Head:
    status: int
    headers: list[tuple[str, str]]


async def open_stream(
    port: int, path: str
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, Head]:
    """Connect, send the GET, read the response head; the body is the caller's to read."""
    reader, writer = await asyncio.open_connection(HOST, port, limit=1 << 20)
    writer.write(get_request(port, path))
    try:
        raw = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as exc:
        writer.close()
        raise BenchError(f"no response head from {path}") from exc
    status_line, *lines = raw.decode("latin-1").split("\r\n")[:-2]
    headers = [(name, value.strip()) for name, _, value in (ln.partition(":") for ln in lines)]
    head = Head(int(status_line.split()[1]), headers)
    chunked = any(n.lower() == "transfer-encoding" and v == "chunked" for n, v in headers)
    if head.status != 200 or not chunked:
        writer.close()
        raise BenchError(f"{path}: status {head.status}, chunked={chunked}")
    return reader, writer, head


async def read_more(reader: asyncio.StreamReader) -> bytes:
    data = await reader.read(READ_SIZE)
    if not data:
        raise BenchError("the server closed the stream early")
    return data


def dechunk(raw: bytes) -> tuple[bytes, bool]:
    """Decode the complete chunks of a chunked body: (payload, saw the last chunk)."""
    out: list[bytes] = []
    pos = 0
    while (eol := raw.find(b"\r\n", pos)) >= 0:
        size = int(raw[pos:eol].split(b";")[0], 16)
        start, end = eol + 2, eol + 2 + size
        if size == 0:
            return b"".join(out), True
        if len(raw) < end + 2:
            break
        if raw[end : end + 2] != b"\r\n":
            raise BenchError("malformed chunked body")
        out.append(raw[start:end])
        pos = end + 2
    return b"".join(out), False


# ---------------------------------------------------------------------------------------
# Hot-path readers: asyncio protocols, not StreamReader, which copies every read about
# three times: with it this client, not the raw server, was the limit of the baseline.


class Exchange(asyncio.BaseProtocol):
    """One request on one connection; `done` resolves when the reader has what it wants."""

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        # Its awaiter raises any failure; this only silences "never retrieved" for the
        # connections an interrupted run leaves behind.
        self.done.add_done_callback(lambda f: f.cancelled() or f.exception())
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(self.request)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_exception(BenchError(f"the server closed the stream early ({exc})"))

    def finish(self, ok: bool) -> None:
        assert self.transport is not None
        self.transport.close()  # with unread data: a reset, as a closing browser tab sends
        if self.done.done():
            return
        if ok:
            self.done.set_result(None)
        else:
            self.done.set_exception(BenchError("not a 200 response"))

    def abandon(self) -> None:
        """The reader was cancelled: drop the connection and the outcome with it."""
        self.done.cancel()
        if self.transport is not None:
            self.transport.abort()


class DrainProtocol(Exchange, asyncio.BufferedProtocol):
    """Reads a whole stream into one reused buffer; keeps only its end, to read the count.

    Scanning every byte (say for `"signature"`) costs this client more than the raw server
    spends sending them; the `total` of the last trades event costs nothing.
    """

    def __init__(self, request: bytes) -> None:
        super().__init__(request)
        self.buf = bytearray(READ_SIZE)
        self.received = 0
        self.tail = b""  # the stream's last TAIL_SIZE bytes so far

    def get_buffer(self, sizehint: int) -> memoryview:
        return memoryview(self.buf)

    def buffer_updated(self, nbytes: int) -> None:
        if self.done.done():
            return
        if not self.received and not self.buf.startswith(b"HTTP/1.1 200 "):
            self.finish(ok=False)
            return
        self.received += nbytes
        self.tail = (self.tail + self.buf[max(0, nbytes - TAIL_SIZE) : nbytes])[-TAIL_SIZE:]
        if self.tail.endswith(LAST_CHUNK):
            self.finish(ok=True)

    @property
    def trades(self) -> int:
        """The `total` of the stream's last trades event (-1 if it is not in the tail)."""
        at = self.tail.rfind(TOTAL_FIELD)
        if at < 0:
            return -1
        digits = self.tail[at + len(TOTAL_FIELD) :].split(b"}", 1)[0]
        return int(digits) if digits.isdigit() else -1


class FirstTradesProtocol(Exchange, asyncio.Protocol):
    """Reads until the first trades event is complete, then leaves: one churn stream."""

    def __init__(self, request: bytes) -> None:
        super().__init__(request)
        self.buf = b""

    def data_received(self, data: bytes) -> None:
        if self.done.done():
            return
        self.buf += data
        at = self.buf.find(TRADES_EVENT)
        if at >= 0 and self.buf.find(b"\n\n", at) >= 0:
            self.finish(ok=self.buf.startswith(b"HTTP/1.1 200 "))


P = TypeVar("P", bound=Exchange)


async def exchange(
    port: int, path: str, protocol: type[P], gate: asyncio.Semaphore | None = None
) -> P:
    loop = asyncio.get_running_loop()
    request = get_request(port, path)
    async with gate or contextlib.nullcontext():
        _, proto = await loop.create_connection(lambda: protocol(request), HOST, port)
    try:
        await proto.done
    except asyncio.CancelledError:
        proto.abandon()
        raise
    return proto


# ---------------------------------------------------------------------------------------
# Capture: the exact bytes walletd sends, verified, for the raw server to replay


@dataclass
class Capture:
    headers: list[tuple[str, str]]
    body: bytes


async def capture(port: int, path: str, until: bytes | None = None) -> Capture:
    """A stream's decoded body: all of it, or up to the end of the first `until` event."""
    reader, writer, head = await open_stream(port, path)
    raw = bytearray()
    try:
        async with asyncio.timeout(120):
            while not raw.endswith(LAST_CHUNK) and not has_event(raw, until):
                raw += await read_more(reader)
    finally:
        writer.close()
    body, _ = dechunk(bytes(raw))
    if until is not None:
        body = body[: body.index(b"\n\n", body.index(until)) + 2]
    return Capture(head.headers, body)


def has_event(raw: bytearray, event: bytes | None) -> bool:
    """Whether the complete chunks of `raw` hold a complete `event` frame."""
    if event is None or event not in raw:
        return False
    body, _ = dechunk(bytes(raw))
    return (at := body.find(event)) >= 0 and body.find(b"\n\n", at) >= 0


def frames_of(body: bytes) -> list[bytes]:
    parts = body.split(b"\n\n")
    if parts[-1]:
        raise BenchError("the captured body does not end with a complete frame")
    return [part + b"\n\n" for part in parts[:-1]]


def event_data(frame: bytes) -> dict[str, Any]:
    line = next(ln for ln in frame.split(b"\n") if ln.startswith(b"data: "))
    data: dict[str, Any] = json.loads(line[len(b"data: ") :])
    return data


def verify_full_stream(body: bytes) -> int:
    """The trade count of a complete stream, checked three ways; raises if they differ."""
    frames = frames_of(body)
    trades = [f for f in frames if TRADES_EVENT in b"\n" + f]
    counted = sum(f.count(SIGNATURE) for f in trades)
    complete = [f for f in frames if f.startswith(b"event: complete\n")]
    if not trades or len(complete) != 1:
        raise BenchError("the capture is not a complete stream with trades")
    total = event_data(trades[-1])["total"]
    found = event_data(complete[0])["trades_found"]
    if not counted == total == found:
        raise BenchError(f"trade counts disagree: {counted} signatures, {total}, {found}")
    return counted


def save_capture(workdir: Path, name: str, cap: Capture) -> Path:
    path = workdir / f"{name}.sse"
    path.write_bytes(cap.body)
    return path


def save_headers(workdir: Path, cap: Capture) -> Path:
    """walletd's response headers, less those aiohttp itself writes for any response."""
    own = {"date", "server", "transfer-encoding", "content-length", "connection"}
    path = workdir / "headers.json"
    path.write_text(json.dumps([[n, v] for n, v in cap.headers if n.lower() not in own]))
    return path


# ---------------------------------------------------------------------------------------
# Measurement helpers


@dataclass
class Usage:
    """CPU used over a span of wall time, in cores: the server, this client, and the rest.

    `other_cpu` is everything else the machine did meanwhile (other processes, and kernel
    softirq work not charged to a process): the noise of this measurement.
    """

    server: Server
    wall0: float = field(default_factory=time.perf_counter)
    server0: float = 0.0
    client0: float = 0.0
    machine0: float = 0.0

    def __post_init__(self) -> None:
        self.server0 = self.server.cpu_s()
        self.client0 = client_cpu_s()
        self.machine0 = machine_busy_s()

    def finish(self) -> dict[str, float]:
        wall = time.perf_counter() - self.wall0
        server = self.server.cpu_s() - self.server0
        client = client_cpu_s() - self.client0
        machine = machine_busy_s() - self.machine0
        return {
            "wall_s": wall,
            "server_cpu_s": server,
            "server_cpu": server / wall,
            "client_cpu": client / wall,
            "other_cpu": max(0.0, machine - server - client) / wall,
        }


def client_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def machine_busy_s() -> float:
    """CPU seconds every core spent busy since boot (user, nice, system, irq, softirq, steal)."""
    with open("/proc/stat") as stat:
        fields = [int(v) for v in stat.readline().split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq + steal) / CLK_TCK


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# ---------------------------------------------------------------------------------------
# Scenario 1: throughput


async def throughput(server: Server, streams: int, expected: int) -> dict[str, float]:
    gate = asyncio.Semaphore(CONNECT_GATE)
    path = stream_path(LARGE_WALLET)
    usage = Usage(server)
    async with asyncio.timeout(300):
        results = await asyncio.gather(
            *(exchange(server.port, path, DrainProtocol, gate) for _ in range(streams))
        )
    figures = usage.finish()
    short = [r.trades for r in results if r.trades != expected]
    if short:
        raise BenchError(f"{len(short)} streams got {short[:3]}... trades, not {expected}")
    received = sum(r.received for r in results)
    trades = sum(r.trades for r in results)
    return {
        **figures,
        "cpu_s_per_mtrades": figures["server_cpu_s"] / trades * 1e6,
        "trades_s": trades / figures["wall_s"],
        "mb_s": received / figures["wall_s"] / 1e6,
        "trades": trades,
    }


# ---------------------------------------------------------------------------------------
# Scenario 2: churn (new streams per second, time to the first trades event)


async def churn_client(port: int, path: str, until: float, latencies: list[float]) -> int:
    errors = 0
    while time.perf_counter() < until:
        started = time.perf_counter()
        try:
            await exchange(port, path, FirstTradesProtocol)
        except (OSError, BenchError):
            errors += 1
            continue
        latencies.append(time.perf_counter() - started)
    return errors


async def churn(server: Server, clients: int, duration_s: float, wallet: str) -> dict[str, float]:
    latencies: list[float] = []
    path = stream_path(wallet)
    usage = Usage(server)
    until = time.perf_counter() + duration_s
    async with asyncio.timeout(duration_s + 60):
        errors = await asyncio.gather(
            *(churn_client(server.port, path, until, latencies) for _ in range(clients))
        )
    figures = usage.finish()
    if not latencies or sum(errors) > len(latencies) // 100:
        raise BenchError(f"churn: {sum(errors)} failed streams, {len(latencies)} good")
    return {
        **figures,
        "cpu_ms_per_stream": figures["server_cpu_s"] / len(latencies) * 1000,
        "streams_s": len(latencies) / figures["wall_s"],
        "p50_ms": percentile(latencies, 0.50) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "streams": len(latencies),
        "errors": sum(errors),
    }


# ---------------------------------------------------------------------------------------
# Scenario 3: idle streams (server memory per held stream)


@dataclass
class IdleTally:
    connected: int = 0
    heartbeated: int = 0
    release: asyncio.Event = field(default_factory=asyncio.Event)


async def read_until_event(reader: asyncio.StreamReader, event: bytes, buf: bytes) -> bytes:
    """Read until `event` and its frame's end are in; returns what follows that frame."""
    while (at := buf.find(event)) < 0 or (end := buf.find(b"\n\n", at)) < 0:
        buf += await read_more(reader)
    return buf[end + 2 :]


async def hold_stream(port: int, path: str, gate: asyncio.Semaphore, tally: IdleTally) -> None:
    async with gate:
        reader, writer, _ = await open_stream(port, path)
        try:
            rest = await read_until_event(reader, CONNECTED_EVENT, b"")
        except BaseException:
            writer.close()
            raise
    tally.connected += 1
    try:
        await read_until_event(reader, HEARTBEAT_EVENT, rest)
        tally.heartbeated += 1
        await tally.release.wait()
    finally:
        writer.close()


async def wait_for(check: Callable[[], bool], tasks: list[asyncio.Task[None]]) -> None:
    """Poll `check` until it holds; raise the first failure of `tasks` meanwhile."""
    while not check():
        failed = [t for t in tasks if t.done() and t.exception() is not None]
        if failed:
            raise BenchError(f"{len(failed)} idle streams failed: {failed[0].exception()!r}")
        await asyncio.sleep(0.2)


async def idle(server: Server, streams: int, wallet: str, keepalive_s: float) -> dict[str, float]:
    """RSS per held stream: (after every stream had connected and a heartbeat - before) / n."""
    await asyncio.sleep(1)  # let the server settle after the capture
    before = server.rss_kb()
    tally = IdleTally()
    gate = asyncio.Semaphore(CONNECT_GATE)
    path = stream_path(wallet)
    started = time.perf_counter()
    ramp = Usage(server)
    tasks = [
        asyncio.create_task(hold_stream(server.port, path, gate, tally)) for _ in range(streams)
    ]
    try:
        async with asyncio.timeout(120 + 3 * keepalive_s):
            await wait_for(lambda: tally.connected == streams, tasks)
            ramp_s = time.perf_counter() - started
            ramping = ramp.finish()
            connected_rss = server.rss_kb()
            await wait_for(lambda: tally.heartbeated == streams, tasks)
        after = server.rss_kb()
        holding = Usage(server)
        await asyncio.sleep(2 * keepalive_s)  # two heartbeat rounds, nothing else
        hold = holding.finish()
    finally:
        tally.release.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    return {
        "kb_per_stream": (after - before) / streams,
        "rss_before_kb": before,
        "rss_connected_kb": connected_rss,
        "rss_after_kb": after,
        "ramp_s": ramp_s,
        "ramp_cpu_ms_per_stream": ramping["server_cpu_s"] / streams * 1000,
        "ramp_client_cpu": ramping["client_cpu"],
        "hold_cpu": hold["server_cpu"],
        "streams": streams,
    }


# ---------------------------------------------------------------------------------------
# Profiling walletd (--py-spy)


def _tie_to_parent() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


@contextlib.asynccontextmanager
async def profiled(run: Run, server: Server, label: str) -> AsyncIterator[None]:
    """Sample `server` with py-spy while the block runs, when --py-spy asks for it."""
    if not run.args.py_spy or not server.name.startswith("walletd"):
        yield
        return
    out = RESULTS_DIR / f"pyspy-{run.stamp}-{label}.txt"
    spy = start_py_spy(server.proc.pid, out)
    await asyncio.sleep(1)  # attached
    try:
        yield
    finally:
        stop_py_spy(spy)
    if out.exists():
        run.profiles[label] = top_frames(out)


def start_py_spy(pid: int, out: Path) -> subprocess.Popen[bytes]:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    argv = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--rate", "200"]
    argv += ["--nonblocking", "--output", str(out)]
    return subprocess.Popen(
        argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_tie_to_parent
    )


def stop_py_spy(spy: subprocess.Popen[bytes]) -> None:
    spy.send_signal(signal.SIGINT)  # py-spy writes its output and exits
    try:
        spy.wait(timeout=15)
    except subprocess.TimeoutExpired:
        spy.kill()
        spy.wait()


def top_frames(raw_profile: Path, count: int = 12) -> list[str]:
    """The frames with the most samples of their own, from py-spy's raw (collapsed) output."""
    own: dict[str, int] = {}
    total = 0
    for line in raw_profile.read_text().splitlines():
        stack, _, samples = line.rpartition(" ")
        if stack and samples.isdigit():
            own[stack.rsplit(";", 1)[-1]] = own.get(stack.rsplit(";", 1)[-1], 0) + int(samples)
            total += int(samples)
    ranked = sorted(own.items(), key=lambda item: -item[1])[:count]
    return [f"{100 * n / total:5.1f}%  {frame}" for frame, n in ranked]


# ---------------------------------------------------------------------------------------
# Orchestration


@dataclass
class Run:
    args: argparse.Namespace
    children: Children
    rounds: dict[str, dict[str, list[dict[str, float]]]] = field(default_factory=dict)
    stamp: str = field(default_factory=lambda: datetime.datetime.now().strftime("%Y%m%d-%H%M%S"))
    profiles: dict[str, list[str]] = field(default_factory=dict)
    commit: str = field(default_factory=lambda: git_describe())  # what the servers ran

    def record(self, scenario: str, side: str, figures: dict[str, float]) -> None:
        figures = {**figures, "load1": os.getloadavg()[0]}
        self.rounds.setdefault(scenario, {}).setdefault(side, []).append(figures)
        shown = ", ".join(f"{k}={v:,.3g}" for k, v in figures.items())
        print(f"  {scenario:<10} {side:<7} {shown}{saturation_note(figures)}", flush=True)

    def median(self, scenario: str, side: str, key: str) -> float:
        return statistics.median(r[key] for r in self.rounds[scenario][side])


def saturation_note(figures: dict[str, float]) -> str:
    """A warning when the load client, not the server, may have been the limit."""
    client = max(figures.get("client_cpu", 0.0), figures.get("ramp_client_cpu", 0.0))
    return f"  [CLIENT SATURATED: {client:.2f} cores]" if client > CLIENT_SATURATED else ""


def saturated_rounds(rounds: dict[str, dict[str, list[dict[str, float]]]]) -> list[str]:
    """Every scenario and side of which a round had the client above CLIENT_SATURATED."""
    return [
        f"{scenario}/{side} round {i + 1}"
        for scenario, sides in rounds.items()
        for side, figures in sides.items()
        for i, f in enumerate(figures)
        if saturation_note(f)
    ]


def sides_in_turn(walletd: Server, raw: Server, round_no: int) -> list[tuple[str, Server]]:
    """Alternate which side goes first, so a drift of the machine hits both alike."""
    order = [("walletd", walletd), ("raw", raw)]
    return order if round_no % 2 == 0 else order[::-1]


async def warm_and_capture(walletd: Server, wallet: str) -> tuple[Capture, int]:
    """One full stream fills the history cache; a second one, from the cache, is captured."""
    await capture(walletd.port, stream_path(wallet))
    cap = await capture(walletd.port, stream_path(wallet))
    return cap, verify_full_stream(cap.body)


async def run_streaming(run: Run, scenarios: set[str]) -> None:
    """Throughput and churn: walletd with an instant source, and the replaying raw server."""
    args, workdir = run.args, run.children.workdir
    walletd = await start_walletd(run.children, "walletd")
    print(f"warming walletd (pid {walletd.proc.pid}) and capturing its streams", flush=True)
    large, expected = await warm_and_capture(walletd, LARGE_WALLET)
    bodies = {LARGE_WALLET: save_capture(workdir, "large", large)}
    if "churn" in scenarios and args.churn_wallet != LARGE_WALLET:
        small, _ = await warm_and_capture(walletd, args.churn_wallet)
        bodies[args.churn_wallet] = save_capture(workdir, "churn", small)
    raw = await start_raw(run.children, "raw", bodies, save_headers(workdir, large))
    print(f"  {expected} trades and {len(large.body):,} bytes per large stream", flush=True)
    for round_no in range(args.rounds):
        for side, server in sides_in_turn(walletd, raw, round_no):
            if "throughput" in scenarios:
                async with profiled(run, server, f"throughput-{round_no}"):
                    figures = await throughput(server, args.streams, expected)
                run.record("throughput", side, figures)
            if "churn" in scenarios:
                async with profiled(run, server, f"churn-{round_no}"):
                    figures = await churn(server, args.clients, args.duration, args.churn_wallet)
                run.record("churn", side, figures)
    run.children.stop(walletd)
    run.children.stop(raw)


async def run_idle(run: Run) -> None:
    """Each side measured in a fresh process, alone on the server core."""
    args, workdir = run.args, run.children.workdir
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if args.idle_streams + 100 > soft:
        raise BenchError(f"{args.idle_streams} idle streams need more than {soft} open files")
    walletd = await start_walletd(
        run.children,
        "walletd-idle",
        DEMO_LATENCY_MS="600000",  # the source never answers: only heartbeats flow
        SSE_KEEPALIVE_INTERVAL=str(args.keepalive),
    )
    print(f"idle: capturing walletd's idle stream (~{args.keepalive:g}s)", flush=True)
    path = stream_path(NORMAL_WALLET)
    cap = await capture(walletd.port, path, until=HEARTBEAT_EVENT)
    body_file = save_capture(workdir, "idle", cap)
    headers = save_headers(workdir, cap)
    async with profiled(run, walletd, "idle"):
        figures = await idle(walletd, args.idle_streams, NORMAL_WALLET, args.keepalive)
    run.record("idle", "walletd", figures)
    run.children.stop(walletd)
    raw = await start_raw(
        run.children, "raw-idle", {NORMAL_WALLET: body_file}, headers, heartbeat=args.keepalive
    )
    run.record("idle", "raw", await idle(raw, args.idle_streams, NORMAL_WALLET, args.keepalive))
    run.children.stop(raw)


# ---------------------------------------------------------------------------------------
# Report


@dataclass
class Row:
    scenario: str
    metric: str
    walletd: float
    raw: float
    target: str = ""
    passed: bool | None = None

    @property
    def ratio(self) -> float:
        return self.walletd / self.raw if self.raw else float("nan")

    @property
    def shown_ratio(self) -> str:
        """walletd/raw where that means something: not for CPU use in cores (context)."""
        return "" if "(cores)" in self.metric else f"{self.ratio:.0%}"


SIDES = ("walletd", "raw")
CPU_ROWS = (
    ("server CPU (cores)", "server_cpu"),
    ("client CPU (cores)", "client_cpu"),
    ("other CPU: noise (cores)", "other_cpu"),
)


def report_rows(run: Run) -> list[Row]:
    rows: list[Row] = []
    if "throughput" in run.rounds:
        rows += throughput_rows(run)
    if "churn" in run.rounds:
        rows += churn_rows(run)
    if "idle" in run.rounds:
        kb = median_row(run, "idle", "KB per held stream", "kb_per_stream")
        kb.target, kb.passed = f"<= {TARGET_IDLE_KB:g} KB", kb.walletd <= TARGET_IDLE_KB
        rows.append(kb)
        ramp = median_row(run, "idle", "time to connect all (s)", "ramp_s")
        ramp.target = f"<= {TARGET_CONNECT_RATIO:g}x raw"
        ramp.passed = ramp.ratio <= TARGET_CONNECT_RATIO
        rows.append(ramp)
        rows.append(
            median_row(run, "idle", "server CPU per connect (ms)", "ramp_cpu_ms_per_stream")
        )
        rows.append(median_row(run, "idle", "CPU holding them (cores)", "hold_cpu"))
    return rows


def median_row(run: Run, scenario: str, metric: str, key: str) -> Row:
    """The median over rounds of one figure, for each side."""
    walletd, raw = (run.median(scenario, side, key) for side in SIDES)
    return Row(scenario, metric, walletd, raw)


def throughput_rows(run: Run) -> list[Row]:
    trades = median_row(run, "throughput", "trades/s", "trades_s")
    trades.target = f">= {TARGET_TRADES_RATIO:.0%}"
    trades.passed = trades.ratio >= TARGET_TRADES_RATIO
    cpu = median_row(run, "throughput", "server CPU s per 1M trades", "cpu_s_per_mtrades")
    cpu.target = f"<= {TARGET_CPU_PER_TRADE_RATIO:g}x raw"
    cpu.passed = cpu.ratio <= TARGET_CPU_PER_TRADE_RATIO
    rows = [trades, cpu, median_row(run, "throughput", "MB/s", "mb_s")]
    return rows + [median_row(run, "throughput", *cpu) for cpu in CPU_ROWS]


def churn_rows(run: Run) -> list[Row]:
    streams = median_row(run, "churn", "new streams/s", "streams_s")
    streams.target = f">= {TARGET_CHURN_RATIO:.0%}"
    streams.passed = streams.ratio >= TARGET_CHURN_RATIO
    cpu = median_row(run, "churn", "server CPU per new stream (ms)", "cpu_ms_per_stream")
    p50 = median_row(run, "churn", "first trades p50 (ms)", "p50_ms")
    p99 = median_row(run, "churn", "first trades p99 (ms)", "p99_ms")
    for row in (p50, p99):
        row.target = f"<= {TARGET_FIRST_TRADES_RATIO:g}x raw"
        row.passed = row.ratio <= TARGET_FIRST_TRADES_RATIO
    p99.target += f", <= {TARGET_P99_MS:g} ms"
    p99.passed = p99.passed and p99.walletd <= TARGET_P99_MS
    rows = [streams, cpu, p50, p99]
    return rows + [median_row(run, "churn", *cpu) for cpu in CPU_ROWS]


def fmt(value: float) -> str:
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.3g}" if abs(value) >= 1 else f"{value:.2f}"


def verdict(passed: bool | None) -> str:
    """A row's result column: PASS, FAIL, or blank for a figure without a target."""
    return "" if passed is None else ("PASS" if passed else "FAIL")


def print_columns(lines: Sequence[Sequence[str]]) -> None:
    """Print `lines` (the header first) as left-aligned columns."""
    widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
    for line in lines:
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip())


def print_table(rows: list[Row]) -> None:
    lines = [("scenario", "metric", "walletd", "raw", "ratio", "target", "result")]
    for r in rows:
        figures = (fmt(r.walletd), fmt(r.raw), r.shown_ratio)
        lines.append((r.scenario, r.metric, *figures, r.target, verdict(r.passed)))
    print_columns(lines)


def save_results(run: Run, rows: list[Row]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"stream_load-{run.stamp}.json"
    results = {
        "walletd_commit": run.commit,
        "settings": vars(run.args),
        "rounds": run.rounds,
        "table": [{**vars(r), "ratio": r.ratio} for r in rows],
        "profiles": run.profiles,
    }
    path.write_text(json.dumps(results, indent=2))
    return path


def git_describe() -> str:
    if WALLETD_TREE != REPO:
        return f"tree {WALLETD_TREE}"
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "-C", str(REPO), "describe", "--always", "--dirty"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return out.stdout.strip() or "unknown"
    return "unknown"


def print_saturation(rounds: dict[str, dict[str, list[dict[str, float]]]]) -> None:
    flagged = saturated_rounds(rounds)
    if flagged:
        print(f"WARNING: load client above {CLIENT_SATURATED:.0%} CPU in: {', '.join(flagged)}")


def print_profiles(run: Run) -> None:
    for label, frames in run.profiles.items():
        print(f"\nwalletd, {label}: top frames by own samples (py-spy)")
        print("\n".join(frames))


# ---------------------------------------------------------------------------------------
# Entry point


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--scenario", choices=("throughput", "churn", "idle", "all"), default="all")
    parser.add_argument("--streams", type=int, default=200, help="throughput: concurrent streams")
    parser.add_argument("--clients", type=int, default=50, help="churn: concurrent clients")
    parser.add_argument("--duration", type=float, default=10.0, help="churn: seconds per round")
    parser.add_argument("--churn-wallet", default=NORMAL_WALLET)
    parser.add_argument("--idle-streams", type=int, default=10_000)
    parser.add_argument(
        "--keepalive",
        type=float,
        default=IDLE_KEEPALIVE_S,
        help="idle: SSE_KEEPALIVE_INTERVAL and the raw heartbeat period",
    )
    parser.add_argument("--rounds", type=int, default=3, help="throughput and churn rounds")
    add_loop_arg(parser)
    parser.add_argument(
        "--py-spy", action="store_true", help="sample walletd with py-spy (skews its figures)"
    )
    parser.add_argument(
        "--quick",
        action="store_true",
        help="a smoke run: 20 streams, 3 s churn, 1,000 idle streams, 1 round",
    )
    args = parser.parse_args(argv)
    if args.quick:
        args.streams, args.duration, args.idle_streams, args.rounds = 20, 3.0, 1000, 1
    return args


def prepare_process() -> None:
    """Pin this client to its core and lift the open-files limit (children inherit it)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    with contextlib.suppress(ValueError, OSError):  # an infinite hard limit cannot be set
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    if {SERVER_CORE, CLIENT_CORE} <= os.sched_getaffinity(0):
        os.sched_setaffinity(0, {CLIENT_CORE})
    else:
        print("warning: cores 0 and 1 are not both available; not pinning", file=sys.stderr)


def scenarios_of(args: argparse.Namespace) -> set[str]:
    return {"throughput", "churn", "idle"} if args.scenario == "all" else {args.scenario}


async def run_all(run: Run) -> None:
    # SIGTERM unwinds like Ctrl-C, so the `finally` that stops the children runs.
    main_task = asyncio.current_task()
    assert main_task is not None
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, main_task.cancel)
    scenarios = scenarios_of(run.args)
    if scenarios & {"throughput", "churn"}:
        await run_streaming(run, scenarios)
    if "idle" in scenarios:
        await run_idle(run)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """The client's loop: `event_loop`, as the servers'."""
    if event_loop == "uvloop":
        import uvloop

        return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def add_loop_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        choices=EVENT_LOOPS,
        default="uvloop",
        help="event loop of walletd (WALLETD_LOOP), the raw server and the client",
    )


def use_loop(args: argparse.Namespace) -> None:
    global event_loop
    event_loop = getattr(args, "loop", "uvloop")


def execute(run_all: Callable[[Any], Awaitable[None]], run: Any) -> int | None:
    """Run the scenarios, children always stopped after; the exit status when the
    benchmark itself failed (1) or was interrupted (130), else None."""
    try:
        use_loop(run.args)
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(run_all(run))
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, asyncio.CancelledError):
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        run.children.stop_all()
    return None


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    prepare_process()
    with tempfile.TemporaryDirectory(prefix="walletd-bench-") as tmp:
        run = Run(args, Children(Path(tmp)))
        if (status := execute(run_all, run)) is not None:
            return status
    rows = report_rows(run)
    print_profiles(run)
    print(f"\nwalletd {run.commit}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print_table(rows)
    print_saturation(run.rounds)
    print(f"\nfigures: {save_results(run, rows)}")
    return 0 if all(r.passed is not False for r in rows) else 2


if __name__ == "__main__":
    sys.exit(main())
