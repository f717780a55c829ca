"""GET /openapi.json: the OpenAPI 3.1 description of this walletd (SPEC §1, §2, §3).

The document is a function of the settings alone (whether keys are required, the `limit`
bound, whether /metrics is on this listener), so it is built and encoded once per
Settings and served as bytes.

The stream is `text/event-stream`. OpenAPI 3.1 has no keyword for one item of a stream
(3.2 adds `itemSchema`), so its media type's `schema` describes one event, parsed the way
`EventSource` parses it: `{"event", "data", "id"?, "retry"?}`, with `data` a JSON text
whose schema is given by `contentMediaType`/`contentSchema`. Schemathesis reads a 3.1
event-stream `schema` this way; every event's payload is also a named component
(`ConnectedEvent`, `TradesEvent`, ...) so client generators get a type for each.
"""

from __future__ import annotations

import copy
import functools
from typing import Any

import orjson
from aiohttp import web

from walletd import __version__
from walletd.appkeys import SETTINGS
from walletd.config import Settings

# SPEC §2, in its order. tests/test_openapi.py checks this against walletd/errors.py.
ERROR_CODES = (
    "AUTH_REQUIRED",
    "INVALID_API_KEY",
    "FORBIDDEN",
    "RATE_LIMITED",
    "TOO_MANY_STREAMS",
    "INVALID_WALLET",
    "INVALID_EVENT_ID",
    "INVALID_PARAMETER",
    "WALLET_NOT_FOUND",
    "DATA_FETCH_ERROR",
    "SERVICE_UNAVAILABLE",
    "STREAM_TIMEOUT",
    "SERVER_SHUTDOWN",
    "NOT_FOUND",
    "METHOD_NOT_ALLOWED",
    "REQUEST_TOO_LARGE",
    "INTERNAL_ERROR",
)
# The codes each HTTP error status can carry; the rest only ever arrive as `error` events.
HTTP_ERRORS: dict[int, tuple[str, ...]] = {
    400: ("INVALID_WALLET", "INVALID_EVENT_ID", "INVALID_PARAMETER"),
    401: ("AUTH_REQUIRED", "INVALID_API_KEY"),
    403: ("FORBIDDEN",),
    404: ("NOT_FOUND",),
    414: ("REQUEST_TOO_LARGE",),
    429: ("RATE_LIMITED", "TOO_MANY_STREAMS"),
    431: ("REQUEST_TOO_LARGE",),
    500: ("INTERNAL_ERROR",),
    503: ("SERVICE_UNAVAILABLE",),
}
READY_REASONS = ("upstream_circuit_open", "redis_unreachable", "keystore_stale")
# GET /static/{name} (walletd/api/demo_page.py); index.html is served only as GET /.
DEMO_ASSETS = ("app.js", "app.css", "favicon.svg")

_BASE58 = "1-9A-HJ-NP-Za-km-z"
# Lengths a base58 text of 32 (an address) or 64 bytes (a signature) can have.
ADDRESS_PATTERN = f"^[{_BASE58}]{{32,44}}$"
SIGNATURE_PATTERN = f"^[{_BASE58}]{{64,88}}$"
_CURSOR_PATTERN = f"^([{_BASE58}]{{64,88}})?$"  # empty means "no cursor", as if absent
_DECIMAL_PATTERN = r"^[0-9]+(\.[0-9]+)?$"

_SECURITY_SCHEMES = {
    "bearerKey": {
        "type": "http",
        "scheme": "bearer",
        "description": "`Authorization: Bearer wd_…`. Read first.",
    },
    "headerKey": {
        "type": "apiKey",
        "in": "header",
        "name": "X-API-Key",
        "description": "Read when there is no Authorization header.",
    },
    "queryKey": {
        "type": "apiKey",
        "in": "query",
        "name": "api_key",
        "description": (
            "Read last. For `EventSource`, which cannot set headers; never logged. "
            "Prefer a header elsewhere: URLs end up in browser history and proxy logs."
        ),
    },
}

# An operation with a scope takes any one of them (SPEC §3).
_ANY_KEY: list[dict[str, list[str]]] = [{"bearerKey": []}, {"headerKey": []}, {"queryKey": []}]

