"""Deterministic demo data with planted ground truth.

:func:`generate_demo` simulates a European multi-category retailer: customers, orders with
returns, order lines, marketing touchpoints, weekly channel spend, a retention experiment and
a contact log, all following the data contract of :mod:`segvalue.data.contract`. Every
number is drawn from a known model, and the model's parameters are returned next to the
tables (``DemoData.truth``), so that each later stage can be checked against the truth it
should recover:

- six latent personas, well separated in (age, income, purchase frequency, order value,
  category mix, channel mix, discount use), for clustering and persona validation;
- BG/NBD purchase dynamics (Fader, Hardie & Lee 2005, "Counting your customers the easy
  way", Marketing Science 24(2)) with gamma-gamma spend (Fader, Hardie & Lee 2005,
  "RFM and CLV", JMR 42(4)) per persona, for the CLV models;
- a saturating Hill response of revenue to weekly spend per channel, for response curves
  and budget allocation;
- a persona-specific treatment effect in the experiment, for lift and uplift models.

Conventions, chosen so that no validator can disagree about the horizon: every event
happens strictly before 00:00 on ``as_of``; time inside the simulation is in weeks;
customer-level truth is exact (drawn, not estimated).

The module uses numpy and pyarrow only and is vectorised throughout: one million customers
generate in well under a minute on two cores.
"""

from __future__ import annotations

import datetime
import os
import pathlib
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from numpy.typing import NDArray

from segvalue.errors import ConfigError

__all__ = ["DEMO_TABLES", "DemoData", "demo_segments", "generate_demo", "write_demo"]

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

DEMO_TABLES: Final[tuple[str, ...]] = (
    "customers",
    "orders",
    "order_lines",
    "touchpoints",
    "channel_spend",
    "experiments",
    "contact_log",
)

_DAY_S: Final = 86_400
_WEEK_S: Final = 7 * _DAY_S
_MIN_CUSTOMERS: Final = 100
_MAX_CUSTOMERS: Final = 5_000_000
_EXPERIMENT_ID: Final = "EXP-2025-RETENTION"
# Assignment happens 8 to 4 weeks before as_of, so that every 4-week outcome window is
# complete by as_of (nobody's outcome is censored).
_ASSIGN_FROM_WEEKS: Final = 8
_ASSIGN_TO_WEEKS: Final = 4
_OUTCOME_WEEKS: Final = 4

_CATEGORIES: Final = (
    "fashion",
    "electronics",
    "home",
    "beauty",
    "sports",
    "books",
    "toys",
    "grocery",
    "garden",
    "pets",
)
# Gross margin rate per category, used for the orders' margin column.
_CATEGORY_MARGIN: Final = (0.45, 0.12, 0.35, 0.50, 0.30, 0.25, 0.35, 0.18, 0.32, 0.28)
# Basket-building categories are bought in larger quantities.
_CATEGORY_EXTRA_QUANTITY: Final = (0.1, 0.05, 0.15, 0.4, 0.15, 0.1, 0.2, 0.9, 0.3, 0.6)
_BRANDS: Final = (
    ("Nordwind", "Velour & Co", "Urbanista", "Linea", "Maison Clair", "Basics Lab"),
    ("Voltix", "Kepler", "Nimbus", "Ohmwerk", "Pixelia", "Arcton"),
    ("Casa Nova", "Hjem", "Lumiere Home", "Oakridge", "Domus", "Tidy Nest"),
    ("Belle Rose", "Aqualis", "Purea", "Skinlab", "Lys", "Glowa"),
    ("Stride", "Alpenpeak", "Kinetix", "Trailform", "Veloce", "Fitnord"),
    ("Folio", "Inkwell", "Pagewright", "Libra Press", "Quill", "Tome & Tale"),
    ("Kubu", "Playnest", "Tinker", "Bimbo Blocks", "Starkid", "Wobble"),
    ("Frisk", "Granero", "Daily Basket", "Ortolano", "Bakehus", "Pantry Co"),
    ("Verdea", "Rootwell", "Sprout & Spade", "Hortus", "Bloomfield", "Terra"),
    ("Whisker", "Pawsome", "Canis", "Felix & Fido", "Barkley", "Nibble"),
)
_PRODUCTS_PER_CATEGORY: Final = 250
_ORDER_CHANNELS: Final = ("web", "app", "store")
_TOUCH_CHANNELS: Final = ("email", "paid_social", "search_ads", "app_push", "onsite")
_TOUCH_EVENTS: Final = ("impression", "click", "open", "visit", "conversion")
_CONTACT_CHANNELS: Final = ("email", "app_push", "sms")
_CAMPAIGN_CODES: Final = ("EM", "PS", "SA", "AP", "OS", "SM")  # touch channels, then sms
_CONSENTS: Final = ("consent_email", "consent_sms", "consent_push", "consent_ads")
_GENDERS: Final = ("female", "male", "other")
_EDUCATION: Final = ("secondary", "vocational", "bachelor", "master", "doctorate")
_OCCUPATIONS: Final = (
    "student",
    "employee",
    "skilled_trade",
    "manager",
    "professional",
    "self_employed",
    "retired",
    "homemaker",
)
_MARITAL: Final = ("single", "married", "partnered", "divorced", "widowed")
_LIFESTYLES: Final = (
    "family_centred",
    "trend_driven",
    "established_comfort",
    "traditional",
    "digital_native",
    "green_living",
    "busy_professional",
)
_INTERESTS: Final = (
    "cooking",
    "fashion",
    "gaming",
    "travel",
    "gardening",
    "reading",
    "fitness",
    "home_decor",
    "technology",
    "outdoors",
)
_VALUES: Final = (
    "security",
    "self_expression",
    "quality",
    "tradition",
    "thrift",
    "sustainability",
    "achievement",
)
_BENEFITS: Final = ("price", "quality", "convenience", "sustainability", "status", "novelty")

# country, region, city, postal prefix, postal code length, climate zone, market size
# (relative weight before persona preferences)
_CITIES: Final = (
    ("DE", "Berlin", "Berlin", "10", 5, "continental", 6),
    ("DE", "Hamburg", "Hamburg", "20", 5, "temperate", 4),
    ("DE", "Bavaria", "Munich", "80", 5, "continental", 4),
    ("DE", "North Rhine-Westphalia", "Cologne", "50", 5, "temperate", 3),
    ("DE", "Saxony", "Leipzig", "04", 5, "continental", 2),
    ("FR", "Île-de-France", "Paris", "75", 5, "temperate", 7),
    ("FR", "Auvergne-Rhône-Alpes", "Lyon", "69", 5, "temperate", 3),
    ("FR", "Provence-Alpes-Côte d'Azur", "Marseille", "13", 5, "mediterranean", 2),
    ("FR", "Nouvelle-Aquitaine", "Bordeaux", "33", 5, "temperate", 2),
    ("NL", "North Holland", "Amsterdam", "10", 4, "temperate", 3),
    ("NL", "Utrecht", "Utrecht", "35", 4, "temperate", 2),
    ("ES", "Community of Madrid", "Madrid", "28", 5, "mediterranean", 5),
    ("ES", "Catalonia", "Barcelona", "08", 5, "mediterranean", 4),
    ("ES", "Valencian Community", "Valencia", "46", 5, "mediterranean", 2),
    ("IT", "Lombardy", "Milan", "20", 5, "continental", 4),
    ("IT", "Lazio", "Rome", "00", 5, "mediterranean", 4),
    ("IT", "Campania", "Naples", "80", 5, "mediterranean", 2),
    ("SE", "Stockholm County", "Stockholm", "11", 5, "nordic", 3),
    ("SE", "Västra Götaland", "Gothenburg", "41", 5, "nordic", 2),
    ("DK", "Capital Region", "Copenhagen", "1", 4, "nordic", 2),
    ("FI", "Uusimaa", "Helsinki", "00", 5, "nordic", 2),
    ("AT", "Vienna", "Vienna", "1", 4, "continental", 3),
    ("PL", "Masovia", "Warsaw", "0", 5, "continental", 3),
    ("PL", "Lesser Poland", "Krakow", "3", 5, "continental", 2),
)
_CITY_NAMES: Final = tuple(c[2] for c in _CITIES)


