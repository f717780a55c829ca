"""`walletd stream ADDRESS`: a terminal client of the trade stream that resumes on its own.

stdout carries only trades (JSON lines or a table), so it can be piped; progress,
resume notices, the final summary and errors go to stderr. A dropped connection or a
resumable `error` event reconnects with `Last-Event-ID` = the id of the last `trades`
event printed, which the server continues exactly after (SPEC §1).
"""

from __future__ import annotations

import argparse
import asyncio
import codecs
import json
import os
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TextIO
from urllib.parse import quote

import aiohttp

from walletd.auth.keys import mask_key
from walletd.retry import parse_retry_after

# One status per SPEC §2 code, so scripts can tell failures apart without parsing stderr.
EXIT_STATUSES: dict[str, int] = {
    "AUTH_REQUIRED": 10,
    "INVALID_API_KEY": 11,
    "FORBIDDEN": 12,
    "RATE_LIMITED": 13,
    "TOO_MANY_STREAMS": 14,
    "INVALID_WALLET": 20,
    "INVALID_EVENT_ID": 21,
    "INVALID_PARAMETER": 22,
    "WALLET_NOT_FOUND": 23,
    "DATA_FETCH_ERROR": 30,
    "SERVICE_UNAVAILABLE": 31,
    "STREAM_TIMEOUT": 32,
    "SERVER_SHUTDOWN": 33,
    "NOT_FOUND": 40,
    "METHOD_NOT_ALLOWED": 41,
    "REQUEST_TOO_LARGE": 42,
    "INTERNAL_ERROR": 50,
}
EXIT_OK = 0
EXIT_FAILURE = 1  # a response that is not walletd's protocol, or an unknown error code
EXIT_USAGE = 2
EXIT_UNREACHABLE = 69  # EX_UNAVAILABLE: no connection held, after every retry
EXIT_PIPE = 141  # stdout closed early (`| head`), as a shell reports SIGPIPE
EXIT_INTERRUPTED = 130

# Error events that end a stream the server can continue from `last_event_id` (SPEC §2).
RESUMABLE = frozenset(
    {"STREAM_TIMEOUT", "SERVER_SHUTDOWN", "SERVICE_UNAVAILABLE", "DATA_FETCH_ERROR"}
)
RATE_LIMITED = frozenset({"RATE_LIMITED", "TOO_MANY_STREAMS"})
# A 429 is retried after its exact Retry-After this many times in a row, then reported:
# a script looping on a full window would only keep the window full.
RATE_LIMIT_RETRIES = 2
PROGRESS_INTERVAL_S = 5.0  # between plain progress lines when stderr is not a terminal

DESCRIPTION = """\
Print a wallet's trades from a walletd server as they stream in. stdout carries only
trades (--format jsonl: one trade object per line; table: aligned rows), so it can be
piped; progress, retry notices, the summary and errors go to stderr. The API key comes
from --api-key or WALLETD_API_KEY and is sent as Authorization: Bearer.
"""

EPILOG = """\
exit statuses:
  0   complete (or --limit trades received)
  1   unexpected response (not walletd's protocol)
  2   usage error
  10  AUTH_REQUIRED        11  INVALID_API_KEY      12  FORBIDDEN
  13  RATE_LIMITED         14  TOO_MANY_STREAMS
  20  INVALID_WALLET       21  INVALID_EVENT_ID     22  INVALID_PARAMETER
  23  WALLET_NOT_FOUND
  30  DATA_FETCH_ERROR     31  SERVICE_UNAVAILABLE  32  STREAM_TIMEOUT
  33  SERVER_SHUTDOWN
  40  NOT_FOUND            41  METHOD_NOT_ALLOWED   42  REQUEST_TOO_LARGE
  50  INTERNAL_ERROR
  69  no connection after --max-retries attempts
  130 interrupted (Ctrl-C)   141 stdout closed early

A dropped connection, a timeout and the errors STREAM_TIMEOUT, SERVER_SHUTDOWN,
SERVICE_UNAVAILABLE and DATA_FETCH_ERROR resume from the last trades received,
waiting the server's retry hint (doubling while nothing arrives, at most
--max-retry-delay), up to --max-retries attempts in a row without a new trade;
the status above reports the last failure. A 429 (RATE_LIMITED, TOO_MANY_STREAMS)
is retried after its Retry-After at most twice in a row, and not at all when
Retry-After is over --max-retry-delay.
"""


