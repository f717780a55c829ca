"""The two Helius calls walletd makes, each paced, capped, timed out, retried and guarded
by the circuit breaker (SPEC §4): JSON-RPC getSignaturesForAddress and POST /v0/transactions.

Failures reach callers only as WalletdError: DataFetchError when the upstream still fails
after its retries (or rejects our key: a configuration error, logged loudly, never
retried), ServiceUnavailable while the circuit is open. The API key travels in the URL
and never appears in a log line or an error.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import aiohttp
import orjson

from walletd.config import Settings
from walletd.errors import DataFetchError, UnknownEventId
from walletd.retry import RetryPolicy, UpstreamFailure, parse_retry_after, with_retries
from walletd.upstream.breaker import CircuitBreaker
from walletd.upstream.pacing import Pacer

log = logging.getLogger(__name__)

SIGNATURES_PAGE = 1000  # getSignaturesForAddress maximum
TRANSACTIONS_BATCH = 100  # /v0/transactions maximum
# JSON-RPC errors worth retrying: the node is behind, overloaded or failed internally.
_RETRYABLE_RPC_CODES = {-32603, -32005, -32004, -32014, -32016}
# "Transaction <sig> not found": a `before` cursor the node does not know (Agave 4.0+).
_UNKNOWN_CURSOR = -32020
# (endpoint, "200" | another status | "timeout" | "connection_error", seconds): metrics.
AttemptHook = Callable[[str, str, float], None]


class HeliusClient:
    """One per process: it owns the shared HTTP session, created on first use (inside
    the running loop) and closed by close()."""

    def __init__(
        self,
        settings: Settings,
        *,
        breaker: CircuitBreaker,
        pacers: Mapping[str, Pacer] | None = None,
        policy: RetryPolicy | None = None,
        on_attempt: AttemptHook | None = None,
    ) -> None:
        if not settings.helius_key:
            raise ValueError("HeliusClient needs HELIUS_KEY")
        self._http: aiohttp.ClientSession | None = None
        self._params = {"api-key": settings.helius_key}
        self._rpc_url = settings.helius_rpc_url + "/"
        self._transactions_url = settings.helius_api_url + "/v0/transactions"
        self._timeout = aiohttp.ClientTimeout(total=settings.upstream_timeout_s)
        self._breaker = breaker
        # One pacer per endpoint: Helius meters RPC and the Enhanced API separately.
        self._pacers = (
            dict(pacers)
            if pacers is not None
            else {
                endpoint: Pacer(settings.upstream_rps)
                for endpoint in ("signatures", "transactions")
            }
        )
        self._slots = asyncio.Semaphore(settings.upstream_concurrency)
        self._policy = policy or RetryPolicy(
            max_retries=settings.upstream_max_retries, deadline_s=settings.upstream_retry_deadline_s
        )
        self._rpc_id = 0
        self._waiting = 0
        self._on_attempt = on_attempt

    @property
    def waiting_to_retry(self) -> int:
        """Calls now sleeping out a backoff or Retry-After: the pipeline may look further
        ahead meanwhile (HeliusSource)."""
        return self._waiting

    async def signatures(
        self,
        address: str,
        before: str | None,
        limit: int = SIGNATURES_PAGE,
        *,
        until: str | None = None,
    ) -> list[dict[str, Any]]:
        """Signature records of `address`, newest first, strictly older than `before`
        and strictly newer than `until` (live follow's poll)."""
        options: dict[str, Any] = {"limit": min(limit, SIGNATURES_PAGE)}
        if before is not None:
            options["before"] = before
        if until is not None:
            options["until"] = until
        self._rpc_id += 1
        body = {
            "jsonrpc": "2.0",
            "id": self._rpc_id,
            "method": "getSignaturesForAddress",
            "params": [address, options],
        }
        reply = await self._call("signatures", self._rpc_url, body)
        if not isinstance(reply, dict):
            raise DataFetchError("signatures: reply is not a JSON-RPC object")
        result = reply.get("result")
        if not isinstance(result, list):
            raise DataFetchError("signatures: JSON-RPC reply without a result list")
        return [record for record in result if isinstance(record, dict)]

    async def transactions(self, signatures: Sequence[str]) -> list[dict[str, Any]]:
        """Enhanced transactions for up to 100 signatures; missing ones are simply absent."""
        if len(signatures) > TRANSACTIONS_BATCH:
            raise ValueError("at most 100 signatures per call")
        reply = await self._call(
            "transactions", self._transactions_url, {"transactions": list(signatures)}
        )
        if not isinstance(reply, list):
            raise DataFetchError("transactions: reply is not a JSON array")
        return [tx for tx in reply if isinstance(tx, dict)]

    async def close(self) -> None:
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(raise_for_status=False)
        return self._http

    async def _call(self, endpoint: str, url: str, body: dict[str, Any]) -> Any:
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
                    lambda: self._attempt(endpoint, url, body),
                    self._policy,
                    on_retry=retried,
                    sleep=self._wait_to_retry,
                )
            except UpstreamFailure as exc:
                if exc.rpc_code != _UNKNOWN_CURSOR:
                    log.error(
                        "upstream_failed",
                        extra={"endpoint": endpoint, "status": exc.status, "detail": str(exc)},
                    )
                    raise DataFetchError(f"{endpoint}: {exc}") from exc
        # Outside the breaker: the upstream answered properly, the cursor was ours.
        raise UnknownEventId(f"{endpoint}: the upstream does not know the cursor")

    def _observe(self, endpoint: str, outcome: str, sent: float) -> None:
        if self._on_attempt is not None:
            self._on_attempt(endpoint, outcome, time.monotonic() - sent)

    async def _wait_to_retry(self, seconds: float) -> None:
        self._waiting += 1
        try:
            await asyncio.sleep(seconds)
        finally:
            self._waiting -= 1

    async def _attempt(self, endpoint: str, url: str, body: dict[str, Any]) -> Any:
        """One request; every failure becomes an UpstreamFailure saying if a retry helps."""
        async with self._slots:
            # Paced once a slot is ours: the start we reserve is then the one we keep.
            started = await self._pacers[endpoint].wait()
            sent = time.monotonic()
            try:
                async with self._session().post(
                    url, params=self._params, json=body, timeout=self._timeout
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
        pacer = self._pacers[endpoint]
        if status == 429:
            pacer.slow_down(started)  # our spacing was not enough where Helius measures it
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
            code = error.get("code")
            raise UpstreamFailure(
                f"JSON-RPC error {code}",
                retryable=code in _RETRYABLE_RPC_CODES,
                status=status,
                rpc_code=code if isinstance(code, int) else None,
            )
        return reply
