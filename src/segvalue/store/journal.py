"""The events journal of a DuckDB store: real-time events made durable in a file first.

A DuckDB transaction costs about 2.5 ms whatever it holds (two INSERTs and a commit); an
append to a file and its fsync about 0.2 ms. So a DuckDB store keeps the events a server
applies one group at a time (``ResultsStore.apply_events``) in ``<store file>.journal``
first, one JSON line per event, fsync'd before the event's reply is sent, and moves
them into its tables in one transaction every :data:`JOURNAL_EVENTS` events and when it
is closed (a server closes it when idle). A writer that opens a store whose journal
still holds events (its server was killed) moves them first; a reader reads them with
the store's own. PostgreSQL stores each group in its own transaction (no journal).

The file is segvalue's own: its first line says so, and a file of that name that does
not start with it is never written, truncated or removed.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segvalue.data.writers import json_safe
from segvalue.errors import ConfigError

if TYPE_CHECKING:
    from segvalue.store.results import EventRecord

__all__ = ["JOURNAL_EVENTS", "EventJournal", "Journaled", "journal_path"]

#: Events a journal holds before they are moved into the store's tables in one go.
JOURNAL_EVENTS = 1024
_HEADER = {"segvalue_events_journal": 1}
_HEADER_LINE = json.dumps(_HEADER) + "\n"

Move = tuple[str, str | None, str | None]


def journal_path(store_file: Path) -> Path:
    """The journal beside a DuckDB store file.

    Examples
    --------
    >>> journal_path(Path("/p/segvalue-store.duckdb")).name
    'segvalue-store.duckdb.journal'
    """
    return store_file.with_name(store_file.name + ".journal")


@dataclass(frozen=True)
class Journaled:
    """An event in the journal: the record (``received_at`` set), the segment changes it
    caused, the run it was scored under and its body as stored (JSON text)."""

    event: EventRecord
    moves: tuple[Move, ...]
    run_id: str
    body: str = ""

    def __post_init__(self) -> None:
        if not self.body:
            text = json.dumps(json_safe(self.event.body), allow_nan=False, default=str)
            object.__setattr__(self, "body", text)

    def row(self) -> tuple[Any, ...]:
        """The event's ``segvalue_events`` row."""
        e = self.event
        return (e.seq, e.event_id, e.type, e.customer_id, e.occurred_at, self.body, e.received_at)

    def line(self) -> str:
        """The event as one JSON line."""
        e = self.event
        assert e.received_at is not None
        return (
            json.dumps(
                {
                    "seq": e.seq,
                    "event_id": e.event_id,
                    "type": e.type,
                    "customer_id": e.customer_id,
                    "occurred_at": e.occurred_at.isoformat(),
                    "received_at": e.received_at.isoformat(),
                    "body": self.body,
                    "moves": [list(m) for m in self.moves],
                    "run_id": self.run_id,
                },
                allow_nan=False,
                default=str,
            )
            + "\n"
        )

    @classmethod
    def parse(cls, text: str) -> Journaled:
        """The event of one line (KeyError, TypeError or ValueError when it is not one)."""
        from segvalue.store.results import EventRecord

        v = json.loads(text)
        event = EventRecord(
            int(v["seq"]),
            str(v["event_id"]),
            str(v["type"]),
            str(v["customer_id"]),
            dt.datetime.fromisoformat(v["occurred_at"]),
            dict(json.loads(v["body"])),
            dt.datetime.fromisoformat(v["received_at"]),
        )
        moves = tuple((str(s), a, b) for s, a, b in v["moves"])
        return cls(event, moves, str(v["run_id"]), str(v["body"]))


