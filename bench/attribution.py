"""Benchmark: Markov-chain attribution of 1,000,000 journeys over 8 channels.

The goal (docs/performance.md): order-1 Markov attribution within 2 s after the journeys
are aggregated into unique paths, exact. Printed in the same run, on the same paths:

- segvalue: the aggregation (``Paths.of`` of the journeys) and the exact order-1 (and
  order-2) solution (``markov``: sparse linear systems);
- the floor of the aggregation: DuckDB's ``GROUP BY`` of the same journeys as path texts;
- a pure-Python baseline of the same exact answer: the absorbing probabilities by
  Gauss-Seidel sweeps over dictionaries, to 1e-12;
- ChannelAttribution 2.2.5 (PyPI, in a throwaway virtual environment under
  ``~/.cache/segvalue-bench``, installed once): ``markov_model(order=1, out_more=True)``
  on the same path table, which simulates the chain; its removal effects' largest error
  against the exact ones, and again with the table's rows in another order (its answer
  moves with it).

Journeys are drawn with a seeded generator: first channel and each next one from a
random first-order chain, length 1 + geometric (at most 12), conversion by a logistic
model of the distinct channels touched. Bounded: one pass of each, ChannelAttribution
with its defaults (``nsim_start=1e5``) and a 600 s time-out.

Run: ``.venv/bin/python bench/attribution.py [--journeys 1000000] [--seed 7]
[--no-channelattribution]``.
"""

from __future__ import annotations

import argparse
import itertools
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from segvalue.measurement import Paths, markov

CACHE = Path.home() / ".cache" / "segvalue-bench"
CHANNELS = ("search", "social", "email", "display", "video", "affiliate", "direct", "push")
CA_PINS = ("channelattribution==2.2.5", "matplotlib")  # its module imports matplotlib
GOAL_S = 2.0


def journeys(n: int, seed: int) -> tuple[list[tuple[int, ...]], np.ndarray, np.ndarray]:
    """``n`` journeys (channel codes), converted or not, and their conversion value."""
    rng = np.random.default_rng(seed)
    k = len(CHANNELS)
    first = rng.dirichlet(np.ones(k))
    step = rng.dirichlet(np.ones(k) * 0.7, size=k)
    lengths = np.minimum(1 + rng.geometric(0.45, n) - 1, 12)
    codes = np.zeros((n, 12), dtype=np.int64)
    codes[:, 0] = rng.choice(k, n, p=first)
    cumulative = np.cumsum(step, axis=1)
    for j in range(1, 12):
        u = rng.random(n)
        codes[:, j] = (cumulative[codes[:, j - 1]] < u[:, None]).sum(axis=1).clip(max=k - 1)
    effect = rng.normal(0.0, 0.6, k)
    touched = np.zeros((n, k), dtype=bool)
    for j in range(12):
        live = lengths > j
        touched[np.flatnonzero(live), codes[live, j]] = True
    p = 1 / (1 + np.exp(-(-3.0 + touched @ effect + 0.25 * lengths)))
    converted = rng.random(n) < p
    value = np.where(converted, np.round(rng.gamma(2.0, 40.0, n), 2), 0.0)
    paths = [
        tuple(row[:length]) for row, length in zip(codes.tolist(), lengths.tolist(), strict=True)
    ]
    return paths, converted.astype(np.float64), value


def pure_python_removal_effects(paths: Paths) -> list[float]:
    """The same exact order-1 answer without numpy or scipy: Gauss-Seidel sweeps."""
    moves: dict[object, dict[object, float]] = {}
    for path, conv, null in zip(
        paths.paths, paths.conversions.tolist(), paths.nulls.tolist(), strict=True
    ):
        steps = ["start", *path]
        for a, b in itertools.pairwise(steps):
            moves.setdefault(a, {})[b] = moves.setdefault(a, {}).get(b, 0.0) + conv + null
        last = moves.setdefault(path[-1], {})
        last["conv"] = last.get("conv", 0.0) + conv
        last["null"] = last.get("null", 0.0) + null
    probs = {a: {b: w / sum(row.values()) for b, w in row.items()} for a, row in moves.items()}

    def absorbed(removed: object) -> float:
        x = {a: 0.0 for a in probs}
        for _ in range(10_000):
            change = 0.0
            for a, row in probs.items():
                if a == removed:
                    continue
                new = sum(
                    p * (1.0 if b == "conv" else x.get(b, 0.0))
                    for b, p in row.items()
                    if b not in ("null", removed)
                )
                change = max(change, abs(new - x[a]))
                x[a] = new
            if change < 1e-12:
                break
        return x["start"]

    base = absorbed(None)
    return [1 - absorbed(c) / base for c in range(len(paths.channels))]


