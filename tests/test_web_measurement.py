"""The dashboard's measurement pages: attribution, channel effectiveness, experiments.

In process on a 1,500-customer demo run (its measurement: attribution per cluster with
six models, channel roles, the retention test's lift per cluster and its uplift model),
each page's numbers against ``RunView.measurement()``; a run without a measurement and
unknown segments, experiments and outcomes; then each page in Debian's headless
Chromium through Playwright: its charts drawn, no console error, nothing loaded from
outside the dashboard, nothing wider than a phone screen.
"""

from __future__ import annotations

import html
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit

import pytest
from fastapi.testclient import TestClient
from markupsafe import escape

from segvalue.config import parse_config
from segvalue.pipeline import run_demo
from segvalue.project import Project, RunView
from segvalue.web import create_dashboard_app
from segvalue.web import pages as page_builders
from segvalue.web.app import format_number, format_percent

ALL = "all customers"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Project]:
    """A demo run with every part of the measurement (its scheme: clusters)."""
    _, config_path = run_demo(
        n_customers=1_500, seed=7, out_dir=tmp_path_factory.mktemp("web-measurement") / "demo"
    )
    with Project.from_yaml(config_path) as project:
        yield project


@pytest.fixture(scope="module")
def view(demo: Project) -> RunView:
    return demo.runs.require_latest()


@pytest.fixture(scope="module")
def measured(view: RunView) -> dict[str, Any]:
    found = view.measurement()
    # The demo measures everything these tests read.
    assert found["details"]["scheme"] == "clusters"
    assert found["attribution"] and found["channels"] and found["lift"] and found["uplift"]
    return found


@pytest.fixture(scope="module")
def client(demo: Project) -> TestClient:
    return TestClient(create_dashboard_app(demo))


def _row_cells(page: str, header: str, table_id: str) -> list[list[str]]:
    """The cells (the words of their text) of the row headed ``header`` in the table
    ``table_id``."""
    table = re.search(rf'<table[^>]* id="{table_id}">(.*?)</table>', page, re.S)
    assert table is not None, table_id
    row = re.search(
        rf'<tr[^>]*>\s*<th scope="row"[^>]*>(?:<a [^>]*>)?{re.escape(str(escape(header)))}'
        rf"(?:</a>)?</th>(.*?)</tr>",
        table.group(1),
        re.S,
    )
    assert row is not None, (table_id, header)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    return [html.unescape(re.sub(r"<[^>]+>", " ", c)).split() for c in cells]


def _words(cell: list[str]) -> str:
    return " ".join(cell)


def _segments(rows: list[dict[str, Any]]) -> list[str]:
    return sorted({str(r["segment"]) for r in rows} - {ALL})


# ---------------------------------------------------------------- attribution


def test_attribution_page_compares_every_model_per_channel(
    client: TestClient, measured: dict[str, Any]
) -> None:
    details = measured["details"]
    response = client.get("/attribution")
    assert response.status_code == 200
    page = response.text
    models = details["models"]
    assert "markov" in models and "shapley" in models
    header = re.search(r'id="attribution-shares-table">.*?<thead>(.*?)</thead>', page, re.S)
    assert header is not None
    assert re.findall(r'<th scope="col" class="num">([\w-]+)', header.group(1)) == models
    rows = [r for r in measured["attribution"] if r["segment"] == ALL]
    for channel in details["channels"]:
        shares = _row_cells(page, channel, "attribution-shares-table")
        values = _row_cells(page, channel, "attribution-values-table")
        for model, share, value in zip(models, shares, values, strict=True):
            row = next(r for r in rows if r["model"] == model and r["channel"] == channel)
            assert _words(share) == format_percent(row["share"]), (channel, model)
            assert value[0] == format_number(row["value"]), (channel, model)
        markov = next(r for r in rows if r["model"] == "markov" and r["channel"] == channel)
        removal = _row_cells(page, channel, "removal-table")
        assert _words(removal[0]) == format_percent(markov["removal_effect"])
    # The facts of the journeys and what a conversion is.
    for label, key in (
        ("Journeys", "journeys"),
        ("Converting journeys", "converting_journeys"),
        (
            "Conversions without a touch in the lookback (not credited)",
            "conversions_without_touches",
        ),
    ):
        assert f"<dt>{label}</dt><dd>{format_number(details[key])}</dd>" in page
    assert f"<dd>{format_number(details['lookback_days'])} days</dd>" in page
    assert "A conversion is a touchpoint whose event is a conversion" in page
    assert 'id="attribution-shares"' in page  # the chart
    # A link per segment of the measured scheme, the whole base first.
    links = re.findall(r'href="/attribution\?segment=([^&"]+)&amp;run=', page)
    assert links == [quote(ALL), *_segments(measured["attribution"])]


