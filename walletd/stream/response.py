"""The HTTP response of a stream."""

from __future__ import annotations

from aiohttp import web


class EventStreamResponse(web.StreamResponse):
    """A StreamResponse whose head goes out with its first write (the opening events,
    written right after prepare()): one send per new stream instead of two."""

    __slots__ = ()
    _send_headers_immediately = False
