"""Project: validate, run, read runs from the store, diff them, plan budgets; the public API."""

from __future__ import annotations

import ast
import dataclasses
import datetime as dt
import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest

import segvalue
from segvalue.config import load_config, parse_config
from segvalue.errors import ConfigError, DataValidationError
from segvalue.pipeline import plan_budget, run_demo, validate_config
from segvalue.project import MODEL_DOCUMENTS, Project, RunInfo, _scheme_diff
from segvalue.store import RunRecord, open_store

SRC = Path(__file__).parents[1] / "src" / "segvalue"


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """A demo project with two complete runs: as of the demo's date and 8 weeks earlier.

    Yields the config path, the id of the run as of the earlier date (started last) and
    of the run as of the demo's date.
    """
    folder = tmp_path_factory.mktemp("project") / "shop"
    result, config_path = run_demo(n_customers=600, seed=4, out_dir=folder)
    config = load_config(config_path)
    assert config.as_of is not None
    earlier = config.model_copy(update={"as_of": config.as_of - dt.timedelta(weeks=8)})
    with Project(earlier) as project:
        first = project.run()
    yield config_path, first.run_id, result.run_id


def _latest_id(config_path: Path) -> str:
    with Project.from_yaml(config_path) as project:
        view = project.runs.latest()
        assert view is not None
        return view.run_id


def test_run_info_mirrors_the_store_record() -> None:
    record = RunRecord(
        "r1",
        "complete",
        dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC),
        finished_at=dt.datetime(2024, 6, 1, 12, 1, tzinfo=dt.UTC),
        as_of=dt.date(2024, 5, 31),
        schemes=["rfm"],
        row_counts={"orders": 3},
        rejects={"orders.negative_amount": 1},
        timings={"features": 0.5},
    )
    info = RunInfo.from_record(record)
    assert {f.name for f in dataclasses.fields(RunInfo)} == set(record.to_dict())
    assert info.to_dict() == record.to_dict()
    assert json.loads(json.dumps(info.to_dict()))["as_of"] == "2024-05-31"
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.status = "failed"  # type: ignore[misc]


def test_project_without_a_store_has_no_runs_and_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text("order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n")
    config = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=tmp_path)
    with Project(config) as project:
        assert project.runs.list() == []
        assert project.runs.latest() is None
        with pytest.raises(ConfigError, match="no complete run in the store duckdb://") as caught:
            project.runs.require_latest()
        assert "Project.run()" in (caught.value.fix or "")
        with pytest.raises(ConfigError, match="not a run status"):
            project.runs.list(status="done")
    assert not (tmp_path / "segvalue-store.duckdb").exists()  # reading created nothing


def test_run_of_schemes_needs_segments(tmp_path: Path) -> None:
    config = parse_config(
        {"sources": {"orders": {"path": "o.csv"}}, "segments": {"enabled": False}},
        base_dir=tmp_path,
    )
    with pytest.raises(ConfigError, match=r"segments\.enabled is false") as caught:
        Project(config).run(schemes=["rfm"])
    assert caught.value.parameter == "schemes"
    assert not (tmp_path / "segvalue-store.duckdb").exists()  # refused before anything ran


def test_validate_gives_the_pipeline_report_without_rereading_the_yaml(tmp_path: Path) -> None:
    rows = "order_id,customer_id,order_ts,amount\n1,a,x,5\n2,a,2024-01-02,5\n"
    (tmp_path / "o.csv").write_text(rows)
    path = tmp_path / "segvalue.yaml"
    path.write_text("sources: {orders: {path: o.csv}}\nas_of: 2024-01-31\n")
    project = Project.from_yaml(path)
    path.unlink()  # the project holds its configuration: the file is not read again
    report = project.validate(rejects=tmp_path / "rejects.csv")
    assert report.tables["orders"].rejected == {"unparseable_value": 1}
    assert "unparseable_value" in (tmp_path / "rejects.csv").read_text()
    with pytest.raises(DataValidationError, match="unparseable_value"):
        project.validate(strict=True)
    with pytest.raises(ConfigError, match="either a configuration"):
        validate_config()