def test_attribution_of_one_segment_and_an_unknown_one(
    client: TestClient, measured: dict[str, Any]
) -> None:
    segment = _segments(measured["attribution"])[0]
    page = client.get(f"/attribution?segment={quote(segment)}").text
    assert f'<h2>{segment} <span class="sub">' in page
    rows = [r for r in measured["attribution"] if r["segment"] == segment]
    models = measured["details"]["models"]
    share = {(r["model"], r["channel"]): r["share"] for r in rows}
    for channel in {r["channel"] for r in rows}:
        shares = _row_cells(page, channel, "attribution-shares-table")
        expected = [format_percent(share[model, channel]) for model in models]
        assert [_words(c) for c in shares] == expected, channel
    response = client.get("/attribution?segment=no-such-segment")
    assert response.status_code == 404
    assert "Not found" in response.text
    assert "no segment &#39;no-such-segment&#39;" in response.text


# ---------------------------------------------------------------- channels


def test_channels_page_shows_effectiveness_intervals_and_roles(
    client: TestClient, measured: dict[str, Any]
) -> None:
    response = client.get("/channels")
    assert response.status_code == 200
    page = response.text
    assert "<strong>Observational:</strong>" in page
    rows = sorted((r for r in measured["channels"] if r["segment"] == ALL), key=lambda r: r["rank"])
    listed = re.findall(
        r'<tr class="channel-row">\s*<th scope="row" rowspan="2">([^<]+)</th>', page
    )
    assert listed == [r["channel"] for r in rows]  # best role first
    for row in rows:
        cells = _row_cells(page, row["channel"], "channels-table")
        assert _words(cells[0]) == row["role"]
        assert _words(cells[1]) == format_number(row["reached"])
        rate = [format_percent(row[f"conversion_rate{end}"]) for end in ("", "_lower", "_upper")]
        assert _words(cells[3]) == f"{rate[0]} {rate[1]} to {rate[2]}"
        roas = [format_number(row[f"roas{end}"]) for end in ("", "_lower", "_upper")]
        assert _words(cells[7]) == f"{roas[0]} {roas[1]} to {roas[2]}"
        cost = [format_number(row[f"cost_per_conversion{end}"]) for end in ("", "_lower", "_upper")]
        assert _words(cells[6]) == f"{cost[0]} {cost[1]} to {cost[2]}"
        assert f"Why {row['role']}: {escape(row['reason'])}</td>" in page
    for chart in ("channel-conversion-rate", "channel-roas"):
        assert f'id="{chart}"' in page
    # The matrix: every segment's role on every channel.
    channels = measured["details"]["channels"]
    for segment in [ALL, *_segments(measured["channels"])]:
        roles = [_words(c) for c in _row_cells(page, segment, "roles-table")]
        expected = {
            r["channel"]: r["role"] for r in measured["channels"] if r["segment"] == segment
        }
        assert roles == [expected.get(c, "–") for c in channels], segment


def test_channels_of_one_segment_and_an_unknown_one(
    client: TestClient, measured: dict[str, Any]
) -> None:
    segment = _segments(measured["channels"])[-1]
    page = client.get(f"/channels?segment={quote(segment)}").text
    assert f"<h2>{segment}</h2>" in page
    for row in (r for r in measured["channels"] if r["segment"] == segment):
        assert _words(_row_cells(page, row["channel"], "channels-table")[0]) == row["role"]
    assert client.get("/channels?segment=no-such-segment").status_code == 404


# ---------------------------------------------------------------- experiments


