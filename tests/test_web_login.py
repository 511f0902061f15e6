"""The dashboard's login off loopback: sessions, cookies, CSRF, throttling, revoked keys.

In process through ``create_dashboard_app(project, login=True)`` on a 300-customer demo
run (the app ``segvalue serve`` builds on a non-loopback address: checked through the
CLI with ``uvicorn.run`` replaced, so nothing listens on a public interface); then in
Debian's Chromium through Playwright: a login with the keyboard only, the overview, a
logout.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx2 as httpx
import pytest
from fastapi.testclient import TestClient

from segvalue.cli.main import cli
from segvalue.pipeline import run_demo
from segvalue.project import Project
from segvalue.web import create_dashboard_app, dashboard_router
from segvalue.web.login import LoginThrottle, Sessions, safe_next

PAGES = [
    "/",
    "/segments",
    "/segments?scheme=rfm",
    "/segments/lifecycle/new",
    "/migration",
    "/models",
    "/budget",
    "/budget?from=paid_social&to=email&share=0.2",
    "/customers",
    "/customers/C0000001",
    "/attribution",
    "/channels?segment=all+customers",
    "/experiments",
    "/campaigns",
    "/campaigns/winback",
]


class Login:
    """The module's demo run, its keys, and the login-protected app over it."""

    def __init__(self, root: Path) -> None:
        self.run, self.config = run_demo(n_customers=300, seed=7, out_dir=root / "demo")
        self.project = Project.from_yaml(self.config)
        self.read_key, self.read_info = self.project.keys.create("read", name="reader")
        self.write_key, _ = self.project.keys.create("write", name="writer")
        self.revoked_key, revoked = self.project.keys.create("read", name="gone")
        self.project.keys.revoke(revoked.key_id)
        self.project.close()

    def app(self) -> Any:
        """A fresh app: its own sessions and throttle."""
        return create_dashboard_app(self.project, login=True)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Login:
    return Login(tmp_path_factory.mktemp("login"))


@pytest.fixture()
def client(demo: Login) -> Iterator[TestClient]:
    with TestClient(demo.app(), follow_redirects=False) as client:
        yield client


def _form_token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None, "no CSRF token in the form"
    return found.group(1)


def _log_in(client: TestClient, key: str, next_path: str = "/") -> httpx.Response:
    form = client.get("/login", params={"next": next_path})
    assert form.status_code == 200
    data = {"api_key": key, "csrf_token": _form_token(form.text), "next": next_path}
    return client.post("/login", data=data)


def _cookie_header(response: httpx.Response, name: str) -> str:
    found = [c for c in response.headers.get_list("set-cookie") if c.startswith(f"{name}=")]
    assert len(found) == 1, response.headers.get_list("set-cookie")
    return found[0]


def _flags(cookie: str) -> set[str]:
    return {part.strip().lower() for part in cookie.split(";")[1:]}


# ---------------------------------------------------------------- in process


def test_every_page_redirects_to_the_login_with_its_path(demo: Login, client: TestClient) -> None:
    routes = {r.path for r in dashboard_router(demo.project, login=True).routes}  # type: ignore[attr-defined]
    assert routes == {
        "/",
        "/segments",
        "/segments/{scheme}/{segment}",
        "/migration",
        "/models",
        "/budget",
        "/attribution",
        "/channels",
        "/experiments",
        "/campaigns",
        "/campaigns/{name:path}",
        "/customers",
        "/customers/{customer_id}",
        "/customers/{customer_id}/orders",
        "/login",
        "/logout",
        "/static/{name}",
    }
    for path in PAGES:
        response = client.get(path)
        assert response.status_code == 303, path
        location = response.headers["location"]
        assert urlsplit(location).path == "/login"
        assert parse_qs(urlsplit(location).query)["next"] == [path]
    # The order form too: no session, no order (to the login, nothing recorded).
    form = {"order_id": "L-0", "order_ts": "2025-12-31T10:00:00", "amount": "5"}
    posted = client.post("/customers/C0000001/orders", data=form)
    assert posted.status_code == 303 and posted.headers["location"].startswith("/login")
    # The static files stay open (the login page needs its stylesheet).
    assert client.get("/static/dashboard.css").status_code == 200
    assert client.get("/static/plotly.min.js").status_code == 200


def test_login_form_has_one_labelled_key_field_and_a_csrf_cookie(client: TestClient) -> None:
    response = client.get("/login", params={"next": "/models"})
    assert response.status_code == 200
    html = response.text
    assert '<label for="api-key">API key</label>' in html
    assert re.search(r'<input id="api-key" name="api_key" type="password" required', html)
    assert '<input type="hidden" name="next" value="/models">' in html
    assert '<button type="submit">Log in</button>' in html
    assert 'aria-label="Dashboard pages"' not in html  # no page links before the login
    assert response.headers["cache-control"] == "no-store"
    cookie = _cookie_header(response, "segvalue_login_csrf")
    assert cookie.split(";")[0].split("=", 1)[1] == _form_token(html)
    assert {"httponly", "samesite=strict", "path=/login"} <= _flags(cookie)


