"""Benchmark: segvalue's BG/NBD, Pareto/NBD, Gamma-Gamma and CLV against lifetimes 0.11.3.

In one run:

1. simulates N customers (default 1,000,000) from known BG/NBD, Pareto/NBD and Gamma-Gamma
   parameters, with whole-week ages T in 1..104 and recency at day resolution (days / 7),
   and writes them to a temporary ``.npz``;
2. creates a throwaway virtual environment with ``lifetimes==0.11.3`` and the pinned
   numpy / scipy / pandas / autograd / dill (unless ``--venv`` already has it; the pip
   output goes to a log whose path is printed);
3. runs lifetimes in a subprocess of that environment, and
4. segvalue in a subprocess of this interpreter, on the same data and the same steps, so
   that each side's peak memory (``ru_maxrss``, taken after the steps both sides run and
   before lifetimes' extra variants) is its own;
5. prints seconds, speed-up ratios, fitted parameters side by side and peak memory.

The 12-month CLV. lifetimes' ``GammaGammaFitter.customer_lifetime_value(bgf, ...,
time=12, freq="W", discount_rate=d_month)`` sums 12 periods of 4.345 weeks (52.14 weeks)
discounted by (1 + d_month)^k; segvalue's ``customer_lifetime_value(..., horizon=52,
discount_rate=d_week)`` sums 52 weekly periods discounted by (1 + d_week)^k, with both
rates from the same 10 % a year (:func:`segvalue.units.per_period_rate`). The ratio is
timed against that literal call. lifetimes computes segvalue's exact quantity with
``time=52, freq="M", discount_rate=d_week`` (its "month" factor is 1.0, so each period is
one time unit, here a week): that call is timed too, and segvalue is evaluated at
lifetimes' fitted parameters to check that the two definitions agree to rounding.

Run: ``.venv/bin/python bench/clv.py [--customers 1000000] [--pnbd-customers N]
[--skip-pnbd] [--venv PATH]``
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

# Only the standard library at module level: the lifetimes worker runs this file in the
# throwaway environment, where segvalue is not installed.

LIFETIMES_PINS = (
    "lifetimes==0.11.3",
    "numpy==2.4.6",
    "scipy==1.17.1",
    "pandas==2.3.3",
    "autograd==1.9.1",
    "dill==0.4.1",
)

BGNBD = {"r": 0.25, "alpha": 4.0, "a": 0.8, "b": 2.5}  # weekly, close to CDNOW's
PNBD = {"r": 0.55, "alpha": 10.5, "s": 0.6, "beta": 11.7}
GAMMA_GAMMA = {"p": 6.25, "q": 3.75, "v": 15.4}
MAX_AGE_WEEKS = 104
ANNUAL_RATE = 0.10
HORIZON_WEEKS = 52
HORIZON_MONTHS = 12
MARKER = "@@RESULT@@ "

# (key, label, goal as a minimum speed-up or None)
STEPS = (
    ("bgnbd_fit", "BG/NBD fit", 50.0),
    ("bgnbd_fit_weights", "BG/NBD fit, lifetimes given unique rows + weights", None),
    ("pnbd_fit", "Pareto/NBD fit", 100.0),
    ("pnbd_fit_weights", "Pareto/NBD fit, lifetimes given unique rows + weights", None),
    ("gg_fit", "Gamma-Gamma fit (repeat customers)", None),
    ("clv", "12-month CLV, segvalue intervals off", 20.0),
    ("clv_intervals", "12-month CLV, segvalue intervals on", 20.0),
    ("clv_weekly", "CLV, lifetimes time=52 freq='M' (same quantity), intervals off", None),
)
PARAM_TOLERANCE = 1e-4


# --- shared helpers (both workers) -----------------------------------------------------
def _timed(fn: Callable[[], Any], repeat: int) -> tuple[float, float, Any]:
    """Best and first wall-clock seconds of ``repeat`` calls, and the last result."""
    runs, result = [], None
    for _ in range(max(repeat, 1)):
        start = time.perf_counter()
        result = fn()
        runs.append(time.perf_counter() - start)
    return min(runs), runs[0], result


def _rss_mib() -> float:
    """Current resident set size (MiB), from /proc."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def _emit(result: dict[str, Any]) -> None:
    print(MARKER + json.dumps(result), flush=True)


