"""Frames queued for one write: a stream's recorded pages leave in writes of up to
WRITE_BATCH_BYTES (one HTTP chunk, one send) rather than one write per `trades` event,
which is most of what a stream of a cached history costs beyond the bytes themselves
(bench/stream_load.py, throughput)."""

from __future__ import annotations

WRITE_BATCH_BYTES = 64 * 1024


class PendingWrite:
    """The parts of the frames queued since the last write. A part may be a slice of a
    shared prebuilt frame (a follow stream relabels a frame's id by joining the pieces
    around it), so a frame is copied once, into the write, and never on its own."""

    __slots__ = ("events", "parts", "size")

    def __init__(self) -> None:
        self.parts: list[bytes | memoryview] = []
        self.size = 0  # bytes queued
        self.events = 0  # events queued

    def add(self, *parts: bytes | memoryview) -> None:
        """Queue one event, given as the parts it is joined from."""
        self.parts += parts
        self.size += sum(map(len, parts))
        self.events += 1

    def add_field(self, field: bytes) -> None:
        """Queue bytes that are no event (the stream's opening `retry:`)."""
        self.parts.append(field)
        self.size += len(field)

    def add_frames(self, frames: tuple[bytes, ...], size: int) -> None:
        """Queue whole events (a page's prebuilt frames, `size` bytes in all), as they are."""
        self.parts += frames
        self.size += size
        self.events += len(frames)

    def take(self) -> tuple[list[bytes | memoryview], int, int]:
        """The queued parts, their size in bytes and their event count; the queue is
        empty again. Written as they are (stream/response.py `write_chunk`), not joined."""
        taken = self.parts, self.size, self.events
        self.parts = []
        self.size = self.events = 0
        return taken
