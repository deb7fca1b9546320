"""Which PVs' writes into a store are failing right now, and since when.

A failed write keeps its samples (in memory and in the journal) and is retried every write
cycle, so a full or unwritable store loses nothing while it lasts; but until it ends those
samples are not in a ``.pb`` file, and the status must say so. The engine tells this object
about every PV's write outcome (:meth:`StoreWriteHealth.failed`, :meth:`succeeded`); mgmt
reads it for getPVStatus, getPVDetails, ``/metrics`` and the health check.

When a failure counts: a PV's writes have been failing *since* its first failed write after
its last successful one. Its oldest unwritten samples are then about one write period older
than that (they arrived after the last successful write), so "samples have not reached the
store for more than two write periods" is ``now - since > write_period``: the second failed
cycle in a row. One failed cycle (a hiccup) is logged and counted, not reported.

The store is failing while any of its PVs is; its spell starts with the first PV failure
while none was failing and ends with the last PV's first successful write. The log says
when a spell starts, every minute while it lasts, and when it ends, never once per PV and
cycle (10,000 PVs on a full disk would write 10,000 lines every cycle).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

log = logging.getLogger(__name__)

#: while a store keeps failing, a reminder in the log this often (seconds)
REMIND_SECONDS = 60.0


@dataclass(frozen=True)
class StoreFailure:
    """A store's failing spell as reported: since when, how many PVs, the latest error."""

    store: str
    since: float
    pvs: int
    error: str
    error_pv: str

    def seconds(self, now: float) -> float:
        return max(0.0, now - self.since)


class StoreWriteHealth:
    """One store's failing PVs. Runs on the event loop (the engine's ``finish``)."""

    def __init__(self, store: str, write_period: float) -> None:
        self.store = store
        self.write_period = write_period
        #: PV -> epoch of the first failed write of its current spell
        self.pvs: dict[str, float] = {}
        #: start of the store's current failing spell (0: not failing)
        self.since = 0.0
        self.error = ""
        self.error_pv = ""
        self._reminded = 0.0

    # ------------------------------------------------------------------ updates
    def failed(self, pv: str, error: str, now: float) -> None:
        if pv not in self.pvs:
            self.pvs[pv] = now
        self.error, self.error_pv = error, pv
        if not self.since:
            self.since = self._reminded = now
            log.error(
                "store %s: writes failing (%s: %s); the samples stay in memory and in the "
                "journal and are retried every %g s",
                self.store,
                pv,
                error,
                self.write_period,
            )
        elif now - self._reminded >= REMIND_SECONDS:
            self._reminded = now
            log.error(
                "store %s: writes failing for %.0f s, %d PV(s), latest %s: %s",
                self.store,
                now - self.since,
                len(self.pvs),
                pv,
                error,
            )

    def succeeded(self, pv: str, now: float) -> None:
        """The PV's samples reached the store: its failure (if any) is over."""
        if self.pvs.pop(pv, None) is not None and not self.pvs:
            self._end(now)

    def forget(self, pv: str, now: float) -> None:
        """A PV deleted or renamed: it no longer keeps the store failing."""
        self.succeeded(pv, now)

    def _end(self, now: float) -> None:
        log.warning(
            "store %s: writes succeed again after %.0f s of failures", self.store, now - self.since
        )
        self.since = 0.0
        self.error = self.error_pv = ""

    # ------------------------------------------------------------------ questions
    def reported(self, since: float, now: float) -> bool:
        """A failure that began at ``since`` counts by ``now`` (see the module's note)."""
        return bool(since) and now - since > self.write_period

    def pv_since(self, pv: str, now: float) -> float:
        """When the PV's writes started failing, if that failure counts by now; else 0."""
        since = self.pvs.get(pv, 0.0)
        return since if self.reported(since, now) else 0.0

    def failure(self, now: float) -> StoreFailure | None:
        """The store's spell, if it counts by now."""
        if not self.reported(self.since, now):
            return None
        return StoreFailure(self.store, self.since, len(self.pvs), self.error, self.error_pv)