def channelattribution(table: Path, venv: Path, log: Path) -> dict[str, object]:
    sys.path.insert(0, str(Path(__file__).parent))
    from clv import ensure_venv  # the throwaway environments of every bench script

    python = ensure_venv(venv, log, CA_PINS, "import ChannelAttribution")
    code = f"""
import json, time, pandas as pd, ChannelAttribution as ca
data = pd.read_csv({str(table)!r})
out = {{}}
for name, frame in (("as given", data), ("rows reversed", data.iloc[::-1].reset_index(drop=True))):
    t = time.perf_counter()
    r = ca.markov_model(
        frame, var_path="path", var_conv="total_conversions", var_null="total_null",
        out_more=True, verbose=0, flg_pro=False,
    )
    re = r["removal_effects"]
    effects = dict(zip(re["channel_name"], re["removal_effect"]))
    out[name] = {{"seconds": time.perf_counter() - t, "removal_effects": effects}}
print("RESULT" + json.dumps(out))
"""
    done = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, timeout=600, check=True
    )
    line = next(x for x in done.stdout.splitlines() if x.startswith("RESULT"))
    return json.loads(line.removeprefix("RESULT"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--journeys", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--no-channelattribution", action="store_true")
    args = parser.parse_args()
    import duckdb

    print(f"{args.journeys:,} journeys over {len(CHANNELS)} channels (seed {args.seed})")
    start = time.perf_counter()
    drawn, converted, value = journeys(args.journeys, args.seed)
    print(f"  drawn in {time.perf_counter() - start:.1f} s")
    names = [[CHANNELS[c] for c in j] for j in drawn]

    t = time.perf_counter()
    paths = Paths.of(names, converted, value=value, nulls=1 - converted)
    aggregate_s = time.perf_counter() - t
    texts = [" > ".join(n) for n in names]
    con = duckdb.connect()
    con.execute(
        "CREATE TABLE j AS SELECT * FROM (SELECT unnest(?) AS path, unnest(?) AS conv)",
        [texts, converted.tolist()],
    )
    t = time.perf_counter()
    floor_rows = con.execute(
        "SELECT path, sum(conv), count(*) - sum(conv) FROM j GROUP BY path"
    ).fetchall()
    floor_s = time.perf_counter() - t
    print(
        f"aggregation: segvalue Paths.of {aggregate_s:.2f} s -> {len(paths.paths):,} unique "
        f"paths; DuckDB GROUP BY {floor_s:.2f} s ({len(floor_rows):,}); "
        f"ratio {aggregate_s / floor_s:.1f}x"
    )

    markov(Paths.of([["a"]], [1.0]))  # scipy imported before the clock
    rows = []
    for order in (1, 2):
        t = time.perf_counter()
        exact = markov(paths, order=order)
        rows.append((order, time.perf_counter() - t, exact))
        print(
            f"segvalue markov order {order}: {rows[-1][1]:.2f} s, "
            f"{exact.details['states']:,} states, "
            f"P(conversion) {exact.details['conversion_probability']:.6f}"
        )
    exact_s, exact = rows[0][1], rows[0][2]
    assert exact.removal_effects is not None
    verdict = "met" if exact_s <= GOAL_S else "MISSED"
    print(f"  goal order 1 <= {GOAL_S:.0f} s after aggregation: {verdict} ({exact_s:.2f} s)")

    t = time.perf_counter()
    pure = pure_python_removal_effects(paths)
    pure_s = time.perf_counter() - t
    gap = max(abs(a - b) for a, b in zip(pure, exact.removal_effects.tolist(), strict=True))
    print(
        f"pure-Python exact (Gauss-Seidel): {pure_s:.2f} s ({pure_s / exact_s:.1f}x "
        f"segvalue), largest difference {gap:.1e}"
    )

    print("channel removal effects (exact, order 1):")
    for name, effect in zip(paths.channels, exact.removal_effects.tolist(), strict=True):
        print(f"  {name:<10} {effect:.6f}")
    if args.no_channelattribution:
        return
    with tempfile.TemporaryDirectory() as work:
        table = Path(work) / "paths.csv"
        lines = ["path,total_conversions,total_null"]
        for path, conv, null in zip(
            paths.paths, paths.conversions.tolist(), paths.nulls.tolist(), strict=True
        ):
            lines.append(f"{' > '.join(paths.channels[c] for c in path)},{conv:g},{null:g}")
        table.write_text("\n".join(lines) + "\n")
        CACHE.mkdir(parents=True, exist_ok=True)
        found = channelattribution(
            table,
            CACHE / "channelattribution-2.2.5",
            CACHE / "channelattribution-2.2.5.install.log",
        )
    truth = dict(zip(paths.channels, exact.removal_effects.tolist(), strict=True))
    for name, run in found.items():
        effects = run["removal_effects"]
        errors = {c: abs(effects[c] - truth[c]) / truth[c] for c in truth if truth[c] > 0}
        worst = max(errors, key=lambda c: errors[c])
        print(
            f"ChannelAttribution 2.2.5 ({name}): {run['seconds']:.2f} s "
            f"({run['seconds'] / exact_s:.1f}x segvalue), removal effects off by up to "
            f"{errors[worst]:.2%} ({worst}: {effects[worst]:.6f} against {truth[worst]:.6f})"
        )


if __name__ == "__main__":
    main()
