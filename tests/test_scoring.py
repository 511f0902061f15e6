"""The scorer saved with a run gives, for one customer, what the run stored for it."""

from __future__ import annotations

import collections
import datetime as dt
import json
import math
from typing import Any

import ibis
import numpy as np
import pyarrow as pa
import pytest

from segvalue.config import (
    ClusterConfig,
    LifecycleConfig,
    RFMConfig,
    RuleSchemeConfig,
    load_config,
)
from segvalue.errors import DataValidationError
from segvalue.features.customer import customer_features
from segvalue.features.materialise import to_arrow
from segvalue.pipeline import RunResult, load, run_demo
from segvalue.scoring import PREDICTIONS, Scorer, customer_features_of, scorer_state
from segvalue.segments.clusters import assign_clusters, fit_clusters
from segvalue.segments.lifecycle import assign_lifecycle
from segvalue.segments.rfm import assign_rfm
from segvalue.segments.rules import assign_rule_scheme
from segvalue.segments.scoring import PURCHASE_DAYS, assign, ntile_ends, scheme_state
from segvalue.store import open_store

SAMPLED = 1000


class History:
    """The clean rows of each customer, as the run read them."""

    def __init__(self, tables: dict[str, pa.Table]) -> None:
        self.customers = {r["customer_id"]: r for r in tables["customers"].to_pylist()}
        self.orders: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for row in tables["orders"].to_pylist():
            self.orders[row["customer_id"]].append(row)
        self.lines: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for row in tables["order_lines"].to_pylist():
            self.lines[row["order_id"]].append(row)
        self.touches: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
        for row in tables["touchpoints"].to_pylist():
            self.touches[row["customer_id"]].append(row)

    def score(self, scorer: Scorer, customer_id: str) -> dict[str, Any]:
        orders = self.orders.get(customer_id, [])
        lines = [line for o in orders for line in self.lines.get(o["order_id"], [])]
        return scorer.score(
            self.customers[customer_id],
            orders,
            order_lines=lines,
            touchpoints=self.touches.get(customer_id, []),
        )


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, dict[str, Any], History]:
    out = tmp_path_factory.mktemp("scoring") / "shop"
    result, config_path = run_demo(n_customers=2000, seed=5, out_dir=out)
    config = load_config(config_path)
    # The scorer the run saved in the store, as later reads get it.
    with open_store(config.store_url) as store:
        state = store.document(result.run_id, "scorer")
    assert state == json.loads(json.dumps(scorer_state(result, config), allow_nan=False))
    data = load(config)  # the clean tables the run read, for the customers' histories
    try:
        tables = {n: to_arrow(data.tables[n]) for n in ("customers", "orders", "order_lines")}
        tables["touchpoints"] = to_arrow(data.tables["touchpoints"])
    finally:
        data.con.disconnect()
    return result, state, History(tables)


def _same(stored: Any, scored: Any) -> bool:
    """Equal, floats to 1e-9 relative; a stored NaN or null is a scored None."""
    if stored is None or (isinstance(stored, float) and math.isnan(stored)):
        return scored is None or (isinstance(scored, float) and math.isnan(scored))
    if isinstance(stored, float) and isinstance(scored, int | float):
        return stored == scored or abs(stored - scored) <= 1e-9 * max(abs(stored), abs(scored))
    return bool(stored == scored)


