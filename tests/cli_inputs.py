"""Inputs several CLI tests share: the CDNOW sample's columns and a curves file."""

from __future__ import annotations

from pathlib import Path

#: Fader and Hardie's CDNOW sample (2,357 customers): whitespace-delimited, no header.
CDNOW_SAMPLE = Path(__file__).parent / "data" / "CDNOW_sample.txt"
#: The options that read it: customer id, date (YYYYMMDD) and dollar value columns.
CDNOW_COLUMNS = [
    "--delimiter",
    "whitespace",
    "--no-header",
    "--customer-col",
    "column1",
    "--date-col",
    "column2",
    "--amount-col",
    "column4",
]
#: Three concave (Michaelis-Menten) response curves and a total: a closed-form optimum.
CURVES = """\
total: 500
items:
  - {name: email, form: michaelis_menten, beta: 1000, k: 200}
  - {name: search, form: michaelis_menten, beta: 600, k: 100}
  - {name: social, form: michaelis_menten, beta: 300, k: 50}
"""
