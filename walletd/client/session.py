"""One `walletd stream` run: connections, resumption, retries, the exit status.

A dropped connection or a resumable `error` event reconnects with `Last-Event-ID` = the
id of the last `trades` event printed, which the server continues exactly after
(SPEC §1). With `follow`, `caught_up`'s id is a cursor too, and the run has no end but
Ctrl-C or a final failure. Which codes resume, and each code's exit status, come from
the error catalogue (walletd/errors.py); the stream is parsed by walletd's own SSE codec.
"""

from __future__ import annotations

import asyncio
import json
import random
import time
from collections import Counter
from dataclasses import dataclass
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp

from walletd.auth.format import mask_key
from walletd.client.render import TABLE_HEADER, Progress, short, table_row
from walletd.errors import EXIT_STATUSES, RATE_LIMITED_CODES, RESUMABLE_CODES
from walletd.retry import parse_retry_after
from walletd.stream import sse

EXIT_OK = 0
EXIT_FAILURE = 1  # a response that is not walletd's protocol, or an unknown error code
EXIT_USAGE = 2
EXIT_UNREACHABLE = 69  # EX_UNAVAILABLE: no connection held, after every retry
EXIT_PIPE = 141  # stdout closed early (`| head`), as a shell reports SIGPIPE
EXIT_INTERRUPTED = 130

# A 429 is retried after its exact Retry-After this many times in a row, then reported:
# a script looping on a full window would only keep the window full.
RATE_LIMIT_RETRIES = 2


@dataclass(frozen=True, slots=True)
class Options:
    url: str
    address: str
    api_key: str | None
    limit: int | None
    before: str | None
    format: str
    quiet: bool
    max_retries: int
    retry_delay_s: float
    max_retry_delay_s: float
    timeout_s: float
    follow: bool = False


@dataclass(frozen=True, slots=True)
class Outcome:
    """How one connection ended. `code` is None for a lost connection."""

    code: str | None
    message: str
    retry_after_s: float | None = None
    request_id: str | None = None
    complete: dict[str, Any] | None = None

    @property
    def resumable(self) -> bool:
        return self.code is None or self.code in RESUMABLE_CODES

    @property
    def exit_status(self) -> int:
        if self.code is None:
            return EXIT_UNREACHABLE
        return EXIT_STATUSES.get(self.code, EXIT_FAILURE)


def _protocol_error(message: str) -> Outcome:
    return Outcome("PROTOCOL_ERROR", message)


