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
from walletd.api.jsonschema import ref
from walletd.api.openapi_components import (
    ANY_KEY,
    CURSOR_PATTERN,
    FOLLOW_CURSOR_PATTERN,
    RATE_LIMIT,
    REQUEST_ID,
    SECURITY_SCHEMES,
    error_refs,
    header,
    header_refs,
    headers,
    responses,
    schemas,
)
from walletd.appkeys import SETTINGS
from walletd.config import Settings

# GET /static/{name} (walletd/api/demo_page.py); index.html is served only as GET /.
DEMO_ASSETS = ("app.js", "chart.js", "app.css", "favicon.svg")


def _scopederror_refs(settings: Settings) -> tuple[int, ...]:
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
                "schema": ref("Address"),
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
                "schema": {"type": "string", "pattern": CURSOR_PATTERN},
                "description": (
                    "Resume strictly after (older than) this transaction signature. A malformed "
                    "or unknown one is INVALID_EVENT_ID; empty means none."
                ),
            },
            {
                "name": "follow",
                "in": "query",
                "schema": {"type": "string", "enum": ["true", "false"], "default": "false"},
                "description": (
                    "`true`: after the history, `caught_up` instead of `complete`, then live "
                    "`trades` as the wallet's transactions land (oldest first within an "
                    "event), with heartbeats between. Every `trades` event and `caught_up` "
                    "carry an id to resume from: `<oldest trade sent>.<head>` during the "
                    "history, then the newest signature scanned. Not with `before`."
                ),
            },
            {
                "name": "Last-Event-ID",
                "in": "header",
                "schema": {"type": "string", "pattern": FOLLOW_CURSOR_PATTERN},
                "description": (
                    "What a browser's EventSource sends on reconnect: the id of the last "
                    "event with one. Same meaning as `before`, and wins over it; on follow "
                    "streams also `<oldest>.<head>`."
                ),
            },
            {"$ref": "#/components/parameters/X-Request-ID"},
        ],
        "responses": {
            "200": {
                "description": "The stream.",
                "headers": {
                    **header_refs(
                        "X-Stream-ID",
                        "X-Request-ID",
                        *RATE_LIMIT,
                        required=("X-Stream-ID", "X-Request-ID", *RATE_LIMIT),
                    ),
                    "Cache-Control": header({"const": "no-cache"}, "Never cache a stream."),
                    "X-Accel-Buffering": header({"const": "no"}, "Tells nginx not to buffer."),
                },
                "content": {"text/event-stream": {"schema": ref("StreamEvent")}},
            },
            **error_refs(400, 503, *_scopederror_refs(settings)),
        },
    }
    if settings.api_key_required:
        operation["security"] = ANY_KEY
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
                "headers": header_refs(
                    "X-Request-ID", *RATE_LIMIT, required=("X-Request-ID", *RATE_LIMIT)
                ),
                "content": {"text/plain": text, "application/openmetrics-text": text},
            },
            **error_refs(*_scopederror_refs(settings)),
        },
    }
    if settings.api_key_required:
        operation["security"] = ANY_KEY
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
        "headers": REQUEST_ID,
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
        "ETag": header({"type": "string"}, "The content's version.", required=True),
        "Cache-Control": header({"const": "no-cache"}, "Revalidate on every load."),
    }
    text = {"type": "string"}
    content = {media_type: {"schema": text} for media_type in media_types}
    operation["responses"] = {
        "200": {
            "description": ", ".join(media_types.values()),
            "headers": {**REQUEST_ID, **cache_headers},
            "content": content,
        },
        "304": {
            "description": "Not modified: the client's copy is current.",
            "headers": {**REQUEST_ID, **cache_headers},
        },
        **error_refs(404),
    }
    return operation


def _paths(settings: Settings) -> dict[str, Any]:
    ready_ok = {"allOf": [ref("Ready"), {"properties": {"status": {"enum": ["ok", "degraded"]}}}]}
    ready_not = {
        "allOf": [
            ref("Ready"),
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
                "responses": {"200": _json(ref("Health"), "Alive."), **error_refs()},
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
                    **error_refs(),
                },
            }
        },
        "/openapi.json": {
            "get": {
                **_plain_operation("getOpenApi", "This document", "No key, not counted."),
                "responses": {
                    "200": _json({"type": "object"}, "OpenAPI 3.1."),
                    **error_refs(),
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
            "schemas": schemas(),
            "responses": responses(),
            "headers": headers(),
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
            "securitySchemes": SECURITY_SCHEMES,
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