@dataclass(frozen=True)
class _Persona:
    """Parameters of one latent persona: the truth a segmentation should rediscover."""

    name: str
    share: float
    # BG/NBD: lambda ~ Gamma(shape r, rate alpha) per week; dropout p ~ Beta(a, b).
    r: float
    alpha: float
    a: float
    b: float
    # Gamma-gamma spend: nu ~ Gamma(shape q, rate gamma); order value ~ Gamma(shape p, rate nu).
    spend_p: float
    spend_q: float
    spend_gamma: float
    age_mean: float
    age_sd: float
    income_mean: float
    household_extra: float  # household size is 1 + Poisson(household_extra)
    lines_extra: float  # lines per order are 1 + Poisson(lines_extra)
    discount_propensity: float  # mean share of a customer's orders that carry a discount
    return_rate: float
    touch_rate: float  # mean touchpoints per customer over the history
    uplift: float  # treatment effect on the 4-week conversion probability (alive customers)
    baseline_dead: float  # 4-week conversion probability of a customer who has churned
    categories: Mapping[str, float]
    channels: Mapping[str, float]  # touchpoint channel mix
    order_channels: tuple[float, float, float]  # web, app, store
    consent: tuple[float, float, float, float]  # email, sms, push, ads
    gender: tuple[float, float, float]
    education: Mapping[str, float]
    occupation: Mapping[str, float]
    marital: Mapping[str, float]
    lifestyle: Mapping[str, float]
    interests: Mapping[str, float]
    values: Mapping[str, float]
    benefit: Mapping[str, float]
    cities: Mapping[str, float]  # multipliers on the city base weights

    @property
    def mean_spend(self) -> float:
        """Population mean order value, E[p / nu] = p * gamma / (q - 1)."""
        return self.spend_p * self.spend_gamma / (self.spend_q - 1.0)


_PERSONAS: Final = (
    _Persona(
        name="Budget families",
        share=0.22,
        r=1.6,
        alpha=12.0,
        a=1.0,
        b=6.0,
        spend_p=4.0,
        spend_q=9.0,
        spend_gamma=90.0,
        age_mean=42.0,
        age_sd=4.5,
        income_mean=32_000.0,
        household_extra=2.6,
        lines_extra=1.6,
        discount_propensity=0.35,
        return_rate=0.04,
        touch_rate=4.0,
        uplift=0.06,
        baseline_dead=0.02,
        categories={"grocery": 0.35, "pets": 0.25, "toys": 0.15, "home": 0.10},
        channels={"email": 0.55, "app_push": 0.30},
        order_channels=(0.45, 0.25, 0.30),
        consent=(0.75, 0.40, 0.55, 0.55),
        gender=(0.55, 0.43, 0.02),
        education={"secondary": 4, "vocational": 5},
        occupation={"employee": 6, "skilled_trade": 4, "homemaker": 3},
        marital={"married": 8, "partnered": 3},
        lifestyle={"family_centred": 12, "traditional": 3},
        interests={"cooking": 8, "home_decor": 3, "outdoors": 2},
        values={"security": 8, "thrift": 6},
        benefit={"price": 10, "convenience": 3},
        cities={"Leipzig": 2.5, "Cologne": 2, "Bordeaux": 2.5, "Valencia": 2.5, "Krakow": 2},
    ),
    _Persona(
        name="Young trend-seekers",
        share=0.20,
        r=1.2,
        alpha=10.0,
        a=1.6,
        b=4.5,
        spend_p=3.0,
        spend_q=7.0,
        spend_gamma=120.0,
        age_mean=24.0,
        age_sd=3.0,
        income_mean=24_000.0,
        household_extra=0.5,
        lines_extra=0.8,
        discount_propensity=0.15,
        return_rate=0.08,
        touch_rate=6.0,
        uplift=0.03,
        baseline_dead=0.03,
        categories={"fashion": 0.50, "beauty": 0.30},
        channels={"paid_social": 0.60, "app_push": 0.25},
        order_channels=(0.30, 0.60, 0.10),
        consent=(0.45, 0.25, 0.70, 0.70),
        gender=(0.52, 0.42, 0.06),
        education={"secondary": 4, "bachelor": 6},
        occupation={"student": 8, "employee": 5},
        marital={"single": 12, "partnered": 4},
        lifestyle={"trend_driven": 12, "digital_native": 4},
        interests={"fashion": 8, "gaming": 3, "fitness": 3},
        values={"self_expression": 10, "achievement": 3},
        benefit={"novelty": 9, "status": 3},
        cities={"Berlin": 2.5, "Paris": 2.5, "Madrid": 2.5, "Barcelona": 2.5, "Amsterdam": 2.5},
    ),
    _Persona(
        name="Affluent loyalists",
        share=0.12,
        r=2.4,
        alpha=14.0,
        a=0.6,
        b=8.0,
        spend_p=5.0,
        spend_q=10.0,
        spend_gamma=315.0,
        age_mean=60.0,
        age_sd=6.0,
        income_mean=130_000.0,
        household_extra=1.2,
        lines_extra=0.7,
        discount_propensity=0.03,
        return_rate=0.03,
        touch_rate=4.0,
        uplift=0.0,
        baseline_dead=0.02,
        categories={"home": 0.45, "electronics": 0.20, "fashion": 0.15},
        channels={"email": 0.45, "onsite": 0.45},
        order_channels=(0.35, 0.15, 0.50),
        consent=(0.80, 0.20, 0.30, 0.40),
        gender=(0.48, 0.51, 0.01),
        education={"master": 7, "doctorate": 3, "bachelor": 3},
        occupation={"manager": 7, "professional": 4, "retired": 3, "self_employed": 3},
        marital={"married": 12},
        lifestyle={"established_comfort": 12, "traditional": 2},
        interests={"travel": 7, "gardening": 4, "home_decor": 3},
        values={"quality": 10, "tradition": 3},
        benefit={"quality": 9, "status": 4},
        cities={"Munich": 3, "Paris": 2, "Milan": 2.5, "Vienna": 3, "Hamburg": 2.5},
    ),
    _Persona(
        name="Occasional gifters",
        share=0.18,
        r=0.9,
        alpha=28.0,
        a=0.9,
        b=3.0,
        spend_p=3.0,
        spend_q=6.0,
        spend_gamma=115.0,
        age_mean=50.0,
        age_sd=5.0,
        income_mean=55_000.0,
        household_extra=1.0,
        lines_extra=0.9,
        discount_propensity=0.10,
        return_rate=0.05,
        touch_rate=3.0,
        uplift=0.10,
        baseline_dead=0.03,
        categories={"toys": 0.40, "books": 0.35, "beauty": 0.10},
        channels={"search_ads": 0.70, "email": 0.15},
        order_channels=(0.55, 0.10, 0.35),
        consent=(0.60, 0.20, 0.25, 0.45),
        gender=(0.58, 0.41, 0.01),
        education={"vocational": 4, "bachelor": 4},
        occupation={"employee": 7, "self_employed": 3},
        marital={"married": 6, "divorced": 3},
        lifestyle={"traditional": 8, "busy_professional": 4},
        interests={"reading": 8, "travel": 3},
        values={"tradition": 6, "security": 4},
        benefit={"convenience": 9, "quality": 3},
        cities={},
    ),
    _Persona(
        name="Digital bargain hunters",
        share=0.16,
        r=1.5,
        alpha=8.0,
        a=1.3,
        b=4.0,
        spend_p=4.0,
        spend_q=8.0,
        spend_gamma=63.0,
        age_mean=30.0,
        age_sd=3.5,
        income_mean=42_000.0,
        household_extra=0.9,
        lines_extra=0.6,
        discount_propensity=0.70,
        return_rate=0.06,
        touch_rate=6.0,
        uplift=0.15,
        baseline_dead=0.03,
        categories={"electronics": 0.55, "sports": 0.25},
        channels={"app_push": 0.40, "search_ads": 0.35, "paid_social": 0.15},
        order_channels=(0.40, 0.55, 0.05),
        consent=(0.55, 0.35, 0.75, 0.75),
        gender=(0.40, 0.57, 0.03),
        education={"bachelor": 5, "vocational": 4},
        occupation={"employee": 7, "skilled_trade": 3},
        marital={"single": 6, "partnered": 5},
        lifestyle={"digital_native": 12, "trend_driven": 2},
        interests={"technology": 8, "gaming": 5},
        values={"thrift": 10, "achievement": 2},
        benefit={"price": 10, "novelty": 2},
        cities={"Warsaw": 3, "Krakow": 2.5, "Madrid": 2, "Berlin": 2, "Naples": 2.5},
    ),
    _Persona(
        name="Eco-conscious professionals",
        share=0.12,
        r=2.0,
        alpha=20.0,
        a=0.8,
        b=7.0,
        spend_p=4.0,
        spend_q=9.0,
        spend_gamma=190.0,
        age_mean=36.0,
        age_sd=4.0,
        income_mean=80_000.0,
        household_extra=1.0,
        lines_extra=1.0,
        discount_propensity=0.05,
        return_rate=0.03,
        touch_rate=4.0,
        uplift=-0.03,
        baseline_dead=0.02,
        categories={"garden": 0.35, "grocery": 0.25, "sports": 0.15, "books": 0.10},
        channels={"onsite": 0.55, "email": 0.30},
        order_channels=(0.50, 0.30, 0.20),
        consent=(0.70, 0.15, 0.35, 0.30),
        gender=(0.56, 0.40, 0.04),
        education={"master": 8, "bachelor": 4},
        occupation={"professional": 9, "manager": 3},
        marital={"partnered": 7, "single": 4},
        lifestyle={"green_living": 12, "busy_professional": 4},
        interests={"outdoors": 6, "gardening": 4, "fitness": 3},
        values={"sustainability": 12},
        benefit={"sustainability": 10, "quality": 3},
        cities={
            "Stockholm": 3,
            "Gothenburg": 3,
            "Copenhagen": 3,
            "Helsinki": 3,
            "Amsterdam": 2,
            "Utrecht": 2.5,
        },
    ),
)