def test_the_scorer_equals_the_run_for_1000_random_customers(
    demo: tuple[RunResult, dict[str, Any], History],
) -> None:
    result, state, history = demo
    scorer = Scorer(json.loads(json.dumps(state, allow_nan=False)))  # as a store returns it
    assert result.segmentation is not None
    stored = {r["customer_id"]: r for r in result.features.to_pylist()}
    segments: dict[tuple[str, str], list[str]] = collections.defaultdict(list)
    for row in result.segmentation.memberships.to_pylist():
        segments[(row["customer_id"], row["scheme"])].append(row["segment"])
    tags = {n for n, d in result.segmentation.details.items() if d.get("mode") == "tags"}
    assert set(scorer.schemes) == set(result.segmentation.details)
    chosen = np.random.default_rng(2024).choice(sorted(stored), size=SAMPLED, replace=False)
    differences = []
    for customer_id in chosen.tolist():
        out = history.score(scorer, customer_id)
        want = stored[customer_id]
        for column, value in want.items():
            got = out["features"].get(column, "absent") if column != "customer_id" else value
            if not _same(value, got):
                differences.append((customer_id, column, value, got))
        for column in (*PREDICTIONS, "purchase_propensity"):
            if not _same(want[column], out[column]):
                differences.append((customer_id, column, want[column], out[column]))
        for scheme, segment in out["memberships"].items():
            expected = segments[(customer_id, scheme)]
            if scheme in tags:
                assert isinstance(segment, list)
                same = sorted(segment) == sorted(expected)
            else:
                same = [segment] == expected
            if not same:
                differences.append((customer_id, scheme, expected, segment))
    assert differences == []
    # The sample reaches every kind of customer the schemes tell apart.
    lifecycle = {segments[(c, "lifecycle")][0] for c in chosen.tolist()}
    rfm = {segments[(c, "rfm")][0] for c in chosen.tolist()}
    assert {"active", "lapsed", "at_risk", "one_time"} <= lifecycle, lifecycle
    assert len(rfm) >= 8, rfm


def test_json_round_trip_scores_the_same(
    demo: tuple[RunResult, dict[str, Any], History],
) -> None:
    _, state, history = demo
    scorer = Scorer(state)
    again = Scorer.from_dict(json.loads(json.dumps(scorer.to_dict())))
    assert again.to_dict() == scorer.to_dict()
    for customer_id in sorted(history.orders)[:25]:
        assert history.score(again, customer_id) == history.score(scorer, customer_id)


def test_an_unseen_customer_without_orders_gets_a_clear_result(
    demo: tuple[RunResult, dict[str, Any], History],
) -> None:
    _, state, _ = demo
    out = Scorer(state).score({"customer_id": "NEW-1", "age": 34, "country": "DE"}, [])
    assert out["customer_id"] == "NEW-1"
    assert out["features"]["orders"] == 0
    assert out["features"]["frequency"] is None
    assert all(out[p] is None for p in (*PREDICTIONS, "purchase_propensity"))
    members = out["memberships"]
    assert members["lifecycle"] == "prospect"
    assert members["rfm"] == "Others"
    assert members["behaviour"] == "no purchase yet"
    assert members["age_band"] == "30-49"
    assert members["market"] == "DACH"
    assert members["lifestyle"] == ["unassigned"]
    assert members["clusters"].startswith("cluster_")


def test_a_new_customer_with_orders_is_scored(
    demo: tuple[RunResult, dict[str, Any], History],
) -> None:
    _, state, _ = demo
    as_of = dt.date.fromisoformat(state["features"]["as_of"])
    orders = [
        {"order_id": "n1", "order_ts": f"{as_of - dt.timedelta(days=60)}T10:00", "amount": 40.0},
        {"order_id": "n2", "order_ts": f"{as_of - dt.timedelta(days=20)}T10:00", "amount": 60.0},
        {"order_id": "n3", "order_ts": dt.datetime.combine(as_of, dt.time(9)), "amount": -10.0},
        # After the as-of date: outside the run's window, left out like the run's rejects.
        {"order_id": "n4", "order_ts": as_of + dt.timedelta(days=1), "amount": 99.0},
    ]
    out = Scorer(state).score({"customer_id": "NEW-2"}, orders)
    features = out["features"]
    assert (features["orders"], features["frequency"], features["revenue"]) == (2, 1, 90.0)
    assert features["days_since_last_order"] == 0  # the return is the last order
    assert features["monetary_value"] == 60.0
    assert 0.0 <= out["probability_alive"] <= 1.0
    assert out["churn_risk"] == pytest.approx(1.0 - out["probability_alive"])
    assert 0.0 <= out["clv_lower"] <= out["clv"] <= out["clv_upper"]
    assert out["memberships"]["lifecycle"] in {"active", "returning", "reactivated"}


def test_a_bad_order_is_refused_with_its_position(
    demo: tuple[RunResult, dict[str, Any], History],
) -> None:
    _, state, _ = demo
    with pytest.raises(DataValidationError, match=r"orders\[1\]\.order_ts"):
        Scorer(state).score({}, [{"order_ts": "2024-01-01", "amount": 1.0}, {"amount": 2.0}])
    with pytest.raises(DataValidationError, match=r"orders\[0\]\.amount") as caught:
        Scorer(state).score({}, [{"order_ts": "2024-01-01", "amount": "12"}])
    assert caught.value.parameter == "orders[0].amount"


