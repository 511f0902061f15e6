"""Benchmark: next-best recommendations and their holdout evaluation on the demo retailer.

Generates the demo (default 100,000 customers, seed 42), joins orders and order lines
once, then times in the same process, best of ``--repeat`` runs:

* segvalue ``recommend`` (product level, k = 5, the persona truth as segments) for every
  customer, reasons included;
* segvalue ``evaluate``: the holdout hit rate at 5 (train before the last 13 weeks, test
  on them) of the model and the popularity baseline; printed for the product level (with
  the persona truth as segments, and with none) and the category level (k = 5 and 1);
* the popularity baseline three ways: segvalue (``method="popularity"``), hand-written
  DuckDB SQL and pandas, each the top 5 products most customers bought that the customer
  has not (ties by product id; a customer with n products needs only the k + n most
  popular as candidates). The three are checked to agree before timings print.

With ``--catalogue 10000`` it also times a synthetic catalogue of that many products (the
sparse path: more than 4,096 items).

Run: ``.venv/bin/python bench/recommend.py [--customers 100000] [--repeat 3]
[--catalogue 10000]``
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from collections.abc import Callable
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa

from segvalue.activation.recommend import evaluate, purchase_lines, recommend
from segvalue.data.demo import generate_demo

K = 5


def popularity_sql(as_of: dt.date, k: int) -> str:
    """Top-k products by buyers that each customer has not bought, in DuckDB SQL.

    A customer who bought ``n`` products finds their k within the ``k + n`` most popular
    (ties by product id), so each customer is joined to those only.
    """
    return f"""
