"""The dashboard's campaign pages: every campaign of a run's activation, and one page per
campaign with its audience funnels.

In process on a 1,500-customer demo run activated with three campaign plans (two e-mail
steps in one week, the second capped; an app push in the quiet hours; a campaign whose
name is free text with markup, a space and a slash), each page's numbers against the
tables ``segvalue activate`` stored; the escaping of the odd name in the page and in its
links; a run without activation and an unknown campaign; a new activation of the same
run shown at once. Then each page in Debian's headless Chromium through Playwright: its
funnel charts drawn, no console error, no dialog, nothing loaded from outside the
dashboard, nothing wider than a phone screen.
"""

from __future__ import annotations

import html
import json
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pyarrow.compute as pc
import pytest
import yaml
from fastapi.testclient import TestClient
from markupsafe import escape

from segvalue.pipeline import run_demo
from segvalue.project import Project
from segvalue.web import create_dashboard_app
from segvalue.web.app import format_number, format_percent

#: A campaign name as free text: markup, quotes, a space and a slash.
ODD_NAME = '<script>alert("x")</script> VIP / spring'
CAMPAIGNS: list[dict[str, Any]] = [
    {
        "name": "winback",
        "segments": ["cluster_1", "cluster_2"],
        "objective": "win_back",
        "start": "2026-01-05",
        "steps": [
            {"channel": "primary"},
            {"channel": "email", "delay_days": 1},
            # Two days later, in the same ISO week: the weekly e-mail cap refuses it.
            {"channel": "email", "delay_days": 3},
            {"channel": "email", "delay_days": 8, "condition": "not_purchased_since_start"},
        ],
    },
    {
        "name": "loyal",
        "segments": ["cluster_2", "cluster_5"],
        "objective": "grow",
        "priority": 50,
        "start": "2026-01-06",
        "steps": [{"channel": "app_push", "send_time": "22:00"}],
    },
    {
        "name": ODD_NAME,
        "segments": ["cluster_3"],
        "objective": "retain",
        "priority": 60,
        "holdout": 0.2,
        "start": "2026-01-07",
        "steps": [{"channel": "email"}],
    },
]
ACTIVATION: dict[str, Any] = {
    "global_control": {"share": 0.05},
    "caps": [{"channel": "email", "per": "week", "max": 1}],
    "quiet_hours": {"app_push": {"start": "21:00", "end": "08:00"}},
}
TABLES = ("activation_steps", "activation_left_out", "activation_holdouts", "activation_audiences")


class Stored:
    """What the run's activation stored: its document and tables, read once."""

    def __init__(self, config: Path) -> None:
        with Project.from_yaml(config) as reader:
            view = reader.runs.require_latest()
            self.run_id = view.run_id
            self.document: dict[str, Any] = view.document("activation")
            self.tables = {name: view.table(name) for name in TABLES}

    def rows(self, table: str, campaign: str) -> list[dict[str, Any]]:
        rows = self.tables[table]
        return list(rows.filter(pc.equal(rows.column("campaign"), campaign)).to_pylist())

    def campaign(self, name: str) -> dict[str, Any]:
        return next(c for c in self.document["campaigns"] if c["name"] == name)

    def funnel(self, name: str, step: int) -> list[tuple[str, int]]:
        """(label, customers) of each stage of a step, from the stored rows alone."""
        left = self.rows("activation_left_out", name)
        row = next(r for r in self.rows("activation_steps", name) if r["step"] == step)
        at_campaign = Counter(r["reason"] for r in left if r["step"] is None)
        at_campaign.pop("holdout", None)
        own = Counter(r["reason"] for r in left if r["step"] == step)

        def by_size(counts: dict[str, int], label: str) -> list[tuple[str, int]]:
            ordered = sorted(counts.items(), key=lambda item: (-item[1], item[0]))
            return [(f"{label}: {reason}", n) for reason, n in ordered]

        return [
            ("members", row["members"]),
            *by_size(at_campaign, "suppressed"),
            ("eligible", row["eligible"]),
            ("held out", row["holdout"]),
            *by_size({k: v for k, v in own.items() if not k.startswith("capped: ")}, "suppressed"),
            *by_size(
                {k.removeprefix("capped: "): v for k, v in own.items() if k.startswith("capped: ")},
                "capped",
            ),
            ("audience (sent)", row["audience"]),
        ]


def _activate(config: Path, activation: dict[str, Any]) -> None:
    """Plan the test's campaigns on the latest run (replacing an earlier activation)."""
    document = yaml.safe_load(config.read_text())
    document["campaigns"] = CAMPAIGNS
    document["activation"] = activation
    config.write_text(yaml.safe_dump(document))
    with Project.from_yaml(config) as project:
        project.activate()


