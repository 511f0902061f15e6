"""Match keys: customers' e-mail addresses and phone numbers, normalised and hashed the
way each ad platform matches them (docs/activation-matchkeys.md).

An audience reaches an ad platform as match keys: the lower-case hex SHA-256 of each
customer's e-mail address and phone number, after the normalisation *that platform*
publishes. Two spellings of the same contact must give the same key, and a key
normalised by the wrong rule matches nobody, so each destination keeps its own rule:

- **meta** (Custom Audiences from a customer list; Conversions API ``em`` / ``ph``):
  e-mail trimmed and lower-cased; phone as digits only with the country code, no ``+``,
  no leading zeros ("Remove symbols, letters, and any leading zeros"), e.g.
  ``14155552671``.
- **google** (Customer Match through the Data Manager API): e-mail trimmed and
  lower-cased, and for ``gmail.com`` / ``googlemail.com`` addresses the dots before the
  ``@`` and a ``+`` with everything after it removed (``cloudy.sanfrancisco+shopping@
  gmail.com`` -> ``cloudysanfrancisco@gmail.com``); phone in E.164 with its ``+``
  (``+14155552671``).
- **tiktok** (Custom Audience from a customer file): e-mail lower-cased, a ``+`` and what
  follows it up to the ``@`` removed, starting with a letter or digit; phone as digits
  with the country code, no ``+``, no leading zeros (``16577770000``).

The pages each rule follows are in :data:`SOURCES`.

An e-mail address is valid with exactly one ``@``, something on both sides of it and no
whitespace inside it. A phone number is read as written with its country code when it
starts with ``+`` or the international prefix ``00``; otherwise it is a national number,
completed from the customer's ``country`` (ISO 3166-1 alpha-2) with the calling code of
:data:`CALLING_CODES`, its trunk prefix (the ``0`` of ``030 1234567``; the ``1`` of
``1 415 555 2671``) dropped. A value that is not valid is not hashed: its key is None and
``email_problem`` / ``phone_problem`` say why (without repeating the value: a problem may
be logged, a contact detail must not be).

Pure functions: no file, network or logging.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from segvalue.errors import ConfigError, DataValidationError, did_you_mean

__all__ = [
    "CALLING_CODES",
    "DESTINATIONS",
    "SOURCES",
    "email_problem",
    "match_key_columns",
    "match_keys",
    "normalise_email",
    "normalise_phone",
    "phone_problem",
    "sha256_hex",
]

#: The ad platforms whose match keys this module writes.
DESTINATIONS = ("meta", "google", "tiktok")

#: The published pages each destination's normalisation follows.
SOURCES: Mapping[str, tuple[str, ...]] = {
    "meta": (
        # "Hashing and Normalizing Data": EMAIL "Trim leading and trailing whitespace and
        # convert all characters to lowercase"; PHONE "Remove symbols, letters, and any
        # leading zeros. You should prefix the country code".
        "https://developers.facebook.com/docs/marketing-api/audiences/guides/custom-audiences",
        # em / ph: the same rules for the Conversions API.
        "https://developers.facebook.com/docs/marketing-api/conversions-api/parameters/"
        "customer-information-parameters",
    ),
    "google": (
        # "Format user data": email_address lower-case; gmail.com / googlemail.com: remove
        # all dots before the @ and the + with all characters after it; phone_number E.164
        # with the + and the country code, (800)555-0100 -> +18005550100.
        "https://developers.google.com/data-manager/api/devguides/concepts/formatting",
        # Customer Match (Google Ads API): trim, lower-case; removing the gmail dots is
        # "not required", they are accepted either way.
        "https://developers.google.com/google-ads/api/docs/remarketing/audience-types/"
        "customer-match",
    ),
    "tiktok": (
        # "List of supported IDs and formats for a customer file" (August 2025): Phone
        # "Remove symbols, including '+' sign; Remove letters; Remove leading zeros; Add
        # country code if missing", (657)777-0000 -> 16577770000; Email "Lowercase only;
        # ID should start with numbers or letters; Remove '+' and any characters following
        # the '+' symbol until '@'".
        "https://ads.tiktok.com/help/article/list-of-supported-ids-and-formats-for-a-customer-file",
    ),
}


@dataclass(frozen=True)
class _Plan:
    """A country's numbering plan, as far as completing a national number needs it."""

    code: str  # the country calling code (ITU-T E.164)
    trunk: tuple[str, ...]  # national (trunk) prefixes, "" where the plan has none
    shortest: int  # the national significant number's length, shortest ...
    longest: int  # ... and longest (approximate: it only decides how to read a number)


