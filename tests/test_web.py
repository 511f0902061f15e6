"""The dashboard: every page in process, then in a real headless Chromium.

One 1,500-customer demo is run twice: as of 2025-12-31, then as of 2026-03-31 with two
broken orders added (so the second run has migration since the first and rejects by
rule). The browser tests serve it with uvicorn on a free loopback port and drive Debian's
Chromium through Playwright (never a browser Playwright downloads); the page may load
nothing but the served dashboard.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from fastapi.testclient import TestClient

from segvalue.config import parse_config
from segvalue.pipeline import run_demo
from segvalue.project import Project, RunView
from segvalue.web import create_dashboard_app, dashboard_router
from segvalue.web.pages import models_page, segment_page


def _break_two_orders(data: Path) -> None:
    """Append an order of an unknown customer and one without a customer to the orders."""
    path = data / "orders.parquet"
    orders = pq.read_table(path)
    bad = orders.slice(0, 2).to_pylist()
    bad[0].update(order_id="BROKEN-1", customer_id="NOT-A-CUSTOMER")
    bad[1].update(order_id="BROKEN-2", customer_id=None)
    pq.write_table(pa.concat_tables([orders, pa.Table.from_pylist(bad, orders.schema)]), path)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """Two runs of the demo: ``first`` (no earlier run) and ``second`` (the latest)."""
    folder = tmp_path_factory.mktemp("web") / "demo"
    first, config_path = run_demo(n_customers=1_500, seed=7, out_dir=folder)
    text = config_path.read_text()
    assert "as_of: '2025-12-31'" in text
    config_path.write_text(text.replace("as_of: '2025-12-31'", "as_of: '2026-03-31'"))
    _break_two_orders(folder / "data")
    with Project.from_yaml(config_path) as project:
        second = project.run()
    with Project.from_yaml(config_path) as project:
        yield {
            "config": config_path,
            "project": project,
            "first": first.run_id,
            "second": second.run_id,
        }


@pytest.fixture(scope="module")
def client(demo: dict[str, Any]) -> TestClient:
    return TestClient(create_dashboard_app(demo["project"]))


def _latest(demo: dict[str, Any]) -> RunView:
    view = demo["project"].runs.latest()
    assert view is not None
    assert view.run_id == demo["second"]
    return view


def _segment_url(scheme: str, segment: str, run: str | None = None) -> str:
    url = f"/segments/{quote(scheme, safe='')}/{quote(segment, safe='')}"
    return url if run is None else f"{url}?run={run}"


def _moved_segment(view: RunView) -> tuple[str, str]:
    """A (scheme, segment) that customers moved into since the previous run."""
    for row in view.table("segment_migration").to_pylist():
        if row["from_segment"] != row["to_segment"] and row["to_segment"] not in (
            "(new)",
            "(gone)",
        ):
            return row["scheme"], row["to_segment"]
    raise AssertionError("the second run has no migration")


# ---------------------------------------------------------------- in process


def test_overview_shows_kpis_against_targets_freshness_run_and_rejects(
    demo: dict[str, Any], client: TestClient
) -> None:
    view = _latest(demo)
    response = client.get("/")
    assert response.status_code == 200
    html = response.text
    assert view.run_id in html
    assert str(view.info.as_of) in html
    status = view.kpi_status().to_pylist()
    assert status, "the demo configures KPI targets"
    for row in status:
        assert f"kpi-{row['kpi']}" in html  # a chart per KPI
    # One card per KPI and segment, coloured by its status.
    assert html.count('class="card status-') == len(status)
    for name in {row["status"] for row in status}:
        assert f"status-{name}" in html
    # Each segment's card links to its page; the all-customers card has none.
    for segment in {row["segment"] for row in status} - {"all customers"}:
        assert _segment_url(status[0]["scheme"], segment, view.run_id) in html
    assert "/all%20customers?" not in html
    for table in view.info.freshness:
        assert f'<th scope="row">{table}</th>' in html
    assert view.info.rejects == {"orders.null_id": 1, "orders.unknown_customer": 1}
    for rule, count in view.info.rejects.items():
        row = f'<th scope="row">{rule}</th><td class="num">{count:,}</td>'
        assert row in html


def test_overview_of_the_first_run_says_nothing_was_rejected(
    demo: dict[str, Any], client: TestClient
) -> None:
    response = client.get(f"/?run={demo['first']}")
    assert response.status_code == 200
    assert demo["first"] in response.text
    assert "No rows were rejected." in response.text


def test_segments_table_lists_every_segment_of_the_scheme_with_links(
    demo: dict[str, Any], client: TestClient
) -> None:
    view = _latest(demo)
    kpi_scheme = view.segment_kpis().column("scheme")[0].as_py()
    response = client.get("/segments")
    assert response.status_code == 200
    sizes = [r for r in view.table("segment_sizes").to_pylist() if r["scheme"] == kpi_scheme]
    rows = re.findall(r"<tr>\s*<th scope=\"row\" data-value=\"([^\"]*)\">", response.text)
    assert sorted(rows) == sorted(r["segment"] for r in sizes)
    # ROI and priority are there for the KPI scheme.
    assert "ROI and priority are computed for the KPI scheme only" not in response.text
    for segment in rows:
        assert _segment_url(kpi_scheme, segment, view.run_id).replace("?", "?") in response.text

    other = next(s for s in view.info.schemes if s != kpi_scheme)
    response = client.get(f"/segments?scheme={quote(other)}")
    assert response.status_code == 200
    assert f"Scheme {other}" in response.text
    assert "ROI and priority are computed for the KPI scheme only" in response.text
    assert client.get("/segments?scheme=no-such-scheme").status_code == 404


def test_segment_page_profile_persona_clv_and_migration(
    demo: dict[str, Any], client: TestClient
) -> None:
    view = _latest(demo)
    scheme, segment = _moved_segment(view)
    response = client.get(_segment_url(scheme, segment))
    assert response.status_code == 200
    html = response.text
    persona = next(p for p in view.personas() if p["scheme"] == scheme and p["segment"] == segment)
    assert f"Persona: {persona['name']}" in html
    for chart in ("profile-index", "clv-histogram", "channel-use", "migration"):
        assert f'id="{chart}"' in html
    assert f"Since run <code>{demo['first']}</code>" in html
    members = sum(1 for r in view.memberships(scheme).to_pylist() if r["segment"] == segment)
    assert f"<p>{members:,} members.</p>" in html
    # Channel use: the share of members with an engaged email touch, against the base.
    ids = {
        r["customer_id"] for r in view.memberships(scheme).to_pylist() if r["segment"] == segment
    }
    engaged = [
        (r["customer_id"] in ids, r["engaged_email"] > 0)
        for r in view.customer_scores().select(["customer_id", "engaged_email"]).to_pylist()
    ]
    channel = next(
        c for c in segment_page(view, scheme, segment)["charts"] if c.chart_id == "channel-use"
    )
    members_trace, base_trace = json.loads(channel.figure_json)["data"]
    email = members_trace["x"].index("email")
    assert members_trace["y"][email] == pytest.approx(
        sum(e for m, e in engaged if m) / sum(m for m, _ in engaged)
    )
    assert base_trace["y"][email] == pytest.approx(sum(e for _, e in engaged) / len(engaged))


def test_segment_page_of_a_run_without_an_earlier_run_has_no_migration(
    demo: dict[str, Any], client: TestClient
) -> None:
    first = demo["project"].runs.get(demo["first"])
    segment = first.table("segment_sizes").to_pylist()[0]
    response = client.get(_segment_url(segment["scheme"], segment["segment"], demo["first"]))
    assert response.status_code == 200
    assert "no earlier run to compare with" in response.text
    assert 'id="migration"' not in response.text
    assert 'id="clv-histogram"' in response.text


def test_migration_page_compares_with_the_previous_run(
    demo: dict[str, Any], client: TestClient
) -> None:
    view = _latest(demo)
    diff = demo["project"].runs.diff(demo["first"], demo["second"])
    response = client.get("/migration")
    assert response.status_code == 200
    html = response.text
    assert f"From run <code>{demo['first']}</code>" in html
    assert f"Scheme {diff.kpi_scheme}</h2>" in html
    assert 'id="migration-sankey"' in html
    sizes = diff.schemes[diff.kpi_scheme].sizes.to_pylist()
    for row in sizes:
        change = f"+{row['change']:,}" if row["change"] > 0 else f"{row['change']:,}"
        cells = f'<td class="num">{row["before"]:,}</td><td class="num">{row["after"]:,}</td>'
        assert f'<th scope="row">{row["segment"]}</th>{cells}<td class="num">{change}</td>' in html
    other = next(s for s in view.info.schemes if s != diff.kpi_scheme)
    response = client.get(f"/migration?scheme={quote(other)}&before={demo['first']}")
    assert response.status_code == 200
    assert f"Scheme {other}</h2>" in response.text
    # The first run has nothing before it; an unknown earlier run or scheme is a 404.
    response = client.get(f"/migration?run={demo['first']}")
    assert response.status_code == 200
    assert "has no earlier complete run to compare with" in response.text
    assert client.get("/migration?before=20000101T000000Z-000000").status_code == 404
    assert client.get(f"/migration?before={demo['second']}").status_code == 404
    assert client.get("/migration?scheme=no-such-scheme").status_code == 404


def test_unknown_segment_scheme_and_run_are_404(client: TestClient) -> None:
    for url in (
        "/segments/clusters/no-such-segment",
        "/segments/no-such-scheme/x",
        "/?run=20000101T000000Z-000000",
        "/models?run=nope",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "Not found" in response.text
    assert client.get("/static/no-such-file.js").status_code == 404


def test_models_page_parameters_intervals_match_the_run_report(
    demo: dict[str, Any], client: TestClient
) -> None:
    view = _latest(demo)
    response = client.get("/models")
    assert response.status_code == 200
    html = response.text
    for chart in ("frequency-histogram", "holdout-tracking"):
        assert f'id="{chart}"' in html
    transaction = view.models()["clv_transaction_model"]
    assert transaction["type"] in html
    for name in transaction["params"]:
        assert f'<th scope="row">{name}</th>' in html
    # The page's delta-method intervals are the ones the run's report computed.
    reported = view.report()["clv"]["confidence_intervals"]
    page = models_page(view)
    table = next(m for m in page["models"] if m["name"] == "clv_transaction_model")
    for row in table["parameters"]:
        assert row["lower"] == pytest.approx(reported[row["name"]][0], rel=1e-9)
        assert row["upper"] == pytest.approx(reported[row["name"]][1], rel=1e-9)


def test_pages_load_nothing_from_outside(client: TestClient) -> None:
    html = client.get("/").text
    sources = re.findall(r"(?:src|href)=\"([^\"]+)\"", html)
    assert "/static/plotly.min.js" in sources
    assert all(s.startswith(("/", "#")) for s in sources), sources
    response = client.get("/static/plotly.min.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert len(response.content) > 1_000_000  # the whole bundle, not a loader


def test_a_store_without_a_run_says_so(tmp_path: Path) -> None:
    config = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=tmp_path)
    with Project(config) as project:
        client = TestClient(create_dashboard_app(project))
        for url in ("/", "/segments", "/migration", "/models", "/segments/a/b"):
            response = client.get(url)
            assert response.status_code == 200, url
            assert "No complete run yet" in response.text


def test_a_run_without_clv_models_or_kpis_still_shows_every_page(tmp_path: Path) -> None:
    """Two one-order customers: no CLV model is fitted, no KPI target is set."""
    (tmp_path / "o.csv").write_text(
        "order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n2,b,2024-01-09,7\n"
    )
    config = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=tmp_path)
    with Project(config) as project:
        project.run()
        client = TestClient(create_dashboard_app(project))
        overview = client.get("/")
        assert overview.status_code == 200
        assert "This run has no KPI targets" in overview.text
        segments = client.get("/segments?scheme=lifecycle")
        assert segments.status_code == 200
        assert _segment_url("lifecycle", "new") in segments.text
        segment = client.get(_segment_url("lifecycle", "new"))
        assert segment.status_code == 200
        assert 'id="profile-index"' in segment.text
        assert 'id="clv-histogram"' not in segment.text
        models = client.get("/models")
        assert models.status_code == 200
        assert "holds no CLV model" in models.text


def test_a_run_in_another_process_writes_while_the_dashboard_is_up(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    """The dashboard holds no store connection between requests, and shows the new run."""
    folder = tmp_path / "copy"
    shutil.copytree(demo["config"].parent, folder)
    config = folder / "segvalue.yaml"
    client = TestClient(create_dashboard_app(Project.from_yaml(config)))
    assert demo["second"] in client.get("/").text
    assert client.get("/segments").status_code == 200
    code = "import sys; from segvalue.project import Project; "
    code += "print(Project.from_yaml(sys.argv[1]).run().run_id)"
    done = subprocess.run(
        [sys.executable, "-c", code, str(config)],
        check=False,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    new_run = done.stdout.strip().splitlines()[-1]
    html = client.get("/").text
    assert f"Run <code>{new_run}</code>" in html
    assert client.get(f"/?run={demo['second']}").status_code == 200


def test_the_router_mounts_into_another_app(demo: dict[str, Any]) -> None:
    from fastapi import FastAPI

    app = FastAPI()
    app.include_router(dashboard_router(demo["project"]))
    assert TestClient(app).get("/models").status_code == 200


def test_import_segvalue_web_loads_no_web_library() -> None:
    code = (
        "import sys, segvalue, segvalue.project, segvalue.web; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('fastapi', 'jinja2', 'plotly', 'starlette', 'uvicorn')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ---------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def served(demo: dict[str, Any], serve_app: Any) -> Iterator[str]:
    with serve_app(create_dashboard_app(demo["project"])) as url:
        yield url


class _Watched:
    """A page with its console errors, page errors and requests recorded."""

    def __init__(self, browser: Any, base: str, **context: Any) -> None:
        self.base = base
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("request", lambda r: self.requests.append(r.url))

    def open(self, path: str) -> Any:
        response = self.page.goto(self.base + path, wait_until="load")
        assert response is not None
        assert response.status == 200, path
        return self.page

    def check_clean(self) -> None:
        assert self.errors == []
        outside = [u for u in self.requests if not u.startswith(self.base + "/")]
        assert outside == [], f"requests outside the dashboard: {outside}"
        assert all(u.startswith("http://127.0.0.1:") for u in self.requests)

    def close(self) -> None:
        self.context.close()


def _pages(demo: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(name, path, charts on the page) of every page of the latest run."""
    view = _latest(demo)
    moved = _moved_segment(view)
    return [
        ("overview", "/", len({r["kpi"] for r in view.kpi_status().to_pylist()})),
        ("segments", "/segments", 0),
        ("segments-rfm", "/segments?scheme=rfm", 1),  # the RFM heat map
        ("segment", _segment_url(*moved), 4),
        ("segment-first-run", _segment_url(*moved, demo["first"]), 3),
        ("migration", "/migration", 1),
        ("models", "/models", 2),
    ]


