"""Benchmark: segvalue's segment assignment in DuckDB against the same work in pandas.

Builds a customer feature table of N customers (default 1,000,000) in memory, loads it
once into an in-memory DuckDB, then times in the same process, best of ``--repeat`` runs:

* RFM: scores 1..5 by quantile (shared ties) and the 11 named segments
  (:func:`segvalue.segments.rfm.assign_rfm`);
* rule schemes: a demographic (age bands), a geographic (country groups) and a
  behavioural scheme (discount share, order count) (:func:`assign_rule_scheme`);
* k-means: fitted on a 50,000-customer sample (timed separately) and every customer
  assigned to the nearest centroid in the engine (:func:`assign_clusters`);

each materialised to Arrow, and the same three steps on a pandas DataFrame already in
memory (``rank`` / ``np.select`` / numpy distances). Every membership table is checked to
hold each customer exactly once, and segvalue's RFM segments and cluster labels are
checked to equal pandas'. Lifecycle stages (which need the order history: orders are
generated to match each customer's order count and last-order date) are timed on their
own and checked to give every customer exactly one stage. The goal (issue 4): the three
segvalue steps within 20 s for 1,000,000 customers on 2 cores.

Run: ``.venv/bin/python bench/segments.py [--customers 1000000] [--repeat 3]``
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

from segvalue.config import ClusterConfig, RFMConfig, RuleSchemeConfig
from segvalue.features.materialise import to_arrow
from segvalue.segments.clusters import assign_clusters, fit_clusters
from segvalue.segments.lifecycle import assign_lifecycle, purchase_gaps
from segvalue.segments.rfm import assign_rfm, default_rfm_segments
from segvalue.segments.rules import assign_rule_scheme

COUNTRIES = ("DE", "AT", "FR", "NL", "ES", "IT", "SE", "DK", "PL")
CLUSTER_FEATURES = ("orders", "revenue", "age", "income")


def make_features(n: int, seed: int = 3) -> pa.Table:
    """Six planted groups of customers with RFM measures and attributes."""
    rng = np.random.default_rng(seed)
    group = rng.integers(0, 6, n)
    centres = np.array(
        [[2, 80, 25, 25e3], [12, 900, 45, 70e3], [5, 300, 60, 40e3], [1, 40, 35, 30e3],
         [20, 2500, 50, 120e3], [8, 500, 30, 55e3]]
    )  # fmt: skip
    spread = centres * np.array([0.25, 0.25, 0.1, 0.15])
    values = centres[group] + rng.normal(size=(n, 4)) * spread[group]
    orders = np.maximum(np.round(values[:, 0]), 0).astype(np.int64)
    revenue = np.where(orders > 0, np.maximum(values[:, 1], 1.0), 0.0).round(2)
    days = np.where(orders > 0, rng.integers(0, 720, n), None)
    return pa.table(
        {
            "customer_id": pa.array([f"C{i:07d}" for i in range(n)]),
            "orders": orders,
            "revenue": revenue,
            "days_since_last_order": pa.array(days, pa.int64()),
            "age": np.clip(np.round(values[:, 2]), 18, 95).astype(np.int64),
            "income": np.maximum(values[:, 3], 0.0).round(-2),
            "country": pa.array(np.array(COUNTRIES)[rng.integers(0, len(COUNTRIES), n)]),
            "discount_share": rng.beta(1.0, 3.0, n).round(3),
        }
    )


AS_OF = dt.date(2025, 12, 31)


def make_orders(features: pa.Table, seed: int = 4) -> pa.Table:
    """Each customer's orders: the last one ``days_since_last_order`` before AS_OF."""
    rng = np.random.default_rng(seed)
    counts = features.column("orders").to_numpy()
    last = features.column("days_since_last_order").to_numpy(zero_copy_only=False)
    owner = np.repeat(np.arange(counts.size), counts)
    first_of = np.cumsum(counts) - counts
    is_last = np.zeros(owner.size, dtype=bool)
    is_last[(first_of + counts - 1)[counts > 0]] = True
    days_back = np.where(is_last, last[owner], last[owner] + rng.integers(1, 900, owner.size))
    day = np.datetime64(AS_OF.isoformat()) - days_back.astype("timedelta64[D]")
    ids = features.column("customer_id").to_numpy(zero_copy_only=False)
    return pa.table(
        {
            "order_id": pa.array(np.arange(owner.size).astype(str)),
            "customer_id": pa.array(ids[owner]),
            "order_ts": pa.array(day.astype("datetime64[s]")),
            "amount": rng.gamma(2.0, 40.0, owner.size).round(2),
        }
    )


