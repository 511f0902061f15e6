"""Real-time events: POST /api/v1/events, the customer re-scored, and the next run.

One 1,500-customer demo (as of 2025-12-31, a fixed as-of date) for the module. The
events change the store, so the tests that compare with a re-run build their own demo.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from segvalue.api import create_app
from segvalue.config import parse_config
from segvalue.pipeline import run_demo
from segvalue.project import Project
from segvalue.realtime import EventError, check_event

PROBLEM = "application/problem+json"


def order(customer: Any, order_id: str, amount: Any = 80.0, **extra: Any) -> dict[str, Any]:
    return {
        "type": "order",
        "customer_id": customer,
        "order_id": order_id,
        "order_ts": "2025-12-31T10:00:00",
        "amount": amount,
        **extra,
    }


class Served:
    def __init__(self, root: Path) -> None:
        _, self.config = run_demo(n_customers=1500, out_dir=root / "demo")
        self.project = Project.from_yaml(self.config)
        self.write_key, _ = self.project.keys.create("write")
        self.read_key, _ = self.project.keys.create("read")
        self.client = TestClient(create_app(self.project))

    def post(self, body: Any, key: str | None = None) -> Any:
        """POST the body as JSON (NaN and Infinity as Python writes them: a client may)."""
        headers = {
            "Authorization": f"Bearer {key or self.write_key}",
            "Content-Type": "application/json",
        }
        return self.client.post("/api/v1/events", content=json.dumps(body), headers=headers)

    def customer(self, customer_id: str) -> dict[str, Any]:
        headers = {"Authorization": f"Bearer {self.read_key}"}
        response = self.client.get(f"/api/v1/customers/{customer_id}", headers=headers)
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    state = Served(tmp_path_factory.mktemp("events"))
    with state.client:
        yield state
    state.project.close()


def test_an_order_adds_one_order_and_moves_the_predictions(served: Served) -> None:
    before = served.customer("C0000002")
    response = served.post(order("C0000002", "API-1"))
    assert response.status_code == 200, response.text
    reply = response.json()
    assert reply["duplicate"] is False
    after = served.customer("C0000002")
    assert reply["customer"] == after
    assert after["features"]["orders"] == before["features"]["orders"] + 1
    assert after["features"]["revenue"] == pytest.approx(before["features"]["revenue"] + 80.0)
    assert after["features"]["days_since_last_order"] == 0
    # A purchase on the as-of day: the customer is surely alive, and worth more.
    assert after["probability_alive"] > before["probability_alive"]
    assert after["clv"] > before["clv"]
    assert "clv" not in after["features"]  # predictions beside the features, as a run's
    # The segments entered and left are the memberships that changed, and are stored.
    changed = {
        s for s in after["memberships"] if after["memberships"][s] != before["memberships"][s]
    }
    assert {e["scheme"] for e in reply["events"]} == changed
    stored = served.project.segment_events(customer_id="C0000002")
    assert {(e["scheme"], e["from"], e["to"]) for e in stored} == {
        (e["scheme"], e["from"], e["to"]) for e in reply["events"]
    }


def test_the_same_order_twice_is_applied_once(served: Served) -> None:
    first = served.post(order("C0000003", "API-2")).json()
    again = served.post(order("C0000003", "API-2"))
    assert again.status_code == 200
    assert again.json()["duplicate"] is True and again.json()["events"] == []
    assert served.customer("C0000003") == first["customer"]
    # An order the run's files hold already is the files': applied once, too.
    history = served.project.runs.latest().rows("history_orders", "customer_id", "C0000004")
    known = history.column("order_id")[0].as_py()
    before = served.customer("C0000004")
    reply = served.post(order("C0000004", known)).json()
    assert reply["duplicate"] is True and served.customer("C0000004") == before


def test_a_touchpoint_counts_as_a_touch(served: Served) -> None:
    before = served.customer("C0000005")["features"]
    touch = {
        "type": "touchpoint",
        "customer_id": "C0000005",
        "ts": "2025-12-31T09:00:00",
        "channel": "email",
        "event": "click",
    }
    response = served.post(touch)
    assert response.status_code == 200, response.text
    after = served.customer("C0000005")["features"]
    assert after["touches"] == before["touches"] + 1
    assert after["touches_email"] == before["touches_email"] + 1
    assert served.post(touch).json()["duplicate"] is True  # same fields: same event


@pytest.mark.parametrize(
    ("body", "rule", "field"),
    [
        (order("C0000006", "B-1", math.nan), "non_finite", "amount"),
        (order("C0000006", "B-2", math.inf), "non_finite", "amount"),
        (order("C0000006", "B-3", 1e12), "implausible_value", "amount"),
        (order("C0000006", "B-4", "12"), "unparseable_value", "amount"),
        (order("  ", "B-5"), "null_id", "customer_id"),
        ({**order("C0000006", "B-6"), "order_ts": "31/12/2025"}, "unparseable_value", "order_ts"),
        ({**order("C0000006", "B-7"), "order_ts": "2999-01-01"}, "future_timestamp", "order_ts"),
        ({**order("C0000006", "B-8"), "order_ts": "2026-01-02"}, "after_as_of", "order_ts"),
        ({**order("C0000006", "B-9"), "ammount": 3}, "unparseable_value", "ammount"),
        (
            {k: v for k, v in order("C0000006", "B-10").items() if k != "amount"},
            "missing_value",
            "amount",
        ),
        (order("NOT-A-CUSTOMER", "B-11"), "unknown_customer", "customer_id"),
        (
            order("C0000006", "B-12", lines=[{"category": "x"}]),
            "missing_value",
            "lines[0].line_amount",
        ),
        (
            order("C0000006", "B-13", lines=[{"line_amount": 1, "sku": "x"}]),
            "unparseable_value",
            "lines[0].sku",
        ),
        ({"type": "refund", "customer_id": "C0000006"}, "unparseable_value", "type"),
        (order("C0000006", "B-14", amount="NaN"), "unparseable_value", "amount"),
        (order(["C0000006"], "B-15"), "unparseable_value", "customer_id"),
        (order("C0000006", "B-16", lines="x"), "unparseable_value", "lines"),
        (
            {
                "type": "touchpoint",
                "customer_id": "C0000006",
                "ts": "2025-12-30",
                "channel": "email",
                "event": "teleport",
            },
            "unknown_event",
            "event",
        ),
    ],
)
def test_a_bad_event_is_a_422_problem_naming_the_rule_and_field(
    served: Served, body: dict[str, Any], rule: str, field: str
) -> None:
    seq = served.project.customer("C0000006")
    response = served.post(body)
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    problem = response.json()
    assert problem["detail"].startswith(f"{rule}:"), problem
    # The cause and the fix: never an empty "Fix:".
    cause, _, fix = problem["detail"].partition(". Fix: ")
    assert cause and len(fix.strip()) > 3, problem
    assert problem.get("parameter") == field, problem
    assert served.project.customer("C0000006") == seq  # nothing stored


def test_a_read_key_cannot_post_and_no_key_is_refused(served: Served) -> None:
    assert served.post(order("C0000007", "K-1"), key=served.read_key).status_code == 403
    response = served.client.post("/api/v1/events", json=order("C0000007", "K-1"))
    assert response.status_code == 401
    assert served.project.segment_events(customer_id="C0000007") == []


def test_a_return_needs_a_purchase(tmp_path: Path) -> None:
    """``return_without_purchase``, as in files: on a store without customers table a
    new customer's first event being a return is refused."""
    orders = tmp_path / "o.csv"
    rows = ["order_id,customer_id,order_ts,amount"]
    rows += [f"{i},c{i % 40},2024-0{1 + i % 6}-1{i % 9},{10 + i}" for i in range(200)]
    orders.write_text("\n".join(rows) + "\n")
    config = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=tmp_path)
    with Project(config) as project:
        project.run()
        new = {"type": "order", "customer_id": "NEW", "order_ts": "2024-06-19", "amount": -5.0}
        with pytest.raises(EventError) as refused:
            project.record_event({**new, "order_id": "R-1"})
        assert refused.value.rule == "return_without_purchase"
        # Without a customers table a new customer may buy, and is scored as of its day.
        reply = project.record_event({**new, "order_id": "P-1", "amount": 20.0})
        assert reply["customer"]["features"]["orders"] == 1
        assert reply["customer"]["memberships"]["lifecycle"] == "new"


