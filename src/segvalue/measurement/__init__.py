"""Measurement: who gets credit for conversions (attribution), what a campaign added
(lift from holdouts) and whom to treat (uplift). Pure functions over arrays and tables;
the faces reach them through :class:`segvalue.project.Project`.
"""

from __future__ import annotations

from segvalue.measurement.attribution import (
    RULE_MODELS,
    Attribution,
    Paths,
    markov,
    rule_based,
    shapley,
)

__all__ = ["RULE_MODELS", "Attribution", "Paths", "markov", "rule_based", "shapley"]