@dataclass(frozen=True, slots=True)
class SSEEvent:
    name: str
    data: str
    id: str | None  # the event's own `id:` field, if it had one


_EOL = re.compile(r"\r\n|\r|\n")


class SSEParser:
    """Incremental Server-Sent Events parser (WHATWG rules): bytes in, whole events out.

    Accepts any line ending and chunk boundaries anywhere (inside a UTF-8 character or
    a CRLF). An event cut off by the end of the connection is never returned, so a
    partly received `trades` batch is neither printed nor used as the resume cursor.
    """

    def __init__(self) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")("replace")
        self._buffer = ""
        self._scan_from = 0  # text before this offset holds no line ending
        self._first = True
        self.retry_ms: int | None = None
        self._data: list[str] = []
        self._id: str | None = None
        self._name = ""

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        text = self._decoder.decode(chunk)
        if self._first and text:
            self._first = False
            text = text.removeprefix("\ufeff")
        buffer, start = self._buffer + text, 0
        events: list[SSEEvent] = []
        while (match := _EOL.search(buffer, max(start, self._scan_from))) is not None:
            if match[0] == "\r" and match.end() == len(buffer):
                break  # maybe the first half of a CRLF split across chunks
            event = self._line(buffer[start : match.start()])
            if event is not None:
                events.append(event)
            start = match.end()
        self._buffer = buffer[start:]
        self._scan_from = len(self._buffer) - self._buffer.endswith("\r")
        return events

    def _line(self, line: str) -> SSEEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None  # a comment
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            self._name = value
        elif field == "data":
            self._data.append(value)
        elif field == "id" and "\0" not in value:
            self._id = value
        elif field == "retry" and value.isascii() and value.isdigit():
            self.retry_ms = int(value)
        return None

    def _dispatch(self) -> SSEEvent | None:
        event = None
        if self._data:
            event = SSEEvent(self._name or "message", "\n".join(self._data), self._id)
        self._name, self._data, self._id = "", [], None
        return event


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
        return self.code is None or self.code in RESUMABLE

    @property
    def exit_status(self) -> int:
        if self.code is None:
            return EXIT_UNREACHABLE
        return EXIT_STATUSES.get(self.code, EXIT_FAILURE)


def _protocol_error(message: str) -> Outcome:
    return Outcome("PROTOCOL_ERROR", message)


