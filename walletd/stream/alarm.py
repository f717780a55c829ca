"""A stream's one timer: its end (SSE_MAX_STREAM_DURATION) and, while it waits, its next
heartbeat. It replaces an asyncio.timeout per wait (a Timeout and a timer handle of its
own) plus a duration timer: held idle streams are counted by the ten thousand, and each
is that much smaller (bench/stream_load.py, idle)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol, TypeVar

T = TypeVar("T")


class Beating(Protocol):
    """What the alarm needs of its stream to keep it alive while it waits."""

    last_write: float  # time.monotonic() of the last write that completed

    async def heartbeat(self) -> None: ...


class Alarm:
    """Armed for the stream's end, or for the next heartbeat while `beating()` waits; made
    by the stream's task, which a heartbeat due interrupts (as asyncio.timeout would)."""

    __slots__ = ("_beat_due", "_ends_at", "_handle", "_on_end", "_task")

    def __init__(self, duration_s: float, on_end: Callable[[], Any]) -> None:
        loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._ends_at = loop.time() + duration_s
        self._on_end = on_end
        self._beat_due = False
        self._handle = loop.call_at(self._ends_at, on_end)

    def cancel(self) -> None:
        self._handle.cancel()

    async def beating(
        self, keepalive_s: float, stream: Beating, waiting: Callable[..., Awaitable[T]], *args: Any
    ) -> T:
        """What `waiting(*args)` returns, with a heartbeat whenever `keepalive_s` passes
        without a write: the heartbeat cancels the wait, so `waiting` makes a new
        awaitable for each try. (Its arguments apart, not a partial: less to hold.)"""
        task = self._task
        assert task is not None
        while True:
            idle_for = stream.last_write + keepalive_s - time.monotonic()
            self._arm(idle_for)
            try:
                return await waiting(*args)
            except asyncio.CancelledError:
                # Not the heartbeat's, or cancelled for another reason too (a stop, a
                # client that left): not ours to swallow.
                if not self._beat_due or task.uncancel():
                    raise
            finally:
                self._beat_due = False
                self._arm(None)
            await stream.heartbeat()

    def _arm(self, delay: float | None) -> None:
        """Ring in `delay` seconds for a heartbeat (None: only at the end), or at the
        end if that comes first."""
        self._handle.cancel()
        loop = asyncio.get_running_loop()
        if delay is None or loop.time() + delay >= self._ends_at:
            self._handle = loop.call_at(self._ends_at, self._on_end)
        else:
            self._handle = loop.call_at(loop.time() + max(delay, 0), self._beat)

    def _beat(self) -> None:
        self._beat_due = True
        self._task.cancel()  # type: ignore[union-attr]
