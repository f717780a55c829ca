"""Logging: one JSON object per line on stdout, with correlation ids from contextvars."""

from __future__ import annotations

import contextvars
import logging
import sys

from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, Request, StreamResponse
from pythonjsonlogger.json import JsonFormatter

from walletd.appkeys import REQUEST_ID

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "request_id", default=None
)
client_ip_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "client_ip", default=None
)
api_key_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "api_key", default=None
)  # always masked (keys.mask_key) before it is set
stream_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "stream_id", default=None
)
wallet_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("wallet", default=None)
_CONTEXT = (
    ("request_id", request_id_var),
    ("client_ip", client_ip_var),
    ("api_key", api_key_var),
    ("stream_id", stream_id_var),
    ("wallet", wallet_var),
)


class ContextFilter(logging.Filter):
    """Copies the correlation ids of the current task onto every record."""

    def filter(self, record: logging.LogRecord) -> bool:
        for name, var in _CONTEXT:
            if not hasattr(record, name):
                value = var.get()
                if value is not None or name == "request_id":
                    setattr(record, name, value)
        return True


def configure_logging(level: str, fmt: str) -> None:
    """Route every logger to stdout (journald), as JSON lines or human-readable text."""
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(
            JsonFormatter(
                "{levelname}{name}{message}{request_id}",
                style="{",
                timestamp=True,  # ISO 8601 in UTC, from the record's creation time
                rename_fields={"levelname": "level", "name": "logger"},
            )
        )
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s request_id=%(request_id)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


class AccessLogger(AbstractAccessLogger):
    """One `http_request` line per request, with its correlation id.

    The path is logged without its query string: query values may carry credentials.
    """

    @property
    def enabled(self) -> bool:
        """Skip building the record when INFO is off (aiohttp asks before each call)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        try:
            resource = request.match_info.route.resource if isinstance(request, Request) else None
        except AssertionError:  # requests aiohttp builds for unparseable input have no route
            resource = None
        self.logger.info(
            "http_request",
            extra={
                "request_id": request.get(REQUEST_ID),
                "method": request.method,
                "path": request.path,
                "route": resource.canonical if resource is not None else None,
                "status": response.status,
                "bytes": response.body_length,
                "duration_ms": round(time * 1000, 3),
                "client_ip": request.remote,
            },
        )
