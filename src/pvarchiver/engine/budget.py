"""One memory bound shared by all buffers of an engine.

The AA sizes each MONITOR buffer from the sampling period and silently drops what does not
fit (its issue #70). Here buffers grow as needed; only when all of them together reach the
configured bound are further events dropped, and each drop is counted on its PV.
"""

from __future__ import annotations

#: Rough cost of one buffered event whose value is a Python object in a list (list slot,
#: the object, and the rest of its row packed: 16 bytes).
SCALAR_EVENT_BYTES = 160
#: Cost of one buffered numeric scalar event: its packed row (8+4+8+2+2 bytes for a double)
#: plus the bytearray's growth slack.
ARRAY_ROW_BYTES = 32


class MemoryBudget:
    """Bytes held by all buffers, without a lock on the per-event path.

    Only the event loop takes (``taken``) and only the writer gives back (``returned``), so
    each counter has a single writer and no update can be lost between the two threads.
    """

    def __init__(self, limit_bytes: int) -> None:
        self.limit = limit_bytes
        self.taken = 0
        self.returned = 0
        self.peak = 0

    @property
    def used(self) -> int:
        return self.taken - self.returned

    def take(self, nbytes: int) -> bool:
        used = self.taken - self.returned + nbytes
        if used > self.limit:
            return False
        self.taken += nbytes
        if used > self.peak:
            self.peak = used
        return True

    def give_back(self, nbytes: int) -> None:
        self.returned += nbytes


def event_cost(value: object) -> int:
    """Approximate bytes one buffered event holds."""
    if type(value) is float or type(value) is int:
        return SCALAR_EVENT_BYTES
    nbytes = getattr(value, "nbytes", None)
    if nbytes is not None:
        return SCALAR_EVENT_BYTES + int(nbytes)
    if isinstance(value, str | bytes):
        return SCALAR_EVENT_BYTES + len(value)
    if isinstance(value, list):
        return SCALAR_EVENT_BYTES + 8 * len(value)
    return SCALAR_EVENT_BYTES
