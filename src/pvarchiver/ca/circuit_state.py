"""The client side of one CA virtual circuit, without I/O: up or closed, and its requests.

A circuit is CONNECTING until its TCP connection is made, then UP until the connection is
lost or the client closes it (CLOSED, for good: a new connection is a new circuit). While it
is UP it carries GET (READ_NOTIFY) and PUT (WRITE_NOTIFY) requests, each under an ``ioid``,
until the server answers, the caller gives up (a timeout) or the circuit goes.

:class:`CircuitState` makes those decisions and keeps that table; the asyncio layer
(:mod:`pvarchiver.ca.client`) only writes the bytes it is given and completes the waiters it
is handed back. A waiter is whatever the caller wants back (the client uses an asyncio
future); this module never touches it. Why apart from the asyncio protocol: every path
here (a reply, an ECA error, a server ERROR naming the request, a reply to a request given
up, a circuit lost with requests in flight) is then tested directly, without sockets or
sleeps, as :mod:`.flow`, :mod:`.keepalive` and :mod:`.lifecycle` are.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import IntEnum
from typing import Any, Generic, TypeVar

from . import dbr
from . import protocol as P

__all__ = ["CircuitPhase", "CircuitState", "Completion", "RequestKind"]

W = TypeVar("W")


class CircuitPhase(IntEnum):
    CONNECTING = 0  #: created, TCP connection not made yet: requests are queued
    UP = 1  #: connected: bytes flow
    CLOSED = 2  #: lost or closed by the client: nothing is sent any more


class RequestKind(IntEnum):
    GET = P.READ_NOTIFY
    PUT = P.WRITE_NOTIFY


@dataclass(slots=True)
class Completion(Generic[W]):
    """How one request ended: :meth:`result` is the value to hand to ``waiter`` (a reading
    for a GET, None for a PUT) or raises the error to hand it instead."""

    waiter: W
    kind: RequestKind
    error: str | None = None
    disconnected: bool = False  #: the circuit went (vs. the server refused the request)
    dbr_type: int = 0
    count: int = 0
    as_array: bool = False
    body: bytes = b""
    reply_type: int = 0  #: the DBR type the answer's header names (for the error text)

    def result(self) -> Any:
        """Decode the reply; raises :class:`CircuitRequestError` for an error."""
        if self.error is not None:
            raise CircuitRequestError(self.error, self.disconnected)
        if self.kind is RequestKind.PUT:
            return None
        try:
            return dbr.decode(self.dbr_type, self.body, self.count, self.as_array)
        except Exception as exc:  # malformed payload: this request fails, the circuit stays
            raise CircuitRequestError(f"cannot decode DBR type {self.reply_type}: {exc}") from None


class CircuitRequestError(Exception):
    """A request that did not succeed; ``disconnected``: because its circuit went."""

    def __init__(self, message: str, disconnected: bool = False) -> None:
        super().__init__(message)
        self.disconnected = disconnected


class CircuitState(Generic[W]):
    """One circuit's phase and its table of pending GET/PUT requests."""

    __slots__ = ("_pending", "phase", "server")

    def __init__(self, server: tuple[str, int]) -> None:
        self.server = server
        self.phase = CircuitPhase.CONNECTING
        #: ioid -> (waiter, kind, DBR type asked for, decode as an array)
        self._pending: dict[int, tuple[W, RequestKind, int, bool]] = {}

    @property
    def closed(self) -> bool:
        return self.phase is CircuitPhase.CLOSED

    @property
    def pending(self) -> int:
        """Requests waiting for their answer."""
        return len(self._pending)

    def opened(self, user: str, host: str) -> bytes:
        """The TCP connection is made: the greeting to send before anything queued."""
        if self.phase is CircuitPhase.CONNECTING:
            self.phase = CircuitPhase.UP
        return P.version() + P.client_name(user) + P.host_name(host)

    def request(
        self, ioid: int, kind: RequestKind, waiter: W, dbr_type: int, as_array: bool = False
    ) -> None:
        """Remember a request under ``ioid`` until :meth:`reply`, :meth:`give_up` or the end
        of the circuit. Refused on a closed circuit (nothing would ever answer it)."""
        if self.phase is CircuitPhase.CLOSED:
            raise CircuitRequestError("circuit to {}:{} is closed".format(*self.server), True)
        self._pending[ioid] = (waiter, kind, dbr_type, as_array)

    def give_up(self, ioid: int) -> None:
        """The caller stopped waiting (timeout): a late answer is then ignored."""
        self._pending.pop(ioid, None)

    def reply(
        self, cmd: int, reply_type: int, count: int, eca: int, ioid: int, body: bytes
    ) -> Completion[W] | None:
        """A READ_NOTIFY or WRITE_NOTIFY answer (the header's fields in their order); None
        when nobody waits for it any more."""
        entry = self._pending.pop(ioid, None)
        if entry is None:
            return None
        waiter, kind, dbr_type, as_array = entry
        if eca != P.ECA_NORMAL:
            return Completion(waiter, kind, f"request failed, ECA status {eca}")
        # the answer's command decides what it carries (a reading or nothing), as in libca
        kind = RequestKind.GET if cmd == P.READ_NOTIFY else RequestKind.PUT
        return Completion(waiter, kind, None, False, dbr_type, count, as_array, body, reply_type)

    def refused(self, ioid: int, text: str) -> Completion[W] | None:
        """A server ERROR message naming the request ``ioid``."""
        entry = self._pending.pop(ioid, None)
        if entry is None:
            return None
        return Completion(entry[0], entry[1], text)

    def lost(self) -> list[Completion[W]]:
        """The connection went: CLOSED, and every pending request fails as disconnected."""
        return self._end(f"circuit to {self.server} lost")

    def close(self) -> list[Completion[W]]:
        """The client closes: CLOSED, and every pending request fails as disconnected."""
        return self._end("client closed")

    def _end(self, why: str) -> list[Completion[W]]:
        self.phase = CircuitPhase.CLOSED
        done = [Completion(w, k, why, True) for w, k, _t, _a in self._pending.values()]
        self._pending.clear()
        return done