@pytest.fixture(scope="module")
def config(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, path = run_demo(n_customers=1_500, out_dir=tmp_path_factory.mktemp("web-activation") / "d")
    _activate(path, ACTIVATION)
    return path


@pytest.fixture(scope="module")
def stored(config: Path) -> Stored:
    return Stored(config)


@pytest.fixture(scope="module")
def demo(config: Path, stored: Stored) -> Iterator[Project]:
    with Project.from_yaml(config) as project:
        yield project


@pytest.fixture(scope="module")
def client(demo: Project) -> TestClient:
    return TestClient(create_dashboard_app(demo))


def _page_path(name: str) -> str:
    return "/campaigns/" + quote(name, safe="")


def _table(page: str, table_id: str) -> str:
    found = re.search(rf'<table[^>]* id="{table_id}">(.*?)</table>', page, re.S)
    assert found is not None, table_id
    return found.group(1)


def _row_cells(page: str, header: str, table_id: str) -> list[str]:
    """The text of each cell of the row headed ``header`` in the table ``table_id``."""
    row = re.search(
        rf'<tr[^>]*>\s*<th scope="row"[^>]*>(?:<a [^>]*>)?{re.escape(str(escape(header)))}'
        rf"(?:</a>)?</th>(.*?)</tr>",
        _table(page, table_id),
        re.S,
    )
    assert row is not None, (table_id, header)
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row.group(1), re.S)
    return [" ".join(html.unescape(re.sub(r"<[^>]+>", " ", c)).split()) for c in cells]


def _figure(page: str, chart_id: str) -> dict[str, Any]:
    found = re.search(
        rf'<script type="application/json" id="{chart_id}-figure">(.*?)</script>', page, re.S
    )
    assert found is not None, chart_id
    figure: dict[str, Any] = json.loads(found.group(1))
    return figure


# ---------------------------------------------------------------- in process


def test_campaigns_page_lists_every_campaign_with_its_counts(
    client: TestClient, stored: Stored
) -> None:
    response = client.get("/campaigns")
    assert response.status_code == 200
    page = response.text
    names = re.findall(r'<th scope="row"><a href="/campaigns/([^"?]+)\?run=', page)
    assert names == [quote(c["name"], safe="") for c in stored.document["campaigns"]]
    assert len(names) == 3
    for campaign in stored.document["campaigns"]:
        cells = _row_cells(page, campaign["name"], "campaigns-table")
        steps = {r["step"]: r for r in stored.rows("activation_steps", campaign["name"])}
        assert cells[0] == campaign["objective"].replace("_", " ")
        assert cells[1] == ", ".join(campaign["segments"])
        assert cells[2] == f"{campaign['start']} to {campaign['end'] or 'open'}"
        assert cells[3:7] == [
            format_number(campaign[k]) for k in ("priority", "members", "eligible", "holdout")
        ]
        assert cells[7] == " ".join(
            f"{row['day']}, {row['channel']}: {format_number(row['audience'])}"
            for _, row in sorted(steps.items())
        )
        assert campaign["eligible"] == steps[1]["eligible"]
    # The plan's rules: the global control group, the caps, the default time zone.
    document = stored.document
    assert f"<dd>{format_number(document['global_control'])} <span" in page
    assert f"(share configured: {format_percent(document['global_control_share'])})" in page
    assert "<dt>Frequency caps</dt><dd>email: 1 per week</dd>" in page
    assert (
        f"{format_number(document['customers_in_default_zone'])} of "
        f"{format_number(document['customers'])} customers have no valid time zone" in page
    )


