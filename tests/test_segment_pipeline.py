"""Segmentation through the pipeline and the CLI: every scheme, the store, migration."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from segvalue.cli.main import cli
from segvalue.config import load_config
from segvalue.errors import ConfigError
from segvalue.pipeline import RunResult, run, run_demo
from segvalue.store import open_store


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[RunResult, Path]:
    out = tmp_path_factory.mktemp("segments") / "shop"
    return run_demo(n_customers=1500, seed=11, out_dir=out)


def _per_scheme(memberships: pa.Table) -> dict[str, tuple[int, int]]:
    """Rows and distinct customers per scheme."""
    out = {}
    for scheme in sorted(set(memberships.column("scheme").to_pylist())):
        rows = memberships.filter(pc.equal(memberships.column("scheme"), scheme))
        out[scheme] = (rows.num_rows, len(set(rows.column("customer_id").to_pylist())))
    return out


def test_every_customer_has_exactly_one_membership_per_exclusive_scheme(
    demo: tuple[RunResult, Path],
) -> None:
    result, _ = demo
    assert result.segmentation is not None
    counts = _per_scheme(result.segmentation.memberships)
    customers = result.features.num_rows
    assert customers == 1500
    kinds = {n: d.get("mode", "exclusive") for n, d in result.segmentation.details.items()}
    assert set(counts) == {
        "age_band",
        "market",
        "lifestyle",
        "behaviour",
        "benefit",
        "lifecycle",
        "rfm",
        "clusters",
    }
    for scheme, (rows, distinct) in counts.items():
        assert distinct == customers, scheme  # nobody left out
        if kinds[scheme] == "tags":
            assert rows >= customers
        else:
            assert rows == customers, scheme  # and nobody twice


def test_demo_clusters_rediscover_the_planted_personas(demo: tuple[RunResult, Path]) -> None:
    """The demo's cluster scheme (automatic k) finds the 6 planted personas (ARI >= 0.8)."""
    from sklearn.metrics import adjusted_rand_score

    result, config_path = demo
    assert result.segmentation is not None
    assert result.segmentation.details["clusters"]["model"]["k"] == 6
    members = result.segmentation.memberships
    members = members.filter(pc.equal(members.column("scheme"), "clusters"))
    truth = pq.read_table(config_path.parent / "data" / "truth" / "customers.parquet")
    persona = dict(
        zip(truth["customer_id"].to_pylist(), truth["persona_id"].to_pylist(), strict=True)
    )
    ids = members.column("customer_id").to_pylist()
    ari = adjusted_rand_score([persona[c] for c in ids], members.column("segment").to_pylist())
    assert ari >= 0.8


def test_outputs_hold_memberships_profiles_personas_and_potential(
    demo: tuple[RunResult, Path],
) -> None:
    result, config_path = demo
    output = config_path.parent / "output"
    memberships = pq.read_table(output / "segment_memberships.parquet")
    assert memberships.equals(result.segmentation.memberships)  # type: ignore[union-attr]
    sizes = pq.read_table(output / "segment_sizes.parquet")
    for scheme in ("rfm", "lifecycle"):
        shares = sizes.filter(pc.equal(sizes.column("scheme"), scheme)).column("share")
        assert pc.sum(shares).as_py() == pytest.approx(1.0)
    personas = json.loads((output / "personas.json").read_text())
    sized = {(r["scheme"], r["segment"]) for r in sizes.to_pylist()}
    assert {(p["scheme"], p["segment"]) for p in personas} == sized
    assert all(p["name"] and p["channels"] for p in personas)
    sheet = (output / "persona_sheet.md").read_text()
    assert "## Scheme rfm" in sheet and "Champions" in sheet
    potential = pq.read_table(output / "market_potential.parquet").to_pylist()
    assert {r["market"] for r in potential} == {"garden for outdoor people"}
    for row in potential:
        assert 0 <= row["addressable"] <= row["with_need"] <= row["customers"]
        assert row["revenue_potential"] == pytest.approx(
            row["addressable"] * 0.1 * row["value_per_customer"]
        )
    report = json.loads((output / "run.json").read_text())
    assert report["segments"]["schemes"]["lifecycle"]["thresholds"]["active_days"] > 0


