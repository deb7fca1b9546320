"""One archived PV: timestamp sanity, MONITOR/SCAN sampling, buffer, bookkeeping fields.

Everything here runs on the event loop for every CA event, so the hot path
(:meth:`ArchivedPV.on_event`) is a handful of comparisons and list appends.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ..pb import PayloadType, Sample
from .budget import SCALAR_EVENT_BYTES, MemoryBudget, event_cost
from .metrics import DropReason, PVMetrics

NS = 1_000_000_000
EPOCH_1991 = 662688000  # 1991-01-01T00:00:00Z
SERVER_IOC_DRIFT_SECONDS = 1800
SCAN_JITTER_FACTOR = 0.95


class SamplingMethod(StrEnum):
    MONITOR = "MONITOR"
    SCAN = "SCAN"


@dataclass
class Buffer:
    """Buffered events as (secs, nanos, val, severity, status) rows; one tuple append per
    event is the cheapest thing Python can do on the hot path. ``fields[i]`` are fieldvalues
    to attach to row ``i``."""

    rows: list[tuple[int, int, Any, int, int]] = field(default_factory=list)
    fields: dict[int, dict[str, str]] = field(default_factory=dict)
    actual_change: set[int] = field(default_factory=set)
    cost: int = 0

    def __len__(self) -> int:
        return len(self.rows)

    def columns(self) -> tuple[Any, Any, Any, Any, Any]:
        """(secs, nanos, vals, severity, status) sequences."""
        if not self.rows:
            return (), (), (), (), ()
        secs, nanos, vals, sev, stat = zip(*self.rows, strict=True)
        return secs, nanos, vals, sev, stat

    def sample_at(self, i: int) -> Sample:
        secs, nanos, val, sev, stat = self.rows[i]
        f = self.fields.get(i)
        return Sample(
            secs,
            nanos,
            val,
            sev,
            stat,
            fields=f or None,
            fieldactualchange=True if i in self.actual_change else None,
        )

    def samples(self) -> list[Sample]:
        out = []
        fields, changed = self.fields, self.actual_change
        for i, (secs, nanos, val, sev, stat) in enumerate(self.rows):
            f = fields.get(i)
            out.append(
                Sample(
                    secs,
                    nanos,
                    val,
                    sev,
                    stat,
                    fields=f or None,
                    fieldactualchange=True if i in changed else None,
                )
            )
        return out


class ArchivedPV:
    """State of one PV in the engine. ``clock`` returns the current epoch time in seconds."""

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
        self._fixed_cost = (
            SCALAR_EVENT_BYTES
            if not ptype.is_vector
            and ptype not in (PayloadType.SCALAR_STRING, PayloadType.V4_GENERIC_BYTES)
            else 0
        )
        self.clock = clock or time.time
        self.metrics = PVMetrics()
        self.buffer = Buffer()
        self.paused = False
        self.status_message = ""
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
    def on_connect(self, ptype: PayloadType) -> None:
        now = int(self.clock())
        m = self.metrics
        if (
            ptype == self.ptype
            and self.paused
            and self.status_message.startswith("PV changed type")
        ):
            self.paused = False  # back to the archived type: resume
            self.status_message = ""
        if ptype != self.ptype:
            # never overwrite or mix types in the stream: stop and say why
            m.dropped(DropReason.TYPE_CHANGE)
            self.paused = True
            self.status_message = (
                f"PV changed type from {self.ptype.name} to {ptype.name}; archiving paused"
            )
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
        bud.taken += cost
        if used > bud.peak:
            bud.peak = used
        b = self.buffer
        b.cost += cost
        b.rows.append((secs, nanos, val, sev, stat))
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
        cost = event_cost(val)
        if not self.budget.take(cost):
            self.metrics.dropped(DropReason.BUFFER_FULL)
            return False
        b = self.buffer
        b.cost += cost
        b.rows.append((secs, nanos, val, sev, stat))
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
        self.buffer = Buffer()
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
        cur = self.buffer
        n = len(b)
        merged = Buffer(
            b.rows + cur.rows,
            {**b.fields, **{i + n: f for i, f in cur.fields.items()}},
            b.actual_change | {i + n for i in cur.actual_change},
            b.cost + cur.cost,
        )
        self.buffer = merged
