"""One small exception hierarchy for the whole package.

Every error a user can cause derives from :class:`SegvalueError`; the faces (CLI, API)
turn these into exit code 2 or the JSON error shape in one place. Anything else is a bug.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ConfigError",
    "ConvergenceError",
    "ConvergenceWarning",
    "DataValidationError",
    "MissingDependencyError",
    "NotFittedError",
    "SegvalueError",
    "did_you_mean",
]


class SegvalueError(Exception):
    """Base class of every error a user of segvalue can cause and fix.

    Parameters
    ----------
    message
        What went wrong, naming the input (file, key, row or column).
    fix
        What the user should do about it, appended to the message.

    Examples
    --------
    >>> str(SegvalueError("orders.csv: column 'amount' is missing", fix="map it in segvalue.yaml"))
    "orders.csv: column 'amount' is missing. Fix: map it in segvalue.yaml"
    """

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(message if fix is None else f"{message}. Fix: {fix}")


class DataValidationError(SegvalueError, ValueError):
    """Input data break the data contract (missing column, bad values, empty table)."""

    #: The rows rejected so far when validation gave up (an Ibis table), else None:
    #: a caller can still write them (``segvalue validate --rejects``).
    rejects: Any = None


class ConfigError(SegvalueError, ValueError):
    """``segvalue.yaml`` or a command-line option is invalid."""


class MissingDependencyError(SegvalueError, ImportError):
    """An optional dependency (an extra) is needed but not installed."""


class NotFittedError(SegvalueError, ValueError, AttributeError):
    """A model was asked for predictions before ``fit`` was called."""


class ConvergenceError(SegvalueError, RuntimeError):
    """An optimiser failed to converge; carries its message and diagnostics."""

    def __init__(
        self,
        message: str,
        *,
        optimizer_message: str = "",
        iterations: int | None = None,
        gradient_norm: float | None = None,
        fix: str | None = None,
    ) -> None:
        self.optimizer_message = optimizer_message
        self.iterations = iterations
        self.gradient_norm = gradient_norm
        super().__init__(message, fix=fix)


class ConvergenceWarning(UserWarning):
    """An optimiser converged only with a fallback or to a doubtful optimum."""


def did_you_mean(word: object, choices: Iterable[object], *, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or "" when none is close.

    The one suggestion every "unknown key / field / column / table" message ends with.

    Examples
    --------
    >>> did_you_mean("revnue", ["revenue", "orders"])
    " (did you mean 'revenue'?)"
    >>> did_you_mean("zzz", ["revenue"])
    ''
    """
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""
