"""components/* of /openapi.json: schemas, headers, responses, security schemes.

The event and error schemas are generated from walletd/stream/events.py (the types the
stream handler builds its events with); the error lists come from the error catalogue
(walletd/errors.py). Only what no type says is written here: the stream's framing,
/health and /ready, headers and responses.
"""

from __future__ import annotations

from typing import Any

from walletd.api.jsonschema import SchemaBuilder, ref
from walletd.errors import HTTP_ERRORS, RESUMABLE_CODES, AuthRequired
from walletd.stream.events import EVENT_TYPES, SIGNATURE_PATTERN, Error

READY_REASONS = ("upstream_circuit_open", "redis_unreachable", "keystore_stale")
# Empty means "no cursor", as if absent.
CURSOR_PATTERN = f"^({SIGNATURE_PATTERN.strip('^$')})?$"
_SIG = SIGNATURE_PATTERN.strip("^$")
FOLLOW_CURSOR_PATTERN = f"^({_SIG}([.]{_SIG})?)?$"  # follow streams: `<oldest>.<head>` too
COUNT = {"type": "integer", "minimum": 0}

SECURITY_SCHEMES = {
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
ANY_KEY: list[dict[str, list[str]]] = [{"bearerKey": []}, {"headerKey": []}, {"queryKey": []}]

_RESUMABLE = ", ".join(f"`{code}`" for code in RESUMABLE_CODES)
_STREAM_DESCRIPTION = f"""\
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
  can be resumed ({_RESUMABLE}) carry `last_event_id`: reconnect with it.

Every event is `event: <name>` plus one `data:` line holding a JSON object. This schema
describes one event as an `EventSource` parses it (the role OpenAPI 3.2's `itemSchema`
plays); each event's `data` is one of the `*Event` components.
"""


def schemas() -> dict[str, Any]:
    """components/schemas: every event payload and the error body, generated from their
    types (with the trade, summary, address... they use), and the stream and probes."""
    builder = SchemaBuilder()
    builder.schema(Error)
    for payload in EVENT_TYPES.values():
        builder.schema(payload)
    return {
        **builder.components,
        "StreamEvent": _stream_event(),
        "Health": {
            "type": "object",
            "required": ["status"],
            "properties": {"status": {"const": "ok"}},
        },
        "Ready": {
            "type": "object",
            "required": ["status", "reasons"],
            "properties": {
                "status": {"enum": ["ok", "degraded", "starting", "draining"]},
                "reasons": {
                    "type": "array",
                    "items": {"enum": list(READY_REASONS)},
                    "description": "Degradations that keep the instance serving.",
                },
            },
        },
    }


def _stream_event() -> dict[str, Any]:
    """One event of the stream as an EventSource sees it, its `data` typed per name."""
    variants = []
    for event, payload in EVENT_TYPES.items():
        data = {"contentMediaType": "application/json", "contentSchema": ref(payload.__name__)}
        variant: dict[str, Any] = {"properties": {"event": {"const": event}, "data": data}}
        if event == "trades":
            variant["properties"]["id"] = ref("EventId")
            variant["required"] = ["id"]
        elif event == "caught_up":  # the head; none for a wallet without transactions
            variant["properties"]["id"] = ref("EventId")
        variants.append(variant)
    return {
        "type": "object",
        "required": ["event", "data"],
        "properties": {
            "event": {"enum": list(EVENT_TYPES)},
            "data": {"type": "string", "description": "One JSON object."},
            "id": {
                "type": "string",
                "description": (
                    "Set by `trades` events (and a follow stream's `caught_up`) only; an "
                    "EventSource keeps the last one for later events and sends it back as "
                    "Last-Event-ID."
                ),
            },
            "retry": {"type": "integer", "minimum": 0},
        },
        "oneOf": variants,
        "description": _STREAM_DESCRIPTION,
    }


def header(schema: dict[str, Any], description: str, *, required: bool = False) -> Any:
    header: dict[str, Any] = {"schema": schema, "description": description}
    if required:
        header["required"] = True
    return header


def headers() -> dict[str, Any]:
    return {
        "X-Request-ID": header(
            {"type": "string"}, "The request's correlation id: the client's, if safe, else new."
        ),
        "X-Stream-ID": header({"type": "string", "format": "uuid"}, "This stream's id."),
        "RateLimit-Limit": header(COUNT, "Requests allowed per window."),
        "RateLimit-Remaining": header(COUNT, "Requests left in the current window."),
        "RateLimit-Reset": header(COUNT, "Seconds until the window frees a request."),
        "Retry-After": header(COUNT, "Seconds to wait before retrying."),
        "WWW-Authenticate": header(
            {"const": AuthRequired.challenge},
            "On AUTH_REQUIRED: a key is needed, as a bearer token.",
        ),
    }


def header_refs(*names: str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in names:
        ref = {"$ref": f"#/components/headers/{name}"}
        # A $ref's siblings are ignored in 3.1 headers, so required ones are inlined.
        out[name] = {**headers()[name], "required": True} if name in required else ref
    return out


RATE_LIMIT = ("RateLimit-Limit", "RateLimit-Remaining", "RateLimit-Reset")
# On every response: every route is behind the boundary, the catch-all of 404s included.
REQUEST_ID = header_refs("X-Request-ID", required=("X-Request-ID",))


def _error_response(status: int, description: str, headers: dict[str, Any]) -> dict[str, Any]:
    codes = HTTP_ERRORS[status]
    schema = {"allOf": [ref("Error"), {"properties": {"code": {"enum": list(codes)}}}]}
    return {
        "description": f"{description} Codes: {', '.join(codes)}.",
        "headers": {**REQUEST_ID, **headers},
        "content": {"application/json": {"schema": schema}},
    }


def responses() -> dict[str, Any]:
    """components/responses: one per HTTP error status of SPEC §2."""
    return {
        "BadRequest": _error_response(
            400,
            "The address, a cursor (`before`, `Last-Event-ID`) or another parameter is invalid.",
            header_refs(*RATE_LIMIT, required=RATE_LIMIT),
        ),
        "Unauthorized": _error_response(
            401,
            "No key given (AUTH_REQUIRED, with `WWW-Authenticate: Bearer`), or the key is "
            "malformed, unknown, revoked or expired.",
            header_refs("WWW-Authenticate"),
        ),
        "Forbidden": _error_response(
            403,
            "The key lacks the operation's scope.",
            header_refs(*RATE_LIMIT, required=RATE_LIMIT),
        ),
        "NotFound": _error_response(404, "No such route.", {}),
        "UriTooLong": _error_response(414, "The request line is over 8 KB.", {}),
        "TooManyRequests": _error_response(
            429,
            "Over the per-key (or, without keys, per-address) request window, or over the "
            "concurrent stream cap.",
            header_refs("Retry-After", *RATE_LIMIT, required=("Retry-After", *RATE_LIMIT)),
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
            header_refs("Retry-After", required=("Retry-After",)),
        ),
    }


def error_refs(*statuses: int) -> dict[str, Any]:
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
