"""The dashboard's budget page (plan, response curves, what-if form) and the RFM heat map.

In process through ``create_dashboard_app`` on a 1,500-customer demo (curves fitted from
its ``channel_spend``) and on configurations with explicit curves or no budget data;
then in Debian's Chromium through Playwright (never a browser Playwright downloads): the
what-if form is filled and submitted, the charts draw, and the page loads nothing but the
served dashboard.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from segvalue.config import parse_config
from segvalue.pipeline import run_demo
from segvalue.project import Project
from segvalue.web import create_dashboard_app
from segvalue.web.app import format_number

# The demo's budget items (channels of its channel_spend).
CHANNELS = ["app_push", "email", "onsite", "paid_social", "search_ads"]
MOVE = {"from": "paid_social", "to": "email", "share": "0.2"}
CURVES: list[dict[str, Any]] = [
    {"name": "a", "form": "michaelis_menten", "beta": 1000, "k": 200, "current": 300},
    {"name": "b", "form": "michaelis_menten", "beta": 600, "k": 100, "current": 50},
]


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    folder = tmp_path_factory.mktemp("budget") / "demo"
    run, config_path = run_demo(n_customers=1_500, seed=7, out_dir=folder)
    with Project.from_yaml(config_path) as project:
        yield {"config": config_path, "project": project, "run": run.run_id}


@pytest.fixture(scope="module")
def client(demo: dict[str, Any]) -> TestClient:
    return TestClient(create_dashboard_app(demo["project"]))


def _result_value(html: str) -> float:
    found = re.search(r'id="what-if-result"[^>]*data-change-value="([^"]+)"', html)
    assert found is not None, "no what-if result on the page"
    return float(found.group(1))


def _alert(html: str) -> str:
    found = re.search(r'id="what-if-error">(.*?)</p>', html, re.S)
    assert found is not None, "no error message on the page"
    return unescape(found.group(1))


def _fact(html: str, label: str) -> str:
    found = re.search(rf"<dt>{label}</dt><dd>(.*?)</dd>", html, re.S)
    assert found is not None, label
    return re.sub(r"<[^>]+>", "", found.group(1)).strip()


# ---------------------------------------------------------------- in process


def test_budget_page_shows_the_plan_of_the_configuration(
    demo: dict[str, Any], client: TestClient
) -> None:
    plan, _ = demo["project"].budget()
    response = client.get("/budget")
    assert response.status_code == 200
    html = response.text
    assert plan.objective == "profit"  # the demo's config sets no objective: the default
    assert _fact(html, "Objective") == "profit"
    assert _fact(html, "Total") == format_number(plan.total)
    change = plan.expected_outcome - plan.current_outcome
    assert change > 0  # the demo's current allocation is not the optimum
    assert _fact(html, "Expected profit") == (
        f"{format_number(plan.expected_outcome)} (+{format_number(change)} against now)"
    )
    response_change = plan.expected_response - plan.current_response
    assert _fact(html, "Expected response").startswith(format_number(plan.expected_response))
    assert format_number(abs(response_change)) in _fact(html, "Expected response")
    # Every item, current and planned, in the table and the grouped bar chart.
    for item, planned in plan.allocation.items():
        row = re.search(rf'<th scope="row">{item}</th>(.*?)</tr>', html, re.S)
        assert row is not None, item
        cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(1))
        assert cells[:2] == [format_number(plan.current[item]), format_number(planned)]
    assert 'id="budget-allocation"' in html
    figure = re.search(r'id="budget-allocation-figure">(.*?)</script>', html, re.S)
    assert figure is not None
    assert '"name":"current"' in figure.group(1) and '"name":"planned"' in figure.group(1)
    # The curves fitted from channel_spend are drawn (see the next test).
    assert 'id="budget-curves"' in html and 'id="budget-curve-fits"' in html
    # The nav links to the page, and marks it as the current one.
    assert re.search(r'<a href="/budget"\s+aria-current="page">Budget</a>', html)
    assert '<a href="/budget?run=' in client.get("/").text


def test_fitted_curves_are_charted_with_current_and_planned_spend_and_their_fit(
    demo: dict[str, Any], client: TestClient
) -> None:
    plan, _ = demo["project"].budget()
    curves = demo["project"].budget_curves()
    assert sorted(c.item.name for c in curves) == sorted(plan.allocation) == CHANNELS
    html = client.get("/budget").text
    figure = re.search(r'id="budget-curves-figure">(.*?)</script>', html, re.S)
    assert figure is not None
    traces = json.loads(figure.group(1))["data"]
    lines = {t["name"]: t for t in traces if t["mode"] == "lines"}
    marks = {t["legendgroup"]: t for t in traces if t["mode"] == "markers"}
    assert sorted(lines) == sorted(marks) == CHANNELS  # one curve per channel
    for curve in curves:
        fit, name = curve.fit, curve.item.name
        assert fit is not None and fit.channel == name and fit.n_periods == 156
        p = fit.params

        def fitted(spend: float, p: dict[str, float] = p) -> float:
            # The steady-state Hill curve of the fit (value 1: revenue curves).
            return p["beta"] * spend ** p["slope"] / (p["k"] ** p["slope"] + spend ** p["slope"])

        line = lines[name]
        assert line["y"][0] == 0.0 and line["x"][-1] >= plan.allocation[name]
        middle = len(line["x"]) // 2
        assert line["y"][middle] == pytest.approx(fitted(line["x"][middle]), rel=1e-9)
        assert marks[name]["x"] == pytest.approx([plan.current[name], plan.allocation[name]])
        assert marks[name]["y"] == pytest.approx([fitted(x) for x in marks[name]["x"]], rel=1e-9)
        # The fit's quality in the table: R², Durbin-Watson, periods, observed spend.
        row = re.search(rf'<tr data-item="{name}">(.*?)</tr>', html, re.S)
        assert row is not None, name
        cells = re.findall(r'<td class="num">([^<]*)</td>', row.group(1))
        low, high = fit.spend_range
        assert cells == [
            format_number(fit.r_squared),
            format_number(fit.durbin_watson),
            "156",
            f"{format_number(low)} to {format_number(high)}",
        ]
        beta_low, beta_high = fit.intervals["beta"]
        assert (
            f'beta</span> {format_number(p["beta"])} <span class="sub">'
            f"({format_number(beta_low)} to {format_number(beta_high)})"
        ) in row.group(1)
        assert 0.8 < fit.r_squared <= 1  # the demo's channels follow their curves
    assert "The curves are fitted to each channel" in html
    # JSON-ready, for other faces.
    as_dict = curves[0].to_dict()
    assert as_dict["source"] == "fitted" and as_dict["fit"]["n_periods"] == 156
    assert set(as_dict["fit"]["params"]) == {"beta", "k", "slope", "theta"}


def test_what_if_form_shows_project_what_if_with_its_interval(
    demo: dict[str, Any], client: TestClient
) -> None:
    expected = demo["project"].what_if("paid_social:email:0.2")
    response = client.get("/budget", params=MOVE)
    assert response.status_code == 200
    html = response.text
    value = _result_value(html)
    assert value == expected.change_value  # the very number, not a rounding of it
    assert value != 0.0
    assert expected.interval is not None  # fitted curves carry their uncertainty
    low, high = expected.interval
    assert low < expected.change_value < high
    assert f"95% interval {format_number(low)} to {format_number(high)}" in html
    # The form keeps what was asked.
    assert re.search(r'<option value="paid_social" selected>', html.split('id="move-to"')[0])
    assert re.search(r'<option value="email" selected>', html.split('id="move-to"')[1])
    assert 'name="share" type="number"' in html and 'value="0.2"' in html
    # Another move, another answer (the page does not echo a kept one).
    other = client.get("/budget", params=MOVE | {"share": "0.5"})
    assert (
        _result_value(other.text) == demo["project"].what_if("paid_social:email:0.5").change_value
    )
    assert _result_value(other.text) != value


@pytest.mark.parametrize(
    ("query", "message"),
    [
        (MOVE | {"share": "lots"}, "the share to move must be a number from 0 to 1, got 'lots'"),
        (MOVE | {"share": "1.5"}, "the share to move must be between 0 and 1, got 1.5"),
        (MOVE | {"share": "nan"}, "the share to move must be between 0 and 1, got nan"),
        (MOVE | {"from": "billboards"}, "unknown 'from' item 'billboards'"),
        (MOVE | {"to": "<b>x</b>"}, "unknown 'to' item '<b>x</b>'"),
        ({"from": "paid_social", "to": "email"}, "give the item to move spend from"),
        (MOVE | {"share": ""}, "give the item to move spend from"),
    ],
)
def test_bad_what_if_input_is_a_400_page_with_the_message(
    client: TestClient, query: dict[str, str], message: str
) -> None:
    response = client.get("/budget", params=query)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("text/html")
    assert message in _alert(response.text)
    assert 'role="alert"' in response.text
    assert "Traceback" not in response.text
    assert "<b>x</b>" not in response.text  # escaped, never markup
    assert 'id="what-if-result"' not in response.text
    # Still the whole page: the plan and the form to try again.
    assert 'id="budget-allocation"' in response.text and 'id="move-share"' in response.text


def test_explicit_curves_are_charted_and_their_what_if_has_no_interval(tmp_path: Path) -> None:
    config = parse_config(
        {
            "sources": {"orders": {"path": "o.csv"}},
            "budget": {"objective": "revenue", "total": 400, "items": CURVES},
        },
        base_dir=tmp_path,
    )
    project = Project(config)
    plan, _ = project.budget()
    with TestClient(create_dashboard_app(project)) as client:
        page = client.get("/budget")  # no run in the store: the budget needs none
        answer = client.get("/budget", params={"from": "a", "to": "b", "share": "0.2"})
    assert page.status_code == 200 and answer.status_code == 200
    assert _fact(page.text, "Objective") == "revenue"
    assert _fact(page.text, "Total") == "400"
    figure = re.search(r'id="budget-curves-figure">(.*?)</script>', page.text, re.S)
    assert figure is not None
    # One line per item and its current and planned spend marked on the curve.
    traces = json.loads(figure.group(1))["data"]
    assert [t["name"] for t in traces if t["mode"] == "lines"] == ["a", "b"]
    marks = {t["legendgroup"]: t for t in traces if t["mode"] == "markers"}
    for item in CURVES:
        name = str(item["name"])
        assert marks[name]["x"] == pytest.approx([item["current"], plan.allocation[name]])
        beta, k = float(item["beta"]), float(item["k"])
        assert marks[name]["y"] == pytest.approx([beta * x / (k + x) for x in marks[name]["x"]])
    assert plan.allocation["a"] != 300  # the plan moved spend
    assert _result_value(answer.text) == project.what_if("a:b:0.2").change_value
    assert round(_result_value(answer.text), 3) == 59.74  # -54.545 on a, +114.286 on b
    assert "no interval: the curves carry no uncertainty" in answer.text
    # Their parameters in the table, without fit columns (nothing was fitted).
    assert "The curves are given in <code>budget.items</code>" in page.text
    table = re.search(r'id="budget-curve-fits">(.*?)</table>', page.text, re.S)
    assert table is not None
    assert '<span class="param-name">k</span> 200' in table.group(1)
    assert "Durbin-Watson" not in table.group(1) and "slope" not in table.group(1)
    assert [c.fit for c in project.budget_curves()] == [None, None]


def test_a_configuration_without_budget_data_says_so(tmp_path: Path) -> None:
    rows = "order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n2,b,2024-01-09,7\n"
    (tmp_path / "o.csv").write_text(rows)
    config = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=tmp_path)
    with Project(config) as project:
        project.run()
        with TestClient(create_dashboard_app(project)) as client:
            for query in ({}, MOVE):
                response = client.get("/budget", params=query)
                assert response.status_code == 200
                assert "no budget data" in response.text
                assert "budget.items" in response.text and "channel_spend" in response.text
                assert 'id="move-share"' not in response.text


def test_a_budget_that_cannot_be_planned_is_a_message_not_a_500(tmp_path: Path) -> None:
    pinned = [dict(item, pinned=True) for item in CURVES]  # 350 pinned against a total of 100
    config = parse_config(
        {"sources": {"orders": {"path": "o.csv"}}, "budget": {"total": 100, "items": pinned}},
        base_dir=tmp_path,
    )
    with TestClient(create_dashboard_app(Project(config))) as client:
        response = client.get("/budget")
    assert response.status_code == 200
    assert "The budget cannot be planned" in response.text
    assert "lower limits add up to 350" in unescape(response.text)


def test_rfm_heat_map_counts_every_customer_of_the_scheme(
    demo: dict[str, Any], client: TestClient
) -> None:
    view = demo["project"].runs.latest()
    sizes = {
        r["segment"]: r["customers"]
        for r in view.table("segment_sizes").to_pylist()
        if r["scheme"] == "rfm"
    }
    html = client.get("/segments", params={"scheme": "rfm"}).text
    figure = re.search(r'id="rfm-heatmap-figure">(.*?)</script>', html, re.S)
    assert figure is not None
    z = _heatmap_counts(figure.group(1))
    unscored = sizes.get("Others", 0)  # the scheme's unassigned: customers without a score
    assert sum(map(sum, z)) + unscored == sum(sizes.values()) == view.info.row_counts["customers"]
    # Every customer of a segment sits in the cells its rule allows.
    state = view.document("scorer")["schemes"]["rfm"]
    assert {"segment": "Lost", "fm": [1, 1], "r": [1, 1]} in state["segments"]
    for segment, (recency, frequency) in {"New Customers": (5, 1), "Lost": (1, 1)}.items():
        page = client.get(f"/segments/rfm/{segment}").text
        cells = _heatmap_counts(
            re.search(r'id="rfm-heatmap-figure">(.*?)</script>', page, re.S).group(1)  # type: ignore[union-attr]
        )
        # fm = 1 means f = m = 1 (fm is the rounded-up mean of f and m)
        assert cells[frequency - 1][recency - 1] == sizes[segment] > 0
        assert sum(map(sum, cells)) == sizes[segment]
    # Every segment's members only in cells some monetary score lets its rule (the first
    # that matches, in order) take; the segments' maps add up to the scheme's.
    bins = int(state["bins"])

    def segment_of(scores: dict[str, int]) -> str:
        scores = scores | {"fm": (scores["f"] + scores["m"] + 1) // 2}
        for rule in state["segments"]:
            spans = {key: rule[key] for key in ("r", "f", "m", "fm") if key in rule}
            if all(lo <= scores[key] <= hi for key, (lo, hi) in spans.items()):
                return str(rule["segment"])
        return str(state["unassigned"])

    together = [[0] * bins for _ in range(bins)]
    for segment in sizes:
        page = client.get(f"/segments/rfm/{quote(segment, safe='')}").text
        found = re.search(r'id="rfm-heatmap-figure">(.*?)</script>', page, re.S)
        if segment == state["unassigned"]:
            assert found is None or sum(map(sum, _heatmap_counts(found.group(1)))) == 0
            continue
        assert found is not None, segment
        for f, row in enumerate(_heatmap_counts(found.group(1)), start=1):
            for r, customers in enumerate(row, start=1):
                together[f - 1][r - 1] += customers
                allowed = any(
                    segment_of({"r": r, "f": f, "m": m}) == segment for m in range(1, bins + 1)
                )
                assert allowed or customers == 0, (segment, r, f)
    assert together == z
    # A scheme that is not RFM has no heat map.
    assert "rfm-heatmap" not in client.get("/segments", params={"scheme": "lifecycle"}).text


def _heatmap_counts(figure_json: str) -> list[list[int]]:
    figure = json.loads(figure_json)
    (trace,) = figure["data"]
    assert trace["type"] == "heatmap"
    return [[int(v) for v in row] for row in trace["z"]]


# ---------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def served(demo: dict[str, Any], serve_app: Any) -> Iterator[str]:
    with serve_app(create_dashboard_app(demo["project"])) as url:
        yield url


@pytest.fixture(scope="module")
def page_in_chromium(served: str, browser: Any) -> Iterator[tuple[Any, list[str], list[str]]]:
    """A Chromium page with its console / page errors and requests recorded."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    yield page, errors, requests
    context.close()


