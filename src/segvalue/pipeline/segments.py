"""The segments stage: cluster fits started early, segmentation, carried schemes, migration.

:func:`start_cluster_fits` starts the cluster schemes' fits on background threads while
the valuation stage runs; :func:`segment_all` segments every customer (:func:`segment`)
and, for a run of some schemes only, carries the others from the latest complete run
(:func:`with_carried_schemes`), giving :class:`Segmented`. :func:`compare_with_previous`
is the migration since the latest complete run with an earlier as-of date, run by the
persist stage (it reads the store).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from segvalue.config import Config
from segvalue.errors import ConfigError

if TYPE_CHECKING:
    import pyarrow as pa

    from segvalue.data.validation import ValidatedData
    from segvalue.segments.segmentation import Segmentation
    from segvalue.store import ResultsStore


@dataclass(frozen=True)
class Segmented:
    """What the segments stage produced.

    Attributes
    ----------
    segmentation
        Memberships, sizes, profiles, personas and details of every scheme of the run
        (computed or carried).
    carried
        The schemes carried from the latest complete run instead of recomputed.
    """

    segmentation: Segmentation
    carried: tuple[str, ...] = ()


@dataclass
class Migration:
    """How memberships moved since the latest complete run with an earlier as-of date."""

    previous_run: str
    previous_as_of: dt.date | None
    matrix: pa.Table
    events: pa.Table
    alerts: list[Any]

    def summary(self) -> dict[str, Any]:
        """Previous run id, event count and drift alerts."""
        return {
            "previous_run": self.previous_run,
            "previous_as_of": None if self.previous_as_of is None else str(self.previous_as_of),
            "events": self.events.num_rows,
            "drift_alerts": [a.to_dict() for a in self.alerts],
        }


def start_cluster_fits(
    config: Config,
    data: ValidatedData,
    features: Any,
    only: list[str] | None,
    contacts: Sequence[str],
) -> dict[str, Callable[[], Any]]:
    """Fit the cluster schemes on background threads while the CLV step runs.

    A scheme qualifies when its features are all customer features or attributes (none
    comes from the CLV step): its sample is drawn now from the same customers and values
    the segments step sees, so the model is the one that step would fit. The fit itself
    touches no engine, so it overlaps the CLV step's queries and model fits on a second
    core. Anything that fails here is left to the segments step, which fits the scheme
    itself and reports the error in its place.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.data.datasets import copy_cdnow
    >>> from segvalue.pipeline.ingest import load
    >>> path = copy_cdnow(pathlib.Path(tempfile.mkdtemp()))
    >>> columns = {"order_id": "_row", "customer_id": "customer_id", "order_ts": "date",
    ...            "amount": "dollar_value"}
    >>> source = {"path": str(path), "csv": {"delimiter": "whitespace"}, "columns": columns}
    >>> scheme = {"type": "cluster", "name": "habits", "k": 3,
    ...           "features": ["frequency", "monetary_value"]}
    >>> cfg = parse_config({"sources": {"orders": source}, "as_of": "1998-06-30",
    ...                     "segments": {"schemes": [scheme]}})
    >>> from segvalue.pipeline.features import compute_features
    >>> from segvalue.pipeline.stage import Steps
    >>> data = load(cfg)
    >>> features = compute_features(data, Steps(1, None)).table
    >>> fits = start_cluster_fits(cfg, data, features, None, ())
    >>> list(fits)
    ['habits']
    >>> segment(cfg, data, features, fitted=fits, contacts=()).sizes.num_rows
    3
    """
    from segvalue.config import ClusterConfig
    from segvalue.segments.clusters import start_fit_clusters
    from segvalue.segments.rules import customer_attributes

    if not config.segments.enabled:
        return {}
    table = customer_attributes(features, data.tables.get("customers"))
    available, private = set(table.columns), set(contacts)
    started: dict[str, Callable[[], Any]] = {}
    for scheme in config.segments.schemes:
        if not isinstance(scheme, ClusterConfig) or (only and scheme.name not in only):
            continue
        wanted = set(scheme.features)
        if not wanted <= available or wanted & private:
            continue
        try:
            started[scheme.name] = start_fit_clusters(table, scheme)
        except Exception:  # the segments step fits it and raises this in its place
            continue
    return started


def segment(
    config: Config,
    data: ValidatedData,
    features: Any,
    only: list[str] | None = None,
    fitted: Mapping[str, Callable[[], Any]] | None = None,
    *,
    contacts: Sequence[str],
) -> Segmentation:
    """Segment every customer by the configured schemes (``only``: these alone).

    ``fitted``: cluster fits started by :func:`start_cluster_fits`, used instead of
    fitting again; ``contacts``: columns never profiled.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> from segvalue.pipeline.features import compute_features
    >>> from segvalue.pipeline.ingest import load
    >>> from segvalue.pipeline.stage import Steps
    >>> data = load(cfg)
    >>> features = compute_features(data, Steps(1, None)).table
    >>> segment(cfg, data, features, ["rfm"], contacts=()).sizes.column("scheme").to_pylist()
    ['rfm']
    """
    from segvalue.data.readers import materialise
    from segvalue.segments.segmentation import segment_customers

    return segment_customers(
        features,
        data.tables["orders"],
        config.segments,
        as_of=data.report.as_of,
        customers=data.tables.get("customers"),
        order_lines=data.tables.get("order_lines"),
        only=only,
        cache=lambda expr, prefix: materialise(data.con, expr, prefix),
        pii=list(contacts),
        fitted=fitted,
    )


def with_carried_schemes(
    config: Config,
    segmentation: Segmentation,
    recomputed: Sequence[str],
    *,
    as_of: dt.date,
    fingerprint: str,
) -> Segmentation:
    """Add the other configured schemes' results from the latest complete run.

    ``run(schemes=[...])`` recomputes those schemes only; a snapshot must still hold
    every configured scheme. The others are carried from the latest complete run, which
    must have read the same data (fingerprint), as of the same date, with each carried
    scheme configured as now; otherwise the run is refused, saying which differs.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> from segvalue.pipeline.features import compute_features
    >>> from segvalue.pipeline.ingest import ingest, load
    >>> from segvalue.pipeline.run import run
    >>> from segvalue.pipeline.stage import Steps
    >>> first = run(cfg)
    >>> data = load(cfg)
    >>> features = compute_features(data, Steps(1, None)).table
    >>> rfm = segment(cfg, data, features, ["rfm"], contacts=())
    >>> both = with_carried_schemes(cfg, rfm, ["rfm"], as_of=data.report.as_of,
    ...                             fingerprint=ingest(cfg, data).fingerprint)
    >>> both.sizes.column("scheme").to_pylist()
    ['rfm', 'lifecycle']
    >>> both.details["lifecycle"]["carried_from"] == first.run_id
    True
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from segvalue.segments.personas import Persona
    from segvalue.store import open_store

    others = [s.name for s in config.segments.schemes if s.name not in set(recomputed)]
    if not others:
        return segmentation
    fix = "recompute every scheme (schemes=None; on the command line without --scheme)"
    try:
        store = open_store(config.store_url, create=True)
    except ConfigError:
        store = None
    with store if store is not None else nullcontext():
        previous = None if store is None else store.latest()
        if store is None or previous is None:
            raise ConfigError(
                f"recomputing {', '.join(recomputed)} alone needs a complete run holding the "
                f"other schemes ({', '.join(others)}), and the store has none",
                fix=fix,
                parameter="schemes",
            )
        assert store is not None
        doc = store.document(previous.run_id, "run")
        hashes = (doc.get("segments_config") or {}) if isinstance(doc, dict) else {}
        now = scheme_hashes(config)
        changed = [n for n in others if hashes.get(n) != now[n]]
        problem = None
        if previous.data_fingerprint != fingerprint:
            problem = "the data changed since"
        elif previous.as_of != as_of:
            problem = f"its as-of date is {previous.as_of}, this run's {as_of},"
        elif changed:
            problem = f"the configuration of {', '.join(changed)} changed since"
        if problem is not None:
            raise ConfigError(
                f"cannot carry {', '.join(others)} from run {previous.run_id}: {problem} that run",
                fix=fix,
                parameter="schemes",
            )
        wanted = pa.array(others, pa.string())

        def carried(name: str) -> pa.Table | None:
            if name not in store.table_names(previous.run_id):
                return None
            table = store.table(previous.run_id, name)
            return table.filter(pc.is_in(table.column("scheme"), wanted))

        def joined(now_table: pa.Table | None, name: str) -> pa.Table | None:
            old = carried(name)
            if now_table is None or old is None:
                return now_table if old is None else old
            return pa.concat_tables([now_table, old.cast(now_table.schema)])

        summary = store.document(previous.run_id, "segments")
        personas = [
            Persona(
                **{
                    **p,
                    **{
                        k: tuple(p[k])
                        for k in ("needs", "objections", "channels", "triggers", "evidence")
                    },
                }
            )
            for p in store.document(previous.run_id, "personas")
            if p["scheme"] in others
        ]
        memberships = joined(segmentation.memberships, "memberships")
        sizes = joined(segmentation.sizes, "segment_sizes")
        profiles = segmentation.profiles
        if profiles is not None:
            parts = [
                joined(getattr(profiles, part), f"segment_profiles{suffix}")
                for part, suffix in (
                    ("segments", ""),
                    ("numeric", "_numeric"),
                    ("attributes", "_attributes"),
                )
            ]
            profiles = replace(profiles, segments=parts[0], numeric=parts[1], attributes=parts[2])
    assert memberships is not None and sizes is not None
    details = dict(segmentation.details)
    for name in others:
        entry = dict(summary.get("schemes", {}).get(name, {}))
        entry.pop("segments", None)
        details[name] = {**entry, "carried_from": previous.run_id}
    order = {s.name: i for i, s in enumerate(config.segments.schemes)}
    return replace(
        segmentation,
        memberships=memberships,
        sizes=sizes,
        profiles=profiles,
        personas=sorted(
            [*segmentation.personas, *personas], key=lambda p: (order.get(p.scheme, 0), p.segment)
        ),
        details=details,
    )


