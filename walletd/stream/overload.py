"""Overload (SPEC §5): at most MAX_STREAMS streams, and history memory under
HISTORY_MEMORY_MB; a request beyond either gets 503 SERVICE_UNAVAILABLE before its
stream starts."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from walletd.errors import ServiceUnavailable
from walletd.upstream.history import HistoryCache, Recording

STREAMS_RETRY_AFTER_S = 5


class Overload:
    """Admits streams: counted from admission to their end, so concurrent requests can
    never pass the check together (it and the count happen with no await between)."""

    def __init__(self, history: HistoryCache, *, max_streams: int) -> None:
        self._history = history
        self._max_streams = max_streams
        self.active = 0

    @contextlib.asynccontextmanager
    async def admit(self, wallet: str, before: str | None) -> AsyncIterator[Recording]:
        """The history recording for a new stream, held while the stream lives.

        Raises ServiceUnavailable (with retry_after) at MAX_STREAMS or over the history
        memory budget.
        """
        if self.active >= self._max_streams:
            raise ServiceUnavailable(
                f"{self.active} streams open (MAX_STREAMS)",
                retry_after=STREAMS_RETRY_AFTER_S,
                message="The server is overloaded; retry shortly",
            )
        self._history.check_budget(wallet, before)
        self.active += 1
        try:
            async with self._history.open(wallet, before) as recording:
                yield recording
        finally:
            self.active -= 1
