"""What `walletd stream` shows: the trade table and the progress line (stderr)."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TextIO

PROGRESS_INTERVAL_S = 5.0  # between plain progress lines when stderr is not a terminal


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


def short(text: str, head: int = 4, tail: int = 4) -> str:
    return text if len(text) <= head + tail + 3 else f"{text[:head]}...{text[-tail:]}"


def leg(leg: Any) -> tuple[str, str]:
    """(amount, symbol or shortened mint) of a trade's token_in/token_out."""
    if not isinstance(leg, dict):
        return "-", "-"
    return str(leg.get("amount", "-")), str(leg.get("symbol") or short(str(leg.get("mint", "-"))))


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
    gave, got = leg(trade.get("token_in")), leg(trade.get("token_out"))
    return (
        f"{when:<20}  {trade.get('action', '-'):<6}  {gave[0]:>20} {gave[1]:<11} -> "
        f"{got[0]:>20} {got[1]:<11}  {trade.get('dex') or '-':<9}  "
        f"{short(str(trade.get('signature', '-')), 8, 4)}"
    )
