"""Which PVA names to search now (pure: no sockets, time is passed in).

Per-name exponential backoff as for CA (``ca/search.py`` explains why an archiver needs
it): a name is searched at once, then after ``min_period``, the gap doubling after every
unanswered try up to ``max_period`` (it never stops, so a server that starts late is found
within one maximum period). Due names are packed into as few SEARCH messages as fit
``payload_limit`` bytes; every message goes to every UDP target and name server.
"""

from __future__ import annotations

import heapq
import itertools

from .protocol import SEARCH_OVERHEAD, build_search, search_payload_size

__all__ = ["SearchScheduler"]

MIN_PERIOD = 0.05
PAYLOAD_LIMIT = 1400


class SearchScheduler:
    """Pending names and their next search time."""

    def __init__(self, min_period: float = MIN_PERIOD, max_period: float = 30.0) -> None:
        self.min_period = min_period
        self.max_period = max(min_period, max_period)
        self._names: dict[int, str] = {}
        self._period: dict[int, float] = {}
        self._gen: dict[int, int] = {}
        self._heap: list[tuple[float, int, int]] = []
        self._seq = itertools.count(1)
        self.messages = 0  #: SEARCH messages built
        self.requests = 0  #: names sent (once per message)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, cid: int) -> bool:
        return cid in self._names

    def add(self, cid: int, name: str, now: float, delay: float = 0.0) -> None:
        """Search ``name`` from ``now + delay`` with the backoff restarted."""
        self._names[cid] = name
        self._period[cid] = self.min_period
        gen = self._gen.get(cid, 0) + 1
        self._gen[cid] = gen
        heapq.heappush(self._heap, (now + delay, cid, gen))

    def remove(self, cid: int) -> None:
        """The name was found (or dropped): stop searching it."""
        self._names.pop(cid, None)
        self._period.pop(cid, None)
        self._gen.pop(cid, None)

    def next_wakeup(self) -> float | None:
        while self._heap and self._gen.get(self._heap[0][1]) != self._heap[0][2]:
            heapq.heappop(self._heap)
        return self._heap[0][0] if self._heap else None

    def poll(self, now: float, reply_port: int, order: str = ">") -> list[bytes]:
        """SEARCH messages (headers included) for every name now due."""
        due: list[tuple[int, str]] = []
        while self._heap and self._heap[0][0] <= now:
            _, cid, gen = heapq.heappop(self._heap)
            if self._gen.get(cid) != gen:
                continue
            due.append((cid, self._names[cid]))
            period = self._period[cid]
            self._period[cid] = min(period * 2, self.max_period)
            heapq.heappush(self._heap, (now + period, cid, gen))
        out: list[bytes] = []
        batch: list[tuple[int, str]] = []
        size = SEARCH_OVERHEAD
        for cid, name in due:
            n = search_payload_size(name)
            if batch and size + n > PAYLOAD_LIMIT:
                out.append(self._message(batch, reply_port, order))
                batch, size = [], SEARCH_OVERHEAD
            batch.append((cid, name))
            size += n
        if batch:
            out.append(self._message(batch, reply_port, order))
        return out

    def _message(self, batch: list[tuple[int, str]], reply_port: int, order: str) -> bytes:
        self.messages += 1
        self.requests += len(batch)
        return build_search(next(self._seq), batch, reply_port, order=order)
