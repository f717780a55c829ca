"""A fake Helius: a real aiohttp HTTP server speaking Helius's two protocols, with faults.

Why: walletd's Helius source has to be tested, and benchmarked, against what the real
service does (signature paging, short batches, 429 with Retry-After, 5xx, resets, hangs,
bad bodies), over real HTTP, offline and deterministically. A mock at the ClientSession
level would not exercise timeouts, connection handling or body decoding; this does.

Protocol (as Helius serves it):

* ``POST /?api-key=KEY``: JSON-RPC 2.0, method ``getSignaturesForAddress`` with params
  ``[address, {"limit": 1..1000, "before": signature}]``. The result lists
  ``{signature, slot, err, memo, blockTime, confirmationStatus}`` newest first, strictly
  older than ``before``; ``slot``/``blockTime``/``err`` come from the transaction itself
  (``slot``, ``timestamp``, ``transactionError``). An address without history gets ``[]``.
  As Agave does: ``limit`` 0 or above 1000 is ``-32602 "Invalid limit; max 1000"``, a
  malformed address or signature is ``-32602``, an unknown method ``-32601``, a body that
  is not JSON ``-32700``. ``until`` stops the listing before that signature (an
  ``until`` the history lacks is ignored, as on a real node: the listing runs on). Batch
  requests are refused (``-32600``): walletd sends none.
* ``POST /v0/transactions?api-key=KEY`` with ``{"transactions": [sig, ...]}`` (1..100):
  a JSON array of enhanced transactions in the order asked; a signature the fake does
  not know is simply absent (Helius answers short batches too). Over 100 is a 400.
* Unknown ``before`` cursor: since Agave 4.0 (anza-xyz/agave#7937) a ``before`` that the
  node cannot find is a JSON-RPC error, code ``-32020``, "Transaction <sig> not found";
  earlier nodes silently answered ``[]``. The default, ``unknown_before="error"``, is the
  current behaviour; ``unknown_before="empty"`` gives the old one.
* API key: the ``api-key`` query parameter. Missing: 401. Wrong: ``wrong_key_status``
  (401 by default, or 403). Bodies are ``{"error": "..."}``.

Data: ``add_synthetic(address, count)`` builds a history from walletd's demo generator
(the same transactions, signatures and order as ``DemoSource`` serves for that address:
``count=None`` means exactly the demo history); ``load_samples(folder)`` serves the real
samples of tests/data/helius/ (walletdoctor records belong to the walletdoctor wallet,
the two docs records to their fee payers; a partial record that carries no slot is listed
with ``"slot": null``); ``add_history(address, txs)`` serves any list, newest first.

Faults, per endpoint (``fake.faults.rpc`` / ``fake.faults.transactions``), changeable at
runtime: ``latency_s`` before every answer; ``limit_rps(rps, burst)``, a token bucket
answering 429 with ``Retry-After`` (whole seconds) beyond it; and ``inject(kind, ...)``,
rules applied to the next ``times`` matching requests (after letting ``skip`` through),
optionally only those where ``when(entry)`` holds. Kinds: ``status`` (any status, e.g.
500/502/503/429 with ``retry_after``), ``hang`` (no answer until the client hangs up or
the server stops), ``reset`` (connection dropped before the response), ``reset_body``
(headers and half the body, then dropped), ``malformed`` (200, invalid JSON),
``truncated`` (200, the JSON cut in half, framing intact), ``rpc_error`` (a JSON-RPC
error object), ``short`` (``drop`` transactions left out of a batch), ``delay`` (extra
``delay_s``).

Request log: ``fake.log`` holds one ``LogEntry`` per request, in arrival order, with the
clock time at arrival and answer, endpoint, the cursor and limit or number of signatures
asked, what was returned or omitted, the status (None when no status was sent) and the
fault applied; ``fake.calls(endpoint)`` filters it.

Standalone, for benchmarks (from the repository root)::

    python -m tests.fake_helius --port 8899 --latency-ms 50 --rps 50 \\
        --synthetic GFmfk7ocGPRt19DuyGC6ezLtY1PtT6Zn1R53P169oSiL=10000 \\
        [--samples tests/data/helius] [--key KEY] [--shared-rps]

then ``HELIUS_KEY=KEY HELIUS_RPC_URL=http://127.0.0.1:8899
HELIUS_API_URL=http://127.0.0.1:8899``. ``--rps`` limits each endpoint separately (Helius
plans state separate limits for RPC and the Enhanced APIs); ``--shared-rps`` makes it one
budget. The bucket holds ``--burst`` requests (default: one second's worth, ``--rps``), so
a client that bursts gets that many through at once; ``--burst 1`` forbids bursts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import json
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import orjson
from aiohttp import web

from walletd.trades.solana import is_address, is_signature
from walletd.upstream.demo import _transaction, _Wallet, history_size

DEFAULT_KEY = "fake-helius-key"
MAX_SIGNATURE_LIMIT = 1000
MAX_TRANSACTIONS = 100
UNKNOWN_CURSOR_CODE = -32020
RATE_LIMITED_CODE = -32429
# The wallet of the walletdoctor samples (their README); the docs records name their own.
WALLETDOCTOR_WALLET = "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2"
# Loaded first to last: the first record of a signature wins, so full records beat partials.
SAMPLE_FILES = (
    "walletdoctor_3JoVBiQE_debug.json",
    "walletdoctor_transaction_format_analysis.json",
    "walletdoctor_pump_transaction_data.json",
    "helius_docs_webhook_enhanced_nft_sale.json",
    "helius_docs_parse_transactions_transfer.json",
)
RPC = "rpc"
TRANSACTIONS = "transactions"
_HANG_POLL_S = 0.02
_STOPPING = web.AppKey("fake_helius_stopping", asyncio.Event)

Clock = Callable[[], float]


def arrival(request: web.Request, clock: Clock) -> float:
    """When `request` reached this host, on `clock`: the X-Arrival stamp of a wire
    relay in front of the fake (bench/wire_relay.py), else now."""
    stamped = request.headers.get("X-Arrival")
    if stamped is not None:
        with contextlib.suppress(ValueError):
            return float(stamped)
    return clock()


class Kind(enum.StrEnum):
    """What an injected fault does to a request."""

    STATUS = "status"
    HANG = "hang"
    RESET = "reset"
    RESET_BODY = "reset_body"
    MALFORMED = "malformed"
    TRUNCATED = "truncated"
    RPC_ERROR = "rpc_error"
    SHORT = "short"
    DELAY = "delay"


# --- the request log ----------------------------------------------------------------


@dataclass
class LogEntry:
    """One request as the fake saw it. Times are `clock()` values (monotonic by default)."""

    t: float
    endpoint: str  # RPC or TRANSACTIONS
    method: str | None = None  # the JSON-RPC method
    rpc_id: Any = None  # the JSON-RPC id, echoed by fault answers
    address: str | None = None
    before: str | None = None
    until: str | None = None  # getSignaturesForAddress's `until`: a live poll
    limit: int | None = None
    signatures: int | None = None  # how many transactions a batch asked for
    asked: tuple[str, ...] = ()
    returned: int | None = None  # signatures listed / transactions answered
    omitted: tuple[str, ...] = ()  # asked but left out: unknown or dropped by `short`
    status: int | None = None  # None: no status was sent (hang, reset)
    fault: str | None = None  # a Kind, "rate_limit" or "auth"
    t_end: float | None = None


# --- data -----------------------------------------------------------------------------


class SignatureInfo(NamedTuple):
    signature: str
    slot: int | None
    err: Any
    block_time: int | None

    def to_json(self) -> dict[str, Any]:
        return {
            "signature": self.signature,
            "slot": self.slot,
            "err": self.err,
            "memo": None,
            "blockTime": self.block_time,
            "confirmationStatus": "finalized",
        }


class History:
    """One address's signatures, newest first, with a position index for `before`."""

    def __init__(self, entries: Sequence[SignatureInfo]) -> None:
        self.entries = list(entries)
        self._position = {e.signature: i for i, e in enumerate(self.entries)}

    def __len__(self) -> int:
        return len(self.entries)

    def page(
        self, before: str | None, limit: int, until: str | None = None
    ) -> list[SignatureInfo] | None:
        """Up to `limit` entries strictly older than `before` and newer than `until`;
        None if `before` is unknown."""
        start = 0
        if before is not None:
            position = self._position.get(before)
            if position is None:
                return None
            start = position + 1
        stop = self._position.get(until, len(self.entries)) if until else len(self.entries)
        return self.entries[start : min(start + limit, max(stop, start))]


