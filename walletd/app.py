"""create_app: the only place that wires settings, sources and routes."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable

from aiohttp import web

from walletd.api.boundary import PARSER_LIMITS, add_get, add_unmatched, guard, route_rules
from walletd.api.cors import enable_cors
from walletd.api.demo_page import add_demo_routes
from walletd.api.health import health, ready
from walletd.api.openapi import openapi_handler
from walletd.appkeys import (
    ALERTS,
    BREAKER,
    FLAGS,
    HISTORY,
    KEYSTORE,
    LIFECYCLE,
    LIMITS,
    LIVE,
    METRICS,
    OVERLOAD,
    REDIS,
    SETTINGS,
    SOURCE,
    STREAMS,
)
from walletd.auth.keys import open_keystore
from walletd.auth.middleware import keystore_lifetime, limits_lifetime
from walletd.config import Settings
from walletd.errors import ServerShutdown
from walletd.features import FeatureFlags
from walletd.limits import Limits
from walletd.live.feed import LiveFeeds
from walletd.live.shared import SharedPolling
from walletd.observability.alerts import AlertMonitor, ErrorRate
from walletd.observability.metrics import Metrics
from walletd.ops import redis as redis_client
from walletd.ops.housekeeping import housekeeping
from walletd.ops.lifecycle import Lifecycle, Phase
from walletd.stream.handler import stream_handler
from walletd.stream.overload import Overload
from walletd.stream.registry import StreamRegistry
from walletd.upstream.breaker import CircuitBreaker
from walletd.upstream.demo import DemoSource
from walletd.upstream.helius.client import HeliusClient
from walletd.upstream.helius.source import HeliusSource
from walletd.upstream.history import HistoryCache
from walletd.upstream.rpc.client import RpcClient
from walletd.upstream.rpc.source import RpcSource
from walletd.upstream.shared_history import SharedHistories, history_key
from walletd.upstream.source import TradeSource

log = logging.getLogger(__name__)

# `[^/]*` lets an empty address reach the handler and get INVALID_WALLET, not NOT_FOUND.
STREAM_ROUTE = "/v4/wallet/{address:[^/]*}/stream"


def create_app(
    settings: Settings,
    *,
    source: TradeSource | None = None,
    breaker: CircuitBreaker | None = None,
    clock: Callable[[], float] = time.monotonic,
    wall_clock: Callable[[], float] = time.time,
) -> web.Application:
    """The walletd application. `source` overrides the one the settings select,
    `breaker` the upstream circuit breaker, `clock` the monotonic clock of the request
    windows and stream caps, and `wall_clock` the unix time of the demo source's live
    trades (tests move them instead of sleeping)."""
    # No middleware: every route's handler is wrapped in the boundary (request id and
    # log context; oversized requests, who is calling, how often, with what scope; every
    # error rendered once; HTTP metrics) as it is added, down to the catch-all of 404/405.
    app = web.Application(handler_args=PARSER_LIMITS)
    app[SETTINGS] = settings
    app[FLAGS] = FeatureFlags(settings)
    app[LIFECYCLE] = Lifecycle()
    app[STREAMS] = streams = StreamRegistry()
    # One Redis client for the app (connections are made lazily), given to the limits,
    # the key store and the shared histories; closed last, after everything that uses it.
    redis = redis_client.connect(settings.redis_url) if settings.redis_url else None
    if redis is not None:
        app[REDIS] = redis
        app.cleanup_ctx.append(redis_client.lifetime)
    app[LIMITS] = Limits(settings, redis=redis, clock=clock)
    app.cleanup_ctx.append(limits_lifetime)
    if settings.api_key_required:
        app[KEYSTORE] = open_keystore(settings, redis=redis)
        app.cleanup_ctx.append(keystore_lifetime)
    app[BREAKER] = breaker if breaker is not None else CircuitBreaker()
    error_rate = ErrorRate(settings.error_rate_window_s)
    app[METRICS] = Metrics(
        live_streams=streams,
        breaker=app[BREAKER],
        redis_fallback=lambda: app[LIMITS].degraded,
        error_rate=error_rate,
    )
    app[ALERTS] = AlertMonitor(settings, error_rate)
    app.cleanup_ctx.append(_close_alerts)
    app[SOURCE] = (
        source
        if source is not None
        else _select_source(settings, app[METRICS], app[BREAKER], wall_clock)
    )
    shared = None
    if redis is not None and settings.secret_key:  # unsigned entries are never shared
        shared = SharedHistories(
            redis,
            key=history_key(settings.secret_key),
            prefix=settings.redis_prefix,
            ttl_s=settings.cache_ttl_s,
            max_trades=settings.cache_max_trades,
        )
    app[HISTORY] = HistoryCache(
        app[SOURCE],
        ttl_s=settings.cache_ttl_s,
        max_trades=settings.cache_max_trades,
        memory_bytes=settings.history_memory_mb * 2**20,
        batch_size=settings.sse_batch_size,
        shared=shared,
    )
    app[OVERLOAD] = Overload(app[HISTORY], max_streams=settings.max_streams)
    app[LIVE] = LiveFeeds(
        app[SOURCE],
        poll_interval_s=settings.follow_poll_interval_s,
        on_poll=app[METRICS].live_poll_latency.observe,
    )
    polling: SharedPolling | None = None
    if REDIS in app and settings.secret_key:  # one poller per wallet across instances
        app[LIVE].coordinator = polling = SharedPolling(
            app[REDIS],
            app[LIVE],
            prefix=settings.redis_prefix,
            lease_ttl_s=settings.stream_lease_ttl_s,
            secret_key=settings.secret_key,
        )
    elif REDIS in app:  # unsigned messages would be trusted blindly (SPEC §3)
        log.warning("live_follow_polls_per_process", extra={"reason": "no SECRET_KEY"})
    app[METRICS].watch_live(
        lambda: app[LIVE].followers,
        lambda: app[LIVE].feeds,
        lambda: len(polling.holding) if polling is not None else 0,
    )
    app.cleanup_ctx.append(_close_sources(owns_source=source is None))
    app.cleanup_ctx.append(housekeeping)
    app.on_startup.append(_mark_ready)
    app.on_shutdown.append(_drain_streams)
    add_get(app, STREAM_ROUTE, stream_handler, allow_head=False, name="stream")
    add_get(app, "/health", health, name="health")
    add_get(app, "/ready", ready, name="ready")
    if settings.metrics_port is None:  # else only on its own loopback listener (cli.py)
        add_get(app, "/metrics", app[METRICS].handler(), name="metrics")
    add_get(app, "/openapi.json", openapi_handler, name="openapi")
    add_demo_routes(app)  # GET / and its assets, while FEATURE_DEMO_PAGE is on
    # After the routes above, which it covers; its preflight routes get the boundary too.
    enable_cors(app, settings.allowed_origins, lambda r, h: guard(app, route_rules(app, r), h))
    add_unmatched(app)  # last: every path the routes above do not take
    return app


def _select_source(
    settings: Settings,
    metrics: Metrics,
    breaker: CircuitBreaker,
    wall_clock: Callable[[], float],
) -> TradeSource:
    """The source UPSTREAM names (SPEC §4)."""
    if settings.upstream == "helius":
        client = HeliusClient(settings, breaker=breaker, on_attempt=metrics.upstream_attempt)
        return HeliusSource(client)
    if settings.upstream == "rpc":
        rpc = RpcClient(settings, breaker=breaker, on_attempt=metrics.upstream_attempt)
        return RpcSource(rpc, method=settings.rpc_history_method)
    return DemoSource(
        latency_s=settings.demo_latency_ms / 1000,
        live_interval_s=settings.demo_live_interval_s,
        clock=wall_clock,
    )


def _close_sources(*, owns_source: bool):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[LIVE].close()
        await app[HISTORY].close()
        if owns_source:
            await app[SOURCE].close()

    return ctx


async def reload(app: web.Application) -> None:
    """SIGHUP: re-read the feature flags and the key store, atomically each, without
    touching open streams. The environment itself is read only at start."""
    app[FLAGS].reload()
    if KEYSTORE in app:
        try:
            await app[KEYSTORE].refresh()
        except Exception:
            log.exception("keystore_reload_failed")
    log.info("reloaded")


async def _close_alerts(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: alert deliveries still in flight get a moment to finish."""
    yield
    await app[ALERTS].close()


