"""A relay in front of a fake upstream that stamps each HTTP request with the time its
bytes reached this host, from the kernel, as a provider's edge would judge it.

The fakes judge their rate limits when their event loop gets to a request. On this
machine's VMs the loop's process is now and then held off its vCPU for 2-12 ms (steal,
seen in /proc/stat while the fake sat idle in epoll at real-time priority), so a request
sent 22 ms after the previous one was stamped 15-20 ms after it and refused by a burst-1
limit, though tcpdump showed every send at least 21.9 ms apart. The kernel stamps every
packet as it arrives (SO_TIMESTAMPNS); read with recvmsg, that stamp does not depend on
when the reader runs. The relay passes it on in an `X-Arrival` header, on the fake's
clock, which the fakes use as the request's arrival (tests/fake_helius.py `arrival`).

One thread per direction and connection, plain blocking sockets: HTTP/1.1 requests with a
Content-Length (what aiohttp's client sends), one after another on a connection.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import sys
import threading
import time
from collections.abc import Callable

_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux's value
_CMSG_SPACE = socket.CMSG_SPACE(16)
_CHUNK = 1 << 16
HEADER = b"X-Arrival"


class WireRelay:
    """Listens on (host, port) and relays each connection to (host, target_port)."""

    def __init__(self, host: str, port: int, target_port: int, clock: Callable[[], float]) -> None:
        # The relay's threads share the fake's interpreter: hand the GIL over within
        # 0.2 ms, not the default 5, or each request and response waits for the loop.
        sys.setswitchinterval(0.0002)
        self._target = (host, target_port)
        self._clock = clock
        self._listener = socket.create_server((host, port))
        # On the listener, so that accepted connections have it from their first bytes
        # (set after accept(), a new connection's first request went unstamped).
        self._listener.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        threading.Thread(target=self._accept, daemon=True, name="relay-accept").start()

    def _accept(self) -> None:
        while True:
            client, _ = self._listener.accept()
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            upstream = socket.create_connection(self._target)
            upstream.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            threading.Thread(target=self._requests, args=(client, upstream), daemon=True).start()
            threading.Thread(target=_pipe, args=(upstream, client), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket) -> None:
        """Client to fake: each request's head gets the X-Arrival of its first bytes."""
        head, arrival, body_left = b"", 0.0, 0
        try:
            while True:
                data, ancillary, _, _ = client.recvmsg(_CHUNK, _CMSG_SPACE)
                if not data:
                    break
                while data:
                    if body_left:
                        part, data = data[:body_left], data[body_left:]
                        body_left -= len(part)
                        upstream.sendall(part)
                        continue
                    if not head:
                        arrival = self._arrival(ancillary)
                    head += data
                    end = head.find(b"\r\n\r\n")
                    if end < 0:
                        break
                    data, head = head[end + 4 :], head[: end + 4]
                    body_left = _content_length(head)
                    line_end = head.index(b"\r\n") + 2
                    stamp = b"%s: %.9f\r\n" % (HEADER, arrival)
                    upstream.sendall(head[:line_end] + stamp + head[line_end:])
                    head = b""
        except OSError:
            pass
        finally:
            _close(client, upstream)

    def _arrival(self, ancillary: list[tuple[int, int, bytes]]) -> float:
        """The kernel's receive time of these bytes, on the fake's clock."""
        for level, kind, value in ancillary:
            if level == socket.SOL_SOCKET and kind == _SO_TIMESTAMPNS:
                seconds, nanoseconds = struct.unpack("qq", value[:16])
                came: float = seconds + nanoseconds / 1e9  # on the wall clock
                return self._clock() - (time.time() - came)
        return self._clock()  # no stamp given: now, as the fakes would judge it


def _content_length(head: bytes) -> int:
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return int(value.strip())
    return 0


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(_CHUNK):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        _close(source, sink)


def _close(*sockets: socket.socket) -> None:
    for sock in sockets:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
        sock.close()