class StreamClient:
    """Reads one wallet's stream to its end across as many connections as it takes."""

    def __init__(self, options: Options, out: TextIO, err: TextIO) -> None:
        self.options, self.out, self.err = options, out, err
        self.progress = Progress(err, enabled=not options.quiet)
        self.cursor = options.before  # the id of the last trades (or caught_up) event
        self.retry_ms: int | None = None  # the server's `retry:` hint
        self.received = 0
        self.actions: Counter[str] = Counter()
        # Counted, never filtered: a repeat would be a server bug, and hiding it would hide it.
        self.seen: set[str] = set()
        self.duplicates = 0
        self.retries = 0
        self.scanned_before = self.scanned = 0  # earlier connections / this one
        self.started = time.monotonic()
        self.header_printed = False
        # Follow: the history is all printed; live trades printed since; whether this
        # connection reached `caught_up` (the server is serving: not a failure in a row).
        self.caught_up = False
        self.live = 0
        self.held = False

    async def run(self) -> int:
        """Stream until `complete` or a final failure; the exit status of the table."""
        opts = self.options
        timeout = aiohttp.ClientTimeout(
            total=None, connect=opts.timeout_s, sock_read=opts.timeout_s
        )
        failures = limited = 0
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                received, self.held = self.received, False
                outcome = await self._connect(http)
                if outcome.complete is not None or self._limit_reached():
                    self._finish(outcome.complete)
                    return EXIT_OK
                if self.received > received or self.held:
                    failures = limited = 0
                if outcome.code in RATE_LIMITED_CODES:
                    limited += 1
                    wait = outcome.retry_after_s or opts.retry_delay_s
                    retry = limited <= min(RATE_LIMIT_RETRIES, opts.max_retries)
                    retry = retry and wait <= opts.max_retry_delay_s
                    attempts = min(RATE_LIMIT_RETRIES, opts.max_retries)
                    attempt = limited
                else:
                    failures += 1
                    wait = self._backoff(outcome.retry_after_s, failures)
                    retry = outcome.resumable and failures <= opts.max_retries
                    attempts, attempt = opts.max_retries, failures
                if not retry:
                    self._report(outcome)
                    return outcome.exit_status
                where = f" from {short(self.cursor, 8, 4)}" if self.cursor else ""
                self._notice(
                    f"{self._describe(outcome)}; retrying{where} in {wait:.1f} s"
                    f" (attempt {attempt} of {attempts})"
                )
                self.retries += 1
                await asyncio.sleep(wait)

    def _limit_reached(self) -> bool:
        limit = self.options.limit
        # A follow's limit bounds its history only: it goes on live.
        return limit is not None and self.received >= limit and not self.options.follow

    def _backoff(self, hint_s: float | None, failures: int) -> float:
        """The server's hint (retry_after, else `retry:`) doubled per failure in a row,
        plus up to a quarter at random (clients dropped together by one restart should
        not all come back in the same instant), within --max-retry-delay."""
        opts = self.options
        if hint_s is None:
            hint_s = opts.retry_delay_s if self.retry_ms is None else self.retry_ms / 1000
        delay = hint_s * 2 ** (failures - 1)
        return min(opts.max_retry_delay_s, random.uniform(delay, delay * 1.25))

    def _request(self) -> tuple[str, dict[str, str], dict[str, str]]:
        opts = self.options
        url = f"{opts.url.rstrip('/')}/v4/wallet/{quote(opts.address, safe='')}/stream"
        headers = {"Accept": "text/event-stream", "Cache-Control": "no-cache"}
        if opts.api_key:
            headers["Authorization"] = f"Bearer {opts.api_key}"  # never in the URL: logs
        if self.cursor:
            headers["Last-Event-ID"] = self.cursor
        params = {}
        if opts.follow:
            params["follow"] = "true"
        if opts.limit is not None and not self.caught_up:
            left = opts.limit - self.received
            if left > 0:
                params["limit"] = str(left)
            elif self.cursor:
                # Cut between the limit's last trade and `caught_up`: no more history is
                # wanted, so resume from the head (`<oldest>.<head>` -> `<head>`): the
                # server sends `caught_up`, then what landed since.
                headers["Last-Event-ID"] = self.cursor.rpartition(".")[2]
        return url, headers, params

    async def _connect(self, http: aiohttp.ClientSession) -> Outcome:
        url, headers, params = self._request()
        try:
            async with http.get(url, headers=headers, params=params) as resp:
                if resp.status != 200:
                    return await _http_error(resp)
                if resp.content_type != "text/event-stream":
                    return _protocol_error(f"expected an event stream, got {resp.content_type}")
                parser = sse.Parser()
                async for chunk in resp.content.iter_any():
                    for event in parser.feed(chunk):
                        outcome = self._handle(event)
                        if outcome is not None:
                            return outcome
                    if parser.retry_ms is not None:
                        self.retry_ms = parser.retry_ms
            last = "`caught_up` or an error" if self.options.follow else "`complete`"
            return Outcome(None, f"the stream ended before {last}")
        except BrokenPipeError:
            raise  # our stdout, not the connection: see run()
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            return Outcome(None, _exception_text(exc))
        finally:
            self.scanned_before += self.scanned
            self.scanned = 0

    def _handle(self, event: sse.Event) -> Outcome | None:
        """Act on one event; an Outcome when it ends the connection."""
        try:
            data = json.loads(event.data)
        except ValueError:
            return _protocol_error(f"`{event.name}` event data is not JSON")
        if not isinstance(data, dict):
            return _protocol_error(f"`{event.name}` event data is not an object")
        if event.name == "trades":
            trades = data.get("trades")
            if not isinstance(trades, list) or not all(isinstance(t, dict) for t in trades):
                return _protocol_error("`trades` event without a list of trade objects")
            self._print_trades(trades)
            self.cursor = event.id or self.cursor  # only once printed: the resume cursor
            if not self.caught_up:  # then the `caught up` line stands
                self.progress.update(self.scanned_before + self.scanned, self.received)
        elif event.name == "progress":
            self.scanned = int(data.get("signatures_scanned") or 0)
            if not self.caught_up:
                self.progress.update(self.scanned_before + self.scanned, self.received)
        elif event.name == "caught_up":
            self.scanned = int(data.get("signatures_scanned") or 0)
            self.cursor = event.id or self.cursor  # the head: the live resume cursor
            self.held = True
            if not self.caught_up:
                self.caught_up = True
                found = self.received
                self._notice(
                    f"caught up: {found} trades, {self.scanned_before + self.scanned} "
                    "signatures scanned; following live trades (Ctrl-C to stop)",
                    prefix=False,
                    redraw=False,
                )
        elif event.name == "complete":
            self.scanned = int(data.get("signatures_scanned") or 0)
            return Outcome("COMPLETE", "complete", complete=data)
        elif event.name == "error":
            code = str(data.get("code") or "INTERNAL_ERROR")
            message = str(data.get("error") or code)
            retry_after = data.get("retry_after")
            if code in RESUMABLE_CODES and not self.cursor:
                self.cursor = data.get("last_event_id") or None
            return Outcome(
                code,
                message,
                float(retry_after) if isinstance(retry_after, int | float) else None,
                data.get("request_id"),
            )
        return None

    def _print_trades(self, trades: list[dict[str, Any]]) -> None:
        if self.out.isatty():  # the progress line may be on this terminal too
            self.progress.clear()
        if self.options.format == "jsonl":
            # Compact and unescaped, as the server encodes them: the trade as received.
            lines = [json.dumps(t, ensure_ascii=False, separators=(",", ":")) for t in trades]
        else:
            lines = [table_row(t) for t in trades]
            if not self.header_printed:
                lines.insert(0, TABLE_HEADER)
                self.header_printed = True
        if lines:
            self.out.write("\n".join(lines) + "\n")
            self.out.flush()  # a reader (`| jq`) sees each batch as it arrives
        if self.caught_up:
            self.live += len(trades)
        for trade in trades:
            signature = str(trade.get("signature"))
            if signature in self.seen:
                self.duplicates += 1
            self.seen.add(signature)
            self.actions[str(trade.get("action"))] += 1
        self.received += len(trades)

    def _notice(self, text: str, *, redraw: bool = True, prefix: bool = True) -> None:
        if not self.options.quiet:
            self.progress.clear()
            print(f"walletd stream: {text}" if prefix else text, file=self.err, flush=True)
            if redraw:
                self.progress.show()

    def _describe(self, outcome: Outcome) -> str:
        text = outcome.message if outcome.code is None else f"{outcome.code}: {outcome.message}"
        if outcome.code in ("AUTH_REQUIRED", "INVALID_API_KEY", "FORBIDDEN"):
            key = self.options.api_key
            text += f" (key {mask_key(key)})" if key else " (no key given)"
        if outcome.request_id:
            text += f" (request id {outcome.request_id})"
        return text

    def _report(self, outcome: Outcome) -> None:
        """The final failure: always on stderr, --quiet or not (the status alone is terse)."""
        self.progress.clear()
        suffix = "; giving up" if outcome.resumable or outcome.code in RATE_LIMITED_CODES else ""
        print(f"walletd stream: {self._describe(outcome)}{suffix}", file=self.err, flush=True)

    def interrupted(self) -> None:
        """Ctrl-C: a follow's natural end, so its summary; a plain run's nothing more."""
        self.progress.clear()
        if self.options.follow:
            self._finish(None, ended="stopped")

    def _finish(self, complete: dict[str, Any] | None, ended: str = "complete") -> None:
        """The summary: stderr only, so stdout stays pure trades."""
        self.progress.clear()
        if self.duplicates:
            self._notice(
                f"warning: {self.duplicates} trades were received more than once", redraw=False
            )
        if self.options.quiet:
            return
        duration = round(time.monotonic() - self.started, 3)
        if self.options.format == "jsonl":
            client = {
                "trades": self.received,
                "retries": self.retries,
                "duplicates": self.duplicates,
                "duration_s": duration,
            }
            if self.options.follow:
                client["live_trades"] = self.live
            end = complete if complete is not None else {"caught_up": self.caught_up}
            print(json.dumps({ended: end, "client": client}), file=self.err, flush=True)
            return
        actions = ", ".join(f"{n} {a}s" for a, n in sorted(self.actions.items())) or "none"
        truncated = complete is None or bool(complete.get("truncated"))
        if self.options.follow:
            truncated = False
            actions += f"; {self.live} live" if self.caught_up else "; not caught up"
        # Connections that ended early reported their scan only up to their last progress.
        at_least = "at least " if self.retries else ""
        print(
            f"{ended}: {self.received} trades ({actions}), "
            f"{at_least}{self.scanned_before + self.scanned} signatures scanned, "
            f"{'truncated, ' if truncated else ''}{self.retries} retries, {duration:.1f} s",
            file=self.err,
            flush=True,
        )


async def _http_error(resp: aiohttp.ClientResponse) -> Outcome:
    """A refused request: walletd's JSON error (SPEC §2), or a proxy's page."""
    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
    try:
        body = await resp.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        body = None
    if isinstance(body, dict) and isinstance(body.get("code"), str):
        return Outcome(body["code"], str(body.get("error")), retry_after, body.get("request_id"))
    if resp.status == 429:
        return Outcome("RATE_LIMITED", f"HTTP {resp.status}", retry_after)
    if resp.status in (502, 503, 504):  # a proxy in front of a restarting walletd
        return Outcome(None, f"HTTP {resp.status} {resp.reason}", retry_after)
    return _protocol_error(f"unexpected HTTP {resp.status} {resp.reason}")


def _exception_text(exc: BaseException) -> str:
    if isinstance(exc, TimeoutError):
        return "no data within --timeout"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
