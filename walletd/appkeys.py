"""Every typed application and request key; nothing else."""

from __future__ import annotations

import redis.asyncio as redis
from aiohttp import web

from walletd.breaker import CircuitBreaker
from walletd.config import Settings
from walletd.lifecycle import Lifecycle
from walletd.registry import StreamRegistry
from walletd.trades.history import HistoryCache
from walletd.trades.source import TradeSource

SETTINGS = web.AppKey("settings", Settings)
SOURCE = web.AppKey("source", TradeSource)
BREAKER = web.AppKey("breaker", CircuitBreaker)
HISTORY = web.AppKey("history", HistoryCache)
STREAMS = web.AppKey("streams", StreamRegistry)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
REDIS = web.AppKey("redis", redis.Redis)  # only when REDIS_URL is set
REQUEST_ID = web.RequestKey("request_id", str)
