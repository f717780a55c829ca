"""The demo page's follow mode in headless Chromium: the history, "caught up", live rows
on top of the table, the summary and the chart kept current, and the browser's own
EventSource resuming across cuts made by a TCP proxy between it and walletd.

walletd runs in the test's process with a demo wall clock the test moves: each move of
DEMO_LIVE_INTERVAL lands one live trade. A second follower, read directly beside the
page, says what the server sent.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
from tests.clocks import FakeClock
from tests.sse_client import EventReader
from tests.support import WALLET
from tests.tcp_proxy import proxy_to
from walletd.trades.model import format_units
from walletd.trades.solana import WSOL_MINT
from walletd.upstream.demo import EMPTY_DEMO_WALLET
from walletd.upstream.demo_live import current_tick, tick_signature

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

NOW = 1_800_000_000.0  # unix seconds: the demo wall clock of these tests
INTERVAL = 10
BATCH = 50  # trades per `trades` event
FOLLOW_ENV = {
    "DEMO_LIVE_INTERVAL": INTERVAL,
    "FOLLOW_POLL_INTERVAL": 0.1,
    "SSE_BATCH_SIZE": BATCH,
    "SSE_RETRY_MS": 100,
}
FIRST_TICK = current_tick(WALLET, NOW, INTERVAL)
Trade = dict[str, Any]


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with launch_chromium() as launched:
        yield launched


async def start_following(page: Page, wallet: str) -> None:
    await page.fill("#wallet", wallet)
    await page.check("#follow")
    await page.click("#start")


async def rows_reach(page: Page, count: int) -> None:
    await page.wait_for_function(
        "(n) => Number(document.getElementById('app').dataset.rows) >= n",
        arg=count,
        timeout=SETTLE_MS,
    )


async def live_trades(reader: EventReader, count: int) -> list[Trade]:
    """The next `count` live trades of the direct follower."""
    trades: list[Trade] = []
    while len(trades) < count:
        trades += [t for e in await reader.until("trades") for t in e.data.get("trades", [])]
    assert len(trades) == count
    return trades


async def chart_groups(page: Page) -> list[dict[str, int]]:
    found: list[dict[str, int]] = await page.eval_on_selector_all(
        "#chart g.hour",
        "gs => gs.map(g => ({hour: +g.dataset.hour, buy: +g.dataset.buy, "
        "sell: +g.dataset.sell, swap: +g.dataset.swap}))",
    )
    return found


def per_hour(trades: list[Trade]) -> list[dict[str, int]]:
    """What the chart must show: per hour with trades, oldest first, counts by action."""
    counts: dict[int, Counter[str]] = {}
    for trade in trades:
        counts.setdefault(trade["timestamp"] // 3600 * 3600, Counter())[trade["action"]] += 1
    return [
        {"hour": hour, **{a: counts[hour][a] for a in ("buy", "sell", "swap")}}
        for hour in sorted(counts)
    ]


def volume_sol(trades: list[Trade]) -> str:
    lamports = sum(
        int(Decimal(leg["amount"]).scaleb(9))
        for t in trades
        for leg in (t["token_in"], t["token_out"])
        if leg["mint"] == WSOL_MINT
    )
    return format_units(lamports, 9)


async def test_demo_page_follows_live_trades_across_cuts(
    browser: Browser, serve: Any, tmp_path: Path
) -> None:
    clock = FakeClock(NOW)
    client = await serve(wall_clock=clock, **FOLLOW_ENV)
    url = f"/v4/wallet/{WALLET}/stream"
    async with (
        client.get(url, params={"follow": "true"}) as direct,
        proxy_to(client.port) as proxy,
    ):
        reader = EventReader(direct)
        events = await reader.until("caught_up")
        history = [t for e in events if e.name == "trades" for t in e.data["trades"]]
        caught_up = events[-1].data
        assert len(history) > 150  # several `trades` events of SSE_BATCH_SIZE

        # The page's stream is cut inside the history, after two `trades` events: held
        # there until the page shows them, so that it resumes rather than starts over.
        proxy.cut_before(b"\nevent: trades", skip=2, hold=True)
        page, watch = await open_demo(browser, proxy.url)
        await start_following(page, WALLET)
        await rows_reach(page, 2 * BATCH)
        assert proxy.cut_done.is_set()
        assert await app_data(page, "rows") == str(2 * BATCH)
        assert proxy.drop_all() > 0
        assert await settled(page, "live", "error") == "live", await page.inner_text("#error")
        # The resumed connection's count, as the page shows it (it may trail the state).
        await page.wait_for_function(
            "() => document.getElementById('app').dataset.connections === '2'",
            timeout=SETTLE_MS,
        )
        assert await app_data(page, "connections") == "2"
        assert await row_signatures(page) == [t["signature"] for t in history]
        assert "Caught up" in await page.inner_text("#state")
        shown = await summary_items(page)
        totals = caught_up["summary"]
        assert shown["Trades"] == str(caught_up["trades_found"]) == str(len(history))
        assert shown["Buys / sells / swaps"] == (
            f"{totals['buys']} / {totals['sells']} / {totals['swaps']}"
        )
        assert shown["Distinct tokens"] == str(totals["unique_tokens"])
        assert shown["SOL volume"] == f"{totals['volume_sol']} SOL"

        # A live trade lands: on top of the table, highlighted.
        clock.advance(INTERVAL)
        live = await live_trades(reader, 1)
        assert live[0]["signature"] == tick_signature(WALLET, FIRST_TICK + 1, float(INTERVAL))
        await rows_reach(page, len(history) + 1)
        first = f'#trades tbody tr[data-signature="{live[0]["signature"]}"]'
        assert (await row_signatures(page))[0] == live[0]["signature"]
        await page.wait_for_selector(f"{first}.fresh", timeout=SETTLE_MS)
        assert await page.get_attribute(first, "data-live") == "true"

        # Cut while live; two trades land while the browser cannot get through.
        proxy.refusing = True
        assert proxy.drop_all() > 0
        assert await settled(page, "reconnecting") == "reconnecting"
        clock.advance(2 * INTERVAL)
        live += await live_trades(reader, 2)
        proxy.refusing = False
        await rows_reach(page, len(history) + 3)
        assert await settled(page, "live") == "live"
        await page.wait_for_function(
            "(n) => document.getElementById('chart').dataset.groups == n",
            arg=len(per_hour(history + live)),
            timeout=SETTLE_MS,
        )
        await page.set_viewport_size({"width": 1280, "height": 1400})  # to the first rows
        await screenshot(page, tmp_path, "demo-page-follow.png")

    everything = history + live
    # Every trade the server sent, once, newest first: live ones on top.
    assert await row_signatures(page) == [t["signature"] for t in live[::-1] + history]
    assert await app_data(page, "duplicates") == "0"
    assert int(await app_data(page, "connections")) >= 3
    shown = await summary_items(page)
    actions = Counter(t["action"] for t in everything)
    assert shown["Trades"] == str(len(everything)) and shown["Live trades"] == "3"
    assert shown["Buys / sells / swaps"] == (
        f"{actions['buy']} / {actions['sell']} / {actions['swap']}"
    )
    assert shown["SOL volume"] == f"{volume_sol(everything)} SOL"
    # The chart: one bar group per hour with trades, whose counts are the table's.
    groups = await chart_groups(page)
    assert groups == per_hour(everything)
    assert sum(g[a] for g in groups for a in ("buy", "sell", "swap")) == len(everything)
    assert await page.get_attribute("#chart", "data-volume") == volume_sol(everything)
    assert await watch.csp_violations(page) == []
    assert watch.page_errors == []


async def test_demo_page_follows_a_wallet_without_history(
    browser: Browser, serve: Any, tmp_path: Path
) -> None:
    client = await serve(wall_clock=FakeClock(NOW), **FOLLOW_ENV)
    page, watch = await open_demo(browser, str(client.make_url("")).rstrip("/"))
    await start_following(page, EMPTY_DEMO_WALLET)
    assert await settled(page, "live", "error") == "live"  # not WALLET_NOT_FOUND
    assert await app_data(page, "rows") == "0"
    assert (await summary_items(page))["Trades"] == "0"
    assert await page.is_hidden("#chart-panel") and await page.is_hidden("#error")
    assert await page.is_enabled("#stop")
    await page.click("#stop")
    assert await settled(page, "stopped") == "stopped"
    assert await watch.csp_violations(page) == []
    assert watch.page_errors == [] and watch.console_errors == []
