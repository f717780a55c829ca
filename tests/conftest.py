"""Shared fixtures: settings, a real walletd app behind a real HTTP server, sample data."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis
from aiohttp.test_utils import TestClient

from tests import redis_server
from tests.clocks import FakeClock
from tests.keystores import SECRET
from tests.support import DATA, STATIC_DEMO, UNLIMITED, ServeFn, StartLimits, make_settings
from tests.walletd_process import Server, start
from walletd.app import create_app
from walletd.auth.keys import KeyHasher
from walletd.config import Settings
from walletd.limits import Limits
from walletd.limits.resilient import PROBE_INTERVAL_S
from walletd.observability.logs import AccessLogger
from walletd.ops.redis import connect
from walletd.upstream.breaker import CircuitBreaker
from walletd.upstream.source import TradeSource


@pytest.fixture
def clock() -> FakeClock:
    """A wall clock that stands still until the test moves it (key expiry, windows)."""
    return FakeClock(1_700_000_000.0)


@pytest.fixture
def hasher() -> KeyHasher:
    return KeyHasher(SECRET)


# Real transactions copied from public repositories (data/README.md).
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
