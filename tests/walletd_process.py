"""`walletd serve` as a real child process, for tests of the process as a whole."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

import aiohttp

from tests.redis_server import free_port


class Server:
    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port
        self.logs: list[dict[str, Any]] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def log_line(self, message: str) -> dict[str, Any]:
        """Read stdout until a JSON log line with this message (the process's own signal)."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(20):
            while line := await self.proc.stdout.readline():
                if not line.startswith(b"{"):  # LOG_FORMAT=text
                    if message.encode() in line:
                        return {"message": message, "text": line.decode()}
                    continue
                record = json.loads(line)
                self.logs.append(record)
                if record["message"] == message:
                    return record
        raise AssertionError(f"process ended before logging {message}")

    async def discard_logs(self) -> None:
        """Read stdout to its end, dropping it: a test with many streams runs this as a
        task so that a full pipe never blocks the child's logging."""
        assert self.proc.stdout is not None
        while await self.proc.stdout.read(65536):
            pass


def walletd(*args: str, env: dict[str, str], **kwargs: Any) -> Any:
    """`python -m walletd ARGS` as a child process (a coroutine giving the Process)."""
    return asyncio.create_subprocess_exec(
        sys.executable, "-m", "walletd", *args, env={**os.environ, **env}, **kwargs
    )


def serve_args(port: int) -> tuple[str, ...]:
    return ("serve", "--host", "127.0.0.1", "--port", str(port))


async def start(**env: str) -> Server:
    port = free_port()
    proc = await walletd(
        *serve_args(port),
        env={"LOG_FORMAT": "json", "DEMO_LIVE_INTERVAL": "0", **env},
        stdout=asyncio.subprocess.PIPE,
    )
    server = Server(proc, port)
    try:
        await server.log_line("server_started")
    except BaseException:
        proc.kill()  # not started: nobody else would stop it
        await proc.wait()
        raise
    return server


async def until_stalled(server: Server, before: int) -> None:
    """Until walletd has written a first stream and then nothing more for 3 scrapes in a
    row: the reader's window is full and walletd holds unsent bytes (bounded)."""
    seen: list[float] = []
    async with aiohttp.ClientSession() as http, asyncio.timeout(20):
        while len(seen) < 3 or len(set(seen[-3:])) > 1 or seen[-1] <= before:
            async with http.get(f"{server.url}/metrics") as resp:
                text = await resp.text()
            line = next(x for x in text.splitlines() if x.startswith("walletdoctor_bytes_sent "))
            seen.append(float(line.split()[1]))
            await asyncio.sleep(0.05)
