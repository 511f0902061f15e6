"""May segvalue write here? One decision for every output, one lock per target folder.

segvalue replaces whole folders (the output folder is swapped in atomically) and
overwrites files (``--out``, ``--rejects``), so a wrong path must never cost a user data
segvalue did not write. The rules, applied by :func:`check_target` on every write path:

* a folder segvalue creates carries a mark, a small JSON file ``.segvalue`` inside it
  (what it is: ``output``, ``store`` or ``demo``; when; which version). An existing folder
  without the mark is refused, unless it is empty (then it is adopted and marked);
  a folder marked as another kind is refused (the store is not an output folder);
* a target that is, contains or lies inside an input (a source file or folder, the
  config file) is refused, and so is a folder target that is or contains the config's
  folder; a folder target that is a file is refused;
* a file target (``--out``, ``--rejects``) that exists is replaced only when segvalue
  wrote it: a Parquet file with segvalue's key in its metadata, a CSV file whose
  header line is exactly the one segvalue writes for the same table, or a text file
  (an HTML report) whose beginning holds the signature segvalue writes there.

:func:`target_lock` holds one ``fcntl.flock`` lock per folder (a lock file beside it,
recording who holds it), so a second run into the same folder refuses at once, naming
the running one; :func:`remove_leftovers` clears what a killed run left (staging and old
folders, temporary files), only where the name and mark say segvalue made it.
:func:`writing` turns an ``OSError`` into a :class:`WriteError` naming the path.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import fcntl
import io
import json
import os
import re
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from segvalue.errors import ConfigError, SegvalueError

# pyarrow is imported where a table is checked: `segvalue budget --curves` must start fast.
if TYPE_CHECKING:
    import pyarrow as pa

__all__ = [
    "MARK_NAME",
    "PARQUET_KEY",
    "TargetKind",
    "WriteError",
    "check_target",
    "lock_path",
    "mark_folder",
    "read_mark",
    "remove_leftovers",
    "target_lock",
    "temp_prefix",
    "wait_for_lock",
    "writing",
]

#: The file inside every folder segvalue creates.
MARK_NAME = ".segvalue"
#: The key segvalue puts in the schema metadata of every Parquet file it writes.
PARQUET_KEY = b"segvalue"

TargetKind = Literal["output", "store", "demo", "file"]

_WHAT = {
    "output": "output folder",
    "store": "run store",
    "demo": "demo folder",
    "file": "output file",
}


class WriteError(SegvalueError):
    """Writing an output failed: permission denied, disk full, a missing folder, ...

    Examples
    --------
    >>> str(WriteError("cannot write out/x.csv: disk full", fix="free some space"))
    'cannot write out/x.csv: disk full. Fix: free some space'
    """


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("segvalue")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def read_mark(folder: str | Path) -> dict[str, Any] | None:
    """segvalue's mark of a folder (its JSON), or None when the folder has none.

    Examples
    --------
    >>> import tempfile
    >>> d = tempfile.mkdtemp()
    >>> read_mark(d) is None
    True
    >>> _ = mark_folder(d, "output")
    >>> read_mark(d)["kind"]
    'output'
    """
    path = Path(folder) / MARK_NAME
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and isinstance(doc.get("kind"), str) else None


def mark_folder(folder: str | Path, kind: TargetKind, *, created_at: str | None = None) -> Path:
    """Write segvalue's mark into a folder: what it is, when it was created, the version.

    Examples
    --------
    >>> import tempfile
    >>> mark_folder(tempfile.mkdtemp(), "store").name
    '.segvalue'
    """
    doc = {
        "kind": kind,
        "created_at": created_at or dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "version": _version(),
        "note": "written by segvalue: this folder may be replaced by the next run",
    }
    path = Path(folder) / MARK_NAME
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n", encoding="utf-8")
    return path


def _refuse(message: str, fix: str) -> ConfigError:
    return ConfigError(message, fix=fix)


def _related(target: Path, other: Path) -> str | None:
    """How ``target`` relates to ``other`` (both resolved): is, contains, is inside, or None."""
    if target == other:
        return "is"
    if other.is_relative_to(target):
        return "contains"
    if target.is_relative_to(other):
        return "is inside"
    return None


def _csv_header(table: pa.Table) -> bytes:
    import pyarrow.csv as pacsv

    buffer = io.BytesIO()
    pacsv.write_csv(table.schema.empty_table(), buffer)
    return buffer.getvalue()


def _written_by_segvalue(path: Path, table: pa.Table) -> bool:
    """Whether an existing file is one segvalue wrote for a table of this shape."""
    if path.suffix.lower() in (".parquet", ".pq"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            metadata = pq.read_schema(path).metadata or {}
        except (OSError, pa.ArrowException):
            return False
        return PARQUET_KEY in metadata
    header = _csv_header(table)
    try:
        with path.open("rb") as handle:
            return handle.read(len(header)) == header
    except OSError:
        return False


#: How much of a text file is read for segvalue's signature (it is near the start).
_SIGNATURE_WINDOW = 4096


def _signed(path: Path, signature: bytes) -> bool:
    """Whether a file's beginning holds ``signature`` (a text file segvalue wrote)."""
    try:
        with path.open("rb") as handle:
            return signature in handle.read(_SIGNATURE_WINDOW)
    except OSError:
        return False


