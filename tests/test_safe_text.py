"""Every user-facing message is safe for a terminal and a log: no control characters, no secrets."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.errors import ConfigError, SegvalueError, escape_control, redact_secrets, safe_text

BIDI = {"\u061c", "\u200e", "\u200f", "\u2028", "\u2029", *map(chr, range(0x202A, 0x202F))}
BIDI |= set(map(chr, range(0x2066, 0x206A)))


def _unsafe(char: str) -> bool:
    return char != "\n" and (unicodedata.category(char) == "Cc" or char in BIDI)


@settings(max_examples=300, derandomize=True)
@given(st.text())
def test_no_control_character_survives_but_newlines(text: str) -> None:
    out = safe_text(text)
    assert not [c for c in out if _unsafe(c)]
    assert out.count("\n") == text.count("\n")


@settings(max_examples=100, derandomize=True)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs"))))
def test_printable_text_without_secrets_is_unchanged(text: str) -> None:
    if any(c in BIDI for c in text) or "=" in text or "@" in text or "%" in text:
        return
    assert escape_control(text) == text
    assert redact_secrets(text) == text


# Secrets as people write them: long enough not to occur in the text around them by chance.
_SECRET_CHARS = st.characters(
    min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters="@/&;#,'\"%?\\= "
)
_secret = st.text(_SECRET_CHARS, min_size=6, max_size=30).map(lambda s: "Zq" + s)

_FORMS = [
    "postgres://ann:{s}@db.example:5432/sales",
    "postgresql://:{s}@10.0.0.1/db",
    "duckdb:///x.duckdb?password={s}",
    "mysql://h/db?user=u&PWD={s}&ssl=1",
    "https://api.example/v1?token={s}",
    "https://api.example/v1?a=1&api_key={s}#frag",
    "s3://b/k?Secret={s}",
    "x://h/?key={s}",
    "postgres://h/db?sslpassword={s}",
    "host=db port=5432 password={s} user=ann",
    "password='{s} with spaces' host=db",
    "wrap=postgres%3A%2F%2Fann%3A{s}%40db%2Fsales",
    "next=%2Fcb%3Fpassword%3D{s}%26x%3D1",
    "{{'password': '{s}', 'user': 'ann'}}",
    'cannot connect to oracle://ann:{s}@db/x: ORA-01017 "password={s}"',
]


@pytest.mark.parametrize("form", _FORMS)
@settings(max_examples=40, derandomize=True)
@given(secret=_secret)
def test_redacted_text_never_contains_the_secret(form: str, secret: str) -> None:
    text = form.format(s=secret)
    out = safe_text(text)
    assert secret not in out
    assert "***" in out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgres://ann:pw@db/sales", "postgres://ann:***@db/sales"),
        ("postgres://ann:p@ss@db:5432/sales?x=a@b", "postgres://ann:***@db:5432/sales?x=a@b"),
        ("duckdb:///f.db?PASSWORD=x&mode=ro", "duckdb:///f.db?PASSWORD=***&mode=ro"),
        ("host=h password=xyz dbname=d", "host=h password=*** dbname=d"),
        ("postgres://ann@db/sales", "postgres://ann@db/sales"),  # a user name is no secret
        ("password authentication failed", "password authentication failed"),
        ("bad\tcell\r\x1b[31m", "bad\\tcell\\r\\x1b[31m"),
        ("evil\u202etxt.csv", "evil\\u202etxt.csv"),
        ("c1\x85\x9b", "c1\\x85\\x9b"),
        ("two\nlines", "two\nlines"),
    ],
)
def test_examples(text: str, expected: str) -> None:
    assert safe_text(text) == expected


def test_every_error_is_sanitised_at_the_root() -> None:
    exc = ConfigError("cannot open postgres://u:hunter2@h/db\x1b[2J", fix="retry\tlater")
    assert exc.message == "cannot open postgres://u:***@h/db\\x1b[2J"
    assert exc.fix == "retry\\tlater"
    assert "hunter2" not in str(exc)
    assert isinstance(exc, SegvalueError)


def test_sanitising_twice_changes_nothing() -> None:
    text = "x://u:pw@h/?token=abc \x1b \u202e\ttab"
    assert safe_text(safe_text(text)) == safe_text(text)
