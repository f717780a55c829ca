"""A real Redis for tests: a private redis-server on a free port, else $REDIS_URL.

The private server keeps nothing on disk and can be stopped and started again on the
same port (tests of the fallback to memory and the return to Redis). Without
redis-server and without REDIS_URL the Redis tests skip, except in CI (CI=true), where
they fail: a missing Redis must never pass silently.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time

from tests.ci import missing


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


class RedisServer:
    """A redis-server child process on a fixed port."""

    def __init__(self, binary: str, port: int) -> None:
        self.binary = binary
        self.port = port
        self.url = f"redis://127.0.0.1:{port}/0"
        self._dir = tempfile.mkdtemp(prefix="walletd-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 10.0) -> None:
        if self._proc is not None:
            return
        options = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", self._dir]
        self._proc = subprocess.Popen(
            [self.binary, "--port", str(self.port), *options],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout_s
        while not _answers(self.port):
            if self._proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop at once (SIGKILL: a crash, as far as clients can tell)."""
        if self._proc is None:
            return
        self._proc.kill()
        self._proc.wait(timeout=10)
        self._proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def redis_binary() -> str | None:
    return shutil.which("redis-server")


def fallback_url() -> str | None:
    return os.environ.get("REDIS_URL") or None


def require_private_server() -> RedisServer:
    """A new private server, started (tests that stop and restart it own it)."""
    binary = redis_binary()
    if binary is None:
        missing("redis-server is not installed (needed to stop and restart a Redis)")
    server = RedisServer(binary, free_port())
    server.start()
    return server


def session_url() -> tuple[str, RedisServer | None]:
    """The URL of the Redis the session shares, and its server when we started it."""
    binary = redis_binary()
    if binary is not None:
        server = RedisServer(binary, free_port())
        server.start()
        return server.url, server
    url = fallback_url()
    if url is None:
        missing("no Redis: redis-server is not installed and REDIS_URL is not set")
    return url, None
