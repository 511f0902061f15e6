"""Personas say only what the data show: descriptors beyond the interval, unique names."""

from __future__ import annotations

import datetime as dt

import ibis
import numpy as np
import pyarrow as pa

from segvalue.features.customer import customer_features
from segvalue.segments.personas import (
    CONSTANT_AMOUNTS,
    NOTHING_DISTINCTIVE,
    build_personas,
    personas_markdown,
)
from segvalue.segments.profiles import segment_profiles


def _by_segment(personas: list) -> dict:  # type: ignore[type-arg]
    return {p.segment: p for p in personas}


def test_repeat_buyers_with_the_base_order_value_are_not_big_basket() -> None:
    """CDNOW's RFM segments: monetary_value (mean *repeat* spend, 0 for one-time buyers)
    of repeat buyers equals the base's order value (35.47 vs 35.89), yet averaging the
    one-time buyers' zeros in made them "big-basket"."""
    rng = np.random.default_rng(3)
    n = 300
    repeat = np.arange(n) < 150
    big = np.arange(n) >= 270  # a control: one-time buyers with twice the order value
    aov = np.where(big, 72.0, 35.9) + rng.normal(0, 2, n)
    features = pa.table(
        {
            "customer_id": [f"c{i:03d}" for i in range(n)],
            "frequency": np.where(repeat, 3, 0),
            "monetary_value": np.where(repeat, 35.5 + rng.normal(0, 2, n), 0.0),
            "average_order_value": aov,
            "orders": np.where(repeat, 4, 1),
        }
    )
    segment = np.where(repeat, "R", np.where(big, "B", "O"))
    members = pa.table({"customer_id": features.column("customer_id"), "segment": segment})
    profiles = segment_profiles(members, ibis.memtable(features))
    numeric = {(r["segment"], r["feature"]): r for r in profiles.numeric.to_pylist()}
    # profiled over repeat buyers only: the one-time buyers have no repeat spend
    assert numeric[("O", "monetary_value")]["n"] == 0
    assert abs(numeric[("R", "monetary_value")]["index"] - 100) < 5
    personas = _by_segment(build_personas(profiles))
    assert "basket" not in personas["R"].name.lower()
    assert "monetary value" not in personas["R"].description
    assert personas["B"].name.startswith("Big-basket")  # a real difference still shows


def _count_only_orders() -> ibis.Table:
    """Every amount 1.0: 40 customers with 6 orders, 160 with 1."""
    rows = []
    for i in range(200):
        for k in range(6 if i < 40 else 1):
            rows.append((f"o{i}-{k}", f"c{i:03d}", dt.datetime(2024, 1 + k, 1 + i % 28), 1.0))
    ids, customers, ts, amounts = zip(*rows, strict=True)
    return ibis.memtable(
        {"order_id": ids, "customer_id": customers, "order_ts": ts, "amount": amounts}
    )


def test_count_only_data_never_yields_spend_descriptors() -> None:
    features = customer_features({"orders": _count_only_orders()}, as_of=dt.date(2024, 7, 31))
    members = ibis.memtable(
        {
            "customer_id": [f"c{i:03d}" for i in range(200)],
            "segment": ["heavy" if i < 40 else "light" for i in range(200)],
        }
    )
    profiles = segment_profiles(members, features)
    assert profiles.constant_amounts
    personas = build_personas(profiles)
    heavy = _by_segment(personas)["heavy"]
    for p in personas:
        text = (p.name + " " + p.description).lower()
        assert "spending" not in text and "basket" not in text, p.name
        for spend in ("gross revenue", "; revenue", ": revenue", "order value", "monetary"):
            assert spend not in p.description, p.description
        assert p.description.count(CONSTANT_AMOUNTS) == 1
        assert not any(e["attribute"] in ("revenue", "gross_revenue") for e in p.evidence)
    assert "frequent" in heavy.name.lower()  # the count itself is still described