# --- data ------------------------------------------------------------------------------
def simulate(n: int, seed: int, path: Path) -> dict[str, int]:
    """Customer summaries from known parameters, written to ``path`` (.npz)."""
    import numpy as np

    rng = np.random.default_rng(seed)

    def ages() -> Any:
        return rng.integers(1, MAX_AGE_WEEKS + 1, n).astype(np.float64)

    def last_purchase(x: Any, among: Any, span: Any) -> Any:
        """The x-th of ``among`` uniform times on (0, span], rounded up to whole days."""
        recency = np.zeros(n)
        some = x > 0
        k = x[some]
        weeks = span[some] * rng.beta(k, among[some] - k + 1.0)
        days = np.clip(np.ceil(weeks * 7.0), 1.0, np.round(span[some] * 7.0))
        recency[some] = days / 7.0
        return recency

    # BG/NBD (Fader, Hardie & Lee 2005): Poisson purchases at rate lambda ~ Gamma(r, alpha);
    # after each repeat purchase the customer leaves with probability p ~ Beta(a, b).
    big_t = ages()
    rate = rng.gamma(BGNBD["r"], 1.0 / BGNBD["alpha"], n)
    p = rng.beta(BGNBD["a"], BGNBD["b"], n)
    n_poisson = rng.poisson(rate * big_t).astype(np.float64)
    before_leaving = np.floor(np.log(1.0 - rng.random(n)) / np.log1p(-p)) + 1.0
    x = np.minimum(n_poisson, before_leaving)
    t_x = last_purchase(x, n_poisson, big_t)
    # Gamma-Gamma: the mean of x transactions of a customer with nu ~ Gamma(q, v) is
    # Gamma(p x, nu x); rounded to cents.
    nu = rng.gamma(GAMMA_GAMMA["q"], 1.0 / GAMMA_GAMMA["v"], n)
    repeat = x > 0
    m = np.zeros(n)
    shape = GAMMA_GAMMA["p"] * x[repeat]
    m[repeat] = np.maximum(np.round(rng.gamma(shape, 1.0 / (nu[repeat] * x[repeat])), 2), 0.01)

    # Pareto/NBD (Schmittlein, Morrison & Colombo 1987): exponential lifetime with
    # mu ~ Gamma(s, beta); Poisson purchases while alive.
    pn_t = ages()
    pn_rate = rng.gamma(PNBD["r"], 1.0 / PNBD["alpha"], n)
    mu = rng.gamma(PNBD["s"], 1.0 / PNBD["beta"], n)
    alive_for = np.minimum(rng.exponential(1.0, n) / mu, pn_t)
    pn_x = rng.poisson(pn_rate * alive_for).astype(np.float64)
    pn_tx = last_purchase(pn_x, pn_x, alive_for)

    np.savez(path, x=x, t_x=t_x, T=big_t, m=m, pn_x=pn_x, pn_t_x=pn_tx, pn_T=pn_t)
    return {
        "customers": n,
        "repeat_customers": int(repeat.sum()),
        "unique_bgnbd_rows": int(np.unique(np.column_stack([x, t_x, big_t]), axis=0).shape[0]),
        "unique_pnbd_rows": int(np.unique(np.column_stack([pn_x, pn_tx, pn_t]), axis=0).shape[0]),
        "unique_clv_rows": int(np.unique(np.column_stack([x, t_x, big_t, m]), axis=0).shape[0]),
    }


