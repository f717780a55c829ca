"""Upstream HTTP calls, each paced, capped, timed out, retried and guarded by the circuit
breaker (SPEC §4): the machinery every upstream client (Helius, standard JSON-RPC) shares.

Failures reach callers only as WalletdError: DataFetchError when the upstream still fails
after its retries (or rejects our key: a configuration error, logged loudly, never
retried), ServiceUnavailable while the circuit is open. JSON-RPC answers that are facts
about the request rather than the upstream's health leave the breaker untouched:
-32020 (unknown `before` cursor) is UnknownEventId, -32601 / -32600 (method not found,
invalid request: a provider without the method, or without batches) are RequestRefused.
URLs carry keys: no URL, query or foreign exception text ever reaches a log or an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import aiohttp
import orjson

from walletd.config import Settings
from walletd.errors import DataFetchError, UnknownEventId
from walletd.retry import RetryPolicy, UpstreamFailure, parse_retry_after, with_retries
from walletd.upstream.breaker import CircuitBreaker
from walletd.upstream.pacing import Pacer, Turn

log = logging.getLogger(__name__)

# JSON-RPC errors worth retrying: the node is behind, overloaded or failed internally.
RETRYABLE_RPC_CODES = frozenset({-32603, -32005, -32004, -32014, -32016})
# "Transaction <sig> not found": a `before` cursor the node does not know (Agave 4.0+).
UNKNOWN_CURSOR = -32020
METHOD_NOT_FOUND = -32601
INVALID_REQUEST = -32600
_REFUSALS = frozenset({METHOD_NOT_FOUND, INVALID_REQUEST})
# (endpoint, "200" | another status | "timeout" | "connection_error", seconds): metrics.
AttemptHook = Callable[[str, str, float], None]
# Checks a decoded reply inside the attempt: raising UpstreamFailure retries it.
ReplyCheck = Callable[[Any], None]


async def _request_sent(
    _session: aiohttp.ClientSession, context: Any, _params: aiohttp.TraceRequestChunkSentParams
) -> None:
    """The body's first chunk is on the wire: the pacer's next turn may come (pacing.py)."""
    turn = context.trace_request_ctx
    if isinstance(turn, Turn):
        turn.sent()


_SENT_TRACE = aiohttp.TraceConfig()
_SENT_TRACE.on_request_chunk_sent.append(_request_sent)
_SENT_TRACE.freeze()


class RequestRefused(DataFetchError):
    """The upstream refused the request as such (JSON-RPC -32601 or -32600): it lacks the
    method, or batches. Callers that have another way fall back to it."""

    def __init__(self, detail: str, *, rpc_code: int) -> None:
        super().__init__(detail)
        self.rpc_code = rpc_code


class UpstreamTransport:
    """One per upstream client: the HTTP session (created on first use, inside the
    running loop, closed by close()), a pacer per endpoint, the concurrency cap, the
    retry policy and the shared breaker."""

    def __init__(
        self,
        settings: Settings,
        *,
        breaker: CircuitBreaker,
        pacers: Mapping[str, Pacer],
        policy: RetryPolicy | None = None,
        on_attempt: AttemptHook | None = None,
        params: Mapping[str, str] | None = None,
    ) -> None:
        self._http: aiohttp.ClientSession | None = None
        self._params = dict(params or {})
        self._timeout = aiohttp.ClientTimeout(total=settings.upstream_timeout_s)
        self._breaker = breaker
        self._pacers = dict(pacers)
        self._slots = asyncio.Semaphore(settings.upstream_concurrency)
        self._policy = policy or RetryPolicy(
            max_retries=settings.upstream_max_retries, deadline_s=settings.upstream_retry_deadline_s
        )
        self._waiting = 0
        self._on_attempt = on_attempt

    @property
    def waiting_to_retry(self) -> int:
        """Calls now sleeping out a backoff or Retry-After: a pipeline may look further
        ahead meanwhile (upstream/pipeline.py)."""
        return self._waiting

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def post(
        self, endpoint: str, url: str, body: Any, *, check: ReplyCheck | None = None
    ) -> Any:
        """POST `body` as JSON to `url` (under `endpoint`'s pacer) and return the decoded
        reply, retried as SPEC §4 says. Raises DataFetchError, RequestRefused,
        UnknownEventId or ServiceUnavailable."""

        def retried(retry: int, delay: float, exc: UpstreamFailure) -> None:
            log.warning(
                "upstream_retry",
                extra={
                    "endpoint": endpoint,
                    "retry": retry,
                    "delay_s": round(delay, 3),
                    "status": exc.status,
                    "detail": str(exc),
                },
            )

        async with self._breaker.call():
            try:
                return await with_retries(
                    lambda: self._attempt(endpoint, url, body, check),
                    self._policy,
                    on_retry=retried,
                    sleep=self._wait_to_retry,
                )
            except UpstreamFailure as exc:
                code = exc.rpc_code
                if code != UNKNOWN_CURSOR and code not in _REFUSALS:
                    log.error(
                        "upstream_failed",
                        extra={"endpoint": endpoint, "status": exc.status, "detail": str(exc)},
                    )
                    raise DataFetchError(f"{endpoint}: {exc}") from exc
        # Outside the breaker: the upstream answered properly, about our request.
        if code == UNKNOWN_CURSOR:
            raise UnknownEventId(f"{endpoint}: the upstream does not know the cursor")
        assert code is not None
        raise RequestRefused(f"{endpoint}: JSON-RPC error {code}", rpc_code=code)

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(raise_for_status=False, trace_configs=[_SENT_TRACE])
        return self._http

    def _observe(self, endpoint: str, outcome: str, sent: float) -> None:
        if self._on_attempt is not None:
            self._on_attempt(endpoint, outcome, time.monotonic() - sent)

    async def _wait_to_retry(self, seconds: float) -> None:
        self._waiting += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self._waiting -= 1

    async def _attempt(self, endpoint: str, url: str, body: Any, check: ReplyCheck | None) -> Any:
        """One request; every failure becomes an UpstreamFailure saying if a retry helps."""
        pacer = self._pacers[endpoint]
        async with self._slots:
            # Paced once a slot is ours: the start we reserve is then the one we keep.
            # A JSON-RPC batch is charged its calls, as providers meter it (pacing.py).
            # The next turn waits for this request's bytes to be sent (_SENT_TRACE).
            calls = len(body) if isinstance(body, list) else 1
            async with pacer.turn(calls) as turn:
                started, sent = turn.started, time.monotonic()
                try:
                    async with self._session().post(
                        url,
                        params=self._params,
                        json=body,
                        timeout=self._timeout,
                        trace_request_ctx=turn,
                    ) as resp:
                        payload = await resp.read()
                        status, retry_after = resp.status, resp.headers.get("Retry-After")
                except (aiohttp.ClientError, TimeoutError) as exc:
                    outcome = "timeout" if isinstance(exc, TimeoutError) else "connection_error"
                    self._observe(endpoint, outcome, sent)
                    raise UpstreamFailure(f"{type(exc).__name__}", retryable=True) from exc
            self._observe(endpoint, str(status), sent)
        if status in (401, 403):
            log.critical("upstream_auth_rejected", extra={"endpoint": endpoint, "status": status})
            raise UpstreamFailure(f"HTTP {status}", retryable=False, status=status)
        if status == 429:
            pacer.slow_down(started)  # our spacing was not enough where the upstream measures
        elif status == 200:
            pacer.succeeded()
        if status == 429 or status >= 500:
            raise UpstreamFailure(
                f"HTTP {status}",
                retryable=True,
                retry_after_s=parse_retry_after(retry_after),
                status=status,
            )
        if status != 200:
            raise UpstreamFailure(f"HTTP {status}", retryable=False, status=status)
        try:
            reply = orjson.loads(payload)
        except orjson.JSONDecodeError as exc:  # malformed or truncated: a bad moment upstream
            raise UpstreamFailure("malformed JSON", retryable=True, status=status) from exc
        error = reply.get("error") if isinstance(reply, dict) else None
        if isinstance(error, dict):
            raise rpc_failure(error, status)
        if check is not None:
            check(reply)
        return reply


def rpc_failure(error: Mapping[str, Any], status: int | None = 200) -> UpstreamFailure:
    """The UpstreamFailure for a JSON-RPC error object (only its code is kept: the
    message is the upstream's text)."""
    code = error.get("code")
    return UpstreamFailure(
        f"JSON-RPC error {code}",
        retryable=code in RETRYABLE_RPC_CODES,
        status=status,
        rpc_code=code if isinstance(code, int) else None,
    )
