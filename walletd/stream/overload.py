"""Overload (SPEC §5): at most MAX_STREAMS streams, and history memory under
HISTORY_MEMORY_MB; a request beyond either gets 503 SERVICE_UNAVAILABLE before its
stream starts."""

from __future__ import annotations

from walletd.errors import ServiceUnavailable
from walletd.upstream.history import HistoryCache
from walletd.upstream.recording import Recording

STREAMS_RETRY_AFTER_S = 5


class Overload:
    """Admits streams: counted from admission to their end, so concurrent requests can
    never pass the check together (it and the count happen with no await between)."""

    def __init__(self, history: HistoryCache, *, max_streams: int) -> None:
        self.history = history
        self.max_streams = max_streams
        self.active = 0

    def admit(self, wallet: str, before: str | None) -> Admitted:
        """The history recording for a new stream, held while the stream lives:
        `async with overload.admit(wallet, before) as recording`.

        Raises ServiceUnavailable (with retry_after) at MAX_STREAMS or over the history
        memory budget, on entering.
        """
        return Admitted(self, wallet, before)


class Admitted:
    """One admitted stream's hold on its recording. A class rather than an
    asynccontextmanager: this object lives as long as the stream, and a generator
    frame and its context manager cost an idle stream about 1 KB more."""

    __slots__ = ("_before", "_overload", "_recording", "_wallet")

    def __init__(self, overload: Overload, wallet: str, before: str | None) -> None:
        self._overload = overload
        self._wallet = wallet
        self._before = before
        self._recording: Recording | None = None

    async def __aenter__(self) -> Recording:
        overload = self._overload
        if overload.active >= overload.max_streams:
            raise ServiceUnavailable(
                f"{overload.active} streams open (MAX_STREAMS)",
                retry_after=STREAMS_RETRY_AFTER_S,
                message="The server is overloaded; retry shortly",
            )
        history = overload.history
        history.check_budget(self._wallet, self._before)
        self._recording = history.acquire(self._wallet, self._before)
        overload.active += 1
        return self._recording

    async def __aexit__(self, *exc_info: object) -> None:
        recording, self._recording = self._recording, None
        if recording is not None:
            self._overload.active -= 1
            self._overload.history.release(recording, self._wallet, self._before)
