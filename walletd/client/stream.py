"""`walletd stream ADDRESS`: a terminal client of the trade stream that resumes on its own.

stdout carries only trades (JSON lines or a table), so it can be piped; progress,
resume notices, the final summary and errors go to stderr. A dropped connection or a
resumable `error` event reconnects with `Last-Event-ID` = the id of the last `trades`
event printed, which the server continues exactly after (SPEC §1). `--follow` asks for
`follow=true`: the history, a "caught up" line on stderr, then live trades until Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import sys
import textwrap
from collections.abc import Mapping, Sequence
from itertools import groupby
from typing import Any

from walletd.client.session import (
    EXIT_INTERRUPTED,
    EXIT_PIPE,
    EXIT_USAGE,
    Options,
    StreamClient,
)
from walletd.errors import EXIT_STATUSES, RATE_LIMITED_CODES, RESUMABLE_CODES

DESCRIPTION = """\
Print a wallet's trades from a walletd server as they stream in. stdout carries only
trades (--format jsonl: one trade object per line; table: aligned rows), so it can be
piped; progress, retry notices, the summary and errors go to stderr. The API key comes
from --api-key or WALLETD_API_KEY and is sent as Authorization: Bearer.

With --follow, the history is followed by a "caught up" line on stderr, then by the
wallet's new trades as they land, each printed (and flushed) as it arrives, until Ctrl-C
(status 130, after a summary on stderr) or a failure that cannot be resumed.
"""


def _exit_table() -> str:
    """Every code's status, three to a line, a line per tens (10s: keys, 20s: input...)."""
    rows = groupby(sorted(EXIT_STATUSES.items(), key=lambda item: item[1]), lambda i: i[1] // 10)
    lines = []
    for _, row in rows:
        entries = [f"{status}  {code:<21}" for code, status in row]
        lines += ["  " + "".join(entries[i : i + 3]).rstrip() for i in range(0, len(entries), 3)]
    return "\n".join(lines)


def _names(codes: Sequence[str]) -> str:
    return ", ".join(codes[:-1]) + " and " + codes[-1]


_RETRIES = textwrap.fill(
    f"A dropped connection, a timeout and the errors {_names(RESUMABLE_CODES)} resume from "
    "the last trades received, waiting the server's retry hint (doubling while nothing "
    "arrives, at most --max-retry-delay), up to --max-retries attempts in a row without a "
    "new trade (with --follow: nor a `caught_up`); the status above reports the last "
    "failure. A 429 "
    f"({', '.join(RATE_LIMITED_CODES)}) is retried after its Retry-After at most twice in "
    "a row, and not at all when Retry-After is over --max-retry-delay.",
    width=84,
    break_on_hyphens=False,
)

EPILOG = f"""\
exit statuses:
  0   complete (or --limit trades received; never with --follow)
  1   unexpected response (not walletd's protocol)
  2   usage error
{_exit_table()}
  69  no connection after --max-retries attempts
  130 interrupted (Ctrl-C)   141 stdout closed early

{_RETRIES}
"""


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
        "--limit",
        type=_positive(int),
        metavar="N",
        help="stop after this many trades (with --follow: of the history, then go on live)",
    )
    parser.add_argument("--before", metavar="SIG", help="start after this trade signature")
    parser.add_argument(
        "--follow",
        action="store_true",
        help="after the history, keep printing the wallet's new trades until Ctrl-C",
    )
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
    if args.follow and args.before:  # the server would refuse it (INVALID_PARAMETER)
        print("walletd stream: --before cannot be used with --follow", file=sys.stderr)
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
        follow=args.follow,
    )
    client = StreamClient(options, sys.stdout, sys.stderr)
    try:
        return asyncio.run(client.run())
    except KeyboardInterrupt:
        sys.stdout.flush()
        client.interrupted()
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
