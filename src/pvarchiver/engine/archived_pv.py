"""One archived PV: timestamp sanity, MONITOR/SCAN sampling, buffer, bookkeeping fields.

Everything here runs on the event loop for every CA event, so the hot path
(:meth:`ArchivedPV.on_event`) is a handful of comparisons and list appends.
"""

from __future__ import annotations

from array import array
from collections.abc import Callable
from enum import StrEnum
from typing import Any

from ..pb import PayloadType, Sample
from .budget import ARRAY_ROW_BYTES, MemoryBudget, event_cost
from .metrics import DropReason, PVMetrics

NS = 1_000_000_000
EPOCH_1991 = 662688000  # 1991-01-01T00:00:00Z
SERVER_IOC_DRIFT_SECONDS = 1800
SCAN_JITTER_FACTOR = 0.95


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


class Buffer:
    """Buffered events of one PV as five columns, and ``fields[i]``: fieldvalues to attach to
    row ``i`` (``actual_change``: rows whose fields changed at that write).

    Why columns of ``array.array`` instead of a list of row tuples: a tuple of five Python
    objects costs ~180 bytes and is tracked by the garbage collector, whose full passes then
    walk every buffered event; five arrays cost ~24 bytes per row, are invisible to the
    collector, and reach numpy without a copy. Values that are not numeric scalars (strings,
    waveforms) stay in a list. Rows are appended value first and status last, so a reader in
    another thread that measures ``len(stat)`` first always sees whole rows.
    """

    __slots__ = ("actual_change", "cost", "fields", "nanos", "secs", "sev", "stat", "vals")

    def __init__(self, typecode: str | None = None) -> None:
        self.secs = array("q")
        self.nanos = array("I")
        self.vals: Any = array(typecode) if typecode else []
        self.sev = array("h")
        self.stat = array("h")
        self.fields: dict[int, dict[str, str]] = {}
        self.actual_change: set[int] = set()
        self.cost = 0

    def __len__(self) -> int:
        return len(self.stat)

    def append(self, secs: int, nanos: int, val: Any, sev: int, stat: int) -> None:
        """One row; raises (TypeError, OverflowError, ValueError) before any column grows
        when the value does not fit the column."""
        self.vals.append(val)
        self.secs.append(secs)
        self.nanos.append(nanos)
        self.sev.append(sev)
        self.stat.append(stat)

    def row(self, i: int) -> tuple[int, int, Any, int, int]:
        return self.secs[i], self.nanos[i], self.vals[i], self.sev[i], self.stat[i]

    def columns(self) -> tuple[Any, Any, Any, Any, Any]:
        """(secs, nanos, vals, severity, status) sequences."""
        return self.secs, self.nanos, self.vals, self.sev, self.stat

    def snapshot(self) -> Buffer:
        """A copy of the whole rows present now (safe while the event loop appends)."""
        n = len(self.stat)
        out = Buffer()
        out.stat = self.stat[:n]
        out.sev = self.sev[:n]
        out.nanos = self.nanos[:n]
        out.secs = self.secs[:n]
        out.vals = self.vals[:n]
        out.fields = {i: f for i, f in list(self.fields.items()) if i < n}
        out.actual_change = {i for i in list(self.actual_change) if i < n}
        return out

    def sample_at(self, i: int) -> Sample:
        f = self.fields.get(i)
        return Sample(
            self.secs[i],
            self.nanos[i],
            self.vals[i],
            self.sev[i],
            self.stat[i],
            fields=f or None,
            fieldactualchange=True if i in self.actual_change else None,
        )

    def samples(self) -> list[Sample]:
        return [self.sample_at(i) for i in range(len(self))]

    def prepend(self, older: Buffer) -> None:
        """Put ``older``'s rows in front of ours (a failed write goes back, order kept)."""
        n = len(older)
        self.secs = older.secs + self.secs
        self.nanos = older.nanos + self.nanos
        self.vals = older.vals + self.vals
        self.sev = older.sev + self.sev
        self.stat = older.stat + self.stat
        self.fields = {**older.fields, **{i + n: f for i, f in self.fields.items()}}
        self.actual_change = older.actual_change | {i + n for i in self.actual_change}
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
        "_last_ns",
        "_pending",
        "_pending_cnx_fields",
        "_scan",
        "_scan_stored_ns",
        "_self_paused",
        "_started",
        "_typecode",
        "budget",
        "buffer",
        "clock",
        "control_off",
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
        self._changed_fields: dict[str, str] = {}
        self._started = True  # the next sample gets startup=true

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

    def set_field(self, name: str, value: str) -> None:
        """An archive field (HIHI, EGU, ...) changed: attach it at the next write."""
        if self._field_values.get(name) != value:
            self._field_values[name] = value
            self._changed_fields[name] = value

    @property
    def field_values(self) -> dict[str, str]:
        return dict(self._field_values)

    # ------------------------------------------------------------------ events
    def on_event(self, secs: int, nanos: int, sev: int, stat: int, val: Any) -> bool:
        """One monitor update; returns whether it was kept."""
        m = self.metrics
        m.events_received += 1
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
            b.vals.append(val)  # first: the only column a value can fail to fit
        except (TypeError, OverflowError, ValueError):
            m.dropped(DropReason.BAD_VALUE)
            return False
        b.secs.append(secs)
        b.nanos.append(nanos)
        b.sev.append(sev)
        b.stat.append(stat)
        bud.taken += cost
        if used > bud.peak:
            bud.peak = used
        b.cost += cost
        if self._pending_cnx_fields is not None:
            self._attach_cnx(b)
        m.events_stored += 1
        return True

    def _attach_cnx(self, b: Buffer) -> None:
        b.fields[len(b) - 1] = self._pending_cnx_fields  # type: ignore[assignment]
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
        self.buffer = Buffer(self._typecode)
        if len(b):
            last = len(b) - 1
            if daily_fields:
                b.fields[last] = {**daily_fields, **b.fields.get(last, {})}
                self._changed_fields.clear()
            elif self._changed_fields:
                b.fields[last] = {**self._changed_fields, **b.fields.get(last, {})}
                b.actual_change.add(last)
                self._changed_fields.clear()
        return b

    def release(self, b: Buffer) -> None:
        """The writer is done with ``b`` (written or given up): its memory is free again."""
        self.budget.give_back(b.cost)
        b.cost = 0

    def requeue(self, b: Buffer) -> None:
        """A write failed (disk full...): put the samples back in front, keeping order."""
        self.buffer.prepend(b)