# The same bad values as a file's rows and as events: the same rules.
FILE_CASES = [
    ("nan", math.nan, "non_finite"),
    ("inf", math.inf, "non_finite"),
    ("-Infinity", -math.inf, "non_finite"),
    ("2e9", 2e9, "implausible_value"),
]


@pytest.mark.parametrize(("text", "value", "rule"), FILE_CASES)
def test_events_break_the_rules_rows_of_a_file_break(
    tmp_path: Path, text: str, value: float, rule: str
) -> None:
    path = tmp_path / "o.csv"
    path.write_text(
        "order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n2,a,2024-01-03," + text + "\n"
    )
    config = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=tmp_path)
    with Project(config) as project:
        report = project.validate()
    assert report.tables["orders"].rejected == {rule: 1}
    with pytest.raises(EventError) as refused:
        check_event(
            {
                "type": "order",
                "customer_id": "a",
                "order_id": "2",
                "order_ts": "2024-01-03",
                "amount": value,
            },
            config,
        )
    assert refused.value.rule == rule


def test_an_offset_converts_to_the_project_zone_as_in_files() -> None:
    config = parse_config({"sources": {"orders": {"path": "o.csv"}}, "timezone": "Europe/Berlin"})
    event = check_event(order("c", "1", **{"order_ts": "2025-12-31T10:00:00Z"}), config)
    assert event.occurred_at == dt.datetime(2025, 12, 31, 11, 0)


