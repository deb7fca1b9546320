"""Per-PV locks of a store folder, shared by every store object that reaches the folder.

Why an object of its own: two store URLs may name one folder (``MTS`` with ``hold=2`` and
with ``hold=3`` in the AA's default policies), and a ``pb://`` and a ``parquet://`` store
are built the same way; whichever object writes a PV's file must take the same lock.
"""

from __future__ import annotations

import threading


class PVLocks:
    """One re-entrant lock per PV name, made on first use."""

    def __init__(self) -> None:
        self._locks: dict[str, threading.RLock] = {}
        self._guard = threading.Lock()

    def get(self, pvname: str) -> threading.RLock:
        lk = self._locks.get(pvname)  # atomic under the GIL; the guard is for creating one
        if lk is not None:
            return lk
        with self._guard:
            lk = self._locks.get(pvname)
            if lk is None:
                lk = self._locks[pvname] = threading.RLock()
            return lk
