"""Atomic writers for outputs: a failed run leaves the last good results intact.

Every write goes through :mod:`segvalue.data.safety`: the target is checked first (never
a folder or file segvalue did not write, never an input), ``OSError`` becomes a
:class:`~segvalue.data.safety.WriteError` naming the path, and CSV cells that a
spreadsheet would run as a formula are neutralised.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa

from segvalue.data.safety import (
    MARK_NAME,
    PARQUET_KEY,
    check_target,
    mark_folder,
    read_mark,
    remove_leftovers,
    temp_prefix,
    writing,
)
from segvalue.errors import ConfigError

__all__ = ["json_safe", "neutralise_formulas", "write_outputs", "write_table", "write_text_atomic"]

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


#: A cell starting with one of these is a formula to a spreadsheet (OWASP CSV injection).
_FORMULA_START = r"^[=+\-@\t\r]"
#: ... unless it is a plain number ("-15.50", "+49"), which a spreadsheet only reads as one.
_PLAIN_NUMBER = r"^[+-]?[0-9.,]*[0-9]([eE][+-]?[0-9]+)?$"


def _is_text(kind: pa.DataType) -> bool:
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def neutralise_formulas(table: pa.Table) -> pa.Table:
    """Prefix ``'`` to text cells a spreadsheet would run as a formula (OWASP CSV injection).

    Cells starting with ``=``, ``+``, ``-``, ``@``, a tab or a carriage return, in text
    columns only: numbers (``-5.0`` in a float column) are left as they are, and so is
    text that is a plain number (``"-15.50"``: a spreadsheet reads it as a number).

    Examples
    --------
    >>> t = pa.table({"name": ["=1+1", "-x", "-15.50", None], "amount": [-5.0, 1.0, 2.0, 3.0]})
    >>> neutralise_formulas(t).to_pydict()
    {'name': ["'=1+1", "'-x", '-15.50', None], 'amount': [-5.0, 1.0, 2.0, 3.0]}
    """
    # Imported here, as the file formats in _write: commands that only print JSON (the
    # CLI imports json_safe from here) need none of them.
    import pyarrow.compute as pc

    columns = []
    for original in table.columns:
        column, kind = original, original.type
        if pa.types.is_dictionary(kind) and _is_text(kind.value_type):
            column, kind = column.cast(kind.value_type), kind.value_type
        if _is_text(kind):
            risky = pc.and_(
                pc.match_substring_regex(column, _FORMULA_START),
                pc.invert(pc.match_substring_regex(column, _PLAIN_NUMBER)),
            )
            quote, nothing = pa.scalar("'", type=kind), pa.scalar("", type=kind)
            quoted = pc.binary_join_element_wise(quote, column, nothing)
            column = pc.if_else(risky, quoted, column)
        columns.append(column)
    return pa.table(columns, names=table.column_names)


def _write(table: pa.Table, path: Path, fmt: TableFormat) -> None:
    """The one place tables reach disk (every output and rejects file)."""
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    if fmt == "parquet":
        # Recognised by the next write of the same file (safety.check_target).
        stamp = json.dumps({"written_by": "segvalue"}).encode()
        metadata = {**(table.schema.metadata or {}), PARQUET_KEY: stamp}
        pq.write_table(table.replace_schema_metadata(metadata), path)
    else:
        pacsv.write_csv(neutralise_formulas(table), path)


def write_table(
    table: pa.Table, path: str | Path, *, protected: Mapping[Path, str] | None = None
) -> Path:
    """Write an Arrow table to CSV or Parquet (by extension), atomically.

    An existing file is replaced only when segvalue wrote it (see
    :func:`segvalue.data.safety.check_target`); a path that is one of ``protected``
    (the inputs) is refused.

    Parameters
    ----------
    table
        The data.
    path
        Destination ending in ``.csv`` or ``.parquet``.
    protected
        Inputs the file may not be, each with what it is (for the message).

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
    check_target(path, "file", protected=protected, table=table)
    with writing(path):
        remove_leftovers(path)  # temporary files of a killed earlier write
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
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

    The caller decides whether ``path`` may be replaced (``segvalue init --force``, the
    demo's own ``segvalue.yaml``); failures of the system become a ``WriteError``.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> write_text_atomic(pathlib.Path(tempfile.mkdtemp()) / "a.txt", "hi").read_text()
    'hi'
    """
    path = Path(path)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_leftovers(path)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
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
    protected: Mapping[Path, str] | None = None,
    config_dir: Path | None = None,
    before_swap: Callable[[], None] | None = None,
) -> dict[str, Path]:
    """Replace the contents of an output folder in one step.

    Everything is written into a staging folder next to ``out_dir`` and swapped in only
    when all writes succeeded, so readers never see a half-written set of results. The
    folder carries segvalue's mark; an existing folder without it (other than an empty
    one), or one that is or holds an input, is refused before anything is written
    (:func:`segvalue.data.safety.check_target`). Hold the folder's lock
    (:func:`segvalue.data.safety.target_lock`) around the call when runs may overlap.

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
    protected
        Inputs the folder may not be, contain or lie inside (with what each is).
    config_dir
        The config's folder: the output folder may not be it or contain it.
    before_swap
        Called when everything is staged, before the swap (a run commits its results to
        the store here: the folder then never names a run the store does not hold). If
        it raises, the staged files are removed and the folder is left as it was.

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
    >>> sorted(p.name for p in d.iterdir())
    ['.segvalue', 'report.json', 't.parquet']
    """
    given = Path(out_dir)
    out = check_target(given, "output", protected=protected, config_dir=config_dir)
    previous = read_mark(out) if out.exists() else None
    with writing(out):
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.staging-", dir=out.parent))
        try:
            # Marked first: a killed run's staging folder is then recognisably segvalue's.
            mark_folder(staging, "output", created_at=(previous or {}).get("created_at"))
            for name, table in tables.items():
                _write(table, staging / f"{name}.{fmt}", fmt)
            for name, doc in documents.items():
                text = json.dumps(json_safe(doc), indent=2, default=str, allow_nan=False)
                (staging / f"{name}.json").write_text(text + "\n", encoding="utf-8")
            for filename, body in (texts or {}).items():
                if filename == MARK_NAME:
                    raise ConfigError(f"{filename!r} is segvalue's mark", fix="rename the text")
                (staging / filename).write_text(body, encoding="utf-8")
            if before_swap is not None:
                before_swap()
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
    paths = {n: given / f"{n}.{fmt}" for n in tables}
    paths.update({n: given / f"{n}.json" for n in documents})
    paths.update({Path(f).stem: given / f for f in texts or {}})
    return paths
