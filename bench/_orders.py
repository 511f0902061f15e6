"""A deterministic orders CSV for whole-process benchmarks (``customer_id,order_date,amount``).

Each customer makes a first purchase on a day uniform over two years (2023-01-01 to
2024-12-31), then buys at a Gamma-distributed daily rate while alive (an exponential
lifetime, mean 240 days, cut at the end of the window), each order worth a Gamma amount
around the customer's own mean spend. About 2.77 orders per customer, so 1,000,000
customers give about 2.77 million rows and a 68 MB file. Rows are in date order, as an
export from an order system would be.

Only numpy and pyarrow: the benchmark's driver runs it in segvalue's environment.

Run: ``.venv/bin/python bench/_orders.py --customers 1000000 --out orders.csv``
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
from pathlib import Path

START = dt.date(2023, 1, 1)
DAYS = 731  # 2023-01-01 .. 2024-12-31
RATE_SHAPE, RATE_SCALE = 0.45, 0.0239  # daily purchase rate ~ Gamma(shape, scale)
MEAN_LIFETIME_DAYS = 240.0
SPEND_SHAPE = 6.0  # amounts ~ Gamma(6, mean / 6) around the customer's mean spend


def write_orders(path: Path, customers: int, seed: int = 7) -> dict[str, int]:
    """Write the orders of ``customers`` simulated customers to ``path`` (CSV).

    Returns the numbers of customers, orders and bytes written.
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    n = customers
    first = rng.integers(0, DAYS, n)
    alive = np.minimum(rng.exponential(MEAN_LIFETIME_DAYS, n), DAYS - 1 - first)
    rate = rng.gamma(RATE_SHAPE, RATE_SCALE, n)
    repeats = rng.poisson(rate * alive)
    mean_spend = rng.gamma(3.0, 15.0, n) + 5.0

    orders = n + int(repeats.sum())
    customer = np.repeat(np.arange(1, n + 1), 1 + repeats)
    starts = np.repeat(first, 1 + repeats)
    # The first order on the first day; repeats uniform over the customer's alive span.
    is_first = np.zeros(orders, dtype=bool)
    is_first[np.concatenate([[0], np.cumsum(1 + repeats)[:-1]])] = True
    span = np.repeat(alive, 1 + repeats)
    day = starts + np.where(is_first, 0, np.ceil(rng.random(orders) * span)).astype(np.int64)
    day = np.minimum(day, DAYS - 1)
    amount = rng.gamma(SPEND_SHAPE, np.repeat(mean_spend, 1 + repeats) / SPEND_SHAPE)
    amount = np.maximum(np.round(amount, 2), 0.01)

    order = np.lexsort((customer, day))
    epoch = (START - dt.date(1970, 1, 1)).days
    cents = np.round(amount[order] * 100).astype(np.int64)
    # Two decimals as text, the way an export writes money.
    units = pc.cast(pa.array(cents // 100), pa.string())
    hundredths = pc.utf8_lpad(pc.cast(pa.array(cents % 100), pa.string()), width=2, padding="0")
    table = pa.table(
        {
            "customer_id": pa.array(customer[order]),
            "order_date": pa.array((day[order] + epoch).astype(np.int32), pa.date32()),
            "amount": pc.binary_join_element_wise(units, hundredths, "."),
        }
    )
    options = pacsv.WriteOptions(quoting_style="none", quoting_header="none")
    pacsv.write_csv(table, str(path), write_options=options)
    return {"customers": n, "orders": orders, "bytes": path.stat().st_size}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    start = time.perf_counter()
    info = write_orders(args.out, args.customers, args.seed)
    print(
        f"{info['customers']:,} customers, {info['orders']:,} orders, "
        f"{info['bytes'] / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s: {args.out}"
    )


if __name__ == "__main__":
    main()
