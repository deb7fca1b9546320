"""What a CA server serves: :class:`ServedPV` (state + subscribers) and the provider interface.

The server core (``server.py``) knows nothing about where values come from.
A *provider* answers three questions: does a name exist (UDP/TCP search),
which :class:`ServedPV` backs a new channel, and what rights a given client
(host, user) has on it.  The gateway is one provider; :class:`DictProvider`
serves a fixed set of PVs (tests, statistics PVs).

Fan-out is the hot path.  :meth:`ServedPV.post` encodes the state once per
distinct (DBR type, count) among the matching subscribers and hands each
circuit three pre-built pieces (header prefix, subscription id, payload), so
a forwarded event costs a dict lookup and three list appends per client.
A provider holding the raw upstream messages (the gateway) may build the
circuits' output itself from :meth:`ServedPV.reader_groups` (who gets what, in
post()'s order) and hand it to ``ServerCircuit.send_events`` (the gateway's
``gateway/fanplan.py`` does, for whole runs of updates at once).
The subscriber tuple is replaced, never mutated, so a client leaving during
a post cannot disturb the loop (the ``deque mutated during iteration`` crash
seen in caproto's server cannot happen here).
"""

from __future__ import annotations

import struct
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Protocol

from . import dbr
from .dbr_encode import PVState, convert_values, encode, payload_size
from .protocol import (
    DBE_ALARM,
    DBE_LOG,
    DBE_VALUE,
    ECA_BADTYPE,
    ECA_NORMAL,
    EVENT_ADD,
    EXT_HEADER,
    pad,
)
from .server_config import RIGHT_READ, RIGHT_WRITE

if TYPE_CHECKING:
    from .server_circuit import ServerChannel, ServerCircuit

__all__ = [
    "CAServerError",
    "DictProvider",
    "EventParts",
    "Provider",
    "ServedPV",
    "Subscriber",
    "event_parts",
]

_PREFIX = struct.Struct(">HHHHI")
_U32 = struct.Struct(">I")

EventParts = tuple[bytes, bytes]  # (12-byte header prefix, [ext header +] padded payload)


class CAServerError(Exception):
    """A request failed with a CA status code (ECA_*) that goes back to the client."""

    def __init__(self, status: int, text: str = "") -> None:
        super().__init__(text or f"ECA status {status}")
        self.status = status


def event_parts(payload: bytes, dbr_type: int, count: int, status: int = ECA_NORMAL) -> EventParts:
    """Split an EVENT_ADD reply into the parts shared by every subscriber of one type."""
    body = pad(payload)
    size = len(body)
    if size >= 0xFFFF or count > 0xFFFF:
        ext = EXT_HEADER.pack(size, count)
        return _PREFIX.pack(EVENT_ADD, 0xFFFF, dbr_type, 0, status), ext + body
    return _PREFIX.pack(EVENT_ADD, size, dbr_type, count, status), body


class Subscriber:
    """One EVENT_ADD of one client channel."""

    __slots__ = (
        "channel",
        "circuit",
        "count",
        "dbr_type",
        "idb",
        "key",
        "mask",
        "readable",
        "subid",
    )

    def __init__(
        self, channel: ServerChannel, subid: int, dbr_type: int, count: int, mask: int
    ) -> None:
        self.channel = channel
        self.circuit: ServerCircuit = channel.circuit
        self.subid = subid
        self.idb = _U32.pack(subid)
        self.dbr_type = dbr_type
        self.count = count  # 0 = whatever the state holds (dynamic arrays)
        self.key = (dbr_type, count)
        self.mask = mask
        self.readable = bool(channel.rights & RIGHT_READ)


