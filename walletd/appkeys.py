"""Every typed application and request key; nothing else."""

from __future__ import annotations

import redis.asyncio as redis
from aiohttp import web

from walletd.auth.keys import KeyRecord, KeyStore
from walletd.config import Settings
from walletd.features import FeatureFlags
from walletd.limits import Limits, Verdict
from walletd.observability.alerts import AlertMonitor
from walletd.observability.metrics import Metrics
from walletd.ops.lifecycle import Lifecycle
from walletd.stream.overload import Overload
from walletd.stream.registry import StreamRegistry
from walletd.upstream.breaker import CircuitBreaker
from walletd.upstream.history import HistoryCache
from walletd.upstream.source import TradeSource

SETTINGS = web.AppKey("settings", Settings)
SOURCE = web.AppKey("source", TradeSource)
BREAKER = web.AppKey("breaker", CircuitBreaker)
HISTORY = web.AppKey("history", HistoryCache)
OVERLOAD = web.AppKey("overload", Overload)
STREAMS = web.AppKey("streams", StreamRegistry)
LIFECYCLE = web.AppKey("lifecycle", Lifecycle)
REDIS = web.AppKey("redis", redis.Redis)  # only when REDIS_URL is set
KEYSTORE = web.AppKey("keystore", KeyStore)  # only when API_KEY_REQUIRED
LIMITS = web.AppKey("limits", Limits)
FLAGS = web.AppKey("flags", FeatureFlags)
ALERTS = web.AppKey("alerts", AlertMonitor)
METRICS = web.AppKey("metrics", Metrics)
REQUEST_ID = web.RequestKey("request_id", str)
CLIENT_IP = web.RequestKey("client_ip", str)
API_KEY = web.RequestKey("api_key", KeyRecord)  # the caller's key, when keys are required
SUBJECT = web.RequestKey("subject", str)  # whom limits count: "key:<id>" or "ip:<address>"
VERDICT = web.RequestKey("verdict", Verdict)  # this request's rate-limit outcome