class Progress:
    """Scan progress on stderr: one line redrawn with `\\r` on a terminal, else a plain
    line every PROGRESS_INTERVAL_S (a log file should not fill with redraws)."""

    def __init__(
        self, err: TextIO, *, enabled: bool, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._err, self._enabled, self._clock = err, enabled, clock
        self._tty = enabled and err.isatty()
        self._shown = 0  # width of the line on the terminal now
        self._last_line = clock()
        self._text = ""

    def update(self, scanned: int, trades: int) -> None:
        if not self._enabled:
            return
        self._text = f"scanned {scanned} signatures, {trades} trades found"
        if self._tty:
            self.show()
        elif self._clock() - self._last_line >= PROGRESS_INTERVAL_S:
            self._last_line = self._clock()
            print(self._text, file=self._err, flush=True)

    def show(self) -> None:
        if self._tty and self._text:
            self._err.write("\r" + self._text.ljust(self._shown))
            self._shown = len(self._text)
            self._err.flush()

    def clear(self) -> None:
        """Blank the terminal line so other output does not mix with it."""
        if self._shown:
            self._err.write("\r" + " " * self._shown + "\r")
            self._shown = 0
            self._err.flush()


def _short(text: str, head: int = 4, tail: int = 4) -> str:
    return text if len(text) <= head + tail + 3 else f"{text[:head]}...{text[-tail:]}"


def _leg(leg: Any) -> tuple[str, str]:
    """(amount, symbol or shortened mint) of a trade's token_in/token_out."""
    if not isinstance(leg, dict):
        return "-", "-"
    return str(leg.get("amount", "-")), str(leg.get("symbol") or _short(str(leg.get("mint", "-"))))


TABLE_HEADER = (
    f"{'TIME (UTC)':<20}  {'ACTION':<6}  {'GAVE':>20} {'':<11}    {'GOT':>20} {'':<11}  "
    f"{'DEX':<9}  SIGNATURE"
)


def table_row(trade: dict[str, Any]) -> str:
    """One aligned line of the table; tolerant of missing fields (it is only a display)."""
    stamp = trade.get("timestamp")
    when = (
        datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        if isinstance(stamp, int)
        else "-"
    )
    gave, got = _leg(trade.get("token_in")), _leg(trade.get("token_out"))
    return (
        f"{when:<20}  {trade.get('action', '-'):<6}  {gave[0]:>20} {gave[1]:<11} -> "
        f"{got[0]:>20} {got[1]:<11}  {trade.get('dex') or '-':<9}  "
        f"{_short(str(trade.get('signature', '-')), 8, 4)}"
    )


class StreamClient:
    """Reads one wallet's stream to its end across as many connections as it takes."""

    def __init__(self, options: Options, out: TextIO, err: TextIO) -> None:
        self.options, self.out, self.err = options, out, err
        self.progress = Progress(err, enabled=not options.quiet)
        self.cursor = options.before  # the id of the last trades event printed
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

    async def run(self) -> int:
        """Stream until `complete` or a final failure; the exit status of the table."""
        opts = self.options
        timeout = aiohttp.ClientTimeout(
            total=None, connect=opts.timeout_s, sock_read=opts.timeout_s
        )
        failures = limited = 0
        async with aiohttp.ClientSession(timeout=timeout) as http:
            while True:
                received = self.received
                outcome = await self._connect(http)
                if outcome.complete is not None or self._limit_reached():
                    self._finish(outcome.complete)
                    return EXIT_OK
                if self.received > received:
                    failures = limited = 0
                if outcome.code in RATE_LIMITED:
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
                where = f" from {_short(self.cursor, 8, 4)}" if self.cursor else ""
                self._notice(
                    f"{self._describe(outcome)}; retrying{where} in {wait:.1f} s"
                    f" (attempt {attempt} of {attempts})"
                )
                self.retries += 1
                await asyncio.sleep(wait)

    def _limit_reached(self) -> bool:
        limit = self.options.limit
        return limit is not None and self.received >= limit

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
        if opts.limit is not None:
            params["limit"] = str(opts.limit - self.received)
        return url, headers, params

    async def _connect(self, http: aiohttp.ClientSession) -> Outcome:
        url, headers, params = self._request()
        try:
            async with http.get(url, headers=headers, params=params) as resp:
                if resp.status != 200:
                    return await _http_error(resp)
                if resp.content_type != "text/event-stream":
                    return _protocol_error(f"expected an event stream, got {resp.content_type}")
                parser = SSEParser()
                async for chunk in resp.content.iter_any():
                    for event in parser.feed(chunk):
                        outcome = self._handle(event)
                        if outcome is not None:
                            return outcome
                    if parser.retry_ms is not None:
                        self.retry_ms = parser.retry_ms
            return Outcome(None, "the stream ended before `complete`")
        except BrokenPipeError:
            raise  # our stdout, not the connection: see run()
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            return Outcome(None, _exception_text(exc))
        finally:
            self.scanned_before += self.scanned
            self.scanned = 0

    def _handle(self, event: SSEEvent) -> Outcome | None:
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
            self.progress.update(self.scanned_before + self.scanned, self.received)
        elif event.name == "progress":
            self.scanned = int(data.get("signatures_scanned") or 0)
            self.progress.update(self.scanned_before + self.scanned, self.received)
        elif event.name == "complete":
            self.scanned = int(data.get("signatures_scanned") or 0)
            return Outcome("COMPLETE", "complete", complete=data)
        elif event.name == "error":
            code = str(data.get("code") or "INTERNAL_ERROR")
            message = str(data.get("error") or code)
            retry_after = data.get("retry_after")
            if code in RESUMABLE and not self.cursor:
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
        for trade in trades:
            signature = str(trade.get("signature"))
            if signature in self.seen:
                self.duplicates += 1
            self.seen.add(signature)
            self.actions[str(trade.get("action"))] += 1
        self.received += len(trades)

    def _notice(self, text: str, *, redraw: bool = True) -> None:
        if not self.options.quiet:
            self.progress.clear()
            print(f"walletd stream: {text}", file=self.err, flush=True)
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
        suffix = "; giving up" if outcome.resumable or outcome.code in RATE_LIMITED else ""
        print(f"walletd stream: {self._describe(outcome)}{suffix}", file=self.err, flush=True)

    def _finish(self, complete: dict[str, Any] | None) -> None:
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
            print(json.dumps({"complete": complete, "client": client}), file=self.err, flush=True)
            return
        actions = ", ".join(f"{n} {a}s" for a, n in sorted(self.actions.items()))
        truncated = complete is None or bool(complete.get("truncated"))
        # Connections that ended early reported their scan only up to their last progress.
        at_least = "at least " if self.retries else ""
        print(
            f"complete: {self.received} trades ({actions or 'none'}), "
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


def _positive(convert: type[int] | type[float], *, zero: bool = False) -> Any:
    def parse(text: str) -> int | float:
        try:
            value = convert(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0 or (value == 0 and not zero):
            raise argparse.ArgumentTypeError(f"must be {'0 or more' if zero else 'positive'}")
        return value

    return parse


def _url(text: str) -> str:
    if not re.fullmatch(r"https?://[^\s/?#]+(/[^\s?#]*)?", text):
        raise argparse.ArgumentTypeError(f"expected http(s)://host[:port][/path], got {text!r}")
    return text


def configure_parser(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("address", metavar="ADDRESS", help="the wallet (Solana address)")
    parser.add_argument(
        "--url", type=_url, default="http://localhost:8080", help="walletd's base URL"
    )
    parser.add_argument(
        "--api-key",
        metavar="KEY",
        help="API key, sent as Authorization: Bearer (default: WALLETD_API_KEY)",
    )
    parser.add_argument(
        "--limit", type=_positive(int), metavar="N", help="stop after this many trades"
    )
    parser.add_argument("--before", metavar="SIG", help="start after this trade signature")
    parser.add_argument("--format", choices=("table", "jsonl"), default="table")
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress, notices or summary; errors are still reported",
    )
    parser.add_argument(
        "--max-retries",
        type=_positive(int, zero=True),
        default=10,
        metavar="N",
        help="reconnections in a row without a new trade before giving up (default 10)",
    )
    parser.add_argument(
        "--retry-delay",
        type=_positive(float),
        default=1.0,
        metavar="S",
        help="first wait when the server gave no hint (default 1)",
    )
    parser.add_argument(
        "--max-retry-delay",
        type=_positive(float),
        default=30.0,
        metavar="S",
        help="longest wait between attempts (default 30)",
    )
    parser.add_argument(
        "--timeout",
        type=_positive(float),
        default=60.0,
        metavar="S",
        help="connect timeout, and longest silence on a stream (heartbeats come every 15 s)",
    )


def add_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `stream` to the `walletd` parser."""
    configure_parser(
        commands.add_parser(
            "stream",
            help="print a wallet's trades from a walletd server",
            description=DESCRIPTION,
            epilog=EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
    )


def run(args: argparse.Namespace, env: Mapping[str, str] = os.environ) -> int:
    """Run `walletd stream`; the exit status of EPILOG. Needs no server settings."""
    api_key = args.api_key or env.get("WALLETD_API_KEY") or None
    if api_key is not None and not re.fullmatch(r"[!-~]+", api_key):  # a header must hold it
        print("walletd stream: the API key has spaces or control characters", file=sys.stderr)
        return EXIT_USAGE
    options = Options(
        url=args.url,
        address=args.address,
        api_key=api_key,
        limit=args.limit,
        before=args.before,
        format=args.format,
        quiet=args.quiet,
        max_retries=args.max_retries,
        retry_delay_s=args.retry_delay,
        max_retry_delay_s=args.max_retry_delay,
        timeout_s=args.timeout,
    )
    client = StreamClient(options, sys.stdout, sys.stderr)
    try:
        return asyncio.run(client.run())
    except KeyboardInterrupt:
        client.progress.clear()
        sys.stdout.flush()
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        # Python would report the pipe again while flushing stdout at exit.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_PIPE


def main(argv: Sequence[str] | None = None) -> int:
    """`python -m walletd.stream_cli ADDRESS ...`: the command without `walletd`'s parser."""
    parser = argparse.ArgumentParser(
        prog="walletd stream",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    configure_parser(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
