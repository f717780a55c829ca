"""A stream's one timer (walletd/stream/alarm.py): heartbeats while waiting, the end, and
cancellations that are not its own."""

from __future__ import annotations

import asyncio
import time

import pytest

from walletd.stream.alarm import Alarm


class Idle:
    """A stream that last wrote long ago: a heartbeat is due at once."""

    def __init__(self) -> None:
        self.last_write = time.monotonic() - 60
        self.beats = 0

    async def heartbeat(self) -> None:
        self.beats += 1
        self.last_write = time.monotonic()


async def test_heartbeats_while_waiting_then_the_result():
    stream, done = Idle(), asyncio.Event()

    async def wait() -> bool:
        alarm = Alarm(60, lambda: None)
        try:
            return await alarm.beating(0.02, stream, done.wait)
        finally:
            alarm.cancel()

    task = asyncio.create_task(wait())
    await asyncio.sleep(0.1)
    done.set()
    assert await task is True
    assert stream.beats >= 3


async def test_the_end_rings_while_waiting_or_not():
    ended = asyncio.Event()

    async def wait() -> None:
        Alarm(0.05, ended.set)
        await ended.wait()

    await asyncio.wait_for(wait(), 2)


async def test_a_cancel_arriving_with_a_heartbeat_is_not_swallowed():
    stream, never = Idle(), asyncio.Event()
    alarms: list[Alarm] = []

    async def wait() -> None:
        alarms.append(Alarm(60, lambda: None))
        await alarms[0].beating(60.0, stream, never.wait)

    task = asyncio.create_task(wait())
    await asyncio.sleep(0)
    alarms[0]._beat()  # the heartbeat is due, and before the task runs again
    task.cancel()  # ...a client leaves (or a stop)
    with pytest.raises(asyncio.CancelledError):
        await task
    assert stream.beats == 0
    alarms[0].cancel()
