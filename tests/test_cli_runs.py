"""The read commands: runs list / show / diff, kpis and segment --show read the store only.

Human output at 80 columns (``show`` / ``ok`` of test_cli_human check the width, no
traceback, no text cut short) and ``--json``, on a demo project with two complete runs.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli_inputs import CURVES
from segvalue.cli.main import cli
from segvalue.config import load_config
from segvalue.pipeline import run_demo
from segvalue.project import Project
from test_cli_human import ok, show

CONFIG = "shop/segvalue.yaml"


@pytest.fixture(scope="module")
def shop(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str, str]]:
    """(folder holding shop/, id of the run as of 8 weeks earlier, id of the latest run)."""
    where = tmp_path_factory.mktemp("runs")
    result, config_path = run_demo(n_customers=400, seed=7, out_dir=where / "shop")
    config = load_config(config_path)
    assert config.as_of is not None
    earlier = config.model_copy(update={"as_of": config.as_of - dt.timedelta(weeks=8)})
    with Project(earlier) as project:
        first = project.run()
    yield where, first.run_id, result.run_id


def as_json(argv: list[str], where: Path) -> object:
    """``segvalue argv`` (with --json) run in ``where``: the parsed output (no width limit)."""
    stdout = io.StringIO()
    with contextlib.chdir(where), contextlib.redirect_stdout(stdout):
        assert cli(argv) == 0
    return json.loads(stdout.getvalue())


def refused(argv: list[str], where: Path) -> str:
    """``segvalue argv`` run in ``where`` must exit 2: its stderr (paths are never wrapped)."""
    stdout, stderr = io.StringIO(), io.StringIO()
    with (
        contextlib.chdir(where),
        contextlib.redirect_stdout(stdout),
        contextlib.redirect_stderr(stderr),
    ):
        code = cli(argv)
    assert code == 2, stdout.getvalue() + stderr.getvalue()
    assert "Traceback" not in stderr.getvalue()
    return stderr.getvalue()


def _run_count(where: Path) -> int:
    with Project.from_yaml(where / CONFIG) as project:
        return len(project.runs.list())


def test_runs_json_lists_every_run_newest_first(shop: tuple[Path, str, str]) -> None:
    where, first, latest = shop
    doc = as_json(["runs", "-c", CONFIG, "--json"], where)
    assert [r["run_id"] for r in doc["runs"]] == [first, latest]
    for run in doc["runs"]:
        assert run["status"] == "complete"
        assert {"as_of", "started_at", "finished_at", "config_hash", "schemes"} <= set(run)
        dt.datetime.fromisoformat(run["started_at"])
    assert as_json(["runs", "list", "-c", CONFIG, "--json"], where) == doc
    failed = as_json(["runs", "list", "-c", CONFIG, "--status", "failed", "--json"], where)
    assert failed == {"runs": []}


def test_runs_help_lists_its_commands_whole(tmp_path: Path) -> None:
    text = ok(["runs", "--help"], tmp_path)
    listing = text.split("Commands:", 1)[1]
    for command in ("list", "show", "diff"):
        assert re.search(rf"^  {command}\s", listing, re.MULTILINE), command
        assert "Usage: segvalue runs " + command in ok(["runs", command, "--help"], tmp_path)
    assert "..." not in listing


def test_runs_human_table(shop: tuple[Path, str, str]) -> None:
    where, first, latest = shop
    text = ok(["runs", "-c", CONFIG], where)
    assert "Runs (2), newest first" in text
    assert re.search(rf"│ {first} │ complete │", text)  # ids whole, to copy
    assert text.index(first) < text.index(latest)
    assert re.search(r"┃ run +┃ status +┃ as of +┃ started +┃ seconds ┃", text)
    text = ok(["runs", "list", "-c", CONFIG, "--status", "failed"], where)
    assert "no runs recorded in the store yet (failed)" in text


def test_runs_show(shop: tuple[Path, str, str]) -> None:
    where, _, latest = shop
    text = ok(["runs", "show", latest, "-c", CONFIG], where)
    assert f"Run {latest}" in text
    assert re.search(r"│ status +│ complete", text)
    assert "tables: " in text and "segment_kpis" in text
    doc = as_json(["runs", "show", latest, "-c", CONFIG, "--json"], where)
    assert doc["run_id"] == latest and doc["status"] == "complete"
    # the options given to `runs` reach its subcommands
    assert as_json(["runs", "-c", CONFIG, "--json", "show", latest], where) == doc
    assert "memberships" in doc["tables"] and "run" in doc["documents"]
    missing = refused(["runs", "show", "nope", "-c", CONFIG], where)
    assert "no run 'nope'" in missing
    assert latest in missing  # the fix lists recent runs


def test_runs_diff(shop: tuple[Path, str, str]) -> None:
    where, first, latest = shop
    text = ok(["runs", "diff", first, latest, "-c", CONFIG], where)
    assert f"from run {first}" in text and f"to run {latest}" in text
    assert "Scheme rfm" in text and "KPI changes (clusters)" in text
    assert re.search(r"┃ segment +┃ before ┃ after ┃ change ┃ entered ┃ left ┃", text)
    assert re.search(r"\([+-]\d+\.\d pts\)", text)  # rates change in percentage points
    doc = as_json(["runs", "diff", first, latest, "-c", CONFIG, "--json"], where)
    with Project.from_yaml(where / CONFIG) as project:
        expected = project.runs.diff(first, latest).to_dict()
    assert doc == json.loads(json.dumps(expected, default=str))


def test_kpis_reads_the_latest_complete_run_and_records_nothing(
    shop: tuple[Path, str, str],
) -> None:
    where, first, latest = shop
    before = _run_count(where)
    text = ok(["kpis"], where / "shop")  # -c defaults to ./segvalue.yaml
    assert f"run {latest} (as of " in text  # the latest as-of date, not the last started
    assert "Segment KPIs (clusters), 95% intervals" in text
    assert re.search(r"│ all customers +│ +400 │ +100\.0% │", text)
    assert re.search(r"^1\. cluster_\d+ \(", text, re.MULTILINE)  # ranked, with its persona
    doc = as_json(["kpis", "-c", CONFIG, "--json"], where)
    assert doc["run_id"] == latest and doc["scheme"] == "clusters"
    assert doc["kpis"][0]["segment"] == "all customers"
    assert [r["rank"] for r in doc["priorities"]] == list(range(1, len(doc["kpis"])))
    older = as_json(["kpis", "-c", CONFIG, "--run", first, "--json"], where)
    assert older["run_id"] == first and older["as_of"] < doc["as_of"]
    assert _run_count(where) == before


def test_kpis_without_a_run_says_how_to_get_one(tmp_path: Path) -> None:
    (tmp_path / "o.csv").write_text("order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n")
    (tmp_path / "segvalue.yaml").write_text("sources: {orders: {path: o.csv}}\n")
    err = refused(["kpis"], tmp_path)
    assert "error: no complete run in the store duckdb://" in err
    assert "segvalue run -c segvalue.yaml" in err
    assert not (tmp_path / "segvalue-store.duckdb").exists()
    assert show(["runs"], tmp_path).out.startswith("no runs recorded in the store yet")


def test_segment_show_reads_the_stored_segments(shop: tuple[Path, str, str]) -> None:
    where, first, latest = shop
    before = _run_count(where)
    text = ok(["segment", "-c", CONFIG, "--show", "--scheme", "rfm"], where)
    assert f"run {latest}" in text
    assert "Scheme rfm (rfm)" in text and "Scheme lifecycle" not in text
    assert "scheme 'lifecycle'" not in text  # only the shown scheme's warnings
    shares = [float(s) for s in re.findall(r"│ +([\d.]+)% │", text)]
    assert sum(shares) == pytest.approx(100, abs=0.1 * len(shares))
    doc = as_json(["segment", "-c", CONFIG, "--show", "--run", first, "--json"], where)
    assert doc["run_id"] == first
    assert "clusters" in doc["segments"]["schemes"] and doc["personas"]
    wrong = refused(["segment", "-c", CONFIG, "--show", "--scheme", "rfn"], where)
    assert "no scheme 'rfn' (did you mean 'rfm'?)" in wrong
    alone = refused(["segment", "-c", CONFIG, "--run", first], where)
    assert "--run reads a stored run" in alone
    assert _run_count(where) == before


def test_errors_word_parameters_as_options(tmp_path: Path) -> None:
    (tmp_path / "segvalue.yaml").write_text("x")
    assert "fix: use --force to overwrite it" in refused(["init", "segvalue.yaml"], tmp_path)
    (tmp_path / "c.yaml").write_text(CURVES)
    err = refused(["budget", "--curves", "c.yaml", "--move", "a-b"], tmp_path)
    assert "error: --move 'a-b' is not FROM:TO:SHARE" in err
    assert "`" not in err
    (tmp_path / "o.csv").write_text("order_id,customer_id,order_ts,amount\n1,a,2024-01-02,5\n")
    (tmp_path / "shop.yaml").write_text("sources: {orders: {path: o.csv}}\n")
    err = refused(["budget", "-c", "shop.yaml"], tmp_path)
    assert "no budget.items and no channel_spend source" in err
    assert "or give a curves file (--curves)" in err
