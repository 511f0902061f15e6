"""Attribution of conversions and their value to channels: rule-based, exact Markov
chains, exact Shapley values.

Every model works on :class:`Paths`: the unique journeys (sequences of channels), each
with its conversions, conversion value and non-conversions, as ChannelAttribution's
path table holds them. Definitions, explicit because tools disagree:

* **first** / **last**: the whole journey's credit to its first / last touch.
* **last-non-direct**: to the last touch whose channel is not ``direct`` (the direct
  channel only when the journey has no other).
* **linear**: an equal share per *touch* (a channel touched twice gets two shares);
  **linear-unique**: an equal share per *distinct channel* of the journey.
* **position**: ``first`` / ``middle`` / ``last`` shares (default 40 / 20 / 40) of a
  journey of three or more touches, the middle share split equally among the middle
  touches; a journey of two touches gives first and last half each, of one all to it.
* **markov**: the journeys as an absorbing Markov chain of order ``k`` (a state is the
  last ``k`` channels, fewer at the start; a channel touched twice in a row is a loop),
  solved exactly (a sparse linear system, no simulation): P(conversion) from the start,
  and per channel its removal effect 1 - P(conversion without it) / P(conversion),
  without it meaning every state holding the channel leads nowhere. Conversions are
  attributed in proportion to the removal effects. Value: the removal effect on the
  expected value per journey (a conversion worth the mean value of the conversions that
  end in the same state), attributed in proportion likewise.
* **shapley**: the Shapley value of each channel over whole journeys (every distinct
  channel, not the last few), exact by enumerating coalitions up to ``exact_up_to``
  channels, sampled permutations above (with the standard error of each value). Value
  functions: ``subset-sum``, v(S) = the conversions of the journeys whose channels all
  lie in S (then Shapley equals linear-unique attribution), and ``conversion-rate``,
  v(S) = the conversion rate of the journeys whose channels all lie in S (0 when none;
  for value, the value per journey), so the values add up to the overall rate, and are
  scaled to the total conversions (a channel whose journeys convert less than those
  without it can get a negative share).

References: Anderl, Becker, von Wangenheim and Schumann (2016), "Mapping the customer
journey: lessons learned from graph-based online attribution modeling", International
Journal of Research in Marketing 33(3) (removal effects of higher-order chains);
Shapley (1953); Zhao et al. (2018), "Shapley value methods for attribution modeling in
online advertising", arXiv:1804.05327 (the two value functions).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from segvalue.errors import DataValidationError

__all__ = [
    "CREDIT_MODELS",
    "MODELS",
    "RULE_MODELS",
    "Attribution",
    "Journeys",
    "Paths",
    "attribute",
    "journey_credit",
    "journeys_from_touches",
    "markov",
    "markov_order_likelihood",
    "rule_based",
    "shapley",
    "time_decay",
]

FloatArray = np.ndarray[Any, np.dtype[np.float64]]

#: The rule-based models (:func:`rule_based`).
RULE_MODELS = ("first", "last", "last-non-direct", "linear", "linear-unique", "position")
#: Every model, by the name the CLI and the configuration use (time-decay needs journeys
#: with their touches' times: :func:`journeys_from_touches`).
MODELS = (*RULE_MODELS, "time-decay", "markov", "shapley")
#: The models that credit journey by journey (:func:`journey_credit`).
CREDIT_MODELS = (*RULE_MODELS, "time-decay")
#: Shapley's value functions (:func:`shapley`).
VALUE_FUNCTIONS = ("subset-sum", "conversion-rate")


@dataclass(frozen=True)
class Paths:
    """Unique journeys: each a sequence of channel codes (``channels[code]`` its name),
    with its conversions, conversion value and non-conversions.

    Examples
    --------
    >>> p = Paths.parse(["C1 > C2 > C3", "C1", "C2 > C3"], [1, 0, 0], nulls=[0, 1, 1])
    >>> p.channels, p.paths, p.total_conversions
    (('C1', 'C2', 'C3'), ((0, 1, 2), (0,), (1, 2)), 1.0)
    """

    channels: tuple[str, ...]
    paths: tuple[tuple[int, ...], ...]
    conversions: FloatArray
    value: FloatArray
    nulls: FloatArray

    @classmethod
    def of(
        cls,
        journeys: Sequence[Sequence[str]],
        conversions: Any,
        value: Any = None,
        nulls: Any = None,
    ) -> Paths:
        """Paths from journeys given as lists of channel names (repeated journeys are
        added up); ``value`` defaults to 0, ``nulls`` to 0.

        Raises
        ------
        DataValidationError
            A journey without a touch, or a count or value that is negative or not
            finite, naming its row.
        """
        n = len(journeys)
        conv = _counts("conversions", conversions, n)
        val = _counts("value", np.zeros(n) if value is None else value, n)
        null = _counts("nulls", np.zeros(n) if nulls is None else nulls, n)
        # Identical journeys first (one dictionary lookup each: 1M journeys in well under a
        # second), then the checks and channel codes once per distinct journey.
        seen: dict[tuple[Any, ...], int] = {}
        first: list[int] = []
        group = np.empty(n, dtype=np.int64)
        for row, journey in enumerate(journeys):
            raw_key = tuple(journey)
            at = seen.get(raw_key)
            if at is None:
                at = seen[raw_key] = len(first)
                first.append(row)
            group[row] = at
        raw = np.column_stack(
            [np.bincount(group, weights=w, minlength=len(first)) for w in (conv, val, null)]
        ).reshape(-1, 3)
        names: dict[str, int] = {}
        index: dict[tuple[int, ...], int] = {}
        sums: list[FloatArray] = []
        for at, journey in enumerate(seen):
            touches = [str(c).strip() for c in journey]
            if not touches or any(not t for t in touches):
                raise DataValidationError(
                    f"journey {first[at] + 1} has an empty channel or no touch at all",
                    fix="give every journey at least one named channel",
                    parameter="path",
                )
            codes = tuple(names.setdefault(t, len(names)) for t in touches)
            slot = index.setdefault(codes, len(index))
            if slot == len(sums):
                sums.append(raw[at].copy())
            else:  # the same journey but for spaces around a channel's name
                sums[slot] += raw[at]
        totals = np.array(sums, dtype=np.float64).reshape(-1, 3)
        return cls(tuple(names), tuple(index), totals[:, 0], totals[:, 1], totals[:, 2])

    @classmethod
    def parse(
        cls,
        texts: Sequence[str],
        conversions: Any,
        value: Any = None,
        nulls: Any = None,
        *,
        sep: str = ">",
    ) -> Paths:
        """Paths from ChannelAttribution's path texts (``"a > b > c"``)."""
        if not sep:
            raise DataValidationError("the path separator is empty", fix="e.g. sep='>'")
        return cls.of([str(t).split(sep) for t in texts], conversions, value, nulls)

    @property
    def total_conversions(self) -> float:
        return float(math.fsum(self.conversions))

    @property
    def total_value(self) -> float:
        return float(math.fsum(self.value))


