"""`walletd stream` as a child process, its stdout and stderr read as they come."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from typing import Any

COMMAND = ("-m", "walletd", "stream")
# Retries fast enough for tests, and patient enough to outlast a server restart.
PATIENT = ("--max-retries", "200", "--retry-delay", "0.05", "--max-retry-delay", "0.2")
FAST = ("--max-retries", "2", "--retry-delay", "0.01", "--max-retry-delay", "0.05")


class Cli:
    """One `walletd stream` child process; stdout is read line by line as it comes."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.out: list[str] = []
        self.err: list[str] = []

    @classmethod
    async def start(cls, *args: str, env: dict[str, str] | None = None) -> Cli:
        child_env = {k: v for k, v in os.environ.items() if k != "WALLETD_API_KEY"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            *COMMAND,
            *args,
            env={**child_env, **(env or {})},
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def trade_lines(self, count: int) -> None:
        """Wait until `count` lines have been printed on stdout."""
        assert self.proc.stdout is not None
        async with asyncio.timeout(30):
            while len(self.out) < count:
                line = await self.proc.stdout.readline()
                assert line.endswith(b"\n"), f"stdout ended: {self.out[-1:]}"
                self.out.append(line.decode())

    async def stderr_line(self, text: str) -> str:
        """Read stderr until a line containing `text`."""
        assert self.proc.stderr is not None
        async with asyncio.timeout(30):
            while line := (await self.proc.stderr.readline()).decode():
                self.err.append(line)
                if text in line:
                    return line
        raise AssertionError(f"stderr ended without {text!r}: {''.join(self.err)}")

    async def finish(self) -> tuple[int, str, str]:
        """(exit status, all stdout, all stderr) once the process has ended."""
        async with asyncio.timeout(60):
            out, err = await self.proc.communicate()
        assert self.proc.returncode is not None
        return (
            self.proc.returncode,
            "".join(self.out) + out.decode(),
            "".join(self.err) + err.decode(),
        )


async def walletd_stream(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    return await (await Cli.start(*args, env=env)).finish()


def url_of(client: Any) -> str:
    return str(client.make_url("")).rstrip("/")


def jsonl(out: str) -> list[dict[str, Any]]:
    assert out == "" or out.endswith("\n")
    return [json.loads(line) for line in out.splitlines()]
