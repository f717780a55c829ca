"""The HTTP response of a stream, and what its end needs of the connection."""

from __future__ import annotations

from collections.abc import Sequence

from aiohttp import ClientConnectionResetError, web
from aiohttp.http_writer import StreamWriter

# StreamWriter.write's default: past this many bytes written since the last drain, wait
# for the transport to take them.
_DRAIN_ABOVE = 0x10000


class EventStreamResponse(web.StreamResponse):
    """A StreamResponse whose head goes out with its first write (the opening events,
    written right after prepare()): one send per new stream instead of two."""

    __slots__ = ()
    _send_headers_immediately = False


async def write_chunk(
    response: web.StreamResponse, parts: Sequence[bytes | memoryview], size: int
) -> None:
    """Write `parts` (`size` bytes in all) as one HTTP chunk without joining them: uvloop's
    transport sends them with one writev; the stdlib's joins them, once.

    What StreamWriter.write does for one chunk (the head first, if it has not gone out;
    the counters; a drain past _DRAIN_ABOVE), over parts. Joining a write batch into one
    bytes object, which aiohttp then joins again with its chunk framing, cost a new
    stream of the normal demo wallet ~80 µs of its ~500 (timeit): two fresh ~100 KB
    buffers per write, which glibc trims off the heap and faults in again each time.
    Anything but a plain chunked writer goes through response.write() instead.
    TODO(aiohttp): uses StreamWriter internals (`_headers_buf`, `_compress`, its hooks):
    setup.cfg keeps aiohttp below the next minor release, where they could change.
    """
    writer = response._payload_writer
    if (
        type(writer) is not StreamWriter
        or not writer.chunked
        or writer._compress is not None
        or writer._on_chunk_sent is not None  # hooks StreamWriter.write would call
        or writer.on_body_write is not None
    ):
        await response.write(b"".join(parts))
        return
    chunk_line = b"%x\r\n" % size
    lines: list[bytes | memoryview] = [chunk_line, *parts, b"\r\n"]
    sent = len(chunk_line) + size + 2
    head = writer._headers_buf
    if head is not None:  # the response head goes out with the first chunk
        writer._headers_buf = None
        writer._headers_written = True
        lines.insert(0, head)
        sent += len(head)
    writer.buffer_size += sent
    writer.output_size += sent
    transport = writer.transport
    if transport is None or transport.is_closing():
        raise ClientConnectionResetError("Cannot write to closing transport")
    if type(transport).__module__ == "uvloop.loop":
        transport.writelines(lines)
    else:  # aiohttp's own choice before CPython 3.12.9, whose writelines was unsafe
        transport.write(b"".join(lines))
    if writer.buffer_size > _DRAIN_ABOVE:
        writer.buffer_size = 0
        await writer.drain()


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