def _rule(segment: str, field: str, op: str, value: Any) -> dict[str, Any]:
    return {"segment": segment, "when": {"field": field, "op": op, "value": value}}


SCHEMES = [
    RuleSchemeConfig.model_validate(
        {
            "name": "age_band",
            "type": "demographic",
            "rules": [
                _rule("under 30", "age", "<", 30),
                _rule("30-49", "age", "between", [30, 49]),
                _rule("50 and over", "age", ">=", 50),
            ],
        }
    ),
    RuleSchemeConfig.model_validate(
        {
            "name": "market",
            "type": "geographic",
            "rules": [
                _rule("DACH", "country", "in", ["DE", "AT", "CH"]),
                _rule("Nordics", "country", "in", ["SE", "DK", "FI"]),
                _rule("South", "country", "in", ["ES", "IT"]),
            ],
        }
    ),
    RuleSchemeConfig.model_validate(
        {
            "name": "behaviour",
            "type": "behavioural",
            "rules": [
                _rule("deal seekers", "discount_share", ">=", 0.5),
                _rule("heavy buyers", "orders", ">=", 10),
                _rule("buyers", "orders", ">=", 1),
            ],
        }
    ),
]
RFM = RFMConfig(type="rfm")
CLUSTERS = ClusterConfig(
    type="cluster", features=list(CLUSTER_FEATURES), transform="log1p", k=6, seed=0
)


# --- pandas -------------------------------------------------------------------------------
def _pandas_scores(values: pd.Series, bins: int, higher_is_better: bool) -> pd.Series:
    """Shared ties: the NTILE bin of the value's rank among buyers (rank = 1 + worse)."""
    ranked = (values if higher_is_better else -values).rank(method="min")
    n = values.notna().sum()
    position = ranked - 1  # customers with a strictly worse value
    # NTILE(bins) over n rows: the first n % bins bins hold one row more.
    size, extra = divmod(int(n), bins)
    big = extra * (size + 1)
    score = np.where(
        position < big, position // (size + 1), extra + (position - big) // max(size, 1)
    )
    return pd.Series(score + 1, index=values.index).where(values.notna())


def pandas_rfm(df: pd.DataFrame) -> pd.Series:
    buyers = df["orders"] > 0
    r = _pandas_scores(df["days_since_last_order"].where(buyers).astype(float), 5, False)
    f = _pandas_scores(df["orders"].where(buyers).astype(float), 5, True)
    m = _pandas_scores(df["revenue"].where(buyers), 5, True)
    fm = np.floor((f + m) / 2 + 0.5)
    conditions, names = [], []
    for rule in default_rfm_segments(5):
        ok = buyers.to_numpy().copy()
        for score, bounds in ((r, rule.r), (f, rule.f), (m, rule.m), (fm, rule.fm)):
            if bounds is not None:
                ok &= ((score >= bounds[0]) & (score <= bounds[1])).to_numpy()
        conditions.append(ok)
        names.append(rule.segment)
    return pd.Series(np.select(conditions, names, default=RFM.unassigned), index=df.index)


def pandas_rules(df: pd.DataFrame) -> list[pd.Series]:
    age, country = df["age"], df["country"]
    return [
        pd.Series(
            np.select(
                [age < 30, age.between(30, 49), age >= 50],
                ["under 30", "30-49", "50 and over"],
                "unassigned",
            )
        ),
        pd.Series(
            np.select(
                [
                    country.isin(["DE", "AT", "CH"]),
                    country.isin(["SE", "DK", "FI"]),
                    country.isin(["ES", "IT"]),
                ],
                ["DACH", "Nordics", "South"],
                "unassigned",
            )
        ),
        pd.Series(
            np.select(
                [df["discount_share"] >= 0.5, df["orders"] >= 10, df["orders"] >= 1],
                ["deal seekers", "heavy buyers", "buyers"],
                "unassigned",
            )
        ),
    ]


