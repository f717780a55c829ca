"""Shared fixtures: settings, a real walletd app behind a real HTTP server, sample data."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis_server
from aiohttp.test_utils import TestClient
from walletd_process import Server, start

from walletd.app import create_app
from walletd.breaker import CircuitBreaker
from walletd.config import Settings
from walletd.logs import AccessLogger
from walletd.trades.source import TradeSource

# A demo wallet with a history of 111 transactions (see walletd.trades.demo).
WALLET = "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2"

ServeFn = Callable[..., Awaitable[TestClient[Any, Any]]]


def make_settings(**env: Any) -> Settings:
    """Settings from SPEC defaults plus `env` overrides (values stringified like env vars)."""
    return Settings.from_env({k: str(v) for k, v in env.items()})


# Tests of other things open more streams and requests than SPEC §3's defaults allow one
# client; tests of the limits set their own.
UNLIMITED = {"RATE_LIMIT_REQUESTS": 1_000_000, "RATE_LIMIT_STREAMING_CONNECTIONS": 100_000}


@pytest.fixture
def serve(aiohttp_server: Any, aiohttp_client: Any) -> ServeFn:
    """Start walletd on a real socket: `client = await serve(SSE_BATCH_SIZE=7, source=...)`."""

    async def start(
        source: TradeSource | None = None, breaker: CircuitBreaker | None = None, **env: Any
    ) -> TestClient[Any, Any]:
        app = create_app(make_settings(**{**UNLIMITED, **env}), source=source, breaker=breaker)
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


HELIUS_SAMPLES = (
    "walletdoctor_3JoVBiQE_debug.json",
    "walletdoctor_transaction_format_analysis.json",
    "walletdoctor_pump_transaction_data.json",
    "helius_docs_webhook_enhanced_nft_sale.json",
    "helius_docs_parse_transactions_transfer.json",
)


@pytest.fixture(scope="session")
def helius_dir() -> Path:
    """../shared/data/helius beside the checkout (or under $WALLETD_SHARED_DIR).

    Absent in a user's own checkout: those tests skip. In CI it must exist: they fail.
    """
    override = os.environ.get("WALLETD_SHARED_DIR")
    shared = Path(override) if override else Path(__file__).resolve().parents[1].parent / "shared"
    folder = shared / "data" / "helius"
    missing = [name for name in HELIUS_SAMPLES if not (folder / name).is_file()]
    if missing:
        message = (
            f"Helius sample data not found: {folder} lacks {', '.join(missing)} "
            "(set WALLETD_SHARED_DIR to the shared/ folder that holds data/helius/)"
        )
        if os.environ.get("CI", "").strip().lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
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