def test_runs_are_recorded_and_migration_compares_with_an_earlier_as_of(tmp_path: Path) -> None:
    _, config_path = run_demo(n_customers=600, seed=5, out_dir=tmp_path / "shop")
    config = load_config(config_path)
    with open_store(config.store_url) as store:
        first = [r.run_id for r in store.runs()]
    assert len(first) == 1
    # The same data two months later: customers drift towards lapsing.
    assert config.as_of is not None
    later = config.model_copy(update={"as_of": config.as_of + dt.timedelta(days=60)})
    second = run(later)
    assert second.migration is not None
    assert second.migration.previous_run == first[0]
    assert second.migration.previous_as_of == config.as_of
    matrix = second.migration.matrix.to_pylist()
    with open_store(config.store_url) as store:
        assert [r.run_id for r in store.runs()] == [second.run_id, first[0]]
        before = store.table(first[0], "memberships")
    lifecycle_before = pc.sum(pc.equal(before.column("scheme"), "lifecycle")).as_py()
    moved = sum(r["customers"] for r in matrix if r["scheme"] == "lifecycle")
    assert moved == lifecycle_before == 600
    events = second.migration.events
    changed = [
        r for r in matrix if r["scheme"] == "lifecycle" and r["from_segment"] != r["to_segment"]
    ]
    lifecycle_events = pc.sum(pc.equal(events.column("scheme"), "lifecycle")).as_py()
    assert lifecycle_events == sum(r["customers"] for r in changed) > 0
    output = config_path.parent / "output"
    assert pq.read_table(output / "segment_migration.parquet").num_rows == len(matrix)
    # A run as of an earlier date, recorded last, compares with the runs before its
    # date (none here), never backwards with the later one.
    earlier = config.model_copy(update={"as_of": config.as_of - dt.timedelta(days=30)})
    assert run(earlier).migration is None
    # And the run as of the latest date again compares with the latest earlier one.
    again = run(later)
    assert again.migration is not None and again.migration.previous_run == first[0]


