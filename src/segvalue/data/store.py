"""The run store: one folder per run with its membership snapshot and run report.

The output folder holds the latest results and is replaced on every run; the store keeps
what later runs compare against (segment migration, drift, enter / exit events):

    <store>/runs/<run_id>/memberships.parquet   customer_id, scheme, segment
    <store>/runs/<run_id>/run.json              the run report

Run ids start with a UTC timestamp, so their lexical order is their time order. Each run
folder is written under a temporary name and renamed into place: a failed run leaves no
partial snapshot behind. The store carries segvalue's mark (``.segvalue``); an existing
folder without it is refused (:func:`segvalue.data.safety.check_target`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from segvalue.data.safety import check_target, mark_folder, read_mark, writing
from segvalue.data.writers import json_safe
from segvalue.errors import DataValidationError

__all__ = [
    "MEMBERSHIP_COLUMNS",
    "list_runs",
    "load_snapshot",
    "previous_run",
    "remove_store_leftovers",
    "save_snapshot",
]

#: Columns of a membership snapshot.
MEMBERSHIP_COLUMNS: tuple[str, ...] = ("customer_id", "scheme", "segment")


def _runs_dir(store: str | Path) -> Path:
    return Path(store) / "runs"


def save_snapshot(
    store: str | Path,
    run_id: str,
    memberships: pa.Table,
    report: dict[str, Any],
    *,
    protected: Mapping[Path, str] | None = None,
    config_dir: Path | None = None,
) -> Path:
    """Record a run: its memberships and report, atomically.

    Parameters
    ----------
    store
        The store folder (created and marked if needed; an existing folder without
        segvalue's mark is refused unless empty).
    run_id
        The run's id (a folder name).
    memberships
        Table with at least ``customer_id``, ``scheme``, ``segment``.
    report
        JSON-serialisable run report.
    protected, config_dir
        Inputs and the config's folder, which the store may not be or contain.

    Returns
    -------
    Path
        The run's folder.

    Examples
    --------
    >>> import tempfile
    >>> store = tempfile.mkdtemp()
    >>> t = pa.table({"customer_id": ["a"], "scheme": ["rfm"], "segment": ["Lost"]})
    >>> save_snapshot(store, "20240101T000000Z-abc", t, {"ok": True}).name
    '20240101T000000Z-abc'
    >>> list_runs(store)
    ['20240101T000000Z-abc']
    """
    missing = [c for c in MEMBERSHIP_COLUMNS if c not in memberships.column_names]
    if missing:
        raise DataValidationError(
            f"membership snapshot lacks columns {missing}",
            fix="pass a table with customer_id, scheme and segment",
        )
    folder = check_target(store, "store", protected=protected, config_dir=config_dir)
    runs = _runs_dir(folder)
    final = runs / run_id
    if final.exists():
        raise DataValidationError(
            f"run {run_id!r} is already in the store {store}", fix="use a new run id"
        )
    with writing(folder):
        runs.mkdir(parents=True, exist_ok=True)
        if read_mark(folder) is None:
            mark_folder(folder, "store")
        staging = Path(tempfile.mkdtemp(prefix=f".{run_id}.staging-", dir=runs))
        try:
            pq.write_table(
                memberships.select(list(MEMBERSHIP_COLUMNS)), staging / "memberships.parquet"
            )
            text = json.dumps(json_safe(report), indent=2, default=str, allow_nan=False)
            (staging / "run.json").write_text(text + "\n", encoding="utf-8")
            os.replace(staging, final)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    return final


def remove_store_leftovers(store: str | Path) -> list[Path]:
    """Remove the staging folders of killed runs (``runs/.RUN_ID.staging-*``).

    Call it holding the store's lock; a store without segvalue's mark is left alone.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> store = pathlib.Path(tempfile.mkdtemp())
    >>> _ = mark_folder(store, "store")
    >>> (store / "runs" / ".20240101T000000Z-abc.staging-x1").mkdir(parents=True)
    >>> [p.name for p in remove_store_leftovers(store)]
    ['.20240101T000000Z-abc.staging-x1']
    """
    runs = _runs_dir(store)
    if not runs.is_dir() or read_mark(store) is None:
        return []
    pattern = re.compile(r"\.[0-9]{8}T[0-9]{6}Z-[A-Za-z0-9]+\.staging-[A-Za-z0-9_]+")
    removed = []
    for entry in sorted(runs.iterdir()):
        if pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
            with writing(entry):
                shutil.rmtree(entry)
            removed.append(entry)
    return removed


def list_runs(store: str | Path) -> list[str]:
    """Ids of the recorded runs, oldest first (empty when the store does not exist)."""
    runs = _runs_dir(store)
    if not runs.is_dir():
        return []
    return sorted(
        p.name
        for p in runs.iterdir()
        if p.is_dir() and not p.name.startswith(".") and (p / "memberships.parquet").exists()
    )


def previous_run(store: str | Path, before: str | None = None) -> str | None:
    """The latest recorded run (strictly before ``before`` when given), or None.

    Examples
    --------
    >>> previous_run("/nonexistent/store") is None
    True
    """
    runs = [r for r in list_runs(store) if before is None or r < before]
    return runs[-1] if runs else None


def load_snapshot(store: str | Path, run_id: str) -> pa.Table:
    """The membership snapshot of a recorded run.

    Raises
    ------
    DataValidationError
        When the run is not in the store (the message lists the recorded runs).
    """
    path = _runs_dir(store) / run_id / "memberships.parquet"
    if not path.exists():
        known = list_runs(store)
        listing = ", ".join(known[-5:]) if known else "none yet"
        raise DataValidationError(
            f"run {run_id!r} is not in the store {store}",
            fix=f"pick a recorded run (latest: {listing})",
        )
    return pq.read_table(path)