def _only_the_dashboard(served: str, errors: list[str], requests: list[str]) -> None:
    assert errors == []
    assert requests
    assert [u for u in requests if not u.startswith(served + "/")] == []


def test_what_if_form_in_chromium(
    demo: dict[str, Any],
    served: str,
    page_in_chromium: tuple[Any, list[str], list[str]],
    tmp_path: Path,
) -> None:
    page, errors, requests = page_in_chromium
    response = page.goto(served + "/budget", wait_until="load")
    assert response is not None and response.status == 200
    chart = page.locator("#budget-allocation")
    chart.locator(".main-svg").first.wait_for(state="attached", timeout=15_000)
    assert chart.locator(".bars path").count() > 0
    assert page.locator("#what-if-result").count() == 0
    # A response curve drawn per channel, its current and planned spend marked.
    curves = page.locator("#budget-curves")
    curves.locator(".main-svg").first.wait_for(state="attached", timeout=15_000)
    drawn = page.evaluate(
        "() => document.getElementById('budget-curves').data"
        ".filter(t => t.mode === 'lines').map(t => t.name).sort()"
    )
    assert drawn == CHANNELS
    assert curves.locator(".scatterlayer .trace").count() == 2 * len(CHANNELS)
    assert curves.locator(".scatterlayer .trace .js-line").count() == len(CHANNELS)
    page.get_by_label("Move spend from").select_option("paid_social")
    page.get_by_label("to", exact=True).select_option("email")
    page.get_by_label("Share of its spend (0 to 1)").fill("0.2")
    page.get_by_role("button", name="Project the change").click()
    result = page.locator("#what-if-result")
    result.wait_for(state="visible", timeout=15_000)
    expected = demo["project"].what_if("paid_social:email:0.2")
    assert float(result.get_attribute("data-change-value")) == expected.change_value
    assert (
        result.locator(".what-if-change").inner_text() == f"+{format_number(expected.change_value)}"
    )
    assert "95% interval" in result.locator(".what-if-interval").inner_text()
    assert "share=0.2" in page.url
    page.locator("#budget-allocation .main-svg").first.wait_for(state="attached")
    page.screenshot(path=str(tmp_path / "budget-what-if.png"), full_page=True)
    assert (tmp_path / "budget-what-if.png").stat().st_size > 0
    _only_the_dashboard(served, errors, requests)


