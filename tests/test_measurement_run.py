"""The measurement step of ``segvalue run``: attribution per segment, channel effectiveness
and roles, experiment lift per segment feeding the priorities, uplift, all stored with the
run. Ground truth is planted in generated data (seeded)."""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

from segvalue.config import parse_config
from segvalue.errors import ConfigError
from segvalue.measurement.attribution import attribute, journeys_from_touches
from segvalue.measurement.uplift import qini_auc_score
from segvalue.pipeline import run
from segvalue.project import Project

N = 6_000
REGIONS = ("north", "south")
#: Planted: per region, each channel's conversion probability of a touched customer, the
#: cost of a touch, and the order value of a conversion.
RATE = {
    ("north", "email"): 0.30,
    ("north", "search_ads"): 0.05,
    ("north", "display"): 0.05,
    ("south", "email"): 0.05,
    ("south", "search_ads"): 0.30,
    ("south", "display"): 0.05,
}
COST = {"email": 1.0, "search_ads": 2.0, "display": 10.0}
VALUE = 50.0
#: Planted: the experiment's base conversion and lift per region.
BASE, LIFT = 0.2, {"north": 0.10, "south": 0.0}


def _write(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _read(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _shop(folder: Path, *, seed: int = 11) -> dict[str, Any]:
    """Every customer one first order, one touch on one channel (a third each), and a
    conversion a day later with the planted chance (an order of ``VALUE`` with it)."""
    rng = np.random.default_rng(seed)
    start = dt.datetime(2025, 1, 1)
    customers, orders, touches, experiment = [], [], [], []
    for i in range(N):
        cid = f"c{i:05d}"
        region = REGIONS[i % 2]
        customers.append({"customer_id": cid, "region": region})
        first = start + dt.timedelta(days=int(rng.integers(0, 100)))
        orders.append(
            {"order_id": f"o{i}", "customer_id": cid, "order_ts": first.isoformat(), "amount": 30.0}
        )
        channel = ("email", "search_ads", "display")[int(rng.integers(0, 3))]
        at = start + dt.timedelta(days=int(rng.integers(150, 250)), hours=10)
        touches.append(
            {
                "customer_id": cid,
                "ts": at.isoformat(),
                "channel": channel,
                "event": "click",
                "cost": COST[channel],
            }
        )
        if rng.random() < RATE[(region, channel)]:
            bought = at + dt.timedelta(days=1)
            touches.append(
                {
                    "customer_id": cid,
                    "ts": bought.isoformat(),
                    "channel": "web",
                    "event": "conversion",
                    "cost": 0.0,
                }
            )
            orders.append(
                {
                    "order_id": f"x{i}",
                    "customer_id": cid,
                    "order_ts": bought.isoformat(),
                    "amount": VALUE,
                }
            )
        treated = rng.random() < 0.5
        converted = rng.random() < BASE + (LIFT[region] if treated else 0.0)
        experiment.append(
            {
                "customer_id": cid,
                "experiment_id": "E1",
                "group": "treatment" if treated else "control",
                "converted": str(converted).lower(),
                "revenue": 40.0 if converted else 0.0,
            }
        )
    tables = {
        "customers": customers,
        "orders": orders,
        "touchpoints": touches,
        "experiments": experiment,
    }
    for name, rows in tables.items():
        _write(folder / f"{name}.csv", rows)
    return {
        "as_of": "2025-12-31",
        "sources": {name: {"path": f"{name}.csv"} for name in tables},
        "clv": {"enabled": False},
        "segments": {
            "schemes": [
                {
                    "name": "region",
                    "type": "geographic",
                    "rules": [
                        {"segment": r, "when": {"field": "region", "op": "==", "value": r}}
                        for r in REGIONS
                    ],
                }
            ]
        },
        "kpis": {"scheme": "region"},
        "measurement": {"experiments": {"contact_cost": 1.0, "margin": 0.5}},
    }


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> tuple[Any, Any]:
    folder = tmp_path_factory.mktemp("measure")
    config = parse_config(_shop(folder), base_dir=folder)
    return run(config), config


def _rows(table: pa.Table, **where: Any) -> list[dict[str, Any]]:
    return [r for r in table.to_pylist() if all(r[k] == v for k, v in where.items())]


def test_conversion_rates_and_roas_hold_the_planted_truth(shop: tuple[Any, Any]) -> None:
    result, _ = shop
    table = result.measurement.effectiveness
    for (region, channel), rate in RATE.items():
        (row,) = _rows(table, segment=region, channel=channel)
        assert row["reached"] == pytest.approx(N / 6, rel=0.1)
        assert row["conversion_rate_lower"] <= rate <= row["conversion_rate_upper"]
        roas = rate * VALUE / COST[channel]  # one touch and one credited conversion each
        assert row["roas_lower"] <= roas <= row["roas_upper"], (region, channel, row)
        assert row["cost"] == pytest.approx(COST[channel] * row["reached"])
        # linear credit of one-touch journeys: every conversion goes to the channel
        assert row["conversions"] == row["converted"]
        assert row["value"] == pytest.approx(VALUE * row["converted"])


def test_roles_follow_the_planted_effects(shop: tuple[Any, Any]) -> None:
    result, _ = shop
    roles = {
        (r["segment"], r["channel"]): r["role"]
        for r in result.measurement.effectiveness.to_pylist()
    }
    # ROAS: north email 15, search 1.25; south email 2.5, search 7.5; display 0.25 (< 1).
    assert roles[("north", "email")] == "primary"
    assert roles[("north", "search_ads")] == "secondary"
    assert roles[("south", "search_ads")] == "primary"
    assert roles[("south", "email")] == "secondary"
    assert roles[("north", "display")] == roles[("south", "display")] == "reduce"
    (display,) = _rows(result.measurement.effectiveness, segment="north", channel="display")
    assert "below 1 even at its upper bound" in display["reason"]


def test_stored_attribution_is_the_models_own(shop: tuple[Any, Any]) -> None:
    """The stored rows equal the models run directly on the same journeys."""
    result, config = shop
    folder = config.base_dir
    touches = _read(folder / "touchpoints.csv")
    values = {
        (o["customer_id"], o["order_ts"]): float(o["amount"]) for o in _read(folder / "orders.csv")
    }
    north = [t for t in touches if int(t["customer_id"][1:]) % 2 == 0]
    journeys = journeys_from_touches(
        [t["customer_id"] for t in north],
        [dt.datetime.fromisoformat(t["ts"]) for t in north],
        [t["channel"] for t in north],
        [t["event"] == "conversion" for t in north],
        [values.get((t["customer_id"], t["ts"]), 0.0) for t in north],
    )
    stored = result.measurement.attribution
    for model in ("last", "position", "markov", "shapley"):
        expected = attribute(journeys, model).to_dict()["channels"]
        rows = _rows(stored, segment="north", model=model)
        assert {r["channel"] for r in rows} == set(expected)
        for r in rows:
            assert r["conversions"] == pytest.approx(expected[r["channel"]]["conversions"])
            assert r["value"] == pytest.approx(expected[r["channel"]]["value"])
    shares = [r["share"] for r in _rows(stored, segment="all customers", model="markov")]
    assert sum(shares) == pytest.approx(1.0)
    assert result.measurement.details["conversions"] == "touchpoints"
    assert result.measurement.details["conversions_without_an_order"] == 0


def test_lift_per_segment_covers_the_planted_effect_and_feeds_priorities(
    shop: tuple[Any, Any],
) -> None:
    result, _ = shop
    lift = result.measurement.lift
    for region, effect in LIFT.items():
        (row,) = _rows(lift, segment=region, outcome="converted")
        assert row["ci_low"] <= effect <= row["ci_high"]
        assert row["experiment_id"] == "E1" and row["arm"] == "treatment"
    (north,) = _rows(lift, segment="north", outcome="converted")
    assert north["ci_low"] > 0  # 3,000 customers find a 10-point lift
    (revenue,) = _rows(lift, segment="all customers", outcome="revenue")
    expected_roi = (revenue["incremental"] * 0.5 - revenue["n_treated"]) / revenue["n_treated"]
    assert revenue["roi"] == pytest.approx(expected_roi)
    priorities = {r["segment"]: r for r in result.economics.priorities.to_pylist()}
    for region in REGIONS:
        (row,) = _rows(lift, segment=region, outcome="converted")
        assert priorities[region]["lift"] == pytest.approx(row["lift"])
        assert priorities[region]["lift_lower"] == pytest.approx(row["ci_low"])
    assert "measured lift" in priorities["north"]["reasons"]
    assert priorities["north"]["responsiveness_score"] > priorities["south"]["responsiveness_score"]


def test_the_store_holds_the_measurement(shop: tuple[Any, Any]) -> None:
    result, config = shop
    with Project(config) as project:
        view = project.runs.require_latest()
        found = view.measurement()
        roles = view.channel_roles()
    assert found["details"]["scheme"] == "region"
    assert len(found["channels"]) == result.measurement.effectiveness.num_rows
    assert len(found["attribution"]) == result.measurement.attribution.num_rows
    assert roles["north"]["email"] == "primary"
    assert roles["all customers"]["display"] == "reduce"
    assert found["uplift"] == {}  # uplift is off by default


def test_uplift_scores_reproduce_the_stored_evaluation(tmp_path: Path) -> None:
    raw = _shop(tmp_path, seed=3)
    raw["measurement"] = {"experiments": {"uplift": True, "uplift_features": []}}
    raw["measurement"]["experiments"]["uplift_features"] = ["orders", "revenue"]
    config = parse_config(raw, base_dir=tmp_path)
    result = run(config)
    found = result.measurement.details["uplift"]["E1"]
    assert found["outcome"] == "converted" and found["features"] == ["orders", "revenue"]
    scores = result.measurement.uplift_scores.to_pylist()
    holdout = {r["customer_id"]: r["uplift"] for r in scores if r["holdout"]}
    assert len(holdout) + found["n_train"] == N
    rows = _read(tmp_path / "experiments.csv")
    picked = [r for r in rows if r["customer_id"] in holdout]
    y = [r["converted"] == "true" for r in picked]
    t = [r["group"] == "treatment" for r in picked]
    score = [holdout[r["customer_id"]] for r in picked]
    assert qini_auc_score(y, score, t) == pytest.approx(found["qini_auc"])
    curves = result.measurement.uplift_curves.to_pylist()
    assert {r["curve"] for r in curves} == {"model", "perfect", "random"}
    model = [r["qini"] for r in curves if r["curve"] == "model"]
    assert model[0] == 0.0 and len(model) == 101


def test_measurement_config_errors_name_the_key(tmp_path: Path) -> None:
    raw = _shop(tmp_path)
    raw["measurement"] = {"scheme": "regoin"}
    with pytest.raises(ConfigError, match=r"measurement\.scheme 'regoin'") as caught:
        run(parse_config(raw, base_dir=tmp_path), write=False)
    assert "region" in str(caught.value)
    raw["measurement"] = {"experiments": {"outcomes": ["convertd"]}}
    with pytest.raises(ConfigError, match="'convertd', not a column"):
        run(parse_config(raw, base_dir=tmp_path), write=False)
    raw["measurement"] = {"attribution": {"position": [0.5, 0.5, 0.5]}}
    with pytest.raises(ConfigError, match="position"):
        parse_config(raw, base_dir=tmp_path)


def test_a_run_without_touchpoints_or_experiments_measures_nothing(tmp_path: Path) -> None:
    raw = _shop(tmp_path)
    raw["sources"] = {k: v for k, v in raw["sources"].items() if k in ("orders", "customers")}
    result = run(parse_config(raw, base_dir=tmp_path))
    assert result.measurement is None
    assert "measurement" not in result.timings


def test_an_experiment_too_small_for_an_uplift_model_is_skipped_not_fatal(
    tmp_path: Path,
) -> None:
    """Too few responders in a group of the training half: the run records why and goes
    on (the lift is still measured)."""
    raw = _shop(tmp_path, seed=5)
    rows = _read(tmp_path / "experiments.csv")[:400]
    controls = [r for r in rows if r["group"] == "control"]
    for r in controls[2:]:  # two responders in the whole control group
        r["converted"], r["revenue"] = "false", "0.0"
    _write(tmp_path / "experiments.csv", rows)
    raw["measurement"] = {"experiments": {"uplift": True}}
    result = run(parse_config(raw, base_dir=tmp_path), write=False)
    assert "fewer than 5 responders" in result.measurement.details["uplift"]["E1"]["skipped"]
    assert result.measurement.uplift_curves.num_rows == 0
    assert result.measurement.lift.num_rows > 0
