"""The error catalogue of SPEC §2: WalletdError and one subclass per error code.

Everything else about an error is derived from these classes: the HTTP status and the
`error` event (rendered only by the boundary and the stream), which codes can be
resumed, the CLI's exit statuses, the metric reasons and the OpenAPI lists. Pure
Python: the CLI imports it without the server.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from walletd.stream.events import Error

_CLASSES: list[type[WalletdError]] = []  # in definition order, which is SPEC §2's


class WalletdError(Exception):
    """Base of every error a client may see.

    `detail` is for logs only; clients see `public_message`. `resumable` errors end a
    stream that can be resumed, so their SSE event carries `last_event_id`. `http` is
    False for codes that only ever arrive as `error` events (the stream had started).
    """

    code: ClassVar[str] = "INTERNAL_ERROR"
    status: ClassVar[int] = 500
    public_message: ClassVar[str] = "Internal error"
    resumable: ClassVar[bool] = False
    http: ClassVar[bool] = True
    exit_status: ClassVar[int] = 50  # of `walletd stream` (client/stream.py)
    rejection_reason: ClassVar[str | None] = None  # label of rate-limit rejection metrics
    challenge: ClassVar[str | None] = None  # the WWW-Authenticate scheme to send

    def __init_subclass__(cls, **kwargs: object) -> None:
        super().__init_subclass__(**kwargs)
        _CLASSES.append(cls)

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

    def body(self, request_id: str) -> Error:
        """The SPEC §2 error object shared by HTTP bodies and SSE `error` events."""
        out: Error = {"code": self.code, "error": self.message, "request_id": request_id}
        if self.retry_after is not None:
            out["retry_after"] = self.retry_after
        return out


class AuthRequired(WalletdError):
    code, status, public_message = "AUTH_REQUIRED", 401, "An API key is required"
    exit_status, challenge = 10, "Bearer"


class InvalidApiKey(WalletdError):
    code, status, public_message = "INVALID_API_KEY", 401, "Invalid API key"
    exit_status = 11


class Forbidden(WalletdError):
    code, status, public_message = "FORBIDDEN", 403, "The API key lacks the required scope"
    exit_status = 12


class RateLimited(WalletdError):
    code, status, public_message = "RATE_LIMITED", 429, "Too many requests"
    exit_status, rejection_reason = 13, "request_window"


class TooManyStreams(WalletdError):
    code, status, public_message = "TOO_MANY_STREAMS", 429, "Too many concurrent streams"
    exit_status, rejection_reason = 14, "stream_cap"


class InvalidWallet(WalletdError):
    code, status = "INVALID_WALLET", 400
    public_message = "Not a Solana address: expected base58 that decodes to 32 bytes"
    exit_status = 20


class InvalidEventId(WalletdError):
    code, status = "INVALID_EVENT_ID", 400
    public_message = "Not a transaction signature: expected base58 that decodes to 64 bytes"
    exit_status = 21


class UnknownEventId(InvalidEventId):
    public_message = "Unknown event id: not a transaction of this wallet"


class InvalidParameter(WalletdError):
    code, status, public_message = "INVALID_PARAMETER", 400, "Invalid query parameter"
    exit_status = 22


class WalletNotFound(WalletdError):
    code, status, public_message = "WALLET_NOT_FOUND", 404, "The address has no on-chain history"
    exit_status, http = 23, False


class DataFetchError(WalletdError):
    code, status, public_message = "DATA_FETCH_ERROR", 502, "The upstream data source failed"
    exit_status, resumable, http = 30, True, False


class ServiceUnavailable(WalletdError):
    code, status, public_message = "SERVICE_UNAVAILABLE", 503, "Service temporarily unavailable"
    exit_status, resumable = 31, True


class StreamTimeout(WalletdError):
    code, status = "STREAM_TIMEOUT", 504
    public_message = "Maximum stream duration reached; resume with the last event id"
    exit_status, resumable, http = 32, True, False


class ServerShutdown(WalletdError):
    code, status = "SERVER_SHUTDOWN", 503
    public_message = "The server is shutting down; reconnect to resume"
    exit_status, resumable, http = 33, True, False


class NotFound(WalletdError):
    code, status, public_message = "NOT_FOUND", 404, "No such route"
    exit_status = 40


class MethodNotAllowed(WalletdError):
    code, status, public_message = "METHOD_NOT_ALLOWED", 405, "Method not allowed on this route"
    exit_status = 41


class RequestTooLarge(WalletdError):
    code, status, public_message = "REQUEST_TOO_LARGE", 431, "Request headers too large"
    exit_status = 42


class RequestLineTooLarge(RequestTooLarge):
    status, public_message = 414, "Request line too large"


class InternalError(WalletdError):
    pass


def error_classes() -> tuple[type[WalletdError], ...]:
    """Every error class, base first, then in definition order (SPEC §2's)."""
    return (WalletdError, *_CLASSES)


def _first_per_code() -> dict[str, type[WalletdError]]:
    """The class that defines each code (subclasses such as UnknownEventId share it)."""
    out: dict[str, type[WalletdError]] = {}
    for cls in _CLASSES:
        out.setdefault(cls.code, cls)
    return out


# The tables the rest of walletd reads; all derived from the classes above.
BY_CODE = _first_per_code()
ERROR_CODES: tuple[str, ...] = tuple(BY_CODE)
RESUMABLE_CODES = tuple(code for code, cls in BY_CODE.items() if cls.resumable)
EXIT_STATUSES: dict[str, int] = {code: cls.exit_status for code, cls in BY_CODE.items()}
RATE_LIMITED_CODES = tuple(code for code, cls in BY_CODE.items() if cls.status == 429)


def _http_errors() -> dict[int, tuple[str, ...]]:
    out: dict[int, list[str]] = {}
    for cls in _CLASSES:
        codes = out.setdefault(cls.status, [])
        if cls.http and cls.code not in codes:
            codes.append(cls.code)
    return {status: tuple(codes) for status, codes in sorted(out.items()) if codes}


# The codes each HTTP error status can carry; the others only ever arrive as events.
HTTP_ERRORS = _http_errors()
