"""The one timer of a run's stages, and the progress callback it reports to."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

__all__ = ["Progress", "Steps"]

#: Called as ``progress(step_description, step_index, step_count)``.
Progress = Callable[[str, int, int], None]


class Steps:
    """Times each step of a run under a key and reports progress.

    Every stage records its timing here (``read``, ``validate``, ``features``, ``clv``,
    ``materialise``, ``rejects``, ``segments``, ``kpis``, ``migration``, ``write``); a
    key timed twice (``read``, once per source) adds up. The timings become
    ``RunResult.timings`` and the run's row in the store.

    Parameters
    ----------
    total
        How many steps the run will take (for the progress callback).
    progress
        Optional callback ``(description, index, total)``; called once more with
        ``"done"`` after the last step.

    Examples
    --------
    >>> seen = []
    >>> steps = Steps(2, lambda d, i, n: seen.append((d, i, n)))
    >>> for key in ("read", "read"):
    ...     with steps.step(key, f"reading {key}"):
    ...         pass
    >>> list(steps.timings), seen[-1]
    (['read'], ('done', 2, 2))
    """

    def __init__(self, total: int, progress: Progress | None) -> None:
        self.total, self.progress, self.index = total, progress, 0
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, key: str, description: str) -> Iterator[None]:
        """Time the block under ``key``, announcing ``description`` first."""
        if self.progress is not None:
            self.progress(description, self.index, self.total)
        start = time.perf_counter()
        yield
        self.timings[key] = self.timings.get(key, 0.0) + time.perf_counter() - start
        self.index += 1
        if self.progress is not None and self.index == self.total:
            self.progress("done", self.total, self.total)