_STREAM_DESCRIPTION = """\
Server-Sent Events, newest trade first. The stream opens with `retry: <ms>` (the
reconnection delay), then:

- `connected` first;
- `progress` while scanning (throttled; off with `FEATURE_PROGRESS_EVENTS=false`);
- `trades`: a batch of trades, with `id:` the signature of its last trade. Only `trades`
  events carry an `id:`, so the `Last-Event-ID` a browser sends on reconnect resumes
  exactly after the last trade received: nothing lost, nothing repeated;
- `heartbeat` after a quiet interval, to keep proxies from closing the connection;
- `complete` when the history is exhausted or `limit` reached; the server then closes;
- `error` for any failure after the stream started; the server then closes. Codes that
  can be resumed (`STREAM_TIMEOUT`, `SERVER_SHUTDOWN`, `SERVICE_UNAVAILABLE`,
  `DATA_FETCH_ERROR`) carry `last_event_id`: reconnect with it.

Every event is `event: <name>` plus one `data:` line holding a JSON object. This schema
describes one event as an `EventSource` parses it (the role OpenAPI 3.2's `itemSchema`
plays); each event's `data` is one of the `*Event` components.
"""


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]}


def _object(properties: dict[str, Any], *, optional: tuple[str, ...] = (), **extra: Any) -> Any:
    """An object schema whose properties are all required except `optional`. Extra
    properties stay allowed: clients must accept fields added later (SPEC §9)."""
    required = [name for name in properties if name not in optional]
    return {"type": "object", "required": required, "properties": properties, **extra}


_COUNT = {"type": "integer", "minimum": 0}
_UNIX_TIME = {"type": "integer", "description": "Unix seconds."}


def _schemas() -> dict[str, Any]:
    """components/schemas: the SPEC §1 trade object, every event payload, the §2 error."""
    return {
        "Address": {
            "type": "string",
            "pattern": ADDRESS_PATTERN,
            "description": "A Solana address: base58 that decodes to exactly 32 bytes.",
            "examples": ["3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2"],
        },
        "Signature": {
            "type": "string",
            "pattern": SIGNATURE_PATTERN,
            "description": "A transaction signature: base58 that decodes to exactly 64 bytes.",
        },
        "Decimal": {
            "type": "string",
            "pattern": _DECIMAL_PATTERN,
            "description": "An exact decimal in UI units (never a float).",
            "examples": ["1.5", "561218.676075"],
        },
        "ErrorCode": {
            "type": "string",
            "enum": list(ERROR_CODES),
            "description": "SPEC §2. Clients should treat an unknown code like INTERNAL_ERROR.",
        },
        "Error": _object(
            {
                "code": _ref("ErrorCode"),
                "error": {"type": "string", "description": "A human-readable message."},
                "request_id": {"type": "string", "description": "The X-Request-ID."},
                "retry_after": {
                    **_COUNT,
                    "description": "Seconds to wait before retrying, when retrying helps.",
                },
            },
            optional=("retry_after",),
            description="Every HTTP error body (SPEC §2).",
        ),
        "TokenAmount": _object(
            {
                "mint": _ref("Address"),
                "symbol": {
                    "enum": ["SOL", "USDC", "USDT", None],
                    "description": "Known for quote assets, else null. Native SOL is wrapped SOL.",
                },
                "amount": _ref("Decimal"),
                "decimals": _COUNT,
            },
            description="The wallet's net change of one asset, less fee and token-account rent.",
        ),
        "Trade": _object(
            {
                "signature": _ref("Signature"),
                "slot": _nullable(_COUNT),
                "timestamp": _nullable(_UNIX_TIME),
                "action": {
                    "enum": ["buy", "sell", "swap"],
                    "description": (
                        "`buy` when the wallet gave the higher-ranked asset (USDC = USDT > SOL >"
                        " other tokens), `sell` when it received it, `swap` when both rank equal."
                    ),
                },
                "dex": _nullable({"type": "string", "examples": ["RAYDIUM", "PUMP_AMM"]}),
                "token_in": {**_ref("TokenAmount"), "description": "What the wallet gave."},
                "token_out": {**_ref("TokenAmount"), "description": "What the wallet received."},
                "fee_sol": _nullable(_ref("Decimal")),
            },
            description="One swap seen from the wallet; one per transaction signature.",
        ),
        "Summary": _object(
            {
                "unique_tokens": {**_COUNT, "description": "Distinct mints, SOL included."},
                "buys": _COUNT,
                "sells": _COUNT,
                "swaps": _COUNT,
                "first_trade_at": _nullable(_UNIX_TIME),
                "last_trade_at": _nullable(_UNIX_TIME),
                "volume_sol": {**_ref("Decimal"), "description": "SOL spent plus SOL received."},
            },
            description="Of the trades this connection sent.",
        ),
        "ConnectedEvent": _object(
            {
                "stream_id": {"type": "string", "format": "uuid"},
                "wallet": _ref("Address"),
                "resumed_from": _nullable(_ref("Signature")),
                "timestamp": _UNIX_TIME,
            },
            description="`event: connected`, first.",
        ),
        "ProgressEvent": _object(
            {
                "step": {"type": "string", "examples": ["fetching", "scanning"]},
                "message": {"type": "string"},
                "signatures_scanned": _COUNT,
                "trades_found": _COUNT,
            },
            description="`event: progress`, while scanning.",
        ),
        "TradesEvent": _object(
            {
                "trades": {"type": "array", "items": _ref("Trade"), "minItems": 1},
                "batch": {
                    "type": "integer",
                    "minimum": 1,
                    "description": "1-based, per connection.",
                },
                "total": {"type": "integer", "minimum": 1, "description": "Trades sent so far."},
            },
            description="`event: trades`, with `id:` the last trade's signature.",
        ),
        "HeartbeatEvent": _object({"timestamp": _UNIX_TIME}, description="`event: heartbeat`."),
        "CompleteEvent": _object(
            {
                "trades_found": _COUNT,
                "signatures_scanned": {
                    **_COUNT,
                    "description": "Every transaction examined, trades or not.",
                },
                "duration_s": {"type": "number", "minimum": 0},
                "truncated": {
                    "type": "boolean",
                    "description": "`limit` or MAX_WALLET_TRADES ended the stream first.",
                },
                "summary": _ref("Summary"),
            },
            description="`event: complete`, last; the server then closes.",
        ),
        "ErrorEvent": _object(
            {
                "code": _ref("ErrorCode"),
                "error": {"type": "string"},
                "request_id": {"type": "string"},
                "stream_id": {"type": "string", "format": "uuid"},
                "retry_after": _COUNT,
                "last_event_id": {
                    **_nullable(_ref("Signature")),
                    "description": (
                        "On resumable codes: the cursor to resume from (the last `trades` id "
                        "sent, else the cursor the request started from, else null)."
                    ),
                },
            },
            optional=("retry_after", "last_event_id"),
            description="`event: error`, last; the server then closes.",
        ),
        "StreamEvent": _stream_event(),
        "Health": _object({"status": {"const": "ok"}}),
        "Ready": _object(
            {
                "status": {"enum": ["ok", "degraded", "starting", "draining"]},
                "reasons": {
                    "type": "array",
                    "items": {"enum": list(READY_REASONS)},
                    "description": "Degradations that keep the instance serving.",
                },
            }
        ),
    }