def check_target(
    target: str | Path,
    kind: TargetKind,
    *,
    protected: Mapping[Path, str] | None = None,
    config_dir: Path | None = None,
    table: pa.Table | None = None,
    key: str | None = None,
    signature: bytes | None = None,
) -> Path:
    """Refuse a write target that could destroy something segvalue did not write.

    Parameters
    ----------
    target
        The folder (``output``, ``store``, ``demo``) or file (``file``) to write.
    kind
        What segvalue will put there.
    protected
        Paths no target may be, contain or lie inside, each with what it is for the
        message (sources, the config file, the other targets of the same run).
    config_dir
        The config's folder: a folder target may not be it or contain it (it may lie
        inside it, which is the usual ``output.dir: output``).
    table
        For a file target: the table about to be written; an existing file is replaced
        only when segvalue wrote it for a table of this shape.
    key
        Where the target was given (e.g. ``output.dir``), for the message.
    signature
        For a file target that is not a table (an HTML report): an existing file is
        replaced only when its first 4 kB hold these bytes, which segvalue writes there.

    Returns
    -------
    Path
        The target, resolved (symbolic links followed).

    Raises
    ------
    ConfigError
        Naming the target, what is wrong with it and how to fix it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "orders.csv").write_text("customer_id,amount\\n")
    >>> check_target(d / "out", "output", config_dir=d).name
    'out'
    >>> check_target(d, "output")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: output folder ... exists and segvalue did not create it...
    >>> check_target(d / "orders.csv", "file", protected={d / "orders.csv": "the input"})
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: output file ... is the input .../orders.csv...
    >>> _ = (d / "mine.html").write_text("<p>my page</p>")
    >>> check_target(d / "mine.html", "file", signature=b'<meta name="generator"')
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: output file ... exists and segvalue did not write it...
    """
    given = Path(target)
    resolved = given.expanduser().resolve()
    what = f"{_WHAT[kind]} {str(given)!r}" + (f" ({key})" if key else "")
    folder_fix = "choose a new folder (or an empty one) for it"
    file_fix = "choose another file name"
    fix = file_fix if kind == "file" else folder_fix
    if kind != "file" and config_dir is not None:
        relation = _related(resolved, config_dir.resolve())
        if relation in ("is", "contains"):
            raise _refuse(f"{what} {relation} the config's folder {config_dir}", folder_fix)
    for other, role in (protected or {}).items():
        relation = _related(resolved, Path(other).expanduser().resolve())
        if relation is not None:
            raise _refuse(f"{what} {relation} {role} {other}", fix)
    if kind == "file":
        return _check_file(given, resolved, what, protected or {}, table, signature)
    if not resolved.exists():
        if given.is_symlink():
            raise _refuse(f"{what} is a broken symbolic link", folder_fix)
        return resolved
    if not resolved.is_dir():
        raise _refuse(f"{what} is a file, not a folder", folder_fix)
    mark = read_mark(resolved)
    if mark is None:
        if next(resolved.iterdir(), None) is not None:
            adopt = f'echo \'{{"kind": "{kind}"}}\' > {resolved / MARK_NAME}'
            raise _refuse(
                f"{what} exists and segvalue did not create it (it has no {MARK_NAME} mark); "
                "segvalue replaces what is in its folders",
                f"{folder_fix}; if it really is segvalue's {_WHAT[kind]} from an older "
                f"version, mark it: {adopt}",
            )
    elif mark["kind"] != kind:
        raise _refuse(f"{what} is segvalue's {_WHAT.get(mark['kind'], mark['kind'])}", fix)
    return resolved