# --------------------------------------------------------------------------- schemes


@pytest.mark.parametrize("ties", ["split", "shared"])
@pytest.mark.parametrize("bins", [2, 5, 10])
def test_rfm_state_places_every_customer_as_the_engine(ties: str, bins: int) -> None:
    """Heavy ties (few distinct values) and float sums: each customer as NTILE put it."""
    rng = np.random.default_rng(bins)
    n = 300
    ids = [f"c{i:04d}" for i in rng.permutation(n)]
    orders = rng.integers(0, 6, n)
    revenue = np.round(rng.choice([9.99, 20.0, 35.5], n) * orders + 0.1 + 0.2, 2)
    recency = np.where(orders > 0, rng.integers(0, 40, n), -1)
    features = pa.table(
        {
            "customer_id": ids,
            "days_since_last_order": pa.array(
                [int(r) if r >= 0 else None for r in recency], pa.int64()
            ),
            "orders": orders,
            "revenue": revenue,
        }
    )
    config = RFMConfig(type="rfm", bins=bins, ties=ties)  # type: ignore[arg-type]
    engine = to_arrow(assign_rfm(ibis.memtable(features), config))
    want = dict(zip(engine["customer_id"].to_pylist(), engine["segment"].to_pylist(), strict=True))
    state = json.loads(json.dumps(scheme_state(config, {}, features=features)))
    got = {row["customer_id"]: assign(state, row) for row in features.to_pylist()}
    assert got == want


def test_rfm_cuts_state_matches_the_engine() -> None:
    rng = np.random.default_rng(3)
    features = pa.table(
        {
            "customer_id": [f"c{i}" for i in range(200)],
            "days_since_last_order": rng.integers(0, 400, 200),
            "orders": rng.integers(0, 12, 200),
            "revenue": rng.gamma(2.0, 50.0, 200),
        }
    )
    cuts = {
        "recency": [30, 90, 180, 365],
        "frequency": [1, 2, 4, 8],
        "monetary": [50, 100, 200, 400],
    }
    config = RFMConfig(type="rfm", method="cuts", cuts=cuts)  # type: ignore[arg-type]
    engine = to_arrow(assign_rfm(ibis.memtable(features), config))
    want = dict(zip(engine["customer_id"].to_pylist(), engine["segment"].to_pylist(), strict=True))
    state = scheme_state(config, {})
    assert {r["customer_id"]: assign(state, r) for r in features.to_pylist()} == want


def test_ntile_ends_are_sql_ntile() -> None:
    for n in range(0, 40):
        for bins in (2, 3, 5, 10):
            ends = ntile_ends(n, bins)
            # NTILE: the bin of position p (1-based) is 1 + the number of ends before p.
            sizes = collections.Counter(1 + sum(e < p for e in ends) for p in range(1, n + 1))
            small, extra = divmod(n, bins)
            assert [sizes[b] for b in range(1, bins + 1)] == [
                small + 1 if b <= extra else small for b in range(1, bins + 1)
            ]


def test_lifecycle_state_matches_the_engine() -> None:
    rng = np.random.default_rng(8)
    as_of = dt.date(2024, 6, 30)
    rows = []
    for i in range(300):
        for _ in range(int(rng.integers(0, 7))):
            day = as_of - dt.timedelta(days=int(rng.integers(0, 700)))
            amount = float(rng.choice([-5.0, 10.0, 25.0]))
            rows.append(
                {
                    "customer_id": f"c{i}",
                    "order_ts": dt.datetime.combine(day, dt.time()),
                    "amount": amount,
                }
            )
    orders = pa.Table.from_pylist(rows)
    config = LifecycleConfig(type="lifecycle")
    result = assign_lifecycle(ibis.memtable(orders), as_of=as_of, config=config)
    engine = to_arrow(result.memberships)
    want = dict(zip(engine["customer_id"].to_pylist(), engine["segment"].to_pylist(), strict=True))
    state = scheme_state(config, {"thresholds": result.thresholds.to_dict()}, as_of=as_of)
    days: dict[str, set[dt.date]] = collections.defaultdict(set)
    for row in rows:
        if row["amount"] >= 0:
            days[row["customer_id"]].add(row["order_ts"].date())
    got = {c: assign(state, {PURCHASE_DAYS: sorted(days.get(c, ()))}) for c in want}
    assert got == want
    assert {"prospect", "lapsed", "active"} <= set(got.values())