def _stream_event() -> dict[str, Any]:
    """One event of the stream as an EventSource sees it, its `data` typed per name."""
    names = {
        "connected": "ConnectedEvent",
        "progress": "ProgressEvent",
        "trades": "TradesEvent",
        "heartbeat": "HeartbeatEvent",
        "complete": "CompleteEvent",
        "error": "ErrorEvent",
    }
    variants = []
    for event, component in names.items():
        data = {"contentMediaType": "application/json", "contentSchema": _ref(component)}
        variant: dict[str, Any] = {"properties": {"event": {"const": event}, "data": data}}
        if event == "trades":
            variant["properties"]["id"] = _ref("Signature")
            variant["required"] = ["id"]
        variants.append(variant)
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"enum": list(names)},
            "data": {"type": "string", "description": "One JSON object."},
            "id": {
                "type": "string",
                "description": (
                    "Set by `trades` events only; an EventSource keeps the last one for "
                    "later events and sends it back as Last-Event-ID."
                ),
            },
            "retry": {"type": "integer", "minimum": 0},
        },
        "oneOf": variants,
        "description": _STREAM_DESCRIPTION,
    }


def _header(schema: dict[str, Any], description: str, *, required: bool = False) -> Any:
    header: dict[str, Any] = {"schema": schema, "description": description}
    if required:
        header["required"] = True
    return header


def _headers() -> dict[str, Any]:
    return {
        "X-Request-ID": _header(
            {"type": "string"}, "The request's correlation id: the client's, if safe, else new."
        ),
        "X-Stream-ID": _header({"type": "string", "format": "uuid"}, "This stream's id."),
        "RateLimit-Limit": _header(_COUNT, "Requests allowed per window."),
        "RateLimit-Remaining": _header(_COUNT, "Requests left in the current window."),
        "RateLimit-Reset": _header(_COUNT, "Seconds until the window frees a request."),
        "Retry-After": _header(_COUNT, "Seconds to wait before retrying."),
        "WWW-Authenticate": _header(
            {"const": "Bearer"}, "On AUTH_REQUIRED: a key is needed, as a bearer token."
        ),
    }


