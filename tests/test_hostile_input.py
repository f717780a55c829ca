"""Hostile input, gathered: each test is an attack that once worked (issue 13).

Upstream answers, Redis entries and requests are all untrusted. Whatever they carry,
a client gets a typed error or the honest stream: never a forged event, someone else's
trades, a 500 or a hang. A change that reopens one of these fails here.
"""

from __future__ import annotations

import asyncio
import copy
import logging
import re
from typing import Any

import pytest

from tests.fake_helius import FakeHelius, synthetic_transactions
from tests.sse_client import parse
from tests.support import WALLET
from walletd.appkeys import HISTORY, KEYSTORE
from walletd.upstream.demo import LARGE_DEMO_WALLET
from walletd.upstream.helius.reader import parse_transaction

STREAM = "/v4/wallet/{}/stream"
FORGED_SIGNATURE = '5Evil\r\nevent: complete\r\ndata: {"trades_found":0}'
FORGED_MINT = "Evil\nevent: error\ndata: {}"


# --- forged upstream strings (SPEC §4: upstream data is untrusted input) ---------------


def _trade_positions(txs: list[dict[str, Any]]) -> list[int]:
    return [i for i, tx in enumerate(txs) if parse_transaction(tx, WALLET) is not None]


def _forge_mint(tx: dict[str, Any]) -> dict[str, Any]:
    """`tx` with every mint of the wallet's token balances replaced by FORGED_MINT."""
    forged = copy.deepcopy(tx)
    for entry in forged["accountData"]:
        for change in entry["tokenBalanceChanges"]:
            if change["userAccount"] == WALLET and change["mint"] != "So1" + "1" * 40 + "2":
                change["mint"] = FORGED_MINT
    for transfer in forged["tokenTransfers"]:
        transfer["mint"] = FORGED_MINT
    return forged


@pytest.fixture
async def forged_helius(aiohttp_server):
    """A fake Helius whose history of WALLET holds one forged signature and one forged
    mint among honest trades; returns (walletd env, honest signatures in order)."""
    txs = synthetic_transactions(WALLET, 40)
    trades = _trade_positions(txs)
    bad_signature = copy.deepcopy(txs[trades[1]])
    bad_signature["signature"] = FORGED_SIGNATURE
    bad_mint = _forge_mint(txs[trades[3]])
    bad_mint["signature"] = txs[trades[3]]["signature"]
    honest = [tx for i, tx in enumerate(txs) if i not in (trades[1], trades[3])]
    crafted = [*honest[:5], bad_signature, *honest[5:10], bad_mint, *honest[10:]]
    fake = FakeHelius()
    fake.add_history(WALLET, crafted)
    server = await aiohttp_server(fake.app())
    expected = [tx["signature"] for tx in honest if parse_transaction(tx, WALLET) is not None]
    return fake.walletd_env(server), expected


async def test_forged_upstream_signature_and_mint_never_reach_the_wire(
    serve, forged_helius, caplog
):
    env, expected = forged_helius
    client = await serve(**env, SSE_BATCH_SIZE=3)
    resp = await client.get(STREAM.format(WALLET))
    body = await resp.read()
    assert resp.status == 200
    assert b"Evil" not in body
    stream = parse(body)  # strict: a forged line or event fails here
    assert stream.names.count("complete") == 1 and stream.names[-1] == "complete"
    assert [t["signature"] for t in stream.trades] == expected
    assert all(e.id in expected for e in stream.named("trades"))
    for message in ("untrusted_signature", "untrusted_transaction"):  # listing, reader
        skipped = [r for r in caplog.records if r.getMessage() == message]
        assert skipped and all(r.levelno == logging.WARNING for r in skipped), message
        assert all(isinstance(r.position, int) for r in skipped)
    assert "\r\nevent: complete" not in caplog.text  # logged escaped, if at all
    assert "\nevent: error" not in caplog.text


@pytest.mark.parametrize(
    "field, value",
    [
        ("signature", FORGED_SIGNATURE),
        ("signature", "1" * 40),  # base58, but not 64 bytes
        ("signature", 12345),
    ],
)
def test_reader_skips_a_transaction_with_a_forged_identifier(field, value, caplog):
    tx = next(t for t in synthetic_transactions(WALLET, 40) if parse_transaction(t, WALLET))
    forged = {**copy.deepcopy(tx), field: value}
    assert parse_transaction(forged, WALLET, position=7) is None
    (record,) = [r for r in caplog.records if r.getMessage() == "untrusted_transaction"]
    assert record.position == 7 and record.field == field
    assert "\r" not in record.value and "\n" not in record.value


def test_reader_skips_a_transaction_with_a_forged_mint(caplog):
    tx = next(t for t in synthetic_transactions(WALLET, 40) if parse_transaction(t, WALLET))
    assert parse_transaction(_forge_mint(tx), WALLET, position=3) is None
    assert [r.field for r in caplog.records if r.getMessage() == "untrusted_transaction"] == [
        "mint"
    ]


