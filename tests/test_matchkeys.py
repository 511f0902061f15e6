"""Ad-platform match keys (segvalue.activation.matchkeys) and ``segvalue hash``.

The rules and reference values are the destinations' published pages
(docs/activation-matchkeys.md has the links):

- Meta, Marketing API, Customer File Custom Audiences, "Hashing and Normalizing Data":
  EMAIL "Trim leading and trailing whitespace and convert all characters to lowercase";
  PHONE "Remove symbols, letters, and any leading zeros. You should prefix the country
  code"; the Conversions API's ``em`` / ``ph`` say the same.
- Google, Data Manager API, "Format user data": ``email_address`` lower-case, leading,
  trailing and intermediate whitespace removed; for gmail.com and googlemail.com "remove
  all dots (.) before the @ symbol" and "remove the plus sign (+) from the local part and
  all characters that follow it": cloudy.sanfrancisco+shopping@gmail.com ->
  cloudysanfrancisco@gmail.com, user.name+NYC@Example.com -> user.name+nyc@example.com;
  ``phone_number`` E.164 with the + and the country code: (800)555-0100 -> +18005550100.
- TikTok, Ads Manager help, "List of supported IDs and formats for a customer file"
  (August 2025): Phone "Remove symbols, including '+' sign; Remove letters; Remove
  leading zeros; Add country code if missing, even in the US": (657)777-0000 ->
  16577770000, 374-93-828222 -> 37493828222; Email "Lowercase only; ID should start with
  numbers or letters; Remove '+' and any characters following the '+' symbol until '@'".
  TikTok's "How to create a Custom Audience with a customer file" shows the hashed
  examples checked below: 37493828222 -> 65b7e6dc..., janedoe@gmail.com -> d6117306...
"""

from __future__ import annotations

import json
import logging
import re
import shlex
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from segvalue.activation.matchkeys import (
    CALLING_CODES,
    DESTINATIONS,
    email_problem,
    match_key_columns,
    match_keys,
    normalise_email,
    normalise_phone,
    phone_problem,
    sha256_hex,
)
from segvalue.cli.main import cli
from segvalue.errors import ConfigError, DataValidationError
from segvalue.pipeline.matchkeys import hash_contact

DOCS = Path(__file__).parents[1] / "docs" / "activation-matchkeys.md"
HEX64 = re.compile(r"[0-9a-f]{64}")
DETERMINISTIC = settings(max_examples=200, deadline=None, derandomize=True, database=None)


# -- known answers ----------------------------------------------------------------------


def test_sha256_of_a_known_address() -> None:
    """SHA-256("test@example.com"), the lower-case hex digest every destination expects."""
    assert sha256_hex("test@example.com") == (
        "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b"
    )


def test_tiktoks_published_hashes() -> None:
    """TikTok's customer-file page: the normalised 37493828222 and janedoe@gmail.com and
    their SHA-256 as printed there."""
    phone = normalise_phone("tiktok", "+374 93 828222")
    assert phone == "37493828222"
    assert sha256_hex(phone) == "65b7e6dcf6f4310f8d7cbfbd78289a753062fb054d6664fb9aaac5df66a422d4"
    keys = match_keys("tiktok", email=" JaneDoe@Gmail.com")
    assert keys["email"] == "janedoe@gmail.com"
    assert keys["email_sha256"] == (
        "d6117306485ed0e50afab3ac871e98f81699151f30281527d63ff5f233656c69"
    )


@pytest.mark.parametrize("destination", DESTINATIONS)
def test_every_destination_trims_and_lower_cases(destination: str) -> None:
    assert normalise_email(destination, " John.Doe@Example.COM ") == "john.doe@example.com"


def test_googles_gmail_rule() -> None:
    """Data Manager API: gmail.com / googlemail.com lose the dots and the + part before
    the @; other domains keep both."""
    assert normalise_email("google", "cloudy.sanfrancisco+shopping@gmail.com") == (
        "cloudysanfrancisco@gmail.com"
    )
    assert normalise_email("google", "John.Doe@GoogleMail.com") == "johndoe@googlemail.com"
    assert normalise_email("google", "user.name+NYC@Example.com") == "user.name+nyc@example.com"
    # Meta's rule has no such step: the same address stays as written, lower-cased.
    assert normalise_email("meta", "John.Doe+x@gmail.com") == "john.doe+x@gmail.com"


