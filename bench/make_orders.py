"""Write a large, deterministic orders CSV for whole-process timings.

Customer ids ``C0000001`` ...; about 2.77 orders per customer (1 + Poisson(1.77)); order
dates uniform over the two years before 2024-12-31; amounts lognormal (median ~30),
rounded to cents. The same ``--customers`` and ``--seed`` give the same bytes.

Run: ``.venv/bin/python bench/make_orders.py OUT.csv [--customers 1000000] [--seed 7]``,
then time e.g.::

    /usr/bin/time -v .venv/bin/segvalue clv OUT.csv --customer-col customer_id \\
        --date-col order_date --amount-col amount --json > /dev/null
"""

from __future__ import annotations

import argparse
import datetime as dt
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

START = dt.date(2023, 1, 1)
DAYS = 731


def make_orders(n_customers: int, seed: int) -> pa.Table:
    """The orders table: customer_id, order_date (ISO text), amount (2 decimals)."""
    rng = np.random.default_rng(seed)
    per_customer = 1 + rng.poisson(1.77, n_customers)
    customer = np.repeat(np.arange(1, n_customers + 1), per_customer)
    days = rng.integers(0, DAYS, customer.size)
    dates = np.datetime64(START.isoformat()) + days.astype("timedelta64[D]")
    amounts = np.round(rng.lognormal(np.log(30.0), 0.8, customer.size), 2)
    ids = pc.binary_join_element_wise(
        "C", pc.utf8_lpad(pa.array(customer).cast(pa.string()), 7, "0"), ""
    )
    return pa.table(
        {
            "customer_id": ids,
            "order_date": pa.array(dates.astype(str)),
            "amount": pa.array(amounts),
        }
    )


def main() -> None:
    """Parse the arguments and write the file."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    table = make_orders(args.customers, args.seed)
    with args.out.open("wb") as handle:
        handle.write((",".join(table.column_names) + "\n").encode())
        options = pacsv.WriteOptions(include_header=False, quoting_style="none")
        pacsv.write_csv(table, handle, options)
    print(f"{args.out}: {table.num_rows:,} orders of {args.customers:,} customers")


if __name__ == "__main__":
    main()