@pytest.mark.parametrize("name", ["winback", "loyal", ODD_NAME])
def test_a_campaign_page_has_the_stored_numbers(
    client: TestClient, stored: Stored, name: str
) -> None:
    response = client.get(_page_path(name))
    assert response.status_code == 200, response.text
    page = response.text
    campaign = stored.campaign(name)
    steps = sorted(stored.rows("activation_steps", name), key=lambda r: r["step"])
    assert f"<h1>Campaign {escape(name)}</h1>" in page
    # One funnel chart per step: each bar the stored count of its stage.
    for row in steps:
        figure = _figure(page, f"funnel-{row['step']}")
        bars = figure["data"][0]
        expected = stored.funnel(name, row["step"])
        assert list(zip(bars["y"], bars["x"], strict=True)) == expected, row["step"]
        # A stage that leaves customers out floats over those it removes.
        before = row["members"]
        for label, count, base in zip(bars["y"], bars["x"], bars["base"], strict=True):
            if label.startswith(("suppressed", "held out", "capped")):
                assert base + count == before, label
                before = base
            else:
                assert base == 0 and (label == "members" or count == before), label
    # The steps table.
    for row in steps:
        cells = _row_cells(page, str(row["step"]), "steps-table")
        assert cells == [
            str(row["day"]),
            row["channel"],
            row["condition"].replace("_", " "),
            format_number(row["audience"]),
            format_number(row["moved_by_quiet_hours"]),
            format_number(row["conditional"]),
        ]
    # Suppressed and capped contacts by reason and step: the left-out rows.
    left = stored.rows("activation_left_out", name)
    reasons = {r["reason"].removeprefix("capped: ") for r in left} - {"holdout"}
    for reason in reasons:
        cells = _row_cells(page, reason, "reasons-table")
        counts = [
            sum(
                1
                for r in left
                if r["reason"].removeprefix("capped: ") == reason
                and r["step"] in (None, row["step"])
            )
            for row in steps
        ]
        assert cells[1:] == [format_number(n) for n in counts], reason
    # The holdout per segment: the activation_holdouts rows.
    groups = Counter((r["segment"], r["group"]) for r in stored.rows("activation_holdouts", name))
    for segment in {s for s, _ in groups}:
        cells = _row_cells(page, segment, "holdout-table")
        treated, held = groups[segment, "treatment"], groups[segment, "holdout"]
        assert cells == [format_number(treated + held), format_number(treated), format_number(held)]
    assert sum(groups.values()) == campaign["eligible"]
    # The first 20 sends, in the plan's order, and no contact details.
    audience = stored.rows("activation_audiences", name)
    shown = re.findall(
        r'<th scope="row"><a href="/customers/([^"]+)">', _table(page, "audience-table")
    )
    assert shown == [r["customer_id"] for r in audience[:20]]
    assert f"(first {min(20, len(audience))} of {format_number(len(audience))} sends)" in page
    assert "@example.invalid" not in page  # the demo's customers have e-mail addresses


def test_the_demo_plan_shows_every_kind_of_stage(client: TestClient, stored: Stored) -> None:
    page = client.get("/campaigns/winback").text
    assert _row_cells(page, "email: 1 per week", "reasons-table")[0] == "capped"
    assert _row_cells(page, "claimed", "reasons-table")[0] == "suppressed (campaign)"
    assert _row_cells(page, "no_consent", "reasons-table")[0] == "suppressed (step)"
    assert len(re.findall(r'class="chart" id="funnel-\d"', page)) == 4
    conditional = _row_cells(page, "4", "steps-table")[5]
    assert conditional == format_number(stored.campaign("winback")["steps"][3]["audience"])
    assert conditional != "0"
    loyal = client.get("/campaigns/loyal").text
    assert _row_cells(loyal, "1", "steps-table")[4] != "0"  # moved by the quiet hours


def test_a_campaign_name_is_escaped_in_the_page_and_quoted_in_its_links(
    client: TestClient,
) -> None:
    listing = client.get("/campaigns").text
    link = "/campaigns/%3Cscript%3Ealert%28%22x%22%29%3C%2Fscript%3E%20VIP%20%2F%20spring"
    assert f'<a href="{link}?run=' in listing
    assert str(escape(ODD_NAME)) in listing
    page = client.get(link)
    assert page.status_code == 200
    for text in (listing, page.text):
        assert "<script>alert" not in text and 'alert("x")' not in text
    assert f"<title>Campaign: {escape(ODD_NAME)} · segvalue</title>" in page.text
    # The charts' figures hold no markup either (JSON escapes inside <script>).
    assert "\\u003cscript" not in page.text.split('id="funnel-1-figure">')[1].split("</script>")[0]


def test_an_unknown_campaign_is_the_not_found_page(client: TestClient, stored: Stored) -> None:
    for path in ("/campaigns/nope", "/campaigns/%3Cscript%3Ealert(1)%3C/script%3E"):
        response = client.get(path)
        assert response.status_code == 404, path
        assert "<h1>Not found</h1>" in response.text
        assert "<script>alert" not in response.text
    missing = client.get("/campaigns/nope").text
    assert f"the activation of run {stored.run_id} has no campaign &#39;nope&#39;" in missing
    assert client.get("/campaigns?run=20000101T000000Z-000000").status_code == 404


def test_the_navigation_links_the_campaigns(client: TestClient, stored: Stored) -> None:
    for path in ("/", "/campaigns", "/campaigns/loyal"):
        page = client.get(path).text
        current = path != "/"
        found = re.search(
            rf'<a href="/campaigns\?run={stored.run_id}"\s*'
            rf"{'aria-current=.page.' if current else ''}>Campaigns</a>",
            page,
        )
        assert found is not None, path
    assert 'href="/campaigns?run=' in client.get("/").text