def test_tiktoks_plus_rule_applies_to_every_domain() -> None:
    """TikTok: remove '+' and what follows it until '@' (no domain named); dots stay."""
    assert normalise_email("tiktok", "John.Doe+news@Example.com") == "john.doe@example.com"
    assert normalise_email("tiktok", "john.doe@gmail.com") == "john.doe@gmail.com"


@pytest.mark.parametrize(
    ("destination", "expected"),
    [("meta", "14155552671"), ("google", "+14155552671"), ("tiktok", "14155552671")],
)
def test_an_international_number(destination: str, expected: str) -> None:
    """Meta and TikTok: digits with the country code, no '+'; Google: E.164 with it."""
    assert normalise_phone(destination, "+1 (415) 555-2671") == expected
    assert normalise_phone(destination, "+1 (415) 555-2671", country="DE") == expected


def test_the_destinations_own_phone_examples() -> None:
    assert normalise_phone("google", "(800)555-0100", country="US") == "+18005550100"
    assert normalise_phone("tiktok", "(657)777-0000", country="US") == "16577770000"
    assert normalise_phone("tiktok", "+374-93-828222") == "37493828222"


@pytest.mark.parametrize(
    ("phone", "country", "e164"),
    [
        ("030 1234567", "DE", "+49301234567"),
        ("030/123 45 67", "de", "+49301234567"),
        ("020 7946 0018", "GB", "+442079460018"),
        ("020 7946 0018", "UK", "+442079460018"),
        ("06 12 34 56 78", "FR", "+33612345678"),
        ("(415) 555-2671", "US", "+14155552671"),
        ("1 415 555 2671", "US", "+14155552671"),
        ("416-555-0199", "CA", "+14165550199"),
        ("0151 2345 6789", "DE", "+4915123456789"),
        # Italy dials no trunk prefix: the 0 is part of the number.
        ("06 1234 5678", "IT", "+390612345678"),
        ("612 34 56 78", "ES", "+34612345678"),
        ("98765 43210", "IN", "+919876543210"),
        # An Indian mobile number starting 91 is national, not +91 with 8 digits.
        ("91234 56789", "IN", "+919123456789"),
        ("06 1 234 5678", "HU", "+3612345678"),
        ("090-1234-5678", "JP", "+819012345678"),
    ],
)
def test_national_numbers_are_completed_from_the_country(
    phone: str, country: str, e164: str
) -> None:
    assert normalise_phone("google", phone, country=country) == e164
    assert normalise_phone("meta", phone, country=country) == e164[1:]


@pytest.mark.parametrize(
    "phone",
    ["0049 30 1234567", "+49 (0)30 1234567", "+49 030 1234567", "00 49 30-123 45 67"],
)
def test_leading_zeros_go(phone: str) -> None:
    """Meta: "Remove ... any leading zeros": the 00 international prefix, and a trunk 0
    written after the country code."""
    assert normalise_phone("meta", phone) == "49301234567"
    assert normalise_phone("google", phone) == "+49301234567"


def test_a_zero_after_the_country_code_stays_where_it_is_part_of_the_number() -> None:
    assert normalise_phone("meta", "+39 06 1234 5678") == "390612345678"


def test_a_key_already_with_its_country_code_is_read_as_such() -> None:
    """A Meta / TikTok key given again with the customer's country is not completed
    twice (where national numbers are dialled with a trunk prefix)."""
    assert normalise_phone("meta", "4930 1234567", country="DE") == "49301234567"
    assert normalise_phone("meta", "14155552671", country="US") == "14155552671"
    # Without a trunk prefix, only a number too long to be national.
    assert normalise_phone("meta", "34612345678", country="ES") == "34612345678"


