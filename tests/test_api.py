"""The REST API in process: every route's success, 401, 403, 404, 422, one problem shape.

One 1,500-customer demo store for the module, with three runs: the demo (as of
2025-12-31), one as of 2025-09-30, and the demo's config again, which therefore compares
with the September run (segment migration). ``segvalue serve`` is started once as a
real process.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2 as httpx
import pyarrow.compute as pc
import pytest
import yaml
from fastapi.testclient import TestClient
from openapi_spec_validator import validate

from segvalue.api import create_app
from segvalue.api.problems import PROBLEM_BASE
from segvalue.cli.main import cli
from segvalue.config import load_config
from segvalue.pipeline import run_demo
from segvalue.project import Project

SRC = Path(__file__).parents[1] / "src"
PROBLEM = "application/problem+json"
CUSTOMER = "C0000002"
CAMPAIGNS = """
campaigns:
  - {name: winback, segments: [cluster_1, cluster_2], objective: win_back, start: 2026-01-05,
     steps: [{channel: primary}, {channel: email, delay_days: 3}]}
"""


class Demo:
    """The module's store, project, app, keys and runs."""

    def __init__(self, root: Path) -> None:
        _, self.config = run_demo(n_customers=1500, out_dir=root / "demo")
        earlier = yaml.safe_load(self.config.read_text())
        earlier["as_of"] = "2025-09-30"
        self.earlier_config = self.config.with_name("earlier.yaml")
        self.earlier_config.write_text(yaml.safe_dump(earlier))
        with Project.from_yaml(self.earlier_config) as project:
            self.earlier_run = project.run().run_id
        # The latest run is activated (campaign plans): the activation routes read it.
        self.config.write_text(self.config.read_text() + CAMPAIGNS)
        self.project = Project.from_yaml(self.config)
        self.latest_run = self.project.run().run_id
        self.project.activate()
        self.read_key, self.read_info = self.project.keys.create("read", name="reader")
        self.write_key, _ = self.project.keys.create("write", name="writer")
        self.revoked_key, revoked = self.project.keys.create("read", name="gone")
        self.project.keys.revoke(revoked.key_id)
        # The app's project is the app's: a release thread closes its store when idle.
        # The tests read what they expect through a project of their own.
        self.reader = Project.from_yaml(self.config)
        self.app = create_app(self.project)
        self.client = TestClient(self.app)

    def get(self, path: str, key: str | None = "read", **kwargs: Any) -> httpx.Response:
        return self.client.get(path, headers=self._auth(key), **kwargs)

    def post(self, path: str, body: Any, key: str | None = "read") -> httpx.Response:
        return self.client.post(path, json=body, headers=self._auth(key))

    def _auth(self, key: str | None) -> dict[str, str]:
        keys = {"read": self.read_key, "write": self.write_key, "revoked": self.revoked_key}
        return {} if key is None else {"Authorization": f"Bearer {keys.get(key, key)}"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Demo]:
    state = Demo(tmp_path_factory.mktemp("api"))
    with state.client:
        yield state
    state.project.close()
    state.reader.close()