# --- lifetimes side (runs in the throwaway environment) ---------------------------------
def lifetimes_worker(config: dict[str, Any]) -> None:
    import warnings

    import numpy as np
    import pandas as pd
    from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter

    warnings.simplefilter("ignore")
    data = np.load(config["data"])
    x, t_x, big_t, m = (pd.Series(data[k]) for k in ("x", "t_x", "T", "m"))
    baseline = _rss_mib()
    repeat = config["repeat"]
    seconds: dict[str, float] = {}
    first: dict[str, float] = {}
    params: dict[str, dict[str, float]] = {}

    def record(key: str, fn: Callable[[], Any], times: int = repeat) -> Any:
        seconds[key], first[key], out = _timed(fn, times)
        print(f"  lifetimes {key}: {seconds[key]:.2f} s", file=sys.stderr, flush=True)
        return out

    # The steps segvalue also runs, then the peak memory, then the extra variants.
    bgf = record("bgnbd_fit", lambda: BetaGeoFitter(penalizer_coef=0.0).fit(x, t_x, big_t))
    params["bgnbd"] = {k: float(v) for k, v in bgf.params_.items()}
    pn: list[Any] = []
    if config["pnbd_customers"]:
        n = config["pnbd_customers"]
        pn = [pd.Series(data[k][:n]) for k in ("pn_x", "pn_t_x", "pn_T")]
        np.random.seed(config["seed"])  # noqa: NPY002 (lifetimes draws its start at random)
        pnf = record("pnbd_fit", lambda: ParetoNBDFitter(penalizer_coef=0.0).fit(*pn), 1)
        params["pnbd"] = {k: float(v) for k, v in pnf.params_.items()}
    rep = x > 0
    xr, mr = x[rep].reset_index(drop=True), m[rep].reset_index(drop=True)
    ggf = record("gg_fit", lambda: GammaGammaFitter(penalizer_coef=0.0).fit(xr, mr))
    params["gg"] = {k: float(v) for k, v in ggf.params_.items()}

    def clv(periods: int, freq: str, rate: float) -> Any:
        return ggf.customer_lifetime_value(
            bgf, x, t_x, big_t, m, time=periods, freq=freq, discount_rate=rate
        ).to_numpy()

    monthly = record("clv", lambda: clv(HORIZON_MONTHS, "W", config["monthly_rate"]))
    peak = _peak_mib()

    def fit_on_unique_rows(fitter: Any, x: Any, t_x: Any, big_t: Any) -> Any:
        """What a lifetimes user can do by hand: group identical rows, pass weights."""
        frame = pd.DataFrame({"x": x, "t": t_x, "T": big_t})
        rows = frame.groupby(["x", "t", "T"]).size().reset_index(name="n")
        return fitter.fit(rows["x"], rows["t"], rows["T"], weights=rows["n"])

    weighted = record(
        "bgnbd_fit_weights",
        lambda: fit_on_unique_rows(BetaGeoFitter(penalizer_coef=0.0), x, t_x, big_t),
    )
    params["bgnbd_weights"] = {k: float(v) for k, v in weighted.params_.items()}
    if pn:
        np.random.seed(config["seed"])  # noqa: NPY002 (the same start as above)
        pnw = record(
            "pnbd_fit_weights",
            lambda: fit_on_unique_rows(ParetoNBDFitter(penalizer_coef=0.0), *pn),
            1,
        )
        params["pnbd_weights"] = {k: float(v) for k, v in pnw.params_.items()}
    weekly = record("clv_weekly", lambda: clv(HORIZON_WEEKS, "M", config["weekly_rate"]))
    np.savez(config["lifetimes_out"], clv_monthly=monthly, clv_weekly=weekly)

    import lifetimes

    versions = {"lifetimes": lifetimes.__version__, "numpy": np.__version__}
    versions["pandas"] = pd.__version__
    import scipy

    versions["scipy"] = scipy.__version__
    _emit(
        {
            "seconds": seconds,
            "first_seconds": first,
            "params": params,
            "peak_mib": peak,
            "baseline_mib": baseline,
            "versions": versions,
        }
    )


