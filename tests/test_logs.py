"""A real `walletd serve`'s stdout: one JSON object per line, correlation ids, no secrets."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import fcntl
import json
import logging
import os
import signal
import threading

import aiohttp
import pytest

from tests.sse_client import read_events
from tests.support import WALLET
from tests.walletd_process import walletd
from walletd.observability.logs import (
    BatchingHandler,
    ContextFilter,
    InfoLine,
    bind_ids,
    detached,
    json_formatter,
)

REQUIRED = {"timestamp", "level", "message", "logger"}
SECRET = "l" * 32


async def create_key(env: dict[str, str]) -> str:
    proc = await walletd(
        "keys", "create", "--name", "logs", "--json", env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await proc.communicate()
    assert proc.returncode == 0
    return str(json.loads(out)["key"])


async def finish(server) -> list[dict]:
    """SIGTERM, then every line the process wrote, each parsed as JSON."""
    server.proc.send_signal(signal.SIGTERM)
    rest, _ = await asyncio.wait_for(server.proc.communicate(), 15)
    lines = [json.loads(line) for line in rest.decode().splitlines()]
    return server.logs + lines


async def test_every_line_is_json_with_ids_and_one_stream_finished_per_stream(
    server_factory, tmp_path
):
    env = {
        "API_KEY_REQUIRED": "true",
        "SECRET_KEY": SECRET,
        "API_KEYS_FILE": str(tmp_path / "keys.json"),
        "LOG_LEVEL": "INFO",
    }
    key = await create_key(env)
    server = await server_factory(**env)
    headers = {"X-API-Key": key}
    seen = []
    async with aiohttp.ClientSession() as http:
        for extra in ({"X-Request-ID": "client-chosen-1"}, {}):
            url = f"{server.url}/v4/wallet/{WALLET}/stream"
            async with http.get(url, headers={**headers, **extra}) as resp:
                await read_events(resp)
                seen.append((resp.headers["X-Request-ID"], resp.headers["X-Stream-ID"]))
        async with http.get(f"{server.url}/v4/wallet/nope/stream", headers=headers) as resp:
            assert resp.status == 400
        async with http.get(f"{server.url}/v4/wallet/{WALLET}/stream?api_key={key}&limit=x"):
            pass
    records = await finish(server)
    assert all(REQUIRED <= r.keys() for r in records)
    assert all(r["level"] in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"} for r in records)
    finished = [r for r in records if r["message"] == "stream_finished"]
    assert [(r["request_id"], r["stream_id"]) for r in finished] == seen
    assert seen[0][0] == "client-chosen-1"
    for record in finished:
        assert record["wallet"] == WALLET and record["client_ip"] == "127.0.0.1"
        assert record["end_reason"] == "complete" and record["trades"] > 0
        assert record["events"] > 0 and record["bytes"] > 0 and record["duration_s"] >= 0
        assert record["api_key"] == key[:10] + "..."
    access = [r for r in records if r["message"] == "http_request"]
    assert len(access) == 4 and all(r["request_id"] for r in access)
    assert key not in json.dumps(records)


async def test_text_format_is_for_humans(server_factory):
    server = await server_factory(LOG_FORMAT="text", LOG_LEVEL="INFO")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{server.url}/health") as resp:
            assert resp.status == 200
    server.proc.send_signal(signal.SIGTERM)
    out, _ = await asyncio.wait_for(server.proc.communicate(), 15)
    lines = out.decode().splitlines()
    assert any("http_request" in line for line in lines)
    assert not any(line.startswith("{") for line in lines)


@pytest.mark.parametrize(
    ("trusted", "expected"), [({"TRUSTED_PROXIES": "127.0.0.1"}, "203.0.113.7"), ({}, "127.0.0.1")]
)
async def test_access_and_stream_lines_name_the_same_client(server_factory, trusted, expected):
    """SPEC §7: client_ip is the client resolved through TRUSTED_PROXIES in both lines."""
    server = await server_factory(LOG_LEVEL="INFO", **trusted)
    headers = {"X-Forwarded-For": "203.0.113.7", "X-Request-ID": "via-proxy"}
    async with aiohttp.ClientSession() as http:
        url = f"{server.url}/v4/wallet/{WALLET}/stream"
        async with http.get(url, headers=headers) as resp:
            assert (await read_events(resp))[-1].name == "complete"
    records = [r for r in await finish(server) if r.get("request_id") == "via-proxy"]
    lines = {
        r["message"]: r for r in records if r["message"] in {"http_request", "stream_finished"}
    }
    assert lines.keys() == {"http_request", "stream_finished"}
    assert [r["client_ip"] for r in lines.values()] == [expected, expected]


async def test_access_lines_name_the_route_and_none_for_unknown_paths(server_factory):
    """`route` is the matched route's template; unknown paths and methods have none."""
    server = await server_factory(LOG_LEVEL="INFO", ALLOWED_ORIGINS="https://app.example.com")
    asked = {
        ("GET", f"/v4/wallet/{WALLET}/stream?limit=x"): (400, "/v4/wallet/{address}/stream"),
        ("GET", "/health"): (200, "/health"),
        ("OPTIONS", "/health"): (200, "/health"),  # a preflight, answered by aiohttp-cors
        ("GET", "/no/such/route"): (404, None),
        ("POST", "/health"): (405, None),
    }
    preflight = {"Origin": "https://app.example.com", "Access-Control-Request-Method": "GET"}
    async with aiohttp.ClientSession() as http:
        for method, path in asked:
            headers = {"X-Request-ID": f"{method}-{len(path)}", **preflight}
            async with http.request(method, f"{server.url}{path}", headers=headers) as resp:
                assert resp.status == asked[method, path][0]
    access = {r["request_id"]: r for r in await finish(server) if r["message"] == "http_request"}
    for (method, path), (status, route) in asked.items():
        line = access[f"{method}-{len(path)}"]
        assert (line["status"], line["route"]) == (status, route), (method, path)


