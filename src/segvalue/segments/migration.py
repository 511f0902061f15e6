"""Migration between two membership snapshots: transitions, drift alerts, enter / exit events.

A snapshot is a membership table ``(customer_id, scheme, segment)`` as an Ibis or Arrow
table; storing snapshots per run is the job of the data / store layer, so everything here
is a pure function of two tables and runs in the engine (only the small transition matrix
and segment sizes are collected).

Customers found in only one snapshot appear as ``"(new)"`` (not in the earlier snapshot)
and ``"(gone)"`` (not in the later one).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass
from typing import Any, Literal

import ibis
import ibis.expr.types as ir
import pyarrow as pa

from segvalue.errors import ConfigError, DataValidationError
from segvalue.segments.profiles import as_memberships

__all__ = [
    "GONE",
    "NEW",
    "DriftAlert",
    "drift_alerts",
    "membership_events",
    "transition_matrix",
    "transition_pivot",
]

#: Row label of customers absent from the earlier snapshot.
NEW = "(new)"
#: Column label of customers absent from the later snapshot.
GONE = "(gone)"

_MATRIX_SCHEMA = pa.schema(
    [
        ("scheme", pa.string()),
        ("from_segment", pa.string()),
        ("to_segment", pa.string()),
        ("customers", pa.int64()),
        ("share", pa.float64()),
    ]
)


def _check_exclusive(members: ir.Table, which: str) -> None:
    """Each customer has at most one segment per scheme (else transitions are ambiguous)."""
    counts = members.group_by("scheme").aggregate(
        rows=members.customer_id.count(), members=members.customer_id.nunique()
    )
    bad = counts.filter(counts.rows > counts.members).to_pyarrow().to_pylist()
    if bad:
        r = sorted(bad, key=lambda r: r["scheme"])[0]
        raise DataValidationError(
            f"{which} snapshot, scheme {r['scheme']!r}: {r['rows'] - r['members']} "
            "customers hold more than one segment, so a transition matrix is ambiguous",
            fix="use membership_events for tag schemes, or de-duplicate the snapshot",
        )


def _joined(before: ir.Table, after: ir.Table) -> ir.Table:
    """Full outer join of two snapshots on (customer_id, scheme), labels filled in."""
    b = before.select("customer_id", "scheme", from_segment=before.segment)
    a = after.select("customer_id", "scheme", to_segment=after.segment)
    j = b.outer_join(a, ["customer_id", "scheme"])
    return j.select(
        customer_id=ibis.coalesce(j.customer_id, j.customer_id_right),
        scheme=ibis.coalesce(j.scheme, j.scheme_right),
        from_segment=j.customer_id.isnull().ifelse(NEW, j.from_segment),
        to_segment=j.customer_id_right.isnull().ifelse(GONE, j.to_segment),
    )


def transition_matrix(
    before: ir.Table | pa.Table,
    after: ir.Table | pa.Table,
    *,
    scheme: str | None = None,
) -> pa.Table:
    """Counts and row shares of customers moving between segments from one snapshot to another.

    Parameters
    ----------
    before, after
        Membership snapshots ``(customer_id, scheme, segment)``, one segment per customer
        and scheme.
    scheme
        Scheme name for snapshots without a ``scheme`` column.

    Returns
    -------
    pyarrow.Table
        Long form, one row per observed cell: ``scheme``, ``from_segment`` (``"(new)"``
        for customers only in ``after``), ``to_segment`` (``"(gone)"`` for customers only
        in ``before``), ``customers`` and ``share`` (of the row: the customers of
        ``from_segment``). Counts of a scheme sum to the customers of either snapshot;
        shares of a row sum to 1. See :func:`transition_pivot` for the square form.

    Raises
    ------
    DataValidationError
        If a customer holds several segments of one scheme in a snapshot.

    Examples
    --------
    >>> import pyarrow as pa
    >>> b = pa.table({"customer_id": ["a", "b", "c"], "segment": ["X", "X", "Y"]})
    >>> a = pa.table({"customer_id": ["a", "b", "d"], "segment": ["X", "Y", "Y"]})
    >>> for r in transition_matrix(b, a, scheme="s").to_pylist():
    ...     print(r["from_segment"], r["to_segment"], r["customers"], r["share"])
    (new) Y 1 1.0
    X X 1 0.5
    X Y 1 0.5
    Y (gone) 1 1.0
    """
    b = as_memberships(before, scheme=scheme)
    a = as_memberships(after, scheme=scheme)
    _check_exclusive(b, "before")
    _check_exclusive(a, "after")
    j = _joined(b, a)
    counts = j.group_by(["scheme", "from_segment", "to_segment"]).aggregate(
        customers=j.customer_id.count()
    )
    rows = counts.to_pyarrow().to_pylist()
    totals: dict[tuple[str, str], int] = {}
    for r in rows:
        key = (r["scheme"], r["from_segment"])
        totals[key] = totals.get(key, 0) + int(r["customers"])
    out = [
        {**r, "share": int(r["customers"]) / totals[(r["scheme"], r["from_segment"])]}
        for r in sorted(rows, key=lambda r: (r["scheme"], r["from_segment"], r["to_segment"]))
    ]
    return pa.Table.from_pylist(out, schema=_MATRIX_SCHEMA) if out else _MATRIX_SCHEMA.empty_table()


def transition_pivot(
    matrix: pa.Table, *, scheme: str, value: Literal["customers", "share"] = "customers"
) -> pa.Table:
    """One scheme's transition matrix in square form: a row per ``from_segment``.

    Rows and columns are the segments in sorted order, ``"(new)"`` last among rows and
    ``"(gone)"`` last among columns; empty cells are 0.

    Examples
    --------
    >>> import pyarrow as pa
    >>> b = pa.table({"customer_id": ["a", "b", "c"], "segment": ["X", "X", "Y"]})
    >>> a = pa.table({"customer_id": ["a", "b", "d"], "segment": ["X", "Y", "Y"]})
    >>> transition_pivot(transition_matrix(b, a, scheme="s"), scheme="s").to_pylist()[0]
    {'from_segment': 'X', 'X': 1, 'Y': 1, '(gone)': 0}
    """
    rows = [r for r in matrix.to_pylist() if r["scheme"] == scheme]
    sources = sorted({r["from_segment"] for r in rows} - {NEW})
    sources += [NEW] if any(r["from_segment"] == NEW for r in rows) else []
    targets = sorted({r["to_segment"] for r in rows} - {GONE})
    targets += [GONE] if any(r["to_segment"] == GONE for r in rows) else []
    cells = {(r["from_segment"], r["to_segment"]): r[value] for r in rows}
    zero: int | float = 0 if value == "customers" else 0.0
    table = [{"from_segment": s, **{t: cells.get((s, t), zero) for t in targets}} for s in sources]
    kind = pa.int64() if value == "customers" else pa.float64()
    schema = pa.schema([("from_segment", pa.string()), *[(t, kind) for t in targets]])
    return pa.Table.from_pylist(table, schema=schema)


@dataclass(frozen=True)
class DriftAlert:
    """A segment whose size moved beyond the drift threshold between two snapshots.

    ``change`` is the relative change of the measured size, ``(after - before) / before``,
    or None for a segment that did not exist before.
    """

    scheme: str
    segment: str
    before: int
    after: int
    before_share: float
    after_share: float
    change: float | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dictionary."""
        return asdict(self)