# ISO 3166-1 alpha-2 -> numbering plan: the EU and EEA, the UK and Switzerland, the
# demo's countries (all EU) and the other large markets. Trunk prefixes and lengths from
# the ITU-T national numbering plans; Italy, Spain, Portugal, Poland, Greece, Denmark,
# Norway, ... dial no trunk prefix (Italy's leading 0 is part of the number); Hungary's
# is 06, Lithuania's 8 (0 from 2025); NANP's (US, CA) 1.
_PLANS: dict[str, _Plan] = {
    "AT": _Plan("43", ("0",), 4, 13),
    "BE": _Plan("32", ("0",), 8, 9),
    "BG": _Plan("359", ("0",), 6, 9),
    "HR": _Plan("385", ("0",), 6, 9),
    "CY": _Plan("357", (), 8, 8),
    "CZ": _Plan("420", (), 9, 9),
    "DK": _Plan("45", (), 8, 8),
    "EE": _Plan("372", (), 7, 8),
    "FI": _Plan("358", ("0",), 5, 12),
    "FR": _Plan("33", ("0",), 9, 9),
    "DE": _Plan("49", ("0",), 6, 13),
    "GR": _Plan("30", (), 10, 10),
    "HU": _Plan("36", ("06",), 8, 9),
    "IE": _Plan("353", ("0",), 7, 10),
    "IT": _Plan("39", (), 6, 11),
    "LV": _Plan("371", (), 8, 8),
    "LT": _Plan("370", ("8", "0"), 8, 8),
    "LU": _Plan("352", (), 4, 11),
    "MT": _Plan("356", (), 8, 8),
    "NL": _Plan("31", ("0",), 9, 10),
    "PL": _Plan("48", (), 9, 9),
    "PT": _Plan("351", (), 9, 9),
    "RO": _Plan("40", ("0",), 9, 9),
    "SK": _Plan("421", ("0",), 9, 9),
    "SI": _Plan("386", ("0",), 8, 8),
    "ES": _Plan("34", (), 9, 9),
    "SE": _Plan("46", ("0",), 6, 10),
    "IS": _Plan("354", (), 7, 9),
    "LI": _Plan("423", (), 7, 9),
    "NO": _Plan("47", (), 8, 8),
    "GB": _Plan("44", ("0",), 7, 10),
    "CH": _Plan("41", ("0",), 9, 9),
    "US": _Plan("1", ("1",), 10, 10),
    "CA": _Plan("1", ("1",), 10, 10),
    "AU": _Plan("61", ("0",), 9, 9),
    "NZ": _Plan("64", ("0",), 8, 10),
    "JP": _Plan("81", ("0",), 9, 10),
    "BR": _Plan("55", ("0",), 10, 11),
    "MX": _Plan("52", (), 10, 10),
    "IN": _Plan("91", ("0",), 10, 10),
}
# "UK" is not the ISO code (GB) but what most files say.
_ALIASES = {"UK": "GB"}

#: ISO 3166-1 alpha-2 country -> its calling code: the countries whose national numbers
#: :func:`normalise_phone` completes.
CALLING_CODES: Mapping[str, int] = {
    country: int(plan.code) for country, plan in sorted(_PLANS.items())
}

# Calling code -> whether a 0 written after it is the national trunk prefix (the "(0)" of
# "+44 (0)20 ..."): one answer per code (US and CA share 1, and both dial a trunk 1).
_ZERO_AFTER_CODE = {plan.code: "0" in plan.trunk for plan in _PLANS.values()}
_CODE_LENGTHS = sorted({len(code) for code in _ZERO_AFTER_CODE})

