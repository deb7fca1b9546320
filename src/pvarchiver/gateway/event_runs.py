"""The gateway's framer: upstream updates handed over a whole read, and runs of them in bulk.

Why: one upstream read holds hundreds of updates (1,000 records on one scan
arrive in one or two reads), and the gateway fans them out to many clients,
which is cheap done for the whole read at once (the message bytes are copied
with only the subscription id changed) and expensive one update at a time.
:class:`BulkFramer` is the CA client's framer for the gateway (``CAClient(...,
framer=...)``): an update of an :class:`~.fanout.UpdateHandler` subscription
is not dispatched on its own but collected, and ``on_batch(buf, items)``
(``fanout.make_fan_out``) gets every consecutive stretch of them in one call,
``items`` being ``(handler, header_offset, end_offset, data_type, count)`` in
arrival order.  Any other message first delivers the stretch collected so far,
so the order of all callbacks stays the order on the wire.  With no such
subscription on a circuit it is the plain framer.

Runs: walking a burst one message at a time in Python (header unpack, dict
lookup, handler call) costs about 1 us per message, which on a 1,000-record
burst was most of the gateway's added latency.  So where a collected update
starts, :class:`RunFinder` views the buffer as an ``(n, message size)`` numpy
array and checks the headers all at once: the run is the longest prefix of
messages that are EVENT_ADD with the same payload size (so the same stride)
and belong to a subscription with a bulk id (the handler's ``batch_id``, its
row in ``fanout.FanOutTable``).  A run of at least ``run_min`` goes to
``on_run(buf, offset, rows, ids)`` as a view of the receive buffer; the
consumer never sees a message outside the run, so anything unusual (another
command, another size, an extended header, an unknown subscription) still
goes through the per-message path, in wire order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import numpy as np

from ..ca.protocol import EXT_HEADER, HEADER, EventHandler, Framer
from .fanout import Item, UpdateHandler

__all__ = ["BatchMap", "BulkFramer", "RunFinder"]

# Fewer messages than this are cheaper one by one (numpy's fixed cost is ~30-50 us a run).
RUN_MIN = 24
# At most this many messages per run: bounds the arrays, and a consumer flushes per run.
RUN_MAX = 4096

RunConsumer = Callable[[bytes, int, np.ndarray, np.ndarray], None]
BatchConsumer = Callable[[bytes, list[Item]], None]


class BatchMap(dict[int, UpdateHandler]):
    """``BulkFramer.batched`` (subscription id -> handler) that counts its changes.

    :class:`RunFinder` keeps sorted numpy copies of the ids; the version tells
    it when to rebuild them without comparing the whole mapping per read.
    """

    version = 0

    def __setitem__(self, key: int, value: UpdateHandler) -> None:
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

    A handler whose ``batch_id`` is -1 never takes part in a run.
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
        ids = [self.batched[int(k)].batch_id for k in keys]
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


class BulkFramer(Framer):
    """The CA client's framer for the gateway (see the module docstring).

    ``on_run`` None: no runs, every collected update goes to ``on_batch``.
    """

    __slots__ = ("batched", "finder", "on_batch", "on_run")

    def __init__(self, on_batch: BatchConsumer, on_run: RunConsumer | None = None) -> None:
        super().__init__()
        self.batched = BatchMap()
        self.on_batch = on_batch
        self.on_run = on_run
        self.finder = RunFinder(self.batched) if on_run is not None else None

    def add_handler(self, subid: int, handler: EventHandler) -> None:
        super().add_handler(subid, handler)
        if isinstance(handler, UpdateHandler):
            self.batched[subid] = handler

    def remove_handler(self, subid: int) -> None:
        super().remove_handler(subid)
        self.batched.pop(subid, None)

    def dispatch(self, data: bytes) -> int:
        if not self.batched:
            return super().dispatch(data)
        end_all = len(data)
        off = 0
        unpack = HEADER.unpack_from
        events = self.events
        batched = self.batched
        other = self.other
        finder = self.finder
        retry_at = 0  # no run is looked for before this offset (the last try found none)
        batch: list[Item] = []
        while end_all - off >= 16:
            cmd, size, dt, cnt, p1, p2 = unpack(data, off)
            start = off + 16
            if size == 0xFFFF and cnt == 0:
                if end_all - off < 24:
                    break
                size, cnt = EXT_HEADER.unpack_from(data, start)
                start += 8
            elif cmd == 1 and size:
                tag = batched.get(p2)
                if tag is not None:
                    end = start + size
                    if end > end_all:
                        break
                    if finder is not None and off >= retry_at:
                        n, rows, ids = finder.find(data, off, 16 + size, end_all)
                        if n >= finder.run_min:
                            if batch:
                                self.on_batch(data, batch)
                                batch = []
                            assert self.on_run is not None  # there is a finder
                            self.on_run(data, off, rows, ids)
                            off += n * (16 + size)
                            continue
                        retry_at = off + (n + 1) * (16 + size)
                    batch.append((tag, off, end, dt, cnt))
                    off = end
                    continue
            end = start + size
            if end > end_all:
                break
            if batch:
                self.on_batch(data, batch)
                batch = []
            if cmd == 1 and size:
                handler = events.get(p2)
                if handler is not None:
                    handler(data, start, cnt)
            else:
                other(cmd, dt, cnt, p1, p2, data[start:end])
            off = end
        if batch:
            self.on_batch(data, batch)
        return off
