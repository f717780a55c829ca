"""Logging: one JSON object per line on stdout, with correlation ids from contextvars."""

from __future__ import annotations

import asyncio
import contextvars
import datetime
import functools
import logging
import os
import sys
import threading
from typing import Any

import orjson
from aiohttp.abc import AbstractAccessLogger
from aiohttp.web import BaseRequest, StreamResponse
from pythonjsonlogger.orjson import OrjsonFormatter

from walletd.appkeys import EXCHANGE


class _Ids(dict[str, str | None]):
    """A request's correlation ids: request_id (first, None until bound), client_ip,
    api_key (always masked, by keys.mask_key), stream_id, wallet, in the order they
    were bound; and, once a line has needed it, their JSON, which a stream's two lines
    share (InfoLine)."""

    json: bytes | None = None  # an instance's own once set


_UNBOUND = _Ids(request_id=None)  # outside requests; never changed
_ids: contextvars.ContextVar[_Ids] = contextvars.ContextVar("log_ids", default=_UNBOUND)


def bind_ids(**ids: str) -> None:
    """Name `ids` on every line the current request writes from now on.

    A request's ids are one object, made by its first bind (the boundary's: aiohttp
    runs each request in a task of its own, whose context has none) and completed in
    place by the later ones (auth, the stream). One variable rather than one per id: a
    line reads them with one lookup, and binding costs no more than setting variables
    did. Tasks the request starts share them, later binds included; a task that
    serves more than this request starts `detached()`.
    """
    bound = _ids.get()
    if bound is _UNBOUND:
        _ids.set(_Ids(_UNBOUND, **ids))
    else:
        bound.update(ids)
        if bound.json is not None:
            bound.json = None


def detached() -> contextvars.Context:
    """The current context without a request's ids, for a task that serves more than the
    request that happens to start it (a wallet's poller, a batch of window checks, an
    alert): its lines name no request, rather than that one."""
    context = contextvars.copy_context()
    context.run(_ids.set, _UNBOUND)
    return context


class ContextFilter(logging.Filter):
    """Copies the correlation ids of the current task onto every record (request_id
    always, None outside a request), unless the record names them itself."""

    def filter(self, record: logging.LogRecord) -> bool:
        fields = record.__dict__
        ids = fields["_log_ids"] = _ids.get()  # their order, for JsonLineFormatter
        for name, value in ids.items():  # request_id among them, None outside requests
            fields.setdefault(name, value)
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
            "request_id": None,
            **fields.get("_log_ids", {}),  # InfoLine's order: the ids, then the extras
        }
        skip = self._skip_fields
        for key, value in fields.items():
            if key not in skip and not key.startswith("_"):
                out[key] = value
        out["timestamp"] = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        return orjson.dumps(out, default=self.json_default, option=orjson.OPT_NON_STR_KEYS).decode()


class BatchingHandler(logging.Handler):
    """A line per record, written to a descriptor in batches: a busy server writes two
    lines per stream, and a write(2) per line cost more than formatting them
    (bench/instrumentation_load.py).

    Lines wait in one buffer, as UTF-8, at most FLUSH_S (a timer on the event loop) or
    until it holds LIMIT bytes. WARNING and above, and everything at exit
    (logging.shutdown), go out at once, as do lines from a thread without a loop unless
    a flush is already due. Queueing takes no lock: `+=` on the bytearray is one step
    under the GIL, and only flushes, which take bytes off its front, are serialised. A
    batch the descriptor refuses (stdout closed) is dropped: logging must not take the
    server down.
    """

    FLUSH_S = 0.1
    LIMIT = 1 << 16

    def __init__(self, fd: int) -> None:
        super().__init__()
        self._fd = fd
        self._pending = bytearray()
        self._flushing = threading.Lock()
        self._timer: asyncio.TimerHandle | None = None
        self._timer_loop: asyncio.AbstractEventLoop | None = None  # set while a timer waits

    def write_line(self, line: bytes) -> None:
        """Queue one whole line (ending in a newline)."""
        pending = self._pending
        pending += line
        timer_loop = self._timer_loop
        if timer_loop is not None and timer_loop.is_closed():
            # Its loop closed before the timer fired (a server run that ended): it never will.
            self._timer = self._timer_loop = timer_loop = None
        if timer_loop is None or len(pending) >= self.LIMIT:
            self._schedule()

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:
            self.handleError(record)
            return
        self.write_line(line.encode("utf-8", "backslashreplace"))
        if record.levelno >= logging.WARNING:
            self.flush()

    def _schedule(self) -> None:
        if len(self._pending) < self.LIMIT:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no loop in this thread
                pass
            else:
                self._timer = loop.call_later(self.FLUSH_S, self._on_timer)
                self._timer_loop = loop
                return
        self.flush()

    def _on_timer(self) -> None:
        self._timer = self._timer_loop = None
        self.flush()

    def flush(self) -> None:
        """Write every queued line now."""
        with self._flushing:
            pending = self._pending
            batch = bytes(pending)
            del pending[: len(batch)]  # lines queued meanwhile stay, after it
            view = memoryview(batch)
            try:
                while view:
                    view = view[os.write(self._fd, view) :]
            except OSError:
                pass

    def close(self) -> None:
        timer, loop = self._timer, self._timer_loop
        if timer is not None and loop is not None and not loop.is_closed():
            timer.cancel()
        self._timer = self._timer_loop = None
        self.flush()
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


