"""GET /v4/wallet/{address}/stream: validate, prepare, stream the history, finish.

Everything is checked before `prepare()`, so bad input gets an HTTP error; after it,
failures become one `error` event (SPEC §2) and the server closes the stream
(walletd/stream/connection.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re

from aiohttp import hdrs, web
from multidict import MultiMapping

from walletd.appkeys import (
    EXCHANGE,
    LIFECYCLE,
    LIMITS,
    OVERLOAD,
    SETTINGS,
    STREAMS,
)
from walletd.config import Settings
from walletd.errors import (
    InvalidEventId,
    InvalidParameter,
    InvalidWallet,
    ServiceUnavailable,
    WalletdError,
)
from walletd.stream.connection import WalletStream
from walletd.stream.follow import FollowStream, follow_cursor
from walletd.trades.solana import is_address, is_signature
from walletd.upstream.recording import Recording

log = logging.getLogger(__name__)

_DIGITS = re.compile(r"[0-9]{1,12}")
CURSOR_CHECK_S = 2.0


def stream_params(request: web.Request, settings: Settings) -> tuple[str, str | None, int, bool]:
    """(wallet, resume cursor, limit, follow) of a stream request; raises the SPEC §2
    400s (a follow stream's cursor is checked by follow_cursor)."""
    wallet = request.match_info["address"]
    if not is_address(wallet):
        raise InvalidWallet(f"bad address {wallet[:64]!r}")
    limit, before, follow = settings.max_wallet_trades, None, False
    if request.query_string:  # most streams carry no parameters: no query to parse
        limit, before, follow = _query_params(request.query, settings)
    # Last-Event-ID wins over `before`: it is the newer state (a browser reconnecting).
    cursor = request.headers.get(hdrs.LAST_EVENT_ID) or before or None
    if follow:
        follow_cursor(cursor)
    elif cursor is not None and not is_signature(cursor):
        raise InvalidEventId(f"bad cursor {cursor[:100]!r}")
    return wallet, cursor, limit, follow


def _query_params(query: MultiMapping[str], settings: Settings) -> tuple[int, str | None, bool]:
    """(limit, before, follow) of a stream request's query; raises its SPEC §2 400s."""
    if len(query) != len(set(query)):  # a name given twice: ours are refused, others ignored
        for name in ("limit", "before", "follow"):
            if len(query.getall(name, [])) > 1:
                raise InvalidParameter(f"repeated {name}", message=f"'{name}' given more than once")
    limit = settings.max_wallet_trades
    raw_limit = query.get("limit")
    if raw_limit is not None:
        if not _DIGITS.fullmatch(raw_limit) or not 1 <= int(raw_limit) <= limit:
            raise InvalidParameter(
                f"bad limit {raw_limit[:32]!r}",
                message=f"'limit' must be an integer from 1 to {settings.max_wallet_trades}",
            )
        limit = int(raw_limit)
    follow = query.get("follow", "false")
    if follow not in ("true", "false"):
        raise InvalidParameter(
            f"bad follow {follow[:32]!r}", message="'follow' must be true or false"
        )
    if follow == "true" and "before" in query:
        raise InvalidParameter(
            "before with follow", message="'before' cannot be combined with follow=true"
        )
    return limit, query.get("before"), follow == "true"


async def stream_handler(request: web.Request) -> web.StreamResponse:
    app = request.app
    settings = app[SETTINGS]
    wallet, cursor, limit, follow = stream_params(request, settings)
    if not app[LIFECYCLE].accepting:
        raise ServiceUnavailable(
            "draining",
            retry_after=1,
            message="The server is shutting down; retry on another instance",
        )
    stream_id = new_stream_id()
    # The caller's stream slot (TOO_MANY_STREAMS), held before prepare() and released
    # however the stream ends: complete, error, disconnect, timeout, reaper, shutdown.
    subject = request[EXCHANGE].subject
    assert subject is not None, "the stream route has a scope: access control set it"
    lease = await app[LIMITS].acquire_stream(subject, stream_id)
    try:
        before = follow_cursor(cursor)[0] if follow else cursor
        # MAX_STREAMS and HISTORY_MEMORY_MB: a 503 before the stream starts (SPEC §5).
        async with app[OVERLOAD].admit(wallet, before) as recording:
            if before is not None:
                await _check_cursor(recording)
            stream: WalletStream
            if follow:
                stream = follower = FollowStream(request, wallet, cursor, limit, stream_id)
                try:
                    await follower.start()  # subscribed; an unknown head is a 400
                except BaseException:
                    follower.close()
                    raise
            else:
                stream = WalletStream(request, wallet, cursor, limit, stream_id)
            registry = app[STREAMS]
            registry.add(stream)
            try:
                await stream.run(recording)
            finally:
                registry.discard(stream)
    finally:
        if not lease.release_now():  # in memory: at once, with no task for a shield
            await asyncio.shield(lease.release())  # a cancelled handler still frees its slot
    return stream.response


def new_stream_id() -> str:
    """A random (version 4) UUID's text, at a fifth of the cost of str(uuid.uuid4())."""
    raw = bytearray(os.urandom(16))
    raw[6] = raw[6] & 0x0F | 0x40
    raw[8] = raw[8] & 0x3F | 0x80
    h = raw.hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


async def _check_cursor(recording: Recording) -> None:
    """Refuse an unknown resume cursor with HTTP 400 rather than an `error` event.

    A browser reconnects after an error event with the same Last-Event-ID, forever; it
    gives up on a 400. The first page tells; a slow source gets CURSOR_CHECK_S, after
    which the stream starts and reports whatever the source says as an event.
    """
    try:
        async with asyncio.timeout(CURSOR_CHECK_S):
            await recording.page(0)
    except InvalidEventId:
        raise
    except (TimeoutError, WalletdError):
        pass
