"""Search scheduling for a CA client (pure: no sockets, time is passed in).

Why a scheduler of its own: an archiver asks for thousands of names at once and keeps
searching for the ones nobody serves, for months. Sending every due name at once would be a
search storm (the AA's issue #109 shows 25 k searches every 5 minutes), and searching a
missing name at a fixed rate wastes every server's CPU on the subnet. libca solves both and
this module does the same things in the same spirit:

* **per-name exponential backoff**: a name is searched at once, then after
  ``min_period``, and the gap doubles after every unanswered try up to
  ``EPICS_CA_MAX_SEARCH_PERIOD``; it never stops, so a server that starts late (and
  sends no beacon that reaches us) is found within one maximum period;
* **batching**: due names are packed into as few datagrams as fit ``payload_limit``;
* **rate limit with congestion control** (AIMD, like TCP and libca's search timer): at most
  ``window`` datagrams go out per tick. The window starts at 1 and doubles while nearly every
  datagram sent gets at least one answer (slow start), grows by one past the threshold, and
  halves when datagrams go unanswered. Judging datagrams rather than names (libca judges
  names) keeps a batch that mixes missing names with served ones from looking like packet
  loss, while a datagram that was really lost, or that holds only missing names, counts as
  unanswered. So 10,000 names served by running IOCs are all asked within a few tenths of a
  second, while 10,000 missing names cost one datagram per tick at most;
* **reset on beacon anomaly**: :meth:`SearchScheduler.reset` makes every pending name due at
  once with its backoff restarted (a server appeared or restarted), still under the window.

The tick follows the measured round-trip time (twice the smoothed RTT, within bounds), so
the window is judged on answers that had time to come back.
"""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from . import protocol as P

__all__ = ["SearchScheduler", "SearchStats"]

#: first retry gap and lower bound of the tick (libca's minimum round-trip estimate is 32 ms)
MIN_PERIOD = 0.032
MAX_TICK = 0.1
#: datagrams per tick at most (libca's cap on frames per try is 64)
MAX_WINDOW = 64
#: payload of one search datagram, VERSION header included (libca's MAX_UDP_SEND)
PAYLOAD_LIMIT = 1024
_VERSION_SIZE = 16


@dataclass
class SearchStats:
    """Counters for benchmarks and status pages."""

    datagrams: int = 0  #: datagram payloads built (each goes to every address list entry)
    requests: int = 0  #: names sent (one name counts once per datagram it is in)
    responses: int = 0  #: first answers for pending names
    resets: int = 0  #: beacon anomalies / new name servers that restarted the backoff
    window_cuts: int = 0  #: times the window was halved


class _Entry:
    __slots__ = ("frame", "gen", "msg", "period", "sent_at", "tries")

    def __init__(self, msg: bytes, min_period: float) -> None:
        self.msg = msg
        self.period = min_period
        self.gen = 0
        self.tries = 0
        self.sent_at = -1.0
        self.frame = -1  # id of the datagram that carried the latest search


