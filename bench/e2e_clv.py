"""Benchmark: the whole ``segvalue clv`` process against lifetimes, clvkit and plain DuckDB.

Every tool runs as its own process started from here, timed from start to exit, with
its peak memory (``ru_maxrss`` of that child), on the same file in one run:

- **segvalue**: the CLI as a user types it, ``.venv/bin/segvalue clv FILE
  --customer-col ... --model bgnbd --spend-model gamma-gamma --horizon 52 --discount-rate 0.1
  --json`` (BG/NBD + Gamma-Gamma, 52 weeks, 10 % a year, named whatever the defaults; segvalue
  also validates every row and computes CLV intervals, which the others do not);
- **lifetimes 0.11.3**: ``pandas.read_csv``, ``summary_data_from_transaction_data``
  (days, reported in weeks: ``freq="D", freq_multiplier=7``), ``BetaGeoFitter``,
  ``GammaGammaFitter`` on repeat customers with positive spend and
  ``customer_lifetime_value(..., time=52, freq="M", discount_rate=weekly)`` (lifetimes'
  "month" factor is 1.0, so that is 52 weekly periods: segvalue's quantity);
- **clvkit 0.2.1**: its README's six-line pipeline, ``pd.read_csv``,
  ``CustomerBase.from_transactions(log, time_unit="W", collapse="D")``,
  ``CLV().fit(cb).predict(horizon=52, discount_rate=weekly)``, ``result.to_pandas()``;
- **DuckDB floor**: a hand-written SQL read of the file and the per-customer summary
  (frequency, recency, T, monetary value) fetched to Arrow, in a process that imports
  only duckdb: no model, so no tool can be faster than this.

lifetimes and clvkit each run in a throwaway virtual environment (pip from PyPI),
created once under ``--cache`` (default ``~/.cache/segvalue-bench``, outside the
repository) and reused; ``--fresh-venvs`` rebuilds them. The DuckDB floor runs with
this interpreter but imports nothing else.

Datasets: ``orders``, a deterministic CSV (``customer_id,order_date,amount``) of
``--customers`` customers with about 2.77 orders each (bench/_orders.py; 1,000,000
customers give 2.77 million orders, 66 MB), written once into the cache; and ``cdnow``,
tests/data/CDNOW_sample.txt (2,357 customers, whitespace-delimited, no header: ids,
YYYYMMDD date, quantity, amount). Everyone uses the latest order date as the observation
end, collapses orders to days, and measures recency and T in weeks (days / 7).

Output: per dataset, a table of wall and CPU seconds (median of ``--repeat`` runs, the
runs interleaved across tools; a tool whose first run takes longer than ``--slow``
seconds runs once, e.g. clvkit at a million customers), peak RSS, ratio to segvalue
(> 1: slower than segvalue) and ratio to the floor; the steps timed inside the python
workers (import, read, summary, fit, CLV); the fitted parameters and total CLV of each
tool (the same model should land on close numbers); the goals of issue 9 with a
verdict; and the machine's load average, since other processes on a shared machine move
the numbers.

Run: ``.venv/bin/python bench/e2e_clv.py [--customers 1000000] [--datasets orders cdnow]
[--tools segvalue lifetimes clvkit duckdb] [--repeat 3] [--slow 120] [--cache DIR]
[--fresh-venvs]``
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Only the standard library at module level: the workers run this file in environments
# where segvalue (and numpy) may not be installed.

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
CDNOW = ROOT / "tests" / "data" / "CDNOW_sample.txt"
MARKER = "@@RESULT@@ "
HORIZON_WEEKS = 52
ANNUAL_RATE = 0.10
TOOLS = ("segvalue", "lifetimes", "clvkit", "duckdb")
CLVKIT_PINS = ("clvkit==0.2.1",)
CLVKIT_CHECK = "import importlib.metadata as m; assert m.version('clvkit') == '0.2.1'"
SEGVALUE_SECONDS_GOAL = 4.0  # at 1M customers / 2.77M orders
LIFETIMES_RATIO_GOAL = 5.0  # lifetimes' read + summary + fit over segvalue's whole process


def weekly_rate(annual: float = ANNUAL_RATE) -> float:
    """The weekly rate compounding to ``annual`` (as segvalue.units.per_period_rate)."""
    return float((1.0 + annual) ** (7.0 / 365.25) - 1.0)


# --- datasets ----------------------------------------------------------------------------
def dataset_spec(name: str, path: Path) -> dict[str, Any]:
    """How each tool reads the file: its columns and layout."""
    if name == "cdnow":
        return {
            "name": name,
            "path": str(path),
            "whitespace": True,
            "names": ["master_id", "customer_id", "date", "quantity", "amount"],
            "customer": "customer_id",
            "date": "date",
            "amount": "amount",
            "date_format": "%Y%m%d",
            "segvalue_args": [
                "--delimiter",
                "whitespace",
                "--no-header",
                "--customer-col",
                "column1",
                "--date-col",
                "column2",
                "--amount-col",
                "column4",
            ],
        }
    return {
        "name": name,
        "path": str(path),
        "whitespace": False,
        "customer": "customer_id",
        "date": "order_date",
        "amount": "amount",
        "date_format": "%Y-%m-%d",
        "segvalue_args": [
            "--customer-col",
            "customer_id",
            "--date-col",
            "order_date",
            "--amount-col",
            "amount",
        ],
    }


def _pandas_log(spec: dict[str, Any]) -> Any:
    """The transaction log as a pandas frame (customer_id, date, amount)."""
    import pandas as pd

    if spec["whitespace"]:
        log = pd.read_csv(
            spec["path"], sep=r"\s+", header=None, names=spec["names"], dtype={"date": str}
        )
        log["date"] = pd.to_datetime(log["date"], format=spec["date_format"])
    else:
        log = pd.read_csv(spec["path"], parse_dates=[spec["date"]])
    return log.rename(
        columns={spec["customer"]: "customer_id", spec["date"]: "date", spec["amount"]: "amount"}
    )[["customer_id", "date", "amount"]]


# --- workers (each in its own process) ----------------------------------------------------
class _Steps:
    """Wall seconds of the named steps of a worker, from the process start."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._last = time.perf_counter()

    def __call__(self, name: str, fn: Callable[[], Any]) -> Any:
        out = fn()
        now = time.perf_counter()
        self.seconds[name] = now - self._last
        self._last = now
        return out