def test_the_direct_access_line_is_the_formatters_line():
    """AccessLogger writes JSON lines without a LogRecord: same keys, order and values."""

    def both() -> tuple[dict, dict]:
        bind_ids(request_id="r-1", client_ip="::1")
        bind_ids(api_key="wd_live_ab...", stream_id="s-1")
        fields = {"method": "GET", "path": '/héllo\n"', "status": 200, "bytes": None}
        logger = logging.getLogger("walletd.access")
        record = logger.makeRecord(logger.name, logging.INFO, "", 0, "http_request", (), None)
        record.__dict__.update(fields)
        ContextFilter().filter(record)
        return (
            json.loads(InfoLine(logger, "http_request").json(dict(fields))),
            json.loads(json_formatter().format(record)),
        )

    direct, formatted = contextvars.copy_context().run(both)
    assert direct.pop("timestamp")[:4] == formatted.pop("timestamp")[:4]
    assert list(direct.items()) == list(formatted.items())
    assert direct["api_key"] == "wd_live_ab..." and "wallet" not in direct
    assert list(direct)[:5] == ["level", "logger", "message", "request_id", "client_ip"]


def test_a_line_outside_a_request_still_has_a_request_id():
    """SPEC §7 names request_id on every line: null where there is none."""
    line = contextvars.copy_context().run(
        InfoLine(logging.getLogger("walletd.x"), "started").json, {"n": 1}
    )
    assert json.loads(line) == {
        "level": "INFO",
        "logger": "walletd.x",
        "message": "started",
        "request_id": None,
        "n": 1,
        "timestamp": json.loads(line)["timestamp"],
    }


@pytest.fixture
def pipe():
    """A pipe's (read end, write end), the read end non-blocking, room for 1 MB."""
    read_fd, write_fd = os.pipe()
    os.set_blocking(read_fd, False)
    fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    yield read_fd, write_fd
    for fd in (read_fd, write_fd):
        with contextlib.suppress(OSError):
            os.close(fd)


def written(fd: int) -> bytes:
    """What is in the pipe now, without waiting."""
    out = b""
    with contextlib.suppress(BlockingIOError):
        while chunk := os.read(fd, 1 << 16):
            out += chunk
    return out


def record(level: int, message: str) -> logging.LogRecord:
    return logging.LogRecord("walletd.test", level, "", 0, message, (), None)


async def test_lines_wait_for_the_timer_and_a_warning_takes_them_out_at_once(pipe):
    read_fd, write_fd = pipe
    handler = BatchingHandler(write_fd)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    handler.handle(record(logging.INFO, "first"))
    handler.write_line(b"direct\n")
    assert written(read_fd) == b""  # queued until the timer, FLUSH_S from now
    handler.handle(record(logging.WARNING, "héllo"))
    assert written(read_fd) == "INFO first\ndirect\nWARNING héllo\n".encode()

    handler.handle(record(logging.INFO, "later"))
    readable = asyncio.Event()
    asyncio.get_running_loop().add_reader(read_fd, readable.set)
    try:
        await asyncio.wait_for(readable.wait(), 5)  # the timer's flush
    finally:
        asyncio.get_running_loop().remove_reader(read_fd)
    assert written(read_fd) == b"INFO later\n"
    handler.close()


