"""Bad segment configurations: each message names the key as written in YAML and the fix.

Most mistakes are caught when ``segvalue.yaml`` is parsed; a field that is not a column of
the customer table, or a value of the wrong type for its column, only when the rules are
compiled against the feature table. Both are tested here, the first through
``load_config`` on a real file, the second through ``assign_rule_scheme`` on features
built from orders and customers.
"""

from __future__ import annotations

import datetime as dt
import re
import textwrap
from dataclasses import dataclass
from pathlib import Path

import ibis
import pyarrow as pa
import pytest

from segvalue.config import RuleSchemeConfig, load_config, parse_config
from segvalue.errors import ConfigError
from segvalue.features.customer import customer_features
from segvalue.segments.rules import assign_rule_scheme, customer_attributes

HEAD = "sources:\n  orders:\n    path: orders.csv\n"


@dataclass(frozen=True)
class Bad:
    """One bad ``segments:`` block, the exact start of its message and a piece of the fix."""

    id: str
    segments: str
    message: str
    fix: str


def _rules(*rules: str, extra: str = "") -> str:
    body = "".join(
        textwrap.indent(textwrap.dedent(r).strip("\n"), "        ") + "\n" for r in rules
    )
    return (
        "  schemes:\n    - name: usage\n      type: behavioural\n" + extra + "      rules:\n" + body
    )


