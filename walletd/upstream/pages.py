"""A history page, parsed, encoded and framed once for every stream of a wallet.

parse_page reads a source's page through its reader (the adapter's) and encodes each
trade once; frame_page cuts a parsed page into the `trades` events every stream writes
as they are (the prebuilt shared frames that make streams cheap). Only plain tuples of
atoms and bytes are kept per trade, which the garbage collector skips.
"""

from __future__ import annotations

import logging
import sys
from array import array
from dataclasses import dataclass

import orjson

from walletd.stream import sse
from walletd.stream.sse import encode_json
from walletd.trades.summary import TradeFacts, TradeSummary, facts_of
from walletd.upstream.source import TxPage

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class ScannedPage:
    """One page of history, parsed, encoded, summarised and framed once for every stream.

    Every stream of a recording starts at its first page and sends whole pages (only the
    stream's last page may be cut by `limit`), so its batches are numbered exactly as the
    recording numbers them: the page's `trades` events are built once, here, and written
    as they are. Only plain tuples of atoms are kept per trade, which the GC untracks.
    """

    scanned: int  # transactions examined
    signatures: tuple[str, ...]
    positions: tuple[int, ...]  # index of each trade's transaction within the page
    facts: tuple[TradeFacts, ...]
    summary: TradeSummary  # of all trades: streams sending the whole page merge it
    batch_size: int
    frames: tuple[bytes, ...]  # the page's `trades` events, one per batch
    frames_size: int  # their bytes in all
    last_ids: tuple[str, ...]  # each frame's `id:`
    totals: tuple[int, ...]  # each frame's `total`
    body_starts: tuple[int, ...]  # where each frame's trade objects start
    ends: array[int]  # where each trade's object ends, within its frame (4 bytes each)

    def __len__(self) -> int:
        return len(self.signatures)

    def batch_end(self, batch: int) -> int:
        """The index after the last trade of the page's `batch`-th frame."""
        return min((batch + 1) * self.batch_size, len(self.signatures))

    def body(self, start: int, stop: int) -> memoryview:
        """The objects of trades[start:stop], within one batch, comma-separated, uncopied."""
        batch = start // self.batch_size
        frame = memoryview(self.frames[batch])
        begin = self.ends[start - 1] + 1 if start % self.batch_size else self.body_starts[batch]
        return frame[begin : self.ends[stop - 1]]


@dataclass(frozen=True, slots=True)
class ParsedPage:
    """A page's trades, parsed and encoded but not yet framed: what the shared cache
    stores (frames depend on SSE_BATCH_SIZE and on the pages before, so they are not)."""

    scanned: int
    signatures: tuple[str, ...]
    positions: tuple[int, ...]
    facts: tuple[TradeFacts, ...]
    objects: tuple[bytes, ...]  # each trade's JSON object

    @classmethod
    def of(cls, page: ScannedPage) -> ParsedPage:
        objects = tuple(bytes(page.body(i, i + 1)) for i in range(len(page)))
        return cls(page.scanned, page.signatures, page.positions, page.facts, objects)


def parse_page(page: TxPage, wallet: str, seen: set[str]) -> ParsedPage:
    """Parse and encode one page. `seen` keeps one trade per signature across pages."""
    signatures: list[str] = []
    positions: list[int] = []
    facts: list[TradeFacts] = []
    objects: list[bytes] = []
    for position, tx in enumerate(page.transactions):
        trade = page.read(tx, wallet, position=position)
        if trade is None or trade.signature in seen:
            continue
        try:
            objects.append(encode_json(trade.to_dict()))
        except orjson.JSONEncodeError:
            log.warning("unencodable_trade", extra={"position": position})
            continue
        seen.add(trade.signature)
        signatures.append(trade.signature)
        positions.append(position)
        given, received, *rest = facts_of(trade)
        # Mints repeat across a history (SOL in most trades): one string each, not one
        # per trade (bench/history_memory.py).
        facts.append((sys.intern(given), sys.intern(received), *rest))  # type: ignore[arg-type]
    return ParsedPage(
        len(page.transactions), tuple(signatures), tuple(positions), tuple(facts), tuple(objects)
    )


def frame_page(page: ParsedPage, *, batch_size: int, batches: int, total: int) -> ScannedPage:
    """Summarise and frame one parsed page; `batches` and `total` are the recording's
    counts before this page."""
    summary = TradeSummary()
    for facts in page.facts:
        summary.add(facts)
    objects, signatures = page.objects, page.signatures
    frames: list[bytes] = []
    last_ids: list[str] = []
    totals: list[int] = []
    body_starts: list[int] = []
    ends: list[int] = []
    for start in range(0, len(objects), batch_size):
        batch = objects[start : start + batch_size]
        total += len(batch)
        batches += 1
        last_ids.append(signatures[start + len(batch) - 1])
        totals.append(total)
        prefix = sse.trades_prefix(last_ids[-1])
        end = len(prefix) - 1
        for obj in batch:
            end += len(obj) + 1
            ends.append(end)
        body_starts.append(len(prefix))
        frames.append(b"".join((prefix, b",".join(batch), sse.trades_suffix(batches, total))))
    return ScannedPage(
        scanned=page.scanned,
        signatures=signatures,
        positions=page.positions,
        facts=page.facts,
        summary=summary,
        batch_size=batch_size,
        frames=tuple(frames),
        frames_size=sum(map(len, frames)),
        last_ids=tuple(last_ids),
        totals=tuple(totals),
        body_starts=tuple(body_starts),
        ends=array("I", ends),
    )