def test_runs_list_and_latest(demo: tuple[Path, str, str]) -> None:
    config_path, first, second = demo
    with Project.from_yaml(config_path) as project:
        runs = project.runs.list()
        # newest first: the run as of eight weeks earlier was started last
        assert [r.run_id for r in runs] == [first, second]
        assert all(r.status == "complete" for r in runs)
        assert project.runs.list(status="failed") == []
        # the latest complete run is the one with the latest as-of date
        latest = project.runs.latest()
        assert latest is not None and latest.run_id == second
        assert runs[0].as_of is not None and runs[1].as_of is not None
        assert runs[0].as_of == runs[1].as_of - dt.timedelta(weeks=8)
        assert project.runs.get(first).info == runs[0]
        with pytest.raises(DataValidationError, match="no run 'nope'"):
            project.runs.get("nope")


def test_run_view_reads_typed_results(demo: tuple[Path, str, str]) -> None:
    config_path, _, second = demo
    with Project.from_yaml(config_path) as project:
        view = project.runs.get(second)
        scores = view.customer_scores()
        assert scores.num_rows == 600
        assert {"customer_id", "clv", "probability_alive"} <= set(scores.column_names)
        assert view.customer_scores() is scores  # read once, then kept
        members = view.memberships()
        assert set(members.column_names) == {"customer_id", "scheme", "segment"}
        assert set(members.column("scheme").to_pylist()) == set(view.info.schemes)
        rfm = view.memberships("rfm")
        assert set(rfm.column("scheme").to_pylist()) == {"rfm"}
        assert rfm.num_rows == 600  # an exclusive scheme: one segment per customer
        kpis = view.segment_kpis()
        assert kpis.column("segment")[0].as_py() == "all customers"
        assert kpis.column("customers")[0].as_py() == 600
        assert view.kpi_status().num_rows > 0
        assert sorted(view.priorities().column("rank").to_pylist()) == list(range(1, kpis.num_rows))
        profiles = view.profiles()
        assert profiles.segments.num_rows and profiles.numeric.num_rows
        personas = view.personas()
        assert {p["scheme"] for p in personas} == set(view.info.schemes)
        models = view.models()
        assert set(models) <= set(MODEL_DOCUMENTS) and "clv_transaction_model" in models
        assert segvalue.model_from_json(json.dumps(models["clv_transaction_model"])).params_
        assert {g["segment"] for g in view.budget_guidance()["segments"]} == set(
            kpis.column("segment").to_pylist()
        )
        assert view.rejects().num_rows == 0
        assert view.report()["run_id"] == second
        assert set(view.segments()["schemes"]) == set(view.info.schemes)
        with pytest.raises(DataValidationError, match=f"run {second} holds no table 'nope'"):
            view.table("nope")
        with pytest.raises(DataValidationError, match="holds no scheme 'nope'"):
            view.memberships("nope")


def test_a_failed_run_has_info_but_no_results(tmp_path: Path) -> None:
    config = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=tmp_path)
    started = dt.datetime(2024, 6, 1, 12, tzinfo=dt.UTC)
    with open_store(config.store_url, create=True) as store:
        store.begin_run(RunRecord("r1", "running", started, as_of=dt.date(2024, 5, 31)))
        store.fail_run("r1", "boom")
    with Project(config) as project:
        [info] = project.runs.list(status="failed")
        assert (info.run_id, info.error) == ("r1", "boom")
        assert project.runs.latest() is None
        view = project.runs.get("r1")
        assert view.info == info
        with pytest.raises(DataValidationError, match="run r1 is failed: boom"):
            view.segment_kpis()
        with pytest.raises(ConfigError, match="no complete run in the store"):
            project.runs.require_latest()


def test_reads_record_nothing(demo: tuple[Path, str, str]) -> None:
    config_path, _, _ = demo
    with Project.from_yaml(config_path) as project:
        before = project.runs.list()
        view = project.runs.require_latest()
        view.segment_kpis()
        project.segment_clv()
        project.runs.diff(before[0].run_id, before[1].run_id)
        assert project.runs.list() == before


