"""The background task (SPEC §5): periodic upkeep that must not depend on traffic.

Each tick it pings the systemd watchdog when due, expires cached histories, reaps stale
streams, ends the streams of revoked keys, re-checks the error-rate alert, and, every
SYSTEM_METRICS_INTERVAL, samples the process's figures. One failing job is logged and
the others, and the next ticks, go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from aiohttp import web

from walletd.appkeys import ALERTS, HISTORY, KEYSTORE, METRICS, SETTINGS, STREAMS
from walletd.auth.revocation import end_revoked_streams
from walletd.observability.system_metrics import SystemSampler
from walletd.ops import sdnotify

log = logging.getLogger(__name__)

TICK_S = 1.0


def reap_stale_streams(app: web.Application, now: float) -> int:
    """Close streams with no successful write for STALE_STREAM_TIMEOUT: a write the
    client has not drained for that long (it stopped reading), or nothing to send."""
    timeout = app[SETTINGS].stale_stream_timeout_s
    reaped = 0
    for stream in app[STREAMS]:
        if now - stream.last_write > timeout:
            log.warning(
                "stream_reaped",
                extra={"stream_id": stream.stream_id, "idle_s": round(now - stream.last_write, 1)},
            )
            stream.reap()
            reaped += 1
    return reaped


async def run_housekeeping(app: web.Application, tick_s: float = TICK_S) -> None:
    settings = app[SETTINGS]
    sampler = SystemSampler(app[METRICS])
    next_sample = 0.0

    async def sample() -> None:
        nonlocal next_sample
        if time.monotonic() >= next_sample:
            next_sample = time.monotonic() + settings.system_metrics_interval_s
            await asyncio.to_thread(sampler.sample)

    async def sweep() -> None:
        app[HISTORY].sweep()

    async def reap() -> None:
        reap_stale_streams(app, time.monotonic())

    async def revocations() -> None:
        if KEYSTORE in app:
            await end_revoked_streams(app)

    watchdog_s = sdnotify.watchdog_interval_s()
    next_ping = 0.0

    async def watchdog() -> None:
        # From this task, not a timer of its own: a stuck event loop stops the pings
        # and systemd restarts the process (WatchdogSec=).
        nonlocal next_ping
        if watchdog_s is not None and time.monotonic() >= next_ping:
            next_ping = time.monotonic() + watchdog_s
            sdnotify.notify("WATCHDOG=1")

    async def alerts() -> None:
        app[ALERTS].check()  # a window that empties ends an episode with no stream ending

    jobs: list[tuple[str, Callable[[], Awaitable[None]]]] = [
        ("watchdog", watchdog),
        ("sample_system", sample),
        ("sweep_history", sweep),
        ("reap_streams", reap),
        ("end_revoked_streams", revocations),
        ("check_alerts", alerts),
    ]
    while True:
        for name, job in jobs:
            try:
                await job()
            except Exception:
                log.exception("housekeeping_failed", extra={"job": name})
        await asyncio.sleep(tick_s)


async def housekeeping(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the task lives exactly as long as the app. It ticks often enough for
    short timeouts too (tests, or an SRE's choice)."""
    settings = app[SETTINGS]
    tick = min(
        TICK_S,
        settings.stale_stream_timeout_s / 2,
        settings.system_metrics_interval_s,
        sdnotify.watchdog_interval_s() or TICK_S,
    )
    task = asyncio.create_task(run_housekeeping(app, tick), name="housekeeping")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