BAD: list[Bad] = [
    Bad(
        "unknown_operator_like",
        _rules("- segment: gmail\n  when: {field: email, op: like, value: '%gmail%'}"),
        "key 'segments.schemes[0].rules[0].when.op': unknown operator 'like' "
        "(did you mean 'regex'?)",
        "use one of ==, !=, <, <=, >, >=, in, not_in, between, regex, is_null, not_null",
    ),
    Bad(
        "unknown_operator_single_equals",
        _rules("- segment: de\n  when: {field: country, op: '=', value: DE}"),
        "key 'segments.schemes[0].rules[0].when.op': unknown operator '=' (did you mean '=='?)",
        "use one of ==",
    ),
    Bad(
        "unknown_operator_close_spelling",
        _rules("- segment: x\n  when: {field: orders, op: not_inn, value: [1]}"),
        "key 'segments.schemes[0].rules[0].when.op': unknown operator 'not_inn' "
        "(did you mean 'not_in'?)",
        "use one of",
    ),
    Bad(
        "between_reversed",
        _rules("- segment: adults\n  when: {field: age, op: between, value: [65, 18]}"),
        "key 'segments.schemes[0].rules[0].when.value': 'between' bounds are reversed: "
        "65 > 18 (got [65, 18])",
        "write the lower bound first: value: [18, 65]",
    ),
    Bad(
        "between_one_bound",
        _rules("- segment: adults\n  when: {field: age, op: between, value: [18]}"),
        "key 'segments.schemes[0].rules[0].when.value': operator 'between' needs two bounds "
        "[low, high] (inclusive) (got [18])",
        "write value: [low, high]",
    ),
    Bad(
        "in_without_list",
        _rules("- segment: dach\n  when: {field: country, op: in, value: DE}"),
        "key 'segments.schemes[0].rules[0].when.value': operator 'in' needs a non-empty list "
        "(got 'DE')",
        "write the values as a list, e.g. value: ['DE']",
    ),
    Bad(
        "regex_invalid",
        _rules("- segment: x\n  when: {field: city, op: regex, value: '(Berlin'}"),
        "key 'segments.schemes[0].rules[0].when.value': invalid regular expression '(Berlin': "
        "missing ), unterminated subpattern",
        "correct the pattern; escape special characters",
    ),
    Bad(
        "is_null_with_value",
        _rules("- segment: x\n  when: {field: age, op: is_null, value: 3}"),
        "key 'segments.schemes[0].rules[0].when.value': operator 'is_null' takes no value (got 3)",
        "remove 'value'",
    ),
    Bad(
        "comparison_without_value",
        _rules("- segment: x\n  when: {field: age, op: '>='}"),
        "key 'segments.schemes[0].rules[0].when.value': operator '>=' needs a 'value'",
        "add a value to compare 'age' with",
    ),
    Bad(
        "nested_error_path",
        _rules(
            """
            - segment: x
              when:
                all:
                  - {field: age, op: not_null}
                  - not: {field: country, op: contains, value: D}
            """
        ),
        "key 'segments.schemes[0].rules[0].when.all[1].not.op': unknown operator 'contains' "
        "(did you mean 'regex'?)",
        "use one of",
    ),
    Bad(
        "duplicate_segment_names",
        _rules(
            "- segment: heavy\n  when: {field: orders, op: '>=', value: 10}",
            "- segment: heavy\n  when: {field: revenue, op: '>=', value: 1000}",
        ),
        "key 'segments.schemes[0].rules': segment names repeat in scheme 'usage': ['heavy']",
        "give each rule a unique 'segment' name",
    ),
    Bad(
        "rule_named_like_the_unassigned_bucket",
        _rules("- segment: unassigned\n  when: {field: orders, op: '==', value: 0}"),
        "key 'segments.schemes[0].rules': a rule uses the unassigned bucket's name 'unassigned'",
        "rename that segment, or set 'unassigned' to another name",
    ),
    Bad(
        "duplicate_scheme_names",
        "  schemes:\n    - type: rfm\n    - type: rfm\n      bins: 4\n",
        "key 'segments.schemes': scheme names repeat: ['rfm']",
        "give each scheme a unique 'name'",
    ),
    Bad(
        "cuts_with_wrong_count",
        "  schemes:\n    - type: rfm\n      method: cuts\n      cuts:\n"
        "        recency: [30, 90, 180]\n        frequency: [1, 2, 4, 8]\n"
        "        monetary: [50, 100, 200, 400]\n",
        "key 'segments.schemes[0].cuts.recency': 3 cut points for 5 bins; 5 bins need 4 "
        "(got [30, 90, 180])",
        "give exactly 4 increasing cut points, or set bins: 4",
    ),
    Bad(
        "cuts_not_increasing",
        "  schemes:\n    - type: rfm\n      bins: 3\n      method: cuts\n      cuts:\n"
        "        recency: [90, 30]\n        frequency: [1, 2]\n        monetary: [50, 100]\n",
        "key 'segments.schemes[0].cuts.recency': cut points must increase strictly (got [90, 30])",
        "sort them and drop repeats: [30, 90]",
    ),
    Bad(
        "cuts_for_an_unknown_measure",
        "  schemes:\n    - type: rfm\n      method: cuts\n"
        "      cuts:\n        recenc: [1, 2, 3, 4]\n",
        "key 'segments.schemes[0].cuts.recenc': Input should be 'recency', 'frequency' or "
        "'monetary' (did you mean 'recency'?)",
        "correct the value: use one of recency, frequency, monetary",
    ),
    Bad(
        "rfm_score_range_outside_bins",
        "  schemes:\n    - type: rfm\n      segments:\n        - {segment: Champions, r: [4, 5]}\n"
        "        - {segment: Others, r: [1, 6]}\n",
        "key 'segments.schemes[0].segments[1].r': segment 'Others': score range [1, 6] is "
        "outside 1..5 or reversed (got [1, 6])",
        "use [low, high] with 1 <= low <= high <= 5",
    ),
    Bad(
        "dbscan_without_eps",
        "  schemes:\n    - type: cluster\n      features: [orders, revenue]\n"
        "      algorithm: dbscan\n",
        "key 'segments.schemes[0].eps': algorithm 'dbscan' needs 'eps' (the neighbourhood radius)",
        "add eps (in scaled units, e.g. eps: 0.5), or use algorithm: hdbscan",
    ),
    Bad(
        "k_range_reversed",
        "  schemes:\n    - type: cluster\n      features: [orders, revenue]\n"
        "      k_range: [8, 3]\n",
        "key 'segments.schemes[0].k_range': k_range must be [low, high] with 2 <= low <= high "
        "(got [8, 3])",
        "write k_range: [3, 8]",
    ),
    Bad(
        "transform_names_a_non_feature",
        "  schemes:\n    - type: cluster\n      features: [orders, monetary_value]\n"
        "      transform: {monetary: log1p}\n",
        "key 'segments.schemes[0].transform': transform names features not in 'features': "
        "['monetary'] (did you mean 'monetary_value'?)",
        "transform only listed features (orders, monetary_value)",
    ),
    Bad(
        "unknown_scheme_type",
        _rules("- segment: x\n  when: {field: orders, op: '>', value: 1}").replace(
            "behavioural", "behavioral"
        ),
        "key 'segments.schemes[0].type': unknown type 'behavioral' (did you mean 'behavioural'?)",
        "use one of: demographic, geographic, psychographic, behavioural, benefit, lifecycle, "
        "rfm, cluster",
    ),
    Bad(
        "lifecycle_thresholds_out_of_order",
        "  schemes:\n    - type: lifecycle\n      active_days: 120\n      lapsed_days: 90\n",
        "key 'segments.schemes[0].active_days': active_days (120) must be below lapsed_days (90)",
        "lower active_days or raise lapsed_days",
    ),
    Bad(
        "unknown_key_in_rule",
        _rules("- segment: x\n  wen: {field: orders, op: '>', value: 1}"),
        "unknown key 'segments.schemes[0].rules[0].wen' (did you mean 'when'?)",
        "allowed keys here: segment, when, description",
    ),
    Bad(
        "unknown_key_in_condition",
        _rules("- segment: x\n  when: {field: orders, op: '>', vaule: 1}"),
        "unknown key 'segments.schemes[0].rules[0].when.vaule' (did you mean 'value'?)",
        "allowed keys here: field, op, value, all, any, not",
    ),
    Bad(
        "misspelt_combinator",
        _rules("- segment: x\n  when: {anyy: [{field: orders, op: '>', value: 1}]}"),
        "unknown key 'segments.schemes[0].rules[0].when.anyy' (did you mean 'any'?)",
        "allowed keys here: field, op, value, all, any, not",
    ),
    Bad(
        "unknown_scheme_key",
        "  schemes:\n    - type: rfm\n      tie: split\n",
        "unknown key 'segments.schemes[0].tie' (did you mean 'ties'?)",
        "allowed keys here: name, type, bins, method, cuts, ties, segments, unassigned",
    ),
    Bad(
        "market_potential_need_bad_operator",
        "  market_potential:\n    - name: pets\n      category: pets\n"
        "      need: {field: interests, op: has, value: pets}\n",
        "key 'segments.market_potential[0].need.op': unknown operator 'has'",
        "use one of ==",
    ),
]


