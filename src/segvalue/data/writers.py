"""Atomic writers for outputs: a failed run leaves the last good results intact."""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from segvalue.errors import ConfigError

__all__ = ["json_safe", "write_outputs", "write_table", "write_text_atomic"]

TableFormat = Literal["parquet", "csv"]


def json_safe(value: Any) -> Any:
    """Replace NaN and infinities (not valid JSON) by None, recursively.

    Examples
    --------
    >>> json_safe({"a": [1.0, float("nan")], "b": (float("inf"),)})
    {'a': [1.0, None], 'b': [None]}
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


def _format_of(path: Path) -> TableFormat:
    suffix = path.suffix.lower()
    if suffix in (".parquet", ".pq"):
        return "parquet"
    if suffix in (".csv", ".txt"):
        return "csv"
    raise ConfigError(
        f"output file {str(path)!r}: unknown extension {suffix!r}",
        fix="use .csv or .parquet",
    )


def _write(table: pa.Table, path: Path, fmt: TableFormat) -> None:
    if fmt == "parquet":
        pq.write_table(table, path)
    else:
        pacsv.write_csv(table, path)


def write_table(table: pa.Table, path: str | Path) -> Path:
    """Write an Arrow table to CSV or Parquet (by extension), atomically.

    Parameters
    ----------
    table
        The data.
    path
        Destination ending in ``.csv`` or ``.parquet``.

    Returns
    -------
    Path

    Examples
    --------
    >>> import tempfile, pathlib, pyarrow as pa
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "x.csv"
    >>> write_table(pa.table({"a": [1]}), p).read_text()
    '"a"\\n1\\n'
    """
    path = Path(path)
    fmt = _format_of(path)
    if not path.parent.exists():
        raise ConfigError(
            f"output folder {str(path.parent)!r} does not exist", fix="create it first"
        )
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    try:
        _write(table, Path(tmp), fmt)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text_atomic(path: str | Path, text: str) -> Path:
    """Write a text file atomically (temporary file in the same folder, then rename).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> write_text_atomic(pathlib.Path(tempfile.mkdtemp()) / "a.txt", "hi").read_text()
    'hi'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_outputs(
    out_dir: str | Path,
    tables: Mapping[str, pa.Table],
    documents: Mapping[str, Any],
    *,
    fmt: TableFormat = "parquet",
    texts: Mapping[str, str] | None = None,
) -> dict[str, Path]:
    """Replace the contents of an output folder in one step.

    Everything is written into a staging folder next to ``out_dir`` and swapped in only
    when all writes succeeded, so readers never see a half-written set of results.

    Parameters
    ----------
    out_dir
        The output folder (created if needed).
    tables
        Arrow tables written as ``<name>.<fmt>``.
    documents
        JSON-serialisable objects written as ``<name>.json``.
    fmt
        ``"parquet"`` or ``"csv"``.
    texts
        Text files by file name (e.g. ``{"personas.md": "..."}``).

    Returns
    -------
    dict of str to Path
        Final paths by name.

    Examples
    --------
    >>> import tempfile, pathlib, pyarrow as pa
    >>> d = pathlib.Path(tempfile.mkdtemp()) / "out"
    >>> sorted(write_outputs(d, {"t": pa.table({"a": [1]})}, {"report": {"ok": True}}))
    ['report', 't']
    """
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
    try:
        for name, table in tables.items():
            _write(table, staging / f"{name}.{fmt}", fmt)
        for name, doc in documents.items():
            text = json.dumps(json_safe(doc), indent=2, default=str, allow_nan=False)
            (staging / f"{name}.json").write_text(text + "\n", encoding="utf-8")
        for filename, body in (texts or {}).items():
            (staging / filename).write_text(body, encoding="utf-8")
        old = None
        if out.exists():
            old = out.parent / f".{out.name}.old-{staging.name.rsplit('-', 1)[-1]}"
            os.replace(out, old)
        os.replace(staging, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    paths = {n: out / f"{n}.{fmt}" for n in tables}
    paths.update({n: out / f"{n}.json" for n in documents})
    paths.update({Path(f).stem: out / f for f in texts or {}})
    return paths
