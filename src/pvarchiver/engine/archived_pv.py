"""One archived PV: timestamp sanity, MONITOR/SCAN sampling, buffer, bookkeeping fields.

Everything here runs on the event loop for every CA event, so the hot path
(:meth:`ArchivedPV.on_event`) is a handful of comparisons and list appends.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Set
from enum import StrEnum
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ..pb import PayloadType, Sample
from .budget import ARRAY_ROW_BYTES, MemoryBudget, event_cost
from .metrics import DropReason, PVMetrics

if TYPE_CHECKING:
    from .journal import Journal

NS = 1_000_000_000
EPOCH_1991 = 662688000  # 1991-01-01T00:00:00Z
SERVER_IOC_DRIFT_SECONDS = 1800
SCAN_JITTER_FACTOR = 0.95


class PVListener(Protocol):
    """Something that watches an archived PV's live values (:meth:`ArchivedPV.add_listener`)."""

    def on_event(self, secs: int, nanos: int, sev: int, stat: int, val: Any) -> None: ...

    def on_connection(self, connected: bool) -> None: ...


class SamplingMethod(StrEnum):
    MONITOR = "MONITOR"
    SCAN = "SCAN"


#: array typecode of the value column per numeric scalar type (others keep a list)
VALUE_TYPECODES = {
    PayloadType.SCALAR_DOUBLE: "d",
    PayloadType.SCALAR_FLOAT: "f",
    PayloadType.SCALAR_INT: "i",
    PayloadType.SCALAR_SHORT: "h",
    PayloadType.SCALAR_ENUM: "H",
    PayloadType.SCALAR_BYTE: "B",
}


#: shared, read-only "no fields" of every buffer that carries none (almost all of them)
_NO_FIELDS: Mapping[int, dict[str, str]] = MappingProxyType({})
_NO_ROWS: frozenset[int] = frozenset()

#: one buffered row, packed: secs, nanos, value, severity, status (value column only for
#: numeric scalars; other values stay in a list beside the packed rows)
ROW_STRUCTS: dict[str | None, struct.Struct] = {
    tc: struct.Struct("<qI" + tc + "hh") for tc in VALUE_TYPECODES.values()
}
ROW_STRUCTS[None] = struct.Struct("<qIhh")
_NP_VALUE = {"d": "<f8", "f": "<f4", "i": "<i4", "h": "<i2", "H": "<u2", "B": "u1"}
#: numpy view of the packed rows (no copy)
ROW_DTYPES: dict[str | None, np.dtype[Any]] = {
    tc: np.dtype(
        [("secs", "<i8"), ("nanos", "<u4")]
        + ([("val", _NP_VALUE[tc])] if tc else [])
        + [("sev", "<i2"), ("stat", "<i2")]
    )
    for tc in ROW_STRUCTS
}