def test_a_line_after_its_timers_loop_closed_takes_the_waiting_ones_out(pipe):
    """A server run that ends closes its loop with the timer still waiting: the next
    line (here from no loop at all) must not wait for 64 KB or the process's exit."""
    read_fd, write_fd = pipe
    handler = BatchingHandler(write_fd)

    async def one_run() -> None:
        handler.write_line(b"in the run\n")

    asyncio.run(one_run())
    assert written(read_fd) == b""  # its timer was dropped with the loop
    handler.write_line(b"after it\n")
    assert written(read_fd) == b"in the run\nafter it\n"
    handler.close()


async def test_a_full_buffer_goes_out_without_waiting_for_the_timer(pipe):
    read_fd, write_fd = pipe
    handler = BatchingHandler(write_fd)
    line = b"x" * 1000 + b"\n"
    for _ in range(BatchingHandler.LIMIT // len(line) + 1):
        handler.write_line(line)
    assert len(written(read_fd)) >= BatchingHandler.LIMIT
    handler.close()


def test_lines_from_many_threads_arrive_whole_and_once(pipe):
    """Queueing takes no lock: no line may be lost, doubled or cut by a flush beside it."""
    read_fd, write_fd = pipe
    os.set_blocking(read_fd, True)
    handler = BatchingHandler(write_fd)
    chunks: list[bytes] = []
    reader = threading.Thread(
        target=lambda: chunks.extend(iter(lambda: os.read(read_fd, 1 << 16), b""))
    )
    reader.start()

    def log(thread: int) -> None:
        for n in range(2000):
            handler.write_line(b"%d-%d\n" % (thread, n))
            if n % 97 == 0:
                handler.flush()

    threads = [threading.Thread(target=log, args=(t,)) for t in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.close()
    os.close(write_fd)
    reader.join()
    lines = b"".join(chunks).splitlines()
    assert sorted(lines) == sorted(b"%d-%d" % (t, n) for t in range(4) for n in range(2000))
    for t in range(4):  # each thread's lines in its order
        mine = [line for line in lines if line.startswith(b"%d-" % t)]
        assert mine == [b"%d-%d" % (t, n) for n in range(2000)]


def test_a_closed_stdout_drops_lines_without_raising(pipe):
    read_fd, write_fd = pipe
    os.close(read_fd)  # writes now fail with EPIPE
    handler = BatchingHandler(write_fd)
    handler.handle(record(logging.ERROR, "nobody reads this"))
    handler.close()


def test_a_request_binds_its_ids_for_itself_alone():
    """Each request runs in a context of its own: its ids show in its lines, not another's."""

    def request(request_id: str) -> dict:
        bind_ids(request_id=request_id, client_ip="::1")
        bind_ids(stream_id=f"s-{request_id}")
        return json.loads(InfoLine(logging.getLogger("walletd.x"), "done").json({}))

    first = contextvars.copy_context().run(request, "r-1")
    second = contextvars.copy_context().run(request, "r-2")
    assert (first["request_id"], first["stream_id"]) == ("r-1", "s-r-1")
    assert (second["request_id"], second["stream_id"]) == ("r-2", "s-r-2")
    outside = json.loads(InfoLine(logging.getLogger("walletd.x"), "done").json({}))
    assert outside["request_id"] is None and "stream_id" not in outside


async def test_a_task_that_serves_many_requests_names_none_of_them():
    """A wallet's poller or a batch sender is started by some request: `detached()`
    keeps that request's ids (and its later binds) off the task's lines."""
    line = InfoLine(logging.getLogger("walletd.x"), "polled")

    async def write() -> dict:
        return json.loads(line.json({}))

    async def request() -> tuple[dict, dict]:
        bind_ids(request_id="r-1", client_ip="::1")
        shared = asyncio.create_task(write(), context=detached())
        own = asyncio.create_task(write())
        bind_ids(stream_id="s-1")  # a later bind: the request's own task sees it
        return await shared, await own

    shared, own = await asyncio.create_task(request())
    assert shared["request_id"] is None and "client_ip" not in shared
    assert (own["request_id"], own["stream_id"]) == ("r-1", "s-1")
