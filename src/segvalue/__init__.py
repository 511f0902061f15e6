"""segvalue: customer segments, lifetime value and ROI-maximising action.

The curated public API. Each name is imported when first used (PEP 562), so that
``import segvalue`` and ``segvalue --help`` stay fast: no Ibis, pyarrow or numpy until
a name that needs them is touched.

Examples
--------
>>> import segvalue
>>> segvalue.Project.__name__, segvalue.ConfigError.__name__
('Project', 'ConfigError')
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "Project": "segvalue.project",
    "RunInfo": "segvalue.project",
    "RunView": "segvalue.project",
    "RunDiff": "segvalue.project",
    "Config": "segvalue.config",
    "load_config": "segvalue.config",
    "parse_config": "segvalue.config",
    "RunResult": "segvalue.pipeline",
    "BetaGeoModel": "segvalue.models.bgnbd",
    "ModifiedBetaGeoModel": "segvalue.models.bgnbd",
    "ParetoNBDModel": "segvalue.models.pareto_nbd",
    "GammaGammaModel": "segvalue.models.gamma_gamma",
    "BetaGeoBetaBinomModel": "segvalue.models.bgbb",
    "ShiftedBetaGeometricModel": "segvalue.models.sbg",
    "PurchasePropensityModel": "segvalue.models.propensity",
    "model_from_json": "segvalue.models.base",
    "SegvalueError": "segvalue.errors",
    "ConfigError": "segvalue.errors",
    "DataValidationError": "segvalue.errors",
    "MissingDependencyError": "segvalue.errors",
    "NotFittedError": "segvalue.errors",
    "ConvergenceError": "segvalue.errors",
    "ConvergenceWarning": "segvalue.errors",
}

__all__ = [
    "BetaGeoBetaBinomModel",
    "BetaGeoModel",
    "Config",
    "ConfigError",
    "ConvergenceError",
    "ConvergenceWarning",
    "DataValidationError",
    "GammaGammaModel",
    "MissingDependencyError",
    "ModifiedBetaGeoModel",
    "NotFittedError",
    "ParetoNBDModel",
    "Project",
    "PurchasePropensityModel",
    "RunDiff",
    "RunInfo",
    "RunResult",
    "RunView",
    "SegvalueError",
    "ShiftedBetaGeometricModel",
    "__version__",
    "load_config",
    "model_from_json",
    "parse_config",
]

if TYPE_CHECKING:
    from segvalue.config import Config, load_config, parse_config
    from segvalue.errors import (
        ConfigError,
        ConvergenceError,
        ConvergenceWarning,
        DataValidationError,
        MissingDependencyError,
        NotFittedError,
        SegvalueError,
    )
    from segvalue.models.base import model_from_json
    from segvalue.models.bgbb import BetaGeoBetaBinomModel
    from segvalue.models.bgnbd import BetaGeoModel, ModifiedBetaGeoModel
    from segvalue.models.gamma_gamma import GammaGammaModel
    from segvalue.models.pareto_nbd import ParetoNBDModel
    from segvalue.models.propensity import PurchasePropensityModel
    from segvalue.models.sbg import ShiftedBetaGeometricModel
    from segvalue.pipeline import RunResult
    from segvalue.project import Project, RunDiff, RunInfo, RunView


def __getattr__(name: str) -> Any:
    """Import a public name on first use (PEP 562)."""
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'segvalue' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
