"""Benchmark: segvalue's RFM / BTYD feature step against hand-written DuckDB SQL and pandas.

Generates N orders (default 10 million) for N/10 customers, loads them once into an
in-memory DuckDB, then times in the same process, best of ``--repeat`` runs:

* segvalue: ``rfm_features`` (Ibis expression compiled for DuckDB) materialised to Arrow;
* DuckDB SQL: the same computation written by hand, materialised to Arrow;
* pandas: the same computation as a pandas groupby on a DataFrame already in memory.

All three results are checked to be equal before timings are printed as ratios.

Run: ``.venv/bin/python bench/rfm.py [--orders 10000000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import ibis
import numpy as np
import pandas as pd
import pyarrow as pa

from segvalue.features.materialise import to_arrow
from segvalue.features.rfm import rfm_features

AS_OF = dt.date(2025, 12, 31)
START = np.datetime64("2023-01-01T00:00:00", "s")


def make_orders(n_orders: int, seed: int = 7) -> pa.Table:
    """Orders for n_orders / 10 customers over three years; 3% returns."""
    rng = np.random.default_rng(seed)
    n_customers = max(n_orders // 10, 1)
    # Skewed but covering every customer: a few heavy buyers, a long tail of light ones.
    customer = np.minimum(
        (rng.random(n_orders) ** 2 * n_customers).astype(np.int64), n_customers - 1
    )
    seconds = rng.integers(0, 3 * 365 * 86400, n_orders)
    amount = np.round(rng.gamma(2.0, 30.0, n_orders), 2)
    returns = rng.random(n_orders) < 0.03
    amount[returns] *= -1
    return pa.table(
        {
            "order_id": pa.array(np.arange(n_orders)).cast(pa.string()),
            "customer_id": pa.array(customer).cast(pa.string()),
            "order_ts": pa.array(START + seconds.astype("timedelta64[s]")),
            "amount": amount,
        }
    )


SQL = f"""
WITH tx AS (
    SELECT customer_id, CAST(order_ts AS DATE) AS day, SUM(amount) AS value
    FROM orders WHERE amount >= 0 GROUP BY 1, 2
), agg AS (
    SELECT customer_id, COUNT(*) AS n, MIN(day) AS first_day, MAX(day) AS last_day,
           SUM(value) AS total, arg_min(value, day) AS first_value
    FROM tx GROUP BY 1
)
SELECT customer_id,
       n - 1 AS frequency,
       date_diff('day', first_day, last_day) / 7.0 AS recency,
       date_diff('day', first_day, DATE '{AS_OF.isoformat()}') / 7.0 AS "T",
       CASE WHEN n > 1 THEN (total - first_value) / (n - 1) ELSE 0 END AS monetary_value,
       first_day AS first_purchase,
       last_day AS last_purchase
FROM agg
"""


def pandas_rfm(frame: pd.DataFrame) -> pd.DataFrame:
    """The same features with a pandas groupby."""
    purchases = frame[frame["amount"] >= 0]
    tx = (
        purchases.assign(day=purchases["order_ts"].dt.normalize())
        .groupby(["customer_id", "day"], sort=False)["amount"]
        .sum()
        .reset_index()
        .sort_values(["customer_id", "day"])
    )
    grouped = tx.groupby("customer_id", sort=False)
    agg = pd.DataFrame(
        {
            "n": grouped.size(),
            "first_day": grouped["day"].min(),
            "last_day": grouped["day"].max(),
            "total": grouped["amount"].sum(),
            "first_value": grouped["amount"].first(),
        }
    )
    frequency = agg["n"] - 1
    end = pd.Timestamp(AS_OF)
    return pd.DataFrame(
        {
            "frequency": frequency,
            "recency": (agg["last_day"] - agg["first_day"]).dt.days / 7.0,
            "T": (end - agg["first_day"]).dt.days / 7.0,
            "monetary_value": np.where(
                frequency > 0, (agg["total"] - agg["first_value"]) / frequency.clip(lower=1), 0.0
            ),
        }
    ).reset_index()


def best_of(repeat: int, func: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def _sorted_values(table: pa.Table) -> dict[str, np.ndarray]:
    order = np.argsort(np.asarray(table.column("customer_id").to_pylist(), dtype=object))
    return {
        c: np.asarray(table.column(c).to_numpy())[order]
        for c in ("frequency", "recency", "T", "monetary_value")
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    t0 = time.perf_counter()
    orders = make_orders(args.orders)
    print(f"generated {orders.num_rows:,} orders in {time.perf_counter() - t0:.1f} s")
    con = ibis.duckdb.connect()
    table = con.create_table("orders", orders)
    frame = orders.to_pandas()

    expr = rfm_features(table, as_of=AS_OF, time_unit="week")
    t_seg, ours = best_of(args.repeat, lambda: to_arrow(expr))
    t_sql, hand = best_of(args.repeat, lambda: con.raw_sql(SQL).to_arrow_table())
    t_pd, theirs = best_of(args.repeat, lambda: pandas_rfm(frame))

    a, b = _sorted_values(ours), _sorted_values(hand)
    c = _sorted_values(pa.Table.from_pandas(theirs.astype({"customer_id": str})))
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-9, err_msg=f"SQL {key}")
        np.testing.assert_allclose(a[key], c[key], rtol=1e-9, err_msg=f"pandas {key}")

    print(f"customers: {ours.num_rows:,}; results equal across the three implementations")
    print(f"{'implementation':<22}{'seconds':>10}{'ratio to segvalue':>20}")
    for name, secs in (
        ("segvalue (Ibis)", t_seg),
        ("DuckDB SQL by hand", t_sql),
        ("pandas groupby", t_pd),
    ):
        print(f"{name:<22}{secs:>10.3f}{secs / t_seg:>20.2f}")
    print(f"segvalue / DuckDB SQL = {t_seg / t_sql:.2f} (goal <= 1.5)")
    print(f"pandas / segvalue = {t_pd / t_seg:.2f}")


if __name__ == "__main__":
    main()
