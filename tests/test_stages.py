"""The pipeline as stages: each stage returns its dataclass, and the run times every stage.

The run looks its stages up on their modules (so a test, or the kill points of
tests/test_store_runs.py, can interrupt or replace one); the spies here wrap them there.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from segvalue.config import load_config
from segvalue.data.validation import ValidatedData
from segvalue.pipeline import (
    Economics,
    Features,
    Ingested,
    Persisted,
    RunResult,
    Segmented,
    Valued,
    run,
    run_demo,
)
from segvalue.pipeline import economics as economics_stage
from segvalue.pipeline import segments as segments_stage
from segvalue.pipeline import valuation as valuation_stage
from segvalue.segments.segmentation import Segmentation
from segvalue.store import open_store
from segvalue.valuation import Valuation

# `segvalue.pipeline.run` is the function; the orchestrating module is found by name.
RUN_MODULE = importlib.import_module("segvalue.pipeline.run")

#: Every stage timing a run with CLV, segments and KPIs records, writing or not.
COMPUTED = {
    "read",
    "validate",
    "features",
    "clv",
    "materialise",
    "rejects",
    "segments",
    "measurement",
    "kpis",
}
WRITTEN = {"migration", "write"}


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path]:
    return run_demo(n_customers=400, seed=5, out_dir=tmp_path_factory.mktemp("stages"))


def _spy(
    monkeypatch: pytest.MonkeyPatch, owner: Any, name: str, seen: dict[str, list[Any]]
) -> None:
    original: Callable[..., Any] = getattr(owner, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        out = original(*args, **kwargs)
        seen.setdefault(name, []).append(out)
        return out

    monkeypatch.setattr(owner, name, wrapper)


def test_each_stage_returns_its_dataclass(
    demo: tuple[RunResult, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, config_path = demo
    seen: dict[str, list[Any]] = {}
    for owner, name in (
        (RUN_MODULE, "read_and_validate"),
        (RUN_MODULE, "ingest"),
        (RUN_MODULE, "compute_features"),
        (valuation_stage, "value_customers"),
        (segments_stage, "segment_all"),
        (economics_stage, "compute_economics"),
        (RUN_MODULE, "persist"),
    ):
        _spy(monkeypatch, owner, name, seen)
    result = run(load_config(config_path))
    assert {name: len(outs) for name, outs in seen.items()} == {
        "read_and_validate": 1,
        "ingest": 1,
        "compute_features": 1,
        "value_customers": 1,
        "segment_all": 1,
        "compute_economics": 1,
        "persist": 1,
    }
    (data,) = seen["read_and_validate"]
    assert isinstance(data, ValidatedData)
    (ingested,) = seen["ingest"]
    assert isinstance(ingested, Ingested) and ingested.data is data
    assert len(ingested.fingerprint) == 16
    # The demo's customers carry e-mail addresses: found once, never modelled.
    assert "email" in ingested.contacts
    (features,) = seen["compute_features"]
    assert isinstance(features, Features)
    # Engine tables (the run's connection is closed now: their schemas are still known).
    assert {"frequency", "recency", "T", "monetary_value"} <= set(features.table.columns)
    assert "clv" not in features.table.columns and result.features.num_rows == 400
    (valued,) = seen["value_customers"]
    assert isinstance(valued, Valued) and isinstance(valued.valuation, Valuation)
    assert valued.valuation is result.valuation
    assert {"clv", "probability_alive", "purchase_propensity"} <= set(valued.features.columns)
    (segmented,) = seen["segment_all"]
    assert isinstance(segmented, Segmented) and isinstance(segmented.segmentation, Segmentation)
    assert segmented.segmentation is result.segmentation and segmented.carried == ()
    (economics,) = seen["compute_economics"]
    assert isinstance(economics, Economics) and economics is result.economics
    assert isinstance(economics.kpis, pa.Table) and economics.kpis.num_rows > 1
    (persisted,) = seen["persist"]
    assert isinstance(persisted, Persisted)
    assert persisted.outputs == result.outputs and persisted.migration is result.migration
    # The demo's own run has the same as-of date: no earlier run to compare with.
    assert persisted.migration is None
    assert all(path.exists() for path in persisted.outputs.values())


def test_the_run_times_every_stage_that_ran(demo: tuple[RunResult, Path]) -> None:
    result, config_path = demo
    assert set(result.timings) == COMPUTED | WRITTEN
    assert all(seconds >= 0 for seconds in result.timings.values())
    # The store's row holds every stage up to the write (committed inside it).
    with open_store(load_config(config_path).store_url) as store:
        stored = store.run(result.run_id).timings
    assert set(stored) == COMPUTED | {"migration"}
    unwritten = run(load_config(config_path), write=False)
    assert set(unwritten.timings) == COMPUTED


def test_progress_counts_every_step_of_the_stages(demo: tuple[RunResult, Path]) -> None:
    """The step count the run announces is the number of steps the stages take."""
    _, config_path = demo
    calls: list[tuple[str, int, int]] = []
    run(load_config(config_path), write=False, progress=lambda d, i, n: calls.append((d, i, n)))
    total = calls[0][2]
    assert calls[-1] == ("done", total, total)
    assert [i for _, i, _ in calls[:-1]] == list(range(total))
    described = [d for d, _, _ in calls[:-1]]
    assert described[-1] == "segment KPIs, targets and priorities"
    assert "fitting CLV models and scoring customers" in described


def test_a_run_without_clv_or_segments_times_only_what_ran(tmp_path: Path) -> None:
    from segvalue.config import parse_config

    (tmp_path / "o.csv").write_text(
        "order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n2,b,2024-01-09,4\n"
    )
    config = parse_config(
        {
            "sources": {"orders": {"path": "o.csv"}},
            "clv": {"enabled": False},
            "segments": {"enabled": False},
        },
        base_dir=tmp_path,
    )
    result = run(config, write=False)
    assert set(result.timings) == {"read", "validate", "features", "materialise", "rejects"}
    assert result.valuation is None and result.segmentation is None and result.economics is None