def test_experiments_page_shows_lift_per_segment_and_the_uplift_model(
    client: TestClient, measured: dict[str, Any]
) -> None:
    details = measured["details"]
    experiment = details["experiments"][0]
    outcome = details["priority_lift"]["outcome"]
    response = client.get("/experiments")
    assert response.status_code == 200
    page = response.text
    assert f"<h2>{experiment}</h2>" in page
    rows = [
        r for r in measured["lift"] if r["experiment_id"] == experiment and r["outcome"] == outcome
    ]
    assert rows and all(r["binary"] for r in rows)
    for row in rows:
        cells = _row_cells(page, row["segment"], "lift-table-0")
        assert _words(cells[0]) == format_number(row["n_treated"])
        assert _words(cells[4]) == format_percent(row["lift"])
        assert (
            _words(cells[5])
            == f"{format_percent(row['ci_low'])} to {format_percent(row['ci_high'])}"
        )
        assert _words(cells[9]) == format_number(row["p_adjusted"])
        assert _words(cells[6]) == ("under-powered" if row["under_powered"] else "–")
    weak = sum(r["under_powered"] for r in rows)
    assert weak > 0, "the demo's test is too small for some clusters"
    assert page.count('<strong class="badge badge-warning">under-powered</strong>') == weak
    assert page.count('<tr class="under-powered">') == weak
    assert f"{weak} under-powered result" in page
    assert 'id="lift-0"' in page
    # The uplift model: its areas with their intervals, uplift at k and the Qini curves.
    uplift = measured["uplift"][experiment]
    low, high = uplift["qini_auc_ci"]
    qini = f'{format_number(uplift["qini_auc"])} <span class="sub">'
    assert f"<dt>Qini AUC</dt><dd>{qini}({format_number(low)} to {format_number(high)})" in page
    assert f"<dt>Uplift AUC</dt><dd>{format_number(uplift['uplift_auc'])}" in page
    for share, value in uplift["uplift_at"].items():
        top = _row_cells(page, format_percent(float(share)), "uplift-at-table")
        assert _words(top[0]) == format_percent(value)
    assert 'id="qini"' in page
    assert set(uplift["curves"]) == {"model", "perfect", "random"}


def test_a_money_outcome_has_its_roi(client: TestClient, measured: dict[str, Any]) -> None:
    experiment = measured["details"]["experiments"][0]
    rows = [r for r in measured["lift"] if r["outcome"] == "revenue" and r["roi"] is not None]
    assert rows, "the demo's revenue outcome has a contact cost"
    page = client.get(f"/experiments?experiment={quote(experiment)}&outcome=revenue").text
    assert '<th scope="col" class="num">ROI</th>' in page
    for row in rows:
        cells = _row_cells(page, row["segment"], "lift-table-0")
        assert _words(cells[4]) == format_number(row["lift"])  # money: not a percentage
        roi = [format_number(row[f"roi{end}"]) for end in ("", "_lower", "_upper")]
        assert _words(cells[-1]) == f"{roi[0]} {roi[1]} to {roi[2]}"


def test_unknown_experiment_outcome_and_segments_are_404_and_escaped(client: TestClient) -> None:
    for url in (
        "/experiments?experiment=no-such-experiment",
        "/experiments?outcome=no-such-outcome",
        "/channels?segment=%3Cscript%3Ealert(1)%3C/script%3E",
        "/attribution?segment=%3Cscript%3Ealert(1)%3C/script%3E",
        "/attribution?run=20000101T000000Z-000000",
    ):
        response = client.get(url)
        assert response.status_code == 404, url
        assert "Not found" in response.text
        assert "<script>alert" not in response.text


def test_navigation_and_overview_link_the_measurement_pages(
    client: TestClient, view: RunView
) -> None:
    overview = client.get("/").text
    for path, label in (
        ("/attribution", "Attribution"),
        ("/channels", "Channels"),
        ("/experiments", "Experiments"),
    ):
        # In the navigation and in the overview's measurement panel.
        assert overview.count(f'<a href="{path}?run={view.run_id}"') == 2, path
        page = client.get(path).text
        assert re.search(rf'href="{path}\?run={view.run_id}"\s+aria-current="page">{label}<', page)


def test_behind_the_login_the_pages_redirect_to_it(demo: Project) -> None:
    client = TestClient(create_dashboard_app(demo, login=True), follow_redirects=False)
    for path in (
        "/attribution",
        "/channels?segment=cluster_1",
        "/experiments?experiment=EXP-2025-RETENTION&outcome=revenue",
    ):
        response = client.get(path)
        assert response.status_code == 303, path
        location = urlsplit(response.headers["location"])
        assert location.path == "/login"
        assert parse_qs(location.query)["next"] == [path]


