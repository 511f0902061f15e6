"""Hostile outputs: segvalue never destroys what it did not write.

Each case points an output (``output.dir``, ``output.store``, ``--out``, ``--rejects``,
``demo --out``) at something that is not segvalue's, runs the CLI in the guarded workspace
and checks the exit code, that the message names the path and the fix, and that nothing
outside the places the command may write changed.
"""

from __future__ import annotations

import csv
import fcntl
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from tests.hostile.conftest import Workspace

ORDERS = "order_id,customer_id,order_ts,amount\n" + "".join(
    f"{i},C{i % 7},2024-0{1 + i % 3}-{10 + i % 15},{5 + i % 4}\n" for i in range(1, 40)
)


def config(output: dict[str, str], *, light: bool = True) -> str:
    """A segvalue.yaml reading data/orders.csv with the given ``output`` section."""
    lines = ["sources:", "  orders:", "    path: data/orders.csv", "as_of: 2024-03-31"]
    if light:  # the cases are about writing: skip the models
        lines += ["clv:", "  enabled: false", "segments:", "  enabled: false"]
    output = dict(output)
    store = output.pop("store", None)
    lines.append("output:")
    lines += [f"  {key}: {value!r}" for key, value in output.items()]
    if store is not None:
        lines += ["store:", f"  url: {'duckdb://' + store!r}"]
    return "\n".join(lines) + "\n"


def workspace(ws: Workspace, output: dict[str, str], **files: str) -> None:
    ws.write(
        {"data/orders.csv": ORDERS, "segvalue.yaml": config(output), "notes.txt": "mine\n"} | files
    )


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


RUN = ["run", "-c", "{ws}/segvalue.yaml"]
#: What a successful run into output.dir 'out' may write.
RUN_WRITES = ["out", ".out.lock", "segvalue-store.duckdb", ".segvalue-store.duckdb.lock"]


@pytest.mark.parametrize(
    ("output_dir", "expected"),
    [
        (".", "is the config's folder"),
        ("data", "contains source orders"),
        ("../neighbour", "segvalue did not create it"),
        ("notes.txt", "is a file, not a folder"),
        ("..", "contains the config's folder"),
        ("data/orders.csv", "is source orders"),
    ],
    ids=["config-folder", "sources-folder", "neighbour", "a-file", "parent", "the-source"],
)
def test_output_dir_that_is_not_segvalues_is_refused(
    ws: Workspace, output_dir: str, expected: str
) -> None:
    workspace(ws, {"dir": output_dir})
    result = ws.run(RUN)
    assert result.code == 2
    assert f"{str(ws.root / output_dir)!r} (output.dir)" in result.err
    assert expected in result.err
    assert "fix:" in result.err and "new folder" in result.err


@pytest.mark.parametrize(
    ("store", "expected"),
    [
        ("data/orders.csv", "is source orders"),
        ("notes.txt", "not a valid DuckDB database file"),
        ("data", "is a folder"),
    ],
    ids=["the-source", "a-foreign-file", "a-folder"],
)
def test_store_that_is_not_segvalues_is_refused(ws: Workspace, store: str, expected: str) -> None:
    workspace(ws, {"dir": "out", "store": store})
    result = ws.run(RUN, may_write=[".out.lock", f".{Path(store).name}.lock"])
    assert result.code == 2
    assert str(ws.root / store) in result.err
    assert "results store" in result.err and expected in result.err
    assert "store.url" in result.err


def test_output_dir_holding_the_store_is_refused(ws: Workspace) -> None:
    workspace(ws, {"dir": "results", "store": "results/s.duckdb"})
    result = ws.run(RUN)
    assert result.code == 2
    assert "contains the results store" in result.err


def test_output_dir_symlinked_to_a_neighbour_is_refused(ws: Workspace) -> None:
    workspace(ws, {"dir": "out"})
    (ws.root / "out").symlink_to(ws.root.parent / "neighbour")
    result = ws.run(RUN)
    assert result.code == 2
    assert "segvalue did not create it" in result.err and "neighbour" in result.err


RFM = ["rfm", "--customer-col", "customer_id", "--date-col", "order_ts", "--amount-col", "amount"]
CLV = ["clv", "--customer-col", "customer_id", "--date-col", "order_ts", "--amount-col", "amount"]