class EventJournal:
    """The journal file of one store: append (durably), read back, clear, remove.

    Examples
    --------
    >>> import tempfile
    >>> from segvalue.store.results import EventRecord
    >>> path = Path(tempfile.mkdtemp()) / "s.duckdb.journal"
    >>> at = dt.datetime(2025, 1, 2, 10)
    >>> journal = EventJournal(path)
    >>> journal.append([Journaled(EventRecord(1, "order:A", "order", "C1", at, {}, at),
    ...                           (("rfm", None, "New"),), "r1")])
    >>> [(j.event.event_id, j.moves) for j in EventJournal(path).read()]
    [('order:A', (('rfm', None, 'New'),))]
    >>> journal.clear(); EventJournal(path).read()
    []
    >>> journal.remove(); path.exists()
    False
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        #: Where the journal's events go while they are moved into the tables
        #: (:meth:`rotate`): appends start a new journal meanwhile.
        self.moving = path.with_name(path.name + ".moving")
        self._fd: int | None = None

    def read(self) -> list[Journaled]:
        """The events of the file being moved, then of the journal, in order ([] without).

        A last line cut short (the process was killed while writing it: that event was
        never acknowledged) is left out; a damaged line before others is an error.
        """
        return self._read(self.moving) + self._read(self.path)

    def _read(self, path: Path) -> list[Journaled]:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        lines = text.splitlines(keepends=True)
        _check_header(path, lines[0] if lines else "")
        out: list[Journaled] = []
        for number, line in enumerate(lines[1:], start=2):
            try:
                if not line.endswith("\n"):
                    raise ValueError("cut short")
                out.append(Journaled.parse(line))
            except (KeyError, TypeError, ValueError) as exc:
                if number == len(lines):
                    break  # written in part when the process stopped: never acknowledged
                raise ConfigError(
                    f"the events journal {path} is damaged at line {number} "
                    f"({type(exc).__name__}: {exc})",
                    fix="restore the file from a backup, or move it away to drop the events "
                    "it holds that the store does not",
                    parameter="store.url",
                ) from None
        return out

    def _check_header(self, first: str) -> None:
        _check_header(self.path, first)

    def _open(self) -> int:
        if self._fd is None:
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND, 0o600)
            except FileExistsError:
                with self.path.open(encoding="utf-8", errors="replace") as existing:
                    self._check_header(existing.readline())
                fd = os.open(self.path, os.O_WRONLY | os.O_APPEND)
            else:
                os.write(fd, _HEADER_LINE.encode())
            self._fd = fd
        return self._fd

    def append(self, entries: Sequence[Journaled]) -> None:
        """Write ``entries`` at the end of the file and wait until they are on disk."""
        fd = self._open()
        data = "".join(e.line() for e in entries).encode()
        written = 0
        while written < len(data):
            written += os.write(fd, data[written:])
        os.fsync(fd)

    def rotate(self) -> None:
        """Rename the journal to :attr:`moving` (its events are being moved into the
        tables); the next :meth:`append` starts a new journal. Nothing may be moving."""
        self.close()
        if self.moving.exists():
            raise RuntimeError(f"{self.moving} is still being moved")
        os.rename(self.path, self.moving)

    def moved(self) -> None:
        """The events of :attr:`moving` are in the tables: remove it."""
        with self.moving.open(encoding="utf-8", errors="replace") as existing:
            _check_header(self.moving, existing.readline())
        self.moving.unlink()

    def clear(self) -> None:
        """Keep the header only: every event is in the store's tables now."""
        fd = self._open()
        os.ftruncate(fd, len(_HEADER_LINE))
        os.fsync(fd)

    def remove(self) -> None:
        """Close the file and remove it when it is ours and holds no event (events the
        tables lack stay for the next writer; a file that is not ours stays as it is)."""
        self.close()
        try:
            with self.path.open(encoding="utf-8", errors="replace") as existing:
                first, rest = existing.readline(), existing.read(1)
        except FileNotFoundError:
            return
        if first == _HEADER_LINE and not rest:
            self.path.unlink()

    def close(self) -> None:
        """Close the file, leaving it in place."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


def _check_header(path: Path, first: str) -> None:
    """Refuse a file that segvalue did not write as its events journal."""
    try:
        ours = json.loads(first) == _HEADER
    except ValueError:
        ours = False
    if not ours:
        raise ConfigError(
            f"{path} is not a segvalue events journal (its first line is not "
            f"{_HEADER_LINE.strip()}), and segvalue does not write files it did not create",
            fix="move that file away: segvalue keeps its events journal under this name",
            parameter="store.url",
        )


def as_rows(entries: Sequence[Journaled]) -> tuple[list[list[Any]], list[list[Any]]]:
    """The events' and their segment changes' rows (``segvalue_events`` and
    ``segvalue_segment_events`` columns, in order)."""
    events: list[list[Any]] = []
    moves: list[list[Any]] = []
    for entry in entries:
        e = entry.event
        events.append(list(entry.row()))
        for scheme, before, after in entry.moves:
            moves.append([e.seq, e.customer_id, scheme, before, after, e.received_at, entry.run_id])
    return events, moves
