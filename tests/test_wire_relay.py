"""The benchmarks' relay (bench/wire_relay.py) stamps a request with the time it reached the
host, however late the fake behind it gets to it: here the fake's whole process is
stopped, as a VM's vCPU is taken away, while a request arrives."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import time
from typing import Any

from aiohttp import web

from bench.fake_process import FakeProcess, FakeSpec
from tests.redis_server import free_port

STOPPED_S = 0.3


class EchoFake:
    """Logs (path, X-Arrival, when its handler ran, body) and echoes the body."""

    clock = staticmethod(time.perf_counter)

    def __init__(self) -> None:
        self.log: list[tuple[str, str | None, float, bytes]] = []

    async def serve(self, host: str, port: int) -> web.AppRunner:
        app = web.Application()
        app.router.add_post("/{name}", self._echo)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner

    async def _echo(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.log.append((request.path, request.headers.get("X-Arrival"), self.clock(), body))
        return web.Response(body=body)


def build_echo(_args: Any) -> EchoFake:
    return EchoFake()


async def test_a_request_is_stamped_when_it_arrives_not_when_it_is_read() -> None:
    port = free_port()
    fake = FakeProcess(FakeSpec(build_echo, None, "127.0.0.1", port, free_port(), None))
    await fake.start()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            # A body of many reads, then a second request on the same connection.
            big = os.urandom(300_000)
            _send(sock, "/first", big)
            assert _answer(sock) == big
            os.kill(fake.pid, signal.SIGSTOP)
            try:
                sent = time.perf_counter()
                _send(sock, "/second", b"while stopped")
                await asyncio.sleep(STOPPED_S)  # the stall itself, not a wait for an event
            finally:
                os.kill(fake.pid, signal.SIGCONT)
            assert _answer(sock) == b"while stopped"
        log = await fake.entries()
    finally:
        await fake.stop()
    assert [(path, body) for path, _, _, body in log] == [
        ("/first", big),
        ("/second", b"while stopped"),
    ]
    _, stamp, handled, _ = log[1]
    assert stamp is not None
    assert handled - sent >= STOPPED_S  # the fake only got to it once it ran again
    assert 0 <= float(stamp) - sent < 0.05  # but its stamp says when it came


def _send(sock: socket.socket, path: str, body: bytes) -> None:
    head = f"POST {path} HTTP/1.1\r\nHost: fake\r\nContent-Length: {len(body)}\r\n\r\n"
    sock.sendall(head.encode() + body)


def _answer(sock: socket.socket) -> bytes:
    """The body of the next response (aiohttp answers with a Content-Length)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += sock.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(
        next(
            line.split(b":", 1)[1]
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
    )
    while len(body) < length:
        body += sock.recv(65536)
    return body