def test_a_run_without_activation_shows_the_missing_page(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text(
        "order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n2,b,2024-01-09,7\n"
    )
    (tmp_path / "segvalue.yaml").write_text("sources: {orders: {path: o.csv}}\n")
    with Project.from_yaml(tmp_path / "segvalue.yaml") as project:
        run = project.run()
        client = TestClient(create_dashboard_app(project))
        for path in ("/campaigns", "/campaigns/winback"):
            response = client.get(path)
            assert response.status_code == 200, path
            assert "<h1>Not in this run</h1>" in response.text
            assert f"run {run.run_id} holds no activation: run segvalue activate" in response.text


def test_a_new_activation_of_the_run_is_shown_at_once(
    config: Path, demo: Project, client: TestClient, stored: Stored
) -> None:
    """``segvalue activate`` replaces a run's activation: the kept pages follow it."""
    before = _row_cells(client.get("/campaigns").text, "loyal", "campaigns-table")
    assert before[5] == format_number(stored.campaign("loyal")["eligible"])
    demo.close()  # the dashboard closes the store after each page: a writer may open it
    try:
        _activate(config, {**ACTIVATION, "global_control": {"share": 0.3}})
        again = Stored(config)
        assert again.campaign("loyal")["eligible"] < stored.campaign("loyal")["eligible"]
        after = _row_cells(client.get("/campaigns").text, "loyal", "campaigns-table")
        assert after[5] == format_number(again.campaign("loyal")["eligible"])
        figure = _figure(client.get("/campaigns/loyal").text, "funnel-1")
        assert list(zip(figure["data"][0]["y"], figure["data"][0]["x"], strict=True)) == (
            again.funnel("loyal", 1)
        )
    finally:
        demo.close()
        _activate(config, ACTIVATION)  # as the other tests expect it
    restored = _row_cells(client.get("/campaigns").text, "loyal", "campaigns-table")
    assert restored == before


# ---------------------------------------------------------------- in Chromium


@pytest.fixture(scope="module")
def served(demo: Project, serve_app: Any) -> Iterator[str]:
    with serve_app(create_dashboard_app(demo)) as url:
        yield url


def _browser_pages(stored: Stored) -> list[tuple[str, str, list[int]]]:
    """(name, path, bars of each funnel chart) of each campaign page."""
    pages = [("campaigns", "/campaigns", [])]
    for index, campaign in enumerate(stored.document["campaigns"]):
        bars = [len(stored.funnel(campaign["name"], s["step"])) for s in campaign["steps"]]
        pages.append((f"campaign-{index}", _page_path(campaign["name"]), bars))
    return pages


class _Watched:
    """A browser page with its console errors, page errors, dialogs and requests recorded."""

    def __init__(self, browser: Any, base: str, **context: Any) -> None:
        self.base = base
        self.context = browser.new_context(**context)
        self.page = self.context.new_page()
        self.errors: list[str] = []
        self.requests: list[str] = []
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", lambda d: (self.errors.append(f"dialog: {d.message}"), d.dismiss()))
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


def test_campaign_pages_draw_their_funnels_in_chromium(
    stored: Stored, served: str, browser: Any, tmp_path: Path
) -> None:
    watched = _Watched(browser, served, viewport={"width": 1280, "height": 900})
    try:
        for name, path, bars in _browser_pages(stored):
            page = watched.open(path)
            charts = page.locator(".chart")
            assert charts.count() == len(bars), name
            for index, expected in enumerate(bars):
                chart = charts.nth(index)
                chart.locator(".main-svg").first.wait_for(state="attached", timeout=15_000)
                # A bar per stage of the funnel, drawn.
                assert chart.locator(".bars .point").count() == expected, (name, index)
            page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)
        # From the list to a campaign by its link, the odd name's too.
        page = watched.open("/campaigns")
        with page.expect_navigation(wait_until="load"):
            page.get_by_role("link", name=ODD_NAME).click()
        assert page.locator("h1").inner_text() == f"Campaign {ODD_NAME}"
        page.locator("#funnel-1 .main-svg").first.wait_for(state="attached", timeout=15_000)
        watched.check_clean()
    finally:
        watched.close()


def test_campaign_pages_fit_a_phone_screen(
    stored: Stored, served: str, browser: Any, tmp_path: Path
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
        for name, path, bars in _browser_pages(stored):
            page = watched.open(path)
            if bars:
                page.locator(".chart .main-svg").first.wait_for(state="attached")
            overflow = page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, f"{name} overflows a phone screen by {overflow}px"
            page.screenshot(path=str(tmp_path / f"phone-{name}.png"), full_page=True)
        watched.check_clean()
    finally:
        watched.close()
