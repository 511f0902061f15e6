"""``segvalue report``: one run's dashboard pages in one self-contained HTML file.

One 1,500-customer demo run (it holds a measurement), its report written before and after
``segvalue activate`` planned two campaigns on it; the report read as text (no external
URL, the run and its segments named, the measurement's and the campaigns' numbers as the
run stored them, links between pages local), opened from a ``file://`` URL in Debian's
headless Chromium (every chart drawn, no console error, no network request at all) and
written through the command line (its human output, refusing a foreign file, an unknown
run). A run without a measurement or an activation has no section for them.
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from markupsafe import escape

from segvalue.cli.main import cli
from segvalue.config import parse_config
from segvalue.errors import ConfigError, DataValidationError
from segvalue.pipeline import run_demo
from segvalue.project import Project
from segvalue.web.app import format_number, format_percent
from segvalue.web.pages import ALL_CUSTOMERS, overview_page, segment_page, segments_page
from segvalue.web.report import render_report, write_report
from test_cli_human import ok, show

_SCRIPT = re.compile(r"<script\b[^>]*>.*?</script>", re.DOTALL | re.IGNORECASE)
_STYLE = re.compile(r"<style\b[^>]*>.*?</style>", re.DOTALL | re.IGNORECASE)
#: Appended to the demo's segvalue.yaml: two campaigns, one of two steps (two funnel charts),
#: one whose name is free text with markup, a space and a slash (quoted in its link).
ODD_NAME = "VIP / <spring>"
CAMPAIGNS = f"""
campaigns:
  - name: winback
    segments: [cluster_1, cluster_2]
    objective: win_back
    start: 2026-01-05
    steps: [{{channel: primary}}, {{channel: email, delay_days: 3}}]
  - name: {json.dumps(ODD_NAME)}
    segments: [cluster_3]
    objective: retain
    priority: 60
    start: 2026-01-07
    steps: [{{channel: email}}]
