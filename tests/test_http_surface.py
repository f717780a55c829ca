"""CORS for browsers and the security headers on every kind of response (SPEC §6)."""

from __future__ import annotations

import itertools
import os
import re

import pytest

from tests.support import WALLET
from walletd.api.boundary import (
    HSTS,
    REQUEST_ID_BATCH,
    SECURITY_HEADERS,
    SERVER,
    new_request_id,
)

STREAM = f"/v4/wallet/{WALLET}/stream"
APP = "https://app.example.com"
PRODUCTION = {
    "ENV": "production",
    "SECRET_KEY": "hV3qL8zT1xN6mR4wK9bC2yF7gJ5sD0pA",
    "ALLOWED_ORIGINS": APP,
    "HELIUS_KEY": "unused-here",
    "HELIUS_RPC_URL": "http://127.0.0.1:9",
    "HELIUS_API_URL": "http://127.0.0.1:9",
}


def exposed(resp) -> set[str]:
    return {h.strip().lower() for h in resp.headers["Access-Control-Expose-Headers"].split(",")}


async def test_an_allowed_origin_may_read_the_stream_and_its_headers(serve):
    client = await serve(ALLOWED_ORIGINS=APP)
    resp = await client.get(STREAM, headers={"Origin": APP})
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert "Access-Control-Allow-Credentials" not in resp.headers  # keys are not cookies
    assert {"x-stream-id", "x-request-id", "ratelimit-remaining"} <= exposed(resp)
    await resp.read()


async def test_another_origin_gets_no_cors_headers(serve):
    client = await serve(ALLOWED_ORIGINS=APP)
    resp = await client.get(STREAM, headers={"Origin": "https://evil.example.com"})
    assert "Access-Control-Allow-Origin" not in resp.headers
    await resp.read()


async def test_preflight_for_an_allowed_origin(serve, tmp_path):
    # Keys required: the preflight itself carries no key and must still succeed.
    client = await serve(
        ALLOWED_ORIGINS=APP,
        API_KEY_REQUIRED="true",
        SECRET_KEY="c" * 32,
        API_KEYS_FILE=str(tmp_path / "k.json"),
    )
    resp = await client.options(
        STREAM,
        headers={
            "Origin": APP,
            "Access-Control-Request-Method": "GET",
            "Access-Control-Request-Headers": "authorization, last-event-id",
        },
    )
    assert resp.status == 200
    assert resp.headers["Access-Control-Allow-Origin"] == APP
    assert "GET" in resp.headers["Access-Control-Allow-Methods"]
    allowed = resp.headers["Access-Control-Allow-Headers"].lower()
    assert "authorization" in allowed and "last-event-id" in allowed
    # ...and an error the page then gets is readable by it.
    denied = await client.get(STREAM, headers={"Origin": APP})
    assert denied.status == 401 and denied.headers["Access-Control-Allow-Origin"] == APP


async def test_preflight_from_another_origin_is_a_typed_403(serve):
    client = await serve(ALLOWED_ORIGINS=APP)
    resp = await client.options(
        STREAM,
        headers={"Origin": "https://evil.example.com", "Access-Control-Request-Method": "GET"},
    )
    assert resp.status == 403
    assert (await resp.json())["code"] == "FORBIDDEN"
    assert resp.headers["X-Frame-Options"] == "DENY"


async def test_development_echoes_any_origin_for_credentialed_requests(serve):
    client = await serve()  # ALLOWED_ORIGINS defaults to * in development
    resp = await client.get(STREAM, headers={"Origin": "http://localhost:5173"})
    # With credentials a browser refuses `*`: the origin itself must come back.
    assert resp.headers["Access-Control-Allow-Origin"] == "http://localhost:5173"
    await resp.read()


async def responses_of_every_kind(client):
    yield "json", await client.get("/health")
    stream = await client.get(STREAM, params={"limit": "1"})
    yield "stream", stream
    yield "400", await client.get("/v4/wallet/nope/stream")
    yield "404", await client.get("/no/such/route")
    yield "405", await client.post(STREAM)
    yield "431", await client.get("/health", headers={"X-Big": "x" * 9000})
    yield "429", await client.get(STREAM, params={"limit": "x"})


@pytest.mark.parametrize("production", [False, True])
async def test_security_headers_on_every_kind_of_response(serve, production):
    env = PRODUCTION if production else {}
    client = await serve(**env, RATE_LIMIT_REQUESTS=2)
    kinds = []
    async for kind, resp in responses_of_every_kind(client):
        kinds.append((kind, resp.status))
        for name, value in SECURITY_HEADERS.items():
            assert resp.headers.get(name) == value, (kind, name)
        assert resp.headers.get("Strict-Transport-Security") == (HSTS if production else None)
        assert resp.headers.get("X-Request-ID")
        assert resp.headers.get("Server") == SERVER  # no versions for scanners
        await resp.read()
    statuses = dict(kinds)
    if production:  # without a key every counted route answers 401, with the headers
        assert statuses["stream"] == 401
    else:
        assert statuses == {
            "json": 200,
            "stream": 200,
            "400": 400,
            "404": 404,
            "405": 405,
            "431": 431,
            "429": 429,
        }


async def test_generated_request_ids_are_distinct_random_hex_across_batches(serve):
    client = await serve()
    ids = []
    for _ in range(REQUEST_ID_BATCH + 10):  # over a batch boundary of the random pool
        resp = await client.get("/health")
        ids.append(resp.headers["X-Request-ID"])
        await resp.read()
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    assert len(set(ids)) == len(ids)
    # Random, not a counter: consecutive ids differ in most of their 32 digits.
    same = [sum(x == y for x, y in zip(a, b, strict=True)) for a, b in itertools.pairwise(ids)]
    assert max(same) < 16


def test_a_forked_child_draws_request_ids_of_its_own():
    new_request_id()  # the pool is filled: a child would inherit it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report its next id, then leave without pytest's teardown
        os.write(write, new_request_id().encode())
        os._exit(0)
    os.close(write)
    os.waitpid(pid, 0)
    child = os.read(read, 64).decode()
    os.close(read)
    assert re.fullmatch(r"[0-9a-f]{32}", child)
    assert child != new_request_id()
