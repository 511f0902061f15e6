"""The one orchestration path that every face (CLI, API, notebooks) calls, as stages.

A run (:func:`run`) reads every configured source into the engine and validates it
(:mod:`~segvalue.pipeline.ingest`), computes per-customer features in the engine
(:mod:`~segvalue.pipeline.features`), fits the CLV models and scores every customer
(:mod:`~segvalue.pipeline.valuation`), segments them
(:mod:`~segvalue.pipeline.segments`), computes segment KPIs, statuses, priorities and
guidance (:mod:`~segvalue.pipeline.economics`) and commits the run to the store with
its export (:mod:`~segvalue.pipeline.persist`). Each stage is a module with typed
results, timed by one :class:`~segvalue.pipeline.stage.Steps` timer;
:mod:`~segvalue.pipeline.run` calls them in order. The commands on an orders file
(:mod:`~segvalue.pipeline.files`), budget planning (:mod:`~segvalue.pipeline.budget`),
the demo (:mod:`~segvalue.pipeline.demo`) and validation
(:mod:`~segvalue.pipeline.validate`) are built on the same stages.

Examples
--------
>>> from segvalue.pipeline import run, RunResult
>>> run.__module__, RunResult.__module__
('segvalue.pipeline.run', 'segvalue.pipeline.result')
"""

from segvalue.pipeline.budget import SegmentCLV, budget_what_if, plan_budget
from segvalue.pipeline.demo import run_demo, write_config_template
from segvalue.pipeline.economics import Economics
from segvalue.pipeline.features import Features
from segvalue.pipeline.files import OrdersFile, clv_from_file, rfm_from_file
from segvalue.pipeline.files import _exact_sum as _exact_sum
from segvalue.pipeline.ingest import Ingested, load
from segvalue.pipeline.measure import (
    PathColumns,
    TouchColumns,
    attribute,
    evaluate_uplift_file,
    fit_uplift_file,
    lift_file,
    read_journeys,
    read_paths,
    sample_size_check,
)
from segvalue.pipeline.persist import Persisted
from segvalue.pipeline.result import RunResult, config_hash
from segvalue.pipeline.run import _leave_cores as _leave_cores
from segvalue.pipeline.run import run, run_config
from segvalue.pipeline.segments import Migration, Segmented
from segvalue.pipeline.stage import Progress, Steps
from segvalue.pipeline.validate import validate_config
from segvalue.pipeline.valuation import MIN_REPEAT_CUSTOMERS_FOR_CLV, Valued, hash_id
from segvalue.pipeline.valuation import _feature_matrix as _feature_matrix

# Beside these, three internals the tests import from here (`import x as x` above):
# _exact_sum, _feature_matrix, _leave_cores.
__all__ = [
    "MIN_REPEAT_CUSTOMERS_FOR_CLV",
    "Economics",
    "Features",
    "Ingested",
    "Migration",
    "OrdersFile",
    "PathColumns",
    "Persisted",
    "Progress",
    "RunResult",
    "SegmentCLV",
    "Segmented",
    "Steps",
    "TouchColumns",
    "Valued",
    "attribute",
    "budget_what_if",
    "clv_from_file",
    "config_hash",
    "evaluate_uplift_file",
    "fit_uplift_file",
    "hash_id",
    "lift_file",
    "load",
    "plan_budget",
    "read_journeys",
    "read_paths",
    "rfm_from_file",
    "run",
    "run_config",
    "run_demo",
    "sample_size_check",
    "validate_config",
    "write_config_template",
]
