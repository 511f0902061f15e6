"""``segvalue report``: one run's dashboard pages in one self-contained HTML file.

One 1,500-customer demo run; the report is written from it, read as text (no external
URL, the run and its segments named), opened from a ``file://`` URL in Debian's headless
Chromium (every chart drawn, no console error, no network request at all) and written
through the command line (its human output, refusing a foreign file, an unknown run).
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from segvalue.cli.main import cli
from segvalue.errors import ConfigError, DataValidationError
from segvalue.pipeline import run_demo
from segvalue.project import Project
from segvalue.web.pages import overview_page, segment_page, segments_page
from segvalue.web.report import write_report
from test_cli_human import ok, show

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL | re.IGNORECASE)
_STYLE = re.compile(r"<style\b[^>]*>.*?</style>", re.DOTALL | re.IGNORECASE)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One demo run and its report (written through the library)."""
    folder = tmp_path_factory.mktemp("report") / "demo"
    result, config_path = run_demo(n_customers=1_500, seed=7, out_dir=folder)
    with Project.from_yaml(config_path) as project:
        path = write_report(project, folder / "written.html")
        yield {
            "folder": folder,
            "config": config_path,
            "project": project,
            "run_id": result.run_id,
            "path": path,
            "html": path.read_text(encoding="utf-8"),
        }


def _markup(html: str) -> str:
    """The document without the contents of its scripts and stylesheet."""
    return _STYLE.sub("<style></style>", _SCRIPT.sub("<script></script>", html))


def _fails(argv: list[str], where: Path, capsys: pytest.CaptureFixture[str]) -> Any:
    """``segvalue argv`` in ``where`` exits 2 with one message (not through show(): the
    message names the store's URL, a temporary path longer than 80 columns)."""
    with contextlib.chdir(where):
        code = cli(argv)
    shown = capsys.readouterr()
    assert code == 2 and "Traceback" not in shown.err
    return shown


def _kpi_segments(demo: dict[str, Any]) -> tuple[str, list[str]]:
    view = demo["project"].runs.require_latest()
    page = segments_page(view, None)
    return page["scheme"], [s["segment"] for s in page["segments"]]


def test_report_is_one_file_with_everything_inline(demo: dict[str, Any]) -> None:
    html = demo["html"]
    assert demo["path"] == demo["folder"] / "written.html"
    assert html.startswith("<!doctype html>")
    markup = _markup(html)
    # Nothing to fetch: no src or href to another site (or to a file), no external script.
    links = re.findall(r"""\b(?:src|href)\s*=\s*["']?([^"'\s>]+)""", markup)
    assert links, "the report links its own sections"
    assert [u for u in links if not u.startswith(("#", "data:"))] == []
    assert "http://" not in markup and "https://" not in markup
    assert '<link rel="stylesheet"' not in markup
    scripts = re.findall(r"<script\b([^>]*)>", html)
    assert all("src" not in attributes for attributes in scripts)
    # Plotly's own bundle is inlined, and each chart's figure beside it.
    assert "plotly.js" in html and "Plotly.newPlot" in html
    # ids are unique although every segment section comes from the same template.
    ids = re.findall(r'\bid="([^"]+)"', markup)
    assert len(ids) == len(set(ids))
    for target in re.findall(r'href="#([^"]+)"', markup):
        assert target in ids, target


def test_report_holds_the_run_its_kpis_segments_and_model(demo: dict[str, Any]) -> None:
    html = demo["html"]
    view = demo["project"].runs.require_latest()
    assert view.run_id == demo["run_id"]
    assert view.run_id in html and str(view.info.as_of) in html
    scheme, segments = _kpi_segments(demo)
    assert scheme == "clusters"  # the demo's KPI scheme
    for index, segment in enumerate(segments):
        assert f'<section id="segment-{index}" class="report-page"' in html
        assert f"<h2>{segment} <span" in html  # the segment page's heading, one level down
        persona = segment_page(view, scheme, segment)["persona"]
        assert persona is not None and f"Persona: {persona['name']}" in html
    # Every KPI card, every scheme's table, the model's parameters, freshness, rejects.
    overview = overview_page(view)
    cards = sum(len(kpi["cards"]) for kpi in overview["kpis"])
    assert html.count('class="card status-') == cards
    for index, name in enumerate([scheme, *[s for s in view.info.schemes if s != scheme]]):
        section = (
            f'<section id="segments-{index}" class="report-page" aria-label="Segments of {name}"'
        )
        assert section in html
        assert f'id="segments-{index}-segments-table"' in html
    assert "Parameters with 95% intervals" in html
    assert "Data freshness" in html and "No rows were rejected." in html
    # Links between dashboard pages became links within the file.
    markup = _markup(html)
    assert 'href="#segment-0"' in markup and 'href="/' not in markup


