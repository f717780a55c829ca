"""WalletdError and one subclass per error code of SPEC §2; rendered only by the boundary."""

from __future__ import annotations

from typing import Any, ClassVar


class WalletdError(Exception):
    """Base of every error a client may see.

    `detail` is for logs only; clients see `public_message`. `resumable` errors end a
    stream that can be resumed, so their SSE event carries `last_event_id`.
    """

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500
    public_message: ClassVar[str] = "Internal error"
    resumable: ClassVar[bool] = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        retry_after: int | None = None,
        message: str | None = None,
    ) -> None:
        super().__init__(detail or message or self.public_message)
        self.retry_after = retry_after
        # A message safe to show, written by our own code (never a foreign exception's text).
        self.message = message or self.public_message

    def body(self, request_id: str | None) -> dict[str, Any]:
        """The SPEC §2 error object shared by HTTP bodies and SSE `error` events."""
        out: dict[str, Any] = {"code": self.code, "error": self.message, "request_id": request_id}
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


class InternalError(WalletdError):
    pass


class AuthRequired(WalletdError):
    code, status, public_message = "AUTH_REQUIRED", 401, "An API key is required"


class InvalidApiKey(WalletdError):
    code, status, public_message = "INVALID_API_KEY", 401, "Invalid API key"


class Forbidden(WalletdError):
    code, status, public_message = "FORBIDDEN", 403, "The API key lacks the required scope"


class RateLimited(WalletdError):
    code, status, public_message = "RATE_LIMITED", 429, "Too many requests"


class TooManyStreams(WalletdError):
    code, status, public_message = "TOO_MANY_STREAMS", 429, "Too many concurrent streams"


class InvalidWallet(WalletdError):
    code, status = "INVALID_WALLET", 400
    public_message = "Not a Solana address: expected base58 that decodes to 32 bytes"


class InvalidEventId(WalletdError):
    code, status = "INVALID_EVENT_ID", 400
    public_message = "Not a transaction signature: expected base58 that decodes to 64 bytes"


class UnknownEventId(InvalidEventId):
    public_message = "Unknown event id: not a transaction of this wallet"


class InvalidParameter(WalletdError):
    code, status, public_message = "INVALID_PARAMETER", 400, "Invalid query parameter"


class WalletNotFound(WalletdError):
    code, status, public_message = "WALLET_NOT_FOUND", 404, "The address has no on-chain history"


class DataFetchError(WalletdError):
    code, status, public_message = "DATA_FETCH_ERROR", 502, "The upstream data source failed"
    resumable = True


class ServiceUnavailable(WalletdError):
    code, status, public_message = "SERVICE_UNAVAILABLE", 503, "Service temporarily unavailable"
    resumable = True


class StreamTimeout(WalletdError):
    code, status = "STREAM_TIMEOUT", 504
    public_message = "Maximum stream duration reached; resume with the last event id"
    resumable = True


class ServerShutdown(WalletdError):
    code, status = "SERVER_SHUTDOWN", 503
    public_message = "The server is shutting down; reconnect to resume"
    resumable = True


class NotFound(WalletdError):
    code, status, public_message = "NOT_FOUND", 404, "No such route"


class MethodNotAllowed(WalletdError):
    code, status, public_message = "METHOD_NOT_ALLOWED", 405, "Method not allowed on this route"


class RequestTooLarge(WalletdError):
    code, status, public_message = "REQUEST_TOO_LARGE", 431, "Request headers too large"


class RequestLineTooLarge(RequestTooLarge):
    status, public_message = 414, "Request line too large"
