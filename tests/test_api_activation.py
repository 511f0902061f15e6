"""The activation routes of the REST API, in process, against the stored tables.

One 1,500-customer demo run for the module, activated with three campaign plans: one
with two e-mail steps in one week (the second capped by a weekly e-mail cap) and a
condition, one with an app push in the quiet hours, and one whose name is free text with
markup, a space and a slash in it. Every count the routes answer is checked against the
tables ``segvalue activate`` stored (``activation_steps``, ``activation_left_out``,
``activation_holdouts``, ``activation_audiences``).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx2 as httpx
import pyarrow.compute as pc
import pytest
import yaml
from fastapi.testclient import TestClient

from segvalue.api import create_app
from segvalue.api.problems import PROBLEM_BASE, json_ready
from segvalue.api.routes import AUDIENCE_COLUMNS
from segvalue.pipeline import run_demo
from segvalue.project import Project, RunView

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
            # The week after, after the data's end, with a condition: conditional sends.
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
ACTIVATION = {
    "global_control": {"share": 0.05},
    "caps": [{"channel": "email", "per": "week", "max": 1}],
    "quiet_hours": {"app_push": {"start": "21:00", "end": "08:00"}},
}
PROBLEM = "application/problem+json"


class Activated:
    """The module's activated run, its app and a read key."""

    def __init__(self, root: Path) -> None:
        _, self.config = run_demo(n_customers=1500, out_dir=root / "demo")
        config = yaml.safe_load(self.config.read_text())
        config["campaigns"] = CAMPAIGNS
        config["activation"] = ACTIVATION
        self.config.write_text(yaml.safe_dump(config))
        self.project = Project.from_yaml(self.config)
        self.project.activate()
        self.key, _ = self.project.keys.create("read", name="reader")
        view = self.project.runs.latest()
        assert view is not None
        self.run_id = view.run_id
        self.app = create_app(self.project)
        self.client = TestClient(self.app)

    def get(self, path: str, **params: Any) -> httpx.Response:
        return self.client.get(path, params=params, headers={"Authorization": f"Bearer {self.key}"})

    def view(self) -> RunView:
        """The run, read through a project of the test's own."""
        with Project.from_yaml(self.config) as reader:
            view = reader.runs.get(self.run_id)
            for name in (
                "activation_steps",
                "activation_left_out",
                "activation_holdouts",
                "activation_audiences",
            ):
                view.table(name)  # read now: the project closes
            view.document("activation")
        return view


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Activated]:
    state = Activated(tmp_path_factory.mktemp("api-activation"))
    with state.client:
        yield state
    state.project.close()


@pytest.fixture(scope="module")
def stored(demo: Activated) -> RunView:
    return demo.view()


def _campaign_path(name: str) -> str:
    return "/api/v1/activation/campaigns/" + quote(name, safe="")


def _rows(view: RunView, table: str, name: str) -> list[dict[str, Any]]:
    rows = view.table(table)
    return list(rows.filter(pc.equal(rows.column("campaign"), name)).to_pylist())


def _problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    doc: dict[str, Any] = response.json()
    assert doc["status"] == status and doc["type"] == PROBLEM_BASE + "not-found"
    return doc


def test_the_campaigns_are_the_stored_activation(demo: Activated, stored: RunView) -> None:
    doc = demo.get("/api/v1/activation/campaigns").json()
    document = stored.document("activation")
    assert doc == json_ready({"run_id": demo.run_id, **document})
    assert [c["name"] for c in doc["campaigns"]] == ["loyal", ODD_NAME, "winback"]  # priority
    assert doc["global_control"] > 0 and doc["caps"] == ["email: 1 per week"]
    assert doc["customers"] == 1500 and doc["default_time_zone"]
    # Each step's counts are the activation_steps row.
    steps = {(r["campaign"], r["step"]): r for r in stored.table("activation_steps").to_pylist()}
    assert len(steps) == sum(len(c["steps"]) for c in doc["campaigns"]) == 6
    for campaign in doc["campaigns"]:
        for step in campaign["steps"]:
            row = steps[campaign["name"], step["step"]]
            for key in ("members", "eligible", "holdout", "audience", "moved_by_quiet_hours"):
                assert step[key] == row[key], (campaign["name"], step["step"], key)
            assert sum(step["suppressed"].values()) == row["suppressed"]
            assert sum(step["capped"].values()) == row["capped"]
    # The same with ?run=, and the demo's plan did what the tests below rely on.
    assert demo.get("/api/v1/activation/campaigns", run=demo.run_id).json() == doc
    winback = next(c for c in doc["campaigns"] if c["name"] == "winback")
    assert set(winback["steps"][2]["capped"]) == {"email: 1 per week"}
    assert winback["steps"][2]["capped"]["email: 1 per week"] > 0
    assert winback["steps"][3]["conditional"] == winback["steps"][3]["audience"] > 0
    loyal = next(c for c in doc["campaigns"] if c["name"] == "loyal")
    assert loyal["steps"][0]["moved_by_quiet_hours"] > 0


