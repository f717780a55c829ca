"""The HTTP response of a stream, and what its end needs of the connection."""

from __future__ import annotations

from aiohttp import web


class EventStreamResponse(web.StreamResponse):
    """A StreamResponse whose head goes out with its first write (the opening events,
    written right after prepare()): one send per new stream instead of two."""

    __slots__ = ()
    _send_headers_immediately = False


def forget_cancelled_drain(request: web.Request) -> None:
    """Let the connection be written again after stop() cancelled a blocked write.

    aiohttp 3.14 keeps the drain future the cancelled write was waiting on, and every
    later drain on the connection awaits that cancelled future and raises
    CancelledError, so the final `error` event would never go out.
    TODO(aiohttp): drop once BaseProtocol._drain_helper replaces a cancelled waiter.
    """
    protocol = request.protocol
    waiter = getattr(protocol, "_drain_waiter", None)
    if waiter is not None and waiter.cancelled():
        protocol._drain_waiter = None


async def flush(request: web.Request, response: web.StreamResponse) -> None:
    """Hold until the client has every byte: the process is about to exit, and bytes
    left in the transport's buffer would be lost with it (a slow reader would see
    its stream cut mid-event, without SERVER_SHUTDOWN)."""
    transport = request.transport
    if transport is not None:
        # With a high-water mark of 0 the transport pauses writing until its buffer
        # is empty, so the drain at the end of write_eof() waits for the last byte.
        transport.set_write_buffer_limits(high=0)
    await response.write_eof()