# Where InfoLine writes JSON lines; None with text lines (configure_logging).
_json_sink: BatchingHandler | None = None
_now = datetime.datetime.now
_UTC = datetime.UTC


class InfoLine:
    """An INFO line of one logger and message, with the bound ids and the fields given
    to `write`: the lines written per request (http_request) and per stream
    (stream_finished).

    With JSON lines it is written without a LogRecord, and spliced rather than built as
    one object: the level, logger and message are encoded once, the ids once per
    binding, and only the fields (and timestamp) per line; the same line as
    JsonLineFormatter's with ContextFilter's ids (test_logs). Going through `logging`
    (record, filter, lock, format) was 15 % of a /health request's CPU, and merging the
    ids and fields into one object half of what was left
    (bench/stream_cost.py --instrumented). With text lines it goes through the logger.
    """

    __slots__ = ("_head", "_logger", "_message")

    def __init__(self, logger: logging.Logger, message: str) -> None:
        self._logger = logger
        self._message = message
        head = {"level": "INFO", "logger": logger.name, "message": message}
        self._head = orjson.dumps(head)[:-1] + b","

    def write(self, fields: dict[str, Any]) -> None:
        """Write the line; the caller has checked that INFO is enabled. `fields` have
        str keys and scalar values, and are the caller's no more."""
        sink = _json_sink
        if sink is None:
            self._logger.info(self._message, extra=fields)
        else:
            sink.write_line(self.json(fields))

    def json(self, fields: dict[str, Any]) -> bytes:
        """The JSON line, newline included. Without OPT_NON_STR_KEYS, which the
        formatter needs for any record's extras (30 % of a dumps)."""
        fields["timestamp"] = _now(_UTC)
        ids = _ids.get()
        ids_json = ids.json
        if ids_json is None:
            ids_json = ids.json = orjson.dumps(ids)[1:-1] + b","
        body = orjson.dumps(fields, option=orjson.OPT_APPEND_NEWLINE)
        return b"".join((self._head, ids_json, body[1:]))


@functools.cache
def _http_request(logger: logging.Logger) -> InfoLine:
    """The access line of `logger`: made once, not for each of aiohttp's AccessLoggers
    (one per connection)."""
    return InfoLine(logger, "http_request")


class AccessLogger(AbstractAccessLogger):
    """One `http_request` line per request, with its correlation ids.

    The path is logged without its query string: query values may carry credentials.
    """

    @property
    def enabled(self) -> bool:
        """Skip building the record when INFO is off (aiohttp asks before each call)."""
        return self.logger.isEnabledFor(logging.INFO)

    def log(self, request: BaseRequest, response: StreamResponse, time: float) -> None:
        try:
            route = request[EXCHANGE].rules.path  # None for unknown paths
        except KeyError:  # refused by aiohttp before routing: the peer, no ids
            route = None
            if request.remote is not None:
                bind_ids(client_ip=request.remote)
        _http_request(self.logger).write(
            {
                "method": request.method,
                "path": request.path,
                "route": route,
                "status": response.status,
                "bytes": response.body_length,
                # Whole µs in ms: round(time * 1000, 3)'s value at a fifth of its cost.
                "duration_ms": round(time * 1_000_000) / 1000,
            }
        )