def test_diff_of_two_runs(demo: tuple[Path, str, str]) -> None:
    config_path, first, second = demo
    with Project.from_yaml(config_path) as project:
        diff = project.runs.diff(first, second)
        a, b = project.runs.get(first), project.runs.get(second)
        assert diff.before.run_id == first and diff.after.run_id == second
        assert set(diff.schemes) == set(a.info.schemes) | set(b.info.schemes)
        for name, scheme in diff.schemes.items():
            sizes = {r["segment"]: r for r in scheme.sizes.to_pylist()}
            old, new = a.memberships(name), b.memberships(name)
            for segment, row in sizes.items():
                count_old = pc.sum(pc.equal(old.column("segment"), segment)).as_py() or 0
                count_new = pc.sum(pc.equal(new.column("segment"), segment)).as_py() or 0
                assert (row["before"], row["after"]) == (count_old, count_new)
                assert row["change"] == count_new - count_old
                # entering minus leaving is the change in size
                entered, left = scheme.entered.get(segment, 0), scheme.left.get(segment, 0)
                assert entered - left == row["change"], (name, segment)
            if scheme.transitions is not None:
                total = sum(scheme.transitions.column("customers").to_pylist())
                assert total == len(
                    set(old.column("customer_id").to_pylist())
                    | set(new.column("customer_id").to_pylist())
                )
        rfm = diff.schemes["rfm"]
        assert rfm.entered and rfm.left  # eight weeks move customers between RFM cells
        assert diff.kpi_scheme == "clusters"
        assert diff.kpis is not None
        rows = {(r["segment"], r["kpi"]): r for r in diff.kpis.to_pylist()}
        old_kpis = {r["segment"]: r for r in a.segment_kpis().to_pylist()}
        new_kpis = {r["segment"]: r for r in b.segment_kpis().to_pylist()}
        row = rows[("all customers", "clv_mean")]
        assert row["before"] == pytest.approx(old_kpis["all customers"]["clv_mean"])
        assert row["after"] == pytest.approx(new_kpis["all customers"]["clv_mean"])
        assert row["change"] == pytest.approx(row["after"] - row["before"])
        doc = json.loads(json.dumps(diff.to_dict()))
        assert doc["before"]["run_id"] == first and doc["schemes"]["rfm"]["sizes"]


def test_scheme_diff_counts_moves_entries_and_exits() -> None:
    before = pa.table({"customer_id": ["a", "b", "c", "d"], "segment": ["x", "x", "y", "y"]})
    after = pa.table({"customer_id": ["a", "b", "c", "e"], "segment": ["x", "y", "y", "x"]})
    diff = _scheme_diff("s", before, after, tags=False)
    assert diff.sizes.to_pylist() == [
        {"segment": "x", "before": 2, "after": 2, "change": 0},
        {"segment": "y", "before": 2, "after": 2, "change": 0},
    ]
    assert diff.entered == {"x": 1, "y": 1}  # e new in x; b moved into y
    assert diff.left == {"x": 1, "y": 1}  # b left x; d is gone from y
    assert diff.transitions is not None
    moves = {
        (r["from_segment"], r["to_segment"]): r["customers"] for r in diff.transitions.to_pylist()
    }
    assert moves == {("x", "x"): 1, ("x", "y"): 1, ("y", "y"): 1, ("y", None): 1, (None, "x"): 1}
    tags = _scheme_diff("t", before, after, tags=True)
    assert tags.transitions is None and tags.entered == diff.entered


def test_budget_and_what_if_use_the_project_config(demo: tuple[Path, str, str]) -> None:
    config_path, _, _ = demo
    config = load_config(config_path)
    with Project(config) as project:
        plan, warnings = project.budget(objective="revenue")
        expected, _ = plan_budget(config=config, objective="revenue")
        assert plan.to_dict()["allocation"] == pytest.approx(expected.to_dict()["allocation"])
        assert warnings is not None
        scenario = project.what_if("paid_social:email:0.2")
        assert scenario.change_by_item and scenario.interval is not None  # fitted curves
        # objective clv values items by the latest complete run's segment CLV
        latest = project.runs.require_latest()
        clv = project.segment_clv()
        kpis = latest.segment_kpis().to_pylist()
        assert clv == {r["segment"]: pytest.approx(r["clv_mean"]) for r in kpis}
        clv_plan, _ = project.budget(objective="clv")
        assert sum(clv_plan.to_dict()["allocation"].values()) > 0
    with pytest.raises(ConfigError, match="`segment_clv`") as caught:
        plan_budget(config=config, objective="clv")
    assert caught.value.parameter == "segment_clv"