def _emit(result: dict[str, Any]) -> None:
    print(MARKER + json.dumps(result), flush=True)


def lifetimes_worker(spec: dict[str, Any]) -> None:
    steps = _Steps()

    def imports() -> Any:
        import warnings

        import lifetimes
        import lifetimes.utils

        warnings.simplefilter("ignore")  # lifetimes' own deprecation noise
        return lifetimes

    lifetimes = steps("import", imports)
    log = steps("read", lambda: _pandas_log(spec))
    summary = steps(
        "summary",
        lambda: lifetimes.utils.summary_data_from_transaction_data(
            log, "customer_id", "date", monetary_value_col="amount", freq="D", freq_multiplier=7
        ),
    )

    def fit() -> tuple[Any, Any]:
        bgf = lifetimes.BetaGeoFitter(penalizer_coef=0.0)
        bgf.fit(summary["frequency"], summary["recency"], summary["T"])
        repeat = summary[(summary["frequency"] > 0) & (summary["monetary_value"] > 0)]
        ggf = lifetimes.GammaGammaFitter(penalizer_coef=0.0)
        ggf.fit(repeat["frequency"], repeat["monetary_value"])
        return bgf, ggf

    bgf, ggf = steps("fit", fit)
    clv = steps(
        "clv",
        lambda: ggf.customer_lifetime_value(
            bgf,
            summary["frequency"],
            summary["recency"],
            summary["T"],
            summary["monetary_value"],
            time=HORIZON_WEEKS,
            freq="M",
            discount_rate=weekly_rate(),
        ),
    )
    _emit(
        {
            "steps": steps.seconds,
            "customers": len(summary),
            "params": {k: float(v) for k, v in {**bgf.params_, **ggf.params_}.items()},
            "total_clv": float(clv.sum()),
            "versions": {"lifetimes": lifetimes.__version__},
        }
    )