def assert_problem(
    response: httpx.Response, status: int, kind: str | None = None
) -> dict[str, Any]:
    """The response is an RFC 9457 problem of ``status`` (and of type ``kind``)."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    doc: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail"} <= set(doc)
    assert doc["status"] == status and doc["title"] and doc["detail"]
    assert doc["type"] == "about:blank" or doc["type"].startswith(PROBLEM_BASE)
    if kind is not None:
        assert doc["type"] == PROBLEM_BASE + kind
    return doc


# Every /api/v1 route (method, path, body): each needs a key.
ROUTES: list[tuple[str, str, Any]] = [
    ("GET", "/api/v1/runs", None),
    ("GET", "/api/v1/runs/{run}", None),
    ("GET", "/api/v1/segments", None),
    ("GET", "/api/v1/segments/clusters/cluster_1", None),
    ("GET", "/api/v1/kpis", None),
    ("GET", f"/api/v1/customers/{CUSTOMER}", None),
    ("GET", "/api/v1/measurement/attribution", None),
    ("GET", "/api/v1/measurement/sample-size?effect=0.02&baseline=0.1", None),
    ("GET", "/api/v1/measurement/stored-attribution?model=markov", None),
    ("GET", "/api/v1/measurement/channels", None),
    ("GET", "/api/v1/measurement/experiments?outcome=converted", None),
    ("POST", "/api/v1/budget/plan", {}),
    ("POST", "/api/v1/budget/what-if", {"move": "email:search_ads:0.2"}),
    ("GET", "/api/v1/activation/campaigns", None),
    ("GET", "/api/v1/activation/campaigns/winback", None),
    ("GET", "/api/v1/activation/campaigns/winback/audience?step=2&limit=10", None),
]
# Routes that store something: a write key only (their successes: tests/test_events.py).
WRITE_ROUTES: list[tuple[str, str, Any]] = [
    (
        "POST",
        "/api/v1/events",
        {
            "type": "order",
            "customer_id": CUSTOMER,
            "order_id": "T-1",
            "order_ts": "2025-12-31T10:00:00",
            "amount": 10.0,
        },
    ),
]


def _call(demo: Demo, method: str, path: str, body: Any, key: str | None) -> httpx.Response:
    path = path.replace("{run}", demo.latest_run)
    if method == "GET":
        return demo.get(path, key=key)
    return demo.post(path, body, key=key)


def test_the_routes_list_is_every_api_route(demo: Demo) -> None:
    spec = demo.client.get("/api/v1/openapi.json").json()
    served = {
        (method.upper(), path)
        for path, item in spec["paths"].items()
        if path.startswith("/api/v1/")
        for method in item
    }
    listed = {
        (
            method,
            path.partition("?")[0]
            .replace("clusters/cluster_1", "{scheme}/{segment}")
            .replace("campaigns/winback", "campaigns/{name}")
            .replace("{run}", "{run_id}")
            .replace(CUSTOMER, "{customer_id}"),
        )
        for method, path, _ in ROUTES + WRITE_ROUTES
    }
    assert served == listed


@pytest.mark.parametrize(("method", "path", "body"), ROUTES, ids=[r[1] for r in ROUTES])
def test_every_route_answers_a_read_key(demo: Demo, method: str, path: str, body: Any) -> None:
    response = _call(demo, method, path, body, "read")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.json()


@pytest.mark.parametrize(
    ("method", "path", "body"), ROUTES + WRITE_ROUTES, ids=[r[1] for r in ROUTES + WRITE_ROUTES]
)
@pytest.mark.parametrize(
    "key", [None, "Basic dXNlcjpwYXNz", "svk_nope_secret", "revoked", "not-a-key"]
)
def test_every_route_refuses_a_missing_unknown_or_revoked_key(
    demo: Demo, method: str, path: str, body: Any, key: str | None
) -> None:
    path = path.replace("{run}", demo.latest_run)
    if key is not None and key.startswith("Basic "):
        headers = {"Authorization": key}
        response = demo.client.request(method, path, json=body, headers=headers)
    else:
        response = _call(demo, method, path, body, key)
    doc = assert_problem(response, 401, "unauthorized")
    assert response.headers["www-authenticate"] == "Bearer"
    assert "API key" in doc["detail"]


def test_a_tampered_key_is_refused(demo: Demo) -> None:
    # The right id with another secret: the hash comparison refuses it.
    prefix, key_id, secret = demo.read_key.split("_", 2)
    tampered = f"{prefix}_{key_id}_{secret[:-1]}{'A' if secret[-1] != 'A' else 'B'}"
    assert demo.reader.keys.verify(tampered) is None
    assert_problem(demo.get("/api/v1/runs", key=tampered), 401)
    assert demo.reader.keys.verify(demo.read_key) == demo.read_info


def test_a_read_key_is_forbidden_a_write_route(demo: Demo) -> None:
    """POST events stores: a read key gets 403 (and nothing is stored), a write key reads."""
    for _, path, body in WRITE_ROUTES:
        doc = assert_problem(demo.post(path, body, key="read"), 403, "forbidden")
        assert "scope read" in doc["detail"] and "needs write" in doc["detail"]
    assert demo.reader.segment_events() == []
    assert demo.reader.customer(CUSTOMER) == demo.reader.runs.latest().customer(CUSTOMER)
    # A write key reads as well.
    assert demo.get("/api/v1/runs", key="write").status_code == 200


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/segments",
        "/api/v1/segments/clusters/cluster_1",
        "/api/v1/kpis",
        f"/api/v1/customers/{CUSTOMER}",
    ],
)
def test_every_run_route_takes_run_and_404s_an_unknown_one(demo: Demo, path: str) -> None:
    doc = assert_problem(demo.get(path, params={"run": "nope"}), 404, "not-found")
    assert doc["parameter"] == "run" and "no run 'nope'" in doc["detail"]
    assert demo.get(path, params={"run": demo.earlier_run}).json()
    latest = demo.get(path).json()
    assert latest == demo.get(path, params={"run": demo.latest_run}).json()


@pytest.mark.parametrize(
    ("path", "parameter"),
    [
        ("/api/v1/runs/nope", "run"),
        ("/api/v1/segments/nope/x", "scheme"),
        ("/api/v1/segments/clusters/nope", "segment"),
        ("/api/v1/customers/nobody", "customer_id"),
    ],
)
def test_unknown_things_are_404_problems_naming_the_parameter(
    demo: Demo, path: str, parameter: str
) -> None:
    doc = assert_problem(demo.get(path), 404, "not-found")
    assert doc["parameter"] == parameter


def test_unknown_routes_and_methods_are_problems_too(demo: Demo) -> None:
    assert_problem(demo.get("/api/v1/nope"), 404, "not-found")
    assert_problem(demo.get("/nope", key=None), 404, "not-found")
    wrong = demo.client.delete("/api/v1/runs", headers=demo._auth("read"))
    assert_problem(wrong, 405, "method-not-allowed")
    assert wrong.headers["allow"] == "GET"


@pytest.mark.parametrize(
    ("method", "path", "body", "parameter"),
    [
        ("GET", "/api/v1/runs?status=bogus", None, "query.status"),
        ("POST", "/api/v1/budget/plan", {"total": -1}, "body.total"),
        ("POST", "/api/v1/budget/plan", {"objective": "fame"}, "body.objective"),
        ("POST", "/api/v1/budget/plan", {"totl": 5}, "body.totl"),
        ("POST", "/api/v1/budget/what-if", {}, "body.move"),
        ("POST", "/api/v1/budget/what-if", {"move": "email"}, "move"),
        ("POST", "/api/v1/budget/what-if", {"move": "email:nowhere:0.2"}, None),
    ],
)
def test_invalid_requests_are_422_problems_naming_the_field(
    demo: Demo, method: str, path: str, body: Any, parameter: str | None
) -> None:
    response = _call(demo, method, path, body, "read")
    doc = assert_problem(response, 422)
    assert doc.get("parameter") == parameter
    if parameter is not None and parameter.startswith(("body.", "query.")):
        assert doc["errors"][0]["location"] == parameter


def test_what_the_project_cannot_do_is_a_400_problem(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text("order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n")
    (tmp_path / "segvalue.yaml").write_text("sources: {orders: {path: o.csv}}\n")
    with Project.from_yaml(tmp_path / "segvalue.yaml") as project:
        key, _ = project.keys.create("read")
        with TestClient(create_app(project)) as client:
            auth = {"Authorization": f"Bearer {key}"}
            plan = client.post("/api/v1/budget/plan", json={}, headers=auth)
            runs = client.get("/api/v1/runs", headers=auth).json()
            kpis = client.get("/api/v1/kpis", headers=auth)
    doc = assert_problem(plan, 400, "project-configuration")
    assert "channel_spend" in doc["detail"]
    assert runs == {"runs": []}  # keys, but no run yet
    assert assert_problem(kpis, 404)["parameter"] == "run"


def test_a_body_that_is_not_json_is_a_422_problem(demo: Demo) -> None:
    response = demo.client.post(
        "/api/v1/budget/plan",
        content=b"{not json",
        headers={**demo._auth("read"), "Content-Type": "application/json"},
    )
    assert_problem(response, 422, "invalid-request")


def test_a_body_over_the_limit_is_a_413_problem(demo: Demo) -> None:
    big = {"move": "x" * 1_100_000}
    doc = assert_problem(demo.post("/api/v1/budget/what-if", big), 413, "request-too-large")
    assert doc["parameter"] == "serve.max_body_bytes"

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        yield b'{"move": "'
        for _ in range(20):
            yield b"x" * 100_000
        yield b'"}'

    streamed = demo.client.post(
        "/api/v1/budget/what-if",
        content=chunks(),
        headers={**demo._auth("read"), "Content-Type": "application/json"},
    )
    assert_problem(streamed, 413)


def test_a_crash_is_a_500_problem_without_the_cause(
    demo: Demo, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(status: str | None = None) -> list[Any]:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(demo.project.runs, "list", broken)
    with TestClient(create_app(demo.project), raise_server_exceptions=False) as client:
        response = client.get("/api/v1/runs", headers=demo._auth("read"))
    doc = assert_problem(response, 500, "internal-error")
    assert "secret" not in response.text and "log" in doc["detail"]


def test_health_is_open(demo: Demo) -> None:
    response = demo.client.get("/health")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "latest_run": demo.latest_run,
        "store": "reachable",
    }


def test_openapi_validates_and_documents_auth_and_problems(demo: Demo) -> None:
    response = demo.client.get("/api/v1/openapi.json")
    assert response.status_code == 200
    spec = response.json()
    validate(spec)
    assert {"/api/v1/runs", "/api/v1/customers/{customer_id}"} <= set(spec["paths"])
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    get_customer = spec["paths"]["/api/v1/customers/{customer_id}"]["get"]
    assert get_customer["security"] == [{"HTTPBearer": []}]
    assert {"401", "404", "422"} <= set(get_customer["responses"])
    ok = get_customer["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok["$ref"] == "#/components/schemas/Customer"
    assert "clv_upper" in spec["components"]["schemas"]["Customer"]["properties"]
    assert demo.client.get("/docs").status_code == 404  # no docs UI loading a CDN


def test_runs(demo: Demo) -> None:
    runs = demo.get("/api/v1/runs").json()["runs"]
    expected = [r.to_dict() for r in demo.reader.runs.list()]
    assert runs == expected and len(runs) == 3
    assert [r["run_id"] for r in demo.get("/api/v1/runs?status=failed").json()["runs"]] == []
    one = demo.get(f"/api/v1/runs/{demo.latest_run}").json()
    assert one["run_id"] == demo.latest_run and one["status"] == "complete"
    assert "segment_migration" in one["tables"] and "scorer" in one["documents"]


def test_segments_carry_sizes_and_the_kpi_schemes_value(demo: Demo) -> None:
    doc = demo.get("/api/v1/segments").json()
    view = demo.reader.runs.latest()
    assert view is not None
    assert doc["run_id"] == demo.latest_run and doc["kpi_scheme"] == "clusters"
    assert set(doc["schemes"]) == set(view.info.schemes)
    customers = view.info.row_counts["customers"]
    for name, scheme in doc["schemes"].items():
        if scheme["mode"] != "tags":
            assert sum(s["customers"] for s in scheme["segments"]) == customers, name
    kpis = {r["segment"]: r for r in view.segment_kpis().to_pylist()}
    ranks = {r["segment"]: r for r in view.priorities().to_pylist()}
    for segment in doc["schemes"]["clusters"]["segments"]:
        row = kpis[segment["segment"]]
        assert segment["clv_mean"] == pytest.approx(row["clv_mean"])
        assert segment["churn_risk"] == pytest.approx(row["churn_risk"])
        assert segment["roi"] == pytest.approx(row["roi"])
        assert segment["priority_rank"] == ranks[segment["segment"]]["rank"]
    behaviour = doc["schemes"]["behaviour"]["segments"]
    assert all(s["clv_mean"] is None and s["priority_rank"] is None for s in behaviour)


def test_a_segment_has_kpis_with_intervals_profile_persona_and_migration(demo: Demo) -> None:
    doc = demo.get("/api/v1/segments/clusters/cluster_1").json()
    view = demo.reader.runs.latest()
    assert view is not None
    row = next(r for r in view.segment_kpis().to_pylist() if r["segment"] == "cluster_1")
    clv = doc["kpis"]["clv_mean"]
    assert clv["value"] == pytest.approx(row["clv_mean"])
    assert clv["lower"] == pytest.approx(row["clv_mean_lower"])
    assert clv["lower"] < clv["value"] < clv["upper"]
    assert {s["kpi"] for s in doc["kpi_status"]} and doc["priority"]["segment"] == "cluster_1"
    assert doc["profile"]["summary"]["customers"] == doc["customers"]
    assert doc["profile"]["numeric"] and doc["profile"]["attributes"]
    assert doc["persona"]["segment"] == "cluster_1"
    # Migration since the September run: lifecycle stages move as three months pass.
    stage = demo.get("/api/v1/segments/lifecycle/active").json()
    matrix = [
        r
        for r in view.table("segment_migration").to_pylist()
        if r["scheme"] == "lifecycle" and r["to_segment"] == "active"
    ]
    moved_in = {r["from_segment"]: r["customers"] for r in matrix if r["from_segment"] != "active"}
    assert {r["from_segment"]: r["customers"] for r in stage["migration"]["in"]} == moved_in
    assert sum(moved_in.values()) > 0
    assert all(r["from_segment"] == "active" for r in stage["migration"]["out"])
    # A segment name with a space and a comma, URL-encoded.
    browsers = demo.get("/api/v1/segments/behaviour/browsers%2C%20not%20buyers").json()
    assert browsers["segment"] == "browsers, not buyers" and browsers["kpis"] is None


def test_kpis(demo: Demo) -> None:
    doc = demo.get("/api/v1/kpis").json()
    view = demo.reader.runs.latest()
    assert view is not None
    assert doc["scheme"] == "clusters" and doc["as_of"] == "2025-12-31"
    assert doc["segments"][0]["segment"] == "all customers"
    assert len(doc["segments"]) == view.segment_kpis().num_rows
    assert len(doc["status"]) == view.kpi_status().num_rows
    assert [p["segment"] for p in doc["priorities"]] == view.priorities().column(
        "segment"
    ).to_pylist()
    repeat = doc["segments"][0]["kpis"]["repeat_rate"]
    assert repeat["lower"] < repeat["value"] < repeat["upper"] and repeat["n"] == 1500


def test_a_customer_is_their_stored_row_and_memberships(demo: Demo) -> None:
    doc = demo.get(f"/api/v1/customers/{CUSTOMER}").json()
    view = demo.reader.runs.latest()
    assert view is not None
    scores = view.customer_scores()
    row = scores.filter(pc.equal(scores.column("customer_id"), CUSTOMER)).to_pylist()[0]
    assert doc["customer_id"] == CUSTOMER and doc["as_of"] == "2025-12-31"
    for name in ("probability_alive", "churn_risk", "expected_purchases", "clv"):
        assert doc[name] == pytest.approx(row[name])
    assert doc["clv_lower"] <= doc["clv"] <= doc["clv_upper"]
    assert {"orders", "frequency", "recency", "T", "monetary_value"} <= set(doc["features"])
    assert not {"clv", "probability_alive", "customer_id"} & set(doc["features"])
    assert doc["features"]["orders"] == row["orders"]
    assert doc["features"]["first_purchase"] == row["first_purchase"].isoformat()
    members = view.memberships()
    mine = members.filter(pc.equal(members.column("customer_id"), CUSTOMER)).to_pylist()
    assert set(doc["memberships"]) == set(view.info.schemes)
    for member in mine:
        held = doc["memberships"][member["scheme"]]
        assert member["segment"] in held if isinstance(held, list) else held == member["segment"]
    assert isinstance(doc["memberships"]["lifestyle"], list)  # a tags scheme
    earlier = demo.get(f"/api/v1/customers/{CUSTOMER}", params={"run": demo.earlier_run})
    assert earlier.json()["as_of"] == "2025-09-30"


def test_budget_routes_equal_the_library(demo: Demo) -> None:
    plan, warnings = demo.reader.budget(total=500.0, objective="revenue")
    doc = demo.post("/api/v1/budget/plan", {"total": 500, "objective": "revenue"}).json()
    expected = {**plan.to_dict(), "warnings": warnings}
    assert set(doc) == set(expected) and doc["warnings"] == warnings
    assert doc["allocation"] == pytest.approx(expected["allocation"])
    assert doc["expected_response"] == pytest.approx(expected["expected_response"])
    assert sum(doc["allocation"].values()) == pytest.approx(500.0)
    scenario = demo.reader.what_if("email:search_ads:0.2").to_dict()
    got = demo.post("/api/v1/budget/what-if", {"move": "email:search_ads:0.2"}).json()
    assert got["change_value"] == pytest.approx(scenario["change_value"])
    assert got["scenario"] == pytest.approx(scenario["scenario"])


def test_access_log_names_the_route_not_the_customer(
    demo: Demo, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="segvalue.api.access"):
        demo.get(f"/api/v1/customers/{CUSTOMER}")
        demo.get("/api/v1/customers/C0000003")
    lines = [r.getMessage() for r in caplog.records if r.name == "segvalue.api.access"]
    assert len(lines) == 2
    assert all(line.startswith("GET /api/v1/customers/{customer_id} 200") for line in lines)
    assert not any("C00000" in line for line in lines)


def test_cors_is_off_unless_configured(demo: Demo) -> None:
    origin = {"Origin": "https://app.example.com"}
    plain = demo.client.get("/health", headers=origin)
    assert "access-control-allow-origin" not in plain.headers
    config = load_config(demo.config).model_copy(
        update={
            "serve": load_config(demo.config).serve.model_copy(
                update={"cors_origins": ["https://app.example.com"]}
            )
        }
    )
    with Project(config) as project, TestClient(create_app(project)) as client:
        allowed = client.get("/health", headers=origin)
        other = client.get("/health", headers={"Origin": "https://evil.example.com"})
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in other.headers


def test_the_store_is_released_when_idle_so_others_can_write_it(demo: Demo) -> None:
    """A DuckDB file is open for one writer or for readers: the API lets go of it when
    idle, and a key created meanwhile works at once."""
    assert demo.get("/api/v1/runs").status_code == 200
    gate = demo.app.state.gate
    assert create_app(demo.project).state.gate is gate  # one gate per project, one lock
    deadline = time.monotonic() + 10
    while gate._in_use_since_release:  # the release thread closes it after 1 s idle
        assert time.monotonic() < deadline, "the store was not released"
        time.sleep(0.1)
    demo.reader.close()
    with Project.from_yaml(demo.config) as other:  # a writer, as segvalue keys create
        key, _ = other.keys.create("read", name="while serving")
    assert demo.get("/api/v1/runs", key=key).status_code == 200


def test_a_key_revoked_while_serving_is_refused_at_once(demo: Demo) -> None:
    """The API keeps a verified key while it holds the DuckDB file open, when no one can
    revoke it; a revocation is written once the file is released, and counts at once."""

    def released() -> None:
        gate = demo.app.state.gate
        deadline = time.monotonic() + 10
        while gate._in_use_since_release:
            assert time.monotonic() < deadline, "the store was not released"
            time.sleep(0.1)
        demo.reader.close()

    released()
    with Project.from_yaml(demo.config) as other:
        key, info = other.keys.create("read", name="to revoke")
    for _ in range(3):
        assert demo.get(f"/api/v1/customers/{CUSTOMER}", key=key).status_code == 200
    released()
    with Project.from_yaml(demo.config) as other:
        other.keys.revoke(info.key_id)
    assert_problem(demo.get(f"/api/v1/customers/{CUSTOMER}", key=key), 401)
    assert demo.get(f"/api/v1/customers/{CUSTOMER}").status_code == 200


def test_the_api_reads_a_postgresql_store_alike(demo: Demo, pg_schema_url: str) -> None:
    """The same demo data, recorded in PostgreSQL: keys, runs and one customer's scores
    (a filtered read on the server) as from the DuckDB file."""
    settings = yaml.safe_load(demo.config.read_text())
    settings["store"] = {"url": pg_schema_url}
    settings["output"] = {"dir": "output-pg"}
    config = demo.config.with_name("postgres.yaml")
    config.write_text(yaml.safe_dump(settings))
    with Project.from_yaml(config) as project:
        run_id = project.run().run_id
        key, _ = project.keys.create("read")
        with TestClient(create_app(project)) as client:
            auth = {"Authorization": f"Bearer {key}"}
            runs = client.get("/api/v1/runs", headers=auth).json()["runs"]
            customer = client.get(f"/api/v1/customers/{CUSTOMER}", headers=auth).json()
            missing = client.get("/api/v1/customers/nobody", headers=auth)
            refused = client.get("/api/v1/runs", headers=demo._auth("read"))  # DuckDB's key
    assert [r["run_id"] for r in runs] == [run_id]
    assert_problem(missing, 404)
    assert_problem(refused, 401)
    expected = demo.get(f"/api/v1/customers/{CUSTOMER}").json()
    assert customer["memberships"] == expected["memberships"]
    assert customer["features"] == pytest.approx(expected["features"])
    for name in ("probability_alive", "expected_purchases", "clv", "clv_lower", "clv_upper"):
        assert customer[name] == pytest.approx(expected[name], rel=1e-9), name


# ---------------------------------------------------------------------------- CLI


def test_keys_commands_create_list_and_revoke(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "segvalue.yaml"
    config.write_text("sources: {orders: {path: o.csv}}\n")
    assert cli(["keys", "list", "-c", str(config)]) == 0
    assert "no API keys yet" in capsys.readouterr().out
    assert cli(["keys", "create", "-c", str(config), "--scope", "write", "--name", "ci"]) == 0
    human = capsys.readouterr().out
    assert "scope write" in human and "shown only now" in human and "svk_" in human
    assert cli(["keys", "create", "-c", str(config), "--json"]) == 0
    created = yaml.safe_load(capsys.readouterr().out)
    assert set(created) == {"key", "id", "scope"} and created["scope"] == "read"
    with Project.from_yaml(config) as project:
        assert project.keys.verify(created["key"]) is not None
    assert cli(["keys", "list", "-c", str(config)]) == 0
    listing = capsys.readouterr().out
    assert created["id"] in listing and "ci" in listing and created["key"] not in listing
    assert cli(["keys", "revoke", created["id"], "-c", str(config)]) == 0
    assert f"revoked API key {created['id']}" in capsys.readouterr().out
    assert cli(["keys", "list", "-c", str(config), "--json"]) == 0
    keys = {k["id"]: k for k in yaml.safe_load(capsys.readouterr().out)["keys"]}
    assert keys[created["id"]]["revoked_at"] is not None
    with Project.from_yaml(config) as project:
        assert project.keys.verify(created["key"]) is None
    assert cli(["keys", "create", "-c", str(config), "--scope", "admin"]) == 2
    assert "--scope" in capsys.readouterr().err
    assert cli(["keys", "revoke", "nope", "-c", str(config)]) == 2
    assert "no API key 'nope'" in capsys.readouterr().err


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_serve_refuses_a_port_in_use_clearly(
    demo: Demo, capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code = cli(["serve", "-c", str(demo.config), "--port", str(port)])
    assert code == 2
    err = capsys.readouterr().err
    assert f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


def test_serve_runs_the_api_as_a_real_process(demo: Demo) -> None:
    port = _free_port()
    # The module's project holds the DuckDB file open read-only: the server does too.
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    entry = "from segvalue.cli.main import run; run()"
    command = [sys.executable, "-c", entry, "serve", "-c", str(demo.config)]
    server = subprocess.Popen(
        [*command, "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                health = httpx.get(f"{base}/health", timeout=2)
                break
            except httpx.TransportError:
                assert server.poll() is None, server.communicate()[1]
                assert time.monotonic() < deadline, "the server did not start in 60 s"
                time.sleep(0.2)
        assert health.json()["latest_run"] == demo.latest_run
        auth = {"Authorization": f"Bearer {demo.read_key}"}
        customer = httpx.get(f"{base}/api/v1/customers/{CUSTOMER}", headers=auth, timeout=10)
        assert customer.status_code == 200 and customer.json()["customer_id"] == CUSTOMER
        refused = httpx.get(f"{base}/api/v1/customers/{CUSTOMER}", timeout=10)
        assert refused.status_code == 401
        # On loopback the same process serves the dashboard, open without a key.
        page = httpx.get(f"{base}/", timeout=30)
        assert page.status_code == 200 and "text/html" in page.headers["content-type"]
        assert demo.latest_run in page.text
    finally:
        server.terminate()
        out, err = server.communicate(timeout=30)
    assert f"segvalue API on {base}/api/v1" in out
    assert "segvalue keys create" in out and "--scope read" in out
    assert f"dashboard: {base}/ (loopback only" in out
    assert f"POST {base}/api/v1/events with a key of scope write" in out
    assert "GET /api/v1/customers/{customer_id} 200" in err
    assert CUSTOMER not in err


def test_attribution_per_segment_of_the_runs_touchpoints(demo: Demo) -> None:
    doc = demo.get("/api/v1/measurement/attribution?model=markov&scheme=lifecycle").json()
    assert doc["model"] == "markov" and doc["scheme"] == "lifecycle"
    everyone = doc["all"]
    assert everyone["total_conversions"] > 0
    credited = sum(c["conversions"] for c in everyone["channels"].values())
    assert credited == pytest.approx(everyone["total_conversions"])
    assert all(0 <= c["removal_effect"] <= 1 for c in everyone["channels"].values())
    assert doc["segments"] and all(s["total_conversions"] >= 0 for s in doc["segments"].values())
    assert_problem(demo.get("/api/v1/measurement/attribution?model=u-shaped"), 422)
    assert_problem(demo.get("/api/v1/measurement/attribution?scheme=nope"), 422)
    assert_problem(demo.get("/api/v1/measurement/attribution?run=nope"), 404)


def test_sample_size_is_the_clis_json(demo: Demo) -> None:
    """10 % against 12 %: 3,839 per group (docs/measurement.md), as segvalue sample-size
    --json prints it; a mean from its sd; no run is needed."""
    import math

    from scipy import stats

    doc = demo.get("/api/v1/measurement/sample-size?effect=0.02&baseline=0.1").json()
    assert doc == {
        "effect": 0.02,
        "baseline": 0.1,
        "sd": None,
        "level": 0.95,
        "power": 0.8,
        "treated_share": 0.5,
        "n_total": 7678,
        "n_treated": 3839,
        "n_control": 3839,
    }
    query = {"effect": 0.5, "sd": 2, "treated_share": 0.3, "power": 0.9}
    doc = demo.get("/api/v1/measurement/sample-size", params=query).json()
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.9)
    assert doc["n_treated"] == math.ceil(z**2 * (4 / 0.3 + 4 / 0.7) / 0.5**2 * 0.3)
    assert doc["n_treated"] + doc["n_control"] == doc["n_total"]
    assert doc["sd"] == 2 and doc["treated_share"] == 0.3 and doc["baseline"] is None


@pytest.mark.parametrize(
    ("query", "parameter", "said"),
    [
        ("effect=0.02&baseline=0.1&sd=2", "baseline", "exactly one of `baseline`"),
        ("effect=0.02&baseline=1.2", "baseline", "`baseline` 1.2 is not a rate in (0, 1)"),
        ("effect=0&baseline=0.1", "effect", "`effect` 0 is not a finite, non-zero number"),
        ("effect=0.02&baseline=0.1&power=1.5", "power", "`power` 1.5 is not in (0, 1)"),
        ("baseline=0.1", "query.effect", "Field required"),
        ("effect=big&baseline=0.1", "query.effect", "valid number"),
    ],
)
def test_sample_size_bad_input_is_a_422_problem_naming_it(
    demo: Demo, query: str, parameter: str, said: str
) -> None:
    doc = assert_problem(demo.get(f"/api/v1/measurement/sample-size?{query}"), 422)
    assert doc["parameter"] == parameter and said in doc["detail"]


def test_the_runs_stored_measurement(demo: Demo) -> None:
    """What the run stored (docs/measurement.md), filtered as asked."""
    doc = demo.get("/api/v1/measurement/stored-attribution?segment=all+customers").json()
    assert doc["scheme"] == "clusters" and doc["details"]["journeys"] > 0
    by_model: dict[str, float] = {}
    for row in doc["attribution"]:
        assert row["segment"] == "all customers"
        by_model[row["model"]] = by_model.get(row["model"], 0.0) + row["share"]
    assert set(by_model) == {"last", "linear", "position", "time-decay", "markov", "shapley"}
    assert all(total == pytest.approx(1.0) for total in by_model.values())
    channels = demo.get("/api/v1/measurement/channels?segment=cluster_1").json()["channels"]
    assert channels and {r["segment"] for r in channels} == {"cluster_1"}
    assert {r["role"] for r in channels} <= {"primary", "secondary", "support", "test", "reduce"}
    primary = [r for r in channels if r["role"] == "primary"]
    assert len(primary) <= 1
    for r in channels:
        if r["conversion_rate"] is not None:
            assert r["conversion_rate_lower"] <= r["conversion_rate"] <= r["conversion_rate_upper"]
    found = demo.get("/api/v1/measurement/experiments?outcome=converted").json()
    assert found["lift"] and {r["outcome"] for r in found["lift"]} == {"converted"}
    assert found["priority_lift"]["outcome"] == "converted"
    (experiment,) = found["uplift"]
    assert set(found["uplift"][experiment]["curves"]) == {"model", "perfect", "random"}
    none = demo.get("/api/v1/measurement/experiments?experiment=nope").json()
    assert none["lift"] == [] and none["uplift"] == {}
    assert_problem(demo.get("/api/v1/measurement/channels?run=nope"), 404)
