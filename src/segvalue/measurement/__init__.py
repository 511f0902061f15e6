"""Measurement: who gets credit for conversions (attribution), what a campaign added
(lift from holdouts) and whom to treat (uplift). Pure functions over arrays and tables;
the faces reach them through :class:`segvalue.project.Project`.
"""

from __future__ import annotations

from segvalue.measurement.attribution import (
    MODELS,
    RULE_MODELS,
    Attribution,
    Paths,
    markov,
    markov_order_likelihood,
    rule_based,
    shapley,
)
from segvalue.measurement.files import (
    PathColumns,
    TouchColumns,
    attribute,
    evaluate_uplift_file,
    fit_uplift_file,
    lift_file,
    read_journeys,
    read_paths,
)

__all__ = [
    "MODELS",
    "RULE_MODELS",
    "Attribution",
    "PathColumns",
    "Paths",
    "TouchColumns",
    "attribute",
    "evaluate_uplift_file",
    "fit_uplift_file",
    "lift_file",
    "markov",
    "markov_order_likelihood",
    "read_journeys",
    "read_paths",
    "rule_based",
    "shapley",
]