class ServedPV:
    """A PV the server offers.  Subclass to change reads/writes; call :meth:`update`.

    ``state`` may be None while the value is not yet known (channels are then
    refused).  ``max_elements`` caps what is announced and sent so that every
    payload fits ``EPICS_CA_MAX_ARRAY_BYTES`` (set by the server).
    """

    def __init__(self, name: str, state: PVState | None = None, *, writable: bool = True) -> None:
        self.name = name
        self.state = state
        self.writable = writable
        self.class_name = ""
        self.subscribers: tuple[Subscriber, ...] = ()
        self._groups: tuple[
            tuple[int, int, tuple[tuple[int, bytes, Any, Subscriber], ...]], ...
        ] = ()
        self.posted = 0  # events handed to circuits (statistics)
        self._max_bytes = 16384  # EPICS_CA_MAX_ARRAY_BYTES, set by the server on attach
        self._max_el: dict[int, int] = {}

    # -- metadata the server reads
    @property
    def native_type(self) -> int:
        return self.state.native if self.state is not None else -1

    @property
    def count(self) -> int:
        return self.state.count if self.state is not None else 0

    def rights(self, host: str, user: str) -> int:
        """Rights for a client; default read, plus write when ``writable``."""
        return RIGHT_READ | (RIGHT_WRITE if self.writable else 0)

    # -- requests
    def read(self, dbr_type: int, count: int, channel: ServerChannel) -> bytes | Awaitable[bytes]:
        """Payload (unpadded) for READ_NOTIFY; may return an awaitable."""
        assert self.state is not None
        return encode(self.state, dbr_type, count, self.class_name)

    def write(
        self, dbr_type: int, count: int, payload: bytes, channel: ServerChannel
    ) -> Awaitable[None] | None:
        """Store a put (plain DBR types only) and post it; may return an awaitable."""
        state = self.state
        if state is None or not 0 <= dbr_type <= 6:
            raise CAServerError(ECA_BADTYPE, f"cannot write DBR type {dbr_type}")
        raw = convert_values(dbr_type, payload, count, state.native, state.meta)
        self.update(
            PVState.from_raw(state.native, count, raw, meta=state.meta),
            DBE_VALUE | DBE_LOG,
        )
        return None

    # -- publishing
    def update(self, state: PVState, mask: int | None = None) -> None:
        """Replace the state and notify; default mask value|log, plus alarm if it changed."""
        old = self.state
        self.state = state
        if mask is None:
            mask = DBE_VALUE | DBE_LOG
            if old is None or old.alarm != state.alarm:
                mask |= DBE_ALARM
        self.post(mask)

    def post(self, mask: int) -> None:
        """Send the current state to every subscriber whose mask matches.

        The hot loop of the gateway: subscribers are pre-grouped by (type,
        count), each group is encoded at most once, and a circuit gets three
        list items per update (header prefix, subscription id, payload).
        """
        groups = self._groups
        if not groups or self.state is None:
            return
        n = 0
        for dbr_type, count, members in groups:
            parts = None
            for smask, idb, circuit, sub in members:
                if not smask & mask:
                    continue
                if parts is None:
                    parts = self.event_parts(dbr_type, count)
                    prefix, rest = parts
                n += 1
                if circuit.hold:
                    circuit.hold_event(sub, parts)
                    continue
                circuit.out.extend((prefix, idb, rest))
                if not circuit.flush_pending:
                    circuit.schedule_flush()
        self.posted += n

    def event_parts(self, dbr_type: int, count: int) -> EventParts:
        """Encode the current state for one (type, count); count 0 means the state's count."""
        state = self.state
        assert state is not None
        if not count:
            limit = self._max_el.get(dbr_type)
            if limit is None:
                limit = self._max_el[dbr_type] = self.max_elements(dbr_type)
            count = min(state.count, limit)
        if count == state.count and dbr_type == state.native + 14:
            payload = state.time_payload  # forwarded as received: no encoding at all
        else:
            payload = encode(state, dbr_type, count, self.class_name)
        return event_parts(payload, dbr_type, count)

    @property
    def max_array_bytes(self) -> int:
        return self._max_bytes

    @max_array_bytes.setter
    def max_array_bytes(self, value: int) -> None:
        if value != self._max_bytes:
            self._max_bytes = value
            self._max_el = {}
            self.regroup()

    def max_elements(self, dbr_type: int) -> int:
        """Most elements of ``dbr_type`` one payload may carry under the array limit."""
        head = payload_size(dbr_type, 0)
        size = dbr.element_size(dbr_type % 7) if dbr_type <= 34 else 40
        return max(1, (self._max_bytes - head) // size)

    # -- subscriber bookkeeping (copy-on-write tuples: a post in progress keeps its own)
    def add_subscriber(self, sub: Subscriber) -> None:
        self.subscribers = (*self.subscribers, sub)
        self.regroup()

    def remove_subscriber(self, sub: Subscriber) -> None:
        self.subscribers = tuple(s for s in self.subscribers if s is not sub)
        self.regroup()

    def regroup(self) -> None:
        """Rebuild the (type, count) groups :meth:`post` walks; call after rights change."""
        groups: dict[tuple[int, int], list[tuple[int, bytes, Any, Subscriber]]] = {}
        for sub in self.subscribers:
            if sub.readable:
                groups.setdefault(sub.key, []).append((sub.mask, sub.idb, sub.circuit, sub))
        self._groups = tuple((k[0], k[1], tuple(v)) for k, v in groups.items())
        self.fan_out_changed()

    def fan_out_changed(self) -> None:
        """Hook: the readable subscribers (:meth:`reader_groups`) or the array limit changed."""

    @property
    def has_readers(self) -> bool:
        """Some subscriber may read: :meth:`post` has someone to send to."""
        return bool(self._groups)

    def reader_groups(self) -> list[tuple[int, int, list[Subscriber]]]:
        """The readable subscribers as (DBR type, count, subscribers), in the order
        :meth:`post` serves them (a count of 0: whatever the state holds)."""
        return [(t, c, [m[3] for m in members]) for t, c, members in self._groups]


class Provider(Protocol):
    """What the server asks about names; the gateway implements this."""

    def search(self, name: str, addr: tuple[str, int]) -> bool | Awaitable[bool]:
        """Does ``name`` exist for a search from ``addr``?  May defer (awaitable)."""
        ...

    def attach(
        self, name: str, host: str, user: str
    ) -> ServedPV | Awaitable[ServedPV | None] | None:
        """The PV behind a new channel, or None (CREATE_CH_FAIL)."""
        ...

    def rights(self, name: str, pv: ServedPV, host: str, user: str) -> int:
        """Access rights bits (1 read, 2 write) for this client on this channel."""
        ...

    def detach(self, name: str, pv: ServedPV) -> None:
        """A channel on ``pv`` went away (cleared or its circuit closed)."""
        ...


class DictProvider:
    """Serves a fixed mapping of names to PVs; rights come from each PV."""

    def __init__(self, pvs: dict[str, ServedPV] | None = None) -> None:
        self.pvs: dict[str, ServedPV] = dict(pvs or {})

    def add(self, pv: ServedPV) -> ServedPV:
        self.pvs[pv.name] = pv
        return pv

    def search(self, name: str, addr: tuple[str, int]) -> bool:
        return name in self.pvs

    def attach(self, name: str, host: str, user: str) -> ServedPV | None:
        return self.pvs.get(name)

    def rights(self, name: str, pv: ServedPV, host: str, user: str) -> int:
        return pv.rights(host, user)

    def detach(self, name: str, pv: ServedPV) -> None:
        return None
