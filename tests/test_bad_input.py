"""Bad input: every case gets its typed 4xx JSON error (SPEC §2), never a 5xx or a trace."""

from __future__ import annotations

import asyncio
import logging

import pytest

from tests.support import WALLET
from walletd.upstream.demo import signature_at

SIGNATURE = signature_at(WALLET, 0)


async def assert_error(resp, status: int, code: str) -> dict:
    assert resp.status == status, await resp.text()
    assert resp.headers["Content-Type"].startswith("application/json")
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    body = await resp.json()
    assert set(body) <= {"code", "error", "request_id", "retry_after"}
    assert body["code"] == code
    assert body["request_id"] == resp.headers["X-Request-ID"]
    assert isinstance(body["error"], str) and body["error"]
    assert "Traceback" not in body["error"]
    return body


@pytest.mark.parametrize(
    "address",
    [
        "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr0",  # '0' is not base58
        "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkrI",  # nor is 'I'
        "111111111",  # decodes to 9 bytes
        "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr22",  # 45 characters
        SIGNATURE,  # 64 bytes: a signature, not an address
        "",
        "A" * 5000,
        "%C3%BC" * 20,  # unicode (ü)
        "3JoVBiQEA2QKsq7TzW5ez5jVRtbbYgTNijoZzp5qgkr2%00",
        "%20" + WALLET,
        "a.b",
    ],
)
async def test_invalid_wallet_is_400(serve, address):
    client = await serve()
    resp = await client.get(f"/v4/wallet/{address}/stream")
    await assert_error(resp, 400, "INVALID_WALLET")


@pytest.mark.parametrize(
    "cursor",
    ["abc", WALLET, SIGNATURE + "1", SIGNATURE[:-1] + "0", "ü" * 10, "x" * 3000, " " + SIGNATURE],
)
async def test_invalid_before_is_400(serve, cursor):
    client = await serve()
    resp = await client.get(f"/v4/wallet/{WALLET}/stream", params={"before": cursor})
    await assert_error(resp, 400, "INVALID_EVENT_ID")


@pytest.mark.parametrize("cursor", ["abc", WALLET, SIGNATURE + "1", "x" * 3000])
async def test_invalid_last_event_id_is_400(serve, cursor):
    client = await serve()
    resp = await client.get(f"/v4/wallet/{WALLET}/stream", headers={"Last-Event-ID": cursor})
    await assert_error(resp, 400, "INVALID_EVENT_ID")


async def test_bad_last_event_id_is_refused_even_with_good_before(serve):
    client = await serve()
    resp = await client.get(
        f"/v4/wallet/{WALLET}/stream",
        params={"before": SIGNATURE},
        headers={"Last-Event-ID": "nope"},
    )
    await assert_error(resp, 400, "INVALID_EVENT_ID")


@pytest.mark.parametrize(
    "limit", ["0", "-1", "abc", "1.5", "1e3", "", " 5", "20001", "9" * 40, "٣"]
)
async def test_invalid_limit_is_400(serve, limit):
    client = await serve()
    resp = await client.get(f"/v4/wallet/{WALLET}/stream", params={"limit": limit})
    body = await assert_error(resp, 400, "INVALID_PARAMETER")
    assert "limit" in body["error"]


async def test_limit_bound_follows_max_wallet_trades(serve):
    client = await serve(MAX_WALLET_TRADES=50)
    resp = await client.get(f"/v4/wallet/{WALLET}/stream", params={"limit": "51"})
    body = await assert_error(resp, 400, "INVALID_PARAMETER")
    assert "50" in body["error"]
    resp = await client.get(f"/v4/wallet/{WALLET}/stream", params={"limit": "50"})
    assert resp.status == 200
    await resp.read()


@pytest.mark.parametrize(
    "query", ["limit=1&limit=2", "before=a&before=b", "follow=false&x=1&follow=false"]
)
async def test_repeated_parameter_is_400(serve, query):
    client = await serve()
    resp = await client.get(f"/v4/wallet/{WALLET}/stream?{query}")
    body = await assert_error(resp, 400, "INVALID_PARAMETER")
    assert query.partition("=")[0] in body["error"]


async def test_a_repeated_parameter_walletd_does_not_read_is_ignored(serve):
    client = await serve()
    resp = await client.get(f"/v4/wallet/{WALLET}/stream?x=1&x=2&limit=1")
    assert resp.status == 200
    assert b"event: complete" in await resp.read()


