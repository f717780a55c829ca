"""What tests share besides fixtures: the demo wallet, settings, type aliases, log capture.

Fixtures live in conftest.py; everything a test imports by name lives here.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from walletd.config import Settings
from walletd.limits import Limits

DATA = Path(__file__).resolve().parent / "data"
# A demo wallet with a history of 111 transactions (see walletd.upstream.demo).
WALLET = "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2"

ServeFn = Callable[..., Awaitable[TestClient[Any, Any]]]


def make_settings(**env: Any) -> Settings:
    """Settings from SPEC defaults plus `env` overrides (values stringified like env vars)."""
    return Settings.from_env({k: str(v) for k, v in env.items()})


# Tests of other things open more streams and requests than SPEC §3's defaults allow one
# client; tests of the limits set their own.
UNLIMITED = {
    "RATE_LIMIT_REQUESTS": 1_000_000,
    "RATE_LIMIT_STREAMING_CONNECTIONS": 100_000,
    "AUTH_FAILURE_LIMIT": 1_000_000,
}


StartLimits = Callable[..., Awaitable[Limits]]


def log_messages(
    caplog: pytest.LogCaptureFixture, logger: str
) -> Callable[[str], list[logging.LogRecord]]:
    """Capture `logger` from INFO up: `named = log_messages(caplog, "walletd.limits")`,
    then `named("redis_unreachable")` lists its records of that message."""
    caplog.set_level(logging.INFO, logger=logger)

    def named(message: str) -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == logger and r.msg == message]

    return named


# Demo histories as generated: tests that pin their counts need no live trades; the
# follow tests (test_follow*.py) turn them on with a clock of their own.
STATIC_DEMO = {"DEMO_LIVE_INTERVAL": 0}
