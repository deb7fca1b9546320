"""When each SCAN PV stores its next sample: a schedule keyed by due time.

Why: the engine used to walk its whole PV table every 50 ms looking for SCAN PVs, so an
appliance of 100,000 MONITOR PVs spent most of a core finding nothing (issue 21). Here only
SCAN PVs are in the schedule, in a heap by due time: a tick costs O(log n) per PV that is
due, and nothing when none is. Sans-I/O: the caller passes the time.
"""

from __future__ import annotations

import heapq


class ScanSchedule:
    """SCAN PVs by due time. Removal is lazy: an entry whose name was removed or
    re-added since is skipped when it comes up."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._current: dict[str, tuple[int, float]] = {}  # name -> (entry id, period)
        self._seq = 0

    def __len__(self) -> int:
        return len(self._current)

    @property
    def heap_size(self) -> int:
        """Entries kept, stale ones included (bounded: see :meth:`_compact`)."""
        return len(self._heap)

    def __contains__(self, name: str) -> bool:
        return name in self._current

    def add(self, name: str, period: float, now: float) -> None:
        """Schedule ``name`` every ``period`` seconds, first at ``now + period`` (replaces an
        earlier schedule of the same name)."""
        self._seq += 1
        period = max(period, 0.001)
        self._current[name] = (self._seq, period)
        heapq.heappush(self._heap, (now + period, self._seq, name))

    def remove(self, name: str) -> None:
        self._current.pop(name, None)

    def due(self, now: float) -> list[str]:
        """The names due at ``now``, each rescheduled one period on from its due time (or
        from ``now``, if it fell more than a period behind: no burst of catch-up ticks)."""
        out: list[str] = []
        heap = self._heap
        while heap and heap[0][0] <= now:
            due, seq, name = heapq.heappop(heap)
            cur = self._current.get(name)
            if cur is None or cur[0] != seq:
                continue  # removed or re-added since
            period = cur[1]
            nxt = due + period if due + period > now else now + period
            heapq.heappush(heap, (nxt, seq, name))
            out.append(name)
        self._compact()
        return out

    def seconds_until_next(self, now: float) -> float | None:
        """Seconds until the next PV is due (0 if one is), None if the schedule is empty."""
        heap = self._heap
        while heap:
            due, seq, name = heap[0]
            cur = self._current.get(name)
            if cur is not None and cur[0] == seq:
                return max(0.0, due - now)
            heapq.heappop(heap)
        return None

    def _compact(self) -> None:
        """Drop stale entries once they outnumber the live ones (bounded memory under
        many re-adds)."""
        if len(self._heap) > 2 * len(self._current) + 64:
            live = {seq for seq, _p in self._current.values()}
            self._heap = [e for e in self._heap if e[1] in live]
            heapq.heapify(self._heap)
