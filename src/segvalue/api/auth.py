"""API keys on every ``/api/v1`` route: ``Authorization: Bearer KEY``, checked by scope."""

from __future__ import annotations

import asyncio
import hashlib
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from segvalue.api.problems import Problem
from segvalue.project import API_KEY_SCOPES, KeyInfo, Project

__all__ = [
    "ProjectGate",
    "admitted",
    "admitted_for",
    "bearer",
    "gate_of",
    "presented_key",
    "require_scope",
]

#: The OpenAPI security scheme; missing or malformed headers are ours to answer (401).
bearer = HTTPBearer(auto_error=False, description="an API key: segvalue keys create")

_CHALLENGE = {"WWW-Authenticate": "Bearer"}
#: The most keys a gate keeps verified (:meth:`ProjectGate.admit`); then it starts over.
_KEYS_KEPT = 10_000


class ProjectGate:
    """The app's project, used by one request at a time, its store released when idle.

    The project has one store connection, which is not for concurrent use. A DuckDB
    file is open for one writer or for readers: the connection is closed after
    ``idle_seconds`` without a request (:meth:`release_if_idle`), so that a run or
    ``segvalue keys create`` can write the store while the API is up. Every use of the
    project while an app serves it goes through :meth:`use` of its one gate
    (:meth:`of`): another route (the dashboard's) too.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> gate = ProjectGate(
    ...     Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d)),
    ...     idle_seconds=0,
    ... )
    >>> with gate.use() as project:
    ...     project.runs.list()
    []
    >>> gate.release_if_idle(), gate.release_if_idle()
    (True, False)
    """

    @classmethod
    def of(cls, project: Project) -> ProjectGate:
        """The one gate of ``project``: every app (API, dashboard) over it shares it.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.config import parse_config
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> p = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d))
        >>> ProjectGate.of(p) is ProjectGate.of(p)
        True
        """
        with _GATES_LOCK:
            gate = _GATES.get(project)
            if gate is None:
                gate = _GATES[project] = cls(project)
            return gate

    def __init__(self, project: Project, *, idle_seconds: float = 1.0) -> None:
        self.project = project
        self.idle_seconds = idle_seconds
        self._lock = threading.Lock()
        self._last_use = time.monotonic()
        self._in_use_since_release = False
        self._events_lock = threading.Lock()
        self._events: list[_Sent] = []
        self._applying = False
        self._keys_lock = threading.Lock()
        self._keys: dict[bytes, KeyInfo] = {}
        self._keeps_keys = project.config.store_url.startswith("duckdb:")

    @contextmanager
    def use(self, *, close: bool = False) -> Iterator[Project]:
        """The project, for this request only; ``close``: close its store afterwards (the
        dashboard's pages, which may be mounted in an app that never releases it)."""
        with self._lock:
            try:
                yield self.project
            finally:
                self._last_use = time.monotonic()
                self._in_use_since_release = True
                if close:
                    self._closed()

    def admit(self, key: str, scope: str, project: Project | None = None) -> KeyInfo:
        """``admitted(project, key, scope)``; ``project``: the caller holds it already (in
        :meth:`use`).

        While the gate holds a DuckDB store open no other process can revoke a key (a
        revocation is written once the file is released), so a key found valid is then
        answered from memory until the store is closed, as the store itself keeps it: a
        request takes the project once (for its route), not twice (under load the second
        wait, behind every request queued meanwhile, doubled the latency). A PostgreSQL
        store is asked every time.

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.config import parse_config
        >>> d = pathlib.Path(tempfile.mkdtemp())
        >>> p = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d))
        >>> key, info = p.keys.create("read")
        >>> gate = ProjectGate(p)
        >>> gate.admit(key, "read") == info == gate.admit(key, "read")
        True
        >>> gate.admit(key, "write")
        Traceback (most recent call last):
        ...
        segvalue.api.problems.Problem: ...has scope read; this route needs write
        >>> p.close()
        """
        digest = hashlib.sha256(key.encode()).digest()
        with self._keys_lock:
            info = self._keys.get(digest)
        if info is None:
            if project is None:
                with self.use() as held:
                    info = self._verified(held, key, digest)
            else:
                info = self._verified(project, key, digest)
        return admitted_for(info, scope)

    def _verified(self, project: Project, key: str, digest: bytes) -> KeyInfo:
        """``key``'s info from the store (a 401 problem if unknown or revoked), kept while
        a DuckDB store stays open (called in :meth:`use`, so no release runs meanwhile)."""
        info = admitted(project, key, "read")
        if self._keeps_keys:
            with self._keys_lock:
                if len(self._keys) >= _KEYS_KEPT:
                    self._keys.clear()
                self._keys[digest] = info
        return info

    def _closed(self) -> None:
        """The store was closed (in :meth:`use`): a key may be revoked from now on."""
        self.project.close()
        self._in_use_since_release = False
        with self._keys_lock:
            self._keys.clear()

    def record_event(self, event: Mapping[str, Any], key: str | None = None) -> dict[str, Any]:
        """``project.record_event(event)``, applied together with the events other
        requests sent meanwhile (group commit); ``key``: the request's API key, checked
        for the write scope in the same turn (a 401 or 403 problem for that event alone).

        Events wait in a queue; one thread at a time takes the project and applies every
        event waiting by then in one :meth:`Project.record_events` call (one re-scoring
        and one transaction), so the store's commit and the models' evaluation are paid
        once per group, not once per event, when events arrive faster than one at a
        time. :meth:`record_event_async` is the same for a coroutine (the route's).

        Examples
        --------
        >>> import tempfile, pathlib
        >>> from segvalue.pipeline import run_demo
        >>> _, path = run_demo(n_customers=300, out_dir=pathlib.Path(tempfile.mkdtemp()))
        >>> gate = ProjectGate(Project.from_yaml(path))
        >>> reply = gate.record_event({"type": "order", "customer_id": "C0000001",
        ...     "order_id": "G-1", "order_ts": "2025-12-31T10:00:00", "amount": 9.0})
        >>> reply["duplicate"], gate.project.close()
        (False, None)
        """
        sent = _Sent(event, key, threading.Event())
        self._queue_event(sent)
        assert sent.ready is not None
        sent.ready.wait()
        return sent.result()

    async def record_event_async(
        self, event: Mapping[str, Any], key: str | None = None
    ) -> dict[str, Any]:
        """:meth:`record_event` for a coroutine: the event loop goes on meanwhile."""
        loop = asyncio.get_running_loop()
        sent = _Sent(event, key, None, loop, loop.create_future())
        self._queue_event(sent)
        assert sent.future is not None
        await sent.future
        return sent.result()

    def _queue_event(self, sent: _Sent) -> None:
        with self._events_lock:
            self._events.append(sent)
            start = not self._applying
            self._applying = True
        if start:
            threading.Thread(target=self._apply_events, name="segvalue-events", daemon=True).start()

    def _apply_events(self) -> None:
        """Apply the waiting events in groups until none waits (one such thread at most)."""
        while True:
            with self.use() as project:
                with self._events_lock:
                    group, self._events = self._events, []
                    if not group:
                        self._applying = False
                        return
                admitted_group = []
                for each in group:
                    try:
                        if each.key is not None:
                            self.admit(each.key, "write", project)
                        admitted_group.append(each)
                    except Problem as problem:
                        each.outcome = problem
                try:
                    outcomes: list[Any] = project.record_events([s.event for s in admitted_group])
                except BaseException as exc:  # the whole group failed (no run, a closed store)
                    outcomes = [exc] * len(admitted_group)
                for each, outcome in zip(admitted_group, outcomes, strict=True):
                    each.outcome = outcome
            for each in group:
                each.settle()

    @contextmanager
    def releasing(self, every: float = 0.25) -> Iterator[None]:
        """While inside, a background thread closes the store when it has been idle for
        ``idle_seconds`` (:meth:`release_if_idle`), so a run can write it meanwhile."""
        stop = threading.Event()

        def release() -> None:
            while not stop.wait(every):
                self.release_if_idle()

        thread = threading.Thread(target=release, name="segvalue-store-release", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            with self._lock:  # the app stops: nothing will use the store, close it now
                self._closed()

    def release_if_idle(self) -> bool:
        """Close the project's store if no request used it for ``idle_seconds``."""
        if not self._in_use_since_release:
            return False
        if time.monotonic() - self._last_use < self.idle_seconds:
            return False
        if not self._lock.acquire(blocking=False):
            return False
        try:
            self._closed()
            return True
        finally:
            self._lock.release()


class _Sent:
    """An event a request sent, and its outcome once applied (:meth:`ProjectGate.record_event`)."""

    __slots__ = ("event", "future", "key", "loop", "outcome", "ready")

    def __init__(
        self,
        event: Mapping[str, Any],
        key: str | None,
        ready: threading.Event | None,
        loop: asyncio.AbstractEventLoop | None = None,
        future: asyncio.Future[None] | None = None,
    ) -> None:
        self.event, self.key, self.ready, self.loop, self.future = event, key, ready, loop, future
        self.outcome: Any = None

    def settle(self) -> None:
        """Wake the request: its outcome is there."""
        if self.ready is not None:
            self.ready.set()
        elif self.loop is not None and self.future is not None:
            self.loop.call_soon_threadsafe(_resolve, self.future)

    def result(self) -> dict[str, Any]:
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        reply: dict[str, Any] = self.outcome
        return reply


def _resolve(future: asyncio.Future[None]) -> None:
    if not future.done():  # not cancelled meanwhile (the client went away)
        future.set_result(None)


_GATES: weakref.WeakKeyDictionary[Project, ProjectGate] = weakref.WeakKeyDictionary()
_GATES_LOCK = threading.Lock()


def gate_of(request: Request) -> ProjectGate:
    """The app's :class:`ProjectGate`."""
    gate: ProjectGate = request.app.state.gate
    return gate


def _key_of(credentials: HTTPAuthorizationCredentials | None) -> str:
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise Problem(
            401,
            "this route needs an API key: send `Authorization: Bearer KEY` "
            "(create one with segvalue keys create)",
            headers=_CHALLENGE,
        )
    return credentials.credentials


async def presented_key(
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> str:
    """The API key a request sends (``Authorization: Bearer KEY``), not yet checked.

    Raises a 401 problem (with ``WWW-Authenticate: Bearer``) without one. A coroutine:
    nothing to wait for, so no thread is taken for it.
    """
    return _key_of(credentials)


def admitted(project: Project, key: str, scope: str) -> KeyInfo:
    """The info of ``key`` when it is valid for ``scope`` (a ``write`` key may also read).

    Raises a 401 problem for an unknown or revoked key, a 403 problem for a key of too
    narrow a scope.
    """
    info = project.keys.verify(key)
    if info is None:
        raise Problem(401, "the API key is unknown or revoked", headers=_CHALLENGE)
    return admitted_for(info, scope)


def admitted_for(info: KeyInfo, scope: str) -> KeyInfo:
    """``info`` when its key may use a route of ``scope`` (a ``write`` key may also read);
    a 403 problem otherwise."""
    if scope == "write" and info.scope != "write":
        raise Problem(
            403,
            f"the API key {info.key_id} has scope {info.scope}; this route needs {scope}",
        )
    return info


def require_scope(scope: str) -> Callable[..., KeyInfo]:
    """A dependency that admits a valid key of ``scope`` (a ``write`` key may also read).

    Raises a 401 problem (with ``WWW-Authenticate: Bearer``) without a key, or with an
    unknown or revoked one, and a 403 problem for a key of too narrow a scope.

    Examples
    --------
    >>> import tempfile, pathlib
    >>> from fastapi import Depends
    >>> from fastapi.testclient import TestClient
    >>> from segvalue.api import create_app
    >>> from segvalue.config import parse_config
    >>> d = pathlib.Path(tempfile.mkdtemp())
    >>> project = Project(parse_config({"sources": {"orders": {"path": "o.csv"}}}, base_dir=d))
    >>> app = create_app(project)
    >>> @app.post("/api/v1/stored", dependencies=[Depends(require_scope("write"))])
    ... def stored() -> dict[str, bool]:
    ...     return {"stored": True}
    >>> key, _ = project.keys.create("read")
    >>> TestClient(app).post("/api/v1/stored", headers={"Authorization": f"Bearer {key}"})
    <Response [403 Forbidden]>
    >>> project.close()
    """
    if scope not in API_KEY_SCOPES:
        raise ValueError(f"unknown scope {scope!r}")

    def admit(
        request: Request,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    ) -> KeyInfo:
        return gate_of(request).admit(_key_of(credentials), scope)

    return admit
