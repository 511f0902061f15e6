"""Audience exports: a table written to a file (CSV, Parquet, JSON Lines) or a database
table, each with its manifest (what was written, how many rows, the content's SHA-256,
when). Files are written atomically; an existing file, manifest or database table is
replaced only when segvalue wrote it (a JSON Lines file is recognised by its manifest
holding the file's hash; a database table by segvalue's register of its exports in that
database, ``segvalue_exports``). CSV cells a spreadsheet would run as formulas are
neutralised (:func:`segvalue.data.writers.neutralise_formulas`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pyarrow as pa

from segvalue.data.safety import check_target, remove_leftovers, temp_prefix, writing
from segvalue.data.writers import json_safe, write_table, write_text_atomic
from segvalue.errors import ConfigError

__all__ = [
    "FILE_FORMATS",
    "MANIFEST_SIGNATURE",
    "export_file",
    "export_table",
    "file_sha256",
    "manifest_path",
]

#: The file formats an audience is exported to, by extension.
FILE_FORMATS = {".csv": "csv", ".parquet": "parquet", ".jsonl": "jsonl"}
#: What begins every manifest segvalue writes (how it recognises its own).
MANIFEST_SIGNATURE = b'{\n  "written_by": "segvalue"'
_REGISTER = "segvalue_exports"
_TABLE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def manifest_path(path: str | Path) -> Path:
    """The manifest beside an exported file: ``<file>.manifest.json``.

    Examples
    --------
    >>> manifest_path("out/vip.csv").name
    'vip.csv.manifest.json'
    """
    path = Path(path)
    return path.with_name(path.name + ".manifest.json")


def file_sha256(path: str | Path) -> str:
    """The SHA-256 of a file's bytes, as lower-case hex."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _jsonl_is_ours(path: Path) -> bool:
    manifest = manifest_path(path)
    try:
        found = json.loads(manifest.read_text(encoding="utf-8"))
        return bool(found.get("written_by") == "segvalue" and found["sha256"] == file_sha256(path))
    except (OSError, ValueError, KeyError, AttributeError):
        return False