# --- segvalue side (runs in this interpreter's environment) -----------------------------
def segvalue_worker(config: dict[str, Any]) -> None:
    import numpy as np

    from segvalue.models.bgnbd import BetaGeoModel
    from segvalue.models.clv import customer_lifetime_value
    from segvalue.models.gamma_gamma import GammaGammaModel
    from segvalue.models.pareto_nbd import ParetoNBDModel

    data = np.load(config["data"])
    x, t_x, big_t, m = (np.asarray(data[k]) for k in ("x", "t_x", "T", "m"))
    baseline = _rss_mib()
    repeat = config["repeat"]
    seconds: dict[str, float] = {}
    first: dict[str, float] = {}
    params: dict[str, dict[str, float]] = {}
    fit_info: dict[str, dict[str, Any]] = {}

    def record(key: str, fn: Callable[[], Any]) -> Any:
        seconds[key], first[key], out = _timed(fn, repeat)
        print(f"  segvalue {key}: {seconds[key]:.3f} s", file=sys.stderr, flush=True)
        return out

    def keep(name: str, model: Any) -> None:
        params[name] = dict(model.params_)
        fit_info[name] = {"loglik": model.loglik_, "converged": model.converged_}

    bg = record("bgnbd_fit", lambda: BetaGeoModel().fit(x, t_x, big_t, time_unit="week"))
    keep("bgnbd", bg)
    if config["pnbd_customers"]:
        n = config["pnbd_customers"]
        pn = [np.asarray(data[k][:n]) for k in ("pn_x", "pn_t_x", "pn_T")]
        pnm = record("pnbd_fit", lambda: ParetoNBDModel().fit(*pn, time_unit="week"))
        keep("pnbd", pnm)
    rep = x > 0
    xr, mr = x[rep], m[rep]
    gg = record("gg_fit", lambda: GammaGammaModel().fit(xr, mr))
    keep("gg", gg)

    def clv(t_model: Any, s_model: Any, intervals: bool) -> Any:
        return customer_lifetime_value(
            t_model,
            x,
            t_x,
            big_t,
            horizon=HORIZON_WEEKS,
            discount_rate=config["weekly_rate"],
            spend=s_model,
            monetary_value=m,
            intervals=intervals,
        )

    off = record("clv", lambda: clv(bg, gg, False))
    on = record("clv_intervals", lambda: clv(bg, gg, True))
    outputs = {"clv": off.clv, "clv_intervals": on.clv, "lower": on.lower, "upper": on.upper}
    peak = _peak_mib()  # before the untimed checks below

    # Untimed checks at lifetimes' fitted parameters: the CLV definition, and which fit
    # has the higher likelihood.
    theirs = config.get("lifetimes_params") or {}
    at_theirs: dict[str, float | None] = {}
    if "bgnbd" in theirs and "gg" in theirs:
        lt_bg = bg.with_params([theirs["bgnbd"][k] for k in ("r", "alpha", "a", "b")])
        lt_gg = gg.with_params([theirs["gg"][k] for k in ("p", "q", "v")])
        outputs["clv_at_lifetimes_params"] = clv(lt_bg, lt_gg, False).clv
        at_theirs = _loglik_at(theirs, x, t_x, big_t, xr, mr, data, config)
    np.savez(config["segvalue_out"], **outputs)
    _emit(
        {
            "seconds": seconds,
            "first_seconds": first,
            "params": params,
            "fit": fit_info,
            "loglik_at_lifetimes_params": at_theirs,
            "peak_mib": peak,
            "baseline_mib": baseline,
            "versions": {"numpy": np.__version__},
        }
    )


def _loglik_at(theirs: dict[str, Any], *arrays: Any) -> dict[str, float | None]:
    """segvalue's log-likelihood at lifetimes' parameters (private math; None if it moved)."""
    import numpy as np

    x, t_x, big_t, xr, mr, data, config = arrays

    def total(fn: Any, names: tuple[str, ...], params: dict[str, float], *cols: Any) -> float:
        rows, counts = np.unique(np.column_stack(cols), axis=0, return_counts=True)
        theta = np.array([params[k] for k in names])
        return float(counts @ fn(theta, *rows.T))

    out: dict[str, float | None] = {"bgnbd": None, "pnbd": None, "gg": None}
    try:
        from segvalue.models import _bgnbd_math, _gamma_gamma_math, _pareto_nbd_math

        bg_names, gg_names = ("r", "alpha", "a", "b"), ("p", "q", "v")
        out["bgnbd"] = total(_bgnbd_math.log_likelihood, bg_names, theirs["bgnbd"], x, t_x, big_t)
        out["gg"] = total(_gamma_gamma_math.log_likelihood, gg_names, theirs["gg"], xr, mr)
        if "pnbd" in theirs:
            n = config["pnbd_customers"]
            pn = [np.asarray(data[k][:n]) for k in ("pn_x", "pn_t_x", "pn_T")]
            names = ("r", "alpha", "s", "beta")
            out["pnbd"] = total(_pareto_nbd_math.log_likelihood, names, theirs["pnbd"], *pn)
    except Exception as error:  # a diagnostic only; the private math may be changing
        print(f"  (log-likelihood at lifetimes' parameters unavailable: {error})", file=sys.stderr)
    return out


