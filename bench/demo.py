"""Benchmark of the demo data generator.

Times :func:`segvalue.data.demo.generate_demo` at 100,000 and 1,000,000 customers and
prints seconds, rows per table and the per-customer cost of the large run relative to the
small one (the baseline measured in the same run; ~1.0 means linear scaling). The target is
under 60 s for one million customers.

Run: ``python bench/demo.py [--sizes 100000 1000000] [--seed 42]``
"""

from __future__ import annotations

import argparse
import time

from segvalue.data.demo import DEMO_TABLES, generate_demo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()

    generate_demo(1_000, seed=args.seed)  # warm-up: imports and first-call overheads
    baseline: float | None = None
    for n in args.sizes:
        start = time.perf_counter()
        data = generate_demo(n, seed=args.seed)
        seconds = time.perf_counter() - start
        per_customer = seconds / n
        baseline = per_customer if baseline is None else baseline
        print(
            f"generate_demo({n:,}): {seconds:.2f} s, "
            f"{per_customer * 1e6:.2f} us/customer, "
            f"{per_customer / baseline:.2f}x the per-customer cost of n={args.sizes[0]:,}"
        )
        for name in DEMO_TABLES:
            print(f"  {name:<22} {data.tables[name].num_rows:>12,} rows")
        for name, table in data.truth.items():
            print(f"  {'truth/' + name:<22} {table.num_rows:>12,} rows")


if __name__ == "__main__":
    main()
