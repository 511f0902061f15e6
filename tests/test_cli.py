"""The CLI end to end: init, demo, validate, and the real console script."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cli_inputs import CDNOW_COLUMNS, CDNOW_SAMPLE
from segvalue import __version__
from segvalue.cli.main import cli
from segvalue.config import load_config

SEGVALUE = Path(sys.executable).parent / "segvalue"


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(["--version"]) == 0
    assert __version__ in capsys.readouterr().out


def test_init_writes_a_template_that_loads(tmp_path: Path) -> None:
    path = tmp_path / "segvalue.yaml"
    assert cli(["init", str(path)]) == 0
    config = load_config(path)
    assert config.sources["orders"].columns["amount"] == "amount"
    assert "# " in path.read_text()  # commented
    assert cli(["init", str(path), "--force"]) == 0


def test_demo_cdnow_runs_the_main_job(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cdnow"
    assert cli(["demo", "--dataset", "cdnow", "--out", str(out), "--json"]) == 0
    run = json.loads(capsys.readouterr().out)
    assert run["customers"] == 23570  # Fader & Hardie's full CDNOW cohort
    orders = run["validation"]["tables"]["orders"]
    assert orders["rows_read"] == 69659
    assert orders["rows_accepted"] == 69659
    features = pq.read_table(out / "output" / "customer_features.parquet")
    assert features.num_rows == 23570
    assert (out / "output" / "run.json").exists()
    # the written config is usable by every other command
    assert cli(["validate", "-c", str(out / "segvalue.yaml"), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["as_of"] == "1998-06-30"


def test_demo_generated_retailer(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "shop"
    assert cli(["demo", "--customers", "2000", "--seed", "3", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "Customer features (2,000 customers)" in text
    assert str(out / "segvalue.yaml") in text
    config = load_config(out / "segvalue.yaml")
    assert set(config.sources) == {
        "customers",
        "orders",
        "order_lines",
        "touchpoints",
        "channel_spend",
        "experiments",
        "contact_log",
    }
    features = pq.read_table(out / "output" / "customer_features.parquet")
    assert features.num_rows == 2000
    run = json.loads((out / "output" / "run.json").read_text())
    assert run["validation"]["rows_rejected"] == 0
    assert run["config_hash"]


def test_console_script_user_error_is_one_message(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    proc = subprocess.run(
        [str(SEGVALUE), "validate", "-c", str(missing)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "nope.yaml" in proc.stderr
    assert "not found" in proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout


def test_console_script_usage_error_exits_2() -> None:
    proc = subprocess.run([str(SEGVALUE), "rfm"], capture_output=True, text=True, check=False)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def _modules_loaded_by(argv: list[str]) -> set[str]:
    """Every module a fresh interpreter has imported after running ``segvalue argv``."""
    probe = (
        "import contextlib, io, sys\n"
        "from segvalue.cli.main import cli\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    code = cli({argv!r})\n"
        "print(code, ' '.join(sorted(sys.modules)))"
    )
    proc = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    code, _, modules = proc.stdout.strip().partition(" ")
    assert code == "0", proc.stdout + proc.stderr
    return set(modules.split())


HEAVY = {"ibis", "pyarrow", "pandas", "sklearn", "duckdb", "sqlglot", "scipy", "numpy"}


def test_help_imports_nothing_heavy() -> None:
    """`segvalue --help` stays well under half a second: no engine, no scipy at start-up."""
    loaded = {name.split(".")[0] for name in _modules_loaded_by(["--help"])}
    assert not loaded & HEAVY, loaded & HEAVY


def test_budget_from_a_curves_file_imports_no_engine(tmp_path: Path) -> None:
    """`segvalue budget --curves FILE` needs the optimiser (numpy), not Ibis, pyarrow or scipy.

    Concave curves are solved exactly with segvalue's own root finder; scipy.optimize is
    imported only for S-shaped curves and for fitting.
    """
    path = tmp_path / "curves.yaml"
    path.write_text("items:\n  - {name: a, form: michaelis_menten, beta: 10, k: 2}\ntotal: 5\n")
    modules = _modules_loaded_by(["budget", "--curves", str(path)])
    loaded = {name.split(".")[0] for name in modules}
    assert not loaded & (HEAVY - {"numpy"}), loaded & HEAVY
    assert "segvalue.economics.budget" in modules  # the probe did run the optimiser


def test_run_json_records_timings_and_every_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "orders.csv").write_text(
        "order_id,customer_id,order_ts,amount\n"
        "1,a,2024-01-02,5\n2,a,2024-02-03,7\n3,b,2024-01-09,4\n4,c,2024-03-01,9\n"
    )
    config = tmp_path / "segvalue.yaml"
    config.write_text("sources:\n  orders:\n    path: orders.csv\noutput:\n  dir: out\n")
    assert cli(["run", "-c", str(config), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    run = json.loads((tmp_path / "out" / "run.json").read_text())
    written = {p.name for p in (tmp_path / "out").iterdir() if not p.name.startswith(".")}
    assert {Path(p).name for p in run["outputs"].values()} == written
    assert run["outputs"] == printed["outputs"]
    stages = run["timings_seconds"]
    assert {"read", "validate", "features", "segments", "materialise", "rejects"} <= set(stages)
    assert all(seconds >= 0 for seconds in stages.values())
    assert set(printed["timings_seconds"]) == set(stages) | {"write"}


@pytest.mark.parametrize(
    "options",
    [[], ["--model", "bgnbd", "--spend-model", "gamma-gamma"]],
    ids=["default", "bgnbd-gamma-gamma"],
)
def test_clv_imports_the_engine_but_not_pandas_nor_scipy_optimize(options: list[str]) -> None:
    """`segvalue clv` reads with DuckDB and fits with segvalue's own Newton method.

    pandas is installed (Ibis's DuckDB extra), and Ibis's DuckDB result converter and
    pyarrow's ``to_numpy`` each import it (0.3 s of a 1.5 s run on the CDNOW sample):
    results come to Arrow and numpy without them (features.materialise). scipy.stats and
    scikit-learn are not needed either, nor scipy.optimize (0.55 s to import): every
    model on this path has an exact Hessian and is fitted by models._fit's trust-region
    Newton method; scipy's optimisers are only the fallbacks. Of Ibis's SQL compilers only
    DuckDB's is imported (data.ibis_imports: the others cost 0.1-0.2 s).
    """
    modules = _modules_loaded_by(["clv", str(CDNOW_SAMPLE), *CDNOW_COLUMNS, *options, "--json"])
    loaded = {name.split(".")[0] for name in modules}
    assert not loaded & {"pandas", "sklearn"}, loaded & {"pandas", "sklearn"}
    compilers = {
        m.rsplit(".", 1)[1] for m in modules if m.startswith("ibis.backends.sql.compilers.")
    }
    assert compilers == {"_compat", "base", "duckdb"}, compilers
    assert "scipy.stats" not in modules
    assert "scipy.optimize" not in modules
    # the probe did read, fit a transaction model and the spend model, and score
    assert {"duckdb", "segvalue.models.gamma_gamma", "segvalue.models.clv"} <= modules
    assert "segvalue.models.bgnbd" in modules