def test_real_time_equals_a_full_re_run_for_that_customer(tmp_path: Path) -> None:
    """After POST events, GET customers/{id} gives what a full re-run gives that customer.

    The demo fixes its as-of date (2025-12-31) and calibrates the CLV models on all but
    the last 26 weeks (clv.holdout), so a re-run with the new order fits the same models:
    the features, memberships and predictions agree to rounding.
    """
    _, config = run_demo(n_customers=1500, out_dir=tmp_path / "demo")
    with Project.from_yaml(config) as project:
        key, _ = project.keys.create("write")
        client = TestClient(create_app(project))
        headers = {"Authorization": f"Bearer {key}"}
        with client:
            lines = [
                {"category": "garden", "line_amount": 70.0, "product_id": "P1", "quantity": 1},
                {"category": "books", "line_amount": 50.0},
            ]
            touch = {
                "type": "touchpoint",
                "customer_id": "C0000011",
                "ts": "2025-12-30T08:00:00",
                "channel": "email",
                "event": "open",
                "campaign_id": "X1",
            }
            bodies = [
                order("C0000010", "R-1", 120.0, lines=lines),
                order("C0000011", "R-2", 35.0),
                touch,
            ]
            for body in bodies:
                response = client.post("/api/v1/events", json=body, headers=headers)
                assert response.status_code == 200, response.text
            before = project.runs.latest().customer("C0000010")
            assert before is not None
            live = {
                c: client.get(f"/api/v1/customers/{c}", headers=headers).json()
                for c in ("C0000010", "C0000011")
            }
        first_run = project.runs.latest().run_id
        project.close()
        rerun = project.run()
        included = "real-time events included: 2 orders, 1 touchpoints"
        assert any(included in n for n in rerun.report.notes), rerun.report.notes
        view = project.runs.latest()
        assert view.run_id != first_run and view.document("events")["through"] == 3
        for customer, scored in live.items():
            full = view.customer(customer)
            assert full is not None
            assert scored["memberships"] == full["memberships"]
            for name, value in full["features"].items():
                if isinstance(value, float):
                    assert scored["features"][name] == pytest.approx(value, rel=1e-9, abs=1e-12)
                elif isinstance(value, dt.date):
                    assert scored["features"][name] == value.isoformat()
                else:
                    assert scored["features"][name] == value, name
            for name in ("probability_alive", "expected_purchases", "clv", "clv_lower"):
                assert scored[name] == pytest.approx(full[name], rel=1e-9)
        # The order's lines moved the customer's category shares, as a file's lines would.
        assert live["C0000010"]["features"]["share_garden"] > before["features"]["share_garden"]
        # After the re-run the events are part of the run: nothing pending, same answer.
        assert project.customer("C0000010") == view.customer("C0000010")