def pandas_clusters(df: pd.DataFrame, model: Any) -> np.ndarray:
    columns = {c: df[c].to_numpy(dtype=float) for c in CLUSTER_FEATURES}
    return np.asarray(model.predict(columns))


# --- timing -------------------------------------------------------------------------------
def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, Any]:
    best, out = float("inf"), None
    for _ in range(max(repeat, 1)):
        start = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - start)
    return best, out


def _one_each(table: pa.Table, n: int, what: str) -> None:
    ids = table.column("customer_id")
    distinct = len(pa.compute.unique(ids))
    assert table.num_rows == n and distinct == n, f"{what}: {table.num_rows} rows, {distinct}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    n = args.customers

    features = make_features(n)
    con = ibis.duckdb.connect()
    table = con.create_table("features", features)
    df = features.to_pandas()
    print(f"{n:,} customers; DuckDB threads: {os.cpu_count()} cores")

    start = time.perf_counter()
    model = fit_clusters(table, CLUSTERS)
    fit_seconds = time.perf_counter() - start

    def sv_rfm() -> pa.Table:
        return to_arrow(assign_rfm(table, RFM).select("customer_id", "segment"))

    def sv_rules() -> list[pa.Table]:
        return [to_arrow(assign_rule_scheme(table, s)) for s in SCHEMES]

    def sv_clusters() -> pa.Table:
        return to_arrow(assign_clusters(table, model))

    rows = []
    sv_total = pd_total = 0.0
    for label, ours, theirs in (
        ("RFM scores + 11 named segments", sv_rfm, lambda: pandas_rfm(df)),
        ("3 rule schemes", sv_rules, lambda: pandas_rules(df)),
        ("k-means assignment (k=6)", sv_clusters, lambda: pandas_clusters(df, model)),
    ):
        sv_seconds, sv_out = _timed(ours, args.repeat)
        pd_seconds, pd_out = _timed(theirs, args.repeat)
        sv_total += sv_seconds
        pd_total += pd_seconds
        for part in sv_out if isinstance(sv_out, list) else [sv_out]:
            _one_each(part, n, label)
        if label.startswith("RFM"):
            got = dict(
                zip(sv_out["customer_id"].to_pylist(), sv_out["segment"].to_pylist(), strict=True)
            )
            want = dict(zip(df["customer_id"], pd_out, strict=True))
            assert got == want, "RFM segments differ from pandas"
        if label.startswith("k-means"):
            got = dict(
                zip(sv_out["customer_id"].to_pylist(), sv_out["segment"].to_pylist(), strict=True)
            )
            assert [got[c] for c in df["customer_id"]] == list(pd_out), "labels differ"
        rows.append((label, sv_seconds, pd_seconds))

    print("\n| step | segvalue (DuckDB) s | pandas s | pandas / segvalue |")
    print("|---|---:|---:|---:|")
    for label, sv_seconds, pd_seconds in rows:
        print(f"| {label} | {sv_seconds:.2f} | {pd_seconds:.2f} | {pd_seconds / sv_seconds:.2f} |")
    print(f"| total | {sv_total:.2f} | {pd_total:.2f} | {pd_total / sv_total:.2f} |")
    verdict = "met" if sv_total <= 20 else "MISSED"
    print(f"\nsegvalue total {sv_total:.2f} s for {n:,} customers (goal <= 20 s: {verdict})")
    print(f"k-means fit on a {CLUSTERS.sample_size:,}-customer sample: {fit_seconds:.2f} s")

    orders = con.create_table("orders", make_orders(features))

    def lifecycle() -> pa.Table:
        # As the pipeline does: the purchase gaps stored once, read by thresholds and stages.
        gaps = con.create_table("gaps", purchase_gaps(orders), overwrite=True)
        result = assign_lifecycle(orders, as_of=AS_OF, customers=table, gaps=gaps)
        return to_arrow(result.memberships)

    life_seconds, stages = _timed(lifecycle, args.repeat)
    _one_each(stages, n, "lifecycle")
    print(
        f"lifecycle stages (thresholds from {orders.count().execute():,} orders' gaps): "
        f"{life_seconds:.2f} s, one stage per customer (checked)"
    )
    print("every membership table: one row per customer (checked); RFM segments and cluster")
    print("labels equal pandas' (checked)")


if __name__ == "__main__":
    main()