def _header_refs(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        ref = {"$ref": f"#/components/headers/{name}"}
        # A $ref's siblings are ignored in 3.1 headers, so required ones are inlined.
        out[name] = {**_headers()[name], "required": True} if name in required else ref
    return out


_RATE_LIMIT = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
# On every response: the boundary middleware runs before routing, even for 404s.
_REQUEST_ID = _header_refs("X-Request-ID", required=("X-Request-ID",))


def _error_response(status: int, description: str, headers: dict[str, Any]) -> dict[str, Any]:
    codes = HTTP_ERRORS[status]
    schema = {"allOf": [_ref("Error"), {"properties": {"code": {"enum": list(codes)}}}]}
    return {
        "description": f"{description} Codes: {', '.join(codes)}.",
        "headers": {**_REQUEST_ID, **headers},
        "content": {"application/json": {"schema": schema}},
    }


def _responses() -> dict[str, Any]:
    """components/responses: one per HTTP error status of SPEC §2."""
    return {
        "BadRequest": _error_response(
            400,
            "The address, a cursor (`before`, `Last-Event-ID`) or another parameter is invalid.",
            _header_refs(*_RATE_LIMIT, required=_RATE_LIMIT),
        ),
        "Unauthorized": _error_response(
            401,
            "No key given (AUTH_REQUIRED, with `WWW-Authenticate: Bearer`), or the key is "
            "malformed, unknown, revoked or expired.",
            _header_refs("WWW-Authenticate"),
        ),
        "Forbidden": _error_response(
            403,
            "The key lacks the operation's scope.",
            _header_refs(*_RATE_LIMIT, required=_RATE_LIMIT),
        ),
        "NotFound": _error_response(404, "No such route.", {}),
        "UriTooLong": _error_response(414, "The request line is over 8 KB.", {}),
        "TooManyRequests": _error_response(
            429,
            "Over the per-key (or, without keys, per-address) request window, or over the "
            "concurrent stream cap.",
            _header_refs("Retry-After", *_RATE_LIMIT, required=("Retry-After", *_RATE_LIMIT)),
        ),
        "HeadersTooLarge": _error_response(
            431, "A header line is over 8 KB, or all headers over 32 KB.", {}
        ),
        "InternalError": _error_response(
            500, "Unexpected; the log has the details (find them by X-Request-ID).", {}
        ),
        "ServiceUnavailable": _error_response(
            503,
            "The server is draining (shutting down); retry on another instance.",
            _header_refs("Retry-After", required=("Retry-After",)),
        ),
    }


def _errors(*statuses: int) -> dict[str, Any]:
    names = {
        400: "BadRequest",
        401: "Unauthorized",
        403: "Forbidden",
        404: "NotFound",
        414: "UriTooLong",
        429: "TooManyRequests",
        431: "HeadersTooLarge",
        500: "InternalError",
        503: "ServiceUnavailable",
    }
    # Every route: the request-size limits and the error boundary.
    every = sorted({*statuses, 414, 431, 500})
    return {str(status): {"$ref": f"#/components/responses/{names[status]}"} for status in every}


def _scoped_errors(settings: Settings) -> tuple[int, ...]:
    """The refusals of an operation with a scope: always the rate limit (per key, or per
    client address without keys), and the key checks when keys are required."""
    return (401, 403, 429) if settings.api_key_required else (429,)


def _stream_operation(settings: Settings) -> dict[str, Any]:
    scope = " Needs a key with scope `stream`." if settings.api_key_required else ""
    operation: dict[str, Any] = {
        "operationId": "streamWalletTrades",
        "tags": ["stream"],
        "summary": "Stream a wallet's trade history",
        "description": (
            "The wallet's trades, newest first, as Server-Sent Events. Every parameter is "
            "checked before the stream starts: bad input is an HTTP error, never an event." + scope
        ),
        "parameters": [
            {
                "name": "address",
                "in": "path",
                "required": True,
                "schema": _ref("Address"),
                "description": "The wallet. Anything but base58 of 32 bytes is INVALID_WALLET.",
            },
            {
                "name": "limit",
                "in": "query",
                "schema": {
                    "type": "integer",
                    "minimum": 1,
                    "maximum": settings.max_wallet_trades,
                    "default": settings.max_wallet_trades,
                },
                "description": "Stop after this many trades (`complete` says `truncated`).",
            },
            {
                "name": "before",
                "in": "query",
                "schema": {"type": "string", "pattern": _CURSOR_PATTERN},
                "description": (
                    "Resume strictly after (older than) this transaction signature. A malformed "
                    "or unknown one is INVALID_EVENT_ID; empty means none."
                ),
            },
            {
                "name": "Last-Event-ID",
                "in": "header",
                "schema": {"type": "string", "pattern": _CURSOR_PATTERN},
                "description": (
                    "What a browser's EventSource sends on reconnect: the id of the last "
                    "`trades` event. Same meaning as `before`, and wins over it."
                ),
            },
            {"$ref": "#/components/parameters/X-Request-ID"},
        ],
        "responses": {
            "200": {
                "description": "The stream.",
                "headers": {
                    **_header_refs(
                        "X-Stream-ID",
                        "X-Request-ID",
                        *_RATE_LIMIT,
                        required=("X-Stream-ID", "X-Request-ID", *_RATE_LIMIT),
                    ),
                    "Cache-Control": _header({"const": "no-cache"}, "Never cache a stream."),
                    "X-Accel-Buffering": _header({"const": "no"}, "Tells nginx not to buffer."),
                },
                "content": {"text/event-stream": {"schema": _ref("StreamEvent")}},
            },
            **_errors(400, 503, *_scoped_errors(settings)),
        },
    }
    if settings.api_key_required:
        operation["security"] = _ANY_KEY
    return operation


def _metrics_operation(settings: Settings) -> dict[str, Any]:
    text = {"schema": {"type": "string"}}
    operation: dict[str, Any] = {
        "operationId": "getMetrics",
        "tags": ["operations"],
        "summary": "Prometheus metrics",
        "description": (
            "Prometheus text exposition; OpenMetrics when the Accept header asks for it. "
            + (
                "Needs a key with scope `metrics`."
                if settings.api_key_required
                else "Counted against the caller's rate limit."
            )
        ),
        "parameters": [
            {
                "name": "name[]",
                "in": "query",
                "schema": {"type": "array", "items": {"type": "string"}},
                "style": "form",
                "explode": True,
                "description": "Only these metric families.",
            },
            {"$ref": "#/components/parameters/X-Request-ID"},
        ],
        "responses": {
            "200": {
                "description": "The exposition.",
                "headers": _header_refs(
                    "X-Request-ID", *_RATE_LIMIT, required=("X-Request-ID", *_RATE_LIMIT)
                ),
                "content": {"text/plain": text, "application/openmetrics-text": text},
            },
            **_errors(*_scoped_errors(settings)),
        },
    }
    if settings.api_key_required:
        operation["security"] = _ANY_KEY
    return operation


def _plain_operation(operation_id: str, summary: str, description: str) -> dict[str, Any]:
    return {
        "operationId": operation_id,
        "tags": ["operations"],
        "summary": summary,
        "description": description,
        "parameters": [{"$ref": "#/components/parameters/X-Request-ID"}],
    }


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "description": description,
        "headers": _REQUEST_ID,
        "content": {"application/json": {"schema": schema}},
    }


