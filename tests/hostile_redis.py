"""A server that speaks Redis's protocol and answers script calls with a chosen reply.

Redis's replies are untrusted input: a compromised or impostor Redis can send anything.
This one answers PING with PONG, EVALSHA and EVAL with `script_reply` (raw RESP bytes),
and every other command (the client's handshake, SCRIPT LOAD) with +OK.
"""

from __future__ import annotations

import asyncio
import contextlib


class HostileRedis:
    def __init__(self, script_reply: bytes) -> None:
        self.script_reply = script_reply
        self.script_calls = 0
        self.port = 0
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.IncompleteReadError):
            while True:
                command = await read_command(reader)
                name = command[0].upper() if command else b""
                if name == b"PING":
                    writer.write(b"+PONG\r\n")
                elif name in (b"EVALSHA", b"EVAL"):
                    self.script_calls += 1
                    writer.write(self.script_reply)
                else:
                    writer.write(b"+OK\r\n")
                await writer.drain()
        writer.close()


async def read_command(reader: asyncio.StreamReader) -> list[bytes]:
    """One command as a client sends it: an array of bulk strings."""
    head = await reader.readuntil(b"\r\n")
    if not head.startswith(b"*"):
        raise ConnectionError(f"not a RESP command: {head!r}")
    parts = []
    for _ in range(int(head[1:])):
        size = int((await reader.readuntil(b"\r\n"))[1:])
        parts.append((await reader.readexactly(size + 2))[:-2])
    return parts