def test_segment_command_prints_schemes_and_filters(
    demo: tuple[RunResult, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config_path = demo
    capsys.readouterr()
    assert cli(["segment", "-c", str(config_path), "--scheme", "rfm", "--json"]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    # rfm is recomputed; the other schemes are carried from the fixture's run, so the
    # snapshot holds every configured scheme.
    schemes = doc["segments"]["schemes"]
    assert set(schemes) == {s.name for s in load_config(config_path).segments.schemes}
    assert "carried_from" not in schemes["rfm"]
    assert {schemes[n].get("carried_from") for n in schemes if n != "rfm"} == {demo[0].run_id}
    assert sum(s["customers"] for s in schemes["rfm"]["segments"]) == 1500
    assert doc["migration"] is None  # the same as-of date: no earlier run to compare with
    assert cli(["segment", "-c", str(config_path), "--scheme", "rmf"]) == 2
    err = capsys.readouterr().err
    assert "'rmf' (--scheme) is not a scheme" in err and "rfm" in err


def test_run_command_on_a_config(
    demo: tuple[RunResult, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config_path = demo
    capsys.readouterr()
    assert cli(["run", "-c", str(config_path)]) == 0
    text = capsys.readouterr().out
    assert "Scheme lifecycle (lifecycle)" in text and "segment_memberships" in text


def test_run_schemes_recomputes_some_and_carries_the_others(
    demo: tuple[RunResult, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    _, config_path = demo
    config = load_config(config_path)
    capsys.readouterr()
    assert cli(["run", "-c", str(config_path), "--schemes", "rfm,lifecycle"]) == 0
    text = capsys.readouterr().out
    assert "Scheme rfm (rfm)" in text and "Scheme lifecycle (lifecycle)" in text
    assert "Scheme clusters" not in text  # carried, not recomputed: not shown
    with open_store(config.store_url) as store:
        latest = store.latest()
        assert latest is not None
        assert set(latest.schemes) == {s.name for s in config.segments.schemes}
        summary = store.document(latest.run_id, "segments")["schemes"]
        carried = {n for n, d in summary.items() if "carried_from" in d}
        assert carried == {s.name for s in config.segments.schemes} - {"rfm", "lifecycle"}
    # Other data than the run to carry from: refused, saying why, nothing recorded.
    changed = config.model_copy(update={"as_of": config.as_of - dt.timedelta(days=1)})
    with pytest.raises(ConfigError, match="its as-of date is") as refused:
        run(changed, schemes=["rfm"])
    assert refused.value.parameter == "schemes"
    with open_store(config.store_url) as store:
        assert store.latest().run_id == latest.run_id


def test_unstable_clusters_are_flagged_and_a_cluster_scheme_runs_alone() -> None:
    """Uniform noise has no clusters: bootstrap stability flags them (Hennig 2007)."""
    import ibis
    import numpy as np

    from segvalue.config import SegmentsConfig
    from segvalue.segments.segmentation import segment_customers

    rng = np.random.default_rng(0)
    n = 1200
    features = ibis.memtable(
        {
            "customer_id": [f"c{i:04d}" for i in range(n)],
            "x": rng.random(n),
            "y": rng.random(n),
            "z": rng.random(n),
        }
    )
    config = SegmentsConfig.model_validate(
        {
            "min_size": 1,
            "min_share": 0.0,
            "schemes": [{"name": "noise", "type": "cluster", "features": ["x", "y", "z"], "k": 5}],
        }
    )
    result = segment_customers(
        features, features, config, as_of=dt.date(2024, 1, 1), only=["noise"]
    )
    assert result.memberships.num_rows == n
    unstable = {w.segment for w in result.quality if w.kind == "unstable_segment"}
    stability = result.details["noise"]["model"]["stability"]
    assert unstable == {s for s, j in stability["jaccard"].items() if j < 0.6}
    assert unstable  # noise: at least one cluster does not survive resampling


def test_clusters_fitted_during_the_clv_step_equal_those_fitted_in_the_segments_step(
    demo: tuple[RunResult, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run fits cluster schemes on a background thread while CLV runs: the model and
    the memberships are those the segments step fits itself."""
    from segvalue.pipeline import segments

    result, config_path = demo
    assert result.segmentation is not None
    started: list[str] = []
    real = segments.start_cluster_fits

    def spy(*args: Any, **kwargs: Any) -> Any:
        fits = real(*args, **kwargs)
        started.extend(fits)
        return fits

    monkeypatch.setattr(segments, "start_cluster_fits", spy)
    overlapped = run(load_config(config_path), write=False)
    monkeypatch.setattr(segments, "start_cluster_fits", lambda *a, **k: {})
    in_place = run(load_config(config_path), write=False)
    assert started == ["clusters"]
    assert overlapped.segmentation is not None and in_place.segmentation is not None
    model = overlapped.segmentation.details["clusters"]["model"]
    assert model == in_place.segmentation.details["clusters"]["model"]
    assert model["k"] == 6
    assert overlapped.segmentation.memberships.equals(in_place.segmentation.memberships)


def test_duckdb_leaves_the_background_fits_their_cores_and_gets_them_back() -> None:
    import ibis

    from segvalue.pipeline import _leave_cores

    con = ibis.duckdb.connect()

    def threads() -> int:
        return int(con.raw_sql("SELECT current_setting('threads')").fetchone()[0])

    con.raw_sql("SET threads = 4")
    restore = _leave_cores(con, 1)
    assert threads() == 3
    restore()
    assert threads() == 4
    _leave_cores(con, 0)()  # no fit running: nothing changes
    restore = _leave_cores(con, 9)  # at least one thread stays
    assert threads() == 1
    restore()
    assert threads() == 4
    con.raw_sql("SET threads = 1")
    _leave_cores(con, 1)()
    assert threads() == 1
