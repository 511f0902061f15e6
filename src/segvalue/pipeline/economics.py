"""The economics stage: segment KPIs with intervals, target status, priorities, guidance."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from segvalue.config import Config

if TYPE_CHECKING:
    import pyarrow as pa

    from segvalue.data.validation import ValidatedData
    from segvalue.segments.segmentation import Segmentation


@dataclass
class Economics:
    """Segment KPIs with intervals, target status, priorities and budget guidance."""

    scheme: str
    kpis: pa.Table
    status: pa.Table
    priorities: pa.Table
    guidance: Any

    def summary(self) -> dict[str, Any]:
        """The scheme, per-segment statuses off track or at risk, and the ranking."""
        flagged = [r for r in self.status.to_pylist() if r["status"] in ("off_track", "at_risk")]
        return {
            "scheme": self.scheme,
            "segments": self.kpis.num_rows - 1,
            "targets_flagged": flagged,
            "priorities": [
                {k: r[k] for k in ("segment", "rank", "score", "reasons") if k in r}
                for r in self.priorities.to_pylist()
            ],
        }


def compute_economics(
    config: Config,
    data: ValidatedData,
    features: Any,
    segmentation: Segmentation,
    *,
    lift: Mapping[str, tuple[float, float, float]] | None = None,
    lift_scheme: str | None = None,
) -> Economics:
    """Segment KPIs of the KPI scheme, their status against targets, priorities, guidance.

    The scheme is ``kpis.scheme`` (or the default); when the run segmented other schemes
    only, the first present one. ROI counts ``clv.margin`` only when it was set. ``lift``:
    the measured lift per segment of ``lift_scheme`` (the measurement stage's), which the
    priorities count as responsiveness when it is the KPI scheme.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (d / "o.csv").write_text("order_id,customer_id,order_ts,amount\\n1,a,2024-01-02,5\\n")
    >>> cfg = parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)
    >>> from segvalue.pipeline.features import compute_features
    >>> from segvalue.pipeline.ingest import load
    >>> from segvalue.pipeline.segments import segment
    >>> from segvalue.pipeline.stage import Steps
    >>> data = load(cfg)
    >>> features = compute_features(data, Steps(1, None)).table
    >>> segmentation = segment(cfg, data, features, contacts=())
    >>> economics = compute_economics(cfg, data, features, segmentation)
    >>> economics.scheme, economics.kpis.num_rows
    ('lifecycle', 2)
    """
    from segvalue.economics.kpis import kpi_status, resolve_kpi_scheme, segment_kpis
    from segvalue.economics.priorities import budget_guidance, segment_priorities

    scheme = resolve_kpi_scheme(config.kpis, config.segments)
    present = set(segmentation.memberships.column("scheme").to_pylist())
    if scheme not in present:  # e.g. `segment --scheme` ran other schemes only
        scheme = sorted(present)[0]
    # clv.margin counts only when the user set it; otherwise ROI is on revenue.
    margin = config.clv.margin if "margin" in config.clv.model_fields_set else None
    kpis = segment_kpis(
        segmentation.memberships,
        features,
        orders=data.tables["orders"],
        touchpoints=data.tables.get("touchpoints"),
        channel_spend=data.tables.get("channel_spend"),
        config=config.kpis,
        scheme=scheme,
        as_of=data.report.as_of,
        margin_rate=margin,
    )
    return Economics(
        scheme=scheme,
        kpis=kpis,
        status=kpi_status(kpis, config.kpis.targets),
        priorities=segment_priorities(kpis, lift=lift if lift_scheme == scheme else None),
        guidance=budget_guidance(kpis, horizon=config.clv.horizon),
    )