def test_the_corpus_is_large_and_unique() -> None:
    assert len(BAD) >= 12
    assert len({b.id for b in BAD}) == len(BAD)


@pytest.mark.parametrize("bad", [pytest.param(b, id=b.id) for b in BAD])
def test_bad_segment_config_names_the_key_and_the_fix(bad: Bad, tmp_path: Path) -> None:
    path = tmp_path / "segvalue.yaml"
    path.write_text(HEAD + "segments:\n" + bad.segments, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    err = info.value
    assert err.message.startswith(f"{path}: "), err.message
    assert bad.message in err.message, err.message
    assert bad.fix in (err.fix or ""), err.fix
    # No pydantic internals: union tags, dotted list positions, the raw dict of a model.
    key = re.search(r"key '([^']*)'", err.message)
    assert key is not None
    assert not re.search(r"\.\d|\.(compare|behavioural|rfm|cluster|lifecycle)\b", key.group(1))
    assert "{'" not in err.message
    # One mistake, one message: a misspelt key is not also reported as a missing one.
    assert "more problem" not in err.message


def test_a_good_segment_config_parses() -> None:
    config = parse_config(
        {
            "sources": {"orders": {"path": "o.csv"}},
            "segments": {
                "schemes": [
                    {
                        "name": "usage",
                        "type": "behavioural",
                        "rules": [
                            {
                                "segment": "heavy",
                                "when": {"field": "orders", "op": ">=", "value": 10},
                            },
                            {
                                "segment": "bargain",
                                "when": {
                                    "all": [
                                        {"field": "discount_share", "op": ">", "value": 0.5},
                                        {"not": {"field": "age", "op": "is_null"}},
                                    ]
                                },
                            },
                        ],
                    },
                    {"type": "lifecycle"},
                    {
                        "type": "rfm",
                        "method": "cuts",
                        "bins": 3,
                        "cuts": {"recency": [30, 90], "frequency": [1, 3], "monetary": [50, 200]},
                    },
                    {
                        "type": "cluster",
                        "features": ["orders", "revenue"],
                        "algorithm": "dbscan",
                        "eps": 0.4,
                    },
                ]
            },
        }
    )
    assert [s.name for s in config.segments.schemes] == ["usage", "lifecycle", "rfm", "clusters"]


# --- errors found only against the customer table ---------------------------------------

ORDERS = pa.table(
    {
        "order_id": ["1", "2", "3"],
        "customer_id": ["a", "a", "b"],
        "order_ts": pa.array(
            [dt.datetime(2024, 1, 2), dt.datetime(2024, 3, 1), dt.datetime(2024, 2, 1)],
            pa.timestamp("us"),
        ),
        "amount": [10.0, 20.0, 5.0],
    }
)
CUSTOMERS = pa.table(
    {"customer_id": ["a", "b", "c"], "age": [30.0, 52.0, None], "country": ["DE", "FR", "DE"]}
)


def _scheme_from_yaml(rules: str, tmp_path: Path) -> RuleSchemeConfig:
    path = tmp_path / "segvalue.yaml"
    path.write_text(HEAD + "segments:\n" + _rules(rules), encoding="utf-8")
    scheme = load_config(path).segments.schemes[0]
    assert isinstance(scheme, RuleSchemeConfig)
    return scheme


def _table() -> object:
    tables = {"orders": ibis.memtable(ORDERS), "customers": ibis.memtable(CUSTOMERS)}
    features = customer_features(tables, as_of=dt.date(2024, 3, 31))
    return customer_attributes(features, tables["customers"])


@pytest.mark.parametrize(
    ("rule", "message", "fix"),
    [
        pytest.param(
            "- segment: older\n  when: {field: agee, op: '>=', value: 50}",
            "key 'segments.schemes[0].rules[0].when.field': unknown field 'agee' "
            "(did you mean 'age'?)",
            "use a column of the customer table: customer_id, frequency,",
            id="unknown_field",
        ),
        pytest.param(
            "- segment: x\n  when: {any: [{field: orders, op: '>', value: 1}, "
            "{field: days_since_last, op: '>', value: 90}]}",
            "key 'segments.schemes[0].rules[0].when.any[1].field': unknown field "
            "'days_since_last' (did you mean 'days_since_last_order'?)",
            "days_since_last_order",
            id="unknown_field_nested",
        ),
        pytest.param(
            "- segment: x\n  when: {field: country, op: in, value: [49, 43]}",
            "key 'segments.schemes[0].rules[0].when.value': field 'country' is text (string) "
            "but the value 49 is a number",
            "quote the value so that it is text: '49'",
            id="text_field_number_value",
        ),
        pytest.param(
            "- segment: x\n  when: {field: revenue, op: regex, value: '^1'}",
            "key 'segments.schemes[0].rules[0].when.op': regex needs a text field, but 'revenue' "
            "is number (float64) (value '^1')",
            "use ==, in, between or a comparison for this field",
            id="regex_on_number",
        ),
        pytest.param(
            "- segment: x\n  when: {field: first_purchase, op: '<', value: 'January'}",
            "key 'segments.schemes[0].rules[0].when.value': field 'first_purchase' is date (date) "
            "but the value 'January' is text",
            "write an ISO date such as '2024-12-31'",
            id="date_field_not_a_date",
        ),
    ],
)
def test_compile_time_errors_name_the_key(
    rule: str, message: str, fix: str, tmp_path: Path
) -> None:
    scheme = _scheme_from_yaml(rule, tmp_path)
    with pytest.raises(ConfigError) as info:
        assign_rule_scheme(_table(), scheme, where="segments.schemes[0]")  # type: ignore[arg-type]
    assert message in info.value.message, info.value.message
    assert fix in (info.value.fix or ""), info.value.fix


def test_the_same_rules_run_once_the_field_is_right(tmp_path: Path) -> None:
    scheme = _scheme_from_yaml(
        "- segment: older\n  when: {field: age, op: '>=', value: 50}\n"
        "- segment: german\n  when: {field: country, op: '==', value: DE}",
        tmp_path,
    )
    rows = assign_rule_scheme(_table(), scheme).to_pyarrow().to_pylist()  # type: ignore[arg-type]
    assert sorted((r["customer_id"], r["segment"]) for r in rows) == [
        ("a", "german"),
        ("b", "older"),
        ("c", "german"),
    ]


def test_the_commented_template_example_parses_when_uncommented() -> None:
    import yaml

    from segvalue.config import config_template

    lines = config_template().splitlines()
    start = lines.index("# segments:")
    block = []
    for line in lines[start:]:
        if not line.startswith("#"):
            break
        block.append(line[2:])
    config = parse_config(
        {"sources": {"orders": {"path": "o.csv"}}, **yaml.safe_load("\n".join(block))}
    )
    assert [s.name for s in config.segments.schemes] == ["lifecycle", "rfm", "usage"]