def test_rfm_heat_map_in_chromium(
    demo: dict[str, Any],
    served: str,
    page_in_chromium: tuple[Any, list[str], list[str]],
    tmp_path: Path,
) -> None:
    page, errors, requests = page_in_chromium
    response = page.goto(served + "/segments?scheme=rfm", wait_until="load")
    assert response is not None and response.status == 200
    chart = page.locator("#rfm-heatmap")
    chart.locator(".main-svg").first.wait_for(state="attached", timeout=15_000)
    assert chart.locator(".hm image").count() > 0
    drawn = page.evaluate(
        "() => document.getElementById('rfm-heatmap').data[0].z.flat().reduce((a, b) => a + b, 0)"
    )
    sizes = [
        r["customers"]
        for r in demo["project"].runs.latest().table("segment_sizes").to_pylist()
        if r["scheme"] == "rfm" and r["segment"] != "Others"
    ]
    assert drawn == sum(sizes)
    page.screenshot(path=str(tmp_path / "rfm-heatmap.png"), full_page=True)
    _only_the_dashboard(served, errors, requests)


def test_budget_and_heat_map_fit_a_phone_screen(served: str, browser: Any, tmp_path: Path) -> None:
    context = browser.new_context(
        viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True
    )
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        for name, path in [
            ("budget", "/budget?from=paid_social&to=email&share=0.2"),
            ("rfm", "/segments?scheme=rfm"),
        ]:
            response = page.goto(served + path, wait_until="load")
            assert response is not None and response.status == 200
            page.locator(".chart .main-svg").first.wait_for(state="attached", timeout=15_000)
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} overflows a phone screen by {overflow}px"
            page.screenshot(path=str(tmp_path / f"phone-{name}.png"), full_page=True)
    finally:
        context.close()
    assert errors == []