@pytest.mark.parametrize("name", ["winback", "loyal", ODD_NAME])
def test_a_campaign_has_its_funnel_and_holdouts_from_the_stored_tables(
    demo: Activated, stored: RunView, name: str
) -> None:
    response = demo.get(_campaign_path(name))
    assert response.status_code == 200, response.text
    doc = response.json()
    assert doc["run_id"] == demo.run_id and doc["campaign"]["name"] == name
    left = _rows(stored, "activation_left_out", name)
    # Campaign-level suppressions: the left-out rows without a step (the holdout apart).
    at_campaign = Counter(r["reason"] for r in left if r["step"] is None)
    holdout = at_campaign.pop("holdout", 0)
    assert doc["campaign"]["suppressed"] == dict(at_campaign)
    assert doc["campaign"]["holdout"] == holdout
    sent = Counter(r["step"] for r in _rows(stored, "activation_audiences", name))
    rows = {r["step"]: r for r in _rows(stored, "activation_steps", name)}
    assert [s["step"] for s in doc["steps"]] == sorted(rows) == [f["step"] for f in doc["funnel"]]
    for funnel in doc["funnel"]:
        number = funnel["step"]
        stages = funnel["stages"]
        kinds = [s["stage"] for s in stages]
        assert kinds[0] == "members" and kinds[-1] == "audience" and "eligible" in kinds
        assert kinds.index("eligible") < kinds.index("holdout")
        count = {(s["stage"], s["reason"]): s["customers"] for s in stages}
        row = rows[number]
        assert count["members", None] == row["members"]
        assert count["eligible", None] == row["eligible"]
        assert count["holdout", None] == row["holdout"] == holdout
        assert count["audience", None] == row["audience"] == sent[number]
        # Each stage's count is its left-out rows: the step's own, and the campaign's.
        own = Counter(r["reason"] for r in left if r["step"] == number)
        expected = {("suppressed", reason): n for reason, n in at_campaign.items()}
        for reason, n in own.items():
            if reason.startswith("capped: "):
                expected["capped", reason.removeprefix("capped: ")] = n
            else:
                expected["suppressed", reason] = n
        removed = {k: v for k, v in count.items() if k[0] in ("suppressed", "capped")}
        assert removed == expected, number
        assert sum(v for k, v in removed.items() if k[0] == "suppressed") == row["suppressed"]
        assert sum(v for k, v in removed.items() if k[0] == "capped") == row["capped"]
        # Every customer leaves at one stage at most: the counts add up, stage by stage.
        left_in = row["members"]
        for stage in stages:
            if stage["stage"] in ("suppressed", "holdout", "capped"):
                left_in -= stage["customers"]
            elif stage["stage"] == "eligible":
                assert left_in == row["eligible"]
            assert stage["remaining"] == left_in, (number, stage)
        assert left_in == row["audience"]
    # Holdout per segment: the activation_holdouts rows.
    groups = Counter((r["segment"], r["group"]) for r in _rows(stored, "activation_holdouts", name))
    assert {
        (h["segment"], g): h[g] for h in doc["holdouts"] for g in ("treatment", "holdout") if h[g]
    } == dict(groups)
    assert sum(h["eligible"] for h in doc["holdouts"]) == doc["campaign"]["eligible"]
    assert doc["plan"]["caps"] == ["email: 1 per week"] and "campaigns" not in doc["plan"]


def test_the_demo_plan_has_every_kind_of_stage(demo: Activated) -> None:
    """The funnels above cover campaign-level and step suppressions, caps and holdouts."""
    winback = demo.get(_campaign_path("winback")).json()
    kinds = {(s["stage"], s["reason"]) for f in winback["funnel"] for s in f["stages"]}
    assert {("suppressed", "claimed"), ("suppressed", "global_control")} <= kinds
    assert ("suppressed", "no_consent") in kinds and ("capped", "email: 1 per week") in kinds
    odd = demo.get(_campaign_path(ODD_NAME)).json()
    assert odd["campaign"]["holdout"] > 0 and odd["holdouts"][0]["segment"] == "cluster_3"


