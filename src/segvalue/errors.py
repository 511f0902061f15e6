"""One small exception hierarchy for the whole package.

Every error a user can cause derives from :class:`SegvalueError`; the faces (CLI, API)
turn these into exit code 2 or the JSON error shape in one place. Anything else is a bug.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable
from typing import Any

__all__ = [
    "ConfigError",
    "ConvergenceError",
    "ConvergenceWarning",
    "DataValidationError",
    "MissingDependencyError",
    "NotFittedError",
    "SegvalueError",
    "did_you_mean",
    "escape_control",
    "redact_secrets",
    "safe_text",
]


class SegvalueError(Exception):
    """Base class of every error a user of segvalue can cause and fix.

    Parameters
    ----------
    message
        What went wrong, naming the input (file, key, row or column).
    fix
        What the user should do about it, appended to the message.
    parameter
        The config key or parameter the error is about (``store.url``, ``wait``), so a
        face can word it (a command-line option, a JSON field); never a CLI flag here.
        A parameter named in the message or fix is in backticks (`` `horizon` ``,
        `` `force=True` ``): the CLI words it ``--horizon``, ``--force``
        (``segvalue.cli.main.as_options``).

    Examples
    --------
    >>> str(SegvalueError("orders.csv: column 'amount' is missing", fix="map it in segvalue.yaml"))
    "orders.csv: column 'amount' is missing. Fix: map it in segvalue.yaml"
    >>> SegvalueError("`horizon` 0 is not a whole number >= 1", parameter="horizon").parameter
    'horizon'
    """

    def __init__(
        self, message: str, *, fix: str | None = None, parameter: str | None = None
    ) -> None:
        # Every message reaches a terminal or a log: no raw control characters, no secrets.
        message = safe_text(message)
        fix = None if fix is None else safe_text(fix)
        self.message = message
        self.fix = fix
        self.parameter = parameter
        super().__init__(message if fix is None else f"{message}. Fix: {fix}")


class DataValidationError(SegvalueError, ValueError):
    """Input data break the data contract (missing column, bad values, empty table)."""

    #: The rows rejected so far when validation gave up (an Arrow table), else None:
    #: a caller can still write them (``segvalue validate --rejects``).
    rejects: Any = None


class ConfigError(SegvalueError, ValueError):
    """``segvalue.yaml`` or a command-line option is invalid."""


class MissingDependencyError(SegvalueError, ImportError):
    """An optional dependency (an extra) is needed but not installed."""


class NotFittedError(SegvalueError, ValueError, AttributeError):
    """A model was asked for predictions before ``fit`` was called."""


class ConvergenceError(SegvalueError, RuntimeError):
    """An optimiser failed to converge; carries its message and diagnostics."""

    def __init__(
        self,
        message: str,
        *,
        optimizer_message: str = "",
        iterations: int | None = None,
        gradient_norm: float | None = None,
        fix: str | None = None,
        parameter: str | None = None,
    ) -> None:
        self.optimizer_message = optimizer_message
        self.iterations = iterations
        self.gradient_norm = gradient_norm
        super().__init__(message, fix=fix, parameter=parameter)


class ConvergenceWarning(UserWarning):
    """An optimiser converged only with a fallback or to a doubtful optimum."""


def did_you_mean(word: object, choices: Iterable[object], *, cutoff: float = 0.6) -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices``, or "" when none is close.

    The one suggestion every "unknown key / field / column / table" message ends with.

    Examples
    --------
    >>> did_you_mean("revnue", ["revenue", "orders"])
    " (did you mean 'revenue'?)"
    >>> did_you_mean("zzz", ["revenue"])
    ''
    """
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=cutoff)
    return f" (did you mean {close[0]!r}?)" if close else ""


# C0 and C1 control characters (except the newline of multi-line messages), DEL, the
# Unicode line / paragraph separators and the bidirectional-text controls, which can make
# a terminal run escape sequences or show text in another order than it is stored.
_CONTROL = re.compile(
    "[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]"
)
_NAMED_ESCAPES = {"\t": "\\t", "\r": "\\r"}

