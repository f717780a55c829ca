"""create_app: the only place that wires settings, sources, middlewares and routes."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from walletd.api.boundary import (
    PARSER_LIMITS,
    boundary,
    response_headers,
)
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
    METRICS,
    OVERLOAD,
    REDIS,
    SETTINGS,
    SOURCE,
    STREAMS,
)
from walletd.auth.keys import open_keystore
from walletd.auth.middleware import admission, limits_lifetime, rate_limit_headers
from walletd.config import Settings
from walletd.errors import ServerShutdown
from walletd.features import FeatureFlags
from walletd.limits import Limits
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
) -> web.Application:
    """The walletd application. `source` overrides the one the settings select, and
    `breaker` the upstream circuit breaker (tests: its clock)."""
    app = web.Application(
        middlewares=[
            boundary,  # request id, log context, every error rendered once, HTTP metrics
            admission,  # oversized requests; who is calling, how often, with what scope
        ],
        handler_args=PARSER_LIMITS,
    )
    app[SETTINGS] = settings
    app[FLAGS] = FeatureFlags(settings)
    app[LIFECYCLE] = Lifecycle()
    app[STREAMS] = streams = StreamRegistry()
    app[LIMITS] = Limits(settings)
    if settings.api_key_required:
        app[KEYSTORE] = open_keystore(settings)
    app.cleanup_ctx.append(limits_lifetime)
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
        source if source is not None else _select_source(settings, app[METRICS], app[BREAKER])
    )
    shared = None
    if settings.redis_url:
        app[REDIS] = redis_client.connect(settings.redis_url)
    if settings.redis_url and settings.secret_key:  # unsigned entries are never shared
        shared = SharedHistories(
            app[REDIS],
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
    app.cleanup_ctx.append(_close_sources(owns_source=source is None))
    app.cleanup_ctx.append(housekeeping)
    app.on_startup.append(_mark_ready)
    app.on_shutdown.append(_drain_streams)
    app.on_response_prepare.append(response_headers)
    app.on_response_prepare.append(rate_limit_headers)
    app.router.add_get(STREAM_ROUTE, stream_handler, allow_head=False, name="stream")
    app.router.add_get("/health", health, name="health")
    app.router.add_get("/ready", ready, name="ready")
    if settings.metrics_port is None:  # else only on its own loopback listener (cli.py)
        app.router.add_get("/metrics", app[METRICS].handler(), name="metrics")
    app.router.add_get("/openapi.json", openapi_handler, name="openapi")
    add_demo_routes(app)  # GET / and its assets, while FEATURE_DEMO_PAGE is on
    enable_cors(app, settings.allowed_origins)  # last: it covers the routes above
    return app


def _select_source(settings: Settings, metrics: Metrics, breaker: CircuitBreaker) -> TradeSource:
    """Helius when HELIUS_KEY is set, else the embedded demo source."""
    if settings.helius_key:
        client = HeliusClient(settings, breaker=breaker, on_attempt=metrics.upstream_attempt)
        return HeliusSource(client)
    return DemoSource(latency_s=settings.demo_latency_ms / 1000)


def _close_sources(*, owns_source: bool):  # type: ignore[no-untyped-def]
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        yield
        await app[HISTORY].close()
        if owns_source:
            await app[SOURCE].close()
        if REDIS in app:
            await app[REDIS].aclose()

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
    """Before aiohttp cancels handlers: tell every open stream how to resume, then wait."""
    app[LIFECYCLE].phase = Phase.DRAINING
    streams = app[STREAMS]
    if len(streams):
        log.info("draining_streams", extra={"open_streams": len(streams)})
        streams.stop_all(ServerShutdown())
        if not await streams.wait_empty(app[SETTINGS].shutdown_grace_s):
            log.warning("drain_timeout", extra={"open_streams": len(streams)})