class Buffer:
    """Buffered events of one PV as packed rows, and ``fields[i]``: fieldvalues to attach to
    row ``i`` (``actual_change``: rows whose fields changed at that write).

    Why packed rows in one ``bytearray`` (``struct`` layout ``<qI?hh``: secs, nanos, value,
    severity, status): a tuple of five Python objects per row costs ~180 bytes and is tracked
    by the garbage collector; five ``array.array`` columns cost 24 bytes per row but five
    objects of 64 bytes per buffer, all tracked by the collector (arrays are), and every PV
    gets a fresh buffer at each write cycle: 10,000 PVs made 60,000 long-lived tracked
    objects per cycle, and full collections walking the whole heap cost ~2 µs per event.
    A bytearray is one untracked object, and numpy views it as columns without a copy
    (:meth:`records`). Values that are not numeric scalars (strings, waveforms) stay in the
    list ``objs`` (appended first), the rest of their row is packed. A reader in another
    thread that copies ``data`` once (one C call, under the GIL) always sees whole rows.

    ``fields`` and ``actual_change`` are shared read-only empties until :meth:`set_fields`
    first writes one: nearly all buffers carry none.
    """

    __slots__ = ("actual_change", "cost", "data", "fields", "objs", "size", "struct", "typecode")

    def __init__(self, typecode: str | None = None) -> None:
        self.typecode = typecode
        self.struct = ROW_STRUCTS[typecode]
        self.size = self.struct.size
        self.data = bytearray()
        self.objs: list[Any] | None = None if typecode else []
        self.fields: Mapping[int, dict[str, str]] = _NO_FIELDS
        self.actual_change: Set[int] = _NO_ROWS
        self.cost = 0

    def __len__(self) -> int:
        return len(self.data) // self.size

    def clear(self) -> None:
        """Empty it for reuse (the row memory is freed)."""
        self.data = bytearray()
        if self.objs is not None:
            self.objs = []
        self.fields = _NO_FIELDS
        self.actual_change = _NO_ROWS
        self.cost = 0

    def append(self, secs: int, nanos: int, val: Any, sev: int, stat: int) -> None:
        """One row; raises (TypeError, OverflowError, ValueError) before anything grows
        when the value does not fit the column."""
        if self.objs is None:
            try:
                row = self.struct.pack(secs, nanos, val, sev, stat)
            except struct.error as e:
                raise ValueError(str(e)) from None
            self.data += row
        else:
            row = self.struct.pack(secs, nanos, sev, stat)
            self.objs.append(val)
            self.data += row

    def row(self, i: int) -> tuple[int, int, Any, int, int]:
        if self.objs is None:
            return self.struct.unpack_from(self.data, i * self.size)  # type: ignore[no-any-return]
        secs, nanos, sev, stat = self.struct.unpack_from(self.data, i * self.size)
        return secs, nanos, self.objs[i], sev, stat

    def records(self) -> np.ndarray:
        """The rows as a numpy structured array (a view: no copy)."""
        return np.frombuffer(self.data, dtype=ROW_DTYPES[self.typecode])

    @property
    def secs(self) -> np.ndarray:
        return self.records()["secs"]

    @property
    def nanos(self) -> np.ndarray:
        return self.records()["nanos"]

    @property
    def vals(self) -> Any:
        """Values: a numpy view for numeric scalars, else the list."""
        return self.records()["val"] if self.objs is None else self.objs

    def columns(self) -> tuple[Any, Any, Any, Any, Any]:
        """(secs, nanos, vals, severity, status) sequences (numpy views, values of
        non-numeric types as the list)."""
        r = self.records()
        vals = r["val"] if self.objs is None else self.objs
        return r["secs"], r["nanos"], vals, r["sev"], r["stat"]

    def set_fields(self, i: int, fields: dict[str, str], actual_change: bool = False) -> None:
        """Attach ``fields`` to row ``i`` (replacing what it had), marked as an actual change
        of the archive fields if asked."""
        f = self.fields
        if not isinstance(f, dict):
            f = self.fields = {}
        f[i] = fields
        if actual_change:
            a = self.actual_change
            if not isinstance(a, set):
                a = self.actual_change = set(a)
            a.add(i)

    def special_rows(self) -> list[int]:
        """Rows that carry fieldvalues or fieldactualchange, in order."""
        if not self.fields and not self.actual_change:
            return []
        return sorted(self.fields.keys() | self.actual_change)

    def snapshot(self) -> Buffer:
        """A copy of the whole rows present now (safe while the event loop appends)."""
        data = bytes(self.data)  # one copy: whole rows, plus at most a torn tail
        n = len(data) // self.size
        out = Buffer(self.typecode)
        out.data = bytearray(data[: n * self.size])
        if self.objs is not None:
            out.objs = self.objs[:n]
        if self.fields:
            out.fields = {i: f for i, f in list(self.fields.items()) if i < n}
        if self.actual_change:
            out.actual_change = {i for i in list(self.actual_change) if i < n}
        return out

    def sample_at(self, i: int) -> Sample:
        secs, nanos, val, sev, stat = self.row(i)
        f = self.fields.get(i)
        return Sample(
            secs,
            nanos,
            val,
            sev,
            stat,
            fields=f or None,
            fieldactualchange=True if i in self.actual_change else None,
            # a PVA generic structure's timeStamp.userTag (pva_types.TaggedBytes)
            user_tag=getattr(val, "user_tag", None),
        )

    def samples(self) -> list[Sample]:
        return [self.sample_at(i) for i in range(len(self))]

    def prepend(self, older: Buffer) -> None:
        """Put ``older``'s rows in front of ours (a failed write goes back, order kept)."""
        n = len(older)
        self.data = older.data + self.data
        if self.objs is not None:
            self.objs = (older.objs or []) + self.objs
        if older.fields or self.fields:
            self.fields = {**older.fields, **{i + n: f for i, f in self.fields.items()}}
        if older.actual_change or self.actual_change:
            self.actual_change = set(older.actual_change) | {i + n for i in self.actual_change}
        self.cost += older.cost