def one_of(value: str, choices: tuple[str, ...], what: str, parameter: str) -> str:
    """``value`` when it is one of ``choices``; a clear error naming them otherwise.

    Examples
    --------
    >>> one_of("holm", ("holm", "bh"), "p-value adjustment", "adjust")
    'holm'
    """
    if value not in choices:
        raise DataValidationError(
            f"unknown {what} {value!r}", fix=f"use one of {', '.join(choices)}", parameter=parameter
        )
    return value


def _counts(name: str, values: Any, n: int) -> FloatArray:
    out = np.asarray(values, dtype=np.float64).ravel()
    if out.size != n:
        raise DataValidationError(
            f"{name} has {out.size} values for {n} journeys",
            fix=f"give one {name} value per journey",
            parameter=name,
        )
    bad = ~np.isfinite(out) | (out < 0)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise DataValidationError(
            f"{name} of journey {row + 1} is {float(out[row])!r}: not a finite number >= 0",
            fix=f"give {name} as counts or amounts >= 0",
            parameter=name,
        )
    return out


@dataclass(frozen=True)
class Attribution:
    """Conversions and value attributed to each channel by one model."""

    model: str
    channels: tuple[str, ...]
    conversions: FloatArray
    value: FloatArray
    total_conversions: float
    total_value: float
    removal_effects: FloatArray | None = None
    #: Model-specific facts: Markov's order, conversion probability and states;
    #: Shapley's value function, whether exact, the standard errors when sampled.
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready: ``{"model", "channels": {name: {"conversions", "value",
        "removal_effect" (markov)}}, "total_conversions", "total_value", ...}``."""
        channels: dict[str, dict[str, float]] = {}
        for i, name in enumerate(self.channels):
            one = {"conversions": float(self.conversions[i]), "value": float(self.value[i])}
            if self.removal_effects is not None:
                one["removal_effect"] = float(self.removal_effects[i])
            channels[name] = one
        return {
            "model": self.model,
            "channels": channels,
            "total_conversions": self.total_conversions,
            "total_value": self.total_value,
            **self.details,
        }


# ---------------------------------------------------------------------------- rules
def rule_based(
    paths: Paths,
    model: str,
    *,
    direct: str = "direct",
    position: tuple[float, float, float] = (0.4, 0.2, 0.4),
) -> Attribution:
    """Conversions and value by a rule-based model (see the module's definitions).

    Examples
    --------
    >>> p = Paths.parse(["a > b > c", "b"], [2, 1], value=[20.0, 5.0])
    >>> rule_based(p, "linear").conversions.round(3).tolist()
    [0.667, 1.667, 0.667]
    >>> rule_based(p, "position").conversions.round(3).tolist()
    [0.8, 1.4, 0.8]
    """
    credit = _rule_credit(paths.paths, paths.channels, model, direct, position)
    return Attribution(
        model,
        paths.channels,
        paths.conversions @ credit,
        paths.value @ credit,
        paths.total_conversions,
        paths.total_value,
    )


def _rule_credit(
    touches: Sequence[Sequence[int]],
    channels: Sequence[str],
    model: str,
    direct: str,
    position: tuple[float, float, float],
) -> FloatArray:
    """Each path's credit per channel under a rule-based model (rows add up to 1)."""
    one_of(model, RULE_MODELS, "rule-based model", "model")
    first_share, middle_share, last_share = (float(v) for v in position)
    if min(position) < 0 or not math.isclose(sum(position), 1.0, abs_tol=1e-9):
        raise DataValidationError(
            f"position shares {position} are not three shares >= 0 adding up to 1",
            fix="e.g. (0.4, 0.2, 0.4)",
            parameter="position",
        )
    direct_code = list(channels).index(direct) if direct in channels else -1
    credit = np.zeros((len(touches), len(channels)))
    for row, path in enumerate(touches):
        share = credit[row]
        if model == "first":
            share[path[0]] = 1.0
        elif model == "last":
            share[path[-1]] = 1.0
        elif model == "last-non-direct":
            others = [c for c in path if c != direct_code]
            share[others[-1] if others else path[-1]] = 1.0
        elif model == "linear":
            for c in path:
                share[c] += 1.0 / len(path)
        elif model == "linear-unique":
            unique = set(path)
            for c in unique:
                share[c] = 1.0 / len(unique)
        elif len(path) == 1:  # position
            share[path[0]] = 1.0
        elif len(path) == 2:
            share[path[0]] += 0.5
            share[path[1]] += 0.5
        else:
            share[path[0]] += first_share
            share[path[-1]] += last_share
            for c in path[1:-1]:
                share[c] += middle_share / (len(path) - 2)
    return credit


# ---------------------------------------------------------------------------- markov
def markov(paths: Paths, *, order: int = 1) -> Attribution:
    """Removal-effect attribution by an absorbing Markov chain of ``order`` (1-4),
    solved exactly (see the module's definitions).

    Examples
    --------
    The worked example: removal effects (0.5, 1, 1), shares (0.2, 0.4, 0.4).

    >>> p = Paths.parse(["C1 > C2 > C3", "C1", "C2 > C3"], [1, 0, 0], nulls=[0, 1, 1])
    >>> a = markov(p)
    >>> a.removal_effects.round(6).tolist(), (a.conversions / a.total_conversions).tolist()
    ([0.5, 1.0, 1.0], [0.2, 0.4, 0.4])
    >>> round(a.details["conversion_probability"], 6)
    0.333333
    """
    from scipy import sparse
    from scipy.sparse.linalg import spsolve

    if order not in (1, 2, 3, 4):
        raise DataValidationError(
            f"Markov order {order!r} is not 1, 2, 3 or 4",
            fix="pick an order from 1 to 4 (markov_order_likelihood helps choose)",
            parameter="order",
        )
    states: dict[tuple[int, ...], int] = {(): 0}  # () is the start
    moves: dict[tuple[int, int], float] = {}
    ends_conv: dict[int, float] = {}
    ends_null: dict[int, float] = {}
    ends_value: dict[int, float] = {}
    for path, conv, val, null in zip(
        paths.paths, paths.conversions, paths.value, paths.nulls, strict=True
    ):
        weight = conv + null
        if weight <= 0:
            continue
        at = 0
        for i in range(len(path)):
            state = states.setdefault(path[max(0, i + 1 - order) : i + 1], len(states))
            moves[(at, state)] = moves.get((at, state), 0.0) + weight
            at = state
        ends_conv[at] = ends_conv.get(at, 0.0) + conv
        ends_null[at] = ends_null.get(at, 0.0) + null
        ends_value[at] = ends_value.get(at, 0.0) + val
    n = len(states)
    out_weight = np.zeros(n)
    for (a, _), w in moves.items():
        out_weight[a] += w
    for table in (ends_conv, ends_null):
        for a, w in table.items():
            out_weight[a] += w
    total = paths.total_conversions
    channels = len(paths.channels)
    if total <= 0 or out_weight[0] <= 0:
        zeros = np.zeros(channels)
        return Attribution(
            "markov",
            paths.channels,
            zeros,
            zeros.copy(),
            total,
            paths.total_value,
            removal_effects=zeros.copy(),
            details={"order": order, "conversion_probability": 0.0, "states": n - 1},
        )
    rows = [a for a, _ in moves]
    cols = [b for _, b in moves]
    probs = [w / out_weight[a] for (a, _), w in moves.items()]
    q = sparse.csr_matrix((probs, (rows, cols)), shape=(n, n))
    to_conv = np.zeros(n)
    to_value = np.zeros(n)
    for a, w in ends_conv.items():
        to_conv[a] = w / out_weight[a]
        # Each conversion ending here is worth the mean value of those that did.
        to_value[a] = to_conv[a] * (ends_value.get(a, 0.0) / w if w > 0 else 0.0)
    holds = np.zeros((channels, n), dtype=bool)
    for held, code in states.items():
        holds[list(set(held)), code] = True

    def absorbed(keep: np.ndarray[Any, np.dtype[np.bool_]]) -> tuple[float, float]:
        """P(conversion) and E[value] from the start, only ``keep`` states reachable."""
        kept = np.flatnonzero(keep)
        system = sparse.identity(kept.size, format="csc") - q[kept][:, kept].tocsc()
        rhs = np.column_stack([to_conv[kept], to_value[kept]])
        solved = np.asarray(spsolve(system, rhs)).reshape(kept.size, 2)
        start = int(np.searchsorted(kept, 0))
        return float(solved[start, 0]), float(solved[start, 1])

    everything = np.ones(n, dtype=bool)
    p_all, v_all = absorbed(everything)
    effects = np.zeros(channels)
    value_effects = np.zeros(channels)
    for c in range(channels):
        p_without, v_without = absorbed(everything & ~holds[c])
        effects[c] = 1.0 - p_without / p_all if p_all > 0 else 0.0
        value_effects[c] = 1.0 - v_without / v_all if v_all > 0 else 0.0
    # Rounding may leave a removal effect a hair outside [0, 1]: it is a probability ratio.
    effects = np.clip(effects, 0.0, 1.0)
    value_effects = np.clip(value_effects, 0.0, 1.0)
    conv_share = effects / effects.sum() if effects.sum() > 0 else effects
    value_share = value_effects / value_effects.sum() if value_effects.sum() > 0 else value_effects
    return Attribution(
        "markov",
        paths.channels,
        total * conv_share,
        paths.total_value * value_share,
        total,
        paths.total_value,
        removal_effects=effects,
        details={"order": order, "conversion_probability": p_all, "states": n - 1},
    )


def markov_order_likelihood(
    paths: Paths,
    *,
    orders: tuple[int, ...] = (1, 2, 3, 4),
    holdout: float = 0.3,
    seed: int = 0,
    smoothing: float = 1.0,
) -> dict[int, float]:
    """Mean log-likelihood per held-out journey of the chain of each order: a help to
    choose the order (higher is better; a higher order that does not raise it learns
    noise).

    Each path's journeys are split at random (``holdout`` of them held out, binomially,
    seeded); each order's transition frequencies are estimated on the rest, with
    ``smoothing`` added to every possible next step (channels, conversion, null), and
    the held-out journeys' paths, conversions and nulls scored.

    Examples
    --------
    >>> p = Paths.parse(["a > b", "b > a", "a > b > a"], [40, 5, 20], nulls=[60, 95, 30])
    >>> scores = markov_order_likelihood(p, orders=(1, 2))
    >>> sorted(scores), all(v < 0 for v in scores.values())
    ([1, 2], True)
    """
    if not 0 < holdout < 1:
        raise DataValidationError(
            f"holdout {holdout!r} is not in (0, 1)", fix="e.g. 0.3", parameter="holdout"
        )
    rng = np.random.default_rng(seed)
    held_conv = rng.binomial(np.rint(paths.conversions).astype(np.int64), holdout)
    held_null = rng.binomial(np.rint(paths.nulls).astype(np.int64), holdout)
    fit_conv = np.rint(paths.conversions) - held_conv
    fit_null = np.rint(paths.nulls) - held_null
    journeys = float(held_conv.sum() + held_null.sum())
    if journeys == 0:
        raise DataValidationError(
            "too few journeys to hold some out", fix="give more journeys, or a larger holdout"
        )
    steps = len(paths.channels) + 2  # next: a channel, conversion or null
    scores: dict[int, float] = {}
    for order in orders:
        counts: dict[tuple[int, ...], dict[int, float]] = {}

        def states(path: tuple[int, ...], k: int = order) -> list[tuple[int, ...]]:
            return [(), *(path[max(0, i + 1 - k) : i + 1] for i in range(len(path)))]

        for path, conv, null in zip(paths.paths, fit_conv, fit_null, strict=True):
            seen = states(path)
            for state, nxt in zip(seen[:-1], path, strict=True):
                row = counts.setdefault(state, {})
                row[nxt] = row.get(nxt, 0.0) + conv + null
            row = counts.setdefault(seen[-1], {})
            row[-1] = row.get(-1, 0.0) + conv
            row[-2] = row.get(-2, 0.0) + null
        total = 0.0
        for path, conv, null in zip(paths.paths, held_conv, held_null, strict=True):
            if conv + null == 0:
                continue
            seen = states(path)

            def log_p(
                state: tuple[int, ...],
                nxt: int,
                counts: dict[tuple[int, ...], dict[int, float]] = counts,
            ) -> float:
                row = counts.get(state, {})
                return math.log(
                    (row.get(nxt, 0.0) + smoothing) / (sum(row.values()) + smoothing * steps)
                )

            walk = sum(log_p(a, b) for a, b in zip(seen[:-1], path, strict=True))
            total += (conv + null) * walk + conv * log_p(seen[-1], -1) + null * log_p(seen[-1], -2)
        scores[order] = total / journeys
    return scores


# ---------------------------------------------------------------------------- shapley
def shapley(
    paths: Paths,
    *,
    value_function: str = "subset-sum",
    exact_up_to: int = 15,
    samples: int = 20_000,
    seed: int = 0,
) -> Attribution:
    """Shapley-value attribution over whole journeys (see the module's definitions).

    Exact up to ``exact_up_to`` channels (2^n coalitions); above, ``samples`` random
    orders of the channels (seeded), with each value's standard error in
    ``details["standard_errors"]`` (the mean marginal contribution's, scaled as the
    values are).

    Examples
    --------
    >>> p = Paths.parse(["a > b", "a", "b > c > a"], [3, 1, 2], value=[30.0, 10.0, 20.0])
    >>> shapley(p).conversions.round(4).tolist()  # = linear-unique with subset-sum
    [3.1667, 2.1667, 0.6667]
    """
    one_of(value_function, VALUE_FUNCTIONS, "Shapley value function", "value_function")
    n = len(paths.channels)
    if n > 62:
        raise DataValidationError(
            f"{n} channels: Shapley attribution takes at most 62",
            fix="group rare channels together first",
            parameter="channels",
        )
    # The journeys by the set of channels they touch (a bit mask).
    sets: dict[int, list[float]] = {}
    for path, conv, val, null in zip(
        paths.paths, paths.conversions, paths.value, paths.nulls, strict=True
    ):
        mask = 0
        for c in set(path):
            mask |= 1 << c
        acc = sets.setdefault(mask, [0.0, 0.0, 0.0])
        acc[0] += conv
        acc[1] += val
        acc[2] += null
    masks = np.array(list(sets), dtype=np.int64)
    sums = np.array(list(sets.values()), dtype=np.float64).reshape(-1, 3)

    def worth(coalitions: np.ndarray[Any, np.dtype[np.int64]], column: int) -> FloatArray:
        """v(S) of each coalition (bit masks) for conversions (0) or value (1)."""
        if value_function == "subset-sum":
            inside = (masks[None, :] & ~coalitions[:, None]) == 0
            return np.asarray(inside @ sums[:, column], dtype=np.float64)
        inside = (masks[None, :] & ~coalitions[:, None]) == 0
        amount = inside @ sums[:, column]
        journeys = inside @ (sums[:, 0] + sums[:, 2])
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(journeys > 0, amount / journeys, 0.0)

    details: dict[str, Any] = {"value_function": value_function}
    if n <= exact_up_to:
        phi = np.zeros((2, n))
        everyone = np.arange(1 << n, dtype=np.int64)
        sizes = np.array([bin(int(m)).count("1") for m in everyone]) if n else np.zeros(1)
        weights = np.array(
            [math.factorial(s) * math.factorial(n - s - 1) / math.factorial(n) for s in range(n)]
        )
        for column in (0, 1):
            v = worth(everyone, column)
            for c in range(n):
                without = everyone[(everyone >> c) & 1 == 0]
                gains = v[without | (1 << c)] - v[without]
                phi[column, c] = float(np.sum(weights[sizes[without]] * gains))
        details["exact"] = True
    else:
        rng = np.random.default_rng(seed)
        draws = np.zeros((2, samples, n))
        for k in range(samples):
            order = rng.permutation(n)
            prefixes = np.zeros(n + 1, dtype=np.int64)
            for i, c in enumerate(order):
                prefixes[i + 1] = prefixes[i] | (1 << int(c))
            for column in (0, 1):
                v = worth(prefixes, column)
                draws[column, k, order] = np.diff(v)
        phi = draws.mean(axis=1)
        details["exact"] = False
        details["samples"] = samples
        standard_errors = draws.std(axis=1, ddof=1) / math.sqrt(samples)
    totals = (paths.total_conversions, paths.total_value)
    scaled = np.zeros((2, n))
    for column in (0, 1):
        s = phi[column].sum()
        scaled[column] = phi[column] * (totals[column] / s) if s != 0 else 0.0
        if not details["exact"]:
            factor = totals[column] / s if s != 0 else 0.0
            key = "standard_errors" if column == 0 else "value_standard_errors"
            details[key] = {
                name: float(abs(factor) * standard_errors[column, i])
                for i, name in enumerate(paths.channels)
            }
    return Attribution(
        "shapley",
        paths.channels,
        scaled[0],
        scaled[1],
        totals[0],
        totals[1],
        details=details,
    )


# ---------------------------------------------------------------------------- journeys
@dataclass(frozen=True)
class Journeys:
    """Journeys built from touchpoints (:func:`journeys_from_touches`): per journey its
    channels in order, each touch's age in days at the journey's end (its conversion, or
    its last touch), whether it converted and the conversion's value."""

    channels: tuple[str, ...]
    touches: tuple[tuple[int, ...], ...]
    ages: tuple[tuple[float, ...], ...]
    converted: FloatArray
    value: FloatArray
    #: Conversions with no touch within the lookback (not attributed to any channel).
    untouched: int = 0
    #: Each journey's customer (as given to :func:`journeys_from_touches`).
    customers: tuple[Any, ...] = ()

    def paths(self) -> Paths:
        """The journeys aggregated into unique paths (every model but time-decay)."""
        names = [[self.channels[c] for c in journey] for journey in self.touches]
        return Paths.of(names, self.converted, value=self.value, nulls=1 - self.converted)


def _micros(times: Any, n: int) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Times (datetimes, numpy datetime64 or an Arrow timestamp array) as microseconds."""
    import pyarrow as pa

    if isinstance(times, np.ndarray) and np.issubdtype(times.dtype, np.datetime64):
        return np.asarray(times.astype("datetime64[us]").astype(np.int64), dtype=np.int64)
    array = times if isinstance(times, (pa.Array, pa.ChunkedArray)) else pa.array(list(times))
    if not pa.types.is_timestamp(array.type) or array.null_count:
        raise DataValidationError(
            "the touchpoints' times are not all times",
            fix="give every row its time (a datetime)",
            parameter="times",
        )
    as_us = array.cast(pa.timestamp("us", tz=array.type.tz)).cast(pa.int64())
    return np.asarray(as_us.to_numpy(zero_copy_only=False), dtype=np.int64)


def _texts(values: Any) -> Any:
    """Values as an Arrow string array (ids and channel names compare as text)."""
    import pyarrow as pa

    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(list(values))
    if not pa.types.is_string(array.type) and not pa.types.is_large_string(array.type):
        array = pa.array([None if v is None else str(v) for v in array.to_pylist()], pa.string())
    return array.combine_chunks() if isinstance(array, pa.ChunkedArray) else array


def _floats(values: Any) -> FloatArray:
    """Numbers (a sequence, or an Arrow / numpy array) as floats, a missing one as 0."""
    import pyarrow as pa

    if isinstance(values, np.ndarray):
        return np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=np.inf, neginf=-np.inf)
    array = values if isinstance(values, (pa.Array, pa.ChunkedArray)) else pa.array(list(values))
    array = array.cast(pa.float64()).fill_null(0.0)
    return np.asarray(array.to_numpy(zero_copy_only=False), dtype=np.float64)


def journeys_from_touches(
    customers: Sequence[Any],
    times: Sequence[Any],
    channels: Sequence[Any],
    conversions: Sequence[bool] | np.ndarray[Any, np.dtype[np.bool_]],
    values: Sequence[float] | None = None,
    *,
    lookback_days: float = 30.0,
    session_gap_minutes: float = 30.0,
) -> Journeys:
    """Journeys from touchpoint rows: per customer, in time order, the touches before a
    conversion row form one journey (only those within ``lookback_days`` of the
    conversion), converting; the touches after the customer's last conversion form one
    that did not. A touch of the channel the journey's previous touch had, within
    ``session_gap_minutes`` of it, is the same touch (one session). A conversion row is
    not a touch; its value is ``values`` (0 without). A conversion with no touch within
    the lookback is counted in ``untouched``, not attributed.

    The rows may be sequences or Arrow / numpy arrays (times as datetimes or
    timestamps); customers and channels compare as text, rows of one customer at the
    same moment keep their given order. Vectorised: a million rows take about a second.

    Examples
    --------
    >>> import datetime as dt
    >>> at = [dt.datetime(2025, 1, d, 10) for d in (1, 2, 2, 5, 9)]
    >>> j = journeys_from_touches(["a"] * 5, at, ["email", "search", "search", "x", "email"],
    ...                           [False, False, False, True, False], [0, 0, 0, 40.0, 0])
    >>> [[j.channels[c] for c in t] for t in j.touches], j.converted.tolist()
    ([['email', 'search'], ['email']], [1.0, 0.0])
    >>> j.ages[0], j.customers
    ((4.0, 3.0), ('a', 'a'))
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(customers)
    if not (len(times) == len(channels) == len(conversions) == n) or (
        values is not None and len(values) != n
    ):
        raise DataValidationError(
            "customers, times, channels, conversions and values differ in length",
            fix="give one of each per touchpoint row",
        )
    if lookback_days <= 0 or session_gap_minutes < 0:
        raise DataValidationError(
            "the lookback must be > 0 days and the session gap >= 0 minutes",
            fix="e.g. lookback 30 days, session gap 30 minutes",
            parameter="lookback_days",
        )
    if n == 0:
        return Journeys((), (), (), np.zeros(0), np.zeros(0))
    who = _texts(customers)
    at = _micros(times, n)
    converting = np.asarray(conversions, dtype=bool)
    amounts = np.zeros(n) if values is None else _floats(values)
    order = pc.sort_indices(
        pa.table({"c": who, "t": at, "i": np.arange(n)}),
        sort_keys=[("c", "ascending"), ("t", "ascending"), ("i", "ascending")],
    ).to_numpy()
    who_sorted = who.take(pa.array(order))
    person = np.asarray(pc.dictionary_encode(who_sorted).indices.to_numpy(), dtype=np.int64)
    t = at[order]
    conv = converting[order]
    touch = ~conv
    # Channel codes in order of first appearance among the touches, as they are met.
    names = _texts(channels).take(pa.array(order)).filter(pa.array(touch))
    if names.null_count:
        raise DataValidationError(
            "a touch has no channel", fix="give every touch its channel", parameter="channels"
        )
    encoded = pc.dictionary_encode(names)
    channel_names = tuple(str(v) for v in encoded.dictionary.to_pylist())
    code = np.full(n, -1, dtype=np.int64)
    code[touch] = encoded.indices.to_numpy()
    # A journey starts at a customer's first row and after each conversion row.
    start = np.r_[True, (person[1:] != person[:-1]) | conv[:-1]]
    journey = np.cumsum(start) - 1
    last = np.r_[np.flatnonzero(start[1:]), n - 1]  # each journey's last row
    ended_converting = conv[last]
    end = t[last]
    # One session: a touch followed, in its journey, by a touch of the same channel within
    # the gap is the same touch; the later moment counts.
    gap = round(session_gap_minutes * 60 * 1_000_000)
    same = np.r_[
        touch[1:]
        & touch[:-1]
        & (journey[1:] == journey[:-1])
        & (code[1:] == code[:-1])
        & (t[1:] - t[:-1] <= gap),
        False,
    ]
    kept = touch & ~same
    lookback = round(lookback_days * 86_400 * 1_000_000)
    age_us = end[journey] - t
    kept &= ~ended_converting[journey] | (age_us <= lookback)
    held = np.bincount(journey[kept], minlength=journey[-1] + 1)
    untouched = int((ended_converting & (held == 0)).sum())
    out = np.flatnonzero(held > 0)
    rows = np.flatnonzero(kept)
    bounds = np.cumsum(held[out])[:-1]
    codes = np.split(code[rows], bounds) if out.size else []
    ages = np.split(age_us[rows] / 1_000_000 / 86_400, bounds) if out.size else []
    value = np.where(ended_converting[out], amounts[order][last[out]], 0.0)
    return Journeys(
        channel_names,
        tuple(tuple(c.tolist()) for c in codes),
        tuple(tuple(a.tolist()) for a in ages),
        ended_converting[out].astype(np.float64),
        np.asarray(value, dtype=np.float64),
        untouched,
        tuple(who_sorted.take(pa.array(last[out])).to_pylist()),
    )


def journey_credit(
    journeys: Journeys,
    model: str = "linear",
    *,
    direct: str = "direct",
    position: tuple[float, float, float] = (0.4, 0.2, 0.4),
    half_life_days: float = 7.0,
) -> FloatArray:
    """Each journey's credit per channel (journeys x channels, rows adding up to 1) by a
    model that credits journey by journey: a rule-based one or ``time-decay``. (Markov
    and Shapley credit channels over all journeys at once, not one journey.)

    Examples
    --------
    >>> j = Journeys(("a", "b"), ((0, 1, 1),), ((7.0, 1.0, 0.0),), np.array([1.0]),
    ...              np.array([30.0]))
    >>> journey_credit(j, "linear").round(3).tolist()
    [[0.333, 0.667]]
    >>> journey_credit(j, "time-decay").round(3).tolist()
    [[0.208, 0.792]]
    """
    if model not in ("time-decay", "linear"):
        return _rule_credit(journeys.touches, journeys.channels, model, direct, position)
    if not half_life_days > 0:
        raise DataValidationError(
            f"half-life {half_life_days!r} is not > 0 days", fix="e.g. 7", parameter="half_life"
        )
    # Every touch of every journey at once: its journey, channel and weight.
    lengths = np.fromiter((len(t) for t in journeys.touches), np.int64, len(journeys.touches))
    total = int(lengths.sum())
    row = np.repeat(np.arange(lengths.size), lengths)
    codes = np.fromiter((c for t in journeys.touches for c in t), np.int64, total)
    if model == "linear":
        weights = 1.0 / lengths[row]
    else:
        ages = np.fromiter((a for t in journeys.ages for a in t), np.float64, total)
        weights = np.exp2(-ages / half_life_days)
        weights /= np.bincount(row, weights, minlength=lengths.size)[row]
    credit = np.zeros((lengths.size, len(journeys.channels)))
    np.add.at(credit, (row, codes), weights)
    return credit


def time_decay(journeys: Journeys, *, half_life_days: float = 7.0) -> Attribution:
    """Each conversion's credit split over its journey's touches by 2^(-age / half-life),
    age the touch's days before the conversion.

    Examples
    --------
    >>> j = Journeys(("a", "b"), ((0, 1),), ((7.0, 0.0),), np.array([1.0]), np.array([30.0]))
    >>> time_decay(j).conversions.round(4).tolist()  # weights 1/2 and 1
    [0.3333, 0.6667]
    """
    credit = journey_credit(journeys, "time-decay", half_life_days=half_life_days)
    return Attribution(
        "time-decay",
        journeys.channels,
        journeys.converted @ credit,
        journeys.value @ credit,
        float(math.fsum(journeys.converted)),
        float(math.fsum(journeys.value)),
        details={"half_life_days": half_life_days},
    )


def attribute(
    paths: Paths | Journeys, model: str, *, order: int = 1, **options: Any
) -> Attribution:
    """One model's attribution (``MODELS``) of paths or journeys: ``order`` for markov,
    ``value_function`` for shapley, ``half_life_days`` for time-decay (journeys only),
    ``direct`` and ``position`` for the rule-based ones.

    Examples
    --------
    >>> p = Paths.parse(["C1 > C2 > C3", "C1", "C2 > C3"], [1, 0, 0], nulls=[0, 1, 1])
    >>> attribute(p, "last").to_dict()["channels"]["C3"]["conversions"]
    1.0
    """
    one_of(model, MODELS, "attribution model", "model")
    if model == "time-decay":
        if not isinstance(paths, Journeys):
            raise DataValidationError(
                "time-decay needs each touch's time: a path table has none",
                fix="attribute a touchpoints file (`format='touchpoints'`), or pick another model",
                parameter="model",
            )
        result = time_decay(paths, **options)
    else:
        given = paths.paths() if isinstance(paths, Journeys) else paths
        if model == "markov":
            result = markov(given, order=order)
        elif model == "shapley":
            result = shapley(given, **options)
        else:
            result = rule_based(given, model, **options)
    if isinstance(paths, Journeys):
        result.details["conversions_without_touches"] = paths.untouched
    return result