def _check_file(
    given: Path,
    resolved: Path,
    what: str,
    protected: Mapping[Path, str],
    table: pa.Table | None,
    signature: bytes | None = None,
) -> Path:
    fix = "choose another file name"
    if resolved.is_dir():
        raise _refuse(f"{what} is a folder", "give a file name ending in .csv or .parquet")
    if not resolved.exists():
        return resolved
    for other, role in protected.items():
        # Hard links and bind mounts resolve to different names for the same file.
        with contextlib.suppress(OSError):
            if os.path.samefile(resolved, other):
                raise _refuse(f"{what} is {role} {other}", fix)
    written = (table is None or _written_by_segvalue(resolved, table)) and (
        signature is None or _signed(resolved, signature)
    )
    if not written:
        other_table = " (or wrote another table there)" if table is not None else ""
        raise _refuse(
            f"{what} exists and segvalue did not write it{other_table}",
            f"{fix}, or delete {given} first if it may go",
        )
    return resolved


_FIXES = {
    errno.EACCES: "give segvalue write permission there, or choose another place",
    errno.EPERM: "give segvalue write permission there, or choose another place",
    errno.ENOSPC: "free disk space, or choose a place on another disk",
    errno.EDQUOT: "free disk space (quota exceeded), or choose a place on another disk",
    errno.ENOENT: "create the folder first, or correct the path",
    errno.ENOTDIR: "a part of the path is a file, not a folder: correct the path",
    errno.EROFS: "the disk is read-only: choose a place on a writable disk",
    errno.EISDIR: "the path is a folder: give a file name",
    errno.EEXIST: "a file is in the way of a folder: correct the path",
    errno.ENAMETOOLONG: "choose a shorter path",
}


@contextlib.contextmanager
def writing(path: str | Path) -> Iterator[None]:
    """Turn an ``OSError`` raised while writing ``path`` into a :class:`WriteError`.

    The message names the path the system refused (or ``path``) and the reason; the fix
    depends on the error (permission, disk full, missing folder, read-only disk).

    Examples
    --------
    >>> with writing("/nonexistent/folder/x.csv"):
    ...     open("/nonexistent/folder/x.csv", "w")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segvalue.data.safety.WriteError: cannot write '/nonexistent/folder/x.csv': No such file...
    """
    try:
        yield
    except OSError as exc:
        where = exc.filename if exc.filename is not None else path
        reason = exc.strerror or str(exc)
        fix = _FIXES.get(exc.errno or 0, "check the path and the disk, then run again")
        raise WriteError(f"cannot write {str(where)!r}: {reason}", fix=fix) from exc


def lock_path(folder: str | Path) -> Path:
    """The lock file of a target folder: beside it, since the folder itself is replaced.

    Examples
    --------
    >>> lock_path("/data/run/output")
    PosixPath('/data/run/.output.lock')
    """
    folder = Path(folder)
    return folder.parent / f".{folder.name}.lock"


def _holder(handle: Any) -> str:
    handle.seek(0)
    try:
        doc = json.loads(handle.read() or "{}")
    except ValueError:
        doc = {}
    parts = [f"pid {doc.get('pid', '?')}"]
    if doc.get("run_id"):
        parts.append(f"run {doc['run_id']}")
    parts.append(f"started at {doc.get('started_at', '?')}")
    return ", ".join(parts)