def clvkit_worker(spec: dict[str, Any]) -> None:
    steps = _Steps()

    def imports() -> Any:
        import clvkit

        return clvkit

    clvkit = steps("import", imports)
    log = steps("read", lambda: _pandas_log(spec))
    cb = steps(
        "summary",
        lambda: clvkit.CustomerBase.from_transactions(log, time_unit="W", collapse="D"),
    )
    model = steps("fit", lambda: clvkit.CLV().fit(cb))
    table = steps(
        "clv",
        lambda: model.predict(horizon=HORIZON_WEEKS, discount_rate=weekly_rate()).to_pandas(),
    )
    params: dict[str, float] = {}
    for sub in (model.transaction_model, model.monetary_model):
        found = getattr(sub, "params_", None)
        if isinstance(found, dict):
            params.update({k: float(v) for k, v in found.items()})
        elif found is not None and hasattr(found, "items"):
            params.update({str(k): float(v) for k, v in found.items()})
    _emit(
        {
            "steps": steps.seconds,
            "customers": len(table),
            "params": params,
            "total_clv": float(table["clv"].sum()),
            "versions": {"clvkit": clvkit.__version__},
        }
    )


def duckdb_worker(spec: dict[str, Any]) -> None:
    """The floor: read the file and summarise per customer in hand-written SQL."""
    steps = _Steps()
    duckdb = steps("import", lambda: __import__("duckdb"))
    con = duckdb.connect()
    path = spec["path"].replace("'", "''")
    if spec["whitespace"]:
        source = f"""
            SELECT parts[2] AS customer_id, strptime(parts[3], '%Y%m%d')::DATE AS day,
                   parts[5]::DOUBLE AS amount
            FROM (SELECT string_split_regex(trim(line), '\\s+') AS parts
                  FROM read_csv('{path}', columns = {{'line': 'VARCHAR'}}, delim = '\\x1f',
                                header = false, quote = '', escape = ''))
            WHERE length(parts) >= 5"""
    else:
        source = f"""
            SELECT {spec["customer"]} AS customer_id, {spec["date"]}::DATE AS day,
                   {spec["amount"]}::DOUBLE AS amount
            FROM read_csv('{path}')"""
    query = f"""
        WITH orders AS ({source}),
        days AS (SELECT customer_id, day, sum(amount) AS amount FROM orders GROUP BY ALL),
        ends AS (SELECT max(day) AS as_of FROM days),
        firsts AS (
            SELECT customer_id, min(day) AS first_day, max(day) AS last_day,
                   count(*) AS n_days, sum(amount) AS spend,
                   arg_min(amount, day) AS first_amount
            FROM days GROUP BY customer_id)
        SELECT customer_id, n_days - 1 AS frequency,
               (last_day - first_day) / 7.0 AS recency,
               (as_of - first_day) / 7.0 AS T,
               CASE WHEN n_days > 1 THEN (spend - first_amount) / (n_days - 1) ELSE 0 END
                   AS monetary_value
        FROM firsts, ends"""

    def summary() -> Any:
        result = con.sql(query).arrow()
        # A RecordBatchReader in newer DuckDB releases, a Table in older ones.
        return result.read_all() if hasattr(result, "read_all") else result

    table = steps("read+summary", summary)
    _emit(
        {
            "steps": steps.seconds,
            "customers": table.num_rows,
            "params": {},
            "total_clv": None,
            "versions": {"duckdb": duckdb.__version__},
        }
    )


WORKERS = {"lifetimes": lifetimes_worker, "clvkit": clvkit_worker, "duckdb": duckdb_worker}


