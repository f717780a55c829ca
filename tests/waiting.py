"""Waiting for a condition the system under test reaches by itself, bounded in time.

Where an event can be awaited, await it; this is for states with no event to offer (a
key file picked up, a lease lapsed, Redis time moved on, a probe that ran).
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar, overload

T = TypeVar("T")


@overload
async def eventually(
    check: Callable[[], Awaitable[T]],
    *,
    within_s: float = ...,
    every_s: float = ...,
    what: str = ...,
) -> T: ...


@overload
async def eventually(
    check: Callable[[], T],
    *,
    within_s: float = ...,
    every_s: float = ...,
    what: str = ...,
) -> T: ...


async def eventually(
    check: Callable[[], T | Awaitable[T]],
    *,
    within_s: float = 10.0,
    every_s: float = 0.02,
    what: str = "condition",
) -> T:
    """Call `check` (sync or async) until it returns a truthy value, and return that value;
    fail the test when `within_s` passes first."""
    deadline = time.monotonic() + within_s
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return result
        assert time.monotonic() < deadline, f"{what} never reached within {within_s} s"
        await asyncio.sleep(every_s)
