"""The standard Solana JSON-RPC calls of the `rpc` upstream (SPEC §4), at RPC_URL of any
provider, through the shared transport (upstream/transport.py: paced, capped, timed out,
retried with Retry-After honoured, guarded by the circuit breaker).

getTransactionsForAddress (gTFA: Helius, Alchemy, QuickNode, Triton), getSignaturesForAddress
and getTransaction, the last in JSON-RPC batches until the provider refuses one (then
single calls, for the rest of the process). Errors: -32005/-32603/-32004, 429 and 5xx are
retried; -32020 is UnknownEventId; -32601 is RequestRefused (the source falls back);
anything else after retries is DataFetchError. RPC_URL may hold the provider's key: it is
never logged (the transport logs endpoints, never URLs).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any

from walletd.config import Settings
from walletd.errors import DataFetchError
from walletd.retry import RetryPolicy, UpstreamFailure
from walletd.upstream.breaker import CircuitBreaker
from walletd.upstream.pacing import Pacer
from walletd.upstream.pipeline import SIGNATURES_PAGE, signature_params
from walletd.upstream.transport import (
    RETRYABLE_RPC_CODES,
    AttemptHook,
    RequestRefused,
    UpstreamTransport,
    rpc_failure,
)

log = logging.getLogger(__name__)

GTFA_PAGE = 100  # full transactions per gTFA page: the limit every provider documents
GTFA_LISTING = 1000  # signature records per gTFA page (transactionDetails "signatures")
TRANSACTIONS_BATCH = 100  # getTransaction calls per JSON-RPC batch
ENDPOINTS = ("gtfa", "signatures", "transaction")
GtfaPage = tuple[list[dict[str, Any]], str | None]  # entries and the next page's token
# What every getTransaction-shaped result is asked for in.
_TX_CONFIG = {"encoding": "jsonParsed", "maxSupportedTransactionVersion": 0}


class RpcClient:
    """One per process: it owns the transport and its HTTP session (closed by close())."""

    def __init__(
        self,
        settings: Settings,
        *,
        breaker: CircuitBreaker,
        pacer: Pacer | None = None,
        policy: RetryPolicy | None = None,
        on_attempt: AttemptHook | None = None,
    ) -> None:
        if not settings.rpc_url:
            raise ValueError("RpcClient needs RPC_URL")
        self._url = settings.rpc_url
        # One pacer for every method: a provider meters its one URL as a whole.
        pacer = pacer or Pacer(settings.upstream_rps)
        self._transport = UpstreamTransport(
            settings,
            breaker=breaker,
            pacers=dict.fromkeys(ENDPOINTS, pacer),
            policy=policy,
            on_attempt=on_attempt,
        )
        self._rpc_id = 0
        self.batches = True  # until the provider refuses a JSON-RPC batch

    @property
    def waiting_to_retry(self) -> int:
        return self._transport.waiting_to_retry

    async def transactions_for_address(
        self, address: str, token: str | None, *, slots: tuple[int, int] | None = None
    ) -> GtfaPage:
        """One gTFA page: up to 100 full transactions (jsonParsed), newest first, and the
        token of the next page (None at the end). Failed ones are included, so a page
        holds the same 100 transactions on every upstream (rpc/source.py); with `slots`
        (oldest, newest, both included) only that range's succeeded ones are asked for.

        Raises RequestRefused (-32601) when the provider lacks the method.
        """
        config: dict[str, Any] = {"transactionDetails": "full", "limit": GTFA_PAGE, **_TX_CONFIG}
        filters: dict[str, Any] = {}
        if slots is not None:
            # Documented by Helius (rpc/gettransactionsforaddress): slot ranges with
            # gte/gt/lte/lt, and status "succeeded" so failed ones are not downloaded.
            filters = {"slot": {"gte": slots[0], "lte": slots[1]}, "status": "succeeded"}
        return await self._gtfa(address, token, config, filters)

    async def listing_for_address(self, address: str, token: str | None) -> GtfaPage:
        """One gTFA page of up to 1000 signature records (signature, slot, err...), newest
        first: what range pages are cut from (rpc/source.py)."""
        config = {"transactionDetails": "signatures", "limit": GTFA_LISTING}
        return await self._gtfa(address, token, config, {})

    async def _gtfa(
        self, address: str, token: str | None, config: dict[str, Any], filters: dict[str, Any]
    ) -> GtfaPage:
        config = {
            **config,
            "sortOrder": "desc",
            "commitment": "finalized",
            # Explicit: the default leaves out transfers into the wallet's token accounts.
            "filters": {**filters, "tokenAccounts": "balanceChanged"},
        }
        if token is not None:
            config["paginationToken"] = token
        result = await self._request("gtfa", "getTransactionsForAddress", [address, config])
        data = result.get("data") if isinstance(result, dict) else None
        following = result.get("paginationToken") if isinstance(result, dict) else None
        if not isinstance(data, list) or not (following is None or isinstance(following, str)):
            raise DataFetchError("gtfa: result without a data list and pagination token")
        return [entry for entry in data if isinstance(entry, dict)], following

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
        params = signature_params(address, before, until, limit)
        result = await self._request("signatures", "getSignaturesForAddress", params)
        if not isinstance(result, list):
            raise DataFetchError("signatures: JSON-RPC reply without a result list")
        return [record for record in result if isinstance(record, dict)]

    async def transactions(self, signatures: Sequence[str]) -> dict[str, dict[str, Any]]:
        """getTransaction results (jsonParsed) by signature; ones the node does not have
        are absent. One JSON-RPC batch, or single calls once the provider has refused one."""
        if len(signatures) > TRANSACTIONS_BATCH:
            raise ValueError(f"at most {TRANSACTIONS_BATCH} signatures per call")
        if self.batches and len(signatures) > 1:
            try:
                return await self._batch(signatures)
            except RequestRefused:
                self.batches = False
                log.warning("rpc_batches_refused")  # from now on, single paced calls
        return await _all(self._one(signature) for signature in signatures)

    async def close(self) -> None:
        await self._transport.close()

    async def _one(self, signature: str) -> tuple[str, dict[str, Any] | None]:
        result = await self._request("transaction", "getTransaction", [signature, _TX_CONFIG])
        return signature, result if isinstance(result, dict) else None

    async def _batch(self, signatures: Sequence[str]) -> dict[str, dict[str, Any]]:
        body = [self._body("getTransaction", [sig, _TX_CONFIG]) for sig in signatures]
        first = body[0]["id"]

        def check(reply: Any) -> None:
            if not isinstance(reply, list):
                raise UpstreamFailure("batch reply is not a JSON array", retryable=False)
            errors = [a["error"] for a in reply if isinstance(a, dict) and "error" in a]
            if errors:  # one overloaded answer: the whole batch again, after its backoff
                worst = next((e for e in errors if e.get("code") in RETRYABLE_RPC_CODES), None)
                raise rpc_failure(worst or errors[0])

        reply = await self._transport.post("transaction", self._url, body, check=check)
        found: dict[str, dict[str, Any]] = {}
        for answer in reply:
            index = answer.get("id") if isinstance(answer, dict) else None
            if isinstance(index, int) and 0 <= index - first < len(signatures):
                result = answer.get("result")
                if isinstance(result, dict):
                    found[signatures[index - first]] = result
        return found

    def _body(self, method: str, params: list[Any]) -> dict[str, Any]:
        self._rpc_id += 1
        return {"jsonrpc": "2.0", "id": self._rpc_id, "method": method, "params": params}

    async def _request(self, endpoint: str, method: str, params: list[Any]) -> Any:
        reply = await self._transport.post(endpoint, self._url, self._body(method, params))
        if not isinstance(reply, dict) or "result" not in reply:
            raise DataFetchError(f"{endpoint}: reply is not a JSON-RPC result")
        return reply["result"]


async def _all(
    calls: Iterable[Coroutine[Any, Any, tuple[str, dict[str, Any] | None]]],
) -> dict[str, dict[str, Any]]:
    """Run single getTransaction calls concurrently (the transport paces and caps them);
    the first failure cancels the rest."""
    tasks: list[asyncio.Task[tuple[str, dict[str, Any] | None]]] = [
        asyncio.create_task(call) for call in calls
    ]
    try:
        answers = await asyncio.gather(*tasks)
    except BaseException:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task
        raise
    return {sig: tx for sig, tx in answers if tx is not None}