def test_rfm_grid_with_ties_split_by_customer_id_matches_scoring_each_customer(
    tmp_path: Path,
) -> None:
    """The grid scores each recency and order count once, but a value on a boundary
    whose tie is split by customer id customer by customer: the same cells as scoring
    every customer with the run's saved scorer."""
    from collections import Counter

    import yaml

    from segvalue.segments.rfm import FREQUENCY_COLUMN, MONETARY_MEASURE, RECENCY_COLUMN
    from segvalue.segments.scoring import assign

    _, config_path = run_demo(n_customers=300, seed=3, out_dir=tmp_path / "demo")
    config = yaml.safe_load(config_path.read_text())
    rfm = next(s for s in config["segments"]["schemes"] if s["type"] == "rfm")
    rfm["ties"] = "split"
    config_path.write_text(yaml.safe_dump(config))
    with Project.from_yaml(config_path) as project:
        project.run()
        view = project.runs.require_latest()
        state = view.document("scorer")["schemes"]["rfm"]
        assert state["ties"] == "split"
        by_cell = dict(
            state,
            segments=[
                {"r": [r, r], "f": [f, f], "segment": f"{r},{f}"}
                for r in range(1, state["bins"] + 1)
                for f in range(1, state["bins"] + 1)
            ],
            unassigned="",
        )
        columns = ["customer_id", RECENCY_COLUMN, FREQUENCY_COLUMN, MONETARY_MEASURE]
        rows = view.customer_scores().select(columns).to_pylist()
        members = {r["customer_id"]: r["segment"] for r in view.memberships("rfm").to_pylist()}
        # Customers on a split boundary: scored one by one (order counts tie often).
        on_boundary = {float(b[0]) for b in state["boundaries"]["f"] if len(b) > 1}
        assert sum(r[FREQUENCY_COLUMN] in on_boundary for r in rows) > 10
        for segment in (None, "Champions"):
            chosen = [r for r in rows if segment is None or members[r["customer_id"]] == segment]
            expected = Counter(str(assign(by_cell, r)) for r in chosen)
            expected.pop("", None)
            grid = view.rfm_grid("rfm", segment)
            assert grid is not None
            got = {f"{c['recency']},{c['frequency']}": c["customers"] for c in grid["cells"]}
            assert got == dict(expected), segment


