"""The dashboard's customer page and its order form (a real-time event), in process and
in Debian's Chromium.

One 1,500-customer demo for the module (its store changes: orders are recorded).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from segvalue.pipeline import run_demo
from segvalue.project import Project
from segvalue.web import create_dashboard_app
from test_web import _Watched


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    _, config = run_demo(n_customers=1500, out_dir=tmp_path_factory.mktemp("customer") / "d")
    with Project.from_yaml(config) as project:
        yield project


@pytest.fixture(scope="module")
def client(demo: Project) -> Iterator[TestClient]:
    with TestClient(create_dashboard_app(demo), follow_redirects=False) as client:
        yield client


def _token(html: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


def test_the_page_shows_the_customer_as_scored(client: TestClient, demo: Project) -> None:
    response = client.get("/customers/C0000008")
    assert response.status_code == 200
    html = response.text
    customer = demo.customer("C0000008")
    assert customer is not None
    assert "Customer <code>C0000008</code>" in html
    for scheme, segment in customer["memberships"].items():
        shown = segment if isinstance(segment, str) else (segment or ["–"])[0]
        assert scheme in html and str(shown) in html
    assert 'id="customer-predictions"' in html and "Record an order" in html
    # The search box sends to the page; an unknown id is a 404 page saying so.
    found = client.get("/customers", params={"id": " C0000008 "})
    assert found.status_code == 303 and found.headers["location"] == "/customers/C0000008"
    missing = client.get("/customers/NOBODY")
    assert missing.status_code == 404 and "no customer" in missing.text


def test_the_order_form_records_an_event_once(client: TestClient, demo: Project) -> None:
    page = client.get("/customers/C0000009")
    token = _token(page.text)
    assert client.cookies.get("segvalue_form_csrf") == token  # double submit
    before = demo.customer("C0000009")
    assert before is not None
    form = {
        "csrf_token": token,
        "order_id": "WEB-1",
        "order_ts": "2025-12-31T12:00:00",
        "amount": "95.5",
    }
    recorded = client.post("/customers/C0000009/orders", data=form)
    assert recorded.status_code == 200, recorded.text
    assert "Order recorded." in recorded.text
    after = demo.customer("C0000009")
    assert after is not None
    assert after["features"]["orders"] == before["features"]["orders"] + 1
    again = client.post("/customers/C0000009/orders", data=form)
    assert "recorded already" in again.text
    assert demo.customer("C0000009") == after
    # A bad amount: the rule, on the page, and the form keeps what was typed.
    bad = client.post("/customers/C0000009/orders", data={**form, "order_id": "W2", "amount": "x"})
    assert bad.status_code == 422
    assert "unparseable_value" in bad.text and 'value="W2"' in bad.text


def test_the_order_form_needs_its_token(client: TestClient, demo: Project) -> None:
    before = demo.customer("C0000012")
    form = {"order_id": "X-1", "order_ts": "2025-12-31T12:00:00", "amount": "10"}
    refused = client.post("/customers/C0000012/orders", data=form)
    assert refused.status_code == 403
    wrong = client.post("/customers/C0000012/orders", data={**form, "csrf_token": "x" * 43})
    assert wrong.status_code == 403
    assert demo.customer("C0000012") == before


def test_behind_the_login_a_read_key_cannot_record(demo: Project) -> None:
    read, _ = demo.keys.create("read")
    write, _ = demo.keys.create("write")
    app = create_dashboard_app(demo, login=True)
    for key, status in ((read, 403), (write, 200)):
        with TestClient(app, follow_redirects=False) as client:
            login = client.get("/login")
            client.post("/login", data={"csrf_token": _token(login.text), "api_key": key})
            page = client.get("/customers/C0000013")
            assert page.status_code == 200
            form = {
                "csrf_token": _token(page.text),
                "order_id": f"L-{status}",
                "order_ts": "2025-12-31T12:00:00",
                "amount": "10",
            }
            assert client.post("/customers/C0000013/orders", data=form).status_code == status


def test_recording_an_order_moves_the_customer_in_chromium(
    demo: Project, serve_app: Any, browser: Any, tmp_path: Path
) -> None:
    """The order form, by keyboard, moves a lapsed customer between segments, and the
    customer page shows the new segment and the move."""
    view = demo.runs.latest()
    assert view is not None
    lapsed = [
        row["customer_id"]
        for row in view.memberships("lifecycle").to_pylist()
        if row["segment"] in ("lapsed", "at_risk")
    ]
    customer = lapsed[0]
    before = demo.customer(customer)
    assert before is not None
    with serve_app(create_dashboard_app(demo)) as url:
        watched = _Watched(browser, url, viewport={"width": 390, "height": 844})
        try:
            page = watched.open("/customers")
            page.fill("#customer-id", customer)
            page.keyboard.press("Enter")
            page.wait_for_url(f"**/customers/{customer}")
            page.focus("#order-id")
            page.keyboard.type("BROWSER-1")
            page.keyboard.press("Tab")
            page.keyboard.type("2025-12-31T15:30:00")
            page.keyboard.press("Tab")
            page.keyboard.type("64.90")
            page.keyboard.press("Enter")
            notice = page.locator("#event-notice")
            notice.wait_for(timeout=15_000)
            assert "lifecycle" in notice.inner_text()
            segments = page.locator("#customer-segments").inner_text()
            assert before["memberships"]["lifecycle"] not in segments.split("lifecycle")[1][:40]
            moves = page.locator("#customer-moves").inner_text()
            assert "lifecycle" in moves and before["memberships"]["lifecycle"] in moves
            page.screenshot(path=str(tmp_path / "customer.png"), full_page=True)
            watched.check_clean()
        finally:
            watched.close()
    after = demo.customer(customer)
    assert after is not None
    assert after["memberships"]["lifecycle"] != before["memberships"]["lifecycle"]
    assert after["features"]["orders"] == before["features"]["orders"] + 1