# Share of touchpoints that precede (or are) a purchase; the rest are spread over the
# customer's tenure. Anchoring gives attribution models real paths to find.
_ANCHORED_TOUCH_SHARE: Final = 0.5
# Event probabilities per channel for passive touches and for touches that lead to an order,
# columns in _TOUCH_EVENTS order.
_EVENTS_PASSIVE: Final = (
    (0.0, 0.15, 0.85, 0.0, 0.0),  # email: opens, some clicks
    (0.90, 0.10, 0.0, 0.0, 0.0),  # paid_social
    (0.60, 0.40, 0.0, 0.0, 0.0),  # search_ads
    (0.0, 0.20, 0.80, 0.0, 0.0),  # app_push
    (0.0, 0.0, 0.0, 1.0, 0.0),  # onsite
)
_EVENTS_ANCHORED: Final = (
    (0.0, 0.55, 0.30, 0.0, 0.15),
    (0.30, 0.55, 0.0, 0.0, 0.15),
    (0.0, 0.80, 0.0, 0.0, 0.20),
    (0.0, 0.55, 0.30, 0.0, 0.15),
    (0.0, 0.0, 0.0, 0.75, 0.25),
)
# EUR per event: e-mail and push cost a fraction of a cent; paid social is bought per
# impression (CPM ~ 6 EUR) with clicks priced like CPC, search per click.
_EVENT_COST: Final = (
    (0.0, 0.001, 0.001, 0.0, 0.0),
    (0.006, 0.45, 0.0, 0.0, 0.0),
    (0.0, 0.70, 0.0, 0.0, 0.0),
    (0.0, 0.0005, 0.0005, 0.0, 0.0),
    (0.0, 0.0, 0.0, 0.0, 0.0),
)
# Sends without any recorded response, per customer over the history, if consented.
_EXTRA_SENDS: Final = (2.0, 1.0, 0.4)  # email, app_push, sms

# Weekly revenue as a Hill function of spend, for a business of 10,000 customers; scaled
# linearly with n_customers. beta: saturation revenue, k: half-saturation spend, slope: shape.
_RESPONSE: Final = (
    # channel, beta, k, slope, typical weekly spend
    ("email", 3_000.0, 150.0, 1.0, 140.0),
    ("paid_social", 6_000.0, 1_500.0, 1.4, 1_400.0),
    ("search_ads", 8_000.0, 1_200.0, 1.1, 1_100.0),
    ("app_push", 1_500.0, 60.0, 1.0, 55.0),
    ("onsite", 2_500.0, 300.0, 1.2, 280.0),
)
_RESPONSE_SCALE_CUSTOMERS: Final = 10_000
_RESPONSE_ORDER_VALUE: Final = 70.0  # EUR per conversion in channel_spend


@dataclass(frozen=True)
class DemoData:
    """Demo tables and the ground truth they were drawn from.

    Attributes
    ----------
    tables
        The seven contract tables: ``customers``, ``orders``, ``order_lines``,
        ``touchpoints``, ``channel_spend``, ``experiments``, ``contact_log``.
    truth
        ``customers`` (per-customer persona, BG/NBD rate and dropout probability, alive
        flag, death time, expected order value, true uplift), ``personas`` (one row per
        persona with its parameters) and ``channel_response`` (the Hill curve per channel).
    as_of
        The as-of date; every event happens strictly before 00:00 on this day.
    seed
        The seed the data were generated with.
    n_customers
        Number of customers.
    """

    tables: dict[str, pa.Table]
    truth: dict[str, pa.Table]
    as_of: datetime.date
    seed: int
    n_customers: int


# --------------------------------------------------------------------------- helpers


def _digit_matrix(
    numbers: IntArray, width: int, prefix: str, suffix: str = ""
) -> NDArray[np.uint8]:
    """ASCII bytes of ``prefix + zero-padded number + suffix``, one fixed-width row each."""
    head = np.frombuffer(prefix.encode("ascii"), dtype=np.uint8)
    tail = np.frombuffer(suffix.encode("ascii"), dtype=np.uint8)
    out = np.empty((numbers.shape[0], head.size + width + tail.size), dtype=np.uint8)
    out[:, : head.size] = head
    out[:, head.size + width :] = tail
    rest = numbers.astype(np.int64, copy=True)
    for col in range(head.size + width - 1, head.size - 1, -1):
        out[:, col] = (rest % 10 + 48).astype(np.uint8)
        rest //= 10
    return out


def _strings(matrix: NDArray[np.uint8]) -> pa.Array:
    """A pyarrow string array from fixed-width ASCII rows, without a Python loop."""
    n, row = matrix.shape
    if n * row >= 2**31:  # int32 offsets of the string type
        raise ValueError("string column too large for one array")
    offsets = np.arange(n + 1, dtype=np.int32) * np.int32(row)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(matrix.tobytes())]
    )


def _id_strings(numbers: IntArray, width: int, prefix: str, suffix: str = "") -> pa.Array:
    return _strings(_digit_matrix(numbers, width, prefix, suffix))


def _id_width(largest: int, minimum: int) -> int:
    return max(minimum, len(str(max(largest, 0))))


def _labels(names: Sequence[str], codes: NDArray[np.integer]) -> pa.Array:
    """Strings ``names[codes]``, built by Arrow's take (fast for millions of rows)."""
    return pa.array(list(names), type=pa.string()).take(pa.array(codes.astype(np.int32)))


def _cumulative(weights: FloatArray) -> FloatArray:
    """Row-normalised cumulative probabilities.

    Dividing by the running total makes the last positive column and any zero-weight
    columns after it exactly 1.0, so a uniform draw in [0, 1) can never select a
    zero-weight option.
    """
    cum = np.cumsum(weights, axis=1)
    return cum / cum[:, -1:]


def _draw_from_rows(
    rng: np.random.Generator, rows: NDArray[np.integer], cum: FloatArray
) -> IntArray:
    """Draw one column index per item from the categorical distribution ``cum[rows[i]]``.

    Flattening ``row + cum[row]`` gives one increasing array, so a single searchsorted does
    inverse-CDF sampling for every item without materialising ``cum[rows]``.
    """
    n_rows, k = cum.shape
    flat = (cum + np.arange(n_rows, dtype=np.float64)[:, None]).ravel()
    rows64 = rows.astype(np.int64)
    pos = np.searchsorted(flat, rows64 + rng.random(rows64.shape[0]), side="right")
    drawn: IntArray = np.clip(pos - rows64 * k, 0, k - 1).astype(np.int64)
    return drawn


def _option_weights(options: Sequence[str], boosts: Mapping[str, float]) -> FloatArray:
    """Weights of a persona over options: 1 everywhere plus its boosts (never deterministic)."""
    unknown = set(boosts) - set(options)
    if unknown:  # a typo in the persona table would silently drop a preference
        raise ValueError(f"unknown options {sorted(unknown)}")
    return np.array([1.0 + boosts.get(o, 0.0) for o in options])


def _mix(options: Sequence[str], favoured: Mapping[str, float]) -> FloatArray:
    """A probability vector: favoured options at their share, the remainder spread evenly."""
    unknown = set(favoured) - set(options)
    if unknown:
        raise ValueError(f"unknown options {sorted(unknown)}")
    rest = (1.0 - sum(favoured.values())) / (len(options) - len(favoured))
    return np.array([favoured.get(o, rest) for o in options])


def _persona_draw(
    rng: np.random.Generator,
    persona: IntArray,
    options: Sequence[str],
    boosts: Sequence[Mapping[str, float]],
) -> IntArray:
    weights = np.stack([_option_weights(options, b) for b in boosts])
    return _draw_from_rows(rng, persona, _cumulative(weights))


def _segment_positions(counts: IntArray) -> tuple[IntArray, IntArray]:
    """For items grouped in consecutive segments of ``counts``: (segment id, index within)."""
    seg = np.repeat(np.arange(counts.shape[0], dtype=np.int64), counts)
    starts = np.cumsum(counts) - counts
    return seg, np.arange(seg.shape[0], dtype=np.int64) - starts[seg]


def _timestamps(seconds: IntArray) -> pa.Array:
    return pa.array(seconds.astype("datetime64[s]"), type=pa.timestamp("s"))


def _cents_to_eur(cents: IntArray) -> FloatArray:
    return cents.astype(np.float64) / 100.0