def test_close_closes_the_store_and_reopens_on_demand(demo: tuple[Path, str, str]) -> None:
    config_path, _, second = demo
    project = Project.from_yaml(config_path)
    view = project.runs.get(second)
    assert project._store is not None
    project.close()
    assert project._store is None
    assert _latest_id(config_path) == second
    assert project.runs.get(second).segment_kpis().num_rows  # reopened when read again
    project.close()
    assert view.info.run_id == second


def test_public_api_names_resolve() -> None:
    for name in segvalue.__all__:
        assert getattr(segvalue, name) is not None, name
    assert segvalue.Project is Project
    assert issubclass(segvalue.DataValidationError, segvalue.SegvalueError)
    assert "Project" in dir(segvalue)
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        _ = segvalue.nope  # type: ignore[attr-defined]


def test_import_segvalue_loads_no_heavy_library() -> None:
    """Nor does Project until it reads or runs: the CLI's --help and start-up stay fast."""
    code = (
        "import sys, segvalue; segvalue.ConfigError; segvalue.__version__; "
        "segvalue.Project; segvalue.load_config; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('ibis', 'pyarrow', 'numpy', 'pandas', 'scipy', 'duckdb')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# Files outside this change that still word a message with a command-line option: each
# is to lose its entry when its message names the parameter instead.
_KNOWN_FLAG_MESSAGES: set[str] = set()
_FLAG = re.compile(r"(?<![\w`-])--[a-z][a-z-]*")


def _message_strings(tree: ast.AST) -> Iterator[tuple[int, str]]:
    """Text of the string literals inside ``raise`` statements and ``fix=`` arguments."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Raise) and node.exc is not None:
            for inner in ast.walk(node.exc):
                if isinstance(inner, ast.Constant) and isinstance(inner.value, str):
                    yield inner.lineno, inner.value


@pytest.mark.parametrize(
    "path",
    sorted(p for p in SRC.rglob("*.py") if p.relative_to(SRC).parts[0] not in ("cli",)),
    ids=lambda p: str(p.relative_to(SRC)),
)
def test_core_messages_name_parameters_not_options(path: Path) -> None:
    found = [
        f"{path.name}:{line}: {text}"
        for line, text in _message_strings(ast.parse(path.read_text()))
        if _FLAG.search(text)
    ]
    if str(path.relative_to(SRC)) in _KNOWN_FLAG_MESSAGES:
        assert found, f"{path.name} no longer words options: drop it from the known list"
        return
    assert not found, found


def test_library_doc_examples_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """docs/library.md: its Python blocks, in order, in an empty folder, as one script."""
    text = (SRC.parents[1] / "docs" / "library.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    assert len(blocks) >= 6
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "library_md"}
    for block in blocks:
        exec(compile(block, "docs/library.md", "exec"), namespace)
    project = namespace["project"]
    assert isinstance(project, Project) and project._store is None  # closed at the end


def test_project_reads_a_postgresql_store(
    demo: tuple[Path, str, str], pg_schema_url: str, tmp_path: Path
) -> None:
    """The same reads on a store in a real PostgreSQL server (its own schema)."""
    url = pg_schema_url
    config = load_config(demo[0])
    config = config.model_copy(
        update={
            "store": config.store.model_copy(update={"url": url}),
            "output": config.output.model_copy(update={"dir": str(tmp_path / "out")}),
        }
    )
    with Project(config) as project:
        assert project.runs.list() == []  # a schema no run has written to yet
        assert project.runs.latest() is None
        result = project.run()
        [info] = project.runs.list()
        assert info.run_id == result.run_id and info.status == "complete"
        view = project.runs.require_latest()
        assert view.customer_scores().num_rows == 600
        assert view.memberships("rfm").num_rows == 600
        assert view.segment_kpis().column("segment")[0].as_py() == "all customers"
        with Project.from_yaml(demo[0]) as local:
            stored = local.runs.get(demo[2])
            assert view.segments()["schemes"].keys() == stored.segments()["schemes"].keys()
