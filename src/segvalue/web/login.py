"""The dashboard's login off loopback: sessions in memory, a failure throttle, safe paths.

Pure Python (no web library): :mod:`segvalue.web.app` wires these into the routes.

A login trades an API key (``segvalue keys create``, either scope) for a session: a
random token from :mod:`secrets`, sent back as the ``segvalue_session`` cookie. The
server keeps only the token's SHA-256, with the key's id (never the key), the session's
CSRF token and its expiry; a restart ends every session. Nothing here logs or returns a
key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit

__all__ = [
    "FORM_CSRF_COOKIE",
    "LOGIN_CSRF_COOKIE",
    "SESSION_COOKIE",
    "LoginThrottle",
    "Session",
    "Sessions",
    "safe_next",
    "same_token",
    "token_shaped",
]

#: The session cookie's name.
SESSION_COOKIE = "segvalue_session"
#: The login form's CSRF cookie (double submit: the form carries the same value).
LOGIN_CSRF_COOKIE = "segvalue_login_csrf"
#: The double-submit cookie of the dashboard's other forms without a login (loopback): a
#: page on another site cannot read it, so cannot send a form in the browser's name.
FORM_CSRF_COOKIE = "segvalue_form_csrf"
# Longest `next` path followed after a login.
_NEXT_LIMIT = 2_000


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_shaped(value: str | None) -> bool:
    """Whether ``value`` looks like a token of ``secrets.token_urlsafe(32)`` (a cookie's
    value is used as the form's token only then).

    Examples
    --------
    >>> import secrets
    >>> token_shaped(secrets.token_urlsafe(32)), token_shaped("x"), token_shaped(None)
    (True, False, False)
    """
    return (
        value is not None
        and 32 <= len(value) <= 64
        and value.replace("-", "").replace("_", "").isalnum()
    )


def same_token(expected: str | None, given: str | None) -> bool:
    """Whether ``given`` is the (non-empty) token ``expected``, compared in constant time.

    Examples
    --------
    >>> same_token("abc", "abc"), same_token("abc", "abd")
    (True, False)
    >>> same_token("", ""), same_token(None, "a")
    (False, False)
    """
    if not expected or not given:
        return False
    return hmac.compare_digest(expected.encode(), given.encode())


def safe_next(path: str | None) -> str:
    """``path`` when it is a relative path on this site, else ``/``: no open redirect.

    Only a path that starts with one ``/`` is followed; a scheme (``https://...``), a
    host (``//host``, ``/\\host``), control characters or the login pages themselves
    give ``/``.

    Examples
    --------
    >>> safe_next("/segments?scheme=rfm"), safe_next("/budget#what-if-heading")
    ('/segments?scheme=rfm', '/budget#what-if-heading')
    >>> [safe_next(p) for p in ("https://evil.example", "//evil.example", "/\\\\evil.example")]
    ['/', '/', '/']
    >>> safe_next("/\\t/evil.example"), safe_next("/logout"), safe_next(None)
    ('/', '/', '/')
    """
    if not path or len(path) > _NEXT_LIMIT or not path.startswith("/"):
        return "/"
    if path.startswith("//") or "\\" in path:
        return "/"
    if any(ord(char) < 0x20 or ord(char) == 0x7F for char in path):
        return "/"  # browsers drop tabs and newlines: "/\t/host" would be "//host"
    parts = urlsplit(path)
    if parts.scheme or parts.netloc:
        return "/"
    if parts.path in ("/login", "/logout"):
        return "/"
    return path


@dataclass(frozen=True)
class Session:
    """A logged-in browser: the API key it logged in with (by id), its CSRF token, expiry.

    ``expires`` is on the :class:`Sessions` clock (``time.monotonic`` by default).
    """

    key_id: str
    csrf_token: str
    expires: float


class Sessions:
    """Dashboard sessions kept in memory, by the SHA-256 of their token.

    Parameters
    ----------
    lifetime_seconds
        How long a session lasts after its login (``serve.session_hours``).
    max_sessions
        Sessions kept at most: beyond it the one expiring first is ended.
    clock
        Seconds, never going back (tests pass their own).

    Examples
    --------
    >>> now = [0.0]
    >>> sessions = Sessions(lifetime_seconds=60, clock=lambda: now[0])
    >>> token, session = sessions.create("3f2a9c1d")
    >>> sessions.get(token) == session, session.key_id, sessions.get("forged")
    (True, '3f2a9c1d', None)
    >>> now[0] = 61.0
    >>> sessions.get(token) is None
    True
    """

    def __init__(
        self,
        *,
        lifetime_seconds: float = 8 * 3600.0,
        max_sessions: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if lifetime_seconds <= 0:
            raise ValueError(f"lifetime_seconds must be positive, got {lifetime_seconds!r}")
        self.lifetime_seconds = lifetime_seconds
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: dict[str, Session] = {}
        self._lock = threading.Lock()

    def __len__(self) -> int:
        with self._lock:
            self._drop_expired()
            return len(self._sessions)

    def create(self, key_id: str) -> tuple[str, Session]:
        """A new session for the key ``key_id``: its token (for the cookie) and itself."""
        token = secrets.token_urlsafe(32)
        session = Session(
            key_id=key_id,
            csrf_token=secrets.token_urlsafe(32),
            expires=self._clock() + self.lifetime_seconds,
        )
        with self._lock:
            self._drop_expired()
            while len(self._sessions) >= self.max_sessions:
                oldest = min(self._sessions, key=lambda d: self._sessions[d].expires)
                del self._sessions[oldest]
            self._sessions[_digest(token)] = session
        return token, session

    def get(self, token: str | None) -> Session | None:
        """The live session of ``token``; None when unknown, ended or expired."""
        if not token:
            return None
        digest = _digest(token)
        with self._lock:
            session = self._sessions.get(digest)
            if session is not None and session.expires <= self._clock():
                del self._sessions[digest]
                session = None
        return session

    def end(self, token: str | None) -> None:
        """End the session of ``token`` (logout); an unknown token is ignored."""
        if token:
            with self._lock:
                self._sessions.pop(_digest(token), None)

    def end_key(self, key_id: str) -> int:
        """End every session of the key ``key_id`` (it was revoked); how many ended."""
        with self._lock:
            ended = [d for d, s in self._sessions.items() if s.key_id == key_id]
            for digest in ended:
                del self._sessions[digest]
        return len(ended)

    def _drop_expired(self) -> None:
        now = self._clock()
        for digest in [d for d, s in self._sessions.items() if s.expires <= now]:
            del self._sessions[digest]


class LoginThrottle:
    """Failed logins per client: after ``failures`` within ``window_seconds``, wait.

    Examples
    --------
    >>> now = [0.0]
    >>> throttle = LoginThrottle(failures=2, window_seconds=60, clock=lambda: now[0])
    >>> throttle.failed("a"); throttle.failed("a")
    >>> throttle.wait_seconds("a"), throttle.wait_seconds("b")
    (60, 0)
    >>> now[0] = 30.5
    >>> throttle.wait_seconds("a")
    30
    >>> now[0] = 60.0
    >>> throttle.wait_seconds("a")
    0
    """

    def __init__(
        self,
        *,
        failures: int = 5,
        window_seconds: float = 60.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.failures = failures
        self.window_seconds = window_seconds
        self.max_clients = max_clients
        self._clock = clock
        self._failed: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def wait_seconds(self, client: str) -> int:
        """Whole seconds ``client`` must wait before trying again (0: it may try now)."""
        with self._lock:
            times = self._recent(client)
            if len(times) < self.failures:
                return 0
            free_at = times[-self.failures] + self.window_seconds
            return max(1, int(free_at - self._clock() + 0.5))

    def failed(self, client: str) -> None:
        """Record a failed login of ``client``."""
        with self._lock:
            if client not in self._failed and len(self._failed) >= self.max_clients:
                for name in [c for c in self._failed if not self._recent(c)]:
                    del self._failed[name]
                if len(self._failed) >= self.max_clients:  # still full: forget the oldest
                    del self._failed[next(iter(self._failed))]
            self._failed.setdefault(client, deque(maxlen=self.failures)).append(self._clock())

    def succeeded(self, client: str) -> None:
        """Forget ``client``'s failures (it logged in)."""
        with self._lock:
            self._failed.pop(client, None)

    def _recent(self, client: str) -> deque[float]:
        times = self._failed.get(client, deque())
        cutoff = self._clock() - self.window_seconds
        while times and times[0] <= cutoff:
            times.popleft()
        if not times:
            self._failed.pop(client, None)
        return times