# --- orchestration ---------------------------------------------------------------------
LIFETIMES_CHECK = "import lifetimes; assert lifetimes.__version__ == '0.11.3'"


def ensure_venv(
    venv: Path,
    log: Path,
    pins: tuple[str, ...] = LIFETIMES_PINS,
    check_code: str = LIFETIMES_CHECK,
) -> Path:
    """The throwaway environment's python, creating it and installing the pins if needed.

    ``check_code`` runs in the environment and must succeed when the pins are installed
    (bench/e2e_clv.py reuses this for clvkit).
    """
    python = venv / "bin" / "python"
    check = [str(python), "-c", check_code]
    found = python.exists() and subprocess.run(check, check=False, capture_output=True)
    if found and found.returncode == 0:
        print(f"{pins[0]} already in {venv}")
        return python
    print(f"creating {venv} and installing {' '.join(pins)}; pip output: {log}")
    start = time.perf_counter()
    with open(log, "a") as out:
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdout=out)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--disable-pip-version-check", *pins],
            check=True,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    subprocess.run(check, check=True)
    print(f"  installed in {time.perf_counter() - start:.0f} s")
    return python


def run_worker(python: Path, side: str, config_path: Path, stderr_log: Path) -> dict[str, Any]:
    """Run this file as ``--worker side`` and parse its JSON result."""
    command = [str(python), str(Path(__file__).resolve()), "--worker", side, str(config_path)]
    env = dict(os.environ)
    with open(stderr_log, "a") as err:
        err.write(f"--- {side}\n")
        err.flush()
        proc = subprocess.run(
            command, check=False, stdout=subprocess.PIPE, stderr=err, text=True, env=env
        )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(MARKER)]
    if proc.returncode != 0 or not lines:
        raise SystemExit(
            f"{side} worker failed (exit {proc.returncode}); see {stderr_log}\n{proc.stdout}"
        )
    result: dict[str, Any] = json.loads(lines[-1][len(MARKER) :])
    return result


def _relative(a: float, b: float) -> float:
    return abs(a - b) / max(abs(a), abs(b), 1e-300)


def _ratio_cell(lt: float | None, sv: float | None, goal: float | None) -> tuple[str, str]:
    if lt is None or sv is None:
        return "-", "-"
    ratio = lt / sv
    if goal is None:
        return f"{ratio:,.1f}x", ""
    verdict = "met" if ratio >= goal else "MISSED"
    return f"{ratio:,.1f}x", f">= {goal:g}x: {verdict}"


