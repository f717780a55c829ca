"""CORS (SPEC §6) with aiohttp-cors: only ALLOWED_ORIGINS, never credentials, and the
headers a front end needs to read.

Credentials stay off whatever the origin list: keys are not cookies, and with
credentials on, every allowed origin (all of them in development, "*") could make a
visitor's browser send its cookies and HTTP auth here and read the answer.

Preflight requests are answered by aiohttp-cors's own OPTIONS routes, which carry no
scope: they are neither authenticated nor counted (a browser sends no key with them).
The headers of actual requests are set by `cors_headers`, with every response's other
headers (boundary.add_response_headers), in place of aiohttp-cors's own hook, which
walked its router adapter and a ChainMap of options for every response (about 5 % of
a /health request's CPU, bench/request_load.py) to set the same two headers.
"""

from __future__ import annotations

from dataclasses import dataclass

import aiohttp_cors
from aiohttp import web
from aiohttp_cors.cors_config import _CorsConfigImpl
from multidict import CIMultiDict

# Readable by the page: the stream's and request's ids, and the rate-limit state.
EXPOSED = (
    "X-Stream-ID",
    "X-Request-ID",
    "RateLimit-Limit",
    "RateLimit-Remaining",
    "RateLimit-Reset",
    "Retry-After",
)
# What a client may send: its key, a resume cursor, a correlation id.
ALLOWED = ("Authorization", "X-API-Key", "Last-Event-ID", "X-Request-ID", "Cache-Control")
MAX_AGE_S = 600
_EXPOSED = ",".join(EXPOSED)


@dataclass(frozen=True, slots=True)
class CorsPolicy:
    """What actual (non-preflight) responses need: the origins, and the resources CORS
    covers (aiohttp-cors's semantics: routes added after enable_cors get no headers)."""

    origins: frozenset[str]
    resources: frozenset[web.AbstractResource]


CORS: web.AppKey[CorsPolicy] = web.AppKey("cors")


def cors_headers(request: web.Request, app: web.Application, headers: CIMultiDict[str]) -> None:
    """Access-Control-Expose-Headers and -Allow-Origin for an allowed Origin (CORS 6.1),
    as aiohttp-cors sets them; never -Allow-Credentials."""
    origin = request.headers.get("Origin")
    if origin is None or request.method == "OPTIONS":
        return  # not a CORS request, or a preflight: aiohttp-cors's handler answers it
    policy = app.get(CORS)
    if policy is None or not (origin in policy.origins or "*" in policy.origins):
        return
    if request.match_info.route.resource not in policy.resources:
        return
    headers["Access-Control-Expose-Headers"] = _EXPOSED
    headers["Access-Control-Allow-Origin"] = origin


def enable_cors(app: web.Application, origins: tuple[str, ...]) -> None:
    """CORS on every route added so far; nothing at all without origins."""
    if not origins:
        return
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False,
        expose_headers=EXPOSED,
        allow_headers=ALLOWED,
        allow_methods=["GET"],
        max_age=MAX_AGE_S,
    )
    cors = aiohttp_cors.setup(app, defaults=dict.fromkeys(origins, options))
    routes = list(app.router.routes())
    for route in routes:
        cors.add(route)
    # aiohttp-cors's hook for actual requests is replaced by cors_headers (see above).
    # Should a future aiohttp-cors hook differently, its own hook stays and none is added.
    hooks = app.on_response_prepare
    theirs = [h for h in hooks if isinstance(getattr(h, "__self__", None), _CorsConfigImpl)]
    if len(theirs) == 1:
        hooks.remove(theirs[0])
        resources = frozenset(r.resource for r in routes if r.resource is not None)
        app[CORS] = CorsPolicy(frozenset(origins), resources)
