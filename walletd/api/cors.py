"""CORS (SPEC §6) with aiohttp-cors: only ALLOWED_ORIGINS, never credentials, and the
headers a front end needs to read.

Credentials stay off whatever the origin list: keys are not cookies, and with
credentials on, every allowed origin (all of them in development, "*") could make a
visitor's browser send its cookies and HTTP auth here and read the answer.

Preflight requests are answered by aiohttp-cors's own OPTIONS routes, which carry no
scope: they are neither authenticated nor counted (a browser sends no key with them).
"""

from __future__ import annotations

import aiohttp_cors
from aiohttp import web

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
    for route in list(app.router.routes()):
        cors.add(route)
