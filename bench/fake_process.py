"""A fake upstream (tests/fake_helius.py, tests/fake_rpc.py) in a process of its own.

In the benchmark's process the fake shared an event loop with the load client: a request
that arrived while the client was busy with a chunk was stamped late, so a strict
burst-1 limiter saw two of walletd's requests closer together than they were sent and
refused one. On loopback, tcpdump showed walletd's sends at least 21.4 ms apart (paced
22 ms) while the in-process fake logged gaps down to 8 ms and answered 429s. In a
process of its own, on the client's core at a higher priority, the fake is rarely held
up by the client; what still holds it (the VM's vCPU taken away now and then) is
undone by the relay in front of it, which stamps each request's arrival from the
kernel (wire_relay.py).

The child builds the fake with a top-level function of the benchmark (`build(args)`:
it is pickled by name, so the child imports the benchmark), serves it, and serves its
request log (pickled log entries, since a mark) on a second port for the parent.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import multiprocessing
import os
import pickle
import signal
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import aiohttp
from aiohttp import web

from bench.wire_relay import WireRelay

START_TIMEOUT_S = 120.0  # building 10,000 synthetic transactions takes seconds


@dataclass(frozen=True)
class FakeSpec:
    """What the child needs (pickled to it): `build(args)` makes the fake; `describe(fake,
    args)`, if given, runs once it is built and its (picklable) result goes back."""

    build: Callable[[Any], Any]
    args: Any
    host: str
    port: int
    control_port: int
    core: int | None
    describe: Callable[[Any, Any], Any] | None = None
    # Behind wire_relay.py (arrivals stamped by the kernel); False: the fake stamps them
    # when its event loop gets to them, as before the relay (for comparison).
    relay: bool = True


class FakeProcess:
    """The fake's process; start() returns what `spec.describe` said of the fake."""

    def __init__(self, spec: FakeSpec) -> None:
        self._spec = spec
        self._control = f"http://{spec.host}:{spec.control_port}/log"
        self._proc: Any = None
        self._http: aiohttp.ClientSession | None = None

    async def start(self) -> Any:
        context = multiprocessing.get_context("spawn")  # no copy of this running loop
        mine, theirs = context.Pipe(duplex=False)
        self._proc = context.Process(target=_child, args=(self._spec, theirs), daemon=True)
        self._proc.start()
        theirs.close()
        async with asyncio.timeout(START_TIMEOUT_S):
            ok, info = await asyncio.to_thread(_receive, mine)
        if not ok:
            raise RuntimeError(f"the fake upstream did not start: {info}")
        self._http = aiohttp.ClientSession()
        return info

    @property
    def pid(self) -> int:
        """The fake's process id (a test stops it to play a stalled provider)."""
        assert self._proc is not None
        return int(self._proc.pid)

    async def entries(self, since: int = 0) -> list[Any]:
        """The fake's log entries from index `since` on."""
        assert self._http is not None
        async with self._http.get(self._control, params={"since": str(since)}) as resp:
            resp.raise_for_status()
            entries: list[Any] = pickle.loads(await resp.read())
            return entries

    async def log_size(self) -> int:
        """A mark: entries(mark) is what came after it."""
        assert self._http is not None
        async with self._http.get(self._control, params={"size": "1"}) as resp:
            return int(await resp.text())

    async def stop(self) -> None:
        if self._http is not None:
            await self._http.close()
        if self._proc is not None and self._proc.is_alive():
            self._proc.terminate()
            await asyncio.to_thread(self._proc.join, 10)


def _receive(conn: Connection) -> tuple[bool, Any]:
    try:
        result: tuple[bool, Any] = conn.recv()
    except EOFError:
        return False, "it exited"
    return result


def _child(spec: FakeSpec, ready: Connection) -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if spec.core is not None and spec.core in os.sched_getaffinity(0):
        os.sched_setaffinity(0, {spec.core})
    # Ahead of the client on the core they share: a provider's clock is not held up by
    # our load client (root may raise priority; others keep the default).
    with contextlib.suppress(OSError):
        os.nice(-10)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(spec, ready))


async def _serve(spec: FakeSpec, ready: Connection) -> None:
    try:
        fake = spec.build(spec.args)
        if spec.relay:  # stamps each request's arrival from the kernel (wire_relay.py)
            runner = await fake.serve(spec.host, 0)
            WireRelay(spec.host, spec.port, runner.addresses[0][1], fake.clock)
        else:
            runner = await fake.serve(spec.host, spec.port)
        control = web.Application()
        control.router.add_get("/log", lambda request: _log(fake, request))
        control_runner = web.AppRunner(control)
        await control_runner.setup()
        await web.TCPSite(control_runner, spec.host, spec.control_port).start()
        ready.send((True, spec.describe(fake, spec.args) if spec.describe else None))
    except Exception as exc:  # the parent says why, rather than waiting out its timeout
        ready.send((False, f"{type(exc).__name__}: {exc}"))
        raise
    try:
        await asyncio.Event().wait()
    finally:
        await control_runner.cleanup()
        await runner.cleanup()


async def _log(fake: Any, request: web.Request) -> web.Response:
    if "size" in request.query:
        return web.Response(text=str(len(fake.log)))
    since = int(request.query.get("since", "0"))
    return web.Response(body=pickle.dumps(fake.log[since:]))