@pytest.mark.parametrize(
    ("email", "problem"),
    [
        ("", "it is empty"),
        ("   ", "it is empty"),
        ("john.doe(at)example.com", "it has no '@'"),
        ("a@b@example.com", "it has 2 '@'"),
        ("@example.com", "it has nothing before the '@'"),
        ("ann@", "it has nothing after the '@'"),
        ("ann smith@example.com", "it has whitespace inside"),
    ],
)
@pytest.mark.parametrize("destination", DESTINATIONS)
def test_invalid_addresses_are_not_hashed(destination: str, email: str, problem: str) -> None:
    assert normalise_email(destination, email) is None
    assert email_problem(destination, email) == problem
    keys = match_keys(destination, email=email)
    assert keys["email"] is None and keys["email_sha256"] is None


def test_invalid_addresses_of_one_destination() -> None:
    assert normalise_email("google", ".+x@gmail.com") is None
    assert "nothing is left" in str(email_problem("google", ".+x@gmail.com"))
    assert normalise_email("tiktok", "_ann@example.com") is None
    assert "letter or digit" in str(email_problem("tiktok", "_ann@example.com"))
    # Both are addresses for Meta.
    assert normalise_email("meta", "_ann@example.com") == "_ann@example.com"


@pytest.mark.parametrize(
    ("phone", "country", "problem"),
    [
        ("", None, "it is empty"),
        ("call me", None, "letters"),
        ("+1 415 555 2671 ext 12", None, "letters"),
        ("---", None, "no digits"),
        ("030 1234567", None, "no `country`"),
        ("030 1234567", "XX", "`country` 'XX' is not in the calling-code table"),
        ("+49 30 12", None, "4 digits after the country code 49: at least 7"),
        ("+1 555 0100", None, "7 digits after the country code 1: a US or Canadian"),
        ("555 0100", "US", "7 digits after the country code 1"),
        ("+49 1234 5678 9012 3456", None, "more than the 15 digits"),
        ("+0 30 1234567", None, "never starts with 0"),
        ("+374 12", None, "too few"),
    ],
)
def test_numbers_that_cannot_be_completed_are_not_hashed(
    phone: str, country: str | None, problem: str
) -> None:
    for destination in DESTINATIONS:
        assert normalise_phone(destination, phone, country) is None
        assert problem in str(phone_problem(destination, phone, country))
        keys = match_keys(destination, phone=phone, country=country)
        assert keys["phone"] is None and keys["phone_sha256"] is None


def test_a_problem_never_repeats_the_contact_detail() -> None:
    """Problems may be logged; the values they are about must not be."""
    for email in ("ann smith@example.com", "secret.person(at)example.com"):
        assert "example" not in str(email_problem("meta", email))
    assert "5550100" not in str(phone_problem("meta", "+1 555 0100"))
    assert "1234567" not in str(phone_problem("meta", "030 1234567", "XX"))


@pytest.mark.parametrize(
    "call",
    [
        lambda: normalise_email("facebook", "a@b.c"),
        lambda: email_problem("Meta", "a@b.c"),
        lambda: normalise_phone("adwords", "+1 415 555 2671"),
        lambda: phone_problem("tik tok", "+1 415 555 2671"),
        lambda: match_keys("linkedin"),
        lambda: match_key_columns("snap", ["a@b.c"]),
    ],
)
def test_an_unknown_destination_is_a_config_error(call: Callable[[], object]) -> None:
    pattern = r"`destination` .* is not one of meta, google, tiktok"
    with pytest.raises(ConfigError, match=pattern) as caught:
        call()
    assert caught.value.parameter == "destination"


def test_a_near_miss_is_named() -> None:
    with pytest.raises(ConfigError, match=r"did you mean 'meta'"):
        match_keys("Meta", email="a@b.c")


def test_match_keys_of_one_customer() -> None:
    keys = match_keys("meta", email=" Test@Example.com", phone="030 1234567", country="DE")
    assert keys == {
        "destination": "meta",
        "email": "test@example.com",
        "email_sha256": "973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b",
        "phone": "49301234567",
        "phone_sha256": sha256_hex("49301234567"),
    }
    assert match_keys("google") == {
        "destination": "google",
        "email": None,
        "email_sha256": None,
        "phone": None,
        "phone_sha256": None,
    }