def _prepared(timeout: float = 120.0) -> None:
    """Wait for the dashboards' start-up preparation threads."""
    import threading

    for thread in threading.enumerate():
        if thread.name == "segvalue-dashboard-prepare":
            thread.join(timeout)
            assert not thread.is_alive(), "the preparation did not finish"


def test_budget_curves_plan_and_what_if_are_project_budget_and_what_if(
    demo: dict[str, Any],
) -> None:
    """One read of the sources: the plan and what-ifs on its curves are the project's."""
    project = demo["project"]
    curves = project.budget_curves()
    for objective in (None, "revenue", "clv"):
        plan, warnings = curves.plan(objective=objective)
        expected, expected_warnings = project.budget(objective=objective)
        assert plan.to_dict() == expected.to_dict(), objective
        assert warnings == expected_warnings
    for move in (("paid_social", "email", 0.2), ("email", "onsite", 0.5)):
        answer = curves.what_if(*move).to_dict()
        assert answer == project.what_if(":".join(map(str, move))).to_dict()
        assert answer["interval"] is not None


def test_prepared_pages_and_budget_are_served_without_building_them_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``prepare``: the latest run's first pages and the budget plan are built at start-up
    on a background thread, and again when a new run appears."""
    from segvalue.web import pages

    _, config_path = run_demo(n_customers=300, seed=5, out_dir=tmp_path / "demo")
    project = Project.from_yaml(config_path)
    view = project.runs.require_latest()
    scheme = view.segment_kpis().column("scheme")[0].as_py()
    segment = next(r["segment"] for r in view.segment_kpis().to_pylist()[1:])
    app = create_dashboard_app(project, prepare=True)
    _prepared()
    calls: list[str] = []

    def counted(name: str) -> Any:
        original = getattr(pages, name)

        def build(*args: Any, **kwargs: Any) -> Any:
            calls.append(name)
            return original(*args, **kwargs)

        return build

    for name in ("overview_page", "segments_page", "segment_page", "models_page", "budget_page"):
        monkeypatch.setattr(pages, name, counted(name))
    with TestClient(app) as client:
        for path in (
            "/",
            "/segments",
            "/segments?scheme=rfm",
            f"/segments/{quote(scheme, safe='')}/{quote(segment, safe='')}",
            "/models",
            "/budget",
        ):
            assert client.get(path).status_code == 200, path
        assert calls == []  # all kept from the preparation
        answer = client.get("/budget", params=MOVE)
        assert _result_value(answer.text) == project.what_if("paid_social:email:0.2").change_value
        assert calls == []  # the what-if is answered on the prepared curves
        assert client.get("/segments/rfm/Champions").status_code == 200
        assert calls == ["segment_page"]  # another scheme's segment: built when asked

        # A new run (another process: this one holds the store open): the next page
        # notices it and prepares the new run's pages.
        project.close()
        code = "import sys; from segvalue.project import Project; "
        code += "print(Project.from_yaml(sys.argv[1]).run().run_id)"
        done = subprocess.run(
            [sys.executable, "-c", code, str(config_path)],
            check=False,
            capture_output=True,
            text=True,
            timeout=600,
        )
        assert done.returncode == 0, done.stderr
        new_run = done.stdout.strip().splitlines()[-1]
        calls.clear()
        assert new_run in client.get("/").text
        _prepared()
        built = len(calls)
        assert calls.count("budget_page") == 1  # planned again for the new latest run
        assert client.get("/budget").status_code == 200
        assert client.get("/segments?scheme=rfm").status_code == 200
        assert len(calls) == built
    project.close()