def test_rule_state_treats_missing_values_as_the_engine() -> None:
    scheme = RuleSchemeConfig.model_validate(
        {
            "name": "mixed",
            "type": "behavioural",
            "mode": "tags",
            "rules": [
                {"segment": "older", "when": {"field": "age", "op": ">=", "value": 40}},
                {
                    "segment": "not older",
                    "when": {"not": {"field": "age", "op": ">=", "value": 40}},
                },
                {"segment": "no age", "when": {"field": "age", "op": "is_null"}},
                {
                    "segment": "nordic",
                    "when": {"field": "country", "op": "in", "value": ["SE", "NO"]},
                },
                {"segment": "not DE", "when": {"field": "country", "op": "!=", "value": "DE"}},
                {"segment": "G", "when": {"field": "country", "op": "regex", "value": "^G"}},
                {
                    "segment": "since 2023",
                    "when": {"field": "signup", "op": ">=", "value": "2023-01-01"},
                },
                {
                    "segment": "mid",
                    "when": {
                        "all": [
                            {"field": "age", "op": "between", "value": [30, 50]},
                            {"field": "country", "op": "not_in", "value": ["DE"]},
                        ]
                    },
                },
            ],
        }
    )
    table = pa.table(
        {
            "customer_id": ["a", "b", "c", "d", "e"],
            "age": [45.0, float("nan"), None, 31.0, 39.5],
            "country": ["SE", None, "DE", "GB", "FR"],
            "signup": [dt.date(2022, 5, 1), dt.date(2023, 1, 1), None, dt.date(2024, 2, 2), None],
        }
    )
    engine = to_arrow(assign_rule_scheme(ibis.memtable(table), scheme))
    want: dict[str, list[str]] = collections.defaultdict(list)
    for row in engine.to_pylist():
        want[row["customer_id"]].append(row["segment"])
    state = json.loads(json.dumps(scheme_state(scheme, {})))
    for row in table.to_pylist():
        got = assign(state, row)
        assert isinstance(got, list)
        assert sorted(got) == sorted(want[row["customer_id"]]), row


def test_scheme_state_says_what_is_missing() -> None:
    with pytest.raises(DataValidationError, match="feature table"):
        scheme_state(RFMConfig(type="rfm"), {})
    with pytest.raises(DataValidationError, match="thresholds"):
        scheme_state(LifecycleConfig(type="lifecycle"), {})


def test_the_scorer_refuses_a_state_that_is_not_one() -> None:
    with pytest.raises(DataValidationError, match="scorer state lacks"):
        Scorer({"schemes": {}})


