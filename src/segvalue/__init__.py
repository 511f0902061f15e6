"""segvalue: customer segments, lifetime value and ROI-maximising action."""

from __future__ import annotations

__version__ = "0.1.0"
