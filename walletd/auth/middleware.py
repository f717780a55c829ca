"""Access control (SPEC §3): who is calling, how often, and what they may do.

Run by the boundary of every route (walletd/api/boundary.py), in this order: the request
size checks, then identify the caller (an API key when keys are required, else the client
address), count the request against the caller's sliding window, then check the key's
scope. Counting before the scope check
follows the SPEC: every authenticated request counts, whatever its outcome, except those
the limiter refuses. Routes without a scope (/health, /ready) are neither authenticated
nor counted: load balancers poll them.
"""

from __future__ import annotations

import ipaddress
import logging
import math
import time
from collections.abc import AsyncIterator, Sequence
from itertools import chain

from aiohttp import hdrs, web
from multidict import CIMultiDict

from walletd.appkeys import KEYSTORE, LIMITS, SETTINGS
from walletd.auth.format import mask_key
from walletd.auth.keys import KeyRecord, KeyStore, authenticate
from walletd.env import IPNetwork
from walletd.errors import (
    AuthRequired,
    Forbidden,
    InvalidApiKey,
    RateLimited,
    RequestLineTooLarge,
    RequestTooLarge,
)
from walletd.exchange import Exchange
from walletd.headers import API_KEY, RATELIMIT_LIMIT, RATELIMIT_REMAINING, RATELIMIT_RESET
from walletd.limits import Verdict
from walletd.observability.logs import bind_ids

log = logging.getLogger(__name__)

# Route name -> the scope a key needs for it. Unlisted routes are public.
ROUTE_SCOPES = {"stream": "stream", "metrics": "metrics"}
_BEARER = "bearer "
# SPEC §5 limits. aiohttp's own parser limits sit above these (boundary.PARSER_LIMITS) so
# that requests between the two get our typed JSON error instead of aiohttp's plain 400.
MAX_LINE_BYTES = 8 * 1024
MAX_HEADER_BYTES = 32 * 1024


class Admission:
    """Access control for one app, run by the boundary before every handler: who the
    client is, requests too large, then, for routes with a scope (ROUTE_SCOPES), the
    key, the window and the scope. What it needs of the app is looked up once."""

    __slots__ = ("_keys", "_limits")

    def __init__(self, app: web.Application) -> None:
        self._limits = app[LIMITS]
        self._keys = app[KEYSTORE] if app[SETTINGS].api_key_required else None

    async def __call__(self, request: web.Request, exchange: Exchange) -> None:
        """Raise unless this caller may make this request now; record who they are."""
        ip = exchange.client_ip
        check_request_size(request)
        scope = exchange.rules.scope
        # OPTIONS is only ever a CORS preflight (cors.py): browsers send it without a key.
        if scope is None or request.method == "OPTIONS":
            return
        record = None
        if self._keys is not None:
            record = exchange.key = await self._authenticate(request, self._keys, ip)
            subject = f"key:{record.id}"
        else:
            subject = f"ip:{ip}"
        exchange.subject = subject
        limits = self._limits
        verdict = exchange.verdict = limits.hit_now(subject) or await limits.hit(subject)
        if not verdict.allowed:
            raise RateLimited(f"{subject} over its window", retry_after=verdict.retry_after_s)
        if record is not None and scope not in record.scopes:
            raise Forbidden(f"key {record.id} lacks scope {scope}")

    async def _authenticate(self, request: web.Request, keys: KeyStore, ip: str) -> KeyRecord:
        """The caller's key record. An address over AUTH_FAILURE_LIMIT failures in the
        window is refused (429) before its key is even read: guessing keys costs a lookup
        each, and is what the limit is for. Every failure (no key, a bad one) counts
        against it."""
        limits = self._limits
        window = limits.auth_window_now(ip) or await limits.auth_window(ip)
        if not window.allowed:
            raise RateLimited(
                f"{ip} over its failed-authentication window", retry_after=window.retry_after_s
            )
        try:
            key = presented_key(request)
            if key is None:
                raise AuthRequired()
            bind_ids(api_key=mask_key(key))
            return await authenticate(keys, key, time.time())
        except (AuthRequired, InvalidApiKey):
            await limits.auth_failed(ip)
            raise


def check_request_size(request: web.Request) -> None:
    """Refuse request lines over 8 KB (414) and header lines over 8 KB or 32 KB in all (431)."""
    raw_path, raw_headers = request.raw_path, request.raw_headers
    request_line = len(request.method) + len(raw_path) + 10
    total = sum(map(len, chain.from_iterable(raw_headers))) + 4 * len(raw_headers)
    if request_line + total <= MAX_LINE_BYTES:
        return  # the common case, with no loop in Python: no line can be too long
    if request_line > MAX_LINE_BYTES:
        raise RequestLineTooLarge(f"request line of {len(raw_path)} bytes")
    for name, value in raw_headers:
        line = len(name) + len(value) + 4
        if line > MAX_LINE_BYTES:
            raise RequestTooLarge(f"header line of {line} bytes")
    if total > MAX_HEADER_BYTES:
        raise RequestTooLarge(f"{total} bytes of headers")


def presented_key(request: web.Request) -> str | None:
    """The key from `Authorization: Bearer`, else `X-API-Key`, else `?api_key=`.

    An Authorization header of another scheme is a key we cannot read: rather than
    silently ignoring it (and answering AUTH_REQUIRED), it is refused as invalid.
    """
    authorization = request.headers.get(hdrs.AUTHORIZATION)
    if authorization is not None:
        if authorization[: len(_BEARER)].lower() != _BEARER:
            raise InvalidApiKey("Authorization header without a Bearer key")
        return authorization[len(_BEARER) :].strip()
    return request.headers.get(API_KEY) or request.query.get("api_key") or None


def client_ip(request: web.Request, trusted: Sequence[IPNetwork]) -> str:
    """The caller's address: the peer, or, when the peer is a trusted proxy, the last
    address in X-Forwarded-For that is not itself a trusted proxy (the rightmost
    entries were added by our proxies; anything left of them the client could forge)."""
    peer = request.remote or ""
    if not trusted or not _is_trusted(peer, trusted):
        return peer
    forwarded = request.headers.getall(hdrs.X_FORWARDED_FOR, [])
    hops = [h.strip() for v in forwarded for h in v.split(",")]
    for hop in reversed(hops):
        if not _is_trusted(hop, trusted):
            return hop if _is_ip(hop) else peer
    return peer


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_trusted(text: str, trusted: Sequence[IPNetwork]) -> bool:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return False
    return any(address in network for network in trusted)


def rate_limit_headers(verdict: Verdict, headers: CIMultiDict[str]) -> None:
    """RateLimit-* on every counted response (from boundary.add_response_headers:
    streams included)."""
    headers[RATELIMIT_LIMIT] = str(verdict.limit)
    headers[RATELIMIT_REMAINING] = str(verdict.remaining)
    headers[RATELIMIT_RESET] = str(math.ceil(verdict.reset_s))


async def limits_lifetime(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the limiter and its Redis tasks live with the app."""
    await app[LIMITS].start()
    yield
    await app[LIMITS].close()


async def keystore_lifetime(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the key store lives with the app."""
    yield
    await app[KEYSTORE].close()