def test_every_page_renders_its_charts_in_chromium(
    demo: dict[str, Any], served: str, browser: Any, tmp_path: Path
) -> None:
    watched = _Watched(browser, served, viewport={"width": 1280, "height": 900})
    try:
        for name, path, expected in _pages(demo):
            page = watched.open(path)
            charts = page.locator(".chart")
            assert charts.count() == expected, name
            for index in range(expected):
                chart = charts.nth(index)
                chart.locator(".main-svg").first.wait_for(state="attached", timeout=15_000)
                # Drawn, not an empty frame: a bar, line, point, Sankey band or heat map image.
                drawn = chart.locator(".trace, .point, .bars path, .sankey-link, .hm image")
                assert drawn.count() > 0, name
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
            assert (tmp_path / f"{name}.png").stat().st_size > 0
        watched.check_clean()
    finally:
        watched.close()


def test_sorting_a_column_reorders_the_table(
    demo: dict[str, Any], served: str, browser: Any, tmp_path: Path
) -> None:
    watched = _Watched(browser, served)
    try:
        page = watched.open("/segments")
        column = "table#segments-table tbody tr td:nth-child(5)"  # CLV (mean)

        def clv_values() -> list[float]:
            return [
                float(v)
                for v in page.locator(column).evaluate_all(
                    "cells => cells.map(c => c.dataset.value)"
                )
            ]

        before = clv_values()
        assert len(before) > 2
        assert before != sorted(before), "the table starts sorted by size, not CLV"
        button = page.get_by_role("button", name="CLV (mean)")
        button.click()
        assert clv_values() == sorted(before)
        header = page.locator("th", has=button)
        assert header.get_attribute("aria-sort") == "ascending"
        # Keyboard: the header button takes focus and Enter sorts the other way.
        button.focus()
        page.keyboard.press("Enter")
        assert clv_values() == sorted(before, reverse=True)
        assert header.get_attribute("aria-sort") == "descending"
        page.screenshot(path=str(tmp_path / "segments-sorted.png"), full_page=True)
        watched.check_clean()
    finally:
        watched.close()


