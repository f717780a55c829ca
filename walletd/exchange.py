"""What the request chain knows of a route, and what it learns of each request.

A route's `RouteRules` are worked out once, when the route is added
(walletd/api/boundary.py). Each request gets one `Exchange`, made by the boundary and
filled in by access control (walletd/auth/middleware.py); the response's headers, the
access line and streams read it. One object per request rather than a request key per
fact: aiohttp's request is a mapping whose every get and set goes through Python-level
methods (bench/README.md, round two).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from multidict import CIMultiDict

if TYPE_CHECKING:
    from walletd.auth.keys import KeyRecord
    from walletd.limits import Verdict


class RouteRules:
    """One route's part of every request: its labels, its scope, and the headers every
    response of it carries whatever the request."""

    __slots__ = ("cors_origins", "headers", "label", "path", "scope")

    def __init__(self, path: str | None, scope: str | None, headers: CIMultiDict[str]) -> None:
        self.path = path  # the canonical path; None for the catch-all of unknown paths
        self.label = path or "unmatched"  # the HTTP metric's route label
        self.scope = scope  # the key scope it needs; None: public, not counted
        self.headers = headers  # set on every response of the route as they are
        # The origins whose actual requests get CORS headers (SPEC §6); None: no CORS.
        self.cors_origins: frozenset[str] | None = None


class Exchange:
    """One request, as the boundary and access control learn about it."""

    __slots__ = ("client_ip", "key", "request_id", "rules", "subject", "verdict")

    def __init__(self, request_id: str, rules: RouteRules, client_ip: str) -> None:
        self.request_id = request_id
        self.rules = rules
        self.client_ip = client_ip  # resolved through TRUSTED_PROXIES (auth/middleware.py)
        self.subject: str | None = None  # whom limits count: "key:<id>" or "ip:<address>"
        self.verdict: Verdict | None = None  # this request's rate-limit outcome
        self.key: KeyRecord | None = None  # the caller's key, when keys are required
