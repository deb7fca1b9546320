"""One memory bound shared by all buffers of an engine.

The AA sizes each MONITOR buffer from the sampling period and silently drops what does not
fit (its issue #70). Here buffers grow as needed; only when all of them together reach the
configured bound are further events dropped, and each drop is counted on its PV.
"""

from __future__ import annotations

import threading

#: Rough cost of one buffered scalar event in Python lists (five list slots and objects).
SCALAR_EVENT_BYTES = 160


class MemoryBudget:
    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.used = 0
        self.peak = 0
        self._lock = threading.Lock()

    def take(self, nbytes: int) -> bool:
        with self._lock:
            if self.used + nbytes > self.limit:
                return False
            self.used += nbytes
            self.peak = max(self.peak, self.used)
            return True

    def give_back(self, nbytes: int) -> None:
        with self._lock:
            self.used = max(0, self.used - nbytes)


def event_cost(value: object) -> int:
    """Approximate bytes one buffered event holds."""
    nbytes = getattr(value, "nbytes", None)
    if nbytes is not None:
        return SCALAR_EVENT_BYTES + int(nbytes)
    if isinstance(value, str | bytes):
        return SCALAR_EVENT_BYTES + len(value)
    if isinstance(value, list):
        return SCALAR_EVENT_BYTES + 8 * len(value)
    return SCALAR_EVENT_BYTES
