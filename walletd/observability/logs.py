"""Logging: one JSON object per line on stdout, with correlation ids from contextvars."""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import logging
import sys
from typing import Any

import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse
from pythonjsonlogger.orjson import OrjsonFormatter

from walletd.appkeys import EXCHANGE

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


class JsonLineFormatter(OrjsonFormatter):
    """python-json-logger's orjson formatter with a fast path for the common record (a
    str message, no exception or stack): the same line, half the time. Its generic
    path (a pass over defaults, static fields and renames for every line) was most of
    the access line's cost, itself 8 % of a request's CPU (bench/request_load.py)."""

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_info or record.exc_text or record.stack_info or isinstance(record.msg, dict):
            return super().format(record)
        record.message = message = record.getMessage()
        fields = record.__dict__
        out = {
            "level": record.levelname,
            "logger": record.name,
            "message": message,
            "request_id": fields.get("request_id"),
        }
        skip = self._skip_fields
        for key, value in fields.items():
            if key not in skip and not key.startswith("_"):
                out[key] = value
        out["timestamp"] = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        return orjson.dumps(out, default=self.json_default, option=orjson.OPT_NON_STR_KEYS).decode()


class BatchingHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A line per record, written in batches: a busy server writes three lines per
    stream, and a write(2) per line cost more than formatting them
    (bench/instrumentation_load.py).

    A line waits at most FLUSH_S (a timer on the event loop; logging from any other
    thread writes at once). WARNING and above go out at once, and everything at exit
    (logging.shutdown closes handlers).
    """

    FLUSH_S = 0.1

    def __init__(self, fd: int) -> None:
        # Its own buffer over the descriptor: sys.stdout may be unbuffered (PYTHONUNBUFFERED).
        super().__init__(open(fd, "w", buffering=1 << 16, encoding="utf-8", closefd=False))
        self._timer: asyncio.TimerHandle | None = None

    def flush(self) -> None:
        """Called by emit() after every record: schedule the write rather than do it."""
        if self._timer is not None:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread
            self.flush_now()
            return
        self._timer = loop.call_later(self.FLUSH_S, self.flush_now)

    def flush_now(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        super().flush()

    def write_line(self, line: str) -> None:
        """Write a line formatted without a LogRecord (the access line), as emit() does."""
        with self.lock:  # type: ignore[union-attr]
            self.stream.write(line + self.terminator)
            self.flush()

    def emit(self, record: logging.LogRecord) -> None:
        super().emit(record)
        if record.levelno >= logging.WARNING:
            self.flush_now()

    def close(self) -> None:
        self.flush_now()
        super().close()


def json_formatter() -> JsonLineFormatter:
    # orjson rather than the json module: a line costs 13 µs instead of 21, and a stream
    # writes two (bench/instrumentation_load.py).
    return JsonLineFormatter(
        "{levelname}{name}{message}{request_id}",
        style="{",
        timestamp=True,  # ISO 8601 in UTC, from the record's creation time
        rename_fields={"levelname": "level", "name": "logger"},
    )


def configure_logging(level: str, fmt: str) -> None:
    """Route every logger to stdout (journald), as JSON lines or human-readable text."""
    # What no line shows, not gathered for every record (the logging docs' "Optimization"):
    # the caller's frame, thread and process names cost a few µs per record.
    logging._srcfile = None
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    handler = BatchingHandler(sys.stdout.fileno())
    handler.addFilter(ContextFilter())
    if fmt == "json":
        handler.setFormatter(json_formatter())
    else:
        handler.setFormatter(
            logging.Formatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s request_id=%(request_id)s"
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    global _json_sink
    _json_sink = handler if fmt == "json" else None


# Where JSON lines go for info_line; None with text lines (configure_logging).
_json_sink: BatchingHandler | None = None


def info_line(logger: logging.Logger, record: dict[str, Any]) -> None:
    """An INFO line of `record`: level, logger and message first, then its fields (from
    request_id on), for the lines written per request and per stream.

    With JSON lines it is written here, without a LogRecord: the same object as
    JsonLineFormatter's with ContextFilter's ids (test_logs), at a third of the cost of
    going through `logging` (record, filter, lock, format), which was 15 % of a /health
    request's CPU (bench/request_load.py). With text lines it goes through `logger`.
    The caller has checked that INFO is enabled.
    """
    if _json_sink is not None:
        _json_sink.write_line(_finish_line(record))
        return
    del record["level"], record["logger"]
    logger.info(record.pop("message"), extra=record)


class AccessLogger(AbstractAccessLogger):
    """One `http_request` line per request (`info_line`), with its correlation id.

    The path is logged without its query string: query values may carry credentials.
    """

    @property
    def enabled(self) -> bool:
        """Skip building the record when INFO is off (aiohttp asks before each call)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        try:
            exchange = request[EXCHANGE]
        except KeyError:  # refused by aiohttp before routing: the peer, no ids
            request_id = route = None
            client_ip = request.remote
        else:
            request_id, route = exchange.request_id, exchange.rules.path
            client_ip = exchange.client_ip
        # In the order of json_line's object (test_logs checks it), built in place.
        info_line(
            self.logger,
            {
                "level": "INFO",
                "logger": self.logger.name,
                "message": "http_request",
                "request_id": request_id,
                "method": request.method,
                "path": request.path,
                "route": route,  # None for unknown paths
                "status": response.status,
                "bytes": response.body_length,
                # Whole µs in ms: round(time * 1000, 3)'s value at a fifth of its cost.
                "duration_ms": round(time * 1_000_000) / 1000,
                "client_ip": client_ip,
            },
        )


def json_line(logger: str, message: str, fields: dict[str, Any]) -> str:
    """The line JsonLineFormatter writes for an INFO record of `message` with `fields`
    as its extra (which start with request_id) and ContextFilter's other ids."""
    return _finish_line({"level": "INFO", "logger": logger, "message": message, **fields})


def _finish_line(out: dict[str, Any]) -> str:
    """`out` (level, logger, message, then the extra fields) with ContextFilter's other
    ids and the timestamp, as one JSON line."""
    for name, var in _CONTEXT:
        if name not in out and (value := var.get()) is not None:
            out[name] = value
    out["timestamp"] = datetime.datetime.now(tz=datetime.UTC)
    # Without OPT_NON_STR_KEYS, which the formatter needs for any record's extras (30 %
    # of this dumps): the lines written this way (http_request, stream_finished) are
    # built by walletd with str keys and scalar values only.
    return orjson.dumps(out).decode()
