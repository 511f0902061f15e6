"""Runs in the results store, end to end with real processes.

- ``segvalue run`` killed with SIGKILL at 12 points spread over the stages leaves the
  latest complete run and its export readable; the next run succeeds and clears the debris.
- Two concurrent runs on one store: the second refuses at once naming the running one,
  or waits (``--wait``), on DuckDB and on PostgreSQL.
- The demo run gives the same store contents on DuckDB and PostgreSQL, and the same
  results when re-run (apart from run id and times); the data fingerprint is stable.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from segvalue.config import StoreConfig, load_config
from segvalue.pipeline import run, run_demo
from segvalue.store import open_store

# The child process: `segvalue run`, with the function named by a kill point wrapped so
# that the process kills itself (SIGKILL: no cleanup of any kind) when it gets there.
CHILD = textwrap.dedent(
    """
    import os, signal, sys, time
    point, argv = sys.argv[1], sys.argv[2:]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(owner, name, when, test=None):
        original = getattr(owner, name)
        def wrapper(*args, **kwargs):
            if when == "before" and (test is None or test(args, kwargs)):
                die()
            out = original(*args, **kwargs)
            if when == "after" and (test is None or test(args, kwargs)):
                die()
            return out
        setattr(owner, name, wrapper)

    def pause(owner, name, flag):
        original = getattr(owner, name)
        def wrapper(*args, **kwargs):
            open(flag + ".reached", "w").close()
            while not os.path.exists(flag):
                time.sleep(0.02)
            return original(*args, **kwargs)
        setattr(owner, name, wrapper)

    import shutil
    from segvalue.pipeline import economics, segments, valuation
    import segvalue.data.validation as validation
    from segvalue.store.results import ResultsStore

    # The stage functions as the run looks them up: on their stage modules.
    points = {
        "begun": (ResultsStore, "begin_run", "after", None),
        "read": (validation, "validate_sources", "before", None),
        "validated": (validation, "validate_sources", "after", None),
        "clv": (valuation, "value_customers", "before", None),
        "valued": (valuation, "value_customers", "after", None),
        "segments": (segments, "segment", "before", None),
        "kpis": (economics, "compute_economics", "before", None),
        "migration": (segments, "compare_with_previous", "before", None),
        "staged": (ResultsStore, "commit_run", "before", None),
        # inside the commit's transaction, every row inserted, status not yet committed
        "inserted": (ResultsStore, "_write_record", "before",
                     lambda a, k: k.get("insert") is False),
        "committed": (ResultsStore, "commit_run", "after", None),
        "swapped": (shutil, "rmtree", "before", lambda a, k: ".old-" in str(a[0])),
        "retention": (ResultsStore, "apply_retention", "before", None),
    }
    if point.startswith("pause:"):
        pause(segments, "segment", point.split(":", 1)[1])
    elif point != "none":
        wrap(*points[point])
    from segvalue.cli.main import cli
    sys.exit(cli(argv))
    """
)
KILL_POINTS = [
    "begun",
    "read",
    "validated",
    "clv",
    "valued",
    "segments",
    "kpis",
    "migration",
    "staged",
    "inserted",
    "committed",
    "swapped",
    "retention",
]
#: Points after which the new run is committed (its export may lag one step).
COMMITTED = {"committed", "swapped", "retention"}


def _child(point: str, *argv: str, **kwargs: Any) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, point, *argv],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "COLUMNS": "100"},
        **kwargs,
    )


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A demo shop with one complete run; its config path."""
    _, config_path = run_demo(n_customers=800, seed=11, out_dir=tmp_path_factory.mktemp("shop"))
    return config_path


def _export_run_id(config_path: Path) -> str:
    output = config_path.parent / "output"
    report = json.loads((output / "run.json").read_text())
    for name in ("customer_features", "segment_memberships", "segment_kpis"):
        assert pq.read_table(output / f"{name}.parquet").num_rows > 0
    return str(report["run_id"])


def test_a_run_killed_anywhere_leaves_the_last_complete_run_readable(shop: Path) -> None:
    config = load_config(shop)
    with open_store(config.store_url) as store:
        latest = store.latest()
        assert latest is not None
        complete = latest.run_id
    assert _export_run_id(shop) == complete
    killed = []
    for point in KILL_POINTS:
        child = _child(point, "run", "-c", str(shop))
        out, err = child.communicate(timeout=300)
        assert child.returncode == -signal.SIGKILL, (point, out, err)
        with open_store(config.store_url) as store:
            new = store.latest()
            assert new is not None
            running = store.runs(status="running")
            assert len(running) == (0 if point in COMMITTED else 1), point
            if point in COMMITTED:
                assert new.run_id != complete, point
                killed_id = new.run_id
            else:
                assert new.run_id == complete, point
                killed_id = running[0].run_id
            # Whatever the export names is a complete run of the store, whole.
            exported = _export_run_id(shop)
            assert store.run(exported).status == "complete"
            assert exported == (complete if point in ("committed",) else new.run_id), point
            members = store.table(new.run_id, "memberships")
            assert set(members.column("scheme").to_pylist()) == set(new.schemes)
        killed.append(killed_id)
        complete = new.run_id
    # The next run succeeds and leaves no debris: killed runs are failed, no staging
    # or old folders, no half-created store file.
    child = _child("none", "run", "-c", str(shop))
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    with open_store(config.store_url) as store:
        assert store.runs(status="running") == []
        failed = {r.run_id for r in store.runs(status="failed")}
        assert failed == {k for k, p in zip(killed, KILL_POINTS, strict=True) if p not in COMMITTED}
        for run_id in failed:
            assert "stopped before it completed" in (store.run(run_id).error or "")
        latest = store.latest()
        assert latest is not None and _export_run_id(shop) == latest.run_id
    leftovers = [
        p.name for p in shop.parent.iterdir() if ".staging-" in p.name or ".old-" in p.name
    ]
    assert leftovers == []