@pytest.mark.parametrize(
    "path",
    [
        "/static/nope",
        "/nope",
        "/v4/wallet",
        f"/v4/wallet/{WALLET}",
        f"/v4/wallet/{WALLET}/stream/x",
        "/v3/x",
        "/health%0A",  # the catch-all route takes paths with any character
        "/%0A/x",
        "/health/",
    ],
)
async def test_unknown_route_is_404(serve, path):
    client = await serve()
    await assert_error(await client.get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "HEAD"])
async def test_wrong_method_on_stream_is_405(serve, method):
    client = await serve()
    resp = await client.request(method, f"/v4/wallet/{WALLET}/stream")
    assert resp.status == 405
    assert "GET" in resp.headers["Allow"]
    if method != "HEAD":
        await assert_error(resp, 405, "METHOD_NOT_ALLOWED")


async def test_wrong_method_on_health_is_405(serve):
    client = await serve()
    await assert_error(await client.post("/health", data=b"x"), 405, "METHOD_NOT_ALLOWED")


@pytest.mark.parametrize(
    ("path", "allow"),
    [  # OPTIONS: CORS preflights (every origin in development)
        ("/health", "GET,HEAD,OPTIONS"),
        (f"/v4/wallet/{WALLET}/stream", "GET,OPTIONS"),
        ("/static/app.js", "GET,HEAD,OPTIONS"),
    ],
)
async def test_405_allows_the_methods_of_the_path(serve, path, allow):
    client = await serve()
    resp = await client.put(path)
    assert resp.headers["Allow"] == allow
    await assert_error(resp, 405, "METHOD_NOT_ALLOWED")


async def test_head_of_an_unknown_path_is_404_without_a_body(serve):
    client = await serve()
    resp = await client.head("/nope")
    assert resp.status == 404 and resp.headers["X-Request-ID"]
    assert await resp.read() == b""


async def test_request_line_over_8kb_is_414(serve):
    client = await serve()
    resp = await client.get(f"/v4/wallet/{WALLET}/stream", params={"x": "a" * 9000})
    await assert_error(resp, 414, "REQUEST_TOO_LARGE")


async def test_header_line_over_8kb_is_431(serve):
    client = await serve()
    resp = await client.get("/health", headers={"X-Big": "a" * 9000})
    await assert_error(resp, 431, "REQUEST_TOO_LARGE")


async def test_a_long_request_line_and_long_headers_each_within_limits_pass(serve):
    """The limits are per line and 32 KB of headers, not 8 KB for the whole head."""
    client = await serve()
    resp = await client.get("/health", params={"x": "a" * 7000}, headers={"X-Big": "a" * 7000})
    assert resp.status == 200


async def test_headers_over_32kb_in_all_are_431(serve):
    client = await serve()
    headers = {f"X-H{i}": "a" * 4000 for i in range(10)}
    await assert_error(await client.get("/health", headers=headers), 431, "REQUEST_TOO_LARGE")


async def test_unknown_query_parameters_are_ignored(serve):
    client = await serve()
    resp = await client.get(f"/v4/wallet/{WALLET}/stream", params={"limit": "1", "utm": "x"})
    assert resp.status == 200
    await resp.read()


@pytest.mark.parametrize(
    "raw",
    [b"FOO\x01 / HTTP/1.1\r\n\r\n", b"GET / HTTP/9.9\r\n\r\n", b"\x16\x03\x01\x02\x00\x01\r\n\r\n"],
)
async def test_unparseable_request_is_a_clean_400_and_one_access_line(serve, caplog, raw):
    caplog.set_level(logging.INFO)
    client = await serve()
    reader, writer = await asyncio.open_connection(client.host, client.port)
    writer.write(raw)
    await writer.drain()
    head = await asyncio.wait_for(reader.readline(), 5)
    writer.close()
    assert head.startswith(b"HTTP/1.") and b" 400 " in head
    await client.close()  # flushes the access log
    # aiohttp.server reports protocol errors itself; our access logging must not fail.
    ours = [r for r in caplog.records if not r.name.startswith("aiohttp.server")]
    assert [r for r in ours if r.levelno >= logging.ERROR] == []
    assert not any(r.exc_info and r.exc_info[0] is AssertionError for r in caplog.records)
    lines = [r for r in caplog.records if r.getMessage() == "http_request"]
    assert len(lines) == 1 and lines[0].status == 400 and lines[0].route is None