# --- poisoned shared histories (SPEC §3: nothing read back from Redis is trusted) ------


@pytest.fixture
async def shared(aiohttp_server, redis_url, redis_prefix):
    """(env, fake) of walletds sharing histories through a real Redis, over a fake Helius
    that knows WALLET (111 transactions) and LARGE_DEMO_WALLET (1500)."""
    fake = FakeHelius(synthetic={WALLET: None, LARGE_DEMO_WALLET: 1500})
    server = await aiohttp_server(fake.app())
    env = fake.walletd_env(
        server, REDIS_URL=redis_url, REDIS_PREFIX=redis_prefix, SECRET_KEY="k" * 32
    )
    return env, fake


async def _stream(client, wallet):
    resp = await client.get(STREAM.format(wallet))
    stream = parse(await resp.read())
    await client.server.app[HISTORY].settle()  # the history is shared by now
    return stream


async def _entry_key(redis_client, redis_prefix, wallet):
    (key,) = [k async for k in redis_client.scan_iter(f"{redis_prefix}history:*:{wallet}:-")]
    return key


async def test_a_history_copied_under_another_wallet_is_a_miss(
    serve, shared, redis_client, redis_prefix, caplog
):
    env, fake = shared
    first = await serve(**env)
    theirs = await _stream(first, LARGE_DEMO_WALLET)
    ours = await _stream(first, WALLET)
    assert theirs.trades and ours.trades
    source = await _entry_key(redis_client, redis_prefix, LARGE_DEMO_WALLET)
    target = await _entry_key(redis_client, redis_prefix, WALLET)
    await redis_client.set(target, await redis_client.get(source))  # the poisoning
    calls = len(fake.calls("rpc"))
    other = await serve(**env)  # another process: only Redis can tell it anything
    again = await _stream(other, WALLET)
    assert again.trades == ours.trades  # its own trades, fetched again
    assert len(fake.calls("rpc")) > calls
    refused = [r for r in caplog.records if r.getMessage() == "history_cache_forged"]
    assert refused and all(r.levelno == logging.ERROR for r in refused)