class ArchivedPV:
    """State of one PV in the engine. ``clock`` returns the current epoch time in seconds."""

    # slots: one of these per archived PV, and the bound is 5 KB per scalar PV
    __slots__ = (
        "_changed_fields",
        "_events_since_connect",
        "_field_values",
        "_fixed_cost",
        "_held",
        "_jid",
        "_jid4",
        "_journal",
        "_jrows",
        "_last_ns",
        "_pending",
        "_pending_cnx_fields",
        "_scan",
        "_scan_stored_ns",
        "_self_paused",
        "_spare",
        "_started",
        "_typecode",
        "budget",
        "buffer",
        "clock",
        "control_off",
        "listeners",
        "method",
        "metrics",
        "name",
        "paused",
        "period",
        "ptype",
        "status_message",
    )

    def __init__(
        self,
        name: str,
        ptype: PayloadType,
        budget: MemoryBudget,
        method: SamplingMethod = SamplingMethod.MONITOR,
        period: float = 1.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        import time

        self.name = name
        self.ptype = ptype
        self.budget = budget
        self.method = method
        self.period = period
        self._scan = method is SamplingMethod.SCAN
        # numeric scalars all cost the same: skip the per-event size estimate for them
        self._typecode = VALUE_TYPECODES.get(ptype)
        self._fixed_cost = ARRAY_ROW_BYTES if self._typecode else 0
        self.clock = clock or time.time
        self.metrics = PVMetrics()
        self.buffer = Buffer(self._typecode)
        # the buffer written last cycle, emptied, to be swapped in at the next take_buffer
        self._spare: Buffer | None = None
        self.paused = False
        self.status_message = ""
        #: conditional archiving (controllingPV): why samples are not stored now, "" when they
        #: are; events still arrive and the latest is held, to be stored when it is switched on
        self.control_off = ""
        self._held: tuple[int, int, int, int, Any] | None = None
        # why the engine paused this PV itself ("type", "array"), so that it resumes it when
        # the cause goes away; None when not paused by the engine
        self._self_paused: str | None = None
        self._last_ns: int | None = None  # last accepted event (sanity) or stored (SCAN)
        self._pending: tuple[int, int, Any, int, int] | None = None  # SCAN: latest unstored
        self._scan_stored_ns: int | None = None  # SCAN: last stored sample
        self._events_since_connect = 0
        self._pending_cnx_fields: dict[str, str] | None = None
        self._field_values: dict[str, str] = {}
        # archive fields changed since the last write; None (not an empty dict) when none:
        # one fewer object per PV, most of the time
        self._changed_fields: dict[str, str] | None = None
        self._started = True  # the next sample gets startup=true
        # write-ahead journal (see journal.py): None until attach_journal
        self._journal: Journal | None = None
        self._jid = 0
        self._jid4 = b""
        self._jrows: bytearray | None = None  # numeric scalars: the journal's shared rows
        #: who watches the live values (the PVWS websocket): None while nobody does, so the
        #: hot path pays one attribute test; see :meth:`add_listener`
        self.listeners: list[PVListener] | None = None

    def add_listener(self, listener: PVListener) -> None:
        """Give ``listener`` every event as it arrives (before any filtering: paused, out of
        order and dropped events too, as a live display wants them) and each connect and
        disconnect. It must return at once and never raise: it runs in the hot path."""
        if self.listeners is None:
            self.listeners = []
        self.listeners.append(listener)

    def remove_listener(self, listener: PVListener) -> None:
        """Stop giving ``listener`` events; the last one gone makes the hot path free again."""
        ls = self.listeners
        if ls is not None and listener in ls:
            ls.remove(listener)
            if not ls:
                self.listeners = None

    def attach_journal(self, journal: Journal) -> None:
        """Journal every sample stored from now on (numeric scalars: one bytearray append
        of the packed row per event, in the hot path)."""
        self._journal = journal
        self._jid, self._jid4, self._jrows = journal.register(self.name, self.ptype, self._typecode)

    @property
    def journal_id(self) -> int:
        return self._jid

    # ------------------------------------------------------------------ configuration
    def set_sampling(self, method: SamplingMethod, period: float) -> None:
        """Changeable at run time, as the AA's changeArchivalParameters."""
        self.method = method
        self.period = max(period, 0.001)
        self._scan = method is SamplingMethod.SCAN
        self._pending = None

    # ------------------------------------------------------------------ connection
    def on_connect(self, ptype: PayloadType, problem: str = "") -> None:
        """The channel (re)connected with this type; ``problem`` is the CA client's reason
        the values cannot be received whole (an array over EPICS_CA_MAX_ARRAY_BYTES)."""
        now = int(self.clock())
        m = self.metrics
        if self._self_paused is not None:
            self.paused = False  # re-checked below: resume if the cause went away
            self.status_message = ""
            self._self_paused = None
        if ptype != self.ptype:
            # never overwrite or mix types in the stream: stop and say why
            m.dropped(DropReason.TYPE_CHANGE)
            self._pause_self(
                "type", f"PV changed type from {self.ptype.name} to {ptype.name}; archiving paused"
            )
        elif problem:
            # clipped arrays would be stored as if whole: store nothing, say why
            self._pause_self("array", f"{problem}; archiving paused")
        m.connected = True
        if not m.first_connected_epoch:
            m.first_connected_epoch = now
        self._events_since_connect = 0
        if self._started:
            self._pending_cnx_fields = {
                "cnxlostepsecs": str(m.last_connection_lost_epoch),
                "cnxregainedepsecs": str(now),
                "startup": "true",
            }
        elif m.last_connection_lost_epoch and m.last_connection_lost_epoch != now:
            m.connection_loss_regain_count += 1
            self._pending_cnx_fields = {
                "cnxlostepsecs": str(m.last_connection_lost_epoch),
                "cnxregainedepsecs": str(now),
            }
        m.last_connection_regained_epoch = now
        if self.listeners is not None:
            for listener in self.listeners:
                listener.on_connection(True)

    def set_control(self, off_reason: str) -> None:
        """Conditional archiving: ``off_reason`` "" stores events again, else stops storing.

        Switching on stores the latest value that arrived while off (as a fresh subscription
        would), so the stream shows the value the PV had when archiving resumed."""
        if off_reason:
            self.control_off = off_reason
            self._pending = None
            return
        if not self.control_off:
            return
        self.control_off = ""
        held, self._held = self._held, None
        if held is not None:
            self.metrics.events_received -= 1  # counted when it arrived
            self.on_event(*held)

    def _pause_self(self, why: str, message: str) -> None:
        self.paused = True
        self._self_paused = why
        self.status_message = message

    def on_disconnect(self) -> None:
        self.metrics.connected = False
        self.metrics.last_connection_lost_epoch = int(self.clock())
        self._pending = None
        if self.listeners is not None:
            for listener in self.listeners:
                listener.on_connection(False)

    def set_field(self, name: str, value: str) -> None:
        """An archive field (HIHI, EGU, ...) changed: attach it at the next write."""
        if self._field_values.get(name) != value:
            self._field_values[name] = value
            if self._changed_fields is None:
                self._changed_fields = {}
            self._changed_fields[name] = value

    @property
    def field_values(self) -> dict[str, str]:
        return dict(self._field_values)

    # ------------------------------------------------------------------ events
    def on_event(self, secs: int, nanos: int, sev: int, stat: int, val: Any) -> bool:
        """One monitor update; returns whether it was kept."""
        m = self.metrics
        m.events_received += 1
        if self.listeners is not None:
            for listener in self.listeners:
                listener.on_event(secs, nanos, sev, stat, val)
        if self.paused:
            return False
        if self.control_off:
            self._held = (secs, nanos, sev, stat, val)
            return False
        now = self.clock()
        if secs < EPOCH_1991:
            m.dropped(DropReason.BEFORE_1991)
            return False
        if secs > now + SERVER_IOC_DRIFT_SECONDS:
            m.dropped(DropReason.IN_FUTURE)
            return False
        ts = secs * NS + nanos
        last = self._last_ns
        if last is not None and ts <= last:
            m.dropped(DropReason.NOT_INCREASING)
            return False
        self._events_since_connect += 1
        if self._events_since_connect > 1 and secs < now - SERVER_IOC_DRIFT_SECONDS:
            m.dropped(DropReason.TOO_OLD)
            return False
        m.last_event_epoch = int(now)
        if self._scan:
            self._last_ns = ts
            stored_ns = self._scan_stored_ns
            if stored_ns is not None and ts - stored_ns < self.period * SCAN_JITTER_FACTOR * NS:
                self._pending = (secs, nanos, val, sev, stat)
                return True
            self._pending = None
            return self._store(secs, nanos, val, sev, stat)
        self._last_ns = ts
        # _store, inlined: this runs for every event of every MONITOR PV
        cost = self._fixed_cost or event_cost(val)
        bud = self.budget
        used = bud.taken - bud.returned + cost
        if used > bud.limit:
            m.dropped(DropReason.BUFFER_FULL)
            return False
        b = self.buffer
        try:
            if b.objs is None:  # numeric scalar: the whole row in one pack
                row = b.struct.pack(secs, nanos, val, sev, stat)
                b.data += row
                jr = self._jrows
                if jr is not None:
                    jr += self._jid4 + row
            else:
                b.append(secs, nanos, val, sev, stat)
                if self._journal is not None:
                    self._journal.add_obj(self._jid, secs, nanos, val, sev, stat)
        except (struct.error, TypeError, OverflowError, ValueError):
            m.dropped(DropReason.BAD_VALUE)
            return False
        bud.taken += cost
        if used > bud.peak:
            bud.peak = used
        b.cost += cost
        if self._pending_cnx_fields is not None:
            self._attach_cnx(b)
        m.events_stored += 1
        return True

    def _attach_cnx(self, b: Buffer) -> None:
        fields = self._pending_cnx_fields
        assert fields is not None
        b.set_fields(len(b) - 1, fields)
        if self._journal is not None:
            secs, nanos = b.row(len(b) - 1)[:2]
            self._journal.add_fields(self._jid, secs, nanos, fields)
        self._pending_cnx_fields = None
        self._started = False

    def on_scan_tick(self) -> bool:
        """SCAN: once per period, store the latest value not stored yet ("straggler")."""
        p = self._pending
        if p is None:
            return False
        self._pending = None
        return self._store(*p)

    def _store(self, secs: int, nanos: int, val: Any, sev: int, stat: int) -> bool:
        cost = self._fixed_cost or event_cost(val)
        if not self.budget.take(cost):
            self.metrics.dropped(DropReason.BUFFER_FULL)
            return False
        b = self.buffer
        try:
            b.append(secs, nanos, val, sev, stat)
        except (TypeError, OverflowError, ValueError):
            self.budget.give_back(cost)
            self.metrics.dropped(DropReason.BAD_VALUE)
            return False
        if self._jrows is not None:
            self._jrows += self._jid4 + b.data[-b.size :]
        elif self._journal is not None:
            self._journal.add_obj(self._jid, secs, nanos, val, sev, stat)
        b.cost += cost
        if self._pending_cnx_fields is not None:
            self._attach_cnx(b)
        self._scan_stored_ns = secs * NS + nanos
        self.metrics.events_stored += 1
        return True

    # ------------------------------------------------------------------ writing
    def take_buffer(self, daily_fields: dict[str, str] | None = None) -> Buffer:
        """Swap the buffer out for the writer, attaching changed archive fields to its last
        sample (``fieldactualchange=true``) as the AA does at each write. ``daily_fields``,
        when given, are attached instead with ``fieldactualchange`` unset (the once-a-day
        snapshot of all fields)."""
        b = self.buffer
        spare, self._spare = self._spare, None
        self.buffer = spare if spare is not None else Buffer(self._typecode)
        if len(b):
            last = len(b) - 1
            if daily_fields:
                b.set_fields(last, {**daily_fields, **b.fields.get(last, {})})
                self._changed_fields = None
            elif self._changed_fields:
                b.set_fields(last, {**self._changed_fields, **b.fields.get(last, {})}, True)
                self._changed_fields = None
        return b

    def release(self, b: Buffer) -> None:
        """The writer is done with ``b`` (written or given up): its memory is free again.

        ``b`` is emptied and kept to be the next buffer (the caller must not use it any
        more). Why: a fresh buffer per PV and write cycle is an object that lives ~10 s,
        so the garbage collector counts it as long-lived, and 10,000 of them per cycle
        triggered a full collection of the whole heap (~150 ms) every cycle or two."""
        self.budget.give_back(b.cost)
        b.cost = 0
        if self._spare is None and b is not self.buffer and b.typecode == self._typecode:
            b.clear()
            self._spare = b

    def requeue(self, b: Buffer) -> None:
        """A write failed (disk full...): put the samples back in front, keeping order."""
        self.buffer.prepend(b)
