"""GET /health (liveness) and GET /ready (readiness)."""

from __future__ import annotations

from aiohttp import web

from walletd.appkeys import BREAKER, KEYSTORE, LIFECYCLE, LIMITS
from walletd.ops.lifecycle import Phase
from walletd.upstream.breaker import CircuitState

_OK = b'{"status": "ok"}'  # json_response's bytes, encoded once


async def health(request: web.Request) -> web.Response:
    """200 while the event loop runs: answering at all is the signal."""
    return web.Response(body=_OK, content_type="application/json", charset="utf-8")


async def ready(request: web.Request) -> web.Response:
    """503 while starting or draining, so a load balancer sends no new streams here.

    `reasons` lists degradations that keep the instance serving (SPEC §1).
    """
    phase = request.app[LIFECYCLE].phase
    if phase is not Phase.READY:
        return web.json_response({"status": phase.value, "reasons": []}, status=503)
    reasons: list[str] = []
    if request.app[BREAKER].state is not CircuitState.CLOSED:
        reasons.append("upstream_circuit_open")
    if request.app[LIMITS].degraded:
        reasons.append("redis_unreachable")  # serving on per-process limits meanwhile
    if KEYSTORE in request.app and request.app[KEYSTORE].stale:
        reasons.append("keystore_stale")  # key records too old to trust: keys get 503
    return web.json_response({"status": "degraded" if reasons else "ok", "reasons": reasons})