def test_pages_fit_a_phone_screen(
    demo: dict[str, Any], served: str, browser: Any, tmp_path: Path
) -> None:
    watched = _Watched(
        browser,
        served,
        viewport={"width": 390, "height": 844},
        device_scale_factor=2,
        is_mobile=True,
        has_touch=True,
    )
    try:
        for name, path, expected in _pages(demo):
            page = watched.open(path)
            if expected:
                page.locator(".chart .main-svg").first.wait_for(state="attached")
            # Nothing wider than the screen but the table's own scrolling box.
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} overflows a phone screen by {overflow}px"
            page.screenshot(path=str(tmp_path / f"phone-{name}.png"), full_page=True)
        watched.check_clean()
    finally:
        watched.close()


def test_keyboard_reaches_the_skip_link_and_the_navigation(served: str, browser: Any) -> None:
    watched = _Watched(browser, served)
    try:
        page = watched.open("/")
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent.trim()")
        assert focused == "Skip to content"
        page.keyboard.press("Tab")
        page.keyboard.press("Tab")
        assert page.evaluate("document.activeElement.getAttribute('href')").startswith("/")
        assert page.locator("header").count() == 1
        assert page.locator("main#main").count() == 1
        assert page.locator("nav[aria-label='Dashboard pages']").count() == 1
        assert page.locator("label[for='run-select']").count() == 1
        watched.check_clean()
    finally:
        watched.close()