def signature_info(tx: Mapping[str, Any]) -> SignatureInfo:
    """The getSignaturesForAddress entry of an enhanced transaction."""
    slot, timestamp = tx.get("slot"), tx.get("timestamp")
    return SignatureInfo(
        signature=tx["signature"],
        slot=slot if isinstance(slot, int) else None,
        err=tx.get("transactionError"),
        block_time=timestamp if isinstance(timestamp, int) else None,
    )


def synthetic_transactions(address: str, count: int | None = None) -> list[dict[str, Any]]:
    """`count` demo transactions of `address`, newest first (None: its demo history size).

    Transaction i is the one DemoSource serves at position i, whatever `count` is.
    """
    wallet = _Wallet(address)
    wallet.size = history_size(address) if count is None else count
    wallet.extend(wallet.size)
    return [_transaction(wallet, i) for i in range(wallet.size)]


def sample_records(folder: Path) -> list[tuple[str, dict[str, Any]]]:
    """(address, record) for every transaction record of the Helius samples in `folder`."""
    out: list[tuple[str, dict[str, Any]]] = []
    for name in SAMPLE_FILES:
        data = json.loads((folder / name).read_text(encoding="utf-8"))
        if isinstance(data, dict) and "without_swap_event" in data:  # the analysis file
            data = list(data["with_swap_event"]) + list(data["without_swap_event"])
        records = data if isinstance(data, list) else [data]
        for record in records:
            owner = WALLETDOCTOR_WALLET if name.startswith("walletdoctor") else None
            out.append((owner or record["feePayer"], record))
    return out


