"""Headless Chromium for the demo page's tests: the browser, a page opened on walletd
under watch (CSP violations, exceptions, console errors), and waits on the page's DOM.

Page predicates are written as functions: a bare expression would be evaluated with
eval(), which the page's CSP refuses.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING

from tests.ci import missing

if TYPE_CHECKING:
    from playwright.async_api import Browser, Page

OUTPUT = Path(__file__).resolve().parents[1] / "test-output"
# Bounded waits for a slow 2-core machine; a run takes a few seconds.
SETTLE_MS = 60_000


def chromium_executable() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        path = shutil.which(name)
        if path is not None:
            return path
    missing("Chromium is not installed (Debian: apt-get install chromium)")


@contextlib.asynccontextmanager
async def launch_chromium() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, through playwright (whose own browser builds are
    never downloaded); skipped without it, failed in CI."""
    executable = chromium_executable()
    from playwright.async_api import async_playwright  # the `test` extra: never skipped

    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=executable, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


class Watch:
    """What a page reported: CSP violations, uncaught exceptions, console errors."""

    def __init__(self) -> None:
        self.page_errors: list[str] = []
        self.console_errors: list[str] = []

    async def csp_violations(self, page: Page) -> list[str]:
        found: list[str] = await page.evaluate("window.__cspViolations")
        return found


# Injected by the browser driver before any page script (not subject to the CSP).
CSP_LISTENER = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} ${e.blockedURI}`);
});
"""


async def open_demo(browser: Browser, url: str) -> tuple[Page, Watch]:
    page = await browser.new_page(viewport={"width": 1280, "height": 900})
    watch = Watch()
    page.on("pageerror", lambda exc: watch.page_errors.append(str(exc)))
    page.on("console", lambda m: watch.console_errors.append(m.text) if m.type == "error" else None)
    await page.add_init_script(CSP_LISTENER)
    await page.goto(f"{url}/")
    return page, watch


async def settled(page: Page, *states: str) -> str:
    """Wait until the page's state is one of `states`; return it."""
    await page.wait_for_function(
        "(states) => states.includes(document.getElementById('app').dataset.state)",
        arg=list(states),
        timeout=SETTLE_MS,
    )
    return await app_data(page, "state")


async def app_data(page: Page, name: str) -> str:
    value = await page.get_attribute("#app", f"data-{name}")
    assert value is not None, name
    return value


async def row_signatures(page: Page) -> list[str]:
    found: list[str] = await page.eval_on_selector_all(
        "#trades tbody tr", "rows => rows.map(r => r.dataset.signature)"
    )
    return found


async def summary_items(page: Page) -> dict[str, str]:
    """The summary shown: term -> value."""
    found: dict[str, str] = await page.eval_on_selector(
        "#summary-list",
        "dl => Object.fromEntries([...dl.querySelectorAll('dt')]"
        ".map(dt => [dt.textContent, dt.nextElementSibling.textContent]))",
    )
    return found


async def screenshot(page: Page, tmp_path: Path, name: str) -> None:
    await page.screenshot(path=tmp_path / name)
    OUTPUT.mkdir(exist_ok=True)
    shutil.copyfile(tmp_path / name, OUTPUT / name)
