"""Measurement: who gets credit for conversions (attribution), what a campaign added
(lift from holdouts) and whom to treat (uplift). Pure functions over arrays; files are
read by :mod:`segvalue.pipeline.measure`, stored runs by
:meth:`segvalue.project.Project.attribution`.
"""

from __future__ import annotations

from segvalue.measurement.attribution import (
    MODELS,
    RULE_MODELS,
    Attribution,
    Journeys,
    Paths,
    attribute,
    journeys_from_touches,
    markov,
    markov_order_likelihood,
    rule_based,
    shapley,
    time_decay,
)

__all__ = [
    "MODELS",
    "RULE_MODELS",
    "Attribution",
    "Journeys",
    "Paths",
    "attribute",
    "journeys_from_touches",
    "markov",
    "markov_order_likelihood",
    "rule_based",
    "shapley",
    "time_decay",
]