def _newest_first(txs: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Sorted by (timestamp, slot), newest first; ties keep their given order."""

    def key(tx: Mapping[str, Any]) -> tuple[int, int]:
        return (-(tx.get("timestamp") or 0), -(tx.get("slot") or 0))

    return sorted(txs, key=key)


# --- faults ---------------------------------------------------------------------------


@dataclass
class Rule:
    """An injected fault: applies to the next `times` matching requests after `skip`."""

    kind: Kind
    times: int | None = 1  # None: every matching request until cleared
    skip: int = 0
    when: Callable[[LogEntry], bool] | None = None
    status: int = 503
    retry_after: float | None = None
    code: int = -32603
    message: str = "Internal error"
    drop: int = 1
    delay_s: float = 0.0
    applied: int = 0

    def matches(self, entry: LogEntry) -> bool:
        return self.when is None or self.when(entry)


class TokenBucket:
    """`rate` requests per second with bursts of `burst`; refusals say when to retry."""

    def __init__(self, rate: float, burst: float | None = None, *, clock: Clock) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self.rate = rate
        self.burst = max(1.0, burst if burst is not None else rate)
        self._clock = clock
        self._tokens = self.burst
        self._at = clock()

    def take(self, cost: int = 1, *, at: float | None = None) -> float | None:
        """Spend `cost` tokens and return None, or return the seconds until one is free.

        A request costing more than one token (a metered JSON-RPC batch) is let through
        once a token is free and leaves the bucket in debt: what follows waits until
        every call of it is paid for, `cost / rate` seconds. `at`: the request's arrival
        (the clock's), judged then rather than when its handler got round to it, as a
        provider's edge would."""
        now = self._clock() if at is None else at
        self._tokens = min(self.burst, self._tokens + max(0.0, now - self._at) * self.rate)
        self._at = max(self._at, now)
        if self._tokens >= 1:
            self._tokens -= cost
            return None
        return (1 - self._tokens) / self.rate


@dataclass
class EndpointFaults:
    """The faults of one endpoint: latency, a rate limit and injected rules."""

    latency_s: float = 0.0
    limiter: TokenBucket | None = None
    rules: list[Rule] = field(default_factory=list)

    def inject(self, kind: Kind | str, *, times: int | None = 1, **options: Any) -> Rule:
        """Apply `kind` to the next `times` matching requests; see Rule for options."""
        rule = Rule(Kind(kind), times=times, **options)
        if rule.times is not None and rule.times < 1:
            raise ValueError("times must be at least 1 (or None for always)")
        self.rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove the rules and the rate limit; latency stays."""
        self.rules.clear()
        self.limiter = None

    def next_rule(self, entry: LogEntry) -> Rule | None:
        """The rule this request triggers. Every matching rule counts it against `skip`."""
        chosen = None
        for rule in self.rules:
            if not rule.matches(entry):
                continue
            if rule.skip > 0:
                rule.skip -= 1
            elif chosen is None:
                chosen = rule
                rule.applied += 1
        if chosen is not None and chosen.times is not None and chosen.applied >= chosen.times:
            self.rules.remove(chosen)
        return chosen


class Faults:
    """Fault settings of both endpoints."""

    def __init__(self, clock: Clock) -> None:
        self._clock = clock
        self.rpc = EndpointFaults()
        self.transactions = EndpointFaults()

    def endpoint(self, name: str) -> EndpointFaults:
        return self.rpc if name == RPC else self.transactions

    def set_latency(self, seconds: float) -> None:
        self.rpc.latency_s = self.transactions.latency_s = seconds

    def limit_rps(self, rps: float, burst: float | None = None, *, shared: bool = False) -> None:
        """Rate-limit each endpoint to `rps` (or both together, with `shared`)."""
        self.rpc.limiter = TokenBucket(rps, burst, clock=self._clock)
        self.transactions.limiter = (
            self.rpc.limiter if shared else TokenBucket(rps, burst, clock=self._clock)
        )

    def clear(self) -> None:
        self.rpc.clear()
        self.transactions.clear()


# --- the server -----------------------------------------------------------------------


class _Answer(NamedTuple):
    """A normal answer before faults touch it: status, JSON body, what it held or left out."""

    status: int
    body: bytes
    returned: int | None = None
    omitted: tuple[str, ...] = ()


class FakeHelius:
    """Helius's JSON-RPC and Enhanced Transactions endpoints over histories held here.

    `app()` is the aiohttp Application (run it with pytest-aiohttp's `aiohttp_server`);
    `rpc_url(server)` / `api_url(server)` are the base URLs for HELIUS_RPC_URL /
    HELIUS_API_URL, `api_key` the HELIUS_KEY it accepts; `walletd_env(server)` is all of
    them, for a walletd under test.
    """

    def __init__(
        self,
        api_key: str = DEFAULT_KEY,
        *,
        samples_dir: Path | str | None = None,
        synthetic: Mapping[str, int | None] | None = None,
        wrong_key_status: int = 401,
        unknown_before: str = "error",
        clock: Clock = time.monotonic,
    ) -> None:
        if wrong_key_status not in (401, 403):
            raise ValueError("wrong_key_status must be 401 or 403")
        if unknown_before not in ("error", "empty"):
            raise ValueError("unknown_before must be 'error' or 'empty'")
        self.api_key = api_key
        self.wrong_key_status = wrong_key_status
        self.unknown_before = unknown_before
        self.clock = clock
        self.faults = Faults(clock)
        self.log: list[LogEntry] = []
        self.histories: dict[str, History] = {}
        self._transactions: dict[str, bytes] = {}  # signature -> serialized enhanced tx
        self._infos: dict[str, SignatureInfo] = {}  # signature -> its listing entry
        if samples_dir is not None:
            self.load_samples(Path(samples_dir))
        for address, count in (synthetic or {}).items():
            self.add_synthetic(address, count)

    # --- data ---

    def add_history(self, address: str, txs: Iterable[Mapping[str, Any]]) -> None:
        """Serve `txs` (enhanced transactions, newest first) as the history of `address`.

        Appends to a history the address already has. Transactions are served by
        signature whatever address asks; the first record of a signature wins.
        """
        entries = list(self.histories[address].entries) if address in self.histories else []
        listed = {e.signature for e in entries}
        for tx in txs:
            signature = tx["signature"]
            if signature not in self._transactions:
                self._transactions[signature] = orjson.dumps(tx)
                self._infos[signature] = signature_info(tx)
            if signature not in listed:
                listed.add(signature)
                entries.append(self._infos[signature])
        self.histories[address] = History(entries)

    def add_newer(self, address: str, txs: Iterable[Mapping[str, Any]]) -> None:
        """Land `txs` (newest first) on `address`, newer than everything it has: what a
        live wallet does while walletd follows it."""
        old = list(self.histories[address].entries) if address in self.histories else []
        self.histories.pop(address, None)
        self.add_history(address, txs)
        listed = {e.signature for e in self.histories[address].entries}
        self.histories[address] = History(
            self.histories[address].entries + [e for e in old if e.signature not in listed]
        )

    def add_synthetic(self, address: str, count: int | None = None) -> list[dict[str, Any]]:
        """Serve `count` demo transactions of `address` (None: its whole demo history).

        Returns them, newest first, for tests to compare against.
        """
        if not is_address(address):
            raise ValueError(f"not a Solana address: {address!r}")
        txs = synthetic_transactions(address, count)
        self.add_history(address, txs)
        return txs

    def load_samples(self, folder: Path) -> None:
        """Serve the real Helius samples of `folder` (tests/data/helius)."""
        by_address: dict[str, list[dict[str, Any]]] = {}
        for address, record in sample_records(folder):
            by_address.setdefault(address, []).append(record)
        for address, records in by_address.items():
            self.add_history(address, _newest_first(records))

    def transaction(self, signature: str) -> dict[str, Any] | None:
        """The enhanced transaction served for `signature`, as a fresh dict."""
        raw = self._transactions.get(signature)
        return None if raw is None else orjson.loads(raw)

    # --- log helpers ---

    def calls(self, endpoint: str | None = None) -> list[LogEntry]:
        """Logged requests, optionally of one endpoint (RPC or TRANSACTIONS)."""
        return [e for e in self.log if endpoint is None or e.endpoint == endpoint]

    # --- URLs ---

    @staticmethod
    def base_url(server: Any) -> str:
        """http://host:port of a running aiohttp TestServer."""
        return str(server.make_url("/")).rstrip("/")

    def rpc_url(self, server: Any, *, with_key: bool = False) -> str:
        """HELIUS_RPC_URL for `server`; with_key: the full URL a client posts to."""
        base = self.base_url(server)
        return f"{base}/?api-key={self.api_key}" if with_key else base

    def api_url(self, server: Any) -> str:
        """HELIUS_API_URL for `server` (the client appends /v0/transactions?api-key=...)."""
        return self.base_url(server)

    def transactions_url(self, server: Any) -> str:
        return f"{self.base_url(server)}/v0/transactions?api-key={self.api_key}"

    def walletd_env(self, server: Any, **extra: Any) -> dict[str, str]:
        """The environment of a walletd using `server` as Helius, paced at 1000 RPS so
        that pacing never slows a test; `extra` adds or overrides variables."""
        env = {
            "HELIUS_KEY": self.api_key,
            "HELIUS_RPC_URL": self.rpc_url(server),
            "HELIUS_API_URL": self.api_url(server),
            "UPSTREAM_RPS": "1000",
        }
        return {**env, **{name: str(value) for name, value in extra.items()}}

    # --- the app ---

    def app(self) -> web.Application:
        app = web.Application()
        app[_STOPPING] = asyncio.Event()
        app.router.add_post("/", self._rpc)
        app.router.add_post("/v0/transactions", self._enhanced)

        async def release_hangs(app: web.Application) -> None:
            app[_STOPPING].set()

        app.on_shutdown.append(release_hangs)
        return app

    async def _rpc(self, request: web.Request) -> web.StreamResponse:
        entry = LogEntry(t=arrival(request, self.clock), endpoint=RPC)
        body = await request.read()
        message = _json_or_none(body)
        _describe_rpc(entry, message)
        return await self._serve(request, entry, lambda: self._answer_rpc(message))

    async def _enhanced(self, request: web.Request) -> web.StreamResponse:
        entry = LogEntry(t=arrival(request, self.clock), endpoint=TRANSACTIONS)
        body = await request.read()
        message = _json_or_none(body)
        asked = _asked_signatures(message)
        if asked is not None:
            entry.asked, entry.signatures = tuple(asked), len(asked)
        return await self._serve(request, entry, lambda: self._answer_transactions(asked))

    async def _serve(
        self, request: web.Request, entry: LogEntry, answer: Callable[[], _Answer]
    ) -> web.StreamResponse:
        """Log the request, then: auth, rate limit, latency, injected fault, answer."""
        self.log.append(entry)
        faults = self.faults.endpoint(entry.endpoint)
        try:
            refusal = self._refuse(request, entry, faults)
            if refusal is not None:
                return refusal
            if faults.latency_s > 0:
                await asyncio.sleep(faults.latency_s)
            rule = faults.next_rule(entry)
            if rule is not None:
                entry.fault = rule.kind
            return await self._respond(request, entry, rule, answer)
        finally:
            entry.t_end = self.clock()

    def _refuse(
        self, request: web.Request, entry: LogEntry, faults: EndpointFaults
    ) -> web.Response | None:
        """401/403 for a missing or wrong key, 429 beyond the rate limit, else None."""
        key = request.query.get("api-key")
        if key != self.api_key:
            entry.fault = "auth"
            status = 401 if not key else self.wrong_key_status
            text = "missing api key" if not key else "invalid api key provided"
            return self._finish(entry, _error_response(status, text))
        wait = faults.limiter.take(at=entry.t) if faults.limiter is not None else None
        if wait is None:
            return None
        entry.fault = "rate_limit"
        headers = {"Retry-After": str(max(1, math.ceil(wait)))}
        if entry.endpoint == RPC:
            payload = _rpc_error(RATE_LIMITED_CODE, "rate limited", entry.rpc_id)
            return self._finish(entry, _json_response(429, payload, headers))
        return self._finish(entry, _error_response(429, "rate limited", headers))

    async def _respond(
        self,
        request: web.Request,
        entry: LogEntry,
        rule: Rule | None,
        answer: Callable[[], _Answer],
    ) -> web.StreamResponse:
        if rule is not None:
            instead = await self._instead_of_answer(request, entry, rule)
            if instead is not None:
                return instead
        result = answer()
        if rule is not None and rule.kind == Kind.SHORT:
            result = _short(result, rule.drop)
        entry.returned, entry.omitted = result.returned, result.omitted
        kind = rule.kind if rule is not None else None
        if kind == Kind.RESET_BODY:
            entry.status = result.status
            return await _reset_mid_body(request, result.status, result.body)
        body = result.body
        if kind == Kind.MALFORMED:
            body = body[: len(body) // 2] + b"}<html>not json"
        elif kind == Kind.TRUNCATED:
            body = body[: max(1, len(body) // 2)]
        return self._finish(entry, _bytes_response(result.status, body))

    async def _instead_of_answer(
        self, request: web.Request, entry: LogEntry, rule: Rule
    ) -> web.StreamResponse | None:
        """The response of a fault that replaces the answer, or None to answer anyway."""
        if rule.kind == Kind.DELAY:
            await asyncio.sleep(rule.delay_s)
        elif rule.kind == Kind.STATUS:
            headers = {}
            if rule.retry_after is not None:
                headers["Retry-After"] = _seconds(rule.retry_after)
            return self._finish(entry, _error_response(rule.status, "injected", headers))
        elif rule.kind == Kind.RPC_ERROR:
            payload = _rpc_error(rule.code, rule.message, entry.rpc_id)
            return self._finish(entry, _json_response(200, payload))
        elif rule.kind == Kind.HANG:
            await _hang(request)
            return _dropped(request)
        elif rule.kind == Kind.RESET:
            return _dropped(request)
        return None

    @staticmethod
    def _finish(entry: LogEntry, response: web.Response) -> web.Response:
        entry.status = response.status
        return response

    # --- normal answers ---

    def _answer_rpc(self, message: Any) -> _Answer:
        if message is None:
            return _rpc_answer(_rpc_error(-32700, "Parse error", None))
        if not isinstance(message, dict):
            return _rpc_answer(_rpc_error(-32600, "Invalid request (no batches here)", None))
        request_id = message.get("id")
        if message.get("jsonrpc") != "2.0" or not isinstance(message.get("method"), str):
            return _rpc_answer(_rpc_error(-32600, "Invalid request", request_id))
        if message["method"] != "getSignaturesForAddress":
            return _rpc_answer(_rpc_error(-32601, "Method not found", request_id))
        return self._signatures(message.get("params"), request_id)

    def _signatures(self, params: Any, request_id: Any) -> _Answer:
        parsed = _signature_params(params)
        if isinstance(parsed, str):
            return _rpc_answer(_rpc_error(-32602, parsed, request_id))
        address, before, limit, until = parsed
        history = self.histories.get(address, History([]))
        page = history.page(before, limit, until)
        if page is None and self.unknown_before == "error":
            text = f"Transaction {before} not found"
            return _rpc_answer(_rpc_error(UNKNOWN_CURSOR_CODE, text, request_id))
        result = [e.to_json() for e in page or []]
        payload = {"jsonrpc": "2.0", "result": result, "id": request_id}
        return _Answer(200, orjson.dumps(payload), returned=len(result))

    def _answer_transactions(self, asked: list[str] | None) -> _Answer:
        if asked is None:
            return _error_answer(400, 'expected {"transactions": [signature, ...]}')
        if not 1 <= len(asked) <= MAX_TRANSACTIONS:
            return _error_answer(400, f"between 1 and {MAX_TRANSACTIONS} transactions")
        found = [(s, self._transactions[s]) for s in asked if s in self._transactions]
        omitted = tuple(s for s in asked if s not in self._transactions)
        return _tx_answer(found, omitted)

    # --- standalone ---

    async def serve(self, host: str, port: int) -> web.AppRunner:
        """Start serving on host:port; the caller cleans the returned runner up."""
        runner = web.AppRunner(self.app(), handler_cancellation=True)
        await runner.setup()
        await web.TCPSite(runner, host, port).start()
        return runner


# --- request parsing ------------------------------------------------------------------


def _json_or_none(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _describe_rpc(entry: LogEntry, message: Any) -> None:
    """Fill the log entry from a JSON-RPC body, as far as it can be read."""
    if not isinstance(message, dict):
        return
    entry.method = message.get("method") if isinstance(message.get("method"), str) else None
    entry.rpc_id = message.get("id")
    params = message.get("params")
    if not isinstance(params, list) or not params:
        return
    entry.address = params[0] if isinstance(params[0], str) else None
    config = params[1] if len(params) > 1 and isinstance(params[1], dict) else {}
    before, limit, until = config.get("before"), config.get("limit"), config.get("until")
    entry.before = before if isinstance(before, str) else None
    entry.until = until if isinstance(until, str) else None
    entry.limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else None


def _signature_params(params: Any) -> tuple[str, str | None, int, str | None] | str:
    """(address, before, limit, until) from getSignaturesForAddress params, or an error."""
    if not isinstance(params, list) or not 1 <= len(params) <= 2:
        return "Invalid params: expected [address, config?]"
    address, config = params[0], params[1] if len(params) == 2 else None
    if not isinstance(address, str) or not is_address(address):
        return "Invalid param: Invalid"
    if config is None:
        config = {}
    if not isinstance(config, dict):
        return "Invalid params: config must be an object"
    limit = config.get("limit", MAX_SIGNATURE_LIMIT)
    if limit is None:
        limit = MAX_SIGNATURE_LIMIT
    if not isinstance(limit, int) or isinstance(limit, bool):
        return "Invalid params: limit must be an integer"
    if not 1 <= limit <= MAX_SIGNATURE_LIMIT:
        return f"Invalid limit; max {MAX_SIGNATURE_LIMIT}"
    before, until = config.get("before"), config.get("until")
    for cursor in (before, until):
        if cursor is not None and (not isinstance(cursor, str) or not is_signature(cursor)):
            return "Invalid param: Invalid"
    return address, before, limit, until


def _asked_signatures(message: Any) -> list[str] | None:
    """The signatures of a /v0/transactions body, or None if the body is not one."""
    if not isinstance(message, dict):
        return None
    asked = message.get("transactions")
    if not isinstance(asked, list) or not all(isinstance(s, str) for s in asked):
        return None
    return asked


# --- answers --------------------------------------------------------------------------


def _rpc_error(code: int, message: str, request_id: Any) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "error": {"code": code, "message": message}, "id": request_id}


def _rpc_answer(payload: dict[str, Any]) -> _Answer:
    return _Answer(200, orjson.dumps(payload))


def _error_answer(status: int, text: str) -> _Answer:
    return _Answer(status, orjson.dumps({"error": text}))


def _tx_answer(found: Sequence[tuple[str, bytes]], omitted: tuple[str, ...]) -> _Answer:
    body = b"[" + b",".join(raw for _, raw in found) + b"]"
    return _Answer(200, body, returned=len(found), omitted=omitted)


def _short(result: _Answer, drop: int) -> _Answer:
    """The batch answer without `drop` of its transactions, spread over the batch."""
    if result.status != 200 or result.returned is None:
        return result
    items: list[Any] = orjson.loads(result.body)
    count = min(drop, len(items))
    dropped = {int((k + 0.5) * len(items) / count) for k in range(count)} if count else set()
    kept = [(tx["signature"], orjson.dumps(tx)) for i, tx in enumerate(items) if i not in dropped]
    lost = tuple(items[i]["signature"] for i in sorted(dropped))
    return _tx_answer(kept, result.omitted + lost)


def _bytes_response(
    status: int, body: bytes, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def _json_response(
    status: int, payload: Any, headers: Mapping[str, str] | None = None
) -> web.Response:
    return _bytes_response(status, orjson.dumps(payload), headers)


def _error_response(
    status: int, text: str, headers: Mapping[str, str] | None = None
) -> web.Response:
    return _json_response(status, {"error": text}, headers)


def _seconds(value: float) -> str:
    """A Retry-After value: whole seconds when whole, else as given."""
    return str(int(value)) if float(value).is_integer() else str(value)


# --- connection-level faults ----------------------------------------------------------


def _connected(request: web.Request) -> bool:
    transport = request.transport
    return transport is not None and not transport.is_closing()


async def _hang(request: web.Request) -> None:
    """Answer nothing until the client hangs up or the server shuts down."""
    stopping = request.app[_STOPPING]
    while _connected(request) and not stopping.is_set():
        try:
            await asyncio.wait_for(stopping.wait(), _HANG_POLL_S)
        except TimeoutError:
            pass


def _dropped(request: web.Request) -> web.Response:
    """Drop the connection without a response (the returned one is never sent)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=499)


async def _reset_mid_body(request: web.Request, status: int, body: bytes) -> web.StreamResponse:
    """Send the headers and half the body, then drop the connection."""
    response = web.StreamResponse(status=status, headers={"Content-Type": "application/json"})
    response.content_length = len(body)
    await response.prepare(request)
    await response.write(body[: len(body) // 2])
    if request.transport is not None:
        request.transport.abort()
    return response


# --- standalone -----------------------------------------------------------------------


def _synthetic_arg(text: str) -> tuple[str, int | None]:
    address, _, count = text.partition("=")
    return address, int(count) if count else None


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m tests.fake_helius", description="A fake Helius for benchmarks."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8899)
    parser.add_argument("--key", default=DEFAULT_KEY, help="the API key to accept")
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--rps", type=float, default=None, help="limit per endpoint")
    parser.add_argument("--burst", type=float, default=None, help="bucket size (default: rps)")
    parser.add_argument("--shared-rps", action="store_true", help="one limit for both")
    parser.add_argument(
        "--synthetic",
        action="append",
        default=[],
        type=_synthetic_arg,
        metavar="ADDRESS[=COUNT]",
        help="serve a demo history (COUNT transactions; default: its demo size)",
    )
    parser.add_argument("--samples", type=Path, default=None, help="e.g. tests/data/helius")
    return parser.parse_args(argv)


async def _run(args: argparse.Namespace) -> None:
    fake = FakeHelius(args.key, samples_dir=args.samples, synthetic=dict(args.synthetic))
    fake.faults.set_latency(args.latency_ms / 1000)
    if args.rps:
        fake.faults.limit_rps(args.rps, args.burst, shared=args.shared_rps)
    runner = await fake.serve(args.host, args.port)
    sizes = ", ".join(f"{a}={len(h)}" for a, h in fake.histories.items()) or "none"
    print(
        f"fake Helius on http://{args.host}:{args.port} key={args.key} histories: {sizes}",
        flush=True,
    )
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