@pytest.mark.parametrize(
    "spelling",
    ["{ws}/data/orders.csv", "{ws}/data/./orders.csv", "{ws}/data/../data/orders.csv"],
    ids=["same", "dot", "dotdot"],
)
@pytest.mark.parametrize("command", [RFM, CLV], ids=["rfm", "clv"])
def test_out_equal_to_the_input_is_refused(
    ws: Workspace, command: list[str], spelling: str
) -> None:
    workspace(ws, {"dir": "out"})
    result = ws.run([*command, "{ws}/data/orders.csv", "--out", spelling])
    assert result.code == 2
    assert "--out" in result.err and "is the orders file" in result.err
    assert "another file name" in result.err


def test_out_via_a_csv_symlink_to_the_input_is_refused(ws: Workspace) -> None:
    workspace(ws, {"dir": "out"})
    (ws.root / "features.csv").symlink_to(ws.root / "data" / "orders.csv")
    result = ws.run([*RFM, "{ws}/data/orders.csv", "--out", "{ws}/features.csv"])
    assert result.code == 2
    assert "is the orders file" in result.err


def test_out_over_a_file_segvalue_did_not_write_is_refused_then_its_own_is_replaced(
    ws: Workspace,
) -> None:
    workspace(ws, {"dir": "out"}, **{"notes.csv": "a,b\n1,2\n"})
    result = ws.run([*RFM, "{ws}/data/orders.csv", "--out", "{ws}/notes.csv"])
    assert result.code == 2
    assert "segvalue did not write it" in result.err and "notes.csv" in result.err
    first = ws.run([*RFM, "{ws}/data/orders.csv", "--out", "{ws}/rfm.csv"], may_write=["rfm.csv"])
    assert first.code == 0, first.text
    again = ws.run([*RFM, "{ws}/data/orders.csv", "--out", "{ws}/rfm.csv"], may_write=["rfm.csv"])
    assert again.code == 0, again.text
    assert (ws.root / "rfm.csv").read_text().startswith('"customer_id"')


@pytest.mark.parametrize("target", ["data/orders.csv", "data/./orders.csv"])
def test_rejects_equal_to_an_input_is_refused(ws: Workspace, target: str) -> None:
    workspace(ws, {"dir": "out"})
    result = ws.run(["validate", "-c", "{ws}/segvalue.yaml", "--rejects", f"{{ws}}/{target}"])
    assert result.code == 2
    assert "--rejects" in result.err and "is source orders" in result.err


def test_rejects_are_written_when_strict_validation_fails(ws: Workspace) -> None:
    workspace(ws, {"dir": "out"}, **{"data/orders.csv": ORDERS + "99,C1,not a date,5\n"})
    result = ws.run(
        ["validate", "-c", "{ws}/segvalue.yaml", "--strict", "--rejects", "{ws}/rejects.csv"],
        may_write=["rejects.csv"],
    )
    assert result.code == 2
    assert "strict validation failed" in result.err
    rows = _rows(ws.root / "rejects.csv")
    assert [(r["row"], r["rule"]) for r in rows] == [("41", "unparseable_value")]


def test_rejects_are_written_when_no_valid_order_remains(ws: Workspace) -> None:
    bad = "order_id,customer_id,order_ts,amount\n1,C1,2024-13-40,5\n2,C2,yesterday,5\n"
    workspace(ws, {"dir": "out"}, **{"data/orders.csv": bad})
    result = ws.run(
        ["validate", "-c", "{ws}/segvalue.yaml", "--rejects", "{ws}/rejects.csv"],
        may_write=["rejects.csv"],
    )
    assert result.code == 2
    assert "no valid orders remain" in result.err
    rows = _rows(ws.root / "rejects.csv")
    assert [r["row"] for r in rows] == ["2", "3"]


def test_demo_into_a_folder_segvalue_did_not_make_is_refused(ws: Workspace) -> None:
    result = ws.run(["demo", "--customers", "200", "--out", "{ws}/../neighbour"])
    assert result.code == 2
    assert "demo folder" in result.err and "neighbour" in result.err
    assert "segvalue did not create it" in result.err


def _hold_lock(lock: Path) -> int:
    fd = os.open(lock, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, json.dumps({"pid": 4242, "run_id": "RUN-A", "started_at": "T0"}).encode())
    return fd


@pytest.mark.parametrize("wait", [None, "0.3"], ids=["at-once", "after-waiting"])
def test_a_second_concurrent_run_is_refused_naming_the_first(
    ws: Workspace, wait: str | None
) -> None:
    workspace(ws, {"dir": "out"})
    fd = _hold_lock(ws.root / ".out.lock")
    try:
        argv = RUN + ([] if wait is None else ["--wait", wait])
        result = ws.run(argv, may_write=[".segvalue-store.duckdb.lock", ".out.lock"])
    finally:
        os.close(fd)
    assert result.code == 2
    assert "in use by another segvalue run" in result.err
    assert "pid 4242" in result.err and "run RUN-A" in result.err and "started at T0" in result.err
    assert ("waited 0.3 s" in result.err) == (wait is not None)
    assert "--wait" in result.err
    assert not (ws.root / "out").exists()