def _demo_operation(
    operation_id: str, summary: str, media_types: dict[str, str], *, name: bool = False
) -> dict[str, Any]:
    """GET / and its assets: public, cached by ETag, 404 while the flag is off."""
    operation = _plain_operation(
        operation_id,
        summary,
        "A page that streams a wallet in the browser. Served only while the feature flag "
        "FEATURE_DEMO_PAGE is on (development; it can change on SIGHUP), else 404.",
    )
    if name:
        operation["parameters"].insert(
            0,
            {
                "name": "name",
                "in": "path",
                "required": True,
                "schema": {"enum": list(DEMO_ASSETS)},
                "description": "Any other name is 404.",
            },
        )
    operation["parameters"].append(
        {
            "name": "If-None-Match",
            "in": "header",
            "schema": {"type": "string"},
            "description": "The ETag of a copy the client has: 304 when it is current.",
        }
    )
    cache_headers = {
        "ETag": _header({"type": "string"}, "The content's version.", required=True),
        "Cache-Control": _header({"const": "no-cache"}, "Revalidate on every load."),
    }
    text = {"type": "string"}
    content = {media_type: {"schema": text} for media_type in media_types}
    operation["responses"] = {
        "200": {
            "description": ", ".join(media_types.values()),
            "headers": {**_REQUEST_ID, **cache_headers},
            "content": content,
        },
        "304": {
            "description": "Not modified: the client's copy is current.",
            "headers": {**_REQUEST_ID, **cache_headers},
        },
        **_errors(404),
    }
    return operation


