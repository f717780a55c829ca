"""Shared fixtures: settings, a real walletd app behind a real HTTP server, sample data."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
import redis_server
from aiohttp.test_utils import TestClient
from walletd_process import Server, start

from walletd.app import create_app
from walletd.config import Settings
from walletd.limits import Limits
from walletd.limits.resilient import PROBE_INTERVAL_S
from walletd.observability.logs import AccessLogger
from walletd.ops.redis import connect
from walletd.upstream.breaker import CircuitBreaker
from walletd.upstream.source import TradeSource

# Real transactions copied from public repositories (data/README.md).
DATA = Path(__file__).resolve().parent / "data"
# A demo wallet with a history of 111 transactions (see walletd.upstream.demo).
WALLET = "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2"

ServeFn = Callable[..., Awaitable[TestClient[Any, Any]]]


def make_settings(**env: Any) -> Settings:
    """Settings from SPEC defaults plus `env` overrides (values stringified like env vars)."""
    return Settings.from_env({k: str(v) for k, v in env.items()})


# Tests of other things open more streams and requests than SPEC §3's defaults allow one
# client; tests of the limits set their own.
UNLIMITED = {"RATE_LIMIT_REQUESTS": 1_000_000, "RATE_LIMIT_STREAMING_CONNECTIONS": 100_000}
# Demo histories as generated: tests that pin their counts need no live trades; the
# follow tests (test_follow*.py) turn them on with a clock of their own.
STATIC_DEMO = {"DEMO_LIVE_INTERVAL": 0}


@pytest.fixture
def keyed(tmp_path: Path) -> dict[str, str]:
    """Settings for a walletd that requires keys, with a key file of this test's own."""
    return {
        "API_KEY_REQUIRED": "true",
        "SECRET_KEY": "s" * 32,
        "API_KEYS_FILE": str(tmp_path / "keys.json"),
    }


@pytest.fixture
def serve(aiohttp_server: Any, aiohttp_client: Any) -> ServeFn:
    """Start walletd on a real socket: `client = await serve(SSE_BATCH_SIZE=7, source=...)`."""

    async def start(
        source: TradeSource | None = None,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
        **env: Any,
    ) -> TestClient[Any, Any]:
        settings = make_settings(**{**UNLIMITED, **STATIC_DEMO, **env})
        app = create_app(
            settings, source=source, breaker=breaker, clock=clock, wall_clock=wall_clock
        )
        server = await aiohttp_server(app, access_log_class=AccessLogger)
        client: TestClient[Any, Any] = await aiohttp_client(server)
        return client

    return start


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A real Redis shared by the session: our own redis-server, else $REDIS_URL."""
    url, server = redis_server.session_url()
    try:
        yield url
    finally:
        if server is not None:
            server.close()


@pytest.fixture
def redis_prefix() -> str:
    """A key prefix of this test's own, so tests sharing a Redis never see each other."""
    return f"walletd-test:{uuid.uuid4().hex[:12]}:"


@pytest.fixture
def private_redis() -> Iterator[redis_server.RedisServer]:
    """A redis-server this test may stop (a crash) and start again on the same port."""
    server = redis_server.require_private_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[redis.Redis]:
    """A plain client on the shared Redis, to look at (or go behind the back of) what the
    code under test keeps there."""
    client = connect(redis_url)
    yield client
    await client.aclose()


StartLimits = Callable[..., Awaitable[Limits]]


@pytest.fixture
async def start_limits(redis_prefix: str) -> AsyncIterator[StartLimits]:
    """Start `Limits` on the Redis at a URL, under this test's prefix; all closed after.

    `await start_limits(url, rate_limit_requests=5)`: keywords are Settings fields, but
    for `probe_interval_s`, the Limits' own.
    """
    made: list[Limits] = []

    async def make(
        url: str, *, probe_interval_s: float = PROBE_INTERVAL_S, **fields: Any
    ) -> Limits:
        settings = Settings(redis_url=url, redis_prefix=redis_prefix, **fields)
        limits = Limits(settings, probe_interval_s=probe_interval_s)
        await limits.start()
        made.append(limits)
        return limits

    yield make
    for limits in made:
        await limits.close()


def log_messages(
    caplog: pytest.LogCaptureFixture, logger: str
) -> Callable[[str], list[logging.LogRecord]]:
    """Capture `logger` from INFO up: `named = log_messages(caplog, "walletd.limits")`,
    then `named("redis_unreachable")` lists its records of that message."""
    caplog.set_level(logging.INFO, logger=logger)

    def named(message: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == logger and r.msg == message]

    return named


HELIUS_SAMPLES = (
    "walletdoctor_3JoVBiQE_debug.json",
    "walletdoctor_transaction_format_analysis.json",
    "walletdoctor_pump_transaction_data.json",
    "helius_docs_webhook_enhanced_nft_sale.json",
    "helius_docs_parse_transactions_transfer.json",
)


@pytest.fixture(scope="session")
def helius_dir() -> Path:
    """The real Helius samples, kept in the repository (tests/data/README.md)."""
    folder = DATA / "helius"
    missing = [name for name in HELIUS_SAMPLES if not (folder / name).is_file()]
    assert not missing, f"{folder} lacks {', '.join(missing)}"
    return folder


@pytest.fixture
async def server_factory() -> AsyncIterator[Any]:
    """Start `walletd serve` processes: `server = await server_factory(**env)`; all are
    killed after the test."""
    started: list[Server] = []

    async def factory(**env: str) -> Server:
        started.append(await start(**env))
        return started[-1]

    yield factory
    for server in started:
        if server.proc.returncode is None:
            server.proc.kill()
            await server.proc.wait()