def report(
    args: argparse.Namespace,
    info: dict[str, int],
    lt: dict[str, Any],
    sv: dict[str, Any],
    work: Path,
) -> None:
    import numpy as np

    print()
    print(
        f"{info['customers']:,} customers ({info['repeat_customers']:,} repeat), "
        f"{info['unique_bgnbd_rows']:,} unique (x, t_x, T) rows, "
        f"{info['unique_clv_rows']:,} unique (x, t_x, T, m) rows; Pareto/NBD on "
        + (
            f"the first {args.pnbd_customers:,} of a Pareto/NBD sample"
            if args.pnbd_customers
            else "nothing (skipped)"
        )
        + f"; best of {args.repeat} (lifetimes' Pareto/NBD fits: 1 run each)"
    )
    print(f"lifetimes side: {lt['versions']}; segvalue side: numpy {sv['versions']['numpy']}")
    print()
    print("| step | lifetimes s | segvalue s | speed-up | goal |")
    print("|---|---:|---:|---:|---|")
    lt_s, sv_s = lt["seconds"], sv["seconds"]
    for key, label, goal in STEPS:
        lt_key = "clv" if key == "clv_intervals" else key
        sv_key = "clv" if key == "clv_weekly" else key.removesuffix("_weights")
        a, b = lt_s.get(lt_key), sv_s.get(sv_key)
        if a is None and b is None:
            continue
        ratio, verdict = _ratio_cell(a, b, goal)
        cells = [f"{v:.3f}" if v is not None else "-" for v in (a, b)]
        print(f"| {label} | {cells[0]} | {cells[1]} | {ratio} | {verdict} |")
    if args.repeat > 1:
        print("first (cold) run, lifetimes / segvalue seconds: ", end="")
        cold = [
            f"{key} {lt['first_seconds'][key]:.3f} / {sv['first_seconds'][key]:.3f}"
            for key in ("bgnbd_fit", "gg_fit", "clv")
        ]
        print("; ".join(cold))

    print()
    print("| model | parameter | lifetimes | segvalue | relative difference |")
    print("|---|---|---:|---:|---:|")
    worst: dict[str, float] = {}
    names = {"bgnbd": "BG/NBD", "pnbd": "Pareto/NBD", "gg": "Gamma-Gamma"}
    truth = {"bgnbd": BGNBD, "pnbd": PNBD, "gg": GAMMA_GAMMA}
    for model, label in names.items():
        if model not in sv["params"] or model not in lt["params"]:
            continue
        mine, theirs = sv["params"][model], lt["params"][model]
        for (name, value), lt_value in zip(mine.items(), theirs.values(), strict=True):
            rel = _relative(lt_value, value)
            worst[model] = max(worst.get(model, 0.0), rel)
            print(f"| {label} | {name} | {lt_value:.6g} | {value:.6g} | {rel:.2e} |")
    for model, rel in worst.items():
        verdict = "met" if rel <= PARAM_TOLERANCE else "MISSED"
        line = f"{names[model]}: max relative difference {rel:.2e} (goal <= 1e-4: {verdict})"
        at = sv.get("loglik_at_lifetimes_params", {}).get(model)
        if at is not None:
            own = sv["fit"][model]["loglik"]
            line += f"; log-likelihood segvalue {own:.4f}, minus at lifetimes' {own - at:+.2e}"
        line += f"; true {truth[model]}"
        print(line)
    for model in ("bgnbd", "pnbd"):
        if f"{model}_weights" in lt["params"]:
            pairs = zip(
                lt["params"][f"{model}_weights"].values(), lt["params"][model].values(), strict=True
            )
            rel = max(_relative(a, b) for a, b in pairs)
            print(
                f"lifetimes {names[model]} on unique rows + weights vs per customer: "
                f"max relative difference {rel:.1e}"
            )

    lt_clv = np.load(work / "lifetimes_clv.npz")
    sv_clv = np.load(work / "segvalue_clv.npz")
    print()
    if "clv_at_lifetimes_params" in sv_clv:
        same = sv_clv["clv_at_lifetimes_params"]
        diff = np.max(np.abs(same - lt_clv["clv_weekly"]) / np.maximum(np.abs(same), 1e-12))
        print(
            "CLV definition check (same parameters: lifetimes'): segvalue horizon=52 weekly "
            f"vs lifetimes time=52 freq='M': max relative difference {diff:.1e}"
        )
        monthly = lt_clv["clv_monthly"].sum() / lt_clv["clv_weekly"].sum() - 1
        print(
            "  lifetimes' literal 12 x 4.345-week periods at the monthly rate vs 52 weekly "
            f"periods at the weekly rate: totals differ by {monthly:+.3%}"
        )
    own = sv_clv["clv"]
    diff = np.max(np.abs(own - lt_clv["clv_weekly"]) / np.maximum(np.abs(own), 1e-12))
    print(
        f"CLV with each side's own fit, same definition: max relative difference {diff:.1e}; "
        f"total segvalue {own.sum():,.0f}, lifetimes {lt_clv['clv_weekly'].sum():,.0f} "
        f"(literal call: {lt_clv['clv_monthly'].sum():,.0f})"
    )
    inside = np.mean((sv_clv["lower"] <= own) & (own <= sv_clv["upper"]))
    same = np.max(np.abs(sv_clv["clv_intervals"] - own))
    print(
        f"segvalue intervals on vs off: CLV max abs difference {same:.1e}; "
        f"interval contains the CLV for {inside:.1%}, median width / CLV "
        f"{np.nanmedian((sv_clv['upper'] - sv_clv['lower']) / own):.3f}"
    )

    print()
    print("peak over the common steps (fits, CLV; segvalue's includes intervals on):")
    print("| side | peak RSS MiB | RSS after imports + data MiB |")
    print("|---|---:|---:|")
    for side, res in (("lifetimes", lt), ("segvalue", sv)):
        print(f"| {side} | {res['peak_mib']:,.0f} | {res['baseline_mib']:,.0f} |")
    verdict = "met" if sv["peak_mib"] < lt["peak_mib"] else "MISSED"
    print(f"lower peak memory: {verdict} ({sv['peak_mib'] / lt['peak_mib']:.2f} of lifetimes')")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--customers", type=int, default=1_000_000)
    parser.add_argument(
        "--pnbd-customers",
        type=int,
        default=None,
        help="Pareto/NBD on the first N customers of its sample (default: --customers)",
    )
    parser.add_argument("--skip-pnbd", action="store_true", help="no Pareto/NBD fits")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--repeat", type=int, default=1, help="best of N runs per step")
    parser.add_argument(
        "--venv", type=Path, default=None, help="lifetimes environment (default: a temp dir)"
    )
    parser.add_argument("--worker", choices=("lifetimes", "segvalue"), help=argparse.SUPPRESS)
    parser.add_argument("config", nargs="?", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.worker:
        config = json.loads(Path(args.config).read_text())
        (lifetimes_worker if args.worker == "lifetimes" else segvalue_worker)(config)
        return

    from segvalue.units import per_period_rate

    if args.skip_pnbd:
        args.pnbd_customers = 0
    elif args.pnbd_customers is None:
        args.pnbd_customers = args.customers
    args.pnbd_customers = min(args.pnbd_customers, args.customers)

    work = Path(tempfile.mkdtemp(prefix="segvalue-clv-bench-"))
    venv = args.venv or work / "venv"
    log = Path(f"{venv}.install.log") if args.venv else work / "install.log"
    worker_log = work / "workers.log"
    try:
        start = time.perf_counter()
        info = simulate(args.customers, args.seed, work / "data.npz")
        print(f"simulated {args.customers:,} customers in {time.perf_counter() - start:.1f} s")
        python = ensure_venv(venv, log)
        config = {
            "data": str(work / "data.npz"),
            "seed": args.seed,
            "repeat": args.repeat,
            "pnbd_customers": args.pnbd_customers,
            "monthly_rate": per_period_rate(ANNUAL_RATE, "month"),
            "weekly_rate": per_period_rate(ANNUAL_RATE, "week"),
            "lifetimes_out": str(work / "lifetimes_clv.npz"),
            "segvalue_out": str(work / "segvalue_clv.npz"),
        }
        config_path = work / "config.json"
        config_path.write_text(json.dumps(config))
        print(f"running lifetimes (progress and warnings: {worker_log}) ...", flush=True)
        lt = run_worker(python, "lifetimes", config_path, worker_log)
        config["lifetimes_params"] = lt["params"]
        config_path.write_text(json.dumps(config))
        print("running segvalue ...", flush=True)
        sv = run_worker(Path(sys.executable), "segvalue", config_path, worker_log)
        report(args, info, lt, sv, work)
    finally:
        for name in ("data.npz", "lifetimes_clv.npz", "segvalue_clv.npz"):
            (work / name).unlink(missing_ok=True)
        if args.venv is None:
            shutil.rmtree(work / "venv", ignore_errors=True)
    print(f"\nlogs: {log}, {worker_log}")


if __name__ == "__main__":
    main()
