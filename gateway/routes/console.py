"""The console (README "Console"): ``GET /ui``, one page for the people who run the gateway.

The page and its two assets are package data (``gateway/console/``), read once at import: no build
step, no CDN, nothing from another origin. Loading them needs no key (they hold no data); every
call the page makes carries the admin key the operator types in, and goes to the same public routes
any client could call (``/admin/keys``, ``/admin/audit``, ``/v1/usage``), so the page can do nothing
the API does not allow.

These paths skip the frame (``admin.is_public``): they are not requests to record, like the probes.
"""

from __future__ import annotations

import hashlib
from importlib import resources

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

PAGE = "/ui"
ASSET_PREFIX = "/ui/"

# Only this origin, no inline script or style, no framing, no form posts: a key typed into the page
# can only travel in the page's own fetch calls.
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
SECURITY_HEADERS = {
    "content-security-policy": CSP,
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cross-origin-opener-policy": "same-origin",
    "cross-origin-resource-policy": "same-origin",
}

_TYPES = {
    "index.html": "text/html; charset=utf-8",
    "app.js": "text/javascript; charset=utf-8",
    "app.css": "text/css; charset=utf-8",
}


class _Asset:
    __slots__ = ("body", "etag", "media_type")

    def __init__(self, name: str) -> None:
        self.body = resources.files("gateway").joinpath("console", name).read_bytes()
        self.media_type = _TYPES[name]
        self.etag = '"' + hashlib.sha256(self.body).hexdigest()[:32] + '"'


class ConsoleRoutes:
    def __init__(self) -> None:
        self.assets = {name: _Asset(name) for name in _TYPES}

    def routes(self) -> list[Route]:
        return [
            Route(PAGE, self.page, methods=["GET", "HEAD"]),
            Route(ASSET_PREFIX + "{name:path}", self.asset, methods=["GET", "HEAD"]),
        ]

    async def page(self, request: Request) -> Response:
        # The page itself is never cached: after an upgrade it names the current assets.
        return self._send(request, self.assets["index.html"], "no-store")

    async def asset(self, request: Request) -> Response:
        name = request.path_params["name"]
        if name == "":
            # /ui/ → /ui, relative so it also works behind a proxy that adds a path prefix.
            return Response(status_code=308, headers={"location": "../ui", **SECURITY_HEADERS})
        asset = self.assets.get(name) if name != "index.html" else None
        if asset is None:
            return Response(
                b"Not found.\n", status_code=404, media_type="text/plain; charset=utf-8", headers=SECURITY_HEADERS
            )
        # Revalidated on every load (cheap: 304 by ETag), so an upgraded gateway never runs old code.
        return self._send(request, asset, "no-cache")

    @staticmethod
    def _send(request: Request, asset: _Asset, cache: str) -> Response:
        headers = {**SECURITY_HEADERS, "cache-control": cache, "etag": asset.etag}
        if cache != "no-store" and asset.etag in request.headers.get("if-none-match", ""):
            return Response(status_code=304, headers=headers)
        body = b"" if request.method == "HEAD" else asset.body
        headers["content-length"] = str(len(asset.body))
        return Response(body, media_type=asset.media_type, headers=headers)