def test_a_run_leaves_out_an_event_order_the_files_now_hold(tmp_path: Path) -> None:
    orders = tmp_path / "o.csv"
    rows = ["order_id,customer_id,order_ts,amount"]
    rows += [f"{i},c{i % 30},2024-0{1 + i % 6}-1{i % 9},{10 + i}" for i in range(150)]
    orders.write_text("\n".join(rows) + "\n")
    config = parse_config(
        {"sources": {"orders": {"path": "o.csv"}}, "as_of": "2024-06-30"}, base_dir=tmp_path
    )
    with Project(config) as project:
        project.run()
        project.record_event(
            {
                "type": "order",
                "customer_id": "c1",
                "order_id": "X-1",
                "order_ts": "2024-06-20T12:00:00",
                "amount": 50.0,
            }
        )
        orders.write_text(orders.read_text() + "X-1,c1,2024-06-20 12:00:00,50\n")
        project.close()
        result = project.run()
        assert result.report.tables["orders"].rows_accepted == 151
        kept = project.runs.latest().document("events")
        assert kept["orders"] == 0 and kept["skipped"] == {"orders whose id the files hold": 1}


def test_events_before_any_run_are_a_404_problem(tmp_path: Path) -> None:
    """Nothing to score against yet: 404, naming the run, and nothing stored."""
    (tmp_path / "o.csv").write_text("order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n")
    config = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=tmp_path)
    with Project(config) as project:
        key, _ = project.keys.create("write")
        with TestClient(create_app(project)) as client:
            response = client.post(
                "/api/v1/events",
                json={
                    "type": "order",
                    "customer_id": "a",
                    "order_id": "2",
                    "order_ts": "2024-01-03",
                    "amount": 5.0,
                },
                headers={"Authorization": f"Bearer {key}"},
            )
        assert response.status_code == 404, response.text
        assert response.headers["content-type"].startswith(PROBLEM)
        assert "no complete run" in response.json()["detail"]
        assert project.segment_events() == []


def same(a: Any, b: Any) -> bool:
    """Equal, floats to 1e-9 relative (nested dicts, lists and tuples)."""
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return bool(a == b)


def test_events_sent_together_are_applied_as_if_sent_one_by_one(tmp_path: Path) -> None:
    """The server's group commit (ProjectGate.record_event): requests waiting for the
    project are applied in one Project.record_events call; each reply, each error and the
    stored state equal what the same events sent one at a time give (a copy of the
    demo). The group holds two events of one customer (applied in turn), an order of
    another customer, a bad event (its own 422, the others applied) and a repeat."""
    import shutil
    import threading

    from segvalue.api.auth import ProjectGate

    _, config = run_demo(n_customers=400, out_dir=tmp_path / "a")
    shutil.copytree(tmp_path / "a", tmp_path / "b")
    sent = [
        order("C0000003", "G-1", 30.0),
        order("C0000004", "G-2", 250.0),
        order("C0000003", "G-3", 45.0),
        order("C0000005", "G-4", float("nan")),
        order("C0000004", "G-2", 250.0),
        {
            "type": "touchpoint",
            "customer_id": "C0000006",
            "ts": "2025-12-31T09:00:00",
            "channel": "email",
            "event": "click",
        },
    ]

    def outcome(call: Any) -> Any:
        try:
            return call()
        except EventError as exc:
            return ("error", exc.rule, exc.parameter)

    with Project.from_yaml(tmp_path / "b" / config.name) as alone:
        expected = [outcome(lambda e=e: alone.record_event(e)) for e in sent]
        expected_state = [alone.customer(f"C000000{k}") for k in (3, 4, 5, 6)]

    project = Project.from_yaml(config)
    gate = ProjectGate(project)
    groups: list[int] = []
    record_events = project.record_events

    def counted(events: Any) -> Any:
        groups.append(len(events))
        return record_events(events)

    project.record_events = counted  # type: ignore[method-assign]
    got: dict[int, Any] = {}
    with gate.use():  # the project is busy: every request waits, then goes as one group
        threads = []
        for i, event in enumerate(sent):
            thread = threading.Thread(
                target=lambda i=i, e=event: got.__setitem__(
                    i, outcome(lambda: gate.record_event(e))
                )
            )
            thread.start()
            threads.append(thread)
            while len(gate._events) < i + 1:  # queued in the order sent
                threading.Event().wait(0.001)
    for thread in threads:
        thread.join(timeout=60)
    assert groups == [len(sent)]
    # Equal up to float rounding: the models evaluated for several customers at once
    # may take other vector paths than for one.
    assert same([got[i] for i in range(len(sent))], expected)
    assert expected[3] == ("error", "non_finite", "amount")
    assert expected[4]["duplicate"] is True and expected[2]["customer"]["features"]["orders"] == (
        expected[0]["customer"]["features"]["orders"] + 1
    )
    assert same([project.customer(f"C000000{k}") for k in (3, 4, 5, 6)], expected_state)
    project.close()