def test_the_calling_code_table_covers_the_required_countries() -> None:
    eu_eea = (
        "AT BE BG HR CY CZ DK EE FI FR DE GR HU IE IT LV LT LU MT NL PL PT RO SK SI ES SE IS LI NO"
    )
    others = "GB CH US CA AU NZ JP BR MX IN"
    demo = "DE FR NL ES IT SE DK FI AT PL"  # segvalue.data.demo's cities
    for country in f"{eu_eea} {others} {demo}".split():
        assert country in CALLING_CODES, country
    assert (CALLING_CODES["DE"], CALLING_CODES["GB"], CALLING_CODES["US"]) == (49, 44, 1)


# -- whole audiences --------------------------------------------------------------------


def test_columns_from_arrow_with_a_country_per_customer() -> None:
    emails = pa.array(["Ann@Example.com", None, "no-at-sign", "b.ob+x@gmail.com"])
    phones = pa.chunked_array([["030 1234567", "+1 415 555 2671"], [None, "06 12 34 56 78"]])
    countries = pa.array(["DE", None, "DE", "FR"])
    keys = match_key_columns("google", emails, phones, countries)
    assert keys["email"] == ["ann@example.com", None, None, "bob@gmail.com"]
    assert keys["email_problem"] == [None, None, "it has no '@'", None]
    assert keys["phone"] == ["+49301234567", "+14155552671", None, "+33612345678"]
    assert keys["phone_problem"] == [None, None, None, None]
    # A blank cell is a missing value, not a problem.
    blank = match_key_columns("meta", ["", "  "], ["", "+1 555"])
    assert blank["email_problem"] == [None, None]
    assert blank["phone_problem"] == [
        None,
        "it has 3 digits after the country code 1: a US or Canadian number has 10",
    ]
    assert keys["email_sha256"][0] == sha256_hex("ann@example.com")
    assert keys["phone_sha256"][3] == sha256_hex("+33612345678")


def test_columns_with_one_country_and_one_column_left_out() -> None:
    keys = match_key_columns("meta", phones=["030 1234567", "0171 1234567"], countries="DE")
    assert keys["phone"] == ["49301234567", "491711234567"]
    assert keys["email"] == [None, None] and keys["email_problem"] == [None, None]
    assert match_key_columns("meta")["email"] == []


def test_columns_of_different_lengths_are_refused() -> None:
    with pytest.raises(DataValidationError, match=r"`emails` 2, `phones` 1") as caught:
        match_key_columns("meta", ["a@b.c", "d@e.f"], ["+1 415 555 2671"])
    assert caught.value.parameter == "emails"
    with pytest.raises(DataValidationError, match=r"`phones` holds int values, not text"):
        match_key_columns("meta", phones=[4915123456789])


# -- properties -------------------------------------------------------------------------

_LOCAL = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._+-]{0,20}", fullmatch=True)
_DOMAIN = st.sampled_from(["gmail.com", "GoogleMail.com", "example.com", "Web.DE", "mail.co.uk"])
_PAD = st.sampled_from(["", " ", "\t", "  \n"])


@DETERMINISTIC
@given(st.sampled_from(DESTINATIONS), _PAD, _LOCAL, _DOMAIN, _PAD)
def test_email_normalisation_is_idempotent(
    destination: str, before: str, local: str, domain: str, after: str
) -> None:
    once = normalise_email(destination, f"{before}{local}@{domain}{after}")
    if once is not None:
        assert normalise_email(destination, once) == once
        assert once == once.strip().lower()


@DETERMINISTIC
@given(st.text())
def test_a_key_is_always_64_lower_case_hex(value: str) -> None:
    assert HEX64.fullmatch(sha256_hex(value))


@DETERMINISTIC
@given(st.sampled_from(DESTINATIONS), st.text(max_size=30), st.text(max_size=20))
def test_whatever_the_input_the_keys_are_hex_or_none(
    destination: str, email: str, phone: str
) -> None:
    keys = match_keys(destination, email=email, phone=phone, country="DE")
    for field in ("email", "phone"):
        if keys[field] is None:
            assert keys[f"{field}_sha256"] is None
        else:
            assert keys[f"{field}_sha256"] == sha256_hex(str(keys[field]))
            assert HEX64.fullmatch(str(keys[f"{field}_sha256"]))


