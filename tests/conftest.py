"""Shared fixtures: settings, a real walletd app behind a real HTTP server, sample data."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from walletd.app import create_app
from walletd.config import Settings
from walletd.trades.source import TradeSource

# A demo wallet with a history of 111 transactions (see walletd.trades.demo).
WALLET = "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2"

ServeFn = Callable[..., Awaitable[TestClient[Any, Any]]]


def make_settings(**env: Any) -> Settings:
    """Settings from SPEC defaults plus `env` overrides (values stringified like env vars)."""
    return Settings.from_env({k: str(v) for k, v in env.items()})


@pytest.fixture
def serve(aiohttp_client: Any) -> ServeFn:
    """Start walletd on a real socket: `client = await serve(SSE_BATCH_SIZE=7, source=...)`."""

    async def start(source: TradeSource | None = None, **env: Any) -> TestClient[Any, Any]:
        app = create_app(make_settings(**env), source=source)
        client: TestClient[Any, Any] = await aiohttp_client(app)
        return client

    return start


@pytest.fixture(scope="session")
def helius_samples() -> Path:
    """../shared/data/helius beside the checkout (or under $WALLETD_SHARED_DIR).

    Absent in a user's own checkout: those tests skip. In CI it must exist: they fail.
    """
    shared = os.environ.get("WALLETD_SHARED_DIR")
    root = Path(shared) if shared else Path(__file__).resolve().parents[1].parent / "shared"
    folder = root / "data" / "helius"
    if not folder.is_dir():
        message = f"real Helius samples not found at {folder} (set WALLETD_SHARED_DIR)"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    return folder
