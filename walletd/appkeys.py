"""Every typed application and request key; nothing else.

The value types are imported for the type checker only: any module may read a key
without importing, through this one, every room of the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import redis.asyncio as redis

    from walletd.auth.keys import KeyRecord, KeyStore
    from walletd.config import Settings
    from walletd.features import FeatureFlags
    from walletd.limits import Limits, Verdict
    from walletd.live.feed import LiveFeeds
    from walletd.observability.alerts import AlertMonitor
    from walletd.observability.metrics import Metrics
    from walletd.ops.lifecycle import Lifecycle
    from walletd.stream.overload import Overload
    from walletd.stream.registry import StreamRegistry
    from walletd.upstream.breaker import CircuitBreaker
    from walletd.upstream.history import HistoryCache
    from walletd.upstream.source import TradeSource

SETTINGS: web.AppKey[Settings] = web.AppKey("settings")
SOURCE: web.AppKey[TradeSource] = web.AppKey("source")
BREAKER: web.AppKey[CircuitBreaker] = web.AppKey("breaker")
HISTORY: web.AppKey[HistoryCache] = web.AppKey("history")
OVERLOAD: web.AppKey[Overload] = web.AppKey("overload")
LIVE: web.AppKey[LiveFeeds] = web.AppKey("live")  # follow=true: pollers and followers
STREAMS: web.AppKey[StreamRegistry] = web.AppKey("streams")
LIFECYCLE: web.AppKey[Lifecycle] = web.AppKey("lifecycle")
REDIS: web.AppKey[redis.Redis] = web.AppKey("redis")  # only when REDIS_URL is set
KEYSTORE: web.AppKey[KeyStore] = web.AppKey("keystore")  # only when API_KEY_REQUIRED
LIMITS: web.AppKey[Limits] = web.AppKey("limits")
FLAGS: web.AppKey[FeatureFlags] = web.AppKey("flags")
ALERTS: web.AppKey[AlertMonitor] = web.AppKey("alerts")
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id")
CLIENT_IP: web.RequestKey[str] = web.RequestKey("client_ip")
# The matched route's canonical path, None for unknown paths and methods (access lines).
ROUTE: web.RequestKey[str | None] = web.RequestKey("route")
# The caller's key, when keys are required.
API_KEY: web.RequestKey[KeyRecord] = web.RequestKey("api_key")
# Whom limits count: "key:<id>" or "ip:<address>".
SUBJECT: web.RequestKey[str] = web.RequestKey("subject")
VERDICT: web.RequestKey[Verdict] = web.RequestKey("verdict")  # this request's rate-limit outcome