@pytest.mark.parametrize("which", ["read", "write"])
def test_a_key_of_either_scope_logs_in_with_a_session_cookie(
    demo: Login, client: TestClient, which: str
) -> None:
    key = demo.read_key if which == "read" else demo.write_key
    response = _log_in(client, key, "/segments?scheme=rfm")
    assert response.status_code == 303
    assert response.headers["location"] == "/segments?scheme=rfm"
    cookie = _cookie_header(response, "segvalue_session")
    flags = _flags(cookie)
    assert {"httponly", "samesite=strict", "path=/", "max-age=28800"} <= flags  # 8 h
    assert "secure" not in flags  # the request came over plain http
    token = cookie.split(";")[0].split("=", 1)[1]
    assert len(token) >= 40 and key not in cookie
    for path in PAGES:
        page = client.get(path)
        assert page.status_code == 200, path
        assert page.headers["cache-control"] == "no-store"
    overview = client.get("/").text
    assert demo.run.run_id in overview
    assert '<form class="logout-form" method="post" action="/logout">' in overview
    # Logged in, the login page sends you on.
    again = client.get("/login", params={"next": "/models"})
    assert again.status_code == 303 and again.headers["location"] == "/models"


def test_the_session_cookie_is_secure_over_https(demo: Login) -> None:
    with TestClient(demo.app(), base_url="https://testserver", follow_redirects=False) as client:
        response = _log_in(client, demo.read_key)
        assert response.status_code == 303
        flags = _flags(_cookie_header(response, "segvalue_session"))
        assert {"secure", "httponly", "samesite=strict", "path=/"} <= flags
        assert client.get("/").status_code == 200


@pytest.mark.parametrize("which", ["wrong", "revoked", "malformed"])
def test_a_wrong_or_revoked_key_is_a_401_form_that_never_echoes_it(
    demo: Login, client: TestClient, caplog: pytest.LogCaptureFixture, which: str
) -> None:
    key = {
        "wrong": demo.read_key[:-4] + "AAAA",
        "revoked": demo.revoked_key,
        "malformed": "not-a-key<script>",
    }[which]
    with caplog.at_level(logging.DEBUG):
        response = _log_in(client, key, "/models")
    assert response.status_code == 401
    html = response.text
    assert "That API key is unknown or revoked" in html
    assert 'role="alert"' in html and 'aria-invalid="true"' in html
    assert '<input type="hidden" name="next" value="/models">' in html  # the form again
    assert key not in html and "<script>" not in html
    assert key not in caplog.text and "a login failed" in caplog.text
    assert "segvalue_session" not in response.headers.get("set-cookie", "")
    assert client.get("/").status_code == 303
    # An empty key says what to enter.
    empty = client.post("/login", data={"api_key": " ", "csrf_token": _form_token(html)})
    assert empty.status_code == 401 and "Enter an API key" in empty.text


@pytest.mark.parametrize(
    "next_path",
    [
        "https://evil.example/",
        "//evil.example/",
        "/\\evil.example",
        "\\\\evil.example",
        "/\t/evil.example",
        "javascript:alert(1)",
        "evil.example",
        "/logout",
    ],
)
def test_next_is_followed_only_to_a_path_on_this_site(
    demo: Login, client: TestClient, next_path: str
) -> None:
    form = client.get("/login", params={"next": next_path})
    assert 'name="next" value="/"' in form.text
    data = {"api_key": demo.read_key, "csrf_token": _form_token(form.text), "next": next_path}
    response = client.post("/login", data=data)
    assert response.status_code == 303
    assert response.headers["location"] == "/"
    assert safe_next(next_path) == "/"


def test_login_and_logout_without_their_csrf_token_are_403(demo: Login, client: TestClient) -> None:
    form = client.get("/login")
    token = _form_token(form.text)
    for data in (
        {"api_key": demo.read_key},  # no token
        {"api_key": demo.read_key, "csrf_token": token[:-2] + "xx"},  # not the cookie's
    ):
        response = client.post("/login", data=data)
        assert response.status_code == 403
        assert "security token (CSRF)" in response.text
        assert "segvalue_session" not in response.headers.get("set-cookie", "")
    # The token without its cookie (another site's form cannot read or set the cookie).
    with TestClient(demo.app(), follow_redirects=False) as other:
        refused = other.post("/login", data={"api_key": demo.read_key, "csrf_token": token})
        assert refused.status_code == 403
    assert _log_in(client, demo.read_key).status_code == 303
    page = client.get("/").text
    session_token = _form_token(page)
    assert session_token != token
    for data in ({}, {"csrf_token": token}):  # none, or the login form's
        response = client.post("/logout", data=data)
        assert response.status_code == 403
    assert client.get("/").status_code == 200  # still logged in
    out = client.post("/logout", data={"csrf_token": session_token})
    assert out.status_code == 303 and out.headers["location"] == "/login?logged_out=1"