@pytest.mark.parametrize("algorithm", ["kmeans", "dbscan"])
def test_cluster_state_assigns_as_the_engine(algorithm: str) -> None:
    """Missing values (median), booleans, log1p and, for DBSCAN, the radius (noise)."""
    rng = np.random.default_rng(4)
    n = 400
    spend = np.concatenate([rng.gamma(2.0, 10.0, n // 2), rng.gamma(8.0, 40.0, n // 2)])
    visits = rng.poisson(np.where(np.arange(n) < n // 2, 2.0, 9.0)).astype(float)
    spend[rng.choice(n, 20, replace=False)] = np.nan
    table = pa.table(
        {
            "customer_id": [f"c{i:03d}" for i in range(n)],
            "spend": pa.array(spend, from_pandas=True),  # NaN becomes null, as in the engine
            "visits": visits,
            "member": rng.random(n) < 0.3,
        }
    )
    config = ClusterConfig(
        type="cluster",
        features=["spend", "visits", "member"],
        transform={"spend": "log1p"},
        algorithm=algorithm,  # type: ignore[arg-type]
        k=2 if algorithm == "kmeans" else "auto",
        eps=0.5,
        stability_resamples=0,
    )
    model = fit_clusters(ibis.memtable(table), config)
    engine = to_arrow(assign_clusters(ibis.memtable(table), model))
    want = dict(zip(engine["customer_id"].to_pylist(), engine["segment"].to_pylist(), strict=True))
    state = json.loads(json.dumps(scheme_state(config, {"model": model.to_dict()})))
    got = {row["customer_id"]: assign(state, row) for row in table.to_pylist()}
    assert got == want
    if algorithm == "dbscan":
        assert config.unassigned in set(got.values())


def test_features_follow_the_engine_on_awkward_histories() -> None:
    """Returns only, zero amounts, same-day orders, null discounts, lines and touches."""
    rng = np.random.default_rng(12)
    as_of = dt.date(2024, 6, 30)
    start = dt.datetime(2023, 1, 1)
    customers, orders, lines, touches = [], [], [], []
    for i in range(150):
        cid = f"c{i:03d}"
        signup = None if i % 4 == 0 else as_of - dt.timedelta(days=int(rng.integers(30, 900)))
        customers.append({"customer_id": cid, "signup_date": signup})
        for j in range(int(rng.integers(0, 6))):
            ts = start + dt.timedelta(hours=int(rng.integers(0, 13000)))
            if j and rng.random() < 0.3:  # a second order on the same day
                ts = orders[-1]["order_ts"] + dt.timedelta(minutes=5)
            amount = float(rng.choice([-12.5, 0.0, 9.99, 20.0, 31.1]))
            discount = None if rng.random() < 0.3 else float(rng.choice([0.0, 2.5]))
            order_id = f"{cid}-{j}"
            orders.append(
                {
                    "order_id": order_id,
                    "customer_id": cid,
                    "order_ts": min(ts, dt.datetime.combine(as_of, dt.time(23))),
                    "amount": amount,
                    "discount": discount,
                }
            )
            for _ in range(int(rng.integers(0, 3))):
                category = str(rng.choice(["Home & Garden", "toys", "books"]))
                lines.append(
                    {"order_id": order_id, "category": category, "line_amount": abs(amount) / 2}
                )
        if i % 5 == 0 and orders and orders[-1]["customer_id"] == cid:
            # A click at the time of the customer's last order is not browsing after it.
            touches.append(
                {
                    "customer_id": cid,
                    "ts": orders[-1]["order_ts"],
                    "channel": "email",
                    "event": "click",
                }
            )
        for _ in range(int(rng.integers(0, 5))):
            touches.append(
                {
                    "customer_id": cid,
                    "ts": start + dt.timedelta(hours=int(rng.integers(0, 13000))),
                    "channel": str(rng.choice(["email", "Paid Social"])),
                    "event": rng.choice(["impression", "click", "open", None]),
                }
            )
    tables = {
        "customers": pa.Table.from_pylist(customers),
        "orders": pa.Table.from_pylist(orders),
        "order_lines": pa.Table.from_pylist(lines),
        "touchpoints": pa.Table.from_pylist(touches),
    }
    engine = to_arrow(
        customer_features({n: ibis.memtable(t) for n, t in tables.items()}, as_of=as_of)
    )
    columns = engine.column_names
    state = {
        "as_of": as_of.isoformat(),
        "time_unit": "week",
        "lookback_start": None,
        "customers": True,
        "discount": True,
        "categories": [c.removeprefix("share_") for c in columns if c.startswith("share_")],
        "channels": [c.removeprefix("touches_") for c in columns if c.startswith("touches_")],
    }
    assert sorted(state["categories"]) == ["books", "home_garden", "toys"]
    by_customer: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in orders:
        by_customer[row["customer_id"]].append(row)
    for want in engine.to_pylist():
        cid = want["customer_id"]
        own = by_customer.get(cid, [])
        ids = {o["order_id"] for o in own}
        got, _ = customer_features_of(
            state,
            next(c for c in customers if c["customer_id"] == cid),
            own,
            order_lines=[line for line in lines if line["order_id"] in ids],
            touchpoints=[t for t in touches if t["customer_id"] == cid],
        )
        for column in columns:
            if column != "customer_id":
                assert _same(want[column], got[column]), (cid, column, want[column], got[column])
