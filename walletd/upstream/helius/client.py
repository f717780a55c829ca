"""The two Helius calls walletd makes, JSON-RPC getSignaturesForAddress and POST
/v0/transactions, through the shared upstream transport (upstream/transport.py: paced,
capped, timed out, retried, guarded by the circuit breaker, SPEC §4).

Failures reach callers only as WalletdError (see the transport). The API key travels in
the URL and never appears in a log line or an error.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from walletd.config import Settings
from walletd.errors import DataFetchError
from walletd.retry import RetryPolicy
from walletd.upstream.breaker import CircuitBreaker
from walletd.upstream.pacing import Pacer
from walletd.upstream.pipeline import SIGNATURES_PAGE, signature_params
from walletd.upstream.transport import AttemptHook, UpstreamTransport

__all__ = ["SIGNATURES_PAGE", "TRANSACTIONS_BATCH", "HeliusClient"]
TRANSACTIONS_BATCH = 100  # /v0/transactions maximum


class HeliusClient:
    """One per process: it owns the transport and its HTTP session (closed by close())."""

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
        self._rpc_url = settings.helius_rpc_url + "/"
        self._transactions_url = settings.helius_api_url + "/v0/transactions"
        # One pacer per endpoint: Helius meters RPC and the Enhanced API separately.
        if pacers is None:
            pacers = {
                endpoint: Pacer(settings.upstream_rps)
                for endpoint in ("signatures", "transactions")
            }
        self._transport = UpstreamTransport(
            settings,
            breaker=breaker,
            pacers=pacers,
            policy=policy,
            on_attempt=on_attempt,
            params={"api-key": settings.helius_key},
        )
        self._rpc_id = 0

    @property
    def waiting_to_retry(self) -> int:
        """Calls now sleeping out a backoff or Retry-After: the pipeline may look further
        ahead meanwhile (HeliusSource)."""
        return self._transport.waiting_to_retry

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
        self._rpc_id += 1
        body = {
            "jsonrpc": "2.0",
            "id": self._rpc_id,
            "method": "getSignaturesForAddress",
            "params": signature_params(address, before, until, limit),
        }
        reply = await self._transport.post("signatures", self._rpc_url, body)
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
        reply = await self._transport.post(
            "transactions", self._transactions_url, {"transactions": list(signatures)}
        )
        if not isinstance(reply, list):
            raise DataFetchError("transactions: reply is not a JSON array")
        return [tx for tx in reply if isinstance(tx, dict)]

    async def close(self) -> None:
        await self._transport.close()
