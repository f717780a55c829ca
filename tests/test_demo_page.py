"""The demo page (GET /, SPEC §6): served under the CSP behind FEATURE_DEMO_PAGE, and
working end to end in headless Chromium against real `walletd serve` processes.

The browser tests need Chromium (Debian: `apt-get install chromium`) and the Python
`playwright` package (the `test` extra), which drives the installed Chromium: nothing is
downloaded. Without Chromium they skip; in CI (CI=true) they fail. Screenshots go to the
test's tmp_path and to test-output/ at the top of the checkout.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
import pytest

from tests.browser import (
    SETTLE_MS,
    app_data,
    launch_chromium,
    open_demo,
    row_signatures,
    screenshot,
    settled,
    summary_items,
)
from tests.sse_client import Stream, parse
from tests.support import WALLET, ServeFn
from tests.walletd_process import Server, serve_args, walletd
from walletd.api.boundary import PAGE_CSP, SECURITY_HEADERS
from walletd.api.demo_page import CONTENT_TYPES

if TYPE_CHECKING:
    from playwright.async_api import Browser

CSP = PAGE_CSP
NOT_FOUND_WALLET = "6RPHRQhmdzVdFbdK14KSbasyKJmC42dVgDprFKqdu7si"  # README: no history
# A demo wallet of 600 transactions (walletd.upstream.demo.history_size): six upstream
# pages, so a slow source leaves time to kill the server between two of them.
MID_WALLET = "5K8gEY3RY57NMj9LKCs7sqgkes1krP5VUJPMoLLPELKd"
SECRET = "s" * 32


# --- plain HTTP ------------------------------------------------------------------------


class PageScan(HTMLParser):
    """What the CSP cares about in an HTML document: scripts, styles, handlers, URLs."""

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.inline: list[str] = []  # inline script or style, which the CSP would refuse
        self.urls: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        names = {name for name, _ in attrs}
        if tag == "style":
            self.inline.append("<style>")
        if tag == "script":
            self._in_script = True
            if "src" not in names:
                self.inline.append("<script> without src")
        for name, value in attrs:
            if name.startswith("on") or name == "style":
                self.inline.append(f"<{tag} {name}=>")
            if name in ("src", "href") and value is not None:
                self.urls.append(value)

    def handle_endtag(self, tag: str) -> None:
        self._in_script = self._in_script and tag != "script"

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline.append("<script> with a body")


async def test_index_served_under_the_csp_in_development(serve: ServeFn) -> None:
    client = await serve()
    resp = await client.get("/")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Content-Security-Policy"] == CSP
    assert resp.headers["X-Frame-Options"] == "DENY"
    assert resp.headers["Cache-Control"] == "no-cache"
    scan = PageScan()
    scan.feed(await resp.text())
    assert scan.inline == []
    assert "main" in scan.tags and "table" in scan.tags
    # Every asset is our own: a relative path, never another origin.
    assert scan.urls and all(u.startswith("/") and not u.startswith("//") for u in scan.urls)
    for url in scan.urls:
        asset = await client.get(url)
        assert asset.status == 200, url
        # An asset is no document: opened on its own (an SVG can hold scripts) it loads
        # nothing, like an API response.
        api_csp = SECURITY_HEADERS["Content-Security-Policy"]
        assert asset.headers["Content-Security-Policy"] == api_csp


@pytest.mark.parametrize("name", ["app.js", "chart.js", "app.css", "favicon.svg"])
async def test_static_assets_have_their_content_type_and_revalidate(
    serve: ServeFn, name: str
) -> None:
    client = await serve()
    resp = await client.get(f"/static/{name}")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == CONTENT_TYPES[name]
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert resp.headers["Cache-Control"] == "no-cache"
    etag = resp.headers["ETag"]
    again = await client.get(f"/static/{name}", headers={"If-None-Match": etag})
    assert again.status == 304
    assert await again.read() == b""


@pytest.mark.parametrize("path", ["/static/index.html", "/static/walletd.py", "/static/"])
async def test_static_serves_only_its_assets(serve: ServeFn, path: str) -> None:
    client = await serve()
    resp = await client.get(path)
    assert resp.status == 404
    assert (await resp.json())["code"] == "NOT_FOUND"


@pytest.mark.parametrize("path", ["/", "/static/app.js"])
async def test_demo_page_is_not_found_when_flag_off(serve: ServeFn, path: str) -> None:
    client = await serve(FEATURE_DEMO_PAGE="false")
    resp = await client.get(path)
    assert resp.status == 404
    assert resp.headers["Content-Type"].startswith("application/json")
    body = await resp.json()
    assert body["code"] == "NOT_FOUND" and body["request_id"]


async def test_demo_page_needs_no_key_when_keys_are_required(
    serve: ServeFn, tmp_path: Path
) -> None:
    client = await serve(
        API_KEY_REQUIRED="true", SECRET_KEY=SECRET, API_KEYS_FILE=tmp_path / "keys.json"
    )
    assert (await client.get("/")).status == 200
    assert (await client.get("/static/app.js")).status == 200
    assert (await client.get(f"/v4/wallet/{WALLET}/stream")).status == 401


# --- headless Chromium -----------------------------------------------------------------


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as launched:
        yield launched


async def read_stream(url: str, wallet: str, **headers: str) -> Stream:
    """The wallet's stream read directly, without a browser."""
    async with (
        aiohttp.ClientSession() as http,
        http.get(f"{url}/v4/wallet/{wallet}/stream", headers=headers) as resp,
    ):
        assert resp.status == 200
        stream = parse(await resp.read())
    assert stream.names[-1] == "complete"
    return stream