def test_the_audience_pages_through_the_stored_rows(demo: Activated, stored: RunView) -> None:
    expected = _rows(stored, "activation_audiences", "winback")
    first = demo.get(_campaign_path("winback") + "/audience").json()
    assert first["total"] == len(expected) > 250
    assert first["limit"] == 100 and first["offset"] == 0 and first["step"] is None
    assert len(first["rows"]) == 100
    pages: list[dict[str, Any]] = []
    for offset in range(0, len(expected), 120):
        page = demo.get(_campaign_path("winback") + "/audience", limit=120, offset=offset).json()
        assert page["total"] == len(expected) and page["offset"] == offset
        pages += page["rows"]
    assert pages == json_ready(expected)  # every row once, in the plan's order
    beyond = demo.get(_campaign_path("winback") + "/audience", offset=len(expected)).json()
    assert beyond["rows"] == [] and beyond["total"] == len(expected)
    # One step.
    second = [r for r in expected if r["step"] == 2]
    step = demo.get(_campaign_path("winback") + "/audience", step=2, limit=10_000).json()
    assert step["step"] == 2 and step["total"] == len(second)
    assert step["rows"] == json_ready(second)
    assert {r["channel"] for r in step["rows"]} == {"email"}
    assert not any(r["conditional"] for r in step["rows"])
    fourth = demo.get(_campaign_path("winback") + "/audience", step=4, limit=10_000).json()
    assert fourth["total"] > 0 and all(r["conditional"] for r in fourth["rows"])


def test_the_audience_holds_no_contact_details(demo: Activated) -> None:
    response = demo.get(_campaign_path("winback") + "/audience", limit=10_000)
    rows = response.json()["rows"]
    assert rows and all(list(r) == list(AUDIENCE_COLUMNS) for r in rows)
    # The demo's customers table has e-mail addresses and postal codes: none is sent.
    assert "@" not in response.text and "postal_code" not in response.text
    assert not {"email", "phone", "postal_code", "city"} & set(AUDIENCE_COLUMNS)


@pytest.mark.parametrize(
    ("params", "parameter"),
    [
        ({"limit": 0}, "query.limit"),
        ({"limit": 10_001}, "query.limit"),
        ({"offset": -1}, "query.offset"),
        ({"step": 0}, "query.step"),
        ({"step": "first"}, "query.step"),
    ],
)
def test_bad_pagination_is_a_422_problem(
    demo: Activated, params: dict[str, Any], parameter: str
) -> None:
    response = demo.get(_campaign_path("winback") + "/audience", **params)
    assert response.status_code == 422 and response.headers["content-type"].startswith(PROBLEM)
    assert response.json()["parameter"] == parameter


def test_a_name_with_markup_a_space_and_a_slash_is_one_path_segment(
    demo: Activated, stored: RunView
) -> None:
    doc = demo.get(_campaign_path(ODD_NAME)).json()
    assert doc["campaign"]["name"] == ODD_NAME
    audience = demo.get(_campaign_path(ODD_NAME) + "/audience", limit=10_000).json()
    assert audience["campaign"] == ODD_NAME
    assert audience["total"] == len(_rows(stored, "activation_audiences", ODD_NAME)) > 0
    assert {r["campaign"] for r in audience["rows"]} == {ODD_NAME}


@pytest.mark.parametrize(
    ("path", "params", "parameter", "words"),
    [
        ("/api/v1/activation/campaigns/nope", {}, "name", "has no campaign 'nope'"),
        ("/api/v1/activation/campaigns/nope/audience", {}, "name", "has no campaign 'nope'"),
        ("/api/v1/activation/campaigns/loyal/audience", {"step": 2}, "step", "has no step 2"),
        ("/api/v1/activation/campaigns", {"run": "nope"}, "run", "no run 'nope'"),
        ("/api/v1/activation/campaigns/loyal", {"run": "nope"}, "run", "no run 'nope'"),
    ],
)
def test_unknown_campaigns_steps_and_runs_are_404_problems(
    demo: Activated, path: str, params: dict[str, Any], parameter: str, words: str
) -> None:
    doc = _problem(demo.get(path, **params), 404)
    assert doc["parameter"] == parameter and words in doc["detail"]


def test_unknown_campaign_lists_the_campaigns(demo: Activated) -> None:
    doc = _problem(demo.get("/api/v1/activation/campaigns/nope"), 404)
    assert f"(campaigns: loyal, {ODD_NAME}, winback)" in doc["detail"]


def test_the_routes_need_a_key(demo: Activated) -> None:
    for path in ("/api/v1/activation/campaigns", _campaign_path("loyal") + "/audience"):
        response = demo.client.get(path)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer"


def test_a_run_without_activation_is_a_404_problem_saying_what_to_run(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text(
        "order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n2,b,2024-01-09,7\n"
    )
    (tmp_path / "segvalue.yaml").write_text("sources: {orders: {path: o.csv}}\n")
    with Project.from_yaml(tmp_path / "segvalue.yaml") as project:
        run = project.run().run_id
        key, _ = project.keys.create("read")
        with TestClient(create_app(project)) as client:
            auth = {"Authorization": f"Bearer {key}"}
            for path in (
                "/api/v1/activation/campaigns",
                "/api/v1/activation/campaigns/winback",
                "/api/v1/activation/campaigns/winback/audience",
            ):
                doc = _problem(client.get(path, headers=auth), 404)
                assert doc["parameter"] == "run", path
                assert doc["detail"] == f"run {run} holds no activation: run segvalue activate"
