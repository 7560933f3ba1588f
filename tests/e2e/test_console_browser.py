"""The console in a real browser: headless Chromium (Debian's ``chromium``) driven by Playwright's
Python package, against the real gateway with Redis and the built-in mock provider.

Every test records every request the page makes and ends by checking that none left the gateway's
origin, that each went to a public admin or usage route, and that the admin key is in no URL, cookie,
storage or form field. Skipped, with the reason, where Chromium or Playwright is not installed
(``.ci/run`` installs Chromium; ``pip install -e '.[dev]'`` installs Playwright). Playwright is
never asked to download a browser of its own.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx
import openai
import pytest
import redis

from tests.e2e.conftest import ADMIN_KEY, CLIENT_KEY, base_config
from tests.support.redis import REDIS_URL
from tests.support.servers import ServerThread, free_port

try:
    from playwright.sync_api import Browser, Page, Request, expect, sync_playwright
except ImportError:  # the dev extra is not installed
    sync_playwright = None  # type: ignore[assignment]

CHROMIUM = os.environ.get("SWITCHYARD_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")

pytestmark = pytest.mark.skipif(
    sync_playwright is None or CHROMIUM is None,
    reason="browser tests need Playwright's Python package (the dev extra) and Debian's chromium "
    "(`apt-get install chromium`; .ci/run installs it)",
)

ADMIN = {"authorization": f"Bearer {ADMIN_KEY}"}
# The only paths the page may ask for: itself, its two assets, and the public admin and usage routes.
ALLOWED_PATHS = re.compile(r"/ui|/ui/app\.(js|css)|/admin/keys(/[A-Za-z0-9._-]+(/rotate)?)?|/admin/audit|/v1/usage")
API_PATHS = re.compile(r"/admin/.*|/v1/usage")
WAIT_MS = 15_000
if sync_playwright is not None:
    expect.set_options(timeout=WAIT_MS)


# Playwright's ``wait_for_function`` evaluates strings, which the page's CSP (rightly) forbids; the
# tests wait with ``expect`` and locators instead, and never relax the CSP (no ``bypass_csp``).


# -- fixtures ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert sync_playwright is not None and CHROMIUM is not None
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM)
        yield b
        b.close()


@pytest.fixture
def prefix(redis_prefix: str) -> Iterator[str]:
    """A Redis key prefix for this test, its keys deleted afterwards."""
    yield redis_prefix
    with contextlib.suppress(redis.RedisError):
        r = redis.Redis.from_url(REDIS_URL)
        for k in r.scan_iter(match=redis_prefix + "*", count=1000):
            r.delete(k)
        r.close()


def console_config(redis_url: str, prefix: str) -> dict[str, Any]:
    cfg = base_config()
    cfg["keys"][0]["team"] = "payments"  # team-a
    cfg["usage"] = {"redis_url": redis_url, "prefix": prefix, "flush_interval": 0.05}
    return cfg


@pytest.fixture
def gw(gateway_for: Callable[[dict[str, Any]], ServerThread], prefix: str) -> ServerThread:
    return gateway_for(console_config(REDIS_URL, prefix))


class Console:
    """A browser tab on the console, recording every request it makes."""

    def __init__(self, page: Page, origin: str) -> None:
        self.page = page
        self.origin = origin
        self.requests: list[Request] = []
        self.errors: list[str] = []
        page.on("request", lambda r: self.requests.append(r))
        page.on("pageerror", lambda e: self.errors.append(str(e)))
        page.on("console", self._console)
        page.set_default_timeout(WAIT_MS)

    def _console(self, m: Any) -> None:
        # The browser's own note on an API error status is expected; anything else (a script error,
        # a CSP violation) is a failure.
        if m.type == "error" and not m.text.startswith("Failed to load resource: the server responded"):
            self.errors.append(m.text)

    def open(self) -> Console:
        self.page.goto(self.origin + "/ui")
        self.page.wait_for_selector("html[data-ready='1']")
        return self

    def sign_in(self, key: str = ADMIN_KEY) -> None:
        self.page.get_by_label("Admin key").fill(key)
        self.page.get_by_role("button", name="Sign in").click()

    def signed_in(self) -> None:
        self.page.wait_for_selector("#console:not([hidden])")
        expect(self.page.locator("#today-status")).to_have_text(re.compile(r"^All "))

    def text(self, selector: str) -> str:
        return self.page.locator(selector).inner_text()

    def row(self, table: str, name: str) -> list[str]:
        """The cells of the row of ``table`` whose header cell is ``name``."""
        return self.page.eval_on_selector(
            f"#{table}",
            """(t, name) => { for (const r of t.querySelectorAll('tbody tr, tfoot tr'))
                 if (r.cells[0].textContent.trim() === name) return [...r.cells].map(c => c.textContent.trim());
               return null; }""",
            name,
        )

    def show_usage(self, by: str, name: str) -> None:
        self.page.get_by_label("Per", exact=True).select_option(by)
        self.page.get_by_label("Key or team name").fill(name)
        self.page.get_by_role("button", name="Show usage", exact=True).click()
        expect(self.page.locator("#usage-status")).to_have_text(re.compile(rf"^Usage of {by} {re.escape(name)},"))

    def key_row(self, name: str) -> Any:
        return self.page.locator(f"#keys-table tbody tr[data-name='{name}']")

    def assert_private(self, secrets: tuple[str, ...] = (ADMIN_KEY,)) -> None:
        """No request left the origin or went beyond the public routes; the key is only ever a
        Bearer header of the API calls: in no URL, cookie, storage or form field."""
        assert self.requests, "the page made no request"
        for req in self.requests:
            url = urlsplit(req.url)
            assert f"{url.scheme}://{url.netloc}" == self.origin, req.url
            assert ALLOWED_PATHS.fullmatch(url.path), req.url
            for s in secrets:
                assert s not in unquote(req.url), req.url
            auth = req.headers.get("authorization")
            if API_PATHS.fullmatch(url.path):
                assert auth is not None and auth.startswith("Bearer "), req.url
            else:
                assert auth is None, req.url  # the page and its assets are fetched without the key
        assert self.page.context.cookies() == []
        stored = self.page.evaluate(
            """() => ({cookie: document.cookie, local: localStorage.length, session: sessionStorage.length,
                       fields: [...document.querySelectorAll('input')].map(i => i.value).join('\\n'),
                       html: document.documentElement.outerHTML, url: location.href, title: document.title})"""
        )
        assert stored["cookie"] == "" and stored["local"] == 0 and stored["session"] == 0, stored
        for s in secrets:
            for where in ("fields", "html", "url", "title"):
                assert s not in stored[where], where
        assert self.errors == [], self.errors


@pytest.fixture
def tab(browser: Browser) -> Iterator[Callable[[ServerThread], Console]]:
    contexts = []

    def open_tab(server: ServerThread) -> Console:
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        origin = server.url
        ctx.grant_permissions(["clipboard-read", "clipboard-write"], origin=origin)
        contexts.append(ctx)
        return Console(ctx.new_page(), origin).open()

    yield open_tab
    for c in contexts:
        c.close()


def wait_until(pred: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def usage_of(server: ServerThread, **q: str) -> dict[str, Any]:
    r = httpx.get(server.url + "/v1/usage", params=q, headers=ADMIN)
    assert r.status_code == 200, r.text
    return r.json()


def fmt_cost(v: Any) -> str:
    """What the page shows for a ``cost_usd`` (the JS: 2 to 6 decimals), or "—" when absent."""
    if not isinstance(v, int | float):
        return "—"
    text = f"{v:,.6f}".rstrip("0")
    whole, _, frac = text.partition(".")
    return f"${whole}.{frac.ljust(2, '0')}"


def sdk(server: ServerThread, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=server.url + "/v1", api_key=key, max_retries=0)


def ask(server: ServerThread, key: str, content: str = "one two three") -> Any:
    return sdk(server, key).chat.completions.create(model="mock/echo", messages=[{"role": "user", "content": content}])


# -- tests ------------------------------------------------------------------------------------------
def test_sign_in_refuses_a_wrong_key_and_a_non_admin_key(
    gw: ServerThread, tab: Callable[[ServerThread], Console]
) -> None:
    con = tab(gw)
    page = con.page
    key_field = page.get_by_label("Admin key")
    assert key_field.get_attribute("type") == "password"
    assert page.evaluate("document.activeElement.id") == "admin-key"  # ready to type

    con.sign_in("sk-not-a-key")
    alert = page.locator("#signin-error")
    alert.filter(has_text="not accepted (401)").wait_for()
    assert page.locator("#console").is_hidden()
    assert key_field.get_attribute("aria-invalid") == "true"

    con.sign_in(CLIENT_KEY)  # a valid key, but not an admin's
    alert.filter(has_text="not an admin key (403)").wait_for()
    assert page.locator("#console").is_hidden()

    con.sign_in(ADMIN_KEY)
    con.signed_in()
    assert key_field.is_hidden() and key_field.input_value() == ""
    assert page.get_by_role("button", name="Sign out").is_visible()
    con.assert_private(secrets=(ADMIN_KEY, CLIENT_KEY, "sk-not-a-key"))

    # Signing out forgets the key: the next call would have none, so the page asks again.
    page.get_by_role("button", name="Sign out").click()
    assert key_field.is_visible() and page.locator("#console").is_hidden()
    assert page.locator("#keys-table tbody tr").count() == 0
    con.assert_private(secrets=(ADMIN_KEY, CLIENT_KEY, "sk-not-a-key"))


def test_tables_and_charts_show_a_keys_usage_after_real_requests(
    gw: ServerThread, tab: Callable[[ServerThread], Console], tmp_path: Path
) -> None:
    for words in ("alpha", "alpha beta", "alpha beta gamma"):
        ask(gw, CLIENT_KEY, words)
    with pytest.raises(openai.BadRequestError):  # an error: counted in requests and errors
        sdk(gw, CLIENT_KEY).chat.completions.create(
            model="mock/echo", messages=[{"role": "user", "content": "x"}], temperature=9
        )
    assert wait_until(lambda: usage_of(gw, key="team-a")["requests"] == 4)
    # A runtime key too, so the key list shows both kinds (and the audit log an entry).
    made = httpx.post(gw.url + "/admin/keys", headers=ADMIN, json={"name": "ledger-svc", "team": "payments"})
    assert made.status_code == 201
    want = usage_of(gw, key="team-a")
    team = usage_of(gw, team="payments")
    assert want["errors"] == 1 and want["total_tokens"] > 0

    con = tab(gw)
    con.sign_in()
    con.signed_in()
    page = con.page
    today = want["date"]

    # Today's figures: the cards (every key) and the key list's columns.
    assert int(con.text("#today-requests")) >= 4  # plus the console's own reads of the admin key
    assert int(con.text("#today-errors")) == 1
    row = con.key_row("team-a")
    assert row.locator(".today-requests").inner_text() == "4"
    assert row.locator(".today-errors").inner_text() == "1"
    assert row.locator(".today-cost").inner_text() == fmt_cost(want.get("cost_usd"))

    con.show_usage("key", "team-a")
    nums = [str(want[f]) for f in ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens")]
    assert con.row("usage-days", today) == [today, *nums, fmt_cost(want.get("cost_usd"))]
    assert con.row("usage-days", "Total") == ["Total", *nums, fmt_cost(want.get("cost_usd"))]
    assert con.row("usage-per-name", "team-a") == ["team-a", *nums, fmt_cost(want.get("cost_usd"))]
    m = want["models"]["mock/echo"]
    model_nums = [str(m[f]) for f in ("requests", "errors", "prompt_tokens", "completion_tokens", "total_tokens")]
    assert con.row("usage-models", "mock/echo") == ["mock/echo", *model_nums, fmt_cost(m.get("cost_usd"))]
    assert page.locator("#usage-days tbody tr").count() == 7  # the default range: the last 7 days
    # Charts: one per figure, with a bar per day and a tooltip naming the day and value.
    charts = page.locator("#charts figure")
    assert charts.count() == 3
    first = page.locator("#charts svg[role='img']").first
    assert first.locator("title").first.text_content() == "Requests and errors per day"
    assert first.locator("rect").count() == 14  # 7 days x (requests, errors)
    assert f"{today}: 4 requests" in page.locator("#charts svg").first.inner_html()
    if "cost_usd" not in want:
        assert "no cost" in charts.nth(2).inner_text()

    # Per team: the team's keys summed.
    con.show_usage("team", "payments")
    assert con.row("usage-per-name", "payments")[1] == str(team["requests"]) == "4"
    assert con.text("#usage-name-col") == "Team"

    path = tmp_path / "console.png"
    page.screenshot(path=str(path), full_page=True)
    print(f"console screenshot: {path}")
    con.assert_private()


def test_cost_is_shown_when_the_usage_answer_has_it(gw: ServerThread, tab: Callable[[ServerThread], Console]) -> None:
    """The cost work adds ``cost_usd`` to the usage answer (top level and per model): the page shows
    it in dollars. Answers are given ``cost_usd`` on their way to the page where the gateway has no
    cost yet, so the rendering is tested on either branch."""
    ask(gw, CLIENT_KEY, "alpha beta")
    assert wait_until(lambda: usage_of(gw, key="team-a")["requests"] == 1)

    def with_cost(route: Any) -> None:
        resp = route.fetch()
        body = resp.json()
        if "cost_usd" not in body:
            body["cost_usd"] = 0.0015 * body["requests"]
            for m in body["models"].values():
                m["cost_usd"] = 0.0015 * m["requests"]
        route.fulfill(response=resp, json=body)

    con = tab(gw)
    con.page.route(re.compile(r".*/v1/usage\?.*"), with_cost)
    con.sign_in()
    con.signed_in()
    want = usage_of(gw, key="team-a")
    cost = want.get("cost_usd", 0.0015)
    con.show_usage("key", "team-a")
    assert con.row("usage-days", want["date"])[-1] == fmt_cost(cost)
    assert con.row("usage-models", "mock/echo")[-1] == fmt_cost(want["models"]["mock/echo"].get("cost_usd", 0.0015))
    assert con.key_row("team-a").locator(".today-cost").inner_text() == fmt_cost(cost)
    assert con.text("#today-cost").startswith("$")
    assert "Cost per day" in con.page.locator("#charts figure").nth(2).inner_text()
    assert con.page.locator("#charts figure").nth(2).locator("svg rect").count() == 7
    con.assert_private()


def test_create_and_revoke_through_the_console_take_effect_on_the_api(
    gw: ServerThread, tab: Callable[[ServerThread], Console]
) -> None:
    con = tab(gw)
    con.sign_in()
    con.signed_in()
    page = con.page

    page.get_by_label("Name", exact=True).fill("billing-svc")
    page.get_by_label("Team (optional)").fill("payments")
    page.get_by_label("Models (optional)").fill("mock/echo")
    page.get_by_label("Requests per minute (optional)").fill("120")
    page.get_by_role("button", name="Create key", exact=True).click()
    shown = page.get_by_label("New key for billing-svc (shown once)")
    shown.wait_for()
    secret = shown.input_value()
    assert secret.startswith("sk-sy-") and len(secret) >= 40
    assert page.evaluate("document.activeElement.id") == "new-key-value"

    page.get_by_role("button", name="Copy").click()
    page.locator("#copy-status").filter(has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret

    # The new key works with the OpenAI SDK, within the models and limits the form gave it.
    assert ask(gw, secret).choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError):
        sdk(gw, secret).chat.completions.create(model="mock/other", messages=[{"role": "user", "content": "hi"}])
    listed = httpx.get(gw.url + "/admin/keys/billing-svc", headers=ADMIN).json()
    assert (listed["team"], listed["models"], listed["limits"]) == ("payments", ["mock/echo"], {"rpm": 120})
    row = con.key_row("billing-svc")
    row.wait_for()
    assert row.locator("td").nth(0).inner_text() == "runtime"

    # Done hides the key for good: it is in no field any more.
    page.get_by_role("button", name="Done").click()
    assert page.locator("#new-key").is_hidden()
    assert page.locator("#new-key-value").input_value() == ""

    # A name taken is refused with the API's message.
    page.get_by_label("Name", exact=True).fill("billing-svc")
    page.get_by_role("button", name="Create key", exact=True).click()
    page.locator("#create-error").filter(has_text="already exists").wait_for()
    assert page.get_by_label("Name", exact=True).get_attribute("aria-invalid") == "true"

    # Revoke asks first; Cancel keeps the key.
    page.get_by_role("button", name="Revoke billing-svc").click()
    dialog = page.get_by_role("dialog", name="Revoke billing-svc?")
    dialog.wait_for()
    dialog.get_by_role("button", name="Cancel").click()
    assert dialog.is_hidden()
    assert ask(gw, secret).choices

    page.get_by_role("button", name="Revoke billing-svc").click()
    dialog.get_by_role("button", name="Revoke", exact=True).click()
    page.locator("#keys-status").filter(has_text="Key billing-svc revoked.").wait_for()
    assert con.key_row("billing-svc").count() == 0
    with pytest.raises(openai.AuthenticationError):
        ask(gw, secret)

    # The audit log shows both changes, by the admin key's name, never a secret.
    page.locator("#audit-table tbody tr").nth(1).wait_for()
    audit = con.text("#audit-table tbody")
    assert re.search(r"ops\s+revoke\s+billing-svc", audit) and re.search(r"ops\s+create\s+billing-svc", audit)
    assert secret not in page.content()
    con.assert_private(secrets=(ADMIN_KEY, secret))


def test_disable_enable_and_rotate_through_the_console(
    gw: ServerThread, tab: Callable[[ServerThread], Console]
) -> None:
    made = httpx.post(gw.url + "/admin/keys", headers=ADMIN, json={"name": "batch-job"}).json()
    old = made["key"]
    con = tab(gw)
    con.sign_in()
    con.signed_in()
    page = con.page
    row = con.key_row("batch-job")

    page.get_by_role("button", name="Disable batch-job").click()
    page.locator("#keys-status").filter(has_text="disabled").wait_for()
    assert row.locator("td").nth(1).inner_text() == "disabled"
    with pytest.raises(openai.AuthenticationError):
        ask(gw, old)
    page.get_by_role("button", name="Enable batch-job").click()
    page.locator("#keys-status").filter(has_text="enabled").wait_for()
    assert ask(gw, old).choices

    # Rotate with a grace period: the old key keeps working until it ends.
    page.get_by_label("Grace seconds: how long the old key of batch-job keeps working after Rotate").fill("600")
    page.get_by_role("button", name="Rotate batch-job").click()
    dialog = page.get_by_role("dialog", name="Rotate batch-job?")
    assert "keeps working for 600 more seconds" in dialog.inner_text()
    dialog.get_by_role("button", name="Rotate", exact=True).click()
    new = page.get_by_label("New key for batch-job (rotated) (shown once)").input_value()
    assert new.startswith("sk-sy-") and new != old
    assert ask(gw, new).choices and ask(gw, old).choices
    row.filter(has_text="old key until").wait_for()

    # Rotate again without grace: the previous key stops at once.
    page.get_by_label("Grace seconds: how long the old key of batch-job keeps working after Rotate").fill("0")
    page.get_by_role("button", name="Rotate batch-job").click()
    page.get_by_role("dialog", name="Rotate batch-job?").get_by_role("button", name="Rotate", exact=True).click()
    expect(page.locator("#new-key-value")).not_to_have_value(new)
    newest = page.locator("#new-key-value").input_value()
    assert ask(gw, newest).choices
    with pytest.raises(openai.AuthenticationError):
        ask(gw, new)
    con.assert_private(secrets=(ADMIN_KEY, old, new))


def test_keyboard_only_sign_in_create_copy_and_revoke(gw: ServerThread, tab: Callable[[ServerThread], Console]) -> None:
    con = tab(gw)
    page = con.page
    kb = page.keyboard

    def tab_to(predicate: str, limit: int = 150) -> None:
        """Press Tab until the focused element matches ``predicate`` (a JS expression over ``e``)."""
        for _ in range(limit):
            if page.evaluate(f"(e => Boolean({predicate}))(document.activeElement)"):
                return
            kb.press("Tab")
        raise AssertionError(f"Tab never reached {predicate}")

    tab_to("e.id === 'admin-key'")
    kb.type(ADMIN_KEY)
    kb.press("Enter")
    con.signed_in()

    tab_to("e.id === 'create-name'")
    kb.type("kbd-svc")
    kb.press("Tab")
    assert page.evaluate("document.activeElement.id") == "create-team"
    kb.type("ops-team")
    kb.press("Tab")
    kb.type("mock/*")
    kb.press("Tab")
    kb.type("30")
    kb.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Create key"
    kb.press("Enter")
    page.locator("#new-key").wait_for()
    assert page.evaluate("document.activeElement.id") == "new-key-value"  # focus moves to the new key
    secret = page.locator("#new-key-value").input_value()
    kb.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Copy"
    kb.press("Enter")
    page.locator("#copy-status").filter(has_text="Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == secret
    assert ask(gw, secret).choices

    kb.press("Tab")
    kb.press("Space")  # Done
    assert page.locator("#new-key").is_hidden()
    assert page.evaluate("document.activeElement.id") == "create-name"

    tab_to("e.getAttribute('aria-label') === 'Revoke kbd-svc'")
    kb.press("Enter")
    dialog = page.get_by_role("dialog", name="Revoke kbd-svc?")
    dialog.wait_for()
    assert page.evaluate("document.activeElement.id") == "confirm-cancel"  # the safe choice first
    kb.press("Escape")  # Escape cancels, and focus returns to the row's button
    assert dialog.is_hidden()
    assert page.evaluate("document.activeElement.getAttribute('aria-label')") == "Revoke kbd-svc"
    kb.press("Enter")
    dialog.wait_for()
    kb.press("Tab")
    assert page.evaluate("document.activeElement.id") == "confirm-ok"
    kb.press("Enter")
    page.locator("#keys-status").filter(has_text="Key kbd-svc revoked.").wait_for()
    with pytest.raises(openai.AuthenticationError):
        ask(gw, secret)
    con.assert_private(secrets=(ADMIN_KEY, secret))


def test_every_control_is_labelled_and_a_real_control(gw: ServerThread, tab: Callable[[ServerThread], Console]) -> None:
    httpx.post(gw.url + "/admin/keys", headers=ADMIN, json={"name": "labelled", "team": "t1"})
    con = tab(gw)
    con.sign_in()
    con.signed_in()
    con.show_usage("key", "team-a")
    unnamed = con.page.evaluate(
        """() => {
          const name = (e) => {
            if (e.getAttribute('aria-label')) return e.getAttribute('aria-label');
            const by = e.getAttribute('aria-labelledby');
            if (by) return by.split(' ').map(id => document.getElementById(id)?.textContent || '').join(' ');
            if (e.labels && e.labels.length) return [...e.labels].map(l => l.textContent).join(' ');
            return e.tagName === 'BUTTON' ? e.textContent : '';
          };
          const bad = [];
          for (const e of document.querySelectorAll('input, select, textarea, button, [tabindex]:not([tabindex="-1"]), svg[role=img]'))
            if (!name(e).trim()) bad.push(e.outerHTML.slice(0, 120));
          // Nothing clickable that is not a real control.
          for (const e of document.querySelectorAll('[role=button], [onclick], div[tabindex="0"]:not([role=region])'))
            bad.push('not a control: ' + e.outerHTML.slice(0, 120));
          return bad;
        }"""
    )
    assert unnamed == []
    con.assert_private()


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A redis-server of this test's own on a free port, to stop and start at will."""
    exe = shutil.which("redis-server")
    if exe is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    state: dict[str, Any] = {"url": f"redis://127.0.0.1:{port}/0", "proc": None}

    def start() -> None:
        args = ["--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)]
        state["proc"] = subprocess.Popen(
            [exe, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        r = redis.Redis(port=port)
        assert wait_until(lambda: _pings(r)), "redis-server did not start"
        r.close()

    def stop() -> None:
        proc = state["proc"]
        if proc is not None and proc.poll() is None:
            proc.terminate()
            proc.wait(timeout=10)
        state["proc"] = None

    state["start"], state["stop"] = start, stop
    start()
    yield state
    stop()


def _pings(r: redis.Redis) -> bool:
    try:
        return bool(r.ping())
    except redis.RedisError:
        return False


def test_redis_down_shows_a_banner_and_the_page_keeps_working(
    gateway_for: Callable[[dict[str, Any]], ServerThread],
    tab: Callable[[ServerThread], Console],
    own_redis: dict[str, Any],
    tmp_path: Path,
) -> None:
    gw = gateway_for(console_config(own_redis["url"], "sy:"))
    made = httpx.post(gw.url + "/admin/keys", headers=ADMIN, json={"name": "survivor"}).json()
    ask(gw, CLIENT_KEY)
    assert wait_until(lambda: usage_of(gw, key="team-a")["requests"] == 1)
    con = tab(gw)
    con.sign_in()
    con.signed_in()
    page = con.page
    assert page.locator(".banner").count() == 0

    own_redis["stop"]()
    # A fresh tab while Redis is down: the page loads, sign-in works (the admin key is in the
    # config), the key list comes from the gateway's cache, and the usage banner says why there
    # are no figures.
    down = tab(gw)
    down.sign_in()
    down.page.wait_for_selector("#console:not([hidden])")
    banner = down.page.get_by_role("alert").filter(has_text="Usage store unavailable")
    banner.wait_for()
    assert down.key_row("survivor").count() == 1 and down.key_row("team-a").count() == 1
    assert down.key_row("team-a").locator(".today-requests").inner_text() == "—"
    assert "unavailable" in down.text("#usage-status")
    down.page.get_by_role("alert").filter(has_text="Audit log unavailable").wait_for()
    # Changing keys needs Redis: a clear refusal, not a broken page.
    down.page.get_by_label("Name", exact=True).fill("not-now")
    down.page.get_by_role("button", name="Create key", exact=True).click()
    down.page.get_by_role("alert").filter(has_text="Key store unavailable").wait_for()
    assert "Creating the key failed" in down.text("#create-error")
    path = tmp_path / "console-redis-down.png"
    down.page.screenshot(path=str(path), full_page=True)
    print(f"console screenshot (Redis down): {path}")
    # Requests keep being served, the runtime key included.
    assert ask(gw, made["key"]).choices

    # The tab that was open: its next read shows the banner too.
    page.get_by_role("button", name="Show usage", exact=True).click()
    page.get_by_role("alert").filter(has_text="Usage store unavailable").wait_for()

    # Redis back: the next successful read clears the banner.
    own_redis["start"]()
    # Connections pooled before the outage may fail a read or two right after Redis returns (the
    # API answers 503 and the banner stays): the operator's "try again shortly" is a second click.
    status = page.locator("#usage-status")
    for _ in range(5):
        page.get_by_role("button", name="Show usage", exact=True).click()
        expect(status).to_have_text(re.compile(r"^(Usage of|Usage store unavailable)"))
        if status.inner_text().startswith("Usage of"):
            break
    expect(status).to_have_text(re.compile(r"^Usage of"))
    assert page.locator("[data-banner='usage']").count() == 0
    con.assert_private()
    down.assert_private()