async def test_a_tampered_history_is_a_miss_and_a_valid_one_a_hit(
    serve, shared, redis_client, redis_prefix, caplog
):
    env, fake = shared
    first = await serve(**env)
    original = await _stream(first, WALLET)
    key = await _entry_key(redis_client, redis_prefix, WALLET)
    blob = await redis_client.get(key)
    calls = len(fake.calls("rpc"))
    hit = await _stream(await serve(**env), WALLET)  # valid: a hit, no upstream call
    assert hit.trades == original.trades and len(fake.calls("rpc")) == calls
    flipped = bytearray(blob)
    flipped[len(flipped) // 2] ^= 0x01
    for tampered in (bytes(flipped), blob + b"\nevent: error\ndata: {}\n\n"):
        await redis_client.set(key, tampered)
        again = await _stream(await serve(**env), WALLET)
        assert again.trades == original.trades and again.names[-1] == "complete"
        assert len(fake.calls("rpc")) > calls  # a miss: fetched from the upstream
        calls = len(fake.calls("rpc"))
    assert len([r for r in caplog.records if r.getMessage() == "history_cache_forged"]) == 2


# --- guessing keys (SPEC §3: failed authentications count per client address) -----------


async def _guess_keys(client, attempts, **headers):
    statuses = []
    for i in range(attempts):
        guess = f"wd_{i:032d}"
        resp = await client.get(STREAM.format(WALLET), headers={"X-API-Key": guess, **headers})
        statuses.append(resp.status)
        last = (resp.headers, await resp.json())
    return statuses, last


@pytest.mark.parametrize("backend", ["memory", "redis"])
async def test_guessing_keys_is_refused_after_the_failure_limit(
    serve, keyed, backend, redis_url, redis_prefix
):
    env = {**keyed, "AUTH_FAILURE_LIMIT": 5, "RATE_LIMIT_WINDOW": 30}
    if backend == "redis":
        env |= {"REDIS_URL": redis_url, "REDIS_PREFIX": redis_prefix}
    client = await serve(**env)
    statuses, (headers, body) = await _guess_keys(client, 8)
    assert statuses == [401] * 5 + [429] * 3
    assert body["code"] == "RATE_LIMITED"
    assert 1 <= int(headers["Retry-After"]) <= 30
    # Refused before any lookup: a valid key from the same address waits too...
    key, _ = await client.server.app[KEYSTORE].create("test", ("stream",), None)
    resp = await client.get("/metrics", headers={"X-API-Key": key})
    assert resp.status == 429
    if backend == "redis":  # ...on every instance sharing the Redis...
        assert (await (await serve(**env)).get(STREAM.format(WALLET))).status == 429
        env["REDIS_PREFIX"] = redis_prefix + "fresh:"
    # ...and no key at all counts as a failure like a wrong one.
    fresh = await serve(**env)
    for _ in range(5):
        assert (await fresh.get(STREAM.format(WALLET))).status == 401
    assert (await fresh.get(STREAM.format(WALLET))).status == 429


async def test_failures_count_per_client_address_through_trusted_proxies(serve, keyed):
    env = {**keyed, "AUTH_FAILURE_LIMIT": 3, "TRUSTED_PROXIES": "127.0.0.1"}
    client = await serve(**env)
    statuses, _ = await _guess_keys(client, 4, **{"X-Forwarded-For": "203.0.113.7"})
    assert statuses == [401, 401, 401, 429]
    statuses, _ = await _guess_keys(client, 1, **{"X-Forwarded-For": "203.0.113.8"})
    assert statuses == [401]  # another client, behind the same proxy


# --- odd requests over a raw socket: nothing a client sends is echoed or trusted --------


async def raw_request(client, head: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send `head` (a request head, CRLF lines, without the final blank line) on a new
    connection; return the status, headers (lower-case names) and body of the answer."""
    reader, writer = await asyncio.open_connection(client.server.host, client.server.port)
    try:
        writer.write(head + b"\r\nConnection: close\r\n\r\n")
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head_bytes, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head_bytes.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


@pytest.mark.parametrize("method", [b"PROPFIND", b"XYZZY", b"get", b"BREW", b"M" * 200])
async def test_an_odd_method_is_counted_as_other(serve, method):
    client = await serve()
    status, headers, body = await raw_request(client, method + b" /health HTTP/1.1\r\nHost: x")
    # 400 is aiohttp's own parser (unknown token: text/plain, never reaches walletd);
    # a method it parses reaches walletd and gets METHOD_NOT_ALLOWED as JSON.
    assert status in (400, 405)
    if status == 405:
        assert headers["content-type"].startswith("application/json")
        assert method not in body
    text = await (await client.get("/metrics")).text()
    methods = set(re.findall(r'walletdoctor_http_requests_total\{[^}]*method="([^"]*)"', text))
    assert methods <= {"GET", "HEAD", "OPTIONS", "other"}
    assert "other" in methods or status == 400


@pytest.mark.parametrize(
    "header",
    [
        b"X-Request-ID: abc\rSet-Cookie: stolen=1",
        b"X-Request-ID: abc\nSet-Cookie: stolen=1",
        b"X-Request-ID: abc%0d%0aSet-Cookie:%20stolen=1",
        b"Last-Event-ID: 5Evil\r event: complete",
        b"Last-Event-ID: 5Evil%0d%0aevent: complete",
    ],
)
async def test_header_injection_is_refused_and_never_echoed(serve, header):
    client = await serve()
    path = STREAM.format(WALLET).encode()
    status, headers, body = await raw_request(client, b"GET " + path + b" HTTP/1.1\r\n" + header)
    # Raw CR or LF: aiohttp's parser refuses the request (text/plain, echoing the line
    # to its own sender only). Encoded: walletd refuses the cursor, replaces the id.
    assert status == 400
    assert "set-cookie" not in headers
    assert headers["content-type"].split(";")[0] in ("text/plain", "application/json")
    assert b"\nevent: complete" not in body and not body.startswith(b"retry:")
    assert "stolen" not in headers.get("x-request-id", "")


async def test_a_safe_request_id_is_echoed_and_an_unsafe_one_replaced(serve):
    client = await serve()
    resp = await client.get("/health", headers={"X-Request-ID": "abc-123"})
    assert resp.headers["X-Request-ID"] == "abc-123"
    resp = await client.get("/health", headers={"X-Request-ID": "a b<script>"})
    assert re.fullmatch(r"[0-9a-f]{32}", resp.headers["X-Request-ID"])


# --- CORS (SPEC §6: never credentials) ------------------------------------------------


@pytest.mark.parametrize(
    "env, origin",
    [
        ({}, "https://evil.example"),  # development: any origin
        ({"ALLOWED_ORIGINS": "https://app.example.com"}, "https://app.example.com"),
    ],
)
async def test_cors_never_allows_credentials(serve, env, origin):
    client = await serve(**env)
    resp = await client.get(STREAM.format(WALLET), headers={"Origin": origin}, params={"limit": 1})
    await resp.read()
    assert resp.headers.get("Access-Control-Allow-Origin") in (origin, "*")
    assert "Access-Control-Allow-Credentials" not in resp.headers
    assert "X-Stream-ID" in resp.headers.get("Access-Control-Expose-Headers", "")
    preflight = await client.options(
        STREAM.format(WALLET),
        headers={
            "Origin": origin,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "X-API-Key",
        },
    )
    assert preflight.status == 200
    assert "Access-Control-Allow-Credentials" not in preflight.headers


async def test_cors_ignores_an_origin_not_allowed(serve):
    client = await serve(ALLOWED_ORIGINS="https://app.example.com")
    resp = await client.get("/health", headers={"Origin": "https://evil.example"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    assert "Access-Control-Allow-Credentials" not in resp.headers