# E.164: at most 15 digits with the country code; fewer than 7 digits after it cannot
# reach anyone (the shortest subscriber numbers in the plans above have 7).
_E164_DIGITS = 15
_NATIONAL_DIGITS = 7
_NANP = "1"
_NANP_DIGITS = 10

_GMAIL = frozenset({"gmail.com", "googlemail.com"})
# Why a blank value has no key: in a column it counts as missing, not as a problem.
_EMPTY = "it is empty"
_WHITESPACE = re.compile(r"\s")
# A phone number is digits with spaces, dashes, dots, slashes or brackets between them and
# an optional leading +; any other character (a letter, an "ext.") makes it unreadable.
_PHONE = re.compile(r"\+?[0-9\s\-./()]*")
_NOT_DIGIT = re.compile(r"[^0-9]")


def _destination(destination: str) -> str:
    if destination not in DESTINATIONS:
        raise ConfigError(
            f"`destination` {destination!r} is not one of {', '.join(DESTINATIONS)}"
            + did_you_mean(str(destination).lower(), DESTINATIONS),
            fix="use meta (Facebook, Instagram), google (Customer Match) or tiktok",
            parameter="destination",
        )
    return destination


def _email(destination: str, email: str) -> tuple[str | None, str | None]:
    """(normalised address, None) or (None, why it is not valid)."""
    value = email.strip().lower()
    if not value:
        return None, _EMPTY
    ats = value.count("@")
    if ats != 1:
        return None, "it has no '@'" if ats == 0 else f"it has {ats} '@'"
    local, domain = value.split("@")
    if not local:
        return None, "it has nothing before the '@'"
    if not domain:
        return None, "it has nothing after the '@'"
    if _WHITESPACE.search(value):
        return None, "it has whitespace inside"
    if destination == "google" and domain in _GMAIL:
        local = local.partition("+")[0].replace(".", "")
        if not local:
            return None, "nothing is left before the '@' without the dots and the '+' part"
    elif destination == "tiktok":
        local = local.partition("+")[0]
        if not local[:1].isalnum():
            return None, "TikTok needs it to start with a letter or digit"
    return f"{local}@{domain}", None


def _country(country: str) -> tuple[_Plan | None, str | None]:
    name = country.strip().upper()
    plan = _PLANS.get(_ALIASES.get(name, name))
    if plan is None:
        return None, (
            f"`country` {country!r} is not in the calling-code table (ISO 3166-1 alpha-2 codes "
            "such as DE, GB, US): write the number with its country code, +49 ..."
        )
    return plan, None


def _split_code(digits: str) -> tuple[str, str] | None:
    """(calling code, national number) of an international number, for the known codes."""
    for length in _CODE_LENGTHS:
        if digits[:length] in _ZERO_AFTER_CODE:
            return digits[:length], digits[length:]
    return None


def _international(digits: str) -> tuple[str | None, str | None]:
    """E.164 digits of a number written with its country code, or why not."""
    if digits.startswith("0"):
        return None, "a country calling code never starts with 0"
    split = _split_code(digits)
    if split is None:
        # Not a code of the table: take the number as written.
        if len(digits) < 1 + _NATIONAL_DIGITS:
            return None, f"it has {len(digits)} digits: too few for a phone number"
        return _checked(digits), None
    code, national = split
    if _ZERO_AFTER_CODE[code] and national.startswith("0"):
        national = national[1:]  # "+44 (0)20 ..." / "+49 030 ...": the trunk prefix
    return _completed(code, national)


def _national(digits: str, plan: _Plan) -> tuple[str | None, str | None]:
    """E.164 digits of a number written without ``+`` / ``00``, read in ``plan``'s country."""
    for trunk in plan.trunk:
        if digits.startswith(trunk) and len(digits) > len(trunk):
            return _completed(plan.code, digits[len(trunk) :])
    rest = digits[len(plan.code) :]
    # Already with its country code but no "+" (a Meta or TikTok key, "4930 1234567"):
    # where national numbers are written with a trunk prefix, one without it that starts
    # with the calling code is international; elsewhere only one too long to be national.
    if (
        digits.startswith(plan.code)
        and plan.shortest <= len(rest) <= plan.longest
        and (plan.trunk or len(digits) > plan.longest)
    ):
        return _completed(plan.code, rest)
    return _completed(plan.code, digits)