def test_a_run_without_measurement_shows_the_missing_page(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text(
        "order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n2,b,2024-01-09,7\n"
    )
    config = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=tmp_path)
    with Project(config) as project:
        run = project.run()
        client = TestClient(create_dashboard_app(project))
        for url in ("/attribution", "/channels?segment=x", "/experiments"):
            response = client.get(url)
            assert response.status_code == 200, url
            assert "<h1>Not in this run</h1>" in response.text
            assert f"run {run.run_id} holds no measurement" in response.text
        assert "measurement-heading" not in client.get("/").text  # no links to them


def test_prepared_measurement_pages_are_not_built_again(
    demo: Project, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = create_dashboard_app(demo, prepare=True)
    for thread in threading.enumerate():
        if thread.name == "segvalue-dashboard-prepare":
            thread.join(120)
            assert not thread.is_alive(), "the preparation did not finish"
    calls: list[str] = []
    for name in ("attribution_page", "channels_page", "experiments_page"):
        original = getattr(page_builders, name)

        def counted(*args: Any, _name: str = name, _original: Any = original, **kw: Any) -> Any:
            calls.append(_name)
            return _original(*args, **kw)

        monkeypatch.setattr(page_builders, name, counted)
    client = TestClient(app)
    for path in ("/attribution", "/channels", "/experiments"):
        assert client.get(path).status_code == 200, path
    assert calls == []
    assert client.get("/channels?segment=cluster_1").status_code == 200
    assert calls == ["channels_page"]  # another segment: built when asked


# ---------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def served(demo: Project, serve_app: Any) -> Iterator[str]:
    with serve_app(create_dashboard_app(demo)) as url:
        yield url


def _browser_pages(measured: dict[str, Any]) -> list[tuple[str, str, int]]:
    """(name, path, charts on the page) of each measurement page."""
    segment = _segments(measured["channels"])[0]
    experiment = quote(measured["details"]["experiments"][0])
    return [
        ("attribution", "/attribution", 1),
        ("attribution-segment", f"/attribution?segment={quote(segment)}", 1),
        ("channels", "/channels", 2),  # conversion rate and ROAS
        ("channels-segment", f"/channels?segment={quote(segment)}", 2),
        ("experiments", "/experiments", 2),  # the lift forest plot and the Qini curves
        ("experiments-revenue", f"/experiments?experiment={experiment}&outcome=revenue", 2),
    ]


class _Watched:
    """A browser page with its console errors, page errors and requests recorded."""

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

    def close(self) -> None:
        self.context.close()


def test_measurement_pages_render_their_charts_in_chromium(
    measured: dict[str, Any], served: str, browser: Any, tmp_path: Path
) -> None:
    watched = _Watched(browser, served, viewport={"width": 1280, "height": 900})
    try:
        for name, path, expected in _browser_pages(measured):
            page = watched.open(path)
            charts = page.locator(".chart")
            assert charts.count() == expected, name
            for index in range(expected):
                chart = charts.nth(index)
                chart.locator(".main-svg").first.wait_for(state="attached", timeout=15_000)
                # Drawn, not an empty frame: bars, points or lines.
                drawn = chart.locator(".trace, .point, .bars path")
                assert drawn.count() > 0, name
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        # The forest plot has a point per segment, with its interval bar.
        page = watched.open("/experiments")
        forest = page.locator("#lift-0")
        forest.locator(".main-svg").first.wait_for(state="attached", timeout=15_000)
        assert forest.locator(".point").count() == 1 + len(_segments(measured["lift"]))
        assert forest.locator(".errorbar").count() == 1 + len(_segments(measured["lift"]))
        # The Qini chart: the model, perfect and random lines.
        qini = page.locator("#qini")
        assert qini.locator(".scatterlayer .trace").count() == 3
        watched.check_clean()
    finally:
        watched.close()


def test_measurement_pages_fit_a_phone_screen(
    measured: dict[str, Any], served: str, browser: Any, tmp_path: Path
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
        for name, path, _ in _browser_pages(measured):
            page = watched.open(path)
            page.locator(".chart .main-svg").first.wait_for(state="attached")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} overflows a phone screen by {overflow}px"
            page.screenshot(path=str(tmp_path / f"phone-{name}.png"), full_page=True)
        watched.check_clean()
    finally:
        watched.close()
