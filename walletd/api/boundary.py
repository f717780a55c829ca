"""The boundary every route's handler is wrapped in (request context, access control,
error rendering, metrics), the catch-all route of 404/405, and the headers every response
carries."""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Awaitable, Callable

import orjson
from aiohttp import hdrs, web
from multidict import CIMultiDict

from walletd.api.cors import cors_headers
from walletd.appkeys import EXCHANGE, METRICS, ROUTE_RULES, SETTINGS
from walletd.auth.middleware import ROUTE_SCOPES, Admission, client_ip, rate_limit_headers
from walletd.errors import (
    Forbidden,
    InternalError,
    MethodNotAllowed,
    NotFound,
    RequestTooLarge,
    ServiceUnavailable,
    WalletdError,
)
from walletd.exchange import Exchange, RouteRules
from walletd.headers import REQUEST_ID
from walletd.observability.logs import bind_ids
from walletd.observability.metrics import Metrics

log = logging.getLogger(__name__)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

# Kept low: aiohttp holds up to max_headers (128) fields of this size per request.
PARSER_LIMITS = {"max_line_size": 16 * 1024, "max_field_size": 16 * 1024}
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
SECURITY_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    # An API response loads nothing and is framed by nobody (OWASP's REST advice).
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'",
}
# The demo page, an HTML document, loads its own scripts and styles and connects back.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
HSTS = "max-age=31536000; includeSubDomains"
# Instead of aiohttp's "Python/3.11 aiohttp/<version>": no versions for scanners to match.
SERVER = "walletd"


class _RandomHex:
    """32 random hex digits at a time, cut from a batch of os.urandom's: one getrandom(2)
    per REQUEST_ID_BATCH requests instead of one per request (raw aiohttp makes none).
    Still random rather than a counter behind a random prefix: a counter would show
    anyone holding two ids how many requests this process served in between."""

    def __init__(self) -> None:
        self._hex = ""
        self._at = 0

    def __call__(self) -> str:
        at = self._at
        if at == len(self._hex):
            self._hex = os.urandom(16 * REQUEST_ID_BATCH).hex()
            at = 0
        self._at = at + 32
        return self._hex[at : at + 32]

    def forget(self) -> None:
        """In a forked child: parent and child must not hand out the same ids."""
        self._hex = ""
        self._at = 0


REQUEST_ID_BATCH = 256
# One per process, like the system's random source it draws on.
new_request_id = _RandomHex()
os.register_at_fork(after_in_child=new_request_id.forget)


def route_rules(
    app: web.Application, resource: web.AbstractResource | None, *, document: bool = False
) -> RouteRules:
    """What every request of `resource`'s routes needs (None: the catch-all of unknown
    paths and methods): its metric label and scope, and the headers of every response,
    security headers (the page's CSP for an HTML `document`), HSTS in production."""
    headers = CIMultiDict(SECURITY_HEADERS)
    if document:
        headers["Content-Security-Policy"] = PAGE_CSP
    if app[SETTINGS].is_production:
        headers["Strict-Transport-Security"] = HSTS
    headers["Server"] = SERVER
    if resource is None:
        return RouteRules(None, None, headers)
    return RouteRules(resource.canonical, ROUTE_SCOPES.get(resource.name or ""), headers)


def guard(app: web.Application, rules: RouteRules, handler: Handler) -> Handler:
    """`handler` behind the boundary, for a route of these `rules`: a request id for the
    response and every log line, access control (walletd/auth/middleware.py
    `Admission`), SPEC §2 JSON for every error (nothing internal reaches the client),
    and the request counted by route and status.

    Wrapped at registration rather than run as an aiohttp middleware: a middleware brings
    aiohttp's per-app wrapper (another coroutine, and a cached rebuild of the chain) into
    every request, and one more frame held for as long as a stream lives (idle streams
    are counted by the ten thousand). What a request needs of its route is worked out
    once, in its `rules`.

    aiohttp runs each request in a task of its own, so the log context set here and
    below is this request's alone and ends with it. Streams render their own failures
    as `error` events once prepared; an exception escaping a prepared response can only
    be logged.
    """
    label = rules.label
    metrics = app[METRICS]
    trusted = app[SETTINGS].trusted_proxies
    admission = Admission(app)

    async def guarded(request: web.Request) -> web.StreamResponse:
        given = request.headers.get(REQUEST_ID)
        if given is None or not _SAFE_REQUEST_ID.fullmatch(given):
            given = new_request_id()
        exchange = Exchange(given, rules, client_ip(request, trusted))
        request[EXCHANGE] = exchange
        # Every line of this request names it and its client, refusals included.
        bind_ids(request_id=given, client_ip=exchange.client_ip)
        status: int | str = "client_closed"  # unless a response comes back
        try:
            try:
                await admission(request, exchange)
                resp = await handler(request)
            except WalletdError as exc:
                resp = error_response(exchange, exc, metrics)
            except web.HTTPException as exc:
                if exc.status < 400:
                    add_response_headers(request, exchange, exc)
                    raise  # redirects and the like are not errors
                resp = error_response(exchange, _from_http(exc), metrics)
                if hdrs.ALLOW in exc.headers:
                    resp.headers[hdrs.ALLOW] = exc.headers[hdrs.ALLOW]
            except Exception:
                log.exception("unhandled_error", extra={"path": request.path})
                resp = error_response(exchange, InternalError(), metrics)
            status = resp.status
        finally:
            metrics.http_request(label, request.method, status)
        if not resp.prepared:  # a stream's were added before its prepare()
            add_response_headers(request, exchange, resp)
        return resp

    return guarded