def test_logout_ends_the_session_and_its_cookie(demo: Login, client: TestClient) -> None:
    response = _log_in(client, demo.read_key)
    token = _cookie_header(response, "segvalue_session").split(";")[0].split("=", 1)[1]
    out = client.post("/logout", data={"csrf_token": _form_token(client.get("/").text)})
    assert out.status_code == 303
    ended = _cookie_header(out, "segvalue_session")
    assert "max-age=0" in _flags(ended)
    assert client.get("/").status_code == 303
    assert "You are logged out." in client.get("/login?logged_out=1").text
    # The old token is ended on the server, not only forgotten by the browser.
    client.cookies.set("segvalue_session", token)
    assert client.get("/").status_code == 303


def test_repeated_failures_from_one_client_are_throttled(demo: Login) -> None:
    app = demo.app()
    with TestClient(app, follow_redirects=False, client=("192.0.2.7", 4000)) as client:
        for _ in range(5):
            assert _log_in(client, demo.revoked_key).status_code == 401
        refused = _log_in(client, demo.read_key)  # even the right key, for a while
        assert refused.status_code == 429
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "Too many failed logins" in refused.text
        assert "segvalue_session" not in refused.headers.get("set-cookie", "")
    # Another client is not held back by them.
    with TestClient(app, follow_redirects=False, client=("192.0.2.8", 4000)) as other:
        assert _log_in(other, demo.read_key).status_code == 303


def test_a_revoked_key_ends_its_sessions_at_the_next_request(demo: Login, tmp_path: Path) -> None:
    with Project.from_yaml(demo.config) as project:
        key, info = project.keys.create("read", name="soon revoked")
    with TestClient(demo.app(), follow_redirects=False) as client:
        assert _log_in(client, key).status_code == 303
        assert client.get("/models").status_code == 200
        with Project.from_yaml(demo.config) as project:
            project.keys.revoke(info.key_id)
        response = client.get("/models")
        assert response.status_code == 303
        assert response.headers["location"] == "/login?next=%2Fmodels"
        assert "max-age=0" in _flags(_cookie_header(response, "segvalue_session"))
        assert _log_in(client, key).status_code == 401


def test_sessions_expire_and_are_capped() -> None:
    now = [0.0]
    sessions = Sessions(lifetime_seconds=8 * 3600, max_sessions=3, clock=lambda: now[0])
    tokens = [sessions.create(f"key{i}")[0] for i in range(4)]
    assert sessions.get(tokens[0]) is None  # the fourth pushed out the first
    assert [s.key_id for s in map(sessions.get, tokens[1:]) if s] == ["key1", "key2", "key3"]
    now[0] = 8 * 3600 - 1
    assert sessions.get(tokens[1]) is not None
    now[0] = 8 * 3600
    assert sessions.get(tokens[1]) is None and len(sessions) == 0
    token, _ = sessions.create("key1")
    sessions.create("key1")
    assert sessions.end_key("key1") == 2 and sessions.get(token) is None


def test_the_throttle_forgets_failures_after_its_window() -> None:
    now = [0.0]
    throttle = LoginThrottle(failures=5, window_seconds=60, clock=lambda: now[0])
    for second in range(5):
        now[0] = float(second)
        assert throttle.wait_seconds("a") == 0
        throttle.failed("a")
    assert throttle.wait_seconds("a") == 56  # the first failure leaves the window at 60 s
    now[0] = 60.0
    assert throttle.wait_seconds("a") == 0  # four left in the window: one more try
    throttle.failed("a")
    assert throttle.wait_seconds("a") == 1  # until the one at 1 s leaves it
    now[0] = 61.0
    assert throttle.wait_seconds("a") == 0
    throttle.failed("b")
    throttle.succeeded("b")
    assert throttle.wait_seconds("b") == 0


def test_on_loopback_the_dashboard_stays_open(demo: Login) -> None:
    with TestClient(create_dashboard_app(demo.project), follow_redirects=False) as client:
        page = client.get("/")
        assert page.status_code == 200 and demo.run.run_id in page.text
        assert "logout-form" not in page.text
        assert client.get("/login").status_code == 404