@contextlib.contextmanager
def target_lock(
    folder: str | Path, kind: TargetKind, *, wait: float = 0, run_id: str | None = None
) -> Iterator[Path]:
    """Hold the lock of a target folder for the duration of a run.

    The lock is ``fcntl.flock`` on a lock file beside the folder (see :func:`lock_path`),
    recording the holder's pid, run id and start time. The system releases it when the
    holder ends, also when it is killed.

    Parameters
    ----------
    folder
        The output folder, run store or demo folder.
    kind
        What the folder is (for the message).
    wait
        Seconds to wait for a running holder to finish (0: refuse at once).
    run_id
        Recorded in the lock file for a refused run's message.

    Raises
    ------
    ConfigError
        When another run holds the lock (still, after ``wait`` seconds), naming it.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "out"
    >>> with target_lock(out, "output"):
    ...     with target_lock(out, "output"):  # doctest: +ELLIPSIS
    ...         pass
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: output folder ... is in use by another segvalue run (pid ...
    """
    path = lock_path(folder)
    with writing(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a+", encoding="utf-8")
    with handle:

        def acquire() -> bool:
            try:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False
            return True

        wait_for_lock(
            acquire,
            wait,
            lambda: (
                f"{_WHAT[kind]} {str(folder)!r} is in use by another segvalue run "
                f"({_holder(handle)})"
            ),
        )
        doc = {
            "pid": os.getpid(),
            "run_id": run_id,
            "started_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        }
        with writing(path):
            handle.seek(0)
            handle.truncate()
            handle.write(json.dumps(doc) + "\n")
            handle.flush()
        yield path
        # Released when the file closes; the file stays (removing it would race).


def wait_for_lock(acquire: Callable[[], bool], wait: float, holder: Callable[[], str]) -> None:
    """Try ``acquire`` until it succeeds or ``wait`` seconds have passed (0: once).

    Raises
    ------
    ConfigError
        ``holder()`` (what holds the lock, for the message) when it never succeeded.

    Examples
    --------
    >>> wait_for_lock(lambda: False, 0, lambda: "store x is in use by run r1")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    segvalue.errors.ConfigError: store x is in use by run r1. Fix: let that run finish, ...
    """
    deadline = time.monotonic() + max(float(wait), 0.0)
    while not acquire():
        if time.monotonic() >= deadline:
            waited = f" (waited {wait:g} s)" if wait > 0 else ""
            raise ConfigError(
                f"{holder()}{waited}",
                fix="let that run finish, or let this one wait for it (`wait=SECONDS`)",
                parameter="wait",
            )
        time.sleep(min(0.1, max(deadline - time.monotonic(), 0.01)))


def temp_prefix(path: str | Path) -> str:
    """Prefix of segvalue's temporary files for ``path``: hidden, named, with the pid.

    A temporary file is renamed onto ``path`` when complete; the pid lets the next run
    tell a leftover of a killed run from a file another live run is writing.

    Examples
    --------
    >>> temp_prefix("out/features.csv").startswith(".features.csv.segvalue-")
    True
    """
    return f".{Path(path).name}.segvalue-{os.getpid()}-"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_leftovers(target: str | Path) -> list[Path]:
    """Remove what a killed run left beside ``target``; return what was removed.

    Only entries named as segvalue names them are touched: ``.NAME.staging-*`` and
    ``.NAME.old-*`` folders that carry segvalue's mark (or are empty), and temporary files
    ``.NAME.segvalue-PID-*`` of a process that no longer runs. Call it holding the
    target's lock, so a live run's staging folder is never taken.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> stale = d / ".out.staging-abc123"
    >>> stale.mkdir()
    >>> _ = mark_folder(stale, "output")
    >>> (d / ".out.old-x").mkdir()  # empty: removed too
    >>> (d / ".out.staging-mine").mkdir()
    >>> _ = (d / ".out.staging-mine" / "data.csv").write_text("not segvalue's")
    >>> [p.name for p in remove_leftovers(d / "out")]
    ['.out.old-x', '.out.staging-abc123']
    """
    target = Path(target)
    parent, name = target.parent, re.escape(target.name)
    folders = re.compile(rf"\.{name}\.(staging|old)-[A-Za-z0-9_]+")
    temps = re.compile(rf"\.{name}\.segvalue-(\d+)-[A-Za-z0-9_]+")
    removed: list[Path] = []
    if not parent.is_dir():
        return removed
    for entry in sorted(parent.iterdir()):
        if entry.is_symlink():
            continue
        if folders.fullmatch(entry.name) and entry.is_dir():
            if read_mark(entry) is None and next(entry.iterdir(), None) is not None:
                continue
            with writing(entry):
                shutil.rmtree(entry)
            removed.append(entry)
        elif (found := temps.fullmatch(entry.name)) and entry.is_file():
            if _alive(int(found.group(1))):
                continue
            with writing(entry):
                entry.unlink()
            removed.append(entry)
    return removed
