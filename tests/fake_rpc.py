"""A fake Solana JSON-RPC provider: a real aiohttp HTTP server, with faults, for `UPSTREAM=rpc`.

Why: the `rpc` upstream must be tested and benchmarked against what providers do, over
real HTTP, offline: history by `getTransactionsForAddress` (gTFA) or by
`getSignaturesForAddress` + `getTransaction`, JSON-RPC batches, 429s, JSON-RPC errors
inside HTTP 200s, resets, hangs and bad bodies. Same design as tests/fake_helius.py,
whose fault machinery (Kind, Rule, EndpointFaults, TokenBucket, connection faults) and
demo histories it imports.

Protocol: ``POST /`` (``?api-key=KEY`` when the fake has a key), JSON-RPC 2.0.

* ``getTransactionsForAddress`` ``[address, config]``, following the request and response
  fields documented by Helius (https://www.helius.dev/docs/rpc/gettransactionsforaddress,
  API reference .../api-reference/rpc/http/gettransactionsforaddress), Alchemy
  (https://www.alchemy.com/docs/chains/solana/solana-api-endpoints/get-transactions-for-address),
  QuickNode (https://www.quicknode.com/docs/solana/getTransactionsForAddress) and Triton
  (https://docs.triton.one/chains/solana/gettransactionsforaddress): config
  ``transactionDetails`` (``signatures`` default, or ``full``), ``sortOrder`` (``desc``
  default, ``asc``), ``limit`` (1..1000 for signatures, 1..100 for full: Alchemy, Triton
  and QuickNode document 100; Helius now documents 1000 for both, so the fake keeps the
  common bound), ``paginationToken`` (opaque; Helius documents the format
  ``"slot:position"``, the fake uses ``"<slot>:<position in the history>"``),
  ``encoding``, ``maxSupportedTransactionVersion``, ``commitment``, and ``filters``
  applied as Helius documents them: ``status`` (``succeeded`` / ``failed`` / ``any``),
  ``slot`` ranges (``gte``, ``gt``, ``lte``, ``lt``), ``blockTime`` ranges (those and
  ``eq``), ``tokenAccounts`` (``none`` / ``balanceChanged`` / ``all``, all alike: the
  histories served here already hold what the wallet's token accounts touched); a
  ``signature`` range is refused (-32602): no provider documents its ordering. A page
  carries a token only when another entry matches. The result is
  ``{"data": [...], "paginationToken": token or null}``; a ``full`` entry is the
  getTransaction result plus ``transactionIndex``, a ``signatures`` entry is
  ``{signature, slot, transactionIndex, err, memo, blockTime, confirmationStatus}``.
  ``gtfa=False`` answers ``-32601`` Method not found (a provider without gTFA).
* ``getSignaturesForAddress`` ``[address, {limit 1..1000, before, until}]``: newest
  first, strictly older than ``before``, stopping before ``until``. An unknown ``before``
  or ``until`` is ``-32020`` (Agave 4.0, anza-xyz/agave#7937), or ``[]`` with
  ``unknown_cursor="empty"`` (older nodes).
* ``getTransaction`` ``[signature, {encoding, maxSupportedTransactionVersion}]``: the
  stored result or ``null``; a v0 transaction asked without
  ``maxSupportedTransactionVersion`` is ``-32015``, as Agave answers. Transactions are
  served in the form they are stored (real samples keep their encoding: base64 for the
  jowency files); synthetic ones are jsonParsed.
* Batches: a JSON array of calls gets an array of answers (JSON-RPC 2.0 §6), at most
  ``max_batch`` calls; ``batches=False`` refuses any array with one ``-32600`` error
  (what providers that disable batches answer). Faults apply to the HTTP request, so an
  injected error answers a whole batch with one error object. The rate limit counts HTTP
  requests, or with ``meter_calls=True`` every call of a batch, as real providers meter
  them (walletd/upstream/pacing.py cites them): a batch of N passes once a token is free
  and the next request waits until its N calls are paid for.

Data: ``add_synthetic(address, count)`` (the demo history, converted by
tests/rpc_shapes.py), ``load_samples(folder)`` (tests/data/rpc: each real transaction in
the history of its fee payer), ``add_history(address, txs)`` (getTransaction results,
newest first), and ``add_newer(address, txs)`` (newest first; ``add_transaction`` for
one) to land new transactions on a running server (live follow).

Faults (``fake.faults``, an EndpointFaults): ``latency_s``; ``limit_rps(rps, burst)``
answering HTTP 429 with ``Retry-After`` and a ``-32005`` error body; ``inject(kind, ...)``
with the kinds of fake_helius.Kind: ``status`` (5xx, 429...), ``rpc_error`` (``code``:
-32005, -32603, -32601, -32020...), ``hang``, ``reset``, ``reset_body``, ``malformed``,
``truncated``, ``delay``; ``when(entry)`` selects requests (e.g. by ``entry.method``).

Request log: ``fake.log``, one RpcLogEntry per HTTP request, in arrival order.

Standalone (from the repository root)::

    python -m tests.fake_rpc --port 8898 --latency-ms 50 --rps 50 \\
        --synthetic GFmfk7ocGPRt19DuyGC6ezLtY1PtT6Zn1R53P169oSiL=10000 \\
        [--samples tests/data/rpc] [--key KEY] [--no-gtfa] [--no-batches] [--meter-calls]

then ``RPC_URL=http://127.0.0.1:8898`` (``/?api-key=KEY`` with ``--key``).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import functools
import itertools
import json
import math
import operator
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

try:  # as a module of the tests folder (pytest) or of the repository (python -m tests...)
    from tests.fake_helius import (
        _STOPPING,
        EndpointFaults,
        Kind,
        Rule,
        TokenBucket,
        _dropped,
        _hang,
        _reset_mid_body,
        _seconds,
        arrival,
        synthetic_transactions,
    )
    from tests.rpc_shapes import to_rpc
except ImportError:  # pragma: no cover
    from tests.fake_helius import (
        _STOPPING,
        EndpointFaults,
        Kind,
        Rule,
        TokenBucket,
        _dropped,
        _hang,
        _reset_mid_body,
        _seconds,
        arrival,
        synthetic_transactions,
    )
    from tests.rpc_shapes import to_rpc

from walletd.trades.solana import is_address, is_signature
from walletd.upstream.rpc.message import decode_transaction

MAX_SIGNATURES = 1000
MAX_FULL = 100
MAX_BATCH = 100
UNKNOWN_CURSOR_CODE = -32020
RATE_LIMITED_CODE = -32005
UNSUPPORTED_VERSION_CODE = -32015

Clock = Callable[[], float]


class RpcError(Exception):
    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code, self.message = code, message


@dataclass
class RpcLogEntry:
    """One HTTP request as the fake saw it (a batch is one entry, `calls` its methods)."""

    t: float
    method: str | None = None  # the method, "batch", or None when unreadable
    calls: tuple[str, ...] = ()
    rpc_id: Any = None
    address: str | None = None
    signature: str | None = None  # getTransaction
    before: str | None = None
    until: str | None = None
    limit: int | None = None
    pagination_token: str | None = None
    details: str | None = None  # gTFA transactionDetails
    filters: dict[str, Any] | None = None  # gTFA filters
    returned: int | None = None
    status: int | None = None
    fault: str | None = None
    t_end: float | None = None


@dataclass
class _Entry:
    signature: str
    slot: int
    block_time: int | None
    err: Any
    index: int  # transactionIndex
    # The gTFA `signatures` record, encoded once (see FakeRpc._gtfa).
    listed: orjson.Fragment | None = field(default=None, repr=False, compare=False)

    def listing_record(self) -> orjson.Fragment:
        if self.listed is None:
            record = {**_signature_info(self), "transactionIndex": self.index}
            self.listed = orjson.Fragment(orjson.dumps(record))
        return self.listed


@dataclass
class _History:
    entries: list[_Entry] = field(default_factory=list)  # newest first

    def position(self, signature: str) -> int | None:
        for i, entry in enumerate(self.entries):
            if entry.signature == signature:
                return i
        return None


class FakeRpc:
    """A Solana JSON-RPC provider over histories held here; `app()` is the aiohttp app."""

    def __init__(
        self,
        api_key: str | None = None,
        *,
        gtfa: bool = True,
        batches: bool = True,
        max_batch: int = MAX_BATCH,
        unknown_cursor: str = "error",
        meter_calls: bool = False,
        clock: Clock = time.monotonic,
    ) -> None:
        if unknown_cursor not in ("error", "empty"):
            raise ValueError("unknown_cursor must be 'error' or 'empty'")
        self.api_key = api_key
        self.gtfa, self.batches, self.max_batch = gtfa, batches, max_batch
        self.unknown_cursor = unknown_cursor
        self.meter_calls = meter_calls
        self.clock = clock
        self.faults = EndpointFaults()
        self.log: list[RpcLogEntry] = []
        self.histories: dict[str, _History] = {}
        self._transactions: dict[str, bytes] = {}
        self._v0: set[str] = set()  # signatures of version-0 transactions

    # --- data ---

    def add_history(self, address: str, txs: Iterable[Mapping[str, Any]]) -> None:
        """Serve getTransaction results `txs` (newest first) as the history of `address`,
        after what it already holds."""
        history = self.histories.setdefault(address, _History())
        for tx in txs:
            history.entries.append(self._store(tx))

    def add_transaction(self, address: str, tx: Mapping[str, Any]) -> None:
        """Land `tx` as the newest transaction of `address` (on a running server too)."""
        self.add_newer(address, [tx])

    def add_newer(self, address: str, txs: Iterable[Mapping[str, Any]]) -> None:
        """Land `txs` (newest first) on `address`, newer than everything it has: what a
        live wallet does while walletd follows it (as FakeHelius.add_newer)."""
        history = self.histories.setdefault(address, _History())
        listed = {entry.signature for entry in history.entries}
        landed = [entry for entry in map(self._store, txs) if entry.signature not in listed]
        history.entries[:0] = landed

    def add_synthetic(self, address: str, count: int | None = None) -> list[dict[str, Any]]:
        """Serve the demo history of `address` as RPC results; returns the demo
        (Helius-shaped) transactions, newest first, for tests to compare against."""
        if not is_address(address):
            raise ValueError(f"not a Solana address: {address!r}")
        demo = synthetic_transactions(address, count)
        self.add_history(address, [to_rpc(tx) for tx in demo])
        return demo

    def load_samples(self, folder: Path | str) -> None:
        """Serve every real transaction of `folder` (tests/data/rpc) for its fee payer."""
        by_payer: dict[str, list[dict[str, Any]]] = {}
        for path in sorted(Path(folder).rglob("*.json")):
            data = json.loads(path.read_text(encoding="utf-8"))
            tx = data.get("raw") or data.get("result") or data
            by_payer.setdefault(_keys(tx)[0], []).append(tx)
        for payer, txs in by_payer.items():
            txs.sort(key=lambda tx: -(tx.get("slot") or 0))
            self.add_history(payer, txs)

    def transaction(self, signature: str) -> dict[str, Any] | None:
        raw = self._transactions.get(signature)
        return None if raw is None else orjson.loads(raw)

    def _store(self, tx: Mapping[str, Any]) -> _Entry:
        signature = _signature(tx)
        self._transactions.setdefault(signature, orjson.dumps(tx))
        if tx.get("version") == 0:
            self._v0.add(signature)
        meta = tx.get("meta") or {}
        entry = _Entry(signature, tx.get("slot") or 0, tx.get("blockTime"), meta.get("err"), 0)
        entry.listing_record()  # encoded now, not while a request waits to be stamped
        return entry

    # --- URLs and the app ---

    def url(self, server: Any) -> str:
        """RPC_URL for a running aiohttp TestServer (with the key when the fake has one)."""
        base = str(server.make_url("/"))
        return f"{base}?api-key={self.api_key}" if self.api_key else base

    def walletd_env(self, server: Any, method: str = "auto", **extra: Any) -> dict[str, str]:
        """The environment of a walletd using `server` as its RPC provider (history by
        RPC_HISTORY_METHOD `method`), paced at 1000 RPS so that pacing never slows a
        test; `extra` adds or overrides variables."""
        env = {
            "UPSTREAM": "rpc",
            "RPC_URL": self.url(server),
            "RPC_HISTORY_METHOD": method,
            "UPSTREAM_RPS": 1000,
            "UPSTREAM_TIMEOUT": 5,
            **extra,
        }
        return {name: str(value) for name, value in env.items()}

    def app(self) -> web.Application:
        app = web.Application()
        app[_STOPPING] = asyncio.Event()
        app.router.add_post("/", self._handle)

        async def release_hangs(app: web.Application) -> None:
            app[_STOPPING].set()

        app.on_shutdown.append(release_hangs)
        return app

    def calls(self, method: str | None = None) -> list[RpcLogEntry]:
        return [e for e in self.log if method is None or e.method == method or method in e.calls]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        entry = RpcLogEntry(t=arrival(request, self.clock))
        self.log.append(entry)
        try:
            message = _json_or_none(await request.read())
            _describe(entry, message)
            if self.api_key is not None and request.query.get("api-key") != self.api_key:
                entry.fault = "auth"
                return self._finish(entry, _response(401, {"error": "invalid api key"}))
            cost = len(entry.calls) if self.meter_calls and entry.calls else 1
            limiter = self.faults.limiter
            wait = limiter.take(cost, at=entry.t) if limiter is not None else None
            if wait is not None:
                entry.fault = "rate_limit"
                body = _error(RATE_LIMITED_CODE, "Too many requests", entry.rpc_id)
                headers = {"Retry-After": str(max(1, math.ceil(wait)))}
                return self._finish(entry, _response(429, body, headers))
            if self.faults.latency_s > 0:
                await asyncio.sleep(self.faults.latency_s)
            rule = self.faults.next_rule(entry)  # type: ignore[arg-type]
            if rule is not None:
                entry.fault = rule.kind
                instead = await self._instead(request, entry, rule)
                if instead is not None:
                    return instead
            answer = orjson.dumps(self._answer(message, entry))
            if rule is not None and rule.kind == Kind.RESET_BODY:
                entry.status = 200
                return await _reset_mid_body(request, 200, answer)
            if rule is not None and rule.kind == Kind.MALFORMED:
                answer = answer[: len(answer) // 2] + b"}<html>not json"
            elif rule is not None and rule.kind == Kind.TRUNCATED:
                answer = answer[: max(1, len(answer) // 2)]
            return self._finish(entry, web.Response(body=answer, content_type="application/json"))
        finally:
            entry.t_end = self.clock()

    async def _instead(
        self, request: web.Request, entry: RpcLogEntry, rule: Rule
    ) -> web.StreamResponse | None:
        if rule.kind == Kind.DELAY:
            await asyncio.sleep(rule.delay_s)
        elif rule.kind == Kind.STATUS:
            headers = {}
            if rule.retry_after is not None:
                headers["Retry-After"] = _seconds(rule.retry_after)
            return self._finish(entry, _response(rule.status, {"error": "injected"}, headers))
        elif rule.kind == Kind.RPC_ERROR:
            return self._finish(
                entry, _response(200, _error(rule.code, rule.message, entry.rpc_id))
            )
        elif rule.kind == Kind.HANG:
            await _hang(request)
            return _dropped(request)
        elif rule.kind == Kind.RESET:
            return _dropped(request)
        return None

    @staticmethod
    def _finish(entry: RpcLogEntry, response: web.Response) -> web.Response:
        entry.status = response.status
        return response

    # --- answers ---

    def _answer(self, message: Any, entry: RpcLogEntry) -> Any:
        if message is None:
            return _error(-32700, "Parse error", None)
        if isinstance(message, list):
            if not self.batches:
                return _error(-32600, "Batch requests are not allowed", None)
            if not message or len(message) > self.max_batch:
                return _error(-32600, f"Invalid request: batch of 1..{self.max_batch}", None)
            answers = [self._call(call) for call in message]
            entry.returned = len(answers)
            return answers
        answer = self._call(message)
        result = answer.get("result")
        if isinstance(result, list):
            entry.returned = len(result)
        elif isinstance(result, dict) and isinstance(result.get("data"), list):
            entry.returned = len(result["data"])
        return answer

    def _call(self, call: Any) -> dict[str, Any]:
        if not isinstance(call, dict):
            return _error(-32600, "Invalid request", None)
        request_id = call.get("id")
        method, params = call.get("method"), call.get("params", [])
        if call.get("jsonrpc") != "2.0" or not isinstance(method, str):
            return _error(-32600, "Invalid request", request_id)
        handler = {
            "getSignaturesForAddress": self._signatures,
            "getTransaction": self._transaction,
            "getTransactionsForAddress": self._gtfa if self.gtfa else None,
        }.get(method)
        if handler is None:
            return _error(-32601, "Method not found", request_id)
        if not isinstance(params, list):
            return _error(-32602, "Invalid params", request_id)
        try:
            result = handler(params)
        except RpcError as exc:
            return _error(exc.code, exc.message, request_id)
        return {"jsonrpc": "2.0", "result": result, "id": request_id}

    def _history(self, params: list[Any]) -> tuple[_History, dict[str, Any]]:
        if not 1 <= len(params) <= 2 or not isinstance(params[0], str) or not is_address(params[0]):
            raise RpcError(-32602, "Invalid param: Invalid")
        config = params[1] if len(params) == 2 and params[1] is not None else {}
        if not isinstance(config, dict):
            raise RpcError(-32602, "Invalid params: config must be an object")
        return self.histories.get(params[0], _History()), config

    def _cursor(self, history: _History, config: dict[str, Any], name: str) -> int | None:
        value = config.get(name)
        if value is None:
            return None
        if not isinstance(value, str) or not is_signature(value):
            raise RpcError(-32602, "Invalid param: Invalid")
        position = history.position(value)
        if position is None and self.unknown_cursor == "error":
            raise RpcError(UNKNOWN_CURSOR_CODE, f"Transaction {value} not found")
        return -1 if position is None else position

    def _signatures(self, params: list[Any]) -> list[dict[str, Any]]:
        history, config = self._history(params)
        limit = _limit(config, MAX_SIGNATURES)
        before, until = (
            self._cursor(history, config, "before"),
            self._cursor(history, config, "until"),
        )
        if before == -1 or until == -1:  # unknown cursor on an old node: nothing
            return []
        start = 0 if before is None else before + 1
        end = len(history.entries) if until is None else until
        return [_signature_info(e) for e in history.entries[start:end][:limit]]

    def _transaction(self, params: list[Any]) -> dict[str, Any] | None:
        if (
            not 1 <= len(params) <= 2
            or not isinstance(params[0], str)
            or not is_signature(params[0])
        ):
            raise RpcError(-32602, "Invalid param: Invalid")
        config = params[1] if len(params) == 2 and isinstance(params[1], dict) else {}
        tx = self.transaction(params[0])
        if tx is None:
            return None
        _check_version(tx, config)
        return tx

    def _gtfa(self, params: list[Any]) -> dict[str, Any]:
        history, config = self._history(params)
        details = config.get("transactionDetails", "signatures")
        if details not in ("signatures", "full"):
            raise RpcError(-32602, "Invalid params: transactionDetails")
        limit = _limit(config, MAX_FULL if details == "full" else MAX_SIGNATURES)
        order = config.get("sortOrder", "desc")
        if order not in ("asc", "desc"):
            raise RpcError(-32602, "Invalid params: sortOrder")
        keep = _gtfa_filter(config.get("filters") or {})
        # Only the positions a `slot` range admits, and past the token's: scanning the
        # rest of the history for a match that cannot come held this fake's loop (and so
        # its arrival stamps) for milliseconds.
        start, end = _slot_window(history, config.get("filters") or {})
        token = config.get("paginationToken")
        after = None if token is None else _token_position(token, history)
        if order == "asc":
            top = end if after is None else min(end, after)
            positions = range(top - 1, start - 1, -1)
        else:
            positions = range(start if after is None else max(start, after + 1), end)
        # One more than the limit: a token only when another entry matches. Lazily: a
        # full scan per call stalled this fake's loop (and its arrival stamps) for ms.
        matching = (p for p in positions if keep(history.entries[p]))
        chosen = list(itertools.islice(matching, limit + 1))
        more, chosen = len(chosen) > limit, chosen[:limit]
        data = []
        for position in chosen:
            entry = history.entries[position]
            if details == "full":
                data.append(self._full_entry(entry, config))
            else:
                data.append(entry.listing_record())
        last = history.entries[chosen[-1]] if chosen else None
        next_token = f"{last.slot}:{chosen[-1]}" if more and last is not None else None
        return {"data": data, "paginationToken": next_token}

    def _full_entry(self, entry: _Entry, config: Mapping[str, Any]) -> Any:
        """A gTFA `full` record: the stored transaction plus its `transactionIndex`,
        spliced into the stored bytes (decoding and re-encoding 100 of them per call
        held this fake's loop, and so its arrival stamps, for milliseconds)."""
        raw = self._transactions.get(entry.signature)
        if raw is None or raw == b"{}":
            return {"transactionIndex": entry.index}
        if entry.signature in self._v0:
            _check_version({"version": 0}, config)
        return orjson.Fragment(raw[:-1] + b',"transactionIndex":%d}' % entry.index)

    # --- standalone ---

    async def serve(self, host: str, port: int) -> web.AppRunner:
        runner = web.AppRunner(self.app(), handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner


# --- helpers ----------------------------------------------------------------------------


def _keys(tx: Mapping[str, Any]) -> list[str]:
    transaction = tx["transaction"]
    if isinstance(transaction, list):
        return decode_transaction(base64.b64decode(transaction[0])).account_keys
    return [
        k["pubkey"] if isinstance(k, dict) else k for k in transaction["message"]["accountKeys"]
    ]


def _signature(tx: Mapping[str, Any]) -> str:
    transaction = tx["transaction"]
    if isinstance(transaction, list):
        return decode_transaction(base64.b64decode(transaction[0])).signatures[0]
    return str(transaction["signatures"][0])


def _check_version(tx: Mapping[str, Any], config: Mapping[str, Any]) -> None:
    if tx.get("version") == 0 and config.get("maxSupportedTransactionVersion") is None:
        raise RpcError(
            UNSUPPORTED_VERSION_CODE,
            "Transaction version (0) is not supported by the requesting client. Please try "
            "the request again with the following configuration parameter: "
            '"maxSupportedTransactionVersion": 0',
        )


def _limit(config: Mapping[str, Any], most: int) -> int:
    limit = config.get("limit", most)
    if limit is None:
        limit = most
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= most:
        raise RpcError(-32602, f"Invalid limit; max {most}")
    return limit


_COMPARISONS: dict[str, Callable[[int, int], bool]] = {
    "gte": operator.ge,
    "gt": operator.gt,
    "lte": operator.le,
    "lt": operator.lt,
}
_STATUSES = ("succeeded", "failed", "any")
_TOKEN_ACCOUNTS = ("none", "balanceChanged", "all")


def _gtfa_filter(filters: Any) -> Callable[[_Entry], bool]:
    """gTFA's `filters`, as Helius documents them: `slot` (gte/gt/lte/lt) and `blockTime`
    (those and eq) ranges, `status`, `tokenAccounts`. The histories here already hold what
    the wallet's token accounts touched, so every `tokenAccounts` value selects the same."""
    if not isinstance(filters, dict):
        raise RpcError(-32602, "Invalid params: filters")
    if "signature" in filters:  # its ordering is not documented: not guessed here
        raise RpcError(-32602, "Invalid params: filters.signature is not supported")
    status = filters.get("status", "any")
    if status not in _STATUSES:
        raise RpcError(-32602, "Invalid params: filters.status")
    if filters.get("tokenAccounts", "none") not in _TOKEN_ACCOUNTS:
        raise RpcError(-32602, "Invalid params: filters.tokenAccounts")
    bounds = [
        *_bounds(filters, "slot", _COMPARISONS),
        *_bounds(filters, "blockTime", {**_COMPARISONS, "eq": operator.eq}),
    ]

    def keep(entry: _Entry) -> bool:
        if status != "any" and (entry.err is None) != (status == "succeeded"):
            return False
        for field_name, compare, value in bounds:
            own = entry.slot if field_name == "slot" else entry.block_time
            if own is None or not compare(own, value):
                return False
        return True

    return keep


def _slot_window(history: _History, filters: Mapping[str, Any]) -> tuple[int, int]:
    """The positions (newest first, end excluded) whose slots a `slot` filter's bounds
    admit: the history is ordered by slot, so both ends are found by bisection."""
    bounds = filters.get("slot") or {}
    uppers = [bounds[op] - below for op, below in (("lte", 0), ("lt", 1)) if op in bounds]
    lowers = [bounds[op] + above for op, above in (("gte", 0), ("gt", 1)) if op in bounds]
    newest_first = functools.partial(bisect.bisect_left, history.entries, key=lambda e: -e.slot)
    start = newest_first(-min(uppers)) if uppers else 0
    end = newest_first(-max(lowers) + 1) if lowers else len(history.entries)
    return start, max(start, end)


def _bounds(
    filters: Mapping[str, Any], name: str, comparisons: Mapping[str, Callable[[int, int], bool]]
) -> list[tuple[str, Callable[[int, int], bool], int]]:
    given = filters.get(name)
    if given is None:
        return []
    if not isinstance(given, dict) or not given or not set(given) <= set(comparisons):
        raise RpcError(-32602, f"Invalid params: filters.{name}")
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in given.values()):
        raise RpcError(-32602, f"Invalid params: filters.{name}")
    return [(name, comparisons[op], value) for op, value in given.items()]


def _token_position(token: Any, history: _History) -> int:
    if isinstance(token, str):
        slot, _, position = token.partition(":")
        if slot.isdigit() and position.isdigit():
            index = int(position)
            if index < len(history.entries) and history.entries[index].slot == int(slot):
                return index
    raise RpcError(-32602, "Invalid pagination token")


def _signature_info(entry: _Entry) -> dict[str, Any]:
    return {
        "signature": entry.signature,
        "slot": entry.slot,
        "err": entry.err,
        "memo": None,
        "blockTime": entry.block_time,
        "confirmationStatus": "finalized",
    }


def _json_or_none(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _describe(entry: RpcLogEntry, message: Any) -> None:
    if isinstance(message, list):
        entry.method = "batch"
        entry.calls = tuple(
            str(c.get("method")) for c in message if isinstance(c, dict) and "method" in c
        )
        return
    if not isinstance(message, dict):
        return
    method = message.get("method")
    entry.method = method if isinstance(method, str) else None
    entry.rpc_id = message.get("id")
    params = message.get("params")
    if not isinstance(params, list) or not params:
        return
    first = params[0] if isinstance(params[0], str) else None
    if entry.method == "getTransaction":
        entry.signature = first
    else:
        entry.address = first
    config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
    for name, attr in (
        ("before", "before"),
        ("until", "until"),
        ("paginationToken", "pagination_token"),
        ("transactionDetails", "details"),
    ):
        value = config.get(name)
        setattr(entry, attr, value if isinstance(value, str) else None)
    filters = config.get("filters")
    entry.filters = filters if isinstance(filters, dict) else None
    limit = config.get("limit")
    entry.limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else None


def _error(code: int, message: str, request_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": request_id}


def _response(status: int, payload: Any, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(payload), content_type="application/json", headers=headers
    )


# --- standalone -------------------------------------------------------------------------


def _synthetic_arg(text: str) -> tuple[str, int | None]:
    address, _, count = text.partition("=")
    return address, int(count) if count else None


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_rpc", description="A fake Solana JSON-RPC provider."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8898)
    parser.add_argument("--key", default=None, help="require ?api-key=KEY")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rps", type=float, default=None)
    parser.add_argument("--burst", type=float, default=None, help="bucket size (default: rps)")
    parser.add_argument("--no-gtfa", action="store_true", help="getTransactionsForAddress: -32601")
    parser.add_argument("--no-batches", action="store_true", help="refuse JSON-RPC batches")
    parser.add_argument(
        "--meter-calls", action="store_true", help="rate-limit every call of a batch"
    )
    parser.add_argument(
        "--synthetic",
        action="append",
        default=[],
        type=_synthetic_arg,
        metavar="ADDRESS[=COUNT]",
        help="serve a demo history (COUNT transactions; default: its demo size)",
    )
    parser.add_argument("--samples", type=Path, default=None, help="tests/data/rpc")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    fake = FakeRpc(
        args.key, gtfa=not args.no_gtfa, batches=not args.no_batches, meter_calls=args.meter_calls
    )
    if args.samples is not None:
        fake.load_samples(args.samples)
    for address, count in args.synthetic:
        fake.add_synthetic(address, count)
    fake.faults.latency_s = args.latency_ms / 1000
    if args.rps:
        fake.faults.limiter = TokenBucket(args.rps, args.burst, clock=fake.clock)
    runner = await fake.serve(args.host, args.port)
    sizes = ", ".join(f"{a}={len(h.entries)}" for a, h in fake.histories.items()) or "none"
    print(f"fake RPC on http://{args.host}:{args.port} histories: {sizes}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> None:
    try:
        asyncio.run(_run(_parse_args(argv)))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
