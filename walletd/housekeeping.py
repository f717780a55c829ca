"""The background task: periodic upkeep that must not depend on traffic arriving."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web

from walletd.appkeys import HISTORY

log = logging.getLogger(__name__)

INTERVAL_S = 5.0


async def run_housekeeping(app: web.Application, interval_s: float = INTERVAL_S) -> None:
    """Every `interval_s`: expire cached histories. Survives its own failures."""
    while True:
        await asyncio.sleep(interval_s)
        try:
            app[HISTORY].sweep()
        except Exception:
            log.exception("housekeeping_failed")


async def housekeeping(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the task lives exactly as long as the app."""
    task = asyncio.create_task(run_housekeeping(app), name="housekeeping")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