def scheme_hashes(config: Config) -> dict[str, str]:
    """A hash of each scheme's configuration (carried results need an unchanged one).

    Examples
    --------
    >>> from segvalue.config import parse_config
    >>> hashes = scheme_hashes(parse_config({"sources": {"orders": {"path": "o.csv"}}}))
    >>> sorted(hashes), len(hashes["rfm"])
    (['lifecycle', 'rfm'], 16)
    """
    out = {}
    for scheme in config.segments.schemes:
        payload = json.dumps(scheme.model_dump(mode="json"), sort_keys=True)
        out[scheme.name] = hashlib.sha256(payload.encode()).hexdigest()[:16]
    return out


def compare_with_previous(
    config: Config, segmentation: Segmentation, store: ResultsStore, as_of: dt.date
) -> Migration | None:
    """Transitions, enter / exit events and drift since the latest complete run with an
    earlier as-of date (a run as of March recorded after one as of June compares with
    the runs before March, never backwards).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> from segvalue.pipeline.features import compute_features
    >>> from segvalue.pipeline.ingest import load
    >>> from segvalue.pipeline.run import run
    >>> from segvalue.pipeline.stage import Steps
    >>> from segvalue.store import open_store
    >>> first = run(cfg)
    >>> data = load(cfg)
    >>> now = segment(cfg, data, compute_features(data, Steps(1, None)).table, contacts=())
    >>> with open_store(cfg.store_url) as store:
    ...     same_day = compare_with_previous(cfg, now, store, data.report.as_of)
    ...     week_later = compare_with_previous(cfg, now, store, dt.date(2024, 1, 9))
    >>> same_day is None, week_later.previous_run == first.run_id, week_later.events.num_rows
    (True, True, 0)
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    from segvalue.features.materialise import to_arrow
    from segvalue.segments.migration import drift_alerts, membership_events, transition_matrix

    previous = store.latest(before_as_of=as_of)
    if previous is None:
        return None
    before = store.table(previous.run_id, "memberships", columns=list(_MEMBERSHIP_COLUMNS))
    after = segmentation.memberships
    kinds = {name: info.get("mode", "exclusive") for name, info in segmentation.details.items()}
    common = sorted(set(kinds) & set(before.column("scheme").to_pylist()))
    tags = [n for n in common if kinds[n] == "tags"]
    exclusive = [n for n in common if kinds[n] != "tags"]

    def only(table: pa.Table, names: list[str]) -> pa.Table:
        return table.filter(pc.is_in(table.column("scheme"), pa.array(names, pa.string())))

    before_exclusive, after_exclusive = only(before, exclusive), only(after, exclusive)
    matrix = transition_matrix(before_exclusive, after_exclusive)
    alerts = drift_alerts(before_exclusive, after_exclusive, config.segments.drift_threshold)
    events = to_arrow(
        membership_events(only(before, common), only(after, common), tag_schemes=tags)
    )
    return Migration(
        previous_run=previous.run_id,
        previous_as_of=previous.as_of,
        matrix=matrix,
        events=events,
        alerts=alerts,
    )


_MEMBERSHIP_COLUMNS = ("customer_id", "scheme", "segment")


def segment_all(
    config: Config,
    data: ValidatedData,
    features: Any,
    *,
    only: list[str] | None,
    fitted: Mapping[str, Callable[[], Any]],
    contacts: Sequence[str],
    carry: bool,
    fingerprint: str,
) -> Segmented:
    """Segment every customer; with ``carry``, add the schemes ``only`` left out.

    The schemes are segmented by :func:`segment` (looked up on this module, so a test
    may replace it); with ``carry`` and ``only``, the other configured schemes come from
    the latest complete run (:func:`with_carried_schemes`).

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> from segvalue.pipeline.features import compute_features
    >>> from segvalue.pipeline.ingest import load
    >>> from segvalue.pipeline.stage import Steps
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> data = load(cfg)
    >>> features = compute_features(data, Steps(1, None)).table
    >>> segmented = segment_all(cfg, data, features, only=None, fitted={}, contacts=(),
    ...                         carry=False, fingerprint="")
    >>> segmented.segmentation.sizes.column("scheme").to_pylist(), segmented.carried
    (['lifecycle', 'rfm'], ())
    """
    segmentation = segment(config, data, features, only, fitted=fitted, contacts=contacts)
    if not (carry and only):
        return Segmented(segmentation)
    segmentation = with_carried_schemes(
        config, segmentation, only, as_of=data.report.as_of, fingerprint=fingerprint
    )
    kept = set(only)
    carried = tuple(s.name for s in config.segments.schemes if s.name not in kept)
    return Segmented(segmentation, carried=carried)
