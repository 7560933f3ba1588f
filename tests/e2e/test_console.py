"""The console's page and assets over plain HTTP (no browser): public, same-origin only, security
headers, caching, package data, and a script that keeps the admin key out of every store.

The browser tests are in ``test_console_browser.py``.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from gateway.routes.console import _TYPES, CSP
from tests.e2e.conftest import ADMIN_KEY, CLIENT_KEY, base_config
from tests.support.servers import ServerThread

ROOT = Path(__file__).resolve().parent.parent.parent
CONSOLE = ROOT / "gateway" / "console"

WANT_HEADERS = {
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
        "frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
    ),
    "x-frame-options": "DENY",
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
}


@pytest.fixture
def gw(gateway_for: Callable[[dict[str, Any]], ServerThread]) -> ServerThread:
    return gateway_for(base_config())


def _has_security_headers(r: httpx.Response) -> None:
    for k, v in WANT_HEADERS.items():
        assert r.headers.get(k) == v, (r.url, k, r.headers.get(k))


def test_the_page_loads_without_a_key_with_security_headers(gw: ServerThread) -> None:
    r = httpx.get(gw.url + "/ui")
    assert r.status_code == 200
    assert r.headers["content-type"] == "text/html; charset=utf-8"
    assert r.headers["cache-control"] == "no-store"
    _has_security_headers(r)
    assert WANT_HEADERS["content-security-policy"] == CSP
    html = r.text
    assert '<input id="admin-key" name="admin-key" type="password"' in html
    assert ">Sign in</button>" in html and ">Create key</h3>" in html
    # HEAD answers the same headers without a body.
    h = httpx.head(gw.url + "/ui")
    assert h.status_code == 200 and h.content == b"" and h.headers["content-length"] == str(len(r.content))


@pytest.mark.parametrize(("name", "ctype"), [("app.js", "text/javascript"), ("app.css", "text/css")])
def test_assets_are_public_revalidated_and_carry_the_headers(gw: ServerThread, name: str, ctype: str) -> None:
    r = httpx.get(f"{gw.url}/ui/{name}")
    assert r.status_code == 200
    assert r.headers["content-type"] == f"{ctype}; charset=utf-8"
    assert r.headers["cache-control"] == "no-cache"
    _has_security_headers(r)
    assert r.content == (CONSOLE / name).read_bytes()
    again = httpx.get(f"{gw.url}/ui/{name}", headers={"if-none-match": r.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    _has_security_headers(again)


def test_unknown_console_paths(gw: ServerThread) -> None:
    r = httpx.get(gw.url + "/ui/")
    assert r.status_code == 308 and r.headers["location"] == "../ui"
    _has_security_headers(r)
    assert httpx.get(gw.url + "/ui/", follow_redirects=True).url.path == "/ui"
    for path in ("/ui/nope.js", "/ui/../gateway/app.py", "/ui/index.html", "/ui/app.js/x"):
        r = httpx.get(gw.url + path)
        assert r.status_code == 404, path
    r = httpx.get(gw.url + "/ui/nope.js")
    _has_security_headers(r)
    assert httpx.post(gw.url + "/ui").status_code == 405


def test_loading_the_page_is_not_a_recorded_request(gw: ServerThread) -> None:
    """The page is public like the probes: a key sent along is ignored and nothing is recorded."""
    for path in ("/ui", "/ui/app.js", "/ui/app.css", "/ui/missing"):
        httpx.get(gw.url + path, headers={"authorization": f"Bearer {CLIENT_KEY}"})
    u = httpx.get(gw.url + "/v1/usage", params={"key": "team-a"}, headers={"authorization": f"Bearer {ADMIN_KEY}"})
    assert u.status_code == 200 and u.json()["requests"] == 0


def test_the_page_names_no_other_origin() -> None:
    html = (CONSOLE / "index.html").read_text()
    for ref in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert ref in ("ui/app.css", "ui/app.js", "data:,", "#main"), ref
    for name in _TYPES:
        text = (CONSOLE / name).read_text()
        urls = set(re.findall(r"\b(?:https?:)?//[\w.-]+", text)) - {"http://www.w3.org"}  # the SVG namespace name
        assert not urls, (name, urls)
        assert "@import" not in text and "url(" not in text.replace("data:", ""), name


def test_the_script_keeps_the_key_in_memory_only() -> None:
    """Static guards backing the browser test: no storage, cookie, markup injection or logging."""
    js = (CONSOLE / "app.js").read_text()
    code = "\n".join(line for line in js.splitlines() if not line.lstrip().startswith("//"))
    for banned in (
        "localStorage",
        "sessionStorage",
        "document.cookie",
        "indexedDB",
        "innerHTML",
        "outerHTML",
        "insertAdjacentHTML",
        "document.write",
        "console.",
        "eval(",
        "new Function",
        "history.",
        "location.hash",
        "location.search",
        "location.href =",
    ):
        assert banned not in code, banned
    assert code.count("adminKey = candidate") == 1  # the only place it is set, from the password field


def test_console_files_are_package_data() -> None:
    """Everything in gateway/console/ is served, and pyproject ships it with the package."""
    assert {p.name for p in CONSOLE.iterdir()} == set(_TYPES)
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "console/*" in pyproject["tool"]["setuptools"]["package-data"]["gateway"]
    assert any(d.startswith("playwright") for d in pyproject["project"]["optional-dependencies"]["dev"])