def _month_campaigns(
    code: IntArray, seconds: IntArray, first_month: int, n_months: int
) -> pa.Array:
    """Campaign ids like ``EM-2025-03``: one campaign per channel and calendar month."""
    names = []
    for c in _CAMPAIGN_CODES:
        for m in range(first_month, first_month + n_months):
            names.append(f"{c}-{1970 + m // 12:04d}-{m % 12 + 1:02d}")
    month = seconds.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)
    return _labels(names, code * n_months + (month - first_month))


# --------------------------------------------------------------------------- population


@dataclass(frozen=True)
class _Population:
    persona: IntArray
    acquired_s: IntArray  # first purchase time, epoch seconds
    rate: FloatArray  # BG/NBD lambda per week
    dropout: FloatArray  # BG/NBD p
    nu: FloatArray  # gamma-gamma scale; mean order value is spend_p / nu
    mean_spend: FloatArray
    category_cum: FloatArray  # per customer cumulative category probabilities
    channel_cum: FloatArray  # per customer cumulative touch-channel probabilities
    discount_propensity: FloatArray
    consent: BoolArray  # (n, 4): email, sms, push, ads


def _customers(
    rng: np.random.Generator, n: int, start_s: int, end_s: int
) -> tuple[_Population, pa.Table]:
    """Personas, latent behaviour parameters and the customers table."""
    shares = np.array([p.share for p in _PERSONAS])
    persona = _draw_from_rows(rng, np.zeros(n, dtype=np.int64), _cumulative(shares[None, :]))

    def per(attr: str) -> FloatArray:
        return np.array([float(getattr(p, attr)) for p in _PERSONAS])[persona]

    # Acquisition density rises linearly to twice its starting value at as_of (a growing
    # business); inverse CDF of f(u) ~ 1 + g*u on [0, 1].
    growth = 1.0
    v = rng.random(n)
    u = (np.sqrt(1.0 + 2.0 * growth * v * (1.0 + growth / 2.0)) - 1.0) / growth
    acquired_s = np.minimum(start_s + np.floor(u * (end_s - start_s)), end_s - 1).astype(np.int64)

    rate = rng.gamma(per("r"), 1.0 / per("alpha"))
    dropout = rng.beta(per("a"), per("b"))
    nu = rng.gamma(per("spend_q"), 1.0 / per("spend_gamma"))
    mean_spend = per("spend_p") / nu

    # Customer-level tastes scatter around the persona's mix (Dirichlet, concentration 40).
    cat_mix = np.stack([_mix(_CATEGORIES, p.categories) for p in _PERSONAS])
    category_cum = _cumulative(rng.gamma(40.0 * cat_mix[persona]) + 1e-12)
    disc = per("discount_propensity")
    discount_propensity = rng.beta(20.0 * disc, 20.0 * (1.0 - disc))

    consent_rates = np.array([p.consent for p in _PERSONAS])[persona]
    consent = rng.random((n, 4)) < consent_rates

    # Touch channels need consent: e-mail, paid social (ad personalisation) and push.
    ch_mix = np.stack([_mix(_TOUCH_CHANNELS, p.channels) for p in _PERSONAS])
    ch_weights = rng.gamma(40.0 * ch_mix[persona]) + 1e-12
    allowed = np.column_stack(
        [consent[:, 0], consent[:, 3], np.ones(n, bool), consent[:, 2], np.ones(n, bool)]
    )
    channel_cum = _cumulative(ch_weights * allowed)

    pop = _Population(
        persona=persona,
        acquired_s=acquired_s,
        rate=rate,
        dropout=dropout,
        nu=nu,
        mean_spend=mean_spend,
        category_cum=category_cum,
        channel_cum=channel_cum,
        discount_propensity=discount_propensity,
        consent=consent,
    )
    return pop, _customer_table(rng, pop, n)


