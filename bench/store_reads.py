"""Benchmark: read commands on a stored run, as whole processes from the shell.

Issue 10's goal: ``segvalue kpis`` on an existing run of the 20,000-customer demo answers
in <= 1 s, whole process, and records no run. Timed here, each as its own process
(median of ``--repeat`` runs, interleaved):

- ``segvalue kpis -c CONFIG`` (the human table) and ``kpis --json``;
- ``segvalue segment -c CONFIG --show``; ``segvalue runs -c CONFIG``;
- ``segvalue --help`` (start-up alone);
- the floor: a process that imports only ``duckdb``, opens the store read-only and
  fetches the latest run's KPI rows with one hand-written SELECT (no config, no
  formatting, no checks): no read command can be faster.

Before and after, the store's runs are counted: reads must record nothing.

Run: ``.venv/bin/python bench/store_reads.py [--customers 20000] [--repeat 5]
[--folder DIR]`` (the demo is generated into ``--folder`` once and reused).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SEGVALUE = str(Path(sys.executable).with_name("segvalue"))

FLOOR = """
import sys, duckdb
con = duckdb.connect(sys.argv[1], read_only=True)
run_id, = con.execute(
    "SELECT run_id FROM segvalue_runs WHERE status = 'complete' "
    "ORDER BY as_of DESC, finished_at DESC LIMIT 1").fetchone()
physical, = con.execute(
    "SELECT physical FROM segvalue_tables WHERE run_id = ? AND name = 'segment_kpis'",
    [run_id]).fetchone()
rows = con.execute(f"SELECT * FROM {physical} WHERE run_id = ? ORDER BY _row", [run_id]).fetchall()
print(len(rows))
"""


def _time(argv: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(
        argv, check=False, capture_output=True, text=True, env={**os.environ, "COLUMNS": "100"}
    )
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stderr}")
    return elapsed


def _runs(store: Path) -> int:
    import duckdb

    with duckdb.connect(str(store), read_only=True) as con:
        row = con.execute("SELECT count(*) FROM segvalue_runs").fetchone()
    return int(row[0]) if row else 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--customers", type=int, default=20_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--folder", type=Path, default=Path("/tmp/segvalue-store-reads"))
    args = parser.parse_args()
    config = args.folder / "segvalue.yaml"
    store = args.folder / "segvalue-store.duckdb"
    if not store.exists():
        print(f"generating the {args.customers:,}-customer demo into {args.folder} ...")
        subprocess.run(
            [SEGVALUE, "demo", "--customers", str(args.customers), "--out", str(args.folder)],
            check=True,
            capture_output=True,
        )
    commands = {
        "segvalue kpis": [SEGVALUE, "kpis", "-c", str(config)],
        "segvalue kpis --json": [SEGVALUE, "kpis", "-c", str(config), "--json"],
        "segvalue segment --show": [SEGVALUE, "segment", "-c", str(config), "--show"],
        "segvalue runs": [SEGVALUE, "runs", "-c", str(config)],
        "segvalue --help": [SEGVALUE, "--help"],
        "floor (duckdb SELECT)": [sys.executable, "-c", FLOOR, str(store)],
    }
    before = _runs(store)
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.repeat):
        for name, argv in commands.items():
            times[name].append(_time(argv))
    after = _runs(store)
    floor = statistics.median(times["floor (duckdb SELECT)"])
    print(f"\n{args.customers:,}-customer demo store, median of {args.repeat} runs")
    print(f"{'command':<26} {'median s':>9} {'min s':>7} {'x floor':>8}")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"{name:<26} {median:9.3f} {min(values):7.3f} {median / floor:8.2f}")
    kpis = statistics.median(times["segvalue kpis"])
    verdict = "met" if kpis <= 1.0 else "MISSED"
    print(f"\ngoal: segvalue kpis <= 1 s whole process: {kpis:.3f} s, {verdict}")
    print(f"runs in the store before / after the reads: {before} / {after}")
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