def test_every_chart_renders_offline_in_chromium(
    demo: dict[str, Any],
    browser: Any,
    tmp_path: Path,
) -> None:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("request", lambda r: requests.append(r.url))
    try:
        url = demo["path"].as_uri()
        response = page.goto(url, wait_until="load")
        assert response is not None and response.ok
        charts = page.locator(".chart")
        figures = len(re.findall(r'<script type="application/json"', demo["html"]))
        # KPIs (3), CLV model (2) and the segments' profile, CLV and channel charts.
        assert charts.count() == figures > 5 + 2 * len(_kpi_segments(demo)[1])
        for index in range(figures):
            chart = charts.nth(index)
            chart.locator(".main-svg").first.wait_for(state="attached", timeout=15_000)
            # Drawn, not an empty frame: a bar, line, point or heat map image.
            drawn = chart.locator(".trace, .point, .bars path, .hm image")
            assert drawn.count() > 0, index
        # The dashboard's script sorts the report's tables too (the KPI scheme's here).
        table = page.locator("table#segments-0-segments-table")
        cells = table.locator("tbody tr td:nth-child(5)")  # CLV (mean)
        before = [float(v) for v in cells.evaluate_all("cs => cs.map(c => c.dataset.value)")]
        table.get_by_role("button", name="CLV (mean)").click()
        after = [float(v) for v in cells.evaluate_all("cs => cs.map(c => c.dataset.value)")]
        assert after == sorted(before) != before
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        assert (tmp_path / "report.png").stat().st_size > 0
        assert errors == []
        # The only request is the file itself (and the inline favicon): no network at all.
        assert [u for u in requests if u != url and not u.startswith("data:")] == []
    finally:
        context.close()


def test_report_command_names_the_file_and_its_size(demo: dict[str, Any]) -> None:
    where = demo["folder"]
    text = ok(["report", "-c", "segvalue.yaml", "--out", "report.html"], where)
    size = (where / "report.html").stat().st_size
    assert size > 1_000_000  # plotly.js is inlined
    lines = text.splitlines()
    assert lines[0] == f"wrote report.html ({size / 1_000_000:.1f} MB)"
    assert lines[1].startswith(f"run {demo['run_id']}, as of ")
    # A report segvalue wrote is replaced by the next one.
    assert ok(["report", "--out", "report.html", "--run", demo["run_id"]], where) == text


def test_report_refuses_a_file_segvalue_did_not_write(demo: dict[str, Any]) -> None:
    where = demo["folder"]
    mine = where / "mine.html"
    mine.write_text("<!doctype html><p>my own page</p>")
    shown = show(["report", "--out", "mine.html"], where)
    assert shown.code == 2
    assert "mine.html" in shown.err and "segvalue did not write it" in shown.err
    assert mine.read_text() == "<!doctype html><p>my own page</p>"
    with pytest.raises(ConfigError, match="`out_path`"):
        write_report(demo["project"], mine)
    # Nor an input, nor a file that is not HTML.
    shown = show(["report", "--out", "segvalue.yaml"], where)
    assert shown.code == 2 and "--out" in shown.err and ".html" in shown.err


def test_report_of_an_unknown_run_names_recent_runs(
    demo: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    where = demo["folder"]
    shown = _fails(["report", "--out", "other.html", "--run", "no-such-run"], where, capsys)
    assert "no-such-run" in shown.err and demo["run_id"] in shown.err
    assert not (where / "other.html").exists()
    with pytest.raises(DataValidationError, match="no-such-run"):
        write_report(demo["project"], where / "other.html", run_id="no-such-run")


def test_report_without_a_run_says_how_to_make_one(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "o.csv").write_text("order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n")
    (tmp_path / "segvalue.yaml").write_text("sources:\n  orders:\n    path: o.csv\n")
    shown = _fails(["report", "--out", "report.html"], tmp_path, capsys)
    assert "no complete run" in shown.err and "segvalue run" in shown.err
    assert not (tmp_path / "report.html").exists()