# country, national significant numbers, the trunk prefix its national form is dialled with
_NUMBERS = {
    "DE": (r"[1-9][0-9]{8,10}", "0"),
    "GB": (r"[1-9][0-9]{9}", "0"),
    "FR": (r"[1-9][0-9]{8}", "0"),
    "US": (r"[2-9][0-9]{2}[2-9][0-9]{6}", "1"),
    "IT": (r"(0[1-9][0-9]{5,8}|3[0-9]{9})", ""),
}


@st.composite
def _written(draw: st.DrawFn) -> tuple[str, str, str]:
    """(country, the number as a person might write it, its E.164 digits)."""
    country = draw(st.sampled_from(sorted(_NUMBERS)))
    pattern, trunk = _NUMBERS[country]
    national = draw(st.from_regex(pattern, fullmatch=True))
    code = str(CALLING_CODES[country])
    cuts = sorted(draw(st.sets(st.integers(1, len(national) - 1), max_size=4)))
    parts = [national[a:b] for a, b in zip([0, *cuts], [*cuts, len(national)], strict=True)]
    seps = st.sampled_from([" ", "-", ".", "/", "", " - "])
    body = parts[0]
    if draw(st.booleans()):
        body = f"({body})"
    for part in parts[1:]:
        body += draw(seps) + part
    forms = [f"+{code} {body}", f"00{code} {body}", f"+{code}{body}"]
    if trunk == "0":
        forms += [f"+{code} (0){body}", f"{trunk}{body}"]
    elif trunk == "1":
        forms += [body, f"1 {body}", f"1-{body}"]
    else:
        forms += [body]
    return country, draw(st.sampled_from(forms)), code + national


@DETERMINISTIC
@given(_written())
def test_every_way_of_writing_a_number_gives_the_same_key(written: tuple[str, str, str]) -> None:
    """Spaces, dashes, dots, slashes, brackets, +, 00, (0), a trunk prefix: one key."""
    country, phone, digits = written
    assert normalise_phone("meta", phone, country) == digits
    assert normalise_phone("tiktok", phone, country) == digits
    assert normalise_phone("google", phone, country) == f"+{digits}"
    assert match_keys("google", phone=phone, country=country)["phone_sha256"] == sha256_hex(
        f"+{digits}"
    )


@DETERMINISTIC
@given(_written())
def test_phone_normalisation_is_idempotent(written: tuple[str, str, str]) -> None:
    country, phone, _ = written
    google = normalise_phone("google", phone, country)
    assert google is not None
    assert normalise_phone("google", google) == google
    assert normalise_phone("google", google, country) == google
    meta = normalise_phone("meta", phone, country)
    assert meta is not None
    assert normalise_phone("meta", f"+{meta}") == meta
    if country != "IT":  # a plan without trunk prefix reads short numbers as national
        assert normalise_phone("meta", meta, country) == meta


@DETERMINISTIC
@given(
    st.one_of(st.text(max_size=20), st.from_regex(r"\+?[0-9 ()-]{0,18}", fullmatch=True)),
    st.sampled_from([None, *sorted(CALLING_CODES), "XX"]),
)
def test_metas_phone_key_is_googles_without_the_plus(phone: str, country: str | None) -> None:
    google = normalise_phone("google", phone, country)
    meta = normalise_phone("meta", phone, country)
    assert (google is None and meta is None) or google == f"+{meta}"
    assert normalise_phone("tiktok", phone, country) == meta
    if google is not None:
        assert len(google) <= 16 and google[1] != "0"