def _write_jsonl(table: pa.Table, path: Path, protected: Mapping[Path, str] | None) -> None:
    if path.exists() and not path.is_dir() and not _jsonl_is_ours(path):
        raise ConfigError(
            f"{path} exists and segvalue did not write it (no manifest of segvalue holds its hash)",
            fix=f"choose another file name, or delete {path} first if it may go",
        )
    check_target(path, "file", protected=protected)
    with writing(path):
        remove_leftovers(path)
        fd, tmp = tempfile.mkstemp(prefix=temp_prefix(path), dir=path.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                for batch in table.to_batches(max_chunksize=10_000):
                    for row in batch.to_pylist():
                        handle.write(json.dumps(json_safe(row), default=str) + "\n")
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def _manifest(path: Path, about: Mapping[str, Any], table: pa.Table, sha256: str) -> Path:
    target = manifest_path(path)
    check_target(target, "file", signature=MANIFEST_SIGNATURE)
    body = {
        "written_by": "segvalue",
        **json_safe(dict(about)),
        "rows": table.num_rows,
        "columns": table.column_names,
        "sha256": sha256,
        "written_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
    }
    return write_text_atomic(target, json.dumps(body, indent=2, default=str) + "\n")


def export_file(
    table: pa.Table,
    path: str | Path,
    *,
    about: Mapping[str, Any],
    protected: Mapping[Path, str] | None = None,
) -> dict[str, Any]:
    """Write ``table`` to ``path`` (``.csv``, ``.parquet`` or ``.jsonl``) and its manifest
    (``about``, the rows, the columns, the file's SHA-256, the time).

    Returns
    -------
    dict
        The manifest, with ``path`` and ``manifest`` (where they were written).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> done = export_file(pa.table({"customer_id": ["a", "b"]}), folder / "vip.jsonl",
    ...                    about={"audience": "vip"})
    >>> (folder / "vip.jsonl").read_text().splitlines()
    ['{"customer_id": "a"}', '{"customer_id": "b"}']
    >>> done["rows"], len(done["sha256"])
    (2, 64)
    """
    path = Path(path)
    fmt = FILE_FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ConfigError(
            f"export file {str(path)!r}: unknown extension {path.suffix!r}",
            fix=f"end the name in {', '.join(FILE_FORMATS)}",
        )
    if not path.parent.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "jsonl":
        _write_jsonl(table, path, protected)
    else:
        write_table(table, path, protected=protected)
    sha256 = file_sha256(path)
    target = _manifest(path, {**about, "format": fmt}, table, sha256)
    return {
        **json.loads(target.read_text(encoding="utf-8")),
        "path": str(path),
        "manifest": str(target),
    }


def export_table(
    table: pa.Table, url: str, name: str, *, about: Mapping[str, Any]
) -> dict[str, Any]:
    """Write ``table`` as the database table ``name`` at ``url`` (a DuckDB file or
    PostgreSQL), replacing it only when segvalue's register there lists it; the register
    (``segvalue_exports``) gets the manifest.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> url = f"duckdb://{pathlib.Path(tempfile.mkdtemp()) / 'exports.duckdb'}"
    >>> export_table(pa.table({"customer_id": ["a"]}), url, "vip", about={})["rows"]
    1
    >>> export_table(pa.table({"customer_id": ["a", "b"]}), url, "vip", about={})["rows"]
    2
    """
    if not _TABLE_NAME.match(name) or name == _REGISTER:
        raise ConfigError(
            f"export table name {name!r} is not a plain table name",
            fix="use letters, digits and _ (not starting with a digit), e.g. vip_audience",
        )
    digest = hashlib.sha256()
    for batch in table.to_batches():
        digest.update(json.dumps(json_safe(batch.to_pylist()), default=str).encode())
    sha256 = digest.hexdigest()
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    entry = pa.table(
        {
            "name": [name],
            "rows": [table.num_rows],
            "sha256": [sha256],
            "written_at": [when],
            "about": [json.dumps(json_safe(dict(about)), default=str)],
        }
    )
    if url.startswith("duckdb://"):
        _duckdb_table(url, name, table, entry)
    else:
        _server_table(url, name, table, entry)
    return {
        "written_by": "segvalue",
        **about,
        "table": name,
        "rows": table.num_rows,
        "columns": table.column_names,
        "sha256": sha256,
        "written_at": when,
    }


def _refuse_foreign(name: str) -> ConfigError:
    return ConfigError(
        f"table {name!r} exists in the export database and segvalue did not write it",
        fix="choose another table name, or drop that table first if it may go",
    )


def _duckdb_table(url: str, name: str, table: pa.Table, entry: pa.Table) -> None:
    import duckdb

    path = url.removeprefix("duckdb://")
    if not path or path == ":memory:":
        raise ConfigError(
            "the export database is in memory: nothing would be kept",
            fix="give a DuckDB file, e.g. duckdb:///exports.duckdb",
            parameter="activation.exports.table_url",
        )
    con = duckdb.connect(path)
    try:
        con.execute(
            f"CREATE TABLE IF NOT EXISTS {_REGISTER} (name TEXT, rows BIGINT, sha256 TEXT, "
            "written_at TEXT, about TEXT)"
        )
        found = con.execute(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]
        ).fetchone()
        ours = con.execute(f"SELECT count(*) FROM {_REGISTER} WHERE name = ?", [name]).fetchone()
        if found and found[0] and not (ours and ours[0]):
            raise _refuse_foreign(name)
        con.begin()
        con.register("_segvalue_export", table)
        con.register("_segvalue_entry", entry)
        con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM _segvalue_export')
        con.execute(f"DELETE FROM {_REGISTER} WHERE name = ?", [name])
        con.execute(f"INSERT INTO {_REGISTER} SELECT * FROM _segvalue_entry")
        con.commit()
    finally:
        con.close()


def _server_table(url: str, name: str, table: pa.Table, entry: pa.Table) -> None:
    from segvalue.data.readers import connect

    con = connect(url)
    try:
        tables = set(con.list_tables())
        if _REGISTER not in tables:
            con.create_table(_REGISTER, entry.schema.empty_table())
        register = con.table(_REGISTER)
        ours = set(register.select("name").to_pyarrow().column("name").to_pylist())
        if name in tables and name not in ours:
            raise _refuse_foreign(name)
        con.create_table(name, table, overwrite=True)
        if name in ours:
            con.raw_sql(f"DELETE FROM {_REGISTER} WHERE name = '{name}'")  # a plain name
        con.insert(_REGISTER, entry)
    finally:
        con.disconnect()