# --- orchestration ------------------------------------------------------------------------
def run_process(command: list[str], log: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run ``command`` to its end: wall and CPU seconds, peak RSS (MiB), its stdout."""
    with open(log, "a") as err:
        err.write(f"--- {' '.join(command)}\n")
        err.flush()
        start = time.perf_counter()
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, text=True, env=env)
        assert proc.stdout is not None
        out = proc.stdout.read()
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"exit {proc.returncode}: {' '.join(command)}; see {log}\n{out[-2000:]}")
    return {
        "seconds": seconds,
        "cpu_seconds": usage.ru_utime + usage.ru_stime,
        "peak_mib": usage.ru_maxrss / 1024,
        "stdout": out,
    }


def segvalue_command(spec: dict[str, Any]) -> list[str]:
    exe = Path(sys.executable).parent / "segvalue"
    # The model named: the same BG/NBD + Gamma-Gamma as the others, whatever the default.
    model = ["--model", "bgnbd", "--spend-model", "gamma-gamma"]
    model += ["--horizon", str(HORIZON_WEEKS), "--discount-rate", str(ANNUAL_RATE)]
    return [str(exe), "clv", spec["path"], *spec["segvalue_args"], *model, "--json"]


def parse_result(tool: str, stdout: str) -> dict[str, Any]:
    if tool == "segvalue":
        data = json.loads(stdout)
        params = dict(data["params"])
        params.update(data.get("spend_model", {}).get("params", {}))
        return {
            "steps": {},
            "customers": data.get("customers_scored"),
            "params": params,
            "total_clv": data.get("total_clv"),
            "versions": {},
        }
    lines = [line for line in stdout.splitlines() if line.startswith(MARKER)]
    result: dict[str, Any] = json.loads(lines[-1][len(MARKER) :])
    return result


def bytecode_status() -> str:
    """Whether segvalue's own modules have bytecode to load (else each run compiles them)."""
    import importlib.util

    spec = importlib.util.find_spec("segvalue")
    if spec is None or spec.submodule_search_locations is None:
        return "segvalue not importable from this interpreter"
    package = Path(next(iter(spec.submodule_search_locations)))
    sources = list(package.rglob("*.py"))
    compiled = sum(Path(importlib.util.cache_from_source(str(p))).exists() for p in sources)
    flag = os.environ.get("PYTHONDONTWRITEBYTECODE")
    return f"{compiled} of {len(sources)} segvalue modules ({package}) have .pyc" + (
        f"; PYTHONDONTWRITEBYTECODE={flag}" if flag else ""
    )


def ensure_orders(cache: Path, customers: int, seed: int) -> Path:
    path = cache / f"orders-{customers}-seed{seed}.csv"
    if not path.exists():
        sys.path.insert(0, str(BENCH))
        from _orders import write_orders

        start = time.perf_counter()
        partial = path.with_suffix(".partial")
        info = write_orders(partial, customers, seed)
        partial.replace(path)
        print(
            f"wrote {path}: {info['customers']:,} customers, {info['orders']:,} orders, "
            f"{info['bytes'] / 1e6:.1f} MB in {time.perf_counter() - start:.1f} s"
        )
    return path


def ensure_envs(tools: list[str], cache: Path, fresh: bool) -> dict[str, Path]:
    sys.path.insert(0, str(BENCH))
    from clv import LIFETIMES_CHECK, LIFETIMES_PINS, ensure_venv

    pythons = {"duckdb": Path(sys.executable)}
    wanted = {
        "lifetimes": ("lifetimes-0.11.3", LIFETIMES_PINS, LIFETIMES_CHECK),
        "clvkit": ("clvkit-0.2.1", CLVKIT_PINS, CLVKIT_CHECK),
    }
    for tool, (folder, pins, check) in wanted.items():
        if tool not in tools:
            continue
        venv = cache / folder
        if fresh:
            shutil.rmtree(venv, ignore_errors=True)
        log = cache / f"{folder}.install.log"
        try:
            pythons[tool] = ensure_venv(venv, log, pins, check)
        except (OSError, subprocess.CalledProcessError) as error:
            # No network or no matching wheels: bench the others rather than nothing.
            print(f"SKIPPING {tool}: its environment could not be built ({error}); see {log}")
            shutil.rmtree(venv, ignore_errors=True)
    return pythons


def bench_dataset(
    spec: dict[str, Any],
    tools: list[str],
    pythons: dict[str, Path],
    repeat: int,
    work: Path,
    slow_seconds: float,
) -> dict[str, Any]:
    spec_path = work / f"{spec['name']}.json"
    spec_path.write_text(json.dumps(spec))
    env = dict(os.environ)
    runs: dict[str, list[dict[str, Any]]] = {tool: [] for tool in tools}
    load_before = os.getloadavg()
    for i in range(repeat):
        for tool in tools:  # interleaved, so that a busy moment hits every tool alike
            if i and runs[tool][0]["seconds"] > slow_seconds:
                continue  # one run of a tool this slow is enough to show the ratio
            if tool == "segvalue":
                command = segvalue_command(spec)
            else:
                command = [str(pythons[tool]), str(Path(__file__).resolve()), "--worker", tool]
                command.append(str(spec_path))
            run = run_process(command, work / "workers.log", env)
            run.update(parse_result(tool, run.pop("stdout")))
            runs[tool].append(run)
            print(
                f"  {spec['name']} run {i + 1}/{repeat} {tool}: {run['seconds']:.2f} s "
                f"(CPU {run['cpu_seconds']:.2f} s)",
                flush=True,
            )
    return {"runs": runs, "load": (load_before, os.getloadavg())}


def _median(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(run[key] for run in runs)


def _median_steps(runs: list[dict[str, Any]]) -> dict[str, float]:
    names = runs[0]["steps"].keys()
    return {name: statistics.median(run["steps"][name] for run in runs) for name in names}


def report(spec: dict[str, Any], result: dict[str, Any], repeat: int, label: str) -> None:
    runs = result["runs"]
    wall = {tool: _median(r, "seconds") for tool, r in runs.items()}
    cpu = {tool: _median(r, "cpu_seconds") for tool, r in runs.items()}
    peak = {tool: max(run["peak_mib"] for run in r) for tool, r in runs.items()}
    first = next(iter(runs.values()))[0]
    print()
    print(f"### {label}: {first['customers']:,} customers")
    print()
    print(
        "| tool | runs | wall s | CPU s | peak RSS MiB | ratio to segvalue | CPU ratio to "
        "segvalue | ratio to floor |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for tool in runs:
        to_sv = f"{wall[tool] / wall['segvalue']:.2f}" if "segvalue" in wall else "-"
        cpu_to_sv = f"{cpu[tool] / cpu['segvalue']:.2f}" if "segvalue" in cpu else "-"
        to_floor = f"{wall[tool] / wall['duckdb']:.2f}" if "duckdb" in wall else "-"
        name = "DuckDB SQL read + summary (floor)" if tool == "duckdb" else tool
        print(
            f"| {name} | {len(runs[tool])} | {wall[tool]:.2f} | {cpu[tool]:.2f} "
            f"| {peak[tool]:,.0f} | {to_sv} | {cpu_to_sv} "
            f"| {to_floor} |"
        )
    print("(medians over the runs; ratios of wall seconds unless named CPU; CPU s = user +")
    print(" system seconds of the process and its threads: less moved by other processes")
    print(" than wall time, above it when a tool keeps both cores busy)")

    inner = {tool: _median_steps(r) for tool, r in runs.items() if r[0]["steps"]}
    if inner:
        print()
        print("steps inside the python workers (median seconds; the rest of the wall time is")
        print("interpreter start-up):")
        for tool, steps in inner.items():
            cells = ", ".join(f"{name} {seconds:.2f}" for name, seconds in steps.items())
            print(f"  {tool}: {cells}")

    fitted = {tool: r[-1] for tool, r in runs.items() if r[-1]["params"]}
    if fitted:
        print()
        print("same model, each tool's own fit (BG/NBD r, alpha, a, b; Gamma-Gamma p, q, v):")
        for tool, run in fitted.items():
            params = ", ".join(f"{k} {v:.4g}" for k, v in run["params"].items())
            total = run["total_clv"]
            print(
                f"  {tool}: {params}; customers {run['customers']:,}"
                + (f"; total 52-week CLV {total:,.0f}" if total is not None else "")
            )

    if "segvalue" in wall:
        print()
        sv = wall["segvalue"]
        if spec["name"] == "orders":
            verdict = "met" if sv <= SEGVALUE_SECONDS_GOAL else "MISSED"
            print(f"goal: segvalue clv <= {SEGVALUE_SECONDS_GOAL:g} s: {sv:.2f} s, {verdict}")
            if "lifetimes" in inner:
                steps = inner["lifetimes"]
                # lifetimes' read + summary + fit, with its imports and start-up
                through_fit = wall["lifetimes"] - steps.get("clv", 0.0)
                ratio = through_fit / sv
                verdict = "met" if ratio >= LIFETIMES_RATIO_GOAL else "MISSED"
                print(
                    f"goal: lifetimes' read + summary + fit (its whole process minus the CLV "
                    f"step, {through_fit:.2f} s) >= {LIFETIMES_RATIO_GOAL:g}x segvalue's whole "
                    f"process: {ratio:.1f}x, {verdict}"
                )
        if spec["name"] == "cdnow" and "clvkit" in wall:
            verdict = "met" if sv <= wall["clvkit"] else "MISSED"
            print(
                f"goal: segvalue clv no slower than clvkit's six-line pipeline: "
                f"{sv:.2f} s vs {wall['clvkit']:.2f} s, {verdict}"
            )
    before, after = result["load"]
    print(
        f"load average (1 min) before / after: {before[0]:.2f} / {after[0]:.2f} on "
        f"{os.cpu_count()} CPUs (above the CPU count, other processes share the machine "
        "and every number is inflated)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--datasets", nargs="+", choices=("orders", "cdnow"), default=["orders", "cdnow"]
    )
    parser.add_argument("--tools", nargs="+", choices=TOOLS, default=list(TOOLS))
    parser.add_argument("--repeat", type=int, default=3, help="median of N runs per tool")
    parser.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache" / "segvalue-bench",
        help="virtual environments and the generated CSV (outside the repository)",
    )
    parser.add_argument("--fresh-venvs", action="store_true", help="rebuild the environments")
    parser.add_argument(
        "--slow",
        type=float,
        default=120.0,
        help="run a tool once only when its first run takes longer (seconds)",
    )
    parser.add_argument("--worker", choices=tuple(WORKERS), help=argparse.SUPPRESS)
    parser.add_argument("spec", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        WORKERS[args.worker](json.loads(Path(args.spec).read_text()))
        return

    args.cache.mkdir(parents=True, exist_ok=True)
    work = args.cache / f"run-{os.getpid()}"
    work.mkdir()
    pythons = ensure_envs(args.tools, args.cache, args.fresh_venvs)
    tools = [tool for tool in args.tools if tool == "segvalue" or tool in pythons]
    print(f"segvalue: {segvalue_command(dataset_spec('orders', Path('FILE')))[0]}")
    print(f"  {bytecode_status()}")
    print(f"worker stderr: {work / 'workers.log'}")
    try:
        for name in args.datasets:
            if name == "orders":
                path = ensure_orders(args.cache, args.customers, args.seed)
                label = f"orders CSV {path.name} ({path.stat().st_size / 1e6:.0f} MB)"
            else:
                path, label = CDNOW, "CDNOW sample (tests/data/CDNOW_sample.txt)"
            spec = dataset_spec(name, path)
            result = bench_dataset(spec, tools, pythons, args.repeat, work, args.slow)
            report(spec, result, args.repeat, label)
    finally:
        (work / "orders.json").unlink(missing_ok=True)
        (work / "cdnow.json").unlink(missing_ok=True)


if __name__ == "__main__":
    main()