@pytest.fixture(params=["duckdb", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "duckdb":
        yield f"duckdb://{tmp_path / 'store.duckdb'}"
        return
    yield request.getfixturevalue("pg_schema_url")


def _config_with_store(shop: Path, folder: Path, url: str) -> Path:
    """The shop's config with its own output folder and the given store."""
    text = shop.read_text()
    folder.mkdir(parents=True, exist_ok=True)
    data = shop.parent / "data"
    text = text.replace("path: data/", f"path: {data}/").replace("dir: output", "dir: out")
    text += f"\nstore:\n  url: '{url}'\n"
    path = folder / "segvalue.yaml"
    path.write_text(text)
    return path


def test_a_second_concurrent_run_refuses_or_waits(
    shop: Path, store_url: str, tmp_path: Path
) -> None:
    config_path = _config_with_store(shop, tmp_path / "concurrent", store_url)
    flag = str(tmp_path / "go")
    first = _child(f"pause:{flag}", "run", "-c", str(config_path))
    try:
        deadline = time.monotonic() + 120
        while not os.path.exists(flag + ".reached"):
            assert first.poll() is None, first.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        with open_store(store_url) as store:
            (running,) = store.runs(status="running")
        started = time.monotonic()
        second = _child("none", "run", "-c", str(config_path))
        out, err = second.communicate(timeout=120)
        assert second.returncode == 2, (out, err)
        assert time.monotonic() - started < 30  # at once (the process start included)
        assert "in use by" in err and running.run_id in err and "--wait" in err
        assert "Traceback" not in err
        waiting = _child("none", "run", "-c", str(config_path), "--wait", "120")
        time.sleep(1.0)
        assert waiting.poll() is None  # still waiting for the first run
        Path(flag).touch()
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, err
        out, err = waiting.communicate(timeout=300)
        assert waiting.returncode == 0, err
    finally:
        Path(flag).touch()
        if first.poll() is None:
            first.kill()
            first.communicate()
    with open_store(store_url) as store:  # the refused run recorded nothing
        assert [r.status for r in store.runs()] == ["complete", "complete"]


def _volatile(doc: Any) -> Any:
    """A run document without what differs between runs of the same data (ids, times,
    paths)."""
    if isinstance(doc, dict):
        return {
            k: _volatile(v)
            for k, v in doc.items()
            if k
            not in {
                "run_id",
                "timings_seconds",
                "outputs",
                "loaded_at",
                "previous_run",
                "carried_from",
            }
        }
    if isinstance(doc, list):
        return [_volatile(v) for v in doc]
    return doc


def _close(a: Any, b: Any, path: str = "") -> None:
    if isinstance(a, float) and isinstance(b, float):
        if math.isnan(a) and math.isnan(b):
            return
        assert a == pytest.approx(b, rel=1e-9, abs=1e-12), path
    elif isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), path
        for key in a:
            _close(a[key], b[key], f"{path}.{key}")
    elif isinstance(a, list) and isinstance(b, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    else:
        assert a == b, path


def _contents(url: str) -> tuple[Any, dict[str, Any]]:
    with open_store(url) as store:
        latest = store.latest()
        assert latest is not None
        record = {
            k: v
            for k, v in latest.to_dict().items()
            if k not in {"run_id", "started_at", "finished_at", "timings", "versions"}
        }
        tables = {
            name: store.table(latest.run_id, name).to_pylist()
            for name in store.table_names(latest.run_id)
        }
        docs = {
            name: _volatile(store.document(latest.run_id, name))
            for name in store.document_names(latest.run_id)
        }
    return record, {"tables": tables, "documents": docs}


def test_same_results_on_duckdb_and_postgres_and_when_rerun(
    shop: Path, pg_schema_url: str, tmp_path: Path
) -> None:
    pg = pg_schema_url
    base = load_config(shop)
    results = {}
    for name, url in (
        ("duckdb", f"duckdb://{tmp_path / 'a.duckdb'}"),
        ("postgres", pg),
        ("duckdb-again", f"duckdb://{tmp_path / 'b.duckdb'}"),
    ):
        config = base.model_copy(
            update={
                "store": StoreConfig(url=url),
                "output": base.output.model_copy(update={"dir": str(tmp_path / f"out-{name}")}),
            }
        )
        run(config)
        results[name] = _contents(url)
    record, contents = results["duckdb"]
    assert record["status"] == "complete" and len(record["data_fingerprint"]) == 16
    with open_store(base.store_url) as store:  # the shop's own run read the same files
        shop_run = store.latest()
        assert shop_run is not None
        assert shop_run.data_fingerprint == record["data_fingerprint"]
    assert contents["tables"]["customer_scores"]
    for other in ("postgres", "duckdb-again"):
        other_record, other_contents = results[other]
        assert other_record == record, other
        _close(contents, other_contents, other)