def _sizes(members: ir.Table) -> tuple[dict[tuple[str, str], int], dict[str, int]]:
    seg = members.group_by(["scheme", "segment"]).aggregate(n=members.customer_id.count())
    base = members.group_by("scheme").aggregate(n=members.customer_id.nunique())
    sizes = {(r["scheme"], r["segment"]): int(r["n"]) for r in seg.to_pyarrow().to_pylist()}
    bases = {r["scheme"]: int(r["n"]) for r in base.to_pyarrow().to_pylist()}
    return sizes, bases


def drift_alerts(
    before: ir.Table | pa.Table,
    after: ir.Table | pa.Table,
    threshold: float,
    *,
    measure: Literal["customers", "share"] = "customers",
    scheme: str | None = None,
) -> list[DriftAlert]:
    """Segments whose size changed by more than ``threshold`` (relative) between snapshots.

    Parameters
    ----------
    before, after
        Membership snapshots ``(customer_id, scheme, segment)``.
    threshold
        Relative change that alerts (``SegmentsConfig.drift_threshold``, e.g. 0.2): an
        alert when ``|after - before| / before > threshold`` (strictly). A segment that is
        new (absent before) always alerts; one that disappeared alerts as a change of -1.
    measure
        ``customers`` compares member counts; ``share`` compares each segment's share of
        its scheme's customers (robust to a growing or shrinking base).
    scheme
        Scheme name for snapshots without a ``scheme`` column.

    Returns
    -------
    list of DriftAlert
        Sorted by scheme and segment.

    Raises
    ------
    ConfigError
        If ``threshold`` is not positive or ``measure`` is unknown.

    Examples
    --------
    >>> import pyarrow as pa
    >>> b = pa.table({"customer_id": list("abcde"), "segment": list("XXXXY")})
    >>> a = pa.table({"customer_id": list("abcde"), "segment": list("XXXYY")})
    >>> [alert.message for alert in drift_alerts(b, a, 0.5, scheme="s")]
    ["scheme 's', segment 'Y': 1 -> 2 customers (+100 %), beyond the drift threshold of 50 %"]
    """
    if not threshold > 0:
        raise ConfigError(
            f"drift threshold must be positive, got {threshold}",
            fix="set segments.drift_threshold to a relative change such as 0.2",
        )
    if measure not in ("customers", "share"):
        raise ConfigError(f"unknown drift measure {measure!r}", fix="use 'customers' or 'share'")
    b_sizes, b_base = _sizes(as_memberships(before, scheme=scheme))
    a_sizes, a_base = _sizes(as_memberships(after, scheme=scheme))
    alerts = []
    for key in sorted(set(b_sizes) | set(a_sizes)):
        name, segment = key
        nb, na = b_sizes.get(key, 0), a_sizes.get(key, 0)
        sb = nb / b_base[name] if b_base.get(name) else 0.0
        sa = na / a_base[name] if a_base.get(name) else 0.0
        old, new = (nb, na) if measure == "customers" else (sb, sa)
        if old == 0:
            change = None
            detail = "a new segment"
        else:
            change = (new - old) / old
            if abs(change) <= threshold:
                continue
            detail = f"{100 * change:+.0f} %"
        if measure == "customers":
            moved = f"{nb} -> {na} customers"
        else:
            moved = f"{100 * sb:.1f} % -> {100 * sa:.1f} % of customers"
        alerts.append(
            DriftAlert(
                scheme=name,
                segment=segment,
                before=nb,
                after=na,
                before_share=sb,
                after_share=sa,
                change=change,
                message=f"scheme {name!r}, segment {segment!r}: {moved} ({detail}), "
                f"beyond the drift threshold of {100 * threshold:.0f} %",
            )
        )
    return alerts