def _completed(code: str, national: str) -> tuple[str | None, str | None]:
    if code == _NANP and len(national) != _NANP_DIGITS:
        return None, (
            f"it has {len(national)} digits after the country code 1: a US or Canadian "
            f"number has {_NANP_DIGITS}"
        )
    if len(national) < _NATIONAL_DIGITS:
        return None, (
            f"it has {len(national)} digits after the country code {code}: at least "
            f"{_NATIONAL_DIGITS} are needed"
        )
    return _checked(code + national), None


def _checked(digits: str) -> str | None:
    return digits if len(digits) <= _E164_DIGITS else None


def _phone(
    destination: str, phone: str, plan: _Plan | None, country_problem: str | None
) -> tuple[str | None, str | None]:
    """(normalised number, None) or (None, why it is not valid)."""
    value = phone.strip()
    if not value:
        return None, _EMPTY
    if not _PHONE.fullmatch(value):
        return None, (
            "it has letters or other characters: only digits, spaces and + - . ( ) / are read"
        )
    digits = _NOT_DIGIT.sub("", value)
    if not digits:
        return None, "it has no digits"
    if value.startswith("+"):
        e164, problem = _international(digits)
    elif digits.startswith("00"):
        e164, problem = _international(digits[2:])
    elif plan is None:
        return None, country_problem or (
            "it has no country code ('+' or '00'), and no `country` to complete it"
        )
    else:
        e164, problem = _national(digits, plan)
    if problem is not None:
        return None, problem
    if e164 is None:
        return None, f"it has more than the {_E164_DIGITS} digits of an international number"
    return (f"+{e164}" if destination == "google" else e164), None


def normalise_email(destination: str, email: str) -> str | None:
    """An e-mail address as ``destination`` hashes it; None when it is not valid.

    Trimmed and lower-cased for every destination; for ``google``, a ``gmail.com`` or
    ``googlemail.com`` address without the dots before the ``@`` and without a ``+`` and
    what follows it; for ``tiktok``, any address without a ``+`` and what follows it up to
    the ``@``. Not valid: no ``@`` or more than one, nothing before or after it,
    whitespace inside (:func:`email_problem` says which).

    Parameters
    ----------
    destination
        ``meta``, ``google`` or ``tiktok``.
    email
        The address as the customer gave it.

    Returns
    -------
    str or None
        The normalised address, or None when it is not a valid address.

    Raises
    ------
    ConfigError
        ``destination`` is not one of :data:`DESTINATIONS`.

    Examples
    --------
    >>> normalise_email("meta", " John.Doe@Example.COM ")
    'john.doe@example.com'
    >>> normalise_email("google", "Cloudy.SanFrancisco+shopping@gmail.com")
    'cloudysanfrancisco@gmail.com'
    >>> normalise_email("tiktok", "jane+news@example.com")
    'jane@example.com'
    >>> normalise_email("meta", "john.doe(at)example.com") is None
    True
    """
    return _email(_destination(destination), email)[0]


def email_problem(destination: str, email: str) -> str | None:
    """Why :func:`normalise_email` finds ``email`` not valid, or None when it is valid.

    The reason never repeats the address: it may be logged.

    Examples
    --------
    >>> email_problem("meta", "john.doe(at)example.com")
    "it has no '@'"
    >>> email_problem("meta", "john@example.com") is None
    True
    """
    return _email(_destination(destination), email)[1]