def add_get(
    app: web.Application,
    path: str,
    handler: Handler,
    *,
    name: str,
    allow_head: bool = True,
    document: bool = False,
) -> web.Resource:
    """`router.add_get` with the handler behind the boundary (`guard`); `document`: the
    route serves an HTML page (its CSP lets it load its own scripts and styles)."""
    resource = app.router.add_resource(path, name=name)
    rules = app.setdefault(ROUTE_RULES, {})[resource] = route_rules(
        app, resource, document=document
    )
    guarded = guard(app, rules, handler)
    if allow_head:
        resource.add_route(hdrs.METH_HEAD, guarded)
    resource.add_route(hdrs.METH_GET, guarded)
    return resource


def add_unmatched(app: web.Application) -> None:
    """The last route: SPEC §2's 404 for an unknown path, 405 (with `Allow`) for a known
    path and another method. aiohttp's router tries a matching path's other resources
    when the method does not match, and reaches this one whatever the path, so which of
    the two it is, is worked out here, from the routes above; only for errors."""
    catch_all = app.router.add_resource(r"/{path:[\s\S]*}")

    async def unmatched(request: web.Request) -> web.StreamResponse:
        allowed: set[str] = set()
        for resource in app.router.resources():
            if resource is not catch_all:
                allowed |= (await resource.resolve(request))[1]
        if allowed:  # rendered by the boundary, as aiohttp's own 405 was, Allow and all
            raise web.HTTPMethodNotAllowed(request.method, allowed)
        raise web.HTTPNotFound()

    catch_all.add_route(hdrs.METH_ANY, guard(app, route_rules(app, None), unmatched))


def _from_http(exc: web.HTTPException) -> WalletdError:
    if exc.status == 404:
        return NotFound(exc.reason)
    if exc.status == 405:
        return MethodNotAllowed(exc.reason)
    if exc.status == 403:  # aiohttp-cors refusing a preflight
        return Forbidden(exc.reason, message="Cross-origin request not allowed")
    if exc.status in (413, 414, 431):
        return RequestTooLarge(exc.reason)
    log.warning("unmapped_http_error", extra={"status": exc.status})
    return InternalError(f"HTTP {exc.status}")


def error_response(exchange: Exchange, exc: WalletdError, metrics: Metrics) -> web.Response:
    metrics.rejected(exc)
    if exc.status >= 500:
        # A 503 is the server working as designed (draining, circuit open): not an error
        # line on every deploy.
        level = logging.WARNING if isinstance(exc, ServiceUnavailable) else logging.ERROR
        log.log(level, "request_failed", extra={"code": exc.code, "detail": str(exc)})
    # orjson rather than json_response's json.dumps: 1.5 µs instead of 3.7 per error.
    body = orjson.dumps(exc.body(exchange.request_id))
    resp = web.Response(
        body=body, status=exc.status, content_type="application/json", charset="utf-8"
    )
    if exc.retry_after is not None:
        resp.headers[hdrs.RETRY_AFTER] = str(exc.retry_after)
    if exc.challenge is not None:
        resp.headers[hdrs.WWW_AUTHENTICATE] = exc.challenge
    return resp


def add_response_headers(
    request: web.Request, exchange: Exchange, resp: web.StreamResponse
) -> None:
    """The headers every response carries: its route's (security headers, HSTS), the
    request id, RateLimit-* and CORS. Set by the boundary on the response a handler
    returns, and by a stream before its prepare(); not from an on_response_prepare hook,
    whose signal dispatch alone cost about 3 % of a /health request
    (bench/request_load.py)."""
    headers = resp.headers
    rules = exchange.rules
    headers.extend(rules.headers)
    headers[REQUEST_ID] = exchange.request_id
    verdict = exchange.verdict
    if verdict is not None:
        rate_limit_headers(verdict, headers)
    if rules.cors_origins is not None:
        cors_headers(request, rules.cors_origins, headers)