def membership_events(
    before: ir.Table | pa.Table,
    after: ir.Table | pa.Table,
    *,
    tag_schemes: Collection[str] = (),
    scheme: str | None = None,
) -> ir.Table:
    """Enter / exit events per customer between two snapshots, as an Ibis expression.

    Parameters
    ----------
    before, after
        Membership snapshots ``(customer_id, scheme, segment)``.
    tag_schemes
        Schemes in which a customer may carry several segments (tags).
    scheme
        Scheme name for snapshots without a ``scheme`` column.

    Returns
    -------
    ibis.expr.types.Table
        ``customer_id``, ``scheme``, ``from_segment``, ``to_segment``. In an exclusive
        scheme one row per customer whose segment changed: the exit from
        ``from_segment`` (``"(new)"`` for a new customer) is the entry into
        ``to_segment`` (``"(gone)"`` for a customer no longer present). In a tag scheme
        one row per tag gained (``from_segment`` null) and per tag lost (``to_segment``
        null). Customers who stayed put produce no row.

    Examples
    --------
    >>> import pyarrow as pa
    >>> b = pa.table({"customer_id": ["a", "b", "c"], "segment": ["X", "X", "Y"]})
    >>> a = pa.table({"customer_id": ["a", "b", "d"], "segment": ["X", "Y", "Y"]})
    >>> events = membership_events(b, a, scheme="s").order_by("customer_id")
    >>> [(r["customer_id"], r["from_segment"], r["to_segment"])
    ...  for r in events.to_pyarrow().to_pylist()]
    [('b', 'X', 'Y'), ('c', 'Y', '(gone)'), ('d', '(new)', 'Y')]
    """
    b = as_memberships(before, scheme=scheme)
    a = as_memberships(after, scheme=scheme)
    tags = list(tag_schemes)
    if tags:
        b_ex, a_ex = b.filter(~b.scheme.isin(tags)), a.filter(~a.scheme.isin(tags))
    else:
        b_ex, a_ex = b, a
    moves = _joined(b_ex, a_ex)
    moves = moves.filter(moves.from_segment != moves.to_segment)
    if not tags:
        return moves
    b_tag, a_tag = b.filter(b.scheme.isin(tags)), a.filter(a.scheme.isin(tags))
    keys = ["customer_id", "scheme", "segment"]
    none = ibis.null("string")
    exits = b_tag.anti_join(a_tag, keys)
    enters = a_tag.anti_join(b_tag, keys)
    exits = exits.select("customer_id", "scheme", from_segment=exits.segment, to_segment=none)
    enters = enters.select("customer_id", "scheme", from_segment=none, to_segment=enters.segment)
    return ibis.union(moves, exits, enters, distinct=False)