def test_amounts_that_vary_are_not_count_only() -> None:
    orders = _count_only_orders()
    orders = orders.mutate(amount=(orders.customer_id == "c000").ifelse(2.0, orders.amount))
    features = customer_features({"orders": orders}, as_of=dt.date(2024, 7, 31))
    members = features.select("customer_id", segment=ibis.literal("all"))
    assert not segment_profiles(members, features).constant_amounts


def test_names_are_unique_within_a_scheme_by_the_next_distinct_trait() -> None:
    rng = np.random.default_rng(11)
    n = 300
    seg = np.array(["weekend"] * 60 + ["december"] * 60 + ["rest"] * 180)
    frequent = seg != "rest"
    features = pa.table(
        {
            "customer_id": [f"c{i:03d}" for i in range(n)],
            "orders": np.where(frequent, 9, 2) + rng.integers(0, 2, n),
            "weekend_share": np.where(seg == "weekend", 0.8, 0.2) + rng.uniform(0, 0.05, n),
            "december_share": np.where(seg == "december", 0.6, 0.05) + rng.uniform(0, 0.05, n),
        }
    )
    members = pa.table({"customer_id": features.column("customer_id"), "segment": seg})
    personas = _by_segment(build_personas(segment_profiles(members, ibis.memtable(features))))
    assert personas["weekend"].name == "Frequent customers, high weekend share"
    assert personas["december"].name == "Frequent customers, high december share"


def test_five_indistinguishable_segments_get_five_names() -> None:
    ids = [f"c{i}" for i in range(100)]
    features = ibis.memtable({"customer_id": ids, "orders": [i % 3 for i in range(100)]})
    segments = ["S1", "S2", "S3", "S4", "S5"] * 20
    members = pa.table(
        {
            "customer_id": ids * 2,
            "scheme": ["a"] * 100 + ["b"] * 100,
            "segment": segments + segments,
        }
    )
    personas = build_personas(segment_profiles(members, features))
    for scheme in ("a", "b"):
        names = [p.name for p in personas if p.scheme == scheme]
        assert len(names) == len(set(names)) == 5
    assert {p.name for p in personas if p.scheme == "a"} == {
        f"Typical customers (S{i})" for i in range(1, 6)
    }


def test_a_segment_with_nothing_distinctive_says_so_once() -> None:
    ids = [f"c{i}" for i in range(60)]
    features = ibis.memtable(
        {
            "customer_id": ids,
            "orders": [1 + (i // 3) % 3 for i in range(60)],
            "engaged_email": [i % 2 for i in range(60)],
        }
    )
    members = pa.table({"customer_id": ids, "segment": ["A", "B", "C"] * 20})
    personas = build_personas(segment_profiles(members, features))
    sheet = personas_markdown(personas)
    assert sheet.count(NOTHING_DISTINCTIVE) == 3
    for p in personas:
        assert p.description.count(NOTHING_DISTINCTIVE) == 1
        assert p.needs == p.objections == () and p.tone == ""
    for placeholder in ("none in the data", "no marked objection", "serve the core range"):
        assert placeholder not in sheet
    assert "**Preferred channels:**" in sheet  # data that exist are still shown


def test_personas_alike_against_the_base_are_told_apart_by_what_separates_them() -> None:
    """CDNOW's RFM "Lost", "About To Sleep" and "Promising" are all lapsing one-time buyers
    against the base; between themselves they differ in days since the last order."""
    days = {"rest": 50.0, "L1": 300.0, "L2": 450.0, "L3": 600.0}
    sizes = {"rest": 600, "L1": 50, "L2": 50, "L3": 50}
    segment = [name for name, size in sizes.items() for _ in range(size)]
    features = pa.table(
        {
            "customer_id": [f"c{i:03d}" for i in range(len(segment))],
            "days_since_last_order": [days[s] + (i % 2) for i, s in enumerate(segment)],
        }
    )
    members = pa.table({"customer_id": features.column("customer_id"), "segment": segment})
    personas = _by_segment(build_personas(segment_profiles(members, ibis.memtable(features))))
    assert [personas[s].name for s in ("L1", "L2", "L3")] == [
        "Lapsing customers, days since last order 300",
        "Lapsing customers, days since last order 450",
        "Lapsing customers, days since last order 600",
    ]
