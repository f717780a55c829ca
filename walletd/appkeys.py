"""Every typed application and request key; nothing else.

The value types are imported for the type checker only: any module may read a key
without importing, through this one, every room of the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    import redis.asyncio as redis

    from walletd.auth.keys import KeyStore
    from walletd.config import Settings
    from walletd.exchange import Exchange, RouteRules
    from walletd.features import FeatureFlags
    from walletd.limits import Limits
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
# The rules of each route added by api/boundary.add_get, by its resource.
ROUTE_RULES: web.AppKey[dict[web.AbstractResource, RouteRules]] = web.AppKey("route_rules")
# What the request chain learns of one request (walletd/exchange.py).
EXCHANGE: web.RequestKey[Exchange] = web.RequestKey("exchange")
