"""Flow control of one CA virtual circuit (pure: no sockets, time is passed in).

When a client cannot keep up with its monitors, the server's updates pile up in the
kernel. libca then sends EVENTS_OFF: the server stops sending monitor updates and keeps
only the latest one per subscription, which it sends after EVENTS_ON. This module decides
when, as libca does with two refinements:

* a read is *full* when it returns as much as the transport ever read at once (learnt,
  so any event loop works: asyncio reads up to 256 KiB) and, where the kernel can be
  asked (``FIONREAD``; not on Windows), at least ``MIN_FULL_READ`` bytes still wait
  after it. Why the kernel check: a scan of many records arrives as one burst of the same
  size every period, read whole each time; by size alone those reads looked full, and a
  client keeping up easily (the gateway) sent EVENTS_OFF every few seconds;
* EVENTS_OFF needs ``FLOW_CONTROL_READS`` full reads in a row over at least
  ``FLOW_CONTROL_SECONDS``: a short stall (a write cycle, a GC pass) leaves a backlog that
  drains by itself, and EVENTS_OFF makes the server coalesce (lose) updates, which an
  archiver wants to avoid.

The first short read sends EVENTS_ON. So does ``EVENTS_ON_IDLE`` of silence after
EVENTS_OFF, since the backlog may drain in reads that all look full, and a server holding
events then sends nothing at all: updates must never stay switched off.

The circuit calls :meth:`FlowControl.full_read` for a read of at least ``full_size``
bytes (asking the kernel only then), :meth:`FlowControl.short_read` for a shorter one
only while ``armed`` (nothing to do otherwise), and :meth:`FlowControl.idle` from a timer
``EVENTS_ON_IDLE`` after EVENTS_OFF. A steady flow of ordinary reads costs one comparison
and one attribute test per read, no call.
"""

from __future__ import annotations

from enum import IntEnum

__all__ = [
    "EVENTS_ON_IDLE",
    "FLOW_CONTROL_READS",
    "FLOW_CONTROL_SECONDS",
    "MIN_FULL_READ",
    "FlowAction",
    "FlowControl",
]

#: consecutive full reads that mean the client is behind the server (libca uses 10)
FLOW_CONTROL_READS = 10
#: ... and for at least this long (see the module docstring)
FLOW_CONTROL_SECONDS = 0.5
#: after EVENTS_OFF, this long without any bytes from the server means the backlog is gone
EVENTS_ON_IDLE = 0.05
#: reads smaller than this never count as full; where the kernel can be asked, a read is
#: full only if this much is still waiting after it
MIN_FULL_READ = 16384


class FlowAction(IntEnum):
    NOTHING = 0
    EVENTS_OFF = 1  #: send EVENTS_OFF now, and call :meth:`FlowControl.idle` after idle_delay
    EVENTS_ON = 2  #: send EVENTS_ON now
    RECHECK = 3  #: still off and not idle: call :meth:`FlowControl.idle` again after idle_delay


class FlowControl:
    """EVENTS_OFF / EVENTS_ON decisions for one circuit from its read sizes and times."""

    __slots__ = (
        "armed",
        "events_off",
        "full_reads",
        "full_since",
        "full_size",
        "idle_delay",
        "min_full_read",
        "min_seconds",
        "offs",
        "reads",
    )

    def __init__(
        self,
        reads: int = FLOW_CONTROL_READS,
        seconds: float = FLOW_CONTROL_SECONDS,
        min_full_read: int = MIN_FULL_READ,
        idle_delay: float = EVENTS_ON_IDLE,
    ) -> None:
        self.reads = reads
        self.min_seconds = seconds
        self.idle_delay = idle_delay
        self.min_full_read = min_full_read
        #: a read of at least this many bytes may be full (the biggest read seen so far)
        self.full_size = min_full_read
        self.full_reads = 0  #: full reads in a row
        self.full_since = 0.0  #: when the first of them came
        self.events_off = False  #: we asked the server to hold monitor updates
        #: a short read has something to undo (a run of full reads, or events off)
        self.armed = False
        self.offs = 0  #: EVENTS_OFF decisions so far

    def full_read(self, n: int, waiting: int | None, now: float) -> FlowAction:
        """A read of ``n >= full_size`` bytes at ``now``; ``waiting`` is what the kernel
        still holds after it (None: cannot tell, the read size alone decides)."""
        if n > self.full_size:
            self.full_size = n
        if waiting is not None and waiting < self.min_full_read:
            # it only looked full: the read took everything there was
            return self.short_read()
        self.full_reads += 1
        self.armed = True
        if self.full_reads == 1:
            self.full_since = now
        if (
            self.full_reads >= self.reads
            and not self.events_off
            and now - self.full_since >= self.min_seconds
        ):
            self.events_off = True
            self.offs += 1
            return FlowAction.EVENTS_OFF
        return FlowAction.NOTHING

    def short_read(self) -> FlowAction:
        """A read shorter than ``full_size`` (or one that emptied the kernel): caught up."""
        self.full_reads = 0
        self.armed = False
        if self.events_off:
            self.events_off = False
            return FlowAction.EVENTS_ON
        return FlowAction.NOTHING

    def idle(self, now: float, last_rx: float) -> FlowAction:
        """Timer after EVENTS_OFF: EVENTS_ON if nothing arrived for ``idle_delay``."""
        if not self.events_off:
            return FlowAction.NOTHING
        if now - last_rx >= self.idle_delay:
            return self.short_read()
        return FlowAction.RECHECK