async def _mark_ready(app: web.Application) -> None:
    app[LIFECYCLE].phase = Phase.READY


async def _drain_streams(app: web.Application) -> None:
    """on_shutdown, for servers stopped without `drain` (tests, `web.run_app`): the
    listener is already closed, so no delay; after `drain` this does nothing."""
    await drain(app, delay_s=0.0)


async def drain(app: web.Application, *, delay_s: float) -> None:
    """SPEC §5, while the listener stays open: `/ready` and new streams answer 503 from
    now on; after `delay_s` (a polling load balancer has seen the 503 by then) every open
    stream ends with SERVER_SHUTDOWN and its resume id. Returns when the last stream has
    gone, or at SHUTDOWN_GRACE from now, when the streams left are cut (their clients
    stopped reading, so no final event would reach them). Runs once per app."""
    lifecycle = app[LIFECYCLE]
    if lifecycle.phase is Phase.DRAINING:
        return
    lifecycle.phase = Phase.DRAINING
    grace_s = app[SETTINGS].shutdown_grace_s
    deadline = asyncio.get_running_loop().time() + grace_s
    await asyncio.sleep(min(delay_s, grace_s))
    streams = app[STREAMS]
    if len(streams):
        log.info("draining_streams", extra={"open_streams": len(streams)})
        streams.stop_all(ServerShutdown())
        if not await streams.wait_empty(deadline - asyncio.get_running_loop().time()):
            log.warning("drain_timeout", extra={"open_streams": len(streams)})
            for stream in streams:
                stream.reap()
