"""Unit tests of segvalue.data.safety: the write-target decision, the lock, leftovers,
OSError conversion, and the CSV formula rule of the writers."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from segvalue.cli.main import cli
from segvalue.data import writers
from segvalue.data.safety import (
    MARK_NAME,
    WriteError,
    check_target,
    lock_path,
    mark_folder,
    read_mark,
    remove_leftovers,
    target_lock,
    temp_prefix,
    writing,
)
from segvalue.data.writers import neutralise_formulas, write_outputs, write_table
from segvalue.errors import ConfigError

TABLE = pa.table({"customer_id": ["a", "b"], "value": [1.0, -2.0]})


@pytest.fixture()
def place(tmp_path: Path) -> Path:
    """A config folder with a source file, a source folder and a foreign folder."""
    (tmp_path / "orders.csv").write_text("customer_id,amount\na,1\n")
    (tmp_path / "lines").mkdir()
    (tmp_path / "lines" / "part-0.parquet").write_bytes(b"PAR1")
    (tmp_path / "foreign").mkdir()
    (tmp_path / "foreign" / "keep.txt").write_text("not segvalue's")
    return tmp_path


def _protected(place: Path) -> dict[Path, str]:
    return {place / "orders.csv": "source orders", place / "lines": "source order_lines"}


@pytest.mark.parametrize(
    ("target", "message"),
    [
        (".", "is the config's folder"),
        ("lines", "is source order_lines"),
        ("lines/out", "is inside source order_lines"),
        ("orders.csv", "is source orders"),
        ("foreign", "segvalue did not create it"),
        ("foreign/keep.txt", "is a file, not a folder"),
    ],
)
def test_folder_targets_that_hold_inputs_or_foreign_data_are_refused(
    place: Path, target: str, message: str
) -> None:
    with pytest.raises(ConfigError, match="output folder") as caught:
        check_target(place / target, "output", protected=_protected(place), config_dir=place)
    assert message in caught.value.message
    assert "new folder" in (caught.value.fix or "")


def test_a_folder_containing_the_config_folder_is_refused(place: Path) -> None:
    with pytest.raises(ConfigError, match="contains the config's folder"):
        check_target(place.parent, "store", config_dir=place)
    with pytest.raises(ConfigError, match="is the config's folder"):
        check_target(place, "store", config_dir=place)


def test_new_empty_and_own_folders_are_accepted(place: Path) -> None:
    kwargs = {"protected": _protected(place), "config_dir": place}
    assert check_target(place / "new" / "out", "output", **kwargs) == place / "new" / "out"
    (place / "empty").mkdir()
    assert check_target(place / "empty", "output", **kwargs) == place / "empty"
    mark_folder(place / "mine", "output")
    (place / "mine" / "old.parquet").write_bytes(b"x")
    assert check_target(place / "mine", "output", **kwargs) == place / "mine"


def test_a_folder_marked_as_another_kind_is_refused(place: Path) -> None:
    mark_folder(place / "store", "store")
    with pytest.raises(ConfigError, match="is segvalue's run store"):
        check_target(place / "store", "output")


def test_a_broken_mark_is_no_mark(place: Path) -> None:
    (place / "foreign" / MARK_NAME).write_text("not json")
    assert read_mark(place / "foreign") is None
    with pytest.raises(ConfigError, match="did not create it"):
        check_target(place / "foreign", "output")


def test_a_symlink_to_a_foreign_folder_is_refused(place: Path) -> None:
    (place / "out").symlink_to(place / "foreign")
    with pytest.raises(ConfigError, match="did not create it"):
        check_target(place / "out", "output")


def test_file_target_equal_to_an_input_in_any_spelling_is_refused(place: Path) -> None:
    protected = _protected(place)
    (place / "link.csv").symlink_to(place / "orders.csv")
    os.link(place / "orders.csv", place / "hard.csv")
    for spelling in ("orders.csv", "./orders.csv", "lines/../orders.csv", "link.csv", "hard.csv"):
        with pytest.raises(ConfigError, match="is source orders"):
            check_target(place / spelling, "file", protected=protected, table=TABLE)
    with pytest.raises(ConfigError, match="is inside source order_lines"):
        check_target(place / "lines" / "x.csv", "file", protected=protected)
    with pytest.raises(ConfigError, match="is a folder"):
        check_target(place / "foreign", "file")


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_an_existing_file_is_replaced_only_when_segvalue_wrote_that_table(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"features.{suffix}"
    if suffix == "csv":
        path.write_text("customer_id,value\na,1\n")  # same columns, not segvalue's quoting
    else:
        pq.write_table(TABLE, path)  # a Parquet file without segvalue's metadata
    with pytest.raises(ConfigError, match="segvalue did not write it"):
        write_table(TABLE, path)
    path.unlink()
    write_table(TABLE, path)
    write_table(TABLE.slice(0, 1), path)  # its own file: replaced
    assert (
        path.read_bytes().count(b"\n") == 2
        if suffix == "csv"
        else pq.read_table(path).num_rows == 1
    )
    if suffix == "csv":
        other = pa.table({"x": [1]})
        with pytest.raises(ConfigError, match="or wrote another table there"):
            write_table(other, path)


def test_write_outputs_marks_and_replaces_only_its_own_folder(place: Path) -> None:
    out = place / "out"
    write_outputs(out, {"t": TABLE}, {"run": {"n": 1}}, fmt="csv")
    mark = read_mark(out)
    assert mark is not None and mark["kind"] == "output"
    write_outputs(out, {"t": TABLE}, {"run": {"n": 2}}, fmt="csv")
    assert json.loads((out / "run.json").read_text()) == {"n": 2}
    assert read_mark(out) == mark  # the first creation time is kept
    assert [p.name for p in place.iterdir() if p.name.startswith(".out")] == []
    with pytest.raises(ConfigError, match="did not create it"):
        write_outputs(place / "foreign", {"t": TABLE}, {})
    assert (place / "foreign" / "keep.txt").read_text() == "not segvalue's"


def test_a_held_lock_refuses_at_once_naming_the_holder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    with target_lock(out, "output", run_id="RUN-1"):
        started = time.monotonic()
        with pytest.raises(ConfigError) as caught, target_lock(out, "store"):
            pass
        assert time.monotonic() - started < 1
        assert f"pid {os.getpid()}" in caught.value.message
        assert "run RUN-1" in caught.value.message and "started at" in caught.value.message
    with target_lock(out, "output"):  # released when the holder ended
        assert json.loads(lock_path(out).read_text())["pid"] == os.getpid()


def test_wait_gets_the_lock_when_the_holder_ends_in_time(tmp_path: Path) -> None:
    out = tmp_path / "out"
    held, release = threading.Event(), threading.Event()

    def holder() -> None:
        with target_lock(out, "output", run_id="first"):
            held.set()
            release.wait(5)

    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    threading.Timer(0.3, release.set).start()
    with target_lock(out, "output", wait=10, run_id="second"):
        assert json.loads(lock_path(out).read_text())["run_id"] == "second"
    thread.join()
    held.clear()
    release.clear()
    thread = threading.Thread(target=holder)
    thread.start()
    held.wait(5)
    started = time.monotonic()
    with pytest.raises(ConfigError, match=r"waited 0\.3 s"), target_lock(out, "output", wait=0.3):
        pass
    assert time.monotonic() - started >= 0.3
    release.set()
    thread.join()


def test_a_killed_holder_releases_the_lock(tmp_path: Path) -> None:
    out = tmp_path / "out"
    code = (
        "import sys, time\n"
        "from segvalue.data.safety import target_lock\n"
        f"with target_lock({str(out)!r}, 'output'):\n"
        "    print('held', flush=True)\n"
        "    time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        with pytest.raises(ConfigError, match=f"pid {proc.pid}"), target_lock(out, "output"):
            pass
    finally:
        proc.kill()
        proc.wait()
        assert proc.stdout is not None
        proc.stdout.close()
    with target_lock(out, "output"):
        pass


def test_leftovers_are_removed_only_when_segvalues_and_dead(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = 2**22 + 17  # above Linux's default pid_max
    stale = out / f".features.csv.segvalue-{dead}-abc"
    live = out / f"{temp_prefix(out / 'features.csv')}abc"
    foreign = out / ".features.csv.tmp"
    for path in (stale, live, foreign):
        path.write_text("x")
    assert remove_leftovers(out / "features.csv") == [stale]
    assert live.exists() and foreign.exists()


@pytest.mark.parametrize(
    ("code", "fix"),
    [
        (errno.ENOSPC, "free disk space"),
        (errno.EACCES, "write permission"),
        (errno.EROFS, "read-only"),
        (errno.ENOENT, "create the folder"),
    ],
)
def test_os_errors_while_writing_become_write_errors_naming_the_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, code: int, fix: str
) -> None:
    def failing(table: pa.Table, path: Path, fmt: str) -> None:
        raise OSError(code, os.strerror(code), str(path))

    monkeypatch.setattr(writers, "_write", failing)
    target = tmp_path / "x.csv"
    with pytest.raises(WriteError) as caught:
        write_table(TABLE, target)
    assert str(tmp_path) in caught.value.message and os.strerror(code) in caught.value.message
    assert fix in (caught.value.fix or "")
    assert list(tmp_path.iterdir()) == []  # the temporary file is gone
    with pytest.raises(WriteError), writing(target):
        raise OSError(code, os.strerror(code))


def test_cli_maps_a_stray_os_error_with_a_path_to_exit_2(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from segvalue.project import Project

    def denied(*args: object, **kwargs: object) -> None:
        raise PermissionError(errno.EACCES, "Permission denied", "/srv/shop/out.csv")

    monkeypatch.setattr(Project, "from_yaml", denied)
    assert cli(["validate", "-c", "segvalue.yaml"]) == 2
    err = capsys.readouterr().err
    assert "/srv/shop/out.csv: Permission denied" in err and "Traceback" not in err


def test_neutralise_formulas_covers_every_text_type_and_leaves_numbers() -> None:
    table = pa.table(
        {
            "s": pa.array(["=1", "+1", "-1", "@a", "\tx", "\rx", "a=b", None]),
            "raw": pa.array(["-15.50", "+49", "-1,5", "-2+3", "-1e5", "-1e5+1", "=1", "-"]),
            "large": pa.array(["=x"] * 8, type=pa.large_string()),
            "dict": pa.array(["@x"] * 8).dictionary_encode(),
            "number": pa.array([-5.0] * 8),
            "integer": pa.array([-3] * 8),
        }
    )
    out = neutralise_formulas(table)
    assert out.column("s").to_pylist() == ["'=1", "+1", "-1", "'@a", "'\tx", "'\rx", "a=b", None]
    raw = ["-15.50", "+49", "-1,5", "'-2+3", "-1e5", "'-1e5+1", "'=1", "'-"]
    assert out.column("raw").to_pylist() == raw
    assert set(out.column("large").to_pylist()) == {"'=x"}
    assert set(out.column("dict").to_pylist()) == {"'@x"}
    assert out.column("number").to_pylist() == [-5.0] * 8
    assert out.column("integer").type == pa.int64()