"""


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """One demo run and its report (written through the library), before and after
    ``segvalue activate`` (``html``: after)."""
    folder = tmp_path_factory.mktemp("report") / "demo"
    result, config_path = run_demo(n_customers=1_500, seed=7, out_dir=folder)
    with Project.from_yaml(config_path) as project:
        not_activated = write_report(project, folder / "not-activated.html")
    config_path.write_text(config_path.read_text() + CAMPAIGNS)
    with Project.from_yaml(config_path) as project:
        project.activate()
        path = write_report(project, folder / "written.html")
        yield {
            "folder": folder,
            "config": config_path,
            "project": project,
            "run_id": result.run_id,
            "path": path,
            "html": path.read_text(encoding="utf-8"),
            "not_activated": not_activated.read_text(encoding="utf-8"),
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


def _sections(html: str) -> list[tuple[str, str]]:
    """(anchor, label) of each section of a report, in order."""
    found = re.findall(r'<section id="([^"]+)" class="report-page" aria-label="([^"]*)"', html)
    return [(anchor, unescape(label)) for anchor, label in found]


def _section(html: str, anchor: str) -> str:
    """The markup of one section of a report (up to the next section)."""
    start = html.index(f'<section id="{anchor}" class="report-page"')
    end = html.find('<section id="', start + 1)
    return html[start : end if end > 0 else html.index("</main>")]


def _row_cells(page: str, table_id: str, header: str) -> list[str]:
    """The text of each cell of the row headed ``header`` (plain text) in a table."""
    table = re.search(rf'<table[^>]* id="{table_id}">(.*?)</table>', page, re.S)
    assert table is not None, table_id
    row = re.search(
        rf'<tr[^>]*>\s*<th scope="row"[^>]*>(?:<a[^>]*>)?{re.escape(escape(header))}'
        rf"(?:</a>)?</th>(.*?)</tr>",
        table.group(1),
        re.S,
    )
    assert row is not None, (table_id, header)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    return [" ".join(unescape(re.sub(r"<[^>]+>", " ", c)).split()) for c in cells]


def _figure(html: str, chart_id: str) -> dict[str, Any]:
    found = re.search(
        rf'<script type="application/json" id="{chart_id}-figure">(.*?)</script>', html, re.S
    )
    assert found is not None, chart_id
    figure: dict[str, Any] = json.loads(found.group(1))
    return figure


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
    # So is each chart's figure, the measurement's and the campaigns' too.
    figures = re.findall(r'<script type="application/json" id="([^"]+)"', html)
    assert sorted(re.findall(r'data-figure="([^"]+)"', markup)) == sorted(figures)
    for anchor in ("attribution", "channels", "experiments", "campaign-0", "campaign-1"):
        assert f'data-figure="{anchor}-' in _section(markup, anchor), anchor


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


def test_report_holds_the_measurement_pages_with_their_numbers(demo: dict[str, Any]) -> None:
    html = _markup(demo["html"])
    view = demo["project"].runs.require_latest()
    measurement = view.measurement()
    labels = dict(_sections(html))
    assert [labels[a] for a in ("attribution", "channels", "experiments")] == [
        "Attribution",
        "Channels",
        "Experiments",
    ]
    # Attribution of the whole base: the markov column and the removal effects as stored.
    attribution = _section(html, "attribution")
    stored = [r for r in measurement["attribution"] if r["segment"] == ALL_CUSTOMERS]
    headers = re.findall(
        r'<th scope="col" class="num">([\w-]+)',
        attribution.split('id="attribution-attribution-shares-table"')[1].split("</thead>")[0],
    )
    assert "markov" in headers and "last" in headers
    markov = {r["channel"]: r for r in stored if r["model"] == "markov"}
    assert markov
    for channel, row in markov.items():
        cells = _row_cells(attribution, "attribution-attribution-shares-table", channel)
        assert cells[headers.index("markov")] == format_percent(row["share"]), channel
        removal = _row_cells(attribution, "attribution-removal-table", channel)
        assert removal == [format_percent(row["removal_effect"])], channel
    # Channels of the whole base: each channel's role and reach as stored.
    channels = _section(html, "channels")
    rows = [r for r in measurement["channels"] if r["segment"] == ALL_CUSTOMERS]
    assert {r["role"] for r in rows} >= {"primary"}
    for row in rows:
        cells = _row_cells(channels, "channels-channels-table", row["channel"])
        assert cells[:3] == [
            row["role"],
            format_number(row["reached"]),
            format_number(row["converted"]),
        ]
    # Experiments: the default experiment and the priorities' outcome, its lift per arm.
    experiments = _section(html, "experiments")
    priority = measurement["details"]["priority_lift"]
    experiment, outcome = priority["experiment_id"], priority["outcome"]
    assert experiment == measurement["details"]["experiments"][0]  # the page's default
    lift = [
        r
        for r in measurement["lift"]
        if (r["experiment_id"], r["outcome"], r["segment"]) == (experiment, outcome, ALL_CUSTOMERS)
    ]
    assert lift
    for index, row in enumerate(lift):
        cells = _row_cells(experiments, f"experiments-lift-table-{index}", ALL_CUSTOMERS)
        show = format_percent if row["binary"] else format_number
        assert cells[:5] == [
            format_number(row["n_treated"]),
            format_number(row["n_control"]),
            show(row["treated_mean"]),
            show(row["control_mean"]),
            show(row["lift"]),
        ]
    assert f"<h3>{experiment}</h3>" in experiments  # a heading one level down
    assert 'id="experiments-qini"' in experiments  # the uplift model's curves
    # Links between the pages are local; another segment's or outcome's page is plain text.
    assert 'href="#attribution"' in _section(html, "overview")
    assert 'href="#experiments"' in channels and 'href="#channels"' in experiments
    for section, page in ((attribution, "attribution"), (channels, "channels")):
        assert f'<a href="#{page}" aria-current="page">{ALL_CUSTOMERS}</a>' in section
        assert re.search(r"<a\s*>cluster_1</a>", section), page
    assert f'<a href="#experiments" aria-current="page">{outcome}</a>' in experiments


def test_report_holds_each_campaign_with_its_funnels(demo: dict[str, Any]) -> None:
    html = _markup(demo["html"])
    view = demo["project"].runs.require_latest()
    planned = view.document("activation")["campaigns"]
    assert sorted(c["name"] for c in planned) == sorted(["winback", ODD_NAME])
    labels = dict(_sections(html))
    assert labels["campaigns"] == "Campaigns"
    steps = view.table("activation_steps").to_pylist()
    campaigns = _section(html, "campaigns")
    for index, campaign in enumerate(planned):  # in the order they were planned
        anchor = f"campaign-{index}"
        name = campaign["name"]
        assert labels[anchor] == f"Campaign {name}"
        section = _section(html, anchor)
        assert f"<h2>Campaign {escape(name)}</h2>" in section
        assert 'href="#campaigns"' in section  # the breadcrumb
        # The campaigns table links the section, with the campaign's counts.
        assert f'<a href="#{anchor}">{escape(name)}</a>' in campaigns
        cells = _row_cells(campaigns, "campaigns-campaigns-table", name)
        counts = [format_number(campaign[key]) for key in ("members", "eligible", "holdout")]
        assert cells[4:7] == counts
        # A funnel chart per step: from the members to the audience, as stored.
        mine = sorted((r for r in steps if r["campaign"] == name), key=lambda r: r["step"])
        assert [r["audience"] for r in mine] == [s["audience"] for s in campaign["steps"]]
        for row in mine:
            bars = _figure(demo["html"], f"{anchor}-funnel-{row['step']}")["data"][0]
            assert (bars["y"][0], bars["x"][0]) == ("members", row["members"])
            assert (bars["y"][-1], bars["x"][-1]) == ("audience (sent)", row["audience"])
            removed = [n for n, base in zip(bars["x"], bars["base"], strict=True) if base]
            assert row["members"] - sum(removed) == row["audience"] > 0
    # The customers' pages are not in the report: their ids are plain text.
    assert "<a>C0" in _section(html, "campaign-0") and 'href="/customers' not in html


def test_report_has_no_section_for_what_the_run_does_not_hold(
    demo: dict[str, Any], tmp_path: Path
) -> None:
    # The demo before segvalue activate: the measurement, no campaign.
    full = [anchor for anchor, _ in _sections(demo["html"])]
    measured = [anchor for anchor, _ in _sections(demo["not_activated"])]
    assert measured == full[: full.index("campaigns")]
    assert measured[-4:] == ["models", "attribution", "channels", "experiments"]
    nav = re.findall(r'<li><a href="#([^"]+)">', demo["not_activated"].split("</header>")[0])
    assert nav[-4:] == measured[-4:]
    # A run without touchpoints or experiments: no measurement either, no empty section.
    rows = "order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n2,b,2024-01-09,7\n"
    (tmp_path / "o.csv").write_text(rows)
    config = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=tmp_path)
    with Project(config) as project:
        project.run()
        view = project.runs.require_latest()
        assert not view.has_document("measurement") and not view.has_document("activation")
        html = render_report(project, view)
    anchors = [anchor for anchor, _ in _sections(html)]
    assert anchors[-1] == "models" and anchors[0] == "overview"
    assert not {"attribution", "channels", "experiments", "campaigns"} & set(anchors)
    nav = re.findall(r'<li><a href="#([^"]+)">([^<]+)</a>', html.split("</header>")[0])
    assert [label for _, label in nav] == ["Overview", "Segments", "Segment pages", "CLV model"]
    assert "holds no measurement" not in html and "holds no activation" not in html


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
        # KPIs (3), CLV model (2) and the segments' profile, CLV and channel charts; the
        # measurement's and the campaigns' funnels.
        assert charts.count() == figures > 5 + 2 * len(_kpi_segments(demo)[1])
        drawn_ids = charts.evaluate_all("cs => cs.map(c => c.id)")
        for chart_id in (
            "attribution-attribution-shares",
            "channels-channel-conversion-rate",
            "channels-channel-roas",
            "experiments-lift-0",
            "experiments-qini",
            "campaign-0-funnel-1",
            "campaign-1-funnel-1",
            "campaign-1-funnel-2",
        ):
            assert chart_id in drawn_ids, chart_id
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
        # A link between pages moves within the file.
        page.locator("#campaigns").get_by_role("link", name="winback").click()
        assert page.url == f"{url}#campaign-1"
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