def test_serve_off_loopback_asks_for_a_login(
    demo: Login, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``segvalue serve --host 0.0.0.0``: the app it would run, and what it prints.

    uvicorn.run and the address check are replaced: nothing listens anywhere.
    """
    import uvicorn

    import segvalue.cli.main

    served: dict[str, Any] = {}
    monkeypatch.setattr(segvalue.cli.main, "_check_listen", lambda host, port: None)
    monkeypatch.setattr(uvicorn, "run", lambda app, **options: served.update(options, app=app))
    code = cli(["serve", "-c", str(demo.config), "--host", "0.0.0.0", "--port", "8765"])
    assert code == 0
    out = capsys.readouterr().out
    assert served["host"] == "0.0.0.0" and served["port"] == 8765
    line = next(line for line in out.splitlines() if line.startswith("dashboard:"))
    assert line == (
        f"dashboard: http://0.0.0.0:8765/ (log in with an API key: "
        f"segvalue keys create -c {demo.config} --scope read)"
    )
    assert "not served" not in out and demo.read_key not in out
    with TestClient(served["app"], follow_redirects=False) as client:
        assert client.get("/").status_code == 303
        assert client.get("/health").status_code == 200  # the API as before
        auth = {"Authorization": f"Bearer {demo.read_key}"}
        assert client.get("/api/v1/runs", headers=auth).status_code == 200
        assert _log_in(client, demo.read_key).status_code == 303
        assert demo.run.run_id in client.get("/").text

    code = cli(["serve", "-c", str(demo.config), "--host", "127.0.0.1", "--port", "8765"])
    assert code == 0
    assert "dashboard: http://127.0.0.1:8765/ (loopback only: open without a key)" in (
        capsys.readouterr().out
    )
    with TestClient(served["app"], follow_redirects=False) as client:
        assert client.get("/").status_code == 200


# ---------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def served(demo: Login, serve_app: Any) -> Iterator[str]:
    with serve_app(demo.app()) as url:
        yield url


def test_login_with_the_keyboard_only_then_logout_in_chromium(
    demo: Login, served: str, browser: Any, tmp_path: Path
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    try:
        page.goto(served + "/", wait_until="load")
        assert page.url == served + "/login?next=%2F"
        page.screenshot(path=str(tmp_path / "login.png"), full_page=True)
        focused = []
        for _ in range(5):  # the skip link, then the key field
            page.keyboard.press("Tab")
            focused.append(page.evaluate("document.activeElement.id"))
            if focused[-1] == "api-key":
                break
        assert focused[-1] == "api-key", focused
        assert page.evaluate("document.activeElement.labels[0].textContent") == "API key"
        page.keyboard.type(demo.read_key)
        with page.expect_navigation(wait_until="load"):
            page.keyboard.press("Enter")
        assert page.url == served + "/"
        assert page.locator("h1").first.inner_text() == "Overview"
        assert demo.run.run_id in page.locator("footer").inner_text()
        cookies = {c["name"]: c for c in context.cookies()}
        session = cookies["segvalue_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict" and session["path"] == "/"
        assert page.evaluate("document.cookie") == ""  # out of the page script's reach
        page.locator(".chart .main-svg").first.wait_for(state="attached", timeout=15_000)
        # Log out with the keyboard: Tab to the button, Enter.
        for _ in range(30):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.textContent.trim()") == "Log out":
                break
        else:
            raise AssertionError("the keyboard never reached the Log out button")
        with page.expect_navigation(wait_until="load"):
            page.keyboard.press("Enter")
        assert page.url == served + "/login?logged_out=1"
        assert "You are logged out." in page.locator("main").inner_text()
        assert "segvalue_session" not in {c["name"] for c in context.cookies()}
        page.goto(served + "/models", wait_until="load")
        assert page.url == served + "/login?next=%2Fmodels"
        assert errors == []
        assert [u for u in requests if not u.startswith(served + "/")] == []
    finally:
        context.close()


def test_login_and_a_page_behind_it_fit_a_phone_screen(
    demo: Login, served: str, browser: Any, tmp_path: Path
) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    try:
        page.goto(served + "/login", wait_until="load")
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0
        field = page.get_by_label("API key")
        box = field.bounding_box()
        assert box is not None and box["width"] >= 250 and box["height"] >= 30  # easy to tap
        assert (
            page.evaluate(
                "parseFloat(getComputedStyle(document.getElementById('api-key')).fontSize)"
            )
            >= 16
        )  # no zoom into the field on focus
        page.screenshot(path=str(tmp_path / "phone-login.png"), full_page=True)
        field.fill(demo.read_key)
        with page.expect_navigation(wait_until="load"):
            page.get_by_role("button", name="Log in").tap()
        assert page.url == served + "/"
        page.locator(".chart .main-svg").first.wait_for(state="attached", timeout=15_000)
        assert page.get_by_role("button", name="Log out").is_visible()
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the overview overflows a phone screen by {overflow}px"
        page.screenshot(path=str(tmp_path / "phone-overview.png"), full_page=True)
    finally:
        context.close()