def signatures(stream: Stream) -> list[str]:
    return [trade["signature"] for trade in stream.trades]


async def test_demo_page_streams_the_demo_wallet(
    browser: Browser, server_factory: Any, tmp_path: Path
) -> None:
    server = await server_factory()
    page, watch = await open_demo(browser, server.url)
    assert await page.input_value("#wallet") == WALLET

    await page.click("#start")
    state = await settled(page, "complete", "error")
    await screenshot(page, tmp_path, "demo-page-complete.png")

    assert state == "complete", await page.inner_text("#error")
    stream = await read_stream(server.url, WALLET)
    assert stream.trades and await row_signatures(page) == signatures(stream)
    assert await app_data(page, "duplicates") == "0"
    assert await app_data(page, "connections") == "1"
    complete = stream.named("complete")[0].data
    totals = complete["summary"]
    shown = await summary_items(page)
    assert shown["Trades"] == str(complete["trades_found"]) == str(len(stream.trades))
    assert (
        shown["Buys / sells / swaps"] == f"{totals['buys']} / {totals['sells']} / {totals['swaps']}"
    )
    assert shown["SOL volume"] == f"{totals['volume_sol']} SOL"
    # The chart, drawn without follow too: a bar group per hour with trades.
    hours = {trade["timestamp"] // 3600 for trade in stream.trades}
    await page.wait_for_function(
        "(n) => document.getElementById('chart').dataset.groups == n",
        arg=len(hours),
        timeout=SETTLE_MS,
    )
    assert await page.get_attribute("#chart", "data-volume") == totals["volume_sol"]
    assert await page.is_hidden("#summary-note") and await page.is_hidden("#error")
    assert await watch.csp_violations(page) == []
    assert watch.page_errors == [] and watch.console_errors == []


async def test_demo_page_resumes_without_duplicates_after_a_server_crash(
    browser: Browser, server_factory: Any, tmp_path: Path
) -> None:
    # Slow pages leave the stream mid-way when the first server dies; a short `retry`
    # makes the browser come back quickly.
    env = {"DEMO_LATENCY_MS": "400", "SSE_RETRY_MS": "300"}
    first = await server_factory(**env)
    page, watch = await open_demo(browser, first.url)
    await page.fill("#wallet", MID_WALLET)
    await page.click("#start")
    await page.wait_for_function(
        "() => Number(document.getElementById('app').dataset.rows) > 0", timeout=SETTLE_MS
    )
    first.proc.kill()  # SIGKILL: no SERVER_SHUTDOWN event, the connection just drops
    await first.proc.wait()
    rows_at_kill = int(await app_data(page, "rows"))
    await settled(page, "reconnecting")

    # The same address again, as systemd's Restart= would bring it back.
    second = await walletd(
        *serve_args(first.port),
        env={"LOG_FORMAT": "json", "DEMO_LIVE_INTERVAL": "0", **env},
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        await Server(second, first.port).log_line("server_started")
        state = await settled(page, "complete", "error")
        await screenshot(page, tmp_path, "demo-page-resumed.png")
        assert state == "complete", await page.inner_text("#error")
        expected = signatures(await read_stream(first.url, MID_WALLET))
    finally:
        second.kill()
        await second.wait()

    assert 0 < rows_at_kill < len(expected)
    assert await row_signatures(page) == expected
    assert await app_data(page, "duplicates") == "0"
    assert await app_data(page, "connections") == "2"
    assert await page.is_visible("#summary-note")
    # Console errors are expected here (the dropped connection); CSP violations are not.
    assert await watch.csp_violations(page) == []
    assert watch.page_errors == []


async def test_demo_page_shows_typed_errors(
    browser: Browser, server_factory: Any, tmp_path: Path
) -> None:
    server = await server_factory()
    page, watch = await open_demo(browser, server.url)

    # Refused before the stream starts (HTTP 400): the page fetches the JSON to show it.
    await page.fill("#wallet", "not-a-wallet")
    await page.click("#start")
    assert await settled(page, "error") == "error"
    await page.wait_for_selector("#error:has-text('INVALID_WALLET')", timeout=SETTLE_MS)

    # An `error` event inside the stream: shown, and no reconnecting loop.
    await page.fill("#wallet", NOT_FOUND_WALLET)
    await page.click("#start")
    await page.wait_for_selector("#error:has-text('WALLET_NOT_FOUND')", timeout=SETTLE_MS)
    assert await app_data(page, "state") == "error"
    assert await app_data(page, "connections") == "1"
    assert await page.is_enabled("#start") and await page.is_disabled("#stop")
    await screenshot(page, tmp_path, "demo-page-error.png")
    assert await watch.csp_violations(page) == []
    assert watch.page_errors == []


async def test_demo_page_sends_the_api_key_without_showing_it(
    browser: Browser, server_factory: Any, tmp_path: Path
) -> None:
    env = {
        "API_KEY_REQUIRED": "true",
        "SECRET_KEY": SECRET,
        "API_KEYS_FILE": str(tmp_path / "keys.json"),
    }
    created = await walletd(
        "keys", "create", "--name", "demo", "--json", env=env, stdout=asyncio.subprocess.PIPE
    )
    out, _ = await created.communicate()
    assert created.returncode == 0
    key = json.loads(out)["key"]
    server = await server_factory(**env)
    page, watch = await open_demo(browser, server.url)

    await page.click("#start")
    await page.wait_for_selector("#error:has-text('AUTH_REQUIRED')", timeout=SETTLE_MS)

    await page.fill("#api-key", key)
    await page.click("#start")
    assert await settled(page, "complete", "error") == "complete"
    stream = await read_stream(server.url, WALLET, Authorization=f"Bearer {key}")
    assert await row_signatures(page) == signatures(stream)
    assert key not in page.url
    assert await page.evaluate("sessionStorage.getItem('walletd.apiKey')") == key
    assert await watch.csp_violations(page) == []
    assert watch.page_errors == []