def normalise_phone(destination: str, phone: str, country: str | None = None) -> str | None:
    """A phone number as ``destination`` hashes it; None when it cannot be completed.

    A number starting with ``+`` or ``00`` carries its country code; any other is national
    and completed from ``country``: its calling code, without the trunk prefix where the
    numbering plan dials one (DE ``030 1234567`` -> ``49301234567``; a US number may be
    written with its leading 1). A ``0`` right after the country code of such a plan is
    the trunk prefix written by mistake (``+44 (0)20 ...``) and dropped. Spaces, dashes,
    dots, slashes and brackets are ignored; a letter makes the number unreadable.

    ``meta`` and ``tiktok`` take the digits with the country code and no ``+``
    (``14155552671``); ``google`` E.164 with its ``+`` (``+14155552671``).

    Parameters
    ----------
    destination
        ``meta``, ``google`` or ``tiktok``.
    phone
        The number as the customer gave it.
    country
        The customer's country (ISO 3166-1 alpha-2, ``DE``; ``UK`` is read as ``GB``),
        needed only for a national number: one of :data:`CALLING_CODES`.

    Returns
    -------
    str or None
        The normalised number, or None when it has other characters, is national without
        a known ``country``, has fewer than 7 digits after the country code (a US or
        Canadian number: other than 10) or more than E.164's 15 in all
        (:func:`phone_problem` says which).

    Raises
    ------
    ConfigError
        ``destination`` is not one of :data:`DESTINATIONS`.

    Examples
    --------
    >>> normalise_phone("meta", "+1 (415) 555-2671")
    '14155552671'
    >>> normalise_phone("google", "+1 (415) 555-2671")
    '+14155552671'
    >>> normalise_phone("google", "030 1234567", country="DE")
    '+49301234567'
    >>> normalise_phone("meta", "020 7946 0018", country="GB")
    '442079460018'
    >>> normalise_phone("tiktok", "(657) 777-0000", country="US")
    '16577770000'
    >>> normalise_phone("meta", "030 1234567") is None  # national, but which country?
    True
    """
    destination = _destination(destination)
    plan, problem = (None, None) if country is None else _country(country)
    return _phone(destination, phone, plan, problem)[0]


def phone_problem(destination: str, phone: str, country: str | None = None) -> str | None:
    """Why :func:`normalise_phone` gives None for ``phone``, or None when it gives a number.

    The reason never repeats the number: it may be logged.

    Examples
    --------
    >>> phone_problem("meta", "030 1234567")
    "it has no country code ('+' or '00'), and no `country` to complete it"
    >>> phone_problem("meta", "+1 555 0100")
    'it has 7 digits after the country code 1: a US or Canadian number has 10'
    """
    destination = _destination(destination)
    plan, problem = (None, None) if country is None else _country(country)
    return _phone(destination, phone, plan, problem)[1]


def sha256_hex(value: str) -> str:
    """The lower-case hex SHA-256 of ``value``'s UTF-8 bytes: a match key.

    Examples
    --------
    >>> sha256_hex("test@example.com")
    '973dfe463ec85785f5f95af5ba3906eedb2d931c24e69824a89ea65dba4e813b'
    """
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def match_keys(
    destination: str,
    *,
    email: str | None = None,
    phone: str | None = None,
    country: str | None = None,
) -> dict[str, str | None]:
    """One customer's match keys for ``destination``.

    Parameters
    ----------
    destination
        ``meta``, ``google`` or ``tiktok``.
    email, phone
        The customer's e-mail address and phone number (None: not known).
    country
        The customer's country (ISO 3166-1 alpha-2), to complete a national number.

    Returns
    -------
    dict
        ``{"destination", "email", "email_sha256", "phone", "phone_sha256"}``: the
        normalised values and their hashes; None where a value is not given or not valid
        (:func:`email_problem`, :func:`phone_problem` say why).

    Raises
    ------
    ConfigError
        ``destination`` is not one of :data:`DESTINATIONS`.

    Examples
    --------
    >>> keys = match_keys("google", email="Test@Example.com", phone="06 12 34 56 78",
    ...                   country="FR")
    >>> keys["email"], keys["email_sha256"][:16], keys["phone"]
    ('test@example.com', '973dfe463ec85785', '+33612345678')
    """
    columns = match_key_columns(destination, [email], [phone], [country])
    return {
        "destination": destination,
        **{key: columns[key][0] for key in ("email", "email_sha256", "phone", "phone_sha256")},
    }


