"""``segvalue sample-size``: the customers a test needs, before it runs.

The sizes are the normal approximation (docs/measurement.md; for 10 % against 12 %, Chow,
Shao and Wang, Sample Size Calculations in Clinical Research, 2nd ed., 4.2): N =
(z_(1-a/2) + z_power)^2 (v_t / s + v_c / (1 - s)) / effect^2 customers, v the outcome's
variance in each group, s N of them treated, each group rounded up. The tests compute it
here with scipy.stats.norm, not from the code under test.
"""

from __future__ import annotations

import json
import math

import pytest
from scipy import stats

from segvalue.cli.main import cli
from segvalue.pipeline import sample_size_check

Z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)  # 95 % two-sided, 80 % power


def test_ten_against_twelve_percent_needs_3839_per_group(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """10 % against 12 %, equal groups: 3,839 each (as the usual calculators give)."""
    assert cli(["sample-size", "--effect", "0.02", "--baseline", "0.10"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "to detect 10.0% -> 12.0% (+2.0 points) at 95% confidence with 80% power:",
        "  7,678 customers: 3,839 treated, 3,839 control",
    ]
    per_group = Z**2 * (0.12 * 0.88 + 0.10 * 0.90) / 0.02**2
    assert math.ceil(per_group) == 3839


def test_json_holds_the_sizes_and_what_was_asked(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["sample-size", "--effect", "0.02", "--baseline", "0.10", "--power", "0.9"]
    assert cli([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    per_group = math.ceil(
        (stats.norm.ppf(0.975) + stats.norm.ppf(0.9)) ** 2 * (0.12 * 0.88 + 0.10 * 0.90) / 0.02**2
    )
    assert doc == {
        "effect": 0.02,
        "baseline": 0.10,
        "sd": None,
        "level": 0.95,
        "power": 0.9,
        "treated_share": 0.5,
        "n_total": 2 * per_group,
        "n_treated": per_group,
        "n_control": per_group,
    }
    assert doc == sample_size_check(0.02, baseline=0.10, power=0.9)


def test_a_mean_difference_from_its_standard_deviation(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Effect 0.5, sd 2: (1.959964 + 0.841621)^2 x 2 x 2^2 / 0.5^2 = 251.2, so 252 per
    group."""
    per_group = math.ceil(Z**2 * 2 * 2.0**2 / 0.5**2)
    assert per_group == 252
    assert cli(["sample-size", "--effect", "0.5", "--sd", "2", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["n_treated"], doc["n_control"], doc["n_total"]) == (252, 252, 504)
    assert doc["sd"] == 2.0 and doc["baseline"] is None
    assert cli(["sample-size", "--effect", "0.5", "--sd", "2"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "to detect a mean difference of +0.5 (sd 2) at 95% confidence with 80% power:",
        "  504 customers: 252 treated, 252 control",
    ]


def test_a_thirty_percent_treated_share(capsys: pytest.CaptureFixture[str]) -> None:
    """Unequal groups: N = z^2 (v_t / 0.3 + v_c / 0.7) / effect^2, 30 % of it treated."""
    argv = ["sample-size", "--effect", "0.02", "--baseline", "0.10", "--treated-share", "0.3"]
    assert cli([*argv, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    total = Z**2 * (0.12 * 0.88 / 0.3 + 0.10 * 0.90 / 0.7) / 0.02**2
    assert doc["n_treated"] == math.ceil(0.3 * total) == 2829
    assert doc["n_control"] == pytest.approx(0.7 * total, abs=1)
    assert doc["treated_share"] == 0.3
    assert cli(argv) == 0
    shown = capsys.readouterr().out
    assert "  9,430 customers: 2,829 treated (30%), 6,601 control" in shown.splitlines()


@pytest.mark.parametrize(
    ("options", "said"),
    [
        (["--baseline", "0.1", "--sd", "2"], "give exactly one of --baseline"),
        ([], "give exactly one of --baseline"),
        (["--baseline", "1.2"], "--baseline 1.2 is not a rate in (0, 1)"),
        (["--baseline", "0.9", "--effect", "0.2"], "--baseline 0.9 + --effect 0.2 = 1.1"),
        (["--baseline", "0.1", "--effect", "0"], "--effect 0 is not a finite, non-zero number"),
        (["--baseline", "0.1", "--power", "1.5"], "--power 1.5 is not in (0, 1)"),
        (["--baseline", "0.1", "--treated-share", "1"], "--treated-share 1 is not in (0, 1)"),
        (["--sd", "0"], "--sd 0 is not a standard deviation > 0"),
        (["--sd", "2", "--effect", "1e-300"], "--effect 1e-300 is too small to detect"),
    ],
)
def test_bad_input_is_exit_2_naming_the_option(
    capsys: pytest.CaptureFixture[str], options: list[str], said: str
) -> None:
    effect = [] if "--effect" in options else ["--effect", "0.02"]
    assert cli(["sample-size", *effect, *options]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.startswith("error: ") and said in captured.err
    assert "fix: " in captured.err and "`" not in captured.err and "Traceback" not in captured.err
