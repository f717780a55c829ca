"""The browser demo page at GET / and its static assets, behind FEATURE_DEMO_PAGE."""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from walletd.api.boundary import add_get
from walletd.appkeys import FLAGS
from walletd.errors import NotFound

# The only files served: a fixed map, so no request path ever reaches the filesystem.
CONTENT_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "chart.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
# Asset names carry no version, so browsers revalidate every load (a cheap 304 by ETag)
# rather than keep a stale app.js beside a newer index.html after an upgrade.
CACHE_CONTROL = "no-cache"


@dataclass(frozen=True, slots=True)
class Asset:
    body: bytes
    content_type: str
    etag: str


@functools.cache
def load_asset(name: str) -> Asset:
    """A packaged file of walletd/api/static, read once. Raises KeyError for a name not in
    CONTENT_TYPES, OSError when the package was installed without its data."""
    content_type = CONTENT_TYPES[name]
    body = resources.files("walletd.api").joinpath("static", name).read_bytes()
    etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
    return Asset(body, content_type, etag)


def _serve(request: web.Request, name: str) -> web.Response:
    # Checked per request, not at route setup: FEATURE_DEMO_PAGE may change on SIGHUP.
    if not request.app[FLAGS].current.demo_page:
        raise NotFound(f"demo page disabled: {request.path}")
    asset = load_asset(name)
    headers = {"Cache-Control": CACHE_CONTROL, "ETag": asset.etag}
    if asset.etag in request.headers.get("If-None-Match", ""):
        return web.Response(status=304, headers=headers)
    return web.Response(body=asset.body, headers={**headers, "Content-Type": asset.content_type})


async def index(request: web.Request) -> web.Response:
    """GET /: the demo page. Raises NotFound while FEATURE_DEMO_PAGE is off."""
    return _serve(request, "index.html")


async def static_asset(request: web.Request) -> web.Response:
    """GET /static/{name}: app.js, chart.js, app.css, favicon.svg; anything else is NotFound."""
    name = request.match_info["name"]
    if name == "index.html" or name not in CONTENT_TYPES:
        raise NotFound(f"no static asset {name[:64]!r}")
    return _serve(request, name)


def add_demo_routes(app: web.Application) -> None:
    """Public routes (no key, not rate limited): GET / and GET /static/{name}."""
    add_get(app, "/", index, name="demo_page", document=True)
    add_get(app, "/static/{name}", static_asset, name="demo_static")