class SearchScheduler:
    """Which names to search now, and how many datagrams may go out.

    Call :meth:`poll` whenever :meth:`next_wakeup` says so (or earlier: it only sends what
    is due and what the window allows), :meth:`found` when a search reply for a pending
    channel id arrives, :meth:`add`/:meth:`remove` as channels lose or get their server.
    """

    def __init__(
        self,
        max_period: float,
        min_period: float = MIN_PERIOD,
        payload_limit: int = PAYLOAD_LIMIT,
        max_window: int = MAX_WINDOW,
    ) -> None:
        self.max_period = max(max_period, min_period)
        self.min_period = min_period
        self.payload_limit = payload_limit
        self.max_window = max_window
        self.window = 1.0
        self.threshold = float(max_window)
        self.stats = SearchStats()
        self._entries: dict[int, _Entry] = {}
        self._heap: list[tuple[float, int, int]] = []  # (due, cid, gen)
        # generations are unique over the scheduler's life, not per entry: a name found and
        # lost again before its old heap slot popped would otherwise match that slot too
        # (and be searched twice per datagram)
        self._gen_seq = 0
        self._next_send = 0.0
        self._srtt: float | None = None
        self._frame_seq = 0
        self._frames_to_judge: set[int] = set()
        self._answered_frames: set[int] = set()

    # ------------------------------------------------------------------ membership
    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, cid: int) -> bool:
        return cid in self._entries

    def add(self, cid: int, name: str | bytes, now: float) -> None:
        """Start searching ``cid`` now (a new channel, or one that lost its server)."""
        entry = _Entry(P.search(name, cid), self.min_period)
        self._gen_seq += 1
        entry.gen = self._gen_seq
        self._entries[cid] = entry
        heapq.heappush(self._heap, (now, cid, entry.gen))

    def remove(self, cid: int) -> None:
        """Stop searching ``cid`` (cleared); its heap slot is skipped when popped."""
        self._entries.pop(cid, None)

    def found(self, cid: int, now: float) -> bool:
        """A reply for ``cid`` arrived; returns False if it was not pending (duplicate)."""
        entry = self._entries.pop(cid, None)
        if entry is None:
            return False
        self.stats.responses += 1
        if entry.frame in self._frames_to_judge:
            self._answered_frames.add(entry.frame)
        if entry.sent_at >= 0:
            rtt = now - entry.sent_at
            self._srtt = rtt if self._srtt is None else 0.875 * self._srtt + 0.125 * rtt
        return True

    def tries(self, cid: int) -> int:
        """Searches sent for ``cid`` since it became pending (0 if not pending)."""
        entry = self._entries.get(cid)
        return entry.tries if entry is not None else 0

    def reset(self, now: float) -> int:
        """Beacon anomaly: every pending name is due now with its backoff restarted.

        Returns the number of names reset. The window still limits how fast they go out.
        """
        heap = []
        for cid, entry in self._entries.items():
            self._gen_seq += 1
            entry.gen = self._gen_seq
            entry.period = self.min_period
            heap.append((now, cid, entry.gen))
        heapq.heapify(heap)
        self._heap = heap
        self._next_send = min(self._next_send, now)
        self.stats.resets += 1
        return len(heap)

    # ------------------------------------------------------------------ timing
    @property
    def tick(self) -> float:
        """Time between bursts: twice the smoothed RTT, kept within [min_period, 1 s]."""
        if self._srtt is None:
            return self.min_period
        return min(MAX_TICK, max(self.min_period, 2.0 * self._srtt))

    def next_wakeup(self) -> float | None:
        """When :meth:`poll` has something to send next (None: nothing pending)."""
        heap = self._heap
        entries = self._entries
        while heap:
            due, cid, gen = heap[0]
            entry = entries.get(cid)
            if entry is not None and entry.gen == gen:
                return max(due, self._next_send)
            heapq.heappop(heap)  # stale: found, removed or reset since
        return None

    # ------------------------------------------------------------------ sending
    def poll(self, now: float) -> list[bytes]:
        """Datagram bodies (SEARCH messages, no VERSION header) to send now.

        At most ``int(window)`` bodies, each at most ``payload_limit`` bytes once the
        caller prepends its 16-byte VERSION header; oldest-due names first.
        """
        if now < self._next_send:
            return []
        self._judge()
        heap = self._heap
        entries = self._entries
        limit = self.payload_limit - _VERSION_SIZE
        frames: list[bytes] = []
        parts: list[bytes] = []
        size = 0
        sent: list[tuple[int, _Entry]] = []
        budget = max(1, int(self.window))
        frame_id = self._frame_seq
        while heap and heap[0][0] <= now:
            _due, cid, gen = heap[0]
            entry = entries.get(cid)
            if entry is None or entry.gen != gen:
                heapq.heappop(heap)
                continue
            msg = entry.msg
            if parts and size + len(msg) > limit:
                frames.append(b"".join(parts))
                parts, size = [], 0
                frame_id += 1
                if len(frames) >= budget:
                    break
            heapq.heappop(heap)
            parts.append(msg)
            size += len(msg)
            entry.frame = frame_id
            sent.append((cid, entry))
        if parts:
            frames.append(b"".join(parts))
        # never retry before an answer could be back (a loaded server or client answers late)
        tick = self.tick
        for cid, entry in sent:
            entry.tries += 1
            entry.sent_at = now
            heapq.heappush(heap, (now + max(entry.period, tick), cid, entry.gen))
            entry.period = min(entry.period * 2.0, self.max_period)
        if frames:
            self._frames_to_judge.update(range(self._frame_seq, self._frame_seq + len(frames)))
            self._frame_seq += len(frames)
            self._next_send = now + tick
            self.stats.datagrams += len(frames)
            self.stats.requests += len(sent)
        return frames

    def _judge(self) -> None:
        """Adapt the window to how many datagrams since the last judgement got an answer."""
        sent = len(self._frames_to_judge)
        if not sent:
            return
        answered = len(self._answered_frames)
        self._frames_to_judge = set()
        self._answered_frames = set()
        if answered >= sent - sent // 16:  # nearly all answered: the path is clear
            if self.window < self.threshold:
                self.window = min(self.window * 2.0, self.threshold)
            else:
                self.window = min(self.window + 1.0, float(self.max_window))
        elif answered < sent - sent // 8 and self.window > 1.0:  # answers missing: back off
            self.threshold = max(2.0, self.window / 2.0)
            self.window = max(1.0, self.window / 2.0)
            self.stats.window_cuts += 1