def test_leftovers_of_a_killed_run_are_removed_and_foreign_ones_kept(ws: Workspace) -> None:
    workspace(ws, {"dir": "out"})
    mark = json.dumps({"kind": "output", "created_at": "x", "version": "0"})
    stale_pid = 2**22 + 17  # above the default pid_max: no such process
    ws.write(
        {
            ".out.staging-abc123/.segvalue": mark,
            ".out.staging-abc123/run.json": "{}",
            ".out.old-def456/.segvalue": mark,
            ".out.staging-notours/data.csv": "someone's file\n",
        }
    )
    (ws.root / "out").mkdir()
    (ws.root / "out" / ".segvalue").write_text(mark)
    stale_temp = ws.root / "out" / f".customer_features.parquet.segvalue-{stale_pid}-x1y2"
    result = ws.run(
        RUN,
        may_write=[*RUN_WRITES, ".out.staging-abc123", ".out.old-def456", stale_temp.name],
    )
    assert result.code == 0, result.text
    assert not (ws.root / ".out.staging-abc123").exists()
    assert not (ws.root / ".out.old-def456").exists()
    assert (ws.root / ".out.staging-notours" / "data.csv").exists()
    assert (ws.root / "out" / "customer_features.parquet").exists()


def test_a_second_run_replaces_its_own_output_folder(ws: Workspace) -> None:
    workspace(ws, {"dir": "out"})
    assert ws.run(RUN, may_write=RUN_WRITES).code == 0
    first = json.loads((ws.root / "out" / "run.json").read_text())["run_id"]
    (ws.root / "out" / "stale.txt").write_text("from before")
    second = ws.run(RUN, may_write=RUN_WRITES)
    assert second.code == 0, second.text
    assert json.loads((ws.root / "out" / "run.json").read_text())["run_id"] != first
    assert not (ws.root / "out" / "stale.txt").exists()
    assert json.loads((ws.root / "out" / ".segvalue").read_text())["kind"] == "output"


def test_an_empty_existing_folder_is_adopted(ws: Workspace) -> None:
    workspace(ws, {"dir": "out"})
    (ws.root / "out").mkdir()
    result = ws.run(RUN, may_write=RUN_WRITES)
    assert result.code == 0, result.text
    assert (ws.root / "out" / ".segvalue").exists()


def test_output_folder_under_a_file_is_an_exit_2_naming_the_path(ws: Workspace) -> None:
    # Tests run as root, where chmod does not stop a write; a folder under a regular file
    # fails for root too (ENOTDIR / EEXIST from the system), through the same OSError path.
    workspace(ws, {"dir": "notes.txt/sub"})
    result = ws.run(RUN)
    assert result.code == 2
    assert "cannot write" in result.err and "notes.txt" in result.err
    assert "fix:" in result.err


def test_csv_outputs_neutralise_formulas_and_keep_negative_numbers(ws: Workspace) -> None:
    orders = ORDERS + (
        '90,"=HYPERLINK(""http://evil"")",2024-02-11,12\n'
        "91,@SUM(A1),2024-02-12,7\n"
        "92,-2+3,2024-02-13,8\n"
        "93,R1,2024-02-20,5\n"
        "94,R1,2024-02-21,-20\n"
        "95,C1,2024-02-22,=cmd|' /C calc'!A0\n"
    )
    workspace(ws, {"dir": "out", "format": "csv"}, **{"data/orders.csv": orders})
    result = ws.run(RUN, may_write=RUN_WRITES)
    assert result.code == 0, result.text
    features = _rows(ws.root / "out" / "customer_features.csv")
    ids = {row["customer_id"] for row in features}
    assert {'\'=HYPERLINK("http://evil")', "'@SUM(A1)", "'-2+3"} <= ids
    assert not {i for i in ids if i[:1] in "=+-@"}
    rejects = _rows(ws.root / "out" / "rejects.csv")
    assert all(not r["value"].startswith(("=", "+", "-", "@")) for r in rejects)
    # Numbers are numbers: R1's net revenue (5 bought, 20 returned) stays a plain -15.
    revenue = {row["customer_id"]: row["revenue"] for row in features}
    assert float(revenue["R1"]) == -15
    assert not [row for row in features if row["revenue"].startswith("'")]
