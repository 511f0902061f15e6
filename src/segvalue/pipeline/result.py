"""What one run produced (:class:`RunResult`) and the configuration hash it records."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from segvalue import __version__
from segvalue.config import Config

if TYPE_CHECKING:
    import pyarrow as pa

    from segvalue.data.validation import ValidationReport
    from segvalue.pipeline.economics import Economics
    from segvalue.pipeline.measurement import Measurement
    from segvalue.pipeline.segments import Migration
    from segvalue.segments.segmentation import Segmentation
    from segvalue.valuation import Valuation


@dataclass
class RunResult:
    """What one run produced."""

    run_id: str
    config_hash: str
    report: ValidationReport
    features: pa.Table
    rejects: pa.Table
    outputs: dict[str, Path] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    valuation: Valuation | None = None
    segmentation: Segmentation | None = None
    migration: Migration | None = None
    economics: Economics | None = None
    measurement: Measurement | None = None

    def summary(self) -> dict[str, Any]:
        """Run metadata: id, config hash, row counts, rejects, freshness, timings."""
        return {
            "run_id": self.run_id,
            "segvalue_version": __version__,
            "config_hash": self.config_hash,
            "customers": self.features.num_rows,
            "validation": self.report.to_dict(),
            "clv": None if self.valuation is None else self.valuation.to_dict(),
            "segments": None if self.segmentation is None else self.segmentation.summary(),
            "migration": None if self.migration is None else self.migration.summary(),
            "kpis": None if self.economics is None else self.economics.summary(),
            "measurement": None if self.measurement is None else self.measurement.summary(),
            "timings_seconds": {k: round(v, 3) for k, v in self.timings.items()},
            "outputs": {k: str(v) for k, v in self.outputs.items()},
        }


def config_hash(config: Config) -> str:
    """A stable hash of the configuration, recorded with every run.

    Everything that shapes the results counts; where they are written (``output.dir``,
    ``store``) does not.

    Examples
    --------
    >>> from segvalue.config import parse_config
    >>> len(config_hash(parse_config({"sources": {"orders": {"path": "o.csv"}}})))
    16
    """
    # Where results go (the output folder, the store) does not change them.
    payload = json.dumps(
        config.model_dump(mode="json", exclude={"output": {"dir"}, "store": True}),
        sort_keys=True,
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
