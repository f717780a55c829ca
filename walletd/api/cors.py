"""CORS (SPEC §6) with aiohttp-cors: only ALLOWED_ORIGINS, never credentials, and the
headers a front end needs to read.

Credentials stay off whatever the origin list: keys are not cookies, and with
credentials on, every allowed origin (all of them in development, "*") could make a
visitor's browser send its cookies and HTTP auth here and read the answer.

Preflight requests are answered by aiohttp-cors's own OPTIONS routes, which carry no
scope: they are neither authenticated nor counted (a browser sends no key with them).
Their handler goes behind the boundary like every other route's (`Guard`).
The headers of actual requests are set by `cors_headers`, with every response's other
headers (boundary.add_response_headers), in place of aiohttp-cors's own hook, which
walked its router adapter and a ChainMap of options for every response (about 5 % of
a /health request's CPU, bench/request_load.py) to set the same two headers.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp_cors
from aiohttp import hdrs, web
from aiohttp.typedefs import Handler
from aiohttp_cors.cors_config import _CorsConfigImpl
from aiohttp_cors.urldispatcher_router_adapter import ResourcesUrlDispatcherRouterAdapter
from multidict import CIMultiDict

from walletd.appkeys import ROUTE_RULES

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


def cors_headers(request: web.Request, origins: frozenset[str], headers: CIMultiDict[str]) -> None:
    """Access-Control-Expose-Headers and -Allow-Origin for an allowed Origin (CORS 6.1),
    as aiohttp-cors sets them, on a route CORS covers (its RouteRules' `origins`: never
    a preflight's, which aiohttp-cors's handler answers); never -Allow-Credentials."""
    origin = request.headers.get(hdrs.ORIGIN)
    if origin is not None and (origin in origins or "*" in origins):
        headers[hdrs.ACCESS_CONTROL_EXPOSE_HEADERS] = _EXPOSED
        headers[hdrs.ACCESS_CONTROL_ALLOW_ORIGIN] = origin


# Puts a preflight route's handler behind the request boundary (boundary.guard).
Guard = Callable[[web.AbstractResource, Handler], Handler]


class _GuardedRoutes(ResourcesUrlDispatcherRouterAdapter):
    """aiohttp-cors's router adapter, with each preflight route's handler guarded."""

    def __init__(self, router: web.UrlDispatcher, defaults: Any, guard: Guard) -> None:
        super().__init__(router, defaults)
        self._guard = guard

    # The abstract adapter's signature has a `webview` flag that this one never had.
    def add_preflight_handler(self, routing_entity: Any, handler: Handler) -> None:  # type: ignore[override]
        if isinstance(routing_entity, web.Resource) and not self.is_cors_for_resource(
            routing_entity
        ):
            handler = self._guard(routing_entity, handler)
        super().add_preflight_handler(routing_entity, handler)  # routes come back here


def enable_cors(app: web.Application, origins: tuple[str, ...], guard: Guard) -> None:
    """CORS on every route added so far, its preflight routes behind `guard`; nothing
    at all without origins."""
    if not origins:
        return
    options = aiohttp_cors.ResourceOptions(  # type: ignore[no-untyped-call]
        allow_credentials=False,
        expose_headers=EXPOSED,
        allow_headers=ALLOWED,
        allow_methods=["GET"],
        max_age=MAX_AGE_S,
    )
    defaults = dict.fromkeys(origins, options)
    adapter = _GuardedRoutes(app.router, defaults, guard)
    cors = aiohttp_cors.CorsConfig(app, defaults=defaults, router_adapter=adapter)
    routes = list(app.router.routes())
    for route in routes:
        cors.add(route)
    # aiohttp-cors's hook for actual requests is replaced by cors_headers (see above).
    # Should a future aiohttp-cors hook differently, its own hook stays and none is added.
    hooks = app.on_response_prepare
    theirs = [h for h in hooks if isinstance(getattr(h, "__self__", None), _CorsConfigImpl)]
    if len(theirs) == 1:
        hooks.remove(theirs[0])
        covered = frozenset(origins)
        rules = app[ROUTE_RULES]
        for route in routes:
            if route.resource in rules:
                rules[route.resource].cors_origins = covered
