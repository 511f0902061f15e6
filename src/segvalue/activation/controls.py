"""Control groups: the global control group and each campaign's holdout.

- **Global control group**: every customer has a stable bucket 0-9999, the first 8 bytes of
  HMAC-SHA256(key, customer id) modulo 10,000. The customers whose bucket is below
  ``share x 10,000`` are never contacted by any campaign. The bucket depends only on the
  key and the id: the same customer is in (or out of) the group in every run, whatever
  their segment, and a new key redraws the group.
- **Campaign holdout**: of the customers a campaign could contact, a share is held out per
  segment (stratified: ``round(share x n)`` of each segment's ``n``), drawn by a generator
  seeded from the configured seed and the campaign's name, over the customers sorted by
  id. The same plan on the same customers holds out the same ones; the lift tools measure
  the campaign against them.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from typing import Any

import numpy as np

from segvalue.errors import DataValidationError

__all__ = ["BUCKETS", "campaign_holdout", "control_buckets", "in_global_control"]

#: The number of control buckets.
BUCKETS = 10_000


def control_buckets(customers: Sequence[Any], key: str) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Each customer's bucket 0-9999 from a keyed hash of their id.

    Examples
    --------
    >>> control_buckets(["C0000001", "C0000002"], "segvalue-control").tolist()
    [8452, 894]
    """
    if not key:
        raise DataValidationError("the control group's key is empty", fix="give a key")
    secret = key.encode("utf-8")
    out = np.empty(len(customers), dtype=np.int64)
    for i, customer in enumerate(customers):
        digest = hmac.new(secret, str(customer).encode("utf-8"), hashlib.sha256).digest()
        out[i] = int.from_bytes(digest[:8], "big") % BUCKETS
    return out


def in_global_control(
    customers: Sequence[Any], *, share: float, key: str
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Whether each customer is in the global control group (bucket < share x 10,000).

    Examples
    --------
    >>> in_global_control(["C0000001", "C0000002"], share=0.5, key="segvalue-control").tolist()
    [False, True]
    """
    if not 0 <= share < 1:
        raise DataValidationError(
            f"the control share {share!r} is not in [0, 1)", fix="e.g. 0.05", parameter="share"
        )
    return control_buckets(customers, key) < round(share * BUCKETS)


def _seed(seed: int, name: str) -> int:
    digest = hashlib.sha256(f"{seed}:{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def campaign_holdout(
    customers: Sequence[Any],
    segments: Sequence[Any],
    *,
    share: float,
    seed: int,
    campaign: str,
) -> np.ndarray[Any, np.dtype[np.bool_]]:
    """Which customers a campaign holds out: ``round(share x n)`` of each segment's ``n``,
    drawn at random (seeded by ``seed`` and the campaign's name) over the customers
    sorted by id.

    Examples
    --------
    >>> held = campaign_holdout([f"c{i}" for i in range(10)], ["a"] * 6 + ["b"] * 4,
    ...                         share=0.5, seed=0, campaign="spring")
    >>> int(held[:6].sum()), int(held[6:].sum())
    (3, 2)
    """
    if not 0 <= share < 1:
        raise DataValidationError(
            f"the holdout share {share!r} is not in [0, 1)", fix="e.g. 0.1", parameter="share"
        )
    if len(segments) != len(customers):
        raise DataValidationError(
            "customers and segments differ in length", fix="give one segment per customer"
        )
    rng = np.random.default_rng(_seed(seed, campaign))
    ids = np.array([str(c) for c in customers], dtype=object)
    labels = np.array(["" if s is None else str(s) for s in segments], dtype=object)
    held = np.zeros(len(ids), dtype=bool)
    for segment in sorted(set(labels.tolist())):
        members = np.flatnonzero(labels == segment)
        members = members[np.argsort(ids[members], kind="stable")]
        take = round(share * members.size)
        if take:
            held[rng.permutation(members)[:take]] = True
    return held
