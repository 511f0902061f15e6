"""One customer's ad-platform match keys, for the faces (``segvalue hash``).

A thin layer over :mod:`segvalue.activation.matchkeys`: the faces may not import
activation themselves (tests/test_layering.py).
"""

from __future__ import annotations

from segvalue.activation.matchkeys import email_problem, match_keys, phone_problem
from segvalue.errors import ConfigError

__all__ = ["MATCH_KEY_FIELDS", "hash_contact"]

#: The fields of one customer's match keys (what ``segvalue hash --json`` prints).
MATCH_KEY_FIELDS = ("destination", "email", "email_sha256", "phone", "phone_sha256")


def hash_contact(
    destination: str,
    email: str | None = None,
    phone: str | None = None,
    country: str | None = None,
) -> dict[str, str | None]:
    """The match keys of one e-mail address and / or phone number for ``destination``,
    with the reason a value is not hashed.

    Parameters
    ----------
    destination
        ``meta``, ``google`` or ``tiktok``.
    email, phone
        The contact details to hash; at least one.
    country
        The customer's country (ISO 3166-1 alpha-2), to complete a national number.

    Returns
    -------
    dict
        :data:`MATCH_KEY_FIELDS` (:func:`segvalue.activation.matchkeys.match_keys`), and
        ``email_problem`` / ``phone_problem``: why a value given is not valid, else None.
        Nothing is logged: the values are returned to the caller only.

    Raises
    ------
    ConfigError
        Neither ``email`` nor ``phone`` is given, or ``destination`` is not one of
        meta, google, tiktok.

    Examples
    --------
    >>> keys = hash_contact("meta", phone="+1 (415) 555-2671", email="no-at-sign")
    >>> keys["phone"], keys["email"], keys["email_problem"]
    ('14155552671', None, "it has no '@'")
    """
    if email is None and phone is None:
        raise ConfigError(
            "give `email` or `phone` (or both) to hash",
            fix="e.g. `email='ann@example.com'`",
            parameter="email",
        )
    keys = match_keys(destination, email=email, phone=phone, country=country)
    return {
        **keys,
        "email_problem": None if email is None else email_problem(destination, email),
        "phone_problem": None if phone is None else phone_problem(destination, phone, country),
    }
