"""Optional Sentry error reporting, with API keys scrubbed from everything it sends."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import Any, TypeVar, cast

from walletd import __version__
from walletd.config import Settings

logger = logging.getLogger("walletd.sentry")

# An event, transaction or breadcrumb: sentry-sdk types each as its own TypedDict.
Payload = TypeVar("Payload", bound=Mapping[str, Any])

FILTERED = "[Filtered]"
# Values of these names (headers, query parameters, extra fields, local variables) are
# secrets whatever they look like; compared lowercased with "-" read as "_".
_SECRET_NAMES = frozenset(
    {
        "authorization",
        "proxy_authorization",
        "x_api_key",
        "api_key",  # walletd's ?api_key= (EventSource can't set headers)
        "apikey",
        "cookie",
        "set_cookie",
        "secret_key",
        "helius_key",
        "alert_webhook_secret",
        "http.query",  # outgoing requests' query strings: Helius's api-key, webhook tokens
    }
)
# A walletd key keeps its first 10 characters, as in logs (keys.mask_key). The tail
# matches any length so a key that Sentry's serializer truncated is still caught.
_WD_KEY = re.compile(r"(wd_[A-Za-z0-9]{7})[A-Za-z0-9]+")
# api_key=... (ours) and api-key=... (Helius) in URLs, query strings and messages.
_KEY_PARAM = re.compile(r"((?:api[_-]?key)=)[^&#\s'\"]+", re.IGNORECASE)


def init_sentry(settings: Settings) -> bool:
    """Start Sentry when SENTRY_DSN is set; True when it is on.

    Without a DSN this does nothing; without sentry-sdk installed (the `sentry` extra) it
    logs a warning and does nothing. Call once, before the app serves.
    """
    if not settings.sentry_dsn:
        return False
    try:
        import sentry_sdk
        from sentry_sdk.integrations.aiohttp import AioHttpIntegration
    except ImportError:
        logger.warning("sentry_unavailable", extra={"reason": "pip install 'walletd[sentry]'"})
        return False
    sentry_sdk.init(
        dsn=settings.sentry_dsn,
        environment=settings.env,
        release=f"walletd@{__version__}",
        integrations=[AioHttpIntegration()],
        # A stream would be one transaction up to SSE_MAX_STREAM_DURATION long: no tracing.
        traces_sample_rate=0.0,
        # No sentry-trace/baggage headers on requests to Helius or the alert webhook.
        trace_propagation_targets=[],
        before_send=scrub,
        before_send_transaction=scrub,
        before_breadcrumb=scrub,
    )
    return True


def scrub(event: Payload, _hint: Mapping[str, Any]) -> Payload | None:
    """`event` with every API key replaced by [Filtered]; None (drop it) if scrubbing fails.

    Used for events, transactions and breadcrumbs alike: it walks the whole structure,
    so a key is caught wherever an integration put it (headers, URLs, query strings,
    messages, exception values, extra, frame variables, breadcrumbs).
    """
    try:
        cleaned = _scrub(event)
    except Exception:  # dropping one report beats leaking a key
        return None
    return cast(Payload, cleaned) if isinstance(cleaned, dict) else None


def _scrub_text(text: str) -> str:
    """`text` with walletd keys masked and api_key / api-key parameter values filtered."""
    return _KEY_PARAM.sub(r"\1" + FILTERED, _WD_KEY.sub(r"\1" + FILTERED, text))


def _is_secret_name(name: object) -> bool:
    return isinstance(name, str) and name.lower().replace("-", "_") in _SECRET_NAMES


def _scrub(value: Any, by_name: bool = True) -> Any:
    """A scrubbed copy of `value`. `by_name=False` inside `_meta`, whose entries are named
    like the fields they annotate but hold Sentry's annotations, not values."""
    if isinstance(value, str):
        return _scrub_text(value)
    if isinstance(value, dict):
        return {
            _scrub(k): FILTERED
            if by_name and _is_secret_name(k) and v is not None
            else _scrub(v, by_name and k != "_meta")
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        # Headers may also come as [name, value] pairs.
        if by_name and len(value) == 2 and _is_secret_name(value[0]) and value[1] is not None:
            return [value[0], FILTERED]
        return [_scrub(item, by_name) for item in value]
    if isinstance(value, bytes | bytearray):
        return _scrub_text(bytes(value).decode("utf-8", "replace"))
    return value