def _paths(settings: Settings) -> dict[str, Any]:
    ready_ok = {"allOf": [_ref("Ready"), {"properties": {"status": {"enum": ["ok", "degraded"]}}}]}
    ready_not = {
        "allOf": [
            _ref("Ready"),
            {
                "properties": {
                    "status": {"enum": ["starting", "draining"]},
                    "reasons": {"maxItems": 0},
                }
            },
        ]
    }
    paths: dict[str, Any] = {
        "/v4/wallet/{address}/stream": {"get": _stream_operation(settings)},
        "/health": {
            "get": {
                **_plain_operation(
                    "getHealth", "Liveness", "200 while the event loop runs. No key, not counted."
                ),
                "responses": {"200": _json(_ref("Health"), "Alive."), **_errors()},
            }
        },
        "/ready": {
            "get": {
                **_plain_operation(
                    "getReady",
                    "Readiness",
                    "Whether to send this instance new streams. `degraded` keeps serving "
                    "(a Redis outage must not take every instance out at once). "
                    "No key, not counted.",
                ),
                "responses": {
                    "200": _json(ready_ok, "Serving: `ok`, or `degraded` with its `reasons`."),
                    "503": _json(ready_not, "Starting or draining: send no new streams here."),
                    **_errors(),
                },
            }
        },
        "/openapi.json": {
            "get": {
                **_plain_operation("getOpenApi", "This document", "No key, not counted."),
                "responses": {
                    "200": _json({"type": "object"}, "OpenAPI 3.1."),
                    **_errors(),
                },
            }
        },
        "/": {"get": _demo_operation("getDemoPage", "Demo page", {"text/html": "The page."})},
        "/static/{name}": {
            "get": _demo_operation(
                "getDemoAsset",
                "Demo page asset",
                {
                    "text/javascript": "app.js",
                    "text/css": "app.css",
                    "image/svg+xml": "favicon.svg",
                },
                name=True,
            )
        },
    }
    if settings.metrics_port is None:  # else /metrics is on its own loopback listener only
        paths["/metrics"] = {"get": _metrics_operation(settings)}
    return paths


def openapi_document(settings: Settings) -> dict[str, Any]:
    """The OpenAPI 3.1 document of a walletd running with `settings`, as plain JSON data.

    Describes what this configuration serves: security only when keys are required, the
    `limit` bound from MAX_WALLET_TRADES, /metrics only when it is on this listener.
    The result shares nothing with this module: callers may change it.
    """
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "walletd",
            "version": __version__,
            "summary": "A Solana wallet's trade history over Server-Sent Events.",
            "description": (
                "Errors are JSON `{code, error, request_id, retry_after?}` before a stream "
                "starts, and one `error` event after. Rate-limited responses carry "
                "RateLimit-Limit, RateLimit-Remaining and RateLimit-Reset; 429 and 503 carry "
                "an exact Retry-After. Every response carries X-Request-ID."
            ),
            "license": {"name": "MIT", "identifier": "MIT"},
        },
        "tags": [
            {"name": "stream", "description": "The trade stream."},
            {"name": "operations", "description": "Probes, metrics and this document."},
        ],
        "paths": _paths(settings),
        "components": {
            "schemas": _schemas(),
            "responses": _responses(),
            "headers": _headers(),
            "parameters": {
                "X-Request-ID": {
                    "name": "X-Request-ID",
                    "in": "header",
                    "schema": {"type": "string"},
                    "description": (
                        "A correlation id, echoed back and logged. Used as given when it is 1 "
                        "to 128 of `A-Za-z0-9._:-`, else replaced by a new one."
                    ),
                }
            },
            "securitySchemes": _SECURITY_SCHEMES,
        },
    }
    return copy.deepcopy(document)  # the parts built from module constants are shared


@functools.lru_cache(maxsize=4)
def _encoded(settings: Settings) -> bytes:
    # Settings are frozen and hashable: one encoding per configuration, not per request.
    return orjson.dumps(openapi_document(settings))


async def openapi_handler(request: web.Request) -> web.Response:
    """GET /openapi.json: this app's document. Public: no key, not counted."""
    return web.Response(body=_encoded(request.app[SETTINGS]), content_type="application/json")
