"""The REST API over :class:`segvalue.Project`: ``create_app(project)``, run by ``segvalue serve``.

Routes under ``/api/v1`` read the results store through ``Project`` only (runs, segments,
KPIs, one customer, budget plans); every route needs an API key (``Project.keys``),
every error is one RFC 9457 ``application/problem+json`` shape. See docs/api.md.

Needs the ``web`` extra (FastAPI, uvicorn): ``pip install 'segvalue[web]'``.
"""

from __future__ import annotations

from segvalue.api.app import API_PREFIX, create_app

__all__ = ["API_PREFIX", "create_app"]
