"""One client's stream, from `prepare()` to its final event: the SSE protocol of SPEC §1.

Every byte of a stream, prebuilt `trades` frames included, leaves through
`StreamOutput._write` (walletd/stream/output.py). Event data is built through the types
of walletd/stream/events.py.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import hdrs, web
from multidict import CIMultiDict

from walletd.api.boundary import add_response_headers
from walletd.appkeys import (
    ALERTS,
    EXCHANGE,
    FLAGS,
    METRICS,
    SETTINGS,
)
from walletd.errors import (
    InternalError,
    ServerShutdown,
    StreamTimeout,
    WalletdError,
    WalletNotFound,
)
from walletd.headers import ACCEL_BUFFERING, STREAM_ID
from walletd.observability.logs import InfoLine, bind_ids
from walletd.stream import sse
from walletd.stream.alarm import Alarm, T
from walletd.stream.events import (
    CompleteEvent,
    ConnectedEvent,
    ErrorEvent,
    HeartbeatEvent,
    ProgressEvent,
)
from walletd.stream.output import StreamOutput
from walletd.stream.pending import WRITE_BATCH_BYTES
from walletd.stream.response import EventStreamResponse, flush, forget_cancelled_drain
from walletd.trades.summary import TradeFacts, TradeSummary
from walletd.upstream.pages import ScannedPage
from walletd.upstream.recording import Recording

log = logging.getLogger(__name__)
_FINISHED = InfoLine(log, "stream_finished")

_FINAL_WRITE_TIMEOUT_S = 5.0
# Every stream's head but its X-Stream-ID, folded once (walletd/headers.py).
_HEAD = CIMultiDict(
    {hdrs.CONTENT_TYPE: "text/event-stream", hdrs.CACHE_CONTROL: "no-cache", ACCEL_BUFFERING: "no"}
)
LOOKAHEAD_PAGES = 3


class WalletStream(StreamOutput):
    """One client's stream: small per-stream state, the protocol of SPEC §1."""

    follows = False  # a follow stream (stream/follow.py) has no WALLET_NOT_FOUND

    __slots__ = (
        "_alarm",
        "_reaped",
        "_stop_reason",
        "_task",
        "app",
        "batches",
        "cursor",
        "features",
        "key_id",
        "last_event_id",
        "limit",
        "pages_sent",
        "partial",
        "scanned",
        "settings",
        "started",
        "stream_id",
        "trades_sent",
        "wallet",
    )

    def __init__(
        self, request: web.Request, wallet: str, cursor: str | None, limit: int, stream_id: str
    ) -> None:
        # request.app is two properties deep: looked up once.
        self.app = app = request.app
        self.settings = app[SETTINGS]
        self.features = app[FLAGS].current  # kept for the whole stream
        self.wallet = wallet
        self.cursor = cursor
        self.limit = limit
        self.stream_id = stream_id
        record = request[EXCHANGE].key
        self.key_id = None if record is None else record.id
        response = EventStreamResponse(headers=_HEAD)
        response.headers[STREAM_ID] = stream_id
        super().__init__(request, response)
        self.started = self.last_write
        self.last_event_id = cursor
        self.trades_sent = self.scanned = self.batches = 0
        self.pages_sent = 0  # whole pages sent; their summary is the recording's
        self.partial: tuple[TradeFacts, ...] = ()  # trades sent of a page cut by `limit`
        self._stop_reason: WalletdError | None = None
        self._reaped = False
        self._task: asyncio.Task[Any] | None = None
        self._alarm: Alarm | None = None  # its end, or while it waits, the next heartbeat

    def stop(self, reason: WalletdError) -> None:
        """End this stream from outside (shutdown, revocation, reaper) with `reason`."""
        if self._stop_reason is None and self._task is not None:
            self._stop_reason = reason
            self._task.cancel()

    def _time_out(self) -> None:
        self.stop(StreamTimeout(f"after {self.settings.sse_max_stream_duration_s}s"))

    def reap(self) -> None:
        """Close a stale stream's connection at once, with no final event: its client
        stopped reading, so one would never arrive (SPEC §5). The handler then ends and
        frees the stream's slot."""
        self._reaped = True
        transport = self.request.transport
        if transport is not None:
            transport.abort()

    async def run(self, recording: Recording) -> None:
        """Stream until complete, failed, stopped or the client leaves; never raises
        except CancelledError when the client left (aiohttp cancels the handler)."""
        self._task = asyncio.current_task()
        bind_ids(stream_id=self.stream_id, wallet=self.wallet)
        metrics = self.app[METRICS]
        metrics.stream_started()
        end_reason = "complete"
        try:
            add_response_headers(self.request, self.request[EXCHANGE], self.response)
            await self.response.prepare(self.request)
            # Serialized by now (sent with the first write): ~1.7 KB less per open stream.
            self.response.headers.clear()
            self._queue_open()
            # DEBUG: at INFO this third line per stream cost 5 % of new streams/s
            # (bench/instrumentation_load.py); stream_finished and the access line say it all.
            log.debug("stream_started", extra={"resumed_from": self.cursor, "limit": self.limit})
            self._alarm = Alarm(self.settings.sse_max_stream_duration_s, self._time_out)
            try:
                truncated = await self._stream_history(recording)
                await self._finish(recording, truncated)
            finally:
                # It calls back into this stream: dropped, so that a finished stream is
                # freed as its handler returns, not by a garbage collection of the cycle.
                self._alarm.cancel()
                self._alarm = None
        except asyncio.CancelledError:
            reason = self._stop_reason
            if reason is None:  # the client left (handler cancelled) or the server is stopping
                end_reason = "reaped" if self._reaped else "client_closed"
                raise
            self._task.uncancel()  # type: ignore[union-attr]
            end_reason = f"error:{reason.code}"
            await self._fail(reason)
        except ConnectionResetError:
            end_reason = "reaped" if self._reaped else "client_closed"
        except WalletdError as exc:
            end_reason = f"error:{exc.code}"
            await self._fail(exc)
        except Exception as exc:
            log.exception("stream_failed")
            end_reason = "error:INTERNAL_ERROR"
            await self._fail(InternalError(repr(exc)))
        finally:
            duration = time.monotonic() - self.started
            errored = end_reason.startswith("error:")
            metrics.stream_finished(self, end_reason, duration, errored=errored)
            self.app[ALERTS].check()
            if log.isEnabledFor(logging.INFO):  # else its fields are not worth building
                self._log_finished(end_reason, duration)

    def _log_finished(self, end_reason: str, duration_s: float) -> None:
        """The stream_finished line (SPEC §7), the larger of a stream's two lines
        (bench/instrumentation_load.py): written as the access line is (logs.InfoLine)."""
        _FINISHED.write(
            {
                "end_reason": end_reason,
                "events": self.events,
                "trades": self.trades_sent,
                "bytes": self.bytes_sent,
                # Whole ms: round(duration_s, 3)'s value at a fifth of its cost.
                "duration_s": round(duration_s * 1000) / 1000,
            }
        )

    async def _finish(self, recording: Recording, truncated: bool) -> None:
        """After the history: `complete` (a follow stream goes live instead)."""
        complete: CompleteEvent = {
            "trades_found": self.trades_sent,
            "signatures_scanned": self.scanned,
            "duration_s": round(time.monotonic() - self.started, 3),
            "truncated": truncated,
            "summary": self._summary(recording).to_dict()
            if self.partial  # else whole pages: one dict, made once for every stream
            else recording.summary_dict(self.pages_sent),
        }
        await self._event("complete", complete)

    async def _stream_history(self, recording: Recording) -> bool:
        """Send the history as `trades` batches; True when `limit` cut it short.

        Work here is per page and per batch, not per trade: pages arrive parsed,
        encoded and summarised once for every stream of the wallet. Their frames are
        queued and written WRITE_BATCH_BYTES at a time, and always before any wait (so
        heartbeats and the reaper count from the last byte actually written); what is
        queued at the end goes out with the final event.
        """
        settings = self.settings
        size = settings.sse_batch_size
        progress = self.features.progress_events
        last_progress = time.monotonic()
        queued = self.queued
        index = 0
        while True:
            # The pages scanned by now, in one step: for a cached history, all of them.
            pages = recording.scanned_from(index)
            if not pages:
                if recording.ends_before(index):  # a cached history: nothing to wait for
                    break
                await self._write_pending()
                if (page := await self._next_page(recording, index)) is None:
                    break
                pages = [page]
            for page in pages:
                index += 1
                count, room = len(page.signatures), self.limit - self.trades_sent
                if count >= room:  # the limit ends the stream inside this page
                    self.partial = page.facts[:room]
                    self.scanned += page.positions[room - 1] + 1
                    for start in range(0, room, size):
                        self._queue_trades(page, start, min(start + size, room))
                    await self._write_pending()
                    return count > room or await self._more_trades_after(recording, index)
                self.scanned += page.scanned
                # The hot path: the page's prebuilt `trades` events. The stream's counters
                # equal the recording's (see ScannedPage).
                if count:
                    self._queue_page(page)
                    self.batches += len(page.frames)
                    self.trades_sent = page.totals[-1]
                self.pages_sent = index
                now = time.monotonic()
                if progress and now - last_progress >= settings.sse_progress_throttle_s:
                    scanned = f"Scanned {self.scanned} transactions"
                    queued.add(self._progress_frame("scanning", scanned))
                    last_progress = now
                    await self._write_pending()
                elif queued.size >= WRITE_BATCH_BYTES:
                    await self._write_pending()
        if self.scanned == 0 and self.cursor is None and not self.follows:
            raise WalletNotFound(self.wallet)
        return False

    def _queue_page(self, page: ScannedPage) -> None:
        """Queue a whole page's `trades` frames as this stream sends them: as they are.
        Sets `last_event_id` (before the write: see _write_pending)."""
        self.queued.add_frames(page.frames, page.frames_size)
        self.last_event_id = page.last_ids[-1]

    def _queue_frame(self, frame: bytes, last_id: str) -> None:
        """Queue one history `trades` frame, its id `last_id` the resume cursor (a follow
        stream relabels it); sets `last_event_id` (before the write: see _write_pending)."""
        self.queued.add(frame)
        self.last_event_id = last_id

    async def _more_trades_after(self, recording: Recording, index: int) -> bool:
        """Whether trades follow page `index - 1`, for `truncated`.

        Looks at most LOOKAHEAD_PAGES pages ahead (fetching them if needed: a resume would
        need them anyway). Whatever stays unknown, including a failed fetch, counts as
        truncated: every trade asked for was sent, so the stream still completes.
        """
        for ahead in range(index, index + LOOKAHEAD_PAGES):
            try:
                page = await self._next_page(recording, ahead)
            except WalletdError:
                return True
            if page is None:
                return False
            if len(page):
                return True
        return True

    def _beating(self, waiting: Callable[..., Awaitable[T]], *args: Any) -> Awaitable[T]:
        """What `waiting(*args)` returns, with heartbeats meanwhile (stream/alarm.py)."""
        assert self._alarm is not None
        keepalive_s = self.settings.sse_keepalive_interval_s
        return self._alarm.beating(keepalive_s, self, waiting, *args)

    async def heartbeat(self) -> None:
        """Sent by the alarm after SSE_KEEPALIVE_INTERVAL without a write (SPEC §1)."""
        heartbeat: HeartbeatEvent = {"timestamp": int(time.time())}
        await self._event("heartbeat", heartbeat)

    def _next_page(self, recording: Recording, index: int) -> Awaitable[ScannedPage | None]:
        """The next page, sending heartbeats while the source is slow."""
        return self._beating(recording.page, index)

    def _summary(self, recording: Recording) -> TradeSummary:
        summary = recording.summary_of(self.pages_sent)
        for facts in self.partial:
            summary.add(facts)
        return summary

    def _queue_trades(self, page: ScannedPage, start: int, stop: int) -> None:
        """Queue trades[start:stop] of one batch of `page` as one `trades` event: the
        page's own frame when the batch is whole, else one built from its bytes."""
        self.batches += 1
        self.trades_sent += stop - start
        last = page.signatures[stop - 1]
        batch = start // page.batch_size
        if stop == page.batch_end(batch):
            frame = page.frames[batch]
        else:
            body = page.body(start, stop)
            frame = sse.trades_frame(body, last, self.batches, self.trades_sent)
        self._queue_frame(frame, last)

    def _queue_open(self) -> None:
        """Queue `retry`, `connected` and the first `progress`: they leave with the response
        head and whatever is ready by the first write (one send), which comes before any
        wait."""
        connected: ConnectedEvent = {
            "stream_id": self.stream_id,
            "wallet": self.wallet,
            "resumed_from": self.cursor,
            "timestamp": int(time.time()),
        }
        queued = self.queued
        queued.add_field(sse.retry_frame(self.settings.sse_retry_ms))
        queued.add(sse.event_frame("connected", connected))
        if self.features.progress_events:
            queued.add(self._progress_frame("fetching", "Fetching transaction history"))

    def _progress_frame(self, step: str, message: str) -> bytes:
        progress: ProgressEvent = {
            "step": step,
            "message": message,
            "signatures_scanned": self.scanned,
            "trades_found": self.trades_sent,
        }
        return sse.event_frame("progress", progress)

    async def _fail(self, exc: WalletdError) -> None:
        """Send `exc` as the final `error` event (best effort).

        Before the response is prepared there is no stream yet: `exc` is re-raised for
        the error boundary to render as JSON.
        """
        if not self.response.prepared:
            raise exc
        forget_cancelled_drain(self.request)  # a stop or a timeout may have cut a write short
        if exc.status >= 500 and not exc.resumable:
            log.error("stream_error", extra={"code": exc.code, "detail": str(exc)})
        # mypy --strict wants every NotRequired key of a ** literal spelled out; the
        # order (body, stream_id, last_event_id) is the wire's.
        data: ErrorEvent = {
            **exc.body(self.request[EXCHANGE].request_id),  # type: ignore[typeddict-item]
            "stream_id": self.stream_id,
        }
        if exc.resumable:
            data["last_event_id"] = self.last_event_id
        try:
            async with asyncio.timeout(_FINAL_WRITE_TIMEOUT_S):
                await self._event("error", data)
            if isinstance(exc, ServerShutdown):
                async with asyncio.timeout(self.settings.shutdown_grace_s):
                    await flush(self.request, self.response)
        except (ConnectionResetError, TimeoutError):
            pass
