"""Benchmark: the segment KPI table in DuckDB against the same work in pandas.

Builds N customers (default 1,000,000) with CLV scores, about 4 orders each (with margin,
returns, dates over two years) and a 20-segment membership table of unequal sizes, loads
features and orders once into an in-memory DuckDB, then times in the same process, best
of ``--repeat`` runs:

* segvalue: :func:`segvalue.economics.kpis.segment_kpis` (features + orders: every KPI
  of the table that these inputs support, with intervals), from the engine tables to the
  finished Arrow table;
* pandas: the same per-customer margin and retention flags (``groupby`` on the orders),
  the join with the memberships and the per-segment sums, from DataFrames already in
  memory, followed by the same interval functions.

The two tables are checked to agree. With ``--touchpoints`` a touchpoint table (about 3 per
customer, with cost and events) is added and segvalue is timed again (CAC, CLV:CAC, ROI,
conversion rates; no pandas baseline). The goal (issue 5): the KPI table for 1,000,000
customers and 20 segments within 10 s on 2 cores.

Run: ``.venv/bin/python bench/kpis.py [--customers 1000000] [--repeat 3] [--touchpoints]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import time
from collections.abc import Callable
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from segvalue.config import KPIConfig
from segvalue.economics.intervals import ratio_interval, t_interval, wilson_interval
from segvalue.economics.kpis import ALL_CUSTOMERS, segment_kpis

AS_OF = dt.date(2025, 12, 31)
SEGMENTS = 20
RETENTION_DAYS = 90


def make_data(n: int, seed: int = 11) -> dict[str, pa.Table]:
    """Features with CLV scores, orders with margin and returns, 20 unequal segments."""
    rng = np.random.default_rng(seed)
    ids = np.array([f"C{i:07d}" for i in range(n)])
    weights = rng.dirichlet(np.full(SEGMENTS, 2.0))
    segment = rng.choice(SEGMENTS, n, p=weights)
    rate = rng.gamma(1.5, 1.0, n) * (0.5 + segment / SEGMENTS)
    count = rng.poisson(2.5 * rate)
    count[rng.random(n) < 0.05] = 0  # prospects
    owner = np.repeat(np.arange(n), count)
    days_back = rng.integers(0, 730, owner.size)
    order_ts = (np.datetime64(AS_OF.isoformat()) - days_back.astype("timedelta64[D]")).astype(
        "datetime64[s]"
    ) + rng.integers(0, 86_400, owner.size).astype("timedelta64[s]")
    amount = rng.gamma(2.0, 40.0, owner.size).round(2)
    returned = rng.random(owner.size) < 0.04
    amount = np.where(returned, -amount, amount)
    margin = (amount * rng.uniform(0.15, 0.45, owner.size)).round(2)
    purchases = np.bincount(owner, weights=(amount >= 0).astype(float), minlength=n)
    revenue = np.bincount(owner, weights=amount, minlength=n)
    first = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    buys = amount >= 0
    order = np.lexsort((order_ts[buys], owner[buys]))
    owners, starts = np.unique(owner[buys][order], return_index=True)
    first[owners] = order_ts[buys][order][starts].astype("datetime64[D]")
    scored = purchases > 0
    clv = np.where(scored, rng.gamma(0.8, 60.0, n) * (1 + segment / 5), np.nan)
    churn = np.where(scored, rng.beta(2.0, 3.0, n), np.nan)
    features = pa.table(
        {
            "customer_id": ids,
            "orders": purchases.astype(np.int64),
            "revenue": revenue.round(2),
            "first_purchase": pa.array(first, mask=np.isnat(first)),
            "churn_risk": pa.array(churn, mask=~scored),
            "clv": pa.array(clv, mask=~scored),
            "clv_lower": pa.array(clv * 0.9, mask=~scored),
            "clv_upper": pa.array(clv * 1.1, mask=~scored),
        }
    )
    orders = pa.table(
        {
            "order_id": pa.array(np.arange(owner.size).astype(str)),
            "customer_id": ids[owner],
            "order_ts": order_ts,
            "amount": amount,
            "margin": margin,
        }
    )
    names = np.array([f"segment {i + 1:02d}" for i in range(SEGMENTS)])
    memberships = pa.table(
        {"customer_id": ids, "scheme": np.full(n, "bench"), "segment": names[segment]}
    )
    return {"features": features, "orders": orders, "memberships": memberships}


def make_touchpoints(features: pa.Table, seed: int = 12) -> pa.Table:
    rng = np.random.default_rng(seed)
    ids = features.column("customer_id").to_numpy(zero_copy_only=False)
    owner = rng.integers(0, ids.size, 3 * ids.size)
    ts = np.datetime64(AS_OF.isoformat()) - rng.integers(1, 730 * 86_400, owner.size).astype(
        "timedelta64[s]"
    )
    channels = np.array(["email", "paid_social", "search_ads", "app_push", "onsite"])
    events = np.array(["impression", "click", "open", "visit", "conversion"])
    return pa.table(
        {
            "customer_id": ids[owner],
            "ts": ts,
            "channel": channels[rng.integers(0, channels.size, owner.size)],
            "event": events[rng.choice(events.size, owner.size, p=[0.6, 0.2, 0.1, 0.07, 0.03])],
            "cost": rng.gamma(1.0, 0.3, owner.size).round(4),
        }
    )


# --- pandas -------------------------------------------------------------------------------
def pandas_kpis(
    features: pd.DataFrame, orders: pd.DataFrame, members: pd.DataFrame
) -> pd.DataFrame:
    """The KPIs segment_kpis computes from features + orders, with pandas."""
    end = pd.Timestamp(AS_OF + dt.timedelta(days=1))
    latest = end - pd.Timedelta(days=RETENTION_DAYS)
    previous = latest - pd.Timedelta(days=RETENTION_DAYS)
    buy = orders["amount"] >= 0
    ts = orders["order_ts"]
    per_order = pd.DataFrame(
        {
            "customer_id": orders["customer_id"],
            "prev": (buy & (ts >= previous) & (ts < latest)).astype(float),
            "last": (buy & (ts >= latest) & (ts < end)).astype(float),
            "m": orders["margin"],
        }
    )
    per_customer = per_order.groupby("customer_id").agg(
        prev=("prev", "max"), last=("last", "max"), m=("m", "sum")
    )
    df = features.join(per_customer, on="customer_id")
    o = df["orders"].astype(float)
    r = df["revenue"]
    out = pd.DataFrame(
        {
            "o": o,
            "r": r,
            "oo": o * o,
            "rr": r * r,
            "ro": r * o,
            "b": (o >= 1).astype(float),
            "rep": (o >= 2).astype(float),
            "prev": df["prev"].fillna(0.0),
            "kept": (df["prev"] * df["last"]).fillna(0.0),
            "m": df["m"].fillna(0.0),
            "v": df["clv"].fillna(0.0),
            "vv": df["clv"].fillna(0.0) ** 2,
            "hv": df["clv"].notna().astype(float),
            "ch": df["churn_risk"].fillna(0.0),
            "chch": df["churn_risk"].fillna(0.0) ** 2,
        }
    )
    out["customer_id"] = df["customer_id"]
    joined = members.merge(out, on="customer_id")
    sums = joined.groupby("segment").sum(numeric_only=True)
    sums.loc[ALL_CUSTOMERS] = out.sum(numeric_only=True)
    sums["n"] = joined.groupby("segment").size()
    sums.loc[ALL_CUSTOMERS, "n"] = len(out)
    n = sums["n"].to_numpy(float)
    total = float(len(out))
    result = pd.DataFrame(index=sums.index)
    result["customers"] = n
    result["share"] = wilson_interval(n, np.full(n.size, total)).estimate
    aov = ratio_interval(sums["r"], sums["o"], sums["rr"], sums["oo"], sums["ro"], sums["b"])
    result["average_order_value"], result["average_order_value_lower"] = aov.estimate, aov.lower
    result["purchase_frequency_upper"] = t_interval(sums["o"], sums["oo"], sums["b"]).upper
    result["repeat_rate_lower"] = wilson_interval(sums["rep"], sums["b"]).lower
    result["retention_rate_upper"] = wilson_interval(sums["kept"], sums["prev"]).upper
    result["clv_mean_lower"] = t_interval(sums["v"], sums["vv"], sums["hv"]).lower
    result["churn_risk"] = t_interval(sums["ch"], sums["chch"], sums["hv"]).estimate
    result["margin"] = sums["m"]
    return result


# --- timing -------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(max(repeat, 1)):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _check_same(ours: pa.Table, theirs: pd.DataFrame) -> None:
    rows = {r["segment"]: r for r in ours.to_pylist()}
    assert set(rows) == set(theirs.index), "segments differ"
    for segment, want in theirs.iterrows():
        for column, value in want.items():
            got = rows[segment][column]
            if np.isnan(value):
                assert got is None, (segment, column)
            else:
                assert abs(got - value) <= 1e-9 * max(1.0, abs(value)), (
                    segment,
                    column,
                    got,
                    value,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--touchpoints", action="store_true")
    args = parser.parse_args()
    n = args.customers

    start = time.perf_counter()
    data = make_data(n)
    con = ibis.duckdb.connect()
    features = con.create_table("features", data["features"])
    orders = con.create_table("orders", data["orders"])
    members = data["memberships"]
    config = KPIConfig(retention_days=RETENTION_DAYS)
    setup = time.perf_counter() - start
    print(
        f"{n:,} customers, {data['orders'].num_rows:,} orders, {SEGMENTS} segments; "
        f"{os.cpu_count()} cores; data generated and loaded in {setup:.1f} s"
    )

    def ours() -> pa.Table:
        return segment_kpis(members, features, orders=orders, config=config, as_of=AS_OF)

    frames = {k: v.to_pandas() for k, v in data.items()}
    frames["orders"]["order_ts"] = frames["orders"]["order_ts"].astype("datetime64[ns]")

    def theirs() -> pd.DataFrame:
        return pandas_kpis(frames["features"], frames["orders"], frames["memberships"])

    sv_seconds, table = _timed(ours, args.repeat)
    pd_seconds, frame = _timed(theirs, args.repeat)
    _check_same(table, frame)
    rows = [("KPI table, features + orders", sv_seconds, pd_seconds)]

    if args.touchpoints:
        touches = con.create_table("touchpoints", make_touchpoints(data["features"]))
        tp_seconds, with_touches = _timed(
            lambda: segment_kpis(
                members, features, orders=orders, touchpoints=touches, config=config, as_of=AS_OF
            ),
            args.repeat,
        )
        assert with_touches.column("cac").null_count == 0
        rows.append(
            (
                f"... + {touches.count().execute():,} touchpoints (CAC, ROI, conversion)",
                tp_seconds,
                None,
            )
        )

    print("\n| step | segvalue (DuckDB) s | pandas s | pandas / segvalue |")
    print("|---|---:|---:|---:|")
    for label, sv, pd_s in rows:
        ratio = "" if pd_s is None else f"{pd_s / sv:.2f}"
        pandas = "" if pd_s is None else f"{pd_s:.2f}"
        print(f"| {label} | {sv:.2f} | {pandas} | {ratio} |")
    verdict = "met" if sv_seconds <= 10 else "MISSED"
    print(
        f"\nsegvalue {sv_seconds:.2f} s for {n:,} customers and {SEGMENTS} segments "
        f"(goal <= 10 s: {verdict}); the pandas table agrees (checked)"
    )


if __name__ == "__main__":
    main()