@settings(max_examples=30, deadline=None, derandomize=True, database=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.none(), _LOCAL.map(lambda s: f"{s}@example.com"), st.text(max_size=8)),
            st.one_of(st.none(), st.from_regex(r"\+?[0-9 ]{0,14}", fullmatch=True)),
            st.sampled_from([None, "DE", "US", "XX"]),
        ),
        max_size=12,
    ),
    st.sampled_from(DESTINATIONS),
)
def test_columns_agree_with_one_customer_at_a_time(
    rows: list[tuple[str | None, str | None, str | None]], destination: str
) -> None:
    emails, phones, countries = ([row[i] for row in rows] for i in range(3))
    columns = match_key_columns(destination, emails, phones, countries)
    for i, (email, phone, country) in enumerate(rows):
        one = match_keys(destination, email=email, phone=phone, country=country)
        for field in ("email", "email_sha256", "phone", "phone_sha256"):
            assert columns[field][i] == one[field]


# -- segvalue hash ----------------------------------------------------------------------


def test_hash_prints_each_value_and_its_key(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["hash", "--destination", "meta", "--email", " John.Doe@Example.COM "]
    assert cli([*argv, "--phone", "+1 (415) 555-2671"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "destination: meta",
        "email: john.doe@example.com",
        f"  sha256: {sha256_hex('john.doe@example.com')}",
        "phone: 14155552671",
        f"  sha256: {sha256_hex('14155552671')}",
    ]


def test_hash_says_why_a_value_is_not_hashed(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["hash", "--destination", "google", "--email", "ann(at)example.com"]
    assert cli([*argv, "--phone", "030 1234567"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "email: not hashed: 'ann(at)example.com': it has no '@'" in text
    # The library names its parameter; the command line says the option.
    assert "phone: not hashed: '030 1234567': it has no country code" in text
    assert "no --country to complete it" in text
    assert "sha256" not in text


def test_hash_json_holds_the_keys(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["hash", "--destination", "google", "--phone", "020 7946 0018", "--country", "GB"]
    assert cli([*argv, "--email", "J.Doe+x@gmail.com", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc == {
        "destination": "google",
        "email": "jdoe@gmail.com",
        "email_sha256": sha256_hex("jdoe@gmail.com"),
        "phone": "+442079460018",
        "phone_sha256": sha256_hex("+442079460018"),
    }
    assert cli(["hash", "--destination", "meta", "--phone", "12", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["phone"] is None and doc["phone_sha256"] is None and doc["email"] is None


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--destination", "meta"], "error: give --email or --phone (or both) to hash"),
        (
            ["--destination", "facebook", "--email", "a@b.c"],
            "error: --destination 'facebook' is not one of meta, google, tiktok",
        ),
        (["--destination", "Meta", "--email", "a@b.c"], "(did you mean 'meta'?)"),
    ],
)
def test_hash_refuses_bad_input_with_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli(["hash", *argv]) == 2
    shown = capsys.readouterr()
    assert shown.out == ""
    assert message in " ".join(shown.err.split())
    assert "Traceback" not in shown.err


def test_hash_logs_nothing(
    caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """The contact details are printed because the user typed them, nowhere else."""
    with caplog.at_level(logging.DEBUG):
        argv = ["hash", "--destination", "tiktok", "--email", "private.person@example.com"]
        assert cli([*argv, "--phone", "+49 171 7654321"]) == 0
    assert "private" not in caplog.text and "7654321" not in caplog.text
    assert "private.person@example.com" in capsys.readouterr().out


def test_hash_contact_returns_the_problems() -> None:
    keys = hash_contact("meta", email="a b@c.d", phone="+49 30 1234567")
    assert keys["email"] is None and keys["email_problem"] == "it has whitespace inside"
    assert keys["phone"] == "49301234567" and keys["phone_problem"] is None


def test_the_documented_example_is_what_the_command_prints(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """docs/activation-matchkeys.md: each ``$ segvalue hash ...`` and the output below it."""
    text = DOCS.read_text(encoding="utf-8")
    blocks = re.findall(r"```console\n(.*?)```", text, re.DOTALL)
    examples = [b for b in blocks if b.startswith("$ segvalue hash")]
    assert len(examples) >= 2
    for block in examples:
        command, *expected = block.rstrip("\n").splitlines()
        assert cli(shlex.split(command)[2:]) == 0, command
        shown = [line.rstrip() for line in capsys.readouterr().out.splitlines()]
        assert shown == expected, command