def _column(values: Iterable[Any] | None, name: str) -> list[Any] | None:
    if values is None:
        return None
    # An Arrow array or chunked array, a pandas or polars column, a list.
    to_list = next(
        (getattr(values, m) for m in ("to_pylist", "to_list", "tolist") if hasattr(values, m)),
        None,
    )
    items = list(to_list()) if callable(to_list) else list(values)
    for item in items:
        if item is not None and not isinstance(item, str):
            raise DataValidationError(
                f"`{name}` holds {type(item).__name__} values, not text",
                fix="give strings (or None where a customer has none)",
                parameter=name,
            )
    return items


def match_key_columns(
    destination: str,
    emails: Iterable[Any] | None = None,
    phones: Iterable[Any] | None = None,
    countries: str | Iterable[Any] | None = None,
) -> dict[str, list[str | None]]:
    """The match keys of a whole audience, column by column.

    Parameters
    ----------
    destination
        ``meta``, ``google`` or ``tiktok``.
    emails, phones
        A value per customer (None where unknown): lists, Arrow arrays or chunked arrays,
        or any iterable of strings. One of them may be left out.
    countries
        Each customer's country (ISO 3166-1 alpha-2), or one country for all of them, to
        complete national phone numbers.

    Returns
    -------
    dict
        ``email``, ``email_sha256``, ``email_problem``, ``phone``, ``phone_sha256`` and
        ``phone_problem``: a list each, a value per customer (None where the input is None
        or not valid; a problem only for a value given but not valid: a blank string
        counts as not given). A column left out is all None.

    Raises
    ------
    ConfigError
        ``destination`` is not one of :data:`DESTINATIONS`.
    DataValidationError
        The columns differ in length, or hold something other than text.

    Notes
    -----
    Pure Python over the values, each country looked up once; one million customers with
    an e-mail address and a phone number take about 5 s on one core
    (docs/activation-matchkeys.md).

    Examples
    --------
    >>> keys = match_key_columns("meta", ["Ann@Example.com", None, "bad"],
    ...                          ["0151 2345 6789", "+1 415 555 2671", None], "DE")
    >>> keys["email"], keys["email_problem"]
    (['ann@example.com', None, None], [None, None, "it has no '@'"])
    >>> keys["phone"]
    ['4915123456789', '14155552671', None]
    """
    destination = _destination(destination)
    email_values = _column(emails, "emails")
    phone_values = _column(phones, "phones")
    country_values = None if isinstance(countries, str) else _column(countries, "countries")
    lengths = {
        name: len(values)
        for name, values in (
            ("emails", email_values),
            ("phones", phone_values),
            ("countries", country_values),
        )
        if values is not None
    }
    if len(set(lengths.values())) > 1:
        raise DataValidationError(
            "the columns differ in length: "
            + ", ".join(f"`{name}` {n:,}" for name, n in lengths.items()),
            fix="give a value per customer in each (None where unknown)",
            parameter=next(iter(lengths)),
        )
    n = next(iter(lengths.values()), 0)
    out: dict[str, list[str | None]] = {
        key: [None] * n
        for key in ("email", "email_sha256", "email_problem", "phone", "phone_sha256")
    }
    out["phone_problem"] = [None] * n
    if email_values is not None:
        for i, email in enumerate(email_values):
            if email is None:
                continue
            value, problem = _email(destination, email)
            if value is None:
                out["email_problem"][i] = None if problem is _EMPTY else problem
            else:
                out["email"][i] = value
                out["email_sha256"][i] = hashlib.sha256(value.encode("utf-8")).hexdigest()
    if phone_values is not None:
        # Few countries, many customers: each is looked up once.
        plans: dict[str | None, tuple[_Plan | None, str | None]] = {None: (None, None)}
        one_country = countries if isinstance(countries, str) else None
        for i, phone in enumerate(phone_values):
            if phone is None:
                continue
            country: str | None = one_country if country_values is None else country_values[i]
            plan = plans.get(country)
            if plan is None:
                plan = plans[country] = _country(country) if country is not None else (None, None)
            value, problem = _phone(destination, phone, *plan)
            if value is None:
                out["phone_problem"][i] = None if problem is _EMPTY else problem
            else:
                out["phone"][i] = value
                out["phone_sha256"][i] = hashlib.sha256(value.encode("ascii")).hexdigest()
    return out