# Names of keys whose value is a secret, in URL queries, libpq DSNs and key=value text.
_SECRET_NAME = (
    r"(?:[\w.-]*(?:passw(?:or)?d|_pass|secret|token|_key|apikey|credentials?)"
    r"|pwd|pass|password|key|api-key|sslpassword|auth|authorization|sig|signature)"
)
# a quoted value, or one up to a separator (a ": " after it is the message's own colon)
_QUOTED_OR_BARE = (
    r"""(?:'(?:\\.|[^'\\])*'?|"(?:\\.|[^"\\])*"?|(?:(?!%26|%20|:\s|:$)[^\s&;#'",])+)"""
)
# key=value / key%3Dvalue (a URL inside a URL is percent-encoded once more)
_SECRET_PAIR = re.compile(
    rf"(?<![\w.-])({_SECRET_NAME})(\s*(?:=|%3d)\s*){_QUOTED_OR_BARE}", re.IGNORECASE
)
# 'password': 'x' and "password": "x" (dict and JSON text)
_SECRET_ITEM = re.compile(
    rf"""(['"])({_SECRET_NAME})\1(\s*:\s*)(['"])(?:\\.|(?!\4).)*\4""", re.IGNORECASE
)
# scheme://user:password@host (also percent-encoded: %3A%2F%2Fuser%3Apassword%40host)
_USERINFO = re.compile(
    r"((?:://|%3a%2f%2f)(?:(?!%3a)[^\s:/@'\"])*(?::|%3a))"  # ://user:
    r"(?:[^\s'\"]*?)"  # the password, as short as the host after it allows
    r"(@|%40)(?=[^\s/@?#'\"%]+(?:[/:?#\s'\"]|%2f|%3a|%3f|$))",
    re.IGNORECASE,
)
_REDACTED = "***"


def redact_secrets(text: str) -> str:
    """Hide passwords, tokens and keys in URLs, DSNs and ``key=value`` text.

    Covers ``scheme://user:password@host``, query parameters (``?password=``, ``&pwd=``,
    ``token=``, ``secret=``, ``api_key=``, ``key=``, ``sslpassword=``, any name ending in
    ``password``, ``secret``, ``token`` or ``_key``; case-insensitive), libpq DSNs
    (``password=xyz host=h``, also quoted values), and the same forms percent-encoded.
    User names and hosts are kept: a message must still say where it failed.

    Examples
    --------
    >>> redact_secrets("postgres://ann:s3cret@db.example/sales")
    'postgres://ann:***@db.example/sales'
    >>> redact_secrets("duckdb:///x.db?PassWord=hunter2&mode=ro")
    'duckdb:///x.db?PassWord=***&mode=ro'
    >>> redact_secrets("host=h password='a b' user=u")
    'host=h password=*** user=u'
    """
    text = _USERINFO.sub(lambda m: m.group(1) + _REDACTED + m.group(2), text)
    text = _SECRET_ITEM.sub(lambda m: f"{m[1]}{m[2]}{m[1]}{m[3]}{m[4]}{_REDACTED}{m[4]}", text)
    return _SECRET_PAIR.sub(lambda m: m.group(1) + m.group(2) + _REDACTED, text)


def escape_control(text: str) -> str:
    r"""Write control characters as visible escapes (``\x1b``, ``\t``, ``\u202e``).

    Newlines stay: multi-line messages are meant to be multi-line.

    Examples
    --------
    >>> print(escape_control("a\tb\x1b[31mred\u202e\nnext"))
    a\tb\x1b[31mred\u202e
    next
    """

    def visible(match: re.Match[str]) -> str:
        char = match.group(0)
        if char in _NAMED_ESCAPES:
            return _NAMED_ESCAPES[char]
        code = ord(char)
        return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"

    return _CONTROL.sub(visible, text)


def safe_text(text: str) -> str:
    r"""Text fit for a terminal or a log: secrets redacted, control characters escaped.

    The one function every user-facing message goes through (``SegvalueError`` applies it
    to its message and fix).

    Examples
    --------
    >>> safe_text("cannot open mysql://u:pw@h/db\x1b[2J")
    'cannot open mysql://u:***@h/db\\x1b[2J'
    """
    return escape_control(redact_secrets(str(text)))