WITH pairs AS (
    SELECT DISTINCT customer_id, product_id FROM lines WHERE order_ts < DATE '{as_of}'
), popular AS (
    SELECT product_id, COUNT(*) AS buyers,
           ROW_NUMBER() OVER (ORDER BY COUNT(*) DESC, product_id) AS position
    FROM pairs GROUP BY 1
), depth AS (
    SELECT c.customer_id, {k} + COUNT(b.product_id) AS depth
    FROM customers c LEFT JOIN pairs b USING (customer_id) GROUP BY 1
), open AS (
    SELECT d.customer_id, p.product_id, p.position
    FROM depth d JOIN popular p ON p.position <= d.depth
    ANTI JOIN pairs b ON b.customer_id = d.customer_id AND b.product_id = p.product_id
)
SELECT customer_id, rank, item FROM (
    SELECT customer_id, product_id AS item,
           ROW_NUMBER() OVER (PARTITION BY customer_id ORDER BY position) AS rank
    FROM open
) WHERE rank <= {k}
ORDER BY customer_id, rank
"""


def popularity_pandas(lines: pd.DataFrame, customers: pd.Series, as_of: dt.date) -> pd.DataFrame:
    """The same top-k with pandas (the same per-customer depth)."""
    seen = lines[lines["order_ts"] < pd.Timestamp(as_of)]
    pairs = seen[["customer_id", "product_id"]].drop_duplicates()
    popular = (
        pairs.groupby("product_id").size().rename("buyers").reset_index()
        .sort_values(["buyers", "product_id"], ascending=[False, True])
        .reset_index(drop=True)
    )  # fmt: skip
    bought = pairs.groupby("customer_id").size()
    depth = np.minimum(K + bought.reindex(customers, fill_value=0).to_numpy(), len(popular))
    who = np.repeat(customers.to_numpy(), depth)
    position = np.arange(int(depth.sum())) - np.repeat(np.cumsum(depth) - depth, depth)
    grid = pd.DataFrame({"customer_id": who, "position": position})
    grid["product_id"] = popular["product_id"].to_numpy()[position]
    marked = grid.merge(pairs, on=["customer_id", "product_id"], how="left", indicator=True)
    left = marked[marked["_merge"] == "left_only"]
    left = left.assign(rank=left.groupby("customer_id").cumcount() + 1)
    out = left[left["rank"] <= K][["customer_id", "rank", "product_id"]]
    return out.rename(columns={"product_id": "item"}).reset_index(drop=True)


def wide_catalogue(n_customers: int, n_products: int, seed: int = 0) -> pa.Table:
    """Purchase lines over a catalogue wider than the demo's 2,500 products: categories of
    250 products; each customer buys mostly from two favourite categories (70 % / 15 %,
    the rest anywhere), about 10 lines over three years, products by a popularity curve
    shared by everyone (the demo's ``250 u**2`` rank)."""
    rng = np.random.default_rng(seed)
    per = 250
    categories = max(n_products // per, 1)
    customer = np.repeat(np.arange(n_customers), 1 + rng.poisson(9, n_customers))
    taste = rng.integers(0, categories, (n_customers, 2))
    draw = rng.random(customer.size)
    category = np.where(
        draw < 0.7,
        taste[customer, 0],
        np.where(draw < 0.85, taste[customer, 1], rng.integers(0, categories, customer.size)),
    )
    product = category * per + np.floor(per * rng.random(customer.size) ** 2).astype(np.int64)
    seconds = rng.integers(1, 3 * 365 * 86_400, customer.size).astype("timedelta64[s]")
    return pa.table(
        {
            "customer_id": pa.array(np.char.add("C", customer.astype(str))),
            "order_ts": pa.array(np.datetime64("2025-12-31T00:00:00") - seconds),
            "product_id": pa.array(np.char.add("P", product.astype(str))),
            "category": pa.array(np.char.add("K", category.astype(str))),
        }
    )


def best_of(repeat: int, func: Callable[[], Any]) -> tuple[float, Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return min(times), result


def _triples(table: pa.Table) -> list[tuple[str, int, str]]:
    rows = zip(
        table.column("customer_id").to_pylist(),
        table.column("rank").to_pylist(),
        table.column("item").to_pylist(),
        strict=True,
    )
    return sorted((str(c), int(r), str(i)) for c, r, i in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--catalogue",
        type=int,
        default=0,
        help="also time a synthetic catalogue of this many products (e.g. 10000)",
    )
    args = parser.parse_args()

    t0 = time.perf_counter()
    demo = generate_demo(args.customers, seed=args.seed)
    t_demo = time.perf_counter() - t0
    t_lines, lines = best_of(
        1, lambda: purchase_lines(demo.tables["orders"], demo.tables["order_lines"])
    )
    truth = demo.truth["customers"]
    customers, persona = truth.column("customer_id"), truth.column("persona")
    as_of = demo.as_of
    cutoff = as_of - dt.timedelta(weeks=13)
    print(
        f"demo: {args.customers:,} customers (seed {args.seed}) in {t_demo:.1f} s; "
        f"{lines.num_rows:,} purchase lines joined in {t_lines:.2f} s; as_of {as_of}"
    )

    t_rec, recs = best_of(
        args.repeat,
        lambda: recommend(lines, customers, persona, as_of=as_of, level="product", k=K),
    )
    t_eval, product = best_of(
        args.repeat,
        lambda: evaluate(
            lines, customers, persona, cutoff=cutoff, as_of=as_of, level="product", k=K
        ),
    )
    plain = evaluate(lines, customers, None, cutoff=cutoff, as_of=as_of, level="product", k=K)
    category = evaluate(lines, customers, persona, cutoff=cutoff, as_of=as_of, k=K)
    category_1 = evaluate(lines, customers, persona, cutoff=cutoff, as_of=as_of, k=1)

    con = duckdb.connect()
    con.register("lines", lines)
    con.register("customers", pa.table({"customer_id": customers}))
    frame = lines.to_pandas()
    ids = customers.to_pandas()
    t_pop, ours = best_of(
        args.repeat,
        lambda: recommend(lines, customers, as_of=as_of, level="product", k=K, method="popularity"),
    )
    sql = popularity_sql(as_of, K)
    t_sql, hand = best_of(args.repeat, lambda: con.execute(sql).to_arrow_table())
    t_pd, theirs = best_of(args.repeat, lambda: popularity_pandas(frame, ids, as_of))
    assert _triples(ours) == _triples(hand), "segvalue and DuckDB SQL disagree"
    assert _triples(ours) == _triples(pa.Table.from_pandas(theirs)), "pandas disagrees"

    print(f"\nrecommendations: {recs.num_rows:,} rows for {args.customers:,} customers")
    print(f"{'step':<44}{'seconds':>10}")
    for name, secs in (
        ("recommend (product, k 5, with reasons)", t_rec),
        ("evaluate (product, k 5, model + baseline)", t_eval),
    ):
        print(f"{name:<44}{secs:>10.2f}")
    print("\nholdout: train before the last 13 weeks, test on them; hit rate at k")
    for label, e in (
        ("product, persona segments", product),
        ("product, no segments", plain),
        ("category, persona segments", category),
        ("category, persona segments, k 1", category_1),
    ):
        print(f"  {label}: " + e.summary().replace("\n", "; "))
    print("\npopularity baseline (top 5 not bought), results equal across the three")
    print(f"{'implementation':<28}{'seconds':>10}{'ratio to segvalue':>20}")
    for name, secs in (
        ("segvalue (popularity)", t_pop),
        ("DuckDB SQL by hand", t_sql),
        ("pandas", t_pd),
    ):
        print(f"{name:<28}{secs:>10.2f}{secs / t_pop:>20.2f}")
    print(f"segvalue affinity model / DuckDB SQL popularity = {t_rec / t_sql:.2f}")

    if args.catalogue:
        wide = wide_catalogue(args.customers, args.catalogue, seed=args.seed)
        everyone = pa.array(np.char.add("C", np.arange(args.customers).astype(str)))
        end = dt.date(2025, 12, 31)
        t_wide, _ = best_of(
            args.repeat, lambda: recommend(wide, everyone, as_of=end, level="product", k=K)
        )
        t_wide_eval, wide_eval = best_of(
            args.repeat,
            lambda: evaluate(
                wide, everyone, cutoff=end - dt.timedelta(weeks=13), as_of=end, level="product"
            ),
        )
        print(
            f"\nsynthetic catalogue: {args.catalogue:,} products, {wide.num_rows:,} lines, "
            f"{args.customers:,} customers, no segments"
        )
        print(f"{'recommend (product, k 5, with reasons)':<44}{t_wide:>10.2f}")
        print(f"{'evaluate (product, k 5, model + baseline)':<44}{t_wide_eval:>10.2f}")
        print("  " + wide_eval.summary().replace("\n", "; "))


if __name__ == "__main__":
    main()
