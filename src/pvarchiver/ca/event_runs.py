"""Finding runs of monitor updates in a receive buffer, for consumers that handle them in bulk.

Why: when one IOC scan processes a thousand records, a gateway reads their
updates as a few buffers of identical 40-byte messages.  Walking them one by
one in Python (header unpack, dict lookup, handler call) costs about 1 us per
message, which on a 1,000-record burst was most of the gateway's added
latency.  Here the buffer is viewed as an ``(n, message size)`` numpy array
and the headers are checked all at once: the run is the longest prefix of
messages that are EVENT_ADD with the same payload size (so the same stride)
and belong to a batched subscription with a bulk id.  The consumer
(``gateway.fanout.FanOutTable``) gets the rows and the ids and never sees a
message outside the run, so anything unusual (another command, another size,
an extended header, an unknown subscription) still goes through the framer's
per-message path, in wire order.

Pure code (bytes in, arrays out), kept out of ``protocol`` so that clients
without a bulk consumer (the engine, the tools) do not import numpy for it.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

__all__ = ["BatchMap", "RunFinder"]

# Fewer messages than this are cheaper one by one (numpy's fixed cost is ~30-50 us a run).
RUN_MIN = 24
# At most this many messages per run: bounds the arrays, and a consumer flushes per run.
RUN_MAX = 4096


class BatchMap(dict[int, Any]):
    """``Framer.batched`` (subscription id -> handler) that counts its changes.

    :class:`RunFinder` keeps sorted numpy copies of the ids; the version tells
    it when to rebuild them without comparing the whole mapping per read.
    """

    version = 0

    def __setitem__(self, key: int, value: Any) -> None:
        self.version += 1
        super().__setitem__(key, value)

    def __delitem__(self, key: int) -> None:
        self.version += 1
        super().__delitem__(key)

    def pop(self, key: int, *default: Any) -> Any:  # type: ignore[override]
        self.version += 1
        return super().pop(key, *default)

    def clear(self) -> None:
        self.version += 1
        super().clear()


class RunFinder:
    """Looks for runs at a given offset; the bulk id of a handler is its ``batch_id``.

    A handler without a ``batch_id`` (or with -1) never takes part in a run.
    """

    def __init__(self, batched: BatchMap, run_min: int = RUN_MIN) -> None:
        self.batched = batched
        self.run_min = run_min  # shorter runs go message by message (tests lower it)
        self._version = -1
        self._next_rebuild = 0.0
        self._keys = np.zeros(0, np.uint32)
        self._ids = np.zeros(0, np.int64)

    def _rebuild(self) -> None:
        keys = np.array(sorted(self.batched), np.uint32)
        ids = [getattr(self.batched[int(k)], "batch_id", -1) for k in keys]
        self._keys = keys
        self._ids = np.array(ids, np.int64)
        self._version = self.batched.version

    def find(self, data: bytes, off: int, stride: int, end: int) -> tuple[int, Any, Any]:
        """``(n, rows, ids)``: the run of ``n`` messages of ``stride`` bytes at ``off``.

        ``rows`` is an ``(n, stride)`` uint8 view of ``data`` (no copy) and
        ``ids`` the bulk id of each message's subscription; ``n`` may be below
        ``run_min``, and then the caller handles the messages itself.
        """
        if self._version != self.batched.version:
            # while subscriptions come and go (a connect storm of 100,000 PVs) the sorted
            # ids are rebuilt at most every 10x the time a rebuild takes (<= 10 % of a
            # core); meanwhile there are no runs, every update goes message by message
            now = time.monotonic()
            if now < self._next_rebuild:
                return 0, None, None
            self._rebuild()
            self._next_rebuild = now + 10 * (time.monotonic() - now)
        k = min((end - off) // stride, RUN_MAX)
        keys = self._keys
        if k <= 0 or not len(keys) or stride & 7:  # (a CA peer always pads to 8 bytes)
            return 0, None, None
        rows = np.frombuffer(data, np.uint8, k * stride, off).reshape(k, stride)
        # CA messages are multiples of 8 bytes: the header as big-endian 32-bit words
        words = np.frombuffer(data, ">u4", k * stride >> 2, off).reshape(k, stride >> 2)
        ok = words[:, 0] == words[0, 0]  # command and payload size
        subids = words[:, 3].astype(np.uint32)
        pos = np.searchsorted(keys, subids)
        np.minimum(pos, len(keys) - 1, out=pos)
        ids = self._ids[pos]
        ok &= (keys[pos] == subids) & (ids >= 0)
        n = k if ok.all() else int(ok.argmin())
        return n, rows[:n], ids[:n]