def _customer_table(rng: np.random.Generator, pop: _Population, n: int) -> pa.Table:
    persona = pop.persona

    def per(attr: str) -> FloatArray:
        return np.array([float(getattr(p, attr)) for p in _PERSONAS])[persona]

    age = np.clip(np.rint(rng.normal(per("age_mean"), per("age_sd"))), 18, 85).astype(np.int16)
    # Log-normal centred so that its mean (before clipping) is the persona's income_mean.
    income_sigma = 0.18
    income = rng.lognormal(np.log(per("income_mean")) - income_sigma**2 / 2.0, income_sigma)
    income = np.clip(income, 12_000, 250_000)
    income = np.round(income, -2)
    household = np.clip(1 + rng.poisson(per("household_extra")), 1, 8).astype(np.int8)
    gender = _draw_from_rows(rng, persona, _cumulative(np.array([p.gender for p in _PERSONAS])))
    education = _persona_draw(rng, persona, _EDUCATION, [p.education for p in _PERSONAS])
    occupation = _persona_draw(rng, persona, _OCCUPATIONS, [p.occupation for p in _PERSONAS])
    # Keep occupation plausible for the age drawn: pensioners are old, students young.
    student, retired = _OCCUPATIONS.index("student"), _OCCUPATIONS.index("retired")
    occupation = np.where(
        (occupation == retired) & (age < 55), _OCCUPATIONS.index("employee"), occupation
    )
    occupation = np.where(
        (occupation == student) & (age > 32), _OCCUPATIONS.index("employee"), occupation
    )
    occupation = np.where((age >= 67) & (rng.random(n) < 0.8), retired, occupation)
    marital = _persona_draw(rng, persona, _MARITAL, [p.marital for p in _PERSONAS])
    lifestyle = _persona_draw(rng, persona, _LIFESTYLES, [p.lifestyle for p in _PERSONAS])
    interests = _persona_draw(rng, persona, _INTERESTS, [p.interests for p in _PERSONAS])
    values = _persona_draw(rng, persona, _VALUES, [p.values for p in _PERSONAS])
    benefit = _persona_draw(rng, persona, _BENEFITS, [p.benefit for p in _PERSONAS])

    base = np.array([c[6] for c in _CITIES], dtype=np.float64)
    city_weights = np.stack(
        [base * np.array([p.cities.get(c, 1.0) for c in _CITY_NAMES]) for p in _PERSONAS]
    )
    unknown = {c for p in _PERSONAS for c in p.cities} - set(_CITY_NAMES)
    if unknown:
        raise ValueError(f"unknown cities {sorted(unknown)}")
    city = _draw_from_rows(rng, persona, _cumulative(city_weights))
    prefix = np.array([int(c[3]) for c in _CITIES])[city]
    length = np.array([c[4] for c in _CITIES])[city]
    suffix_digits = length - np.array([len(c[3]) for c in _CITIES])[city]
    postal = prefix * 10**suffix_digits + np.floor(rng.random(n) * 10.0**suffix_digits).astype(
        np.int64
    )
    postal_code = pc.if_else(
        pa.array(length == 4), _id_strings(postal, 4, ""), _id_strings(postal, 5, "")
    )

    # A few percent of optional attributes are unknown, as in any real CRM.
    income_missing = rng.random(n) < 0.03
    region_missing = rng.random(n) < 0.02
    education_missing = rng.random(n) < 0.05
    psycho_missing = rng.random(n) < 0.06

    numbers = np.arange(1, n + 1, dtype=np.int64)
    width = _id_width(n, 7)
    columns: dict[str, pa.Array] = {
        "customer_id": _id_strings(numbers, width, "C"),
        "signup_date": pa.array(
            (pop.acquired_s // _DAY_S).astype("datetime64[D]"), type=pa.date32()
        ),
        "age": pa.array(age, type=pa.int16()),
        "gender": _labels(_GENDERS, gender),
        "income": pa.array(income, type=pa.float64(), mask=income_missing),
        "education": _masked(_labels(_EDUCATION, education), education_missing),
        "occupation": _labels(_OCCUPATIONS, occupation),
        "marital_status": _labels(_MARITAL, marital),
        "household_size": pa.array(household, type=pa.int8()),
        "country": _labels([c[0] for c in _CITIES], city),
        "region": _masked(_labels([c[1] for c in _CITIES], city), region_missing),
        "city": _labels(_CITY_NAMES, city),
        "postal_code": postal_code,
        "climate_zone": _labels([c[5] for c in _CITIES], city),
        "lifestyle": _masked(_labels(_LIFESTYLES, lifestyle), psycho_missing),
        "interests": _masked(_labels(_INTERESTS, interests), psycho_missing),
        "values": _masked(_labels(_VALUES, values), psycho_missing),
        "benefit_sought": _labels(_BENEFITS, benefit),
    }
    for j, name in enumerate(_CONSENTS):
        columns[name] = pa.array(pop.consent[:, j], type=pa.bool_())
    columns["email"] = _id_strings(numbers, width, "c", "@example.invalid")
    return pa.table(columns)


def _masked(values: pa.Array, missing: BoolArray) -> pa.Array:
    return pc.if_else(pa.array(missing), pa.scalar(None, values.type), values)


# --------------------------------------------------------------------------- purchases


@dataclass(frozen=True)
class _Purchases:
    customer: IntArray  # customer index, sorted; within a customer sorted by time
    ts: IntArray
    amount_cents: IntArray
    start: IntArray  # per customer: index of its first purchase
    count: IntArray  # per customer: number of purchases (1 + repeats)
    dead: BoolArray
    death_s: IntArray  # per customer; meaningless where not dead


def _purchases(rng: np.random.Generator, pop: _Population, end_s: int) -> _Purchases:
    """BG/NBD purchase times and gamma-gamma order values.

    Fader, Hardie & Lee (2005), section 3: while active, repeat purchases follow a Poisson
    process of rate lambda; after each repeat purchase the customer becomes inactive with
    probability p. (The acquisition purchase at time 0 carries no dropout: the likelihood,
    their eq. 3, has no dropout term for x = 0.) Hence the number of repeat purchases by T is
    ``min(N(T), J)`` with ``N(T) ~ Poisson(lambda T)`` and ``J ~ Geometric(p)``, and the
    purchases are the first of the N(T) arrival times, i.e. order statistics of uniforms.
    """
    n = int(pop.persona.shape[0])
    tenure_w = (end_s - pop.acquired_s) / _WEEK_S
    arrivals = rng.poisson(pop.rate * tenure_w).astype(np.int64)
    last_allowed = rng.geometric(pop.dropout).astype(np.int64)
    repeats = np.minimum(arrivals, last_allowed)
    dead = last_allowed <= arrivals

    # First x of N sorted uniforms on (0, T) without drawing all N: with exponential
    # spacings E_1..E_{N+1}, U_(k) = S_k / S_{N+1}, and S_{N+1} = S_x + Gamma(N + 1 - x).
    cust_of_repeat, k = _segment_positions(repeats)
    spacing = np.cumsum(rng.standard_exponential(cust_of_repeat.shape[0]))
    seg_end = np.cumsum(repeats)
    before = np.concatenate(([0.0], spacing))[seg_end - repeats]
    partial = spacing - before[cust_of_repeat]
    s_x = np.where(repeats > 0, np.concatenate(([0.0], spacing))[seg_end] - before, 0.0)
    total = s_x + rng.gamma(np.maximum(arrivals - repeats + 1, 1).astype(np.float64))
    frac = partial / total[cust_of_repeat]
    repeat_s = pop.acquired_s[cust_of_repeat] + np.floor(
        frac * (end_s - pop.acquired_s[cust_of_repeat])
    ).astype(np.int64)
    repeat_s = np.minimum(repeat_s, end_s - 1)

    count = repeats + 1
    start = np.cumsum(count) - count
    customer = np.repeat(np.arange(n, dtype=np.int64), count)
    ts = np.empty(customer.shape[0], dtype=np.int64)
    ts[start] = pop.acquired_s
    ts[start[cust_of_repeat] + 1 + k] = repeat_s
    death_s = ts[start + count - 1]

    # Gamma-gamma: order value ~ Gamma(shape p, rate nu); at least 1 EUR.
    spend_p = np.array([p.spend_p for p in _PERSONAS])[pop.persona]
    value = rng.gamma(spend_p[customer], 1.0 / pop.nu[customer])
    amount_cents = np.maximum(np.rint(value * 100.0), 100).astype(np.int64)
    return _Purchases(customer, ts, amount_cents, start, count, dead, death_s)


def _orders_and_lines(
    rng: np.random.Generator,
    pop: _Population,
    buy: _Purchases,
    customer_ids: pa.Array,
    end_s: int,
) -> tuple[pa.Table, pa.Table]:
    n_purchases = int(buy.customer.shape[0])
    persona = pop.persona[buy.customer]

    # Lines: count per order, category from the customer's taste, product by popularity.
    lines_extra = np.array([p.lines_extra for p in _PERSONAS])[persona]
    n_lines = np.minimum(1 + rng.poisson(lines_extra), 9).astype(np.int64)
    order_of_line, line_no = _segment_positions(n_lines)
    category = _draw_from_rows(rng, buy.customer[order_of_line], pop.category_cum)
    rank = np.floor(_PRODUCTS_PER_CATEGORY * rng.random(order_of_line.shape[0]) ** 2.0).astype(
        np.int64
    )
    product = category * _PRODUCTS_PER_CATEGORY + rank
    quantity = 1 + rng.poisson(np.array(_CATEGORY_EXTRA_QUANTITY)[category])
    # Split each order into lines in integer cents so that lines sum exactly to the order:
    # one cent per line, the rest by weight (floored), the rounding residual on the last line.
    weight = rng.gamma(2.0, 1.0, order_of_line.shape[0]) * quantity
    share = (
        weight / np.bincount(order_of_line, weights=weight, minlength=n_purchases)[order_of_line]
    )
    spare = buy.amount_cents - n_lines
    line_cents = 1 + np.floor(share * spare[order_of_line]).astype(np.int64)
    is_last = line_no == n_lines[order_of_line] - 1
    others = np.bincount(
        order_of_line, weights=np.where(is_last, 0, line_cents), minlength=n_purchases
    ).astype(np.int64)
    line_cents = np.where(is_last, (buy.amount_cents - others)[order_of_line], line_cents)

    # Discounts are EUR off the list price; amount is what the customer paid.
    discounted = rng.random(n_purchases) < pop.discount_propensity[buy.customer]
    rate = rng.uniform(0.10, 0.35, n_purchases)
    discount_cents = np.where(discounted, np.rint(buy.amount_cents * rate / (1.0 - rate)), 0)
    discount_cents = discount_cents.astype(np.int64)
    # Margin = paid - cost of goods; cost follows the category mix of the list price.
    margin_rate = (
        np.bincount(
            order_of_line,
            weights=line_cents * np.array(_CATEGORY_MARGIN)[category],
            minlength=n_purchases,
        )
        / buy.amount_cents
    )
    list_cents = buy.amount_cents + discount_cents
    margin = np.round((buy.amount_cents - list_cents * (1.0 - margin_rate)) / 100.0, 2)
    channel_cum = _cumulative(np.array([p.order_channels for p in _PERSONAS]))
    channel = _draw_from_rows(rng, persona, channel_cum)

    # Returns: a separate row a few days later with part or all of the amount, unless the
    # return would fall on or after as_of (it has not happened yet).
    return_rate = np.array([p.return_rate for p in _PERSONAS])[persona]
    ret_ts = buy.ts + np.floor(rng.uniform(2.0, 21.0, n_purchases) * _DAY_S).astype(np.int64)
    full: BoolArray = rng.random(n_purchases) < 0.55
    part: FloatArray = rng.uniform(0.2, 0.9, n_purchases)
    returns = (rng.random(n_purchases) < return_rate) & (ret_ts < end_s)
    src = np.flatnonzero(returns)
    ret_cents = np.where(
        full[src],
        buy.amount_cents[src],
        np.maximum(np.rint(buy.amount_cents[src] * part[src]), 1).astype(np.int64),
    )
    ret_margin = -np.round(margin[src] * ret_cents / buy.amount_cents[src], 2)

    number = np.concatenate([np.arange(1, n_purchases + 1), src + 1]).astype(np.int64)
    is_return = np.concatenate([np.zeros(n_purchases, bool), np.ones(src.shape[0], bool)])
    cust = np.concatenate([buy.customer, buy.customer[src]])
    ts = np.concatenate([buy.ts, ret_ts[src]])
    order = np.lexsort((is_return, ts, cust))
    width = _id_width(n_purchases, 8)
    id_bytes = _digit_matrix(number[order], width, "O")
    id_bytes[:, 0] = np.where(is_return[order], ord("R"), ord("O"))
    orders = pa.table(
        {
            "order_id": _strings(id_bytes),
            "customer_id": customer_ids.take(pa.array(cust[order])),
            "order_ts": _timestamps(ts[order]),
            "amount": pa.array(
                _cents_to_eur(np.concatenate([buy.amount_cents, -ret_cents])[order]),
                type=pa.float64(),
            ),
            "currency": _labels(("EUR",), np.zeros(order.shape[0], dtype=np.int64)),
            "margin": pa.array(np.concatenate([margin, ret_margin])[order], type=pa.float64()),
            "channel": _labels(_ORDER_CHANNELS, np.concatenate([channel, channel[src]])[order]),
            "discount": pa.array(
                _cents_to_eur(np.concatenate([discount_cents, np.zeros_like(src)])[order]),
                type=pa.float64(),
            ),
            "returned": pa.array(is_return[order], type=pa.bool_()),
        }
    )
    product_ids = [
        f"P{c + 1:02d}{r + 1:03d}"
        for c in range(len(_CATEGORIES))
        for r in range(_PRODUCTS_PER_CATEGORY)
    ]
    brands = [
        _BRANDS[c][r % len(_BRANDS[c])]
        for c in range(len(_CATEGORIES))
        for r in range(_PRODUCTS_PER_CATEGORY)
    ]
    lines = pa.table(
        {
            "order_id": _id_strings(order_of_line + 1, width, "O"),
            "product_id": _labels(product_ids, product),
            "quantity": pa.array(quantity.astype(np.int32), type=pa.int32()),
            "line_amount": pa.array(_cents_to_eur(line_cents), type=pa.float64()),
            "category": _labels(_CATEGORIES, category),
            "brand": _labels(brands, product),
        }
    )
    return orders, lines


# --------------------------------------------------------------------------- marketing


def _touchpoints_and_contacts(
    rng: np.random.Generator,
    pop: _Population,
    buy: _Purchases,
    customer_ids: pa.Array,
    start_s: int,
    end_s: int,
) -> tuple[pa.Table, pa.Table]:
    n = int(pop.persona.shape[0])
    first_month = int(np.datetime64(start_s, "s").astype("datetime64[M]").astype(np.int64))
    n_months = (
        int(np.datetime64(end_s, "s").astype("datetime64[M]").astype(np.int64)) - first_month + 1
    )

    touch_rate = np.array([p.touch_rate for p in _PERSONAS])[pop.persona]
    counts = rng.poisson(touch_rate).astype(np.int64)
    cust = np.repeat(np.arange(n, dtype=np.int64), counts)
    m = int(cust.shape[0])
    channel = _draw_from_rows(rng, cust, pop.channel_cum)
    anchored = rng.random(m) < _ANCHORED_TOUCH_SHARE
    n_channels = len(_TOUCH_CHANNELS)
    event_cum = _cumulative(np.array(_EVENTS_PASSIVE + _EVENTS_ANCHORED, dtype=np.float64))
    event = _draw_from_rows(rng, anchored * n_channels + channel, event_cum)

    # Anchored touches precede a random purchase of the customer by ~1.5 days (a conversion
    # event sits on the purchase itself); the others are spread over the tenure.
    pick = buy.start[cust] + np.floor(rng.random(m) * buy.count[cust]).astype(np.int64)
    lead = np.floor(rng.exponential(1.5 * _DAY_S, m)).astype(np.int64)
    conversion = event == _TOUCH_EVENTS.index("conversion")
    anchored_s = np.maximum(buy.ts[pick] - np.where(conversion, 0, lead), start_s)
    acquired = pop.acquired_s[cust]
    spread_s = acquired + np.floor(rng.random(m) * (end_s - acquired)).astype(np.int64)
    ts = np.where(anchored, anchored_s, spread_s)
    # E-mail and push need an address and consent, which exist only from signup on.
    owned = (channel == _TOUCH_CHANNELS.index("email")) | (
        channel == _TOUCH_CHANNELS.index("app_push")
    )
    ts = np.where(owned & (ts < acquired), spread_s, ts)

    cost_base = np.array(_EVENT_COST)[channel, event]
    cost = np.round(cost_base * rng.lognormal(0.0, 0.3, m), 6)
    order = np.lexsort((ts, cust))
    touch_campaign = _month_campaigns(channel[order], ts[order], first_month, n_months)
    touchpoints = pa.table(
        {
            "customer_id": customer_ids.take(pa.array(cust[order])),
            "ts": _timestamps(ts[order]),
            "channel": _labels(_TOUCH_CHANNELS, channel[order]),
            "campaign_id": touch_campaign,
            "event": _labels(_TOUCH_EVENTS, event[order]),
            "cost": pa.array(cost[order], type=pa.float64()),
        }
    )

    # Contact log: the send behind every e-mail / push touch, hours before it (never before
    # signup), plus sends nobody responded to. Only ever on consented channels.
    sorted_channel = channel[order]
    responded = np.flatnonzero(
        (sorted_channel == _TOUCH_CHANNELS.index("email"))
        | (sorted_channel == _TOUCH_CHANNELS.index("app_push"))
    )
    r_cust = cust[order][responded]
    r_ts = np.maximum(
        ts[order][responded] - np.floor(rng.exponential(6.0 * 3600.0, responded.shape[0])),
        pop.acquired_s[r_cust],
    ).astype(np.int64)
    r_channel = np.where(sorted_channel[responded] == _TOUCH_CHANNELS.index("email"), 0, 1)
    r_campaign = touch_campaign.take(pa.array(responded))

    consent_for = pop.consent[:, [0, 2, 1]]  # email, push, sms in _CONTACT_CHANNELS order
    extra = rng.poisson(np.array(_EXTRA_SENDS)[None, :] * consent_for).astype(np.int64)
    x_cust = np.repeat(np.repeat(np.arange(n, dtype=np.int64), 3), extra.ravel())
    x_channel = np.repeat(np.tile(np.arange(3, dtype=np.int64), n), extra.ravel())
    x_acq = pop.acquired_s[x_cust]
    x_ts = x_acq + np.floor(rng.random(x_cust.shape[0]) * (end_s - x_acq)).astype(np.int64)
    code = np.array([_CAMPAIGN_CODES.index(c) for c in ("EM", "AP", "SM")])[x_channel]
    x_campaign = _month_campaigns(code, x_ts, first_month, n_months)

    c_cust = np.concatenate([r_cust, x_cust])
    c_ts = np.concatenate([r_ts, x_ts])
    c_channel = np.concatenate([r_channel, x_channel])
    c_order = np.lexsort((c_channel, c_ts, c_cust))
    campaigns = pa.concat_arrays([r_campaign, x_campaign])
    contact_log = pa.table(
        {
            "customer_id": customer_ids.take(pa.array(c_cust[c_order])),
            "ts": _timestamps(c_ts[c_order]),
            "channel": _labels(_CONTACT_CHANNELS, c_channel[c_order]),
            "campaign_id": campaigns.take(pa.array(c_order)),
        }
    )
    return touchpoints, contact_log


def _channel_spend(
    rng: np.random.Generator, n_customers: int, as_of: datetime.date, start_s: int
) -> tuple[pa.Table, pa.Table]:
    """Weekly spend per channel and its revenue from a Hill curve with noise."""
    scale = n_customers / _RESPONSE_SCALE_CUSTOMERS
    start_day = start_s // _DAY_S
    first_monday = start_day + (-(start_day + 3)) % 7  # 1970-01-05 was a Monday
    last_day = (as_of - datetime.date(1970, 1, 1)).days
    weeks = np.arange(first_monday, last_day - 6, 7, dtype=np.int64)  # complete weeks only
    n_weeks = int(weeks.shape[0])

    rows_period, rows_channel, rows_spend, rows_conv, rows_rev = [], [], [], [], []
    for j, (_name, beta, k, slope, typical) in enumerate(_RESPONSE):
        season = 1.0 + 0.25 * np.sin(2.0 * np.pi * np.arange(n_weeks) / 52.18 + j)
        # Wide spend variation (bursts and pauses) so that the saturation is identifiable.
        spend = typical * scale * season * rng.lognormal(0.0, 0.5, n_weeks)
        spend = np.where(rng.random(n_weeks) < 0.05, spend * 0.15, spend)
        spend = np.round(spend, 2)
        b, kk = beta * scale, k * scale
        mean_revenue = b * spend**slope / (kk**slope + spend**slope)
        revenue = np.round(mean_revenue * rng.lognormal(0.0, 0.08, n_weeks), 2)
        conversions = rng.poisson(revenue / _RESPONSE_ORDER_VALUE).astype(np.int64)
        rows_period.append(weeks)
        rows_channel.append(np.full(n_weeks, j, dtype=np.int64))
        rows_spend.append(spend)
        rows_conv.append(conversions)
        rows_rev.append(revenue)
    period = np.concatenate(rows_period)
    channel = np.concatenate(rows_channel)
    order = np.lexsort((channel, period))
    first_month = int(np.datetime64(start_s, "s").astype("datetime64[M]").astype(np.int64))
    last_month = int(np.datetime64(last_day, "D").astype("datetime64[M]").astype(np.int64))
    period_s = period[order] * _DAY_S
    table = pa.table(
        {
            "period": pa.array(period[order].astype("datetime64[D]"), type=pa.date32()),
            "channel": _labels([r[0] for r in _RESPONSE], channel[order]),
            "spend": pa.array(np.concatenate(rows_spend)[order], type=pa.float64()),
            "campaign_id": _month_campaigns(
                channel[order], period_s, first_month, last_month - first_month + 1
            ),
            "conversions": pa.array(np.concatenate(rows_conv)[order], type=pa.int64()),
            "revenue": pa.array(np.concatenate(rows_rev)[order], type=pa.float64()),
        }
    )
    truth = pa.table(
        {
            "channel": pa.array([r[0] for r in _RESPONSE], type=pa.string()),
            "form": pa.array(["hill"] * len(_RESPONSE), type=pa.string()),
            "beta": pa.array([r[1] * scale for r in _RESPONSE], type=pa.float64()),
            "k": pa.array([r[2] * scale for r in _RESPONSE], type=pa.float64()),
            "slope": pa.array([r[3] for r in _RESPONSE], type=pa.float64()),
        }
    )
    return table, truth


# --------------------------------------------------------------------------- experiment


def _experiment(
    rng: np.random.Generator,
    pop: _Population,
    buy: _Purchases,
    customer_ids: pa.Array,
    end_s: int,
) -> tuple[pa.Table, FloatArray]:
    """The retention test and every customer's true uplift.

    Who is in it: every customer acquired before the assignment window opens, alive or not,
    because the marketer cannot tell who has churned. Split 80 / 10 / 10 into treatment,
    control and holdout (holdout = global marketing holdout, untreated like control).
    Conversion within 4 weeks: an active customer converts with the BG/NBD chance of at
    least one purchase, 1 - exp(-4 lambda); a churned one with a small reactivation chance.
    Treatment adds the persona's uplift (30 % of it for churned customers, whom the offer
    rarely reaches), clipped to [0, 1]; ``true_uplift`` is that clipped difference.
    Outcomes are self-contained: they are not added to ``orders``, so that the BG/NBD
    ground truth of the orders stays exact.
    """
    n = int(pop.persona.shape[0])
    window_start = end_s - _ASSIGN_FROM_WEEKS * _WEEK_S
    assigned_s = window_start + np.floor(
        rng.random(n) * (_ASSIGN_FROM_WEEKS - _ASSIGN_TO_WEEKS) * _WEEK_S
    ).astype(np.int64)
    active = ~buy.dead | (buy.death_s >= assigned_s)
    base_dead = np.array([p.baseline_dead for p in _PERSONAS])[pop.persona]
    baseline = np.where(active, 1.0 - np.exp(-_OUTCOME_WEEKS * pop.rate), base_dead)
    uplift = np.array([p.uplift for p in _PERSONAS])[pop.persona] * np.where(active, 1.0, 0.3)
    true_uplift = np.clip(baseline + uplift, 0.0, 1.0) - baseline

    u = rng.random(n)
    group = np.where(u < 0.8, 0, np.where(u < 0.9, 1, 2))
    treated = group == 0
    converted = rng.random(n) < np.where(treated, baseline + true_uplift, baseline)
    spend_p = np.array([p.spend_p for p in _PERSONAS])[pop.persona]
    value = np.maximum(np.rint(rng.gamma(spend_p, 1.0 / pop.nu) * 100.0), 100)
    revenue = np.where(converted, value, 0.0) / 100.0

    eligible = np.flatnonzero(pop.acquired_s < window_start)
    table = pa.table(
        {
            "customer_id": customer_ids.take(pa.array(eligible)),
            "experiment_id": _labels((_EXPERIMENT_ID,), np.zeros(eligible.shape[0], np.int64)),
            "group": _labels(("treatment", "control", "holdout"), group[eligible]),
            "arm": _labels(("offer_10pct", "no_offer", "holdout"), group[eligible]),
            "assigned_at": _timestamps(assigned_s[eligible]),
            "converted": pa.array(converted[eligible], type=pa.bool_()),
            "revenue": pa.array(revenue[eligible], type=pa.float64()),
        }
    )
    return table, true_uplift


# --------------------------------------------------------------------------- truth


def _persona_truth() -> pa.Table:
    def col(attr: str) -> list[float]:
        return [float(getattr(p, attr)) for p in _PERSONAS]

    def top(mix: Mapping[str, float]) -> str:
        # "|" never needs CSV quoting; favourites are listed strongest first.
        return "|".join(sorted(mix, key=lambda key: -mix[key]))

    return pa.table(
        {
            "persona_id": pa.array(range(len(_PERSONAS)), type=pa.int8()),
            "persona": pa.array([p.name for p in _PERSONAS], type=pa.string()),
            "share": pa.array(col("share"), type=pa.float64()),
            "r": pa.array(col("r"), type=pa.float64()),
            "alpha": pa.array(col("alpha"), type=pa.float64()),
            "a": pa.array(col("a"), type=pa.float64()),
            "b": pa.array(col("b"), type=pa.float64()),
            "spend_p": pa.array(col("spend_p"), type=pa.float64()),
            "spend_q": pa.array(col("spend_q"), type=pa.float64()),
            "spend_gamma": pa.array(col("spend_gamma"), type=pa.float64()),
            "mean_purchase_rate": pa.array([p.r / p.alpha for p in _PERSONAS], pa.float64()),
            "mean_dropout_prob": pa.array([p.a / (p.a + p.b) for p in _PERSONAS], pa.float64()),
            "mean_spend": pa.array([p.mean_spend for p in _PERSONAS], type=pa.float64()),
            "age_mean": pa.array(col("age_mean"), type=pa.float64()),
            "income_mean": pa.array(col("income_mean"), type=pa.float64()),
            "favourite_categories": pa.array([top(p.categories) for p in _PERSONAS], pa.string()),
            "preferred_channels": pa.array([top(p.channels) for p in _PERSONAS], pa.string()),
            "discount_propensity": pa.array(col("discount_propensity"), type=pa.float64()),
            "return_rate": pa.array(col("return_rate"), type=pa.float64()),
            "uplift": pa.array(col("uplift"), type=pa.float64()),
        }
    )


def _customer_truth(
    pop: _Population, buy: _Purchases, customer_ids: pa.Array, true_uplift: FloatArray
) -> pa.Table:
    return pa.table(
        {
            "customer_id": customer_ids,
            "persona": _labels([p.name for p in _PERSONAS], pop.persona),
            "persona_id": pa.array(pop.persona.astype(np.int8), type=pa.int8()),
            "purchase_rate": pa.array(pop.rate, type=pa.float64()),
            "dropout_prob": pa.array(pop.dropout, type=pa.float64()),
            "alive_at_as_of": pa.array(~buy.dead, type=pa.bool_()),
            "death_ts": pa.array(
                buy.death_s.astype("datetime64[s]"), type=pa.timestamp("s"), mask=~buy.dead
            ),
            "mean_spend": pa.array(pop.mean_spend, type=pa.float64()),
            "true_uplift": pa.array(true_uplift, type=pa.float64()),
        }
    )


# --------------------------------------------------------------------------- public API


def generate_demo(
    n_customers: int = 10_000,
    *,
    seed: int = 42,
    as_of: datetime.date = datetime.date(2025, 12, 31),
    history_years: float = 3.0,
) -> DemoData:
    """Generate the seven contract tables of a demo retailer, with planted ground truth.

    Parameters
    ----------
    n_customers
        Number of customers, 100 to 5,000,000. Expect per customer about 5.3 order rows
        (of which 0.25 returns), 10 order lines, 4.5 touchpoints and 3.6 contacts.
    seed
        Seed of the random generator; the same seed gives byte-identical tables.
    as_of
        The as-of date; every event happens strictly before 00:00 on this day.
    history_years
        Length of the history before ``as_of`` over which customers are acquired
        (0.5 to 20 years).

    Returns
    -------
    DemoData
        ``tables`` (the data contract) and ``truth`` (``customers``, ``personas``,
        ``channel_response``).

    Raises
    ------
    ConfigError
        If an argument is out of range.

    Notes
    -----
    Six personas with unequal shares drive everything. Per customer, purchases follow the
    BG/NBD model (Fader, Hardie & Lee 2005): the first purchase at acquisition, then a
    Poisson process of rate ``lambda ~ Gamma(shape r, rate alpha)`` per week, with dropout
    probability ``p ~ Beta(a, b)`` after each repeat purchase, truncated at ``as_of``.
    Order values are gamma-gamma: ``nu ~ Gamma(shape q, rate gamma)``, value
    ``~ Gamma(shape p, rate nu)``. Returns are separate rows (``order_id`` ``R`` + the
    number of the returned order) with a negative amount. Weekly ``channel_spend`` revenue
    follows ``beta * s**slope / (k**slope + s**slope)`` with 8 % log-normal noise.

    In the experiment ``EXP-2025-RETENTION`` every customer acquired before the assignment
    window (8 to 4 weeks before ``as_of``, so every 4-week outcome window ends by
    ``as_of``) takes part, alive or not, split 80/10/10 into treatment, control and
    holdout. The treatment changes the 4-week conversion probability by a persona-specific
    amount recorded per customer as ``true_uplift``. Experiment outcomes and channel spend
    are simulated on their own and do not add rows to ``orders``, so that the BG/NBD truth
    of the orders stays exact.

    Examples
    --------
    >>> from segvalue.data.demo import generate_demo
    >>> demo = generate_demo(1_000, seed=7)
    >>> print(*sorted(demo.tables))
    channel_spend contact_log customers experiments order_lines orders touchpoints
    >>> demo.tables["customers"].num_rows
    1000
    >>> demo.tables["customers"]["customer_id"][0].as_py()
    'C0000001'
    >>> demo.truth["personas"].num_rows
    6
    """
    if isinstance(n_customers, bool) or not isinstance(n_customers, int | np.integer):
        raise ConfigError(
            f"demo: `n_customers` must be a whole number, got {n_customers!r}",
            fix="pass an integer such as 10000",
        )
    if n_customers < _MIN_CUSTOMERS:
        raise ConfigError(
            "demo: `n_customers` must be at least 100",
            fix=f"pass `n_customers=100` or more (got {n_customers})",
        )
    if n_customers > _MAX_CUSTOMERS:
        raise ConfigError(
            f"demo: `n_customers` must be at most {_MAX_CUSTOMERS:,} (got {n_customers:,})",
            fix="generate several demos with different seeds instead",
        )
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise ConfigError(
            f"demo: `seed` must be a non-negative integer, got {seed!r}", fix="pass e.g. 42"
        )
    if not isinstance(as_of, datetime.date):
        raise ConfigError(
            f"demo: as_of must be a date, got {as_of!r}", fix="pass datetime.date(2025, 12, 31)"
        )
    if isinstance(as_of, datetime.datetime):
        as_of = as_of.date()
    if not (isinstance(history_years, int | float) and 0.5 <= history_years <= 20.0):
        raise ConfigError(
            f"demo: history_years must be between 0.5 and 20, got {history_years!r}",
            fix="pass e.g. 3",
        )
    n = int(n_customers)
    end_s = (as_of - datetime.date(1970, 1, 1)).days * _DAY_S
    start_s = end_s - round(float(history_years) * 365.25 * _DAY_S)

    # One independent stream per component: changing one part of the generator leaves the
    # others' draws unchanged.
    streams = [np.random.default_rng(s) for s in np.random.SeedSequence(int(seed)).spawn(6)]
    pop, customers = _customers(streams[0], n, start_s, end_s)
    customer_ids = customers["customer_id"].combine_chunks()
    buy = _purchases(streams[1], pop, end_s)
    orders, order_lines = _orders_and_lines(streams[2], pop, buy, customer_ids, end_s)
    touchpoints, contact_log = _touchpoints_and_contacts(
        streams[3], pop, buy, customer_ids, start_s, end_s
    )
    channel_spend, channel_response = _channel_spend(streams[4], n, as_of, start_s)
    experiments, true_uplift = _experiment(streams[5], pop, buy, customer_ids, end_s)

    tables = {
        "customers": customers,
        "orders": orders,
        "order_lines": order_lines,
        "touchpoints": touchpoints,
        "channel_spend": channel_spend,
        "experiments": experiments,
        "contact_log": contact_log,
    }
    truth = {
        "customers": _customer_truth(pop, buy, customer_ids, true_uplift),
        "personas": _persona_truth(),
        "channel_response": channel_response,
    }
    return DemoData(tables=tables, truth=truth, as_of=as_of, seed=int(seed), n_customers=n)


def _write_atomically(table: pa.Table, path: pathlib.Path, file_format: str) -> None:
    """Write to a temporary file in the target directory, then rename over the target.

    A reader never sees a half-written file, and a failure leaves any previous file intact.
    """
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = pathlib.Path(tmp_name)
    try:
        if file_format == "parquet":
            pq.write_table(table, tmp)
        else:
            pa_csv.write_csv(table, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_demo(
    data: DemoData,
    out_dir: pathlib.Path,
    *,
    file_format: Literal["parquet", "csv"] = "parquet",
) -> dict[str, pathlib.Path]:
    """Write the demo tables and their ground truth to a directory.

    Parameters
    ----------
    data
        The output of :func:`generate_demo`.
    out_dir
        Target directory, created if needed. Tables go to ``<out_dir>/<table>.<ext>``,
        truth tables to ``<out_dir>/truth/<name>.<ext>``.
    file_format
        ``"parquet"`` (default) or ``"csv"``.

    Returns
    -------
    dict of str to pathlib.Path
        The path of each contract table (not of the truth tables).

    Raises
    ------
    ConfigError
        If ``file_format`` is not ``"parquet"`` or ``"csv"``.

    Notes
    -----
    Each file is written to a temporary name in its directory and then renamed, so a
    reader never sees a partial file. Parquet has no second-resolution timestamp, so
    ``timestamp[s]`` columns are stored as milliseconds (same values). CSV holds nulls as
    empty fields; read it back with the table's schema as ``column_types``.

    Examples
    --------
    >>> import pathlib, tempfile
    >>> from segvalue.data.demo import generate_demo, write_demo
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     paths = write_demo(generate_demo(200, seed=1), pathlib.Path(tmp), file_format="csv")
    ...     print(paths["orders"].name, (pathlib.Path(tmp) / "truth" / "personas.csv").exists())
    orders.csv True
    """
    if file_format not in ("parquet", "csv"):
        raise ConfigError(
            f"demo: unknown file format {file_format!r}", fix="use 'parquet' or 'csv'"
        )
    out_dir = pathlib.Path(out_dir)
    truth_dir = out_dir / "truth"
    truth_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, pathlib.Path] = {}
    for name, table in data.tables.items():
        path = out_dir / f"{name}.{file_format}"
        _write_atomically(table, path, file_format)
        paths[name] = path
    for name, table in data.truth.items():
        _write_atomically(table, truth_dir / f"{name}.{file_format}", file_format)
    return paths


def demo_segments() -> dict[str, Any]:
    """The ``segments`` section of the demo's ``segvalue.yaml``: one scheme of every kind.

    Examples
    --------
    >>> [s["type"] for s in demo_segments()["schemes"]][:3]
    ['demographic', 'geographic', 'psychographic']
    """

    def rule(segment: str, field: str, op: str, value: Any) -> dict[str, Any]:
        return {"segment": segment, "when": {"field": field, "op": op, "value": value}}

    # Clusters on what an analyst would use: demographics, spend, category and channel mix
    # and price sensitivity (money and counts on log1p); they rediscover the personas.
    shares = [f"share_{c}" for c in _CATEGORIES]  # already column-safe names
    touches = [f"touches_{c}" for c in _TOUCH_CHANNELS]

    return {
        "schemes": [
            {
                "name": "age_band",
                "type": "demographic",
                "rules": [
                    rule("under 30", "age", "<", 30),
                    rule("30-49", "age", "between", [30, 49]),
                    rule("50 and over", "age", ">=", 50),
                ],
                "unassigned": "age unknown",
            },
            {
                "name": "market",
                "type": "geographic",
                "rules": [
                    rule("DACH", "country", "in", ["DE", "AT", "CH"]),
                    rule("Nordics", "country", "in", ["SE", "DK", "FI", "NO"]),
                    rule("Southern Europe", "country", "in", ["ES", "IT", "PT"]),
                    rule("Western Europe", "country", "in", ["FR", "NL", "BE", "LU"]),
                ],
                "unassigned": "other markets",
            },
            {
                "name": "lifestyle",
                "type": "psychographic",
                "mode": "tags",
                "rules": [
                    {
                        "segment": "green",
                        "when": {
                            "any": [
                                {"field": "lifestyle", "value": "green_living"},
                                {"field": "values", "value": "sustainability"},
                            ]
                        },
                    },
                    rule("trend-led", "lifestyle", "in", ["trend_driven", "digital_native"]),
                    rule("home and family", "lifestyle", "in", ["family_centred", "traditional"]),
                ],
            },
            {
                "name": "behaviour",
                "type": "behavioural",
                "rules": [
                    rule("deal seekers", "discount_share", ">=", 0.5),
                    {
                        "segment": "browsers, not buyers",
                        "when": {
                            "all": [
                                {"field": "browse_since_last_order", "op": ">=", "value": 3},
                                {"field": "days_since_last_order", "op": ">", "value": 90},
                            ]
                        },
                    },
                    rule("heavy buyers", "orders", ">=", 8),
                    rule("occasional buyers", "orders", "between", [1, 7]),
                ],
                "unassigned": "no purchase yet",
            },
            {
                "name": "benefit",
                "type": "benefit",
                "rules": [
                    rule(f"seeks {b}", "benefit_sought", "==", b)
                    for b in ("price", "quality", "convenience", "novelty", "status")
                ]
                + [rule("seeks sustainability", "benefit_sought", "==", "sustainability")],
            },
            {"name": "lifecycle", "type": "lifecycle"},
            {"name": "rfm", "type": "rfm"},
            {
                "name": "clusters",
                "type": "cluster",
                "features": [
                    "age",
                    "income",
                    "household_size",
                    "average_order_value",
                    "orders",
                    *shares,
                    *touches,
                    "discount_share",
                ],
                "transform": dict.fromkeys(
                    ["income", "average_order_value", "orders", *touches], "log1p"
                ),
                "k": "auto",
                "k_range": [2, 10],
                "sample_size": 20_000,
            },
        ],
        "market_potential": [
            {
                "name": "garden for outdoor people",
                "category": "garden",
                "need": {"field": "interests", "op": "in", "value": ["gardening", "outdoors"]},
                "adoption_rate": 0.1,
            }
        ],
    }
