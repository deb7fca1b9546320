"""Fan-out of upstream updates: per message, and for a whole run at once.

Each upstream DBR_TIME subscription of an ``UpstreamPV`` is an
:class:`UpdateHandler`, which the gateway's framer (``event_runs.BulkFramer``)
recognises: it collects the updates of a read and hands them to
:func:`make_fan_out`'s consumer, and runs of same-size updates to
:meth:`FanOutTable.consume_run`.

Runs.  A gateway's burst (one IOC scan of a thousand records) is a few reads of
identical small messages.  The per-message path (:func:`make_fan_out`) does per
update what ``UpstreamPV``'s handler does: copy the payload into a new
``PVState``, compare alarm and value with the last one, count, then collect
the update for ``post_batch``.  At ~5 us per upstream update that made a
1,000-record burst take ~5 ms, and that queue was the gateway's added latency.
Here the same work is done on numpy rows:

* every upstream DBR_TIME subscription of a connected PV has a *bulk id*
  (its row in this table), which the framer knows through the handler's
  ``batch_id`` (``event_runs.RunFinder`` finds the runs);
* the last message of each row is kept in ``last`` (messages up to
  :data:`WIDTH` bytes: scalars and short strings), so alarm and value changes
  are two vectorised comparisons, within a run too (a PV twice in one run is
  compared with its previous update in the run);
* the PV's ``state`` is rebuilt from ``last`` only when something reads it
  (``dirty``), and a state set by the per-message path marks the row
  ``stale`` so it is copied back before the next comparison;
* every update whose row is not ``ok`` (the PV is not valid yet, a
  subscriber needs another type or count, another message size, the
  ``-archive`` stream) leaves the run and goes through the per-message path
  at its place, so the order per client and every side effect stay those of
  that path (``tests/test_gw_runs.py`` compares the two byte for byte).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from ..ca import dbr
from ..ca import protocol as P
from ..ca.dbr_encode import PVState
from .fanplan import FanPlan, fan_plan, fan_send, post_batch

if TYPE_CHECKING:
    from .upstream import UpstreamPV

__all__ = ["WIDTH", "FanOutTable", "Item", "UpdateHandler", "make_fan_out"]

log = logging.getLogger(__name__)

# Upstream events between early flushes of the downstream circuits: a burst (1,000 records on
# one scan arrive in one or two reads) then leaves in pieces while the rest is fanned out,
# instead of all at once after the whole read (see docs/gateway.md, "Measured").
FLUSH_EVERY = 128
# The same for the batch path (make_fan_out): forwarded and flushed in runs of at most this
# many upstream events; 256 also keeps a run's ~100 KB of output in the CPU cache (a
# 1,000-event run is slower per event).
BATCH_FLUSH = int(os.environ.get("PVARCHIVER_GW_BATCH", "256"))

WIDTH = 64  # widest message (header + payload) kept per row; wider ones stay per-message
# Updates of a run sent (one write per client) before the rest is made: 1,024 (a whole
# 1,000-record burst at once) gave a lower p50 and p99 than 256 in bench_gateway.py (one
# write per client per burst instead of four; planned runs no longer gain from smaller
# arrays staying in the cache)
RUN_FLUSH = int(os.environ.get("PVARCHIVER_GW_RUN_BATCH", "1024"))
# a run whose eligible stretches average fewer updates than this goes message by message
MIN_SEGMENT = 16
PLAN_BYTES = 4 << 20  # fan-out plans kept for runs seen before (periodic scans repeat them)
_NOBODY = object()  # a cached plan saying: no subscriber takes any of these updates


class UpdateHandler:
    """The raw DBR_TIME subscriber of one upstream PV (a ``ca.client.RawSubscriber``).

    ``update(buf, offset, count)`` takes one update into the PV's state and
    counters and returns the mask to post it with (0: none); it is a closure
    made by the PV (``UpstreamPV._time_handler``), the per-update hot path.
    Called as a subscriber the handler also posts; the gateway's framer instead
    collects a read's updates for :func:`make_fan_out` (which reads ``pv``,
    ``head`` and ``elem``) and runs of them for :class:`FanOutTable`
    (``batch_id``: the PV's row there, -1 for none, e.g. the ``-archive``
    DBE_LOG stream, which ``log_only`` marks).
    """

    __slots__ = ("batch_id", "elem", "gw", "head", "log_only", "native", "pv", "update")

    def __init__(
        self,
        pv: UpstreamPV,
        gw: Any,
        native: int,
        update: Callable[[bytes, int, int], int],
        log_only: bool = False,
    ) -> None:
        self.pv = pv
        self.gw = gw  # the Gateway: its counters and server
        self.native = native
        self.head = dbr.data_size(dbr.time_type(native), 0)  # DBR_TIME header bytes
        self.elem = dbr.element_size(native)
        self.update = update
        self.log_only = log_only
        self.batch_id = -1

    def __call__(self, buf: bytes, offset: int, count: int, /) -> None:
        mask = self.update(buf, offset, count)
        if mask:
            self.pv.post(mask)
            if not self.log_only and not self.gw.client_events % FLUSH_EVERY:
                self.gw.server.flush_now()


# one update collected by the framer: (handler, header offset, end offset, DBR type, count)
Item = tuple[UpdateHandler, int, int, int, int]


def make_fan_out(gw: Any, batch_flush: int = BATCH_FLUSH) -> Callable[[bytes, list[Item]], None]:
    """The gateway's per-message consumer of collected updates (``BulkFramer.on_batch``).

    Why: one upstream read holds hundreds of updates (1,000 records on one scan
    arrive in one or two reads); posting them one by one costs ~300 ns per
    forwarded event in Python, which made the burst's fan-out the gateway's
    latency.  Here each update still goes through its handler's ``update`` (the
    cached state stays current, masks and counters as before), then every run of
    updates whose PV forwards the upstream message unchanged to all its
    subscribers goes to :func:`post_batch` at once.  Anything else (another DBR
    type or count asked for, an extended header, a padding the server would not
    produce) is posted one by one at its place, after the run before it, so no
    subscriber sees events out of order.  The circuits are flushed after every
    ``batch_flush`` events and at the end of a large read, so the first updates of a
    burst leave while the rest are made.
    """
    pvs: list[UpstreamPV] = []
    offs: list[int] = []
    ends: list[int] = []
    masks: list[int] = []

    def flush_now() -> None:
        gw.server.flush_now()

    def run(buf: bytes) -> None:
        post_batch(buf, pvs, offs, ends, masks)
        pvs.clear()
        offs.clear()
        ends.clear()
        masks.clear()

    def consume(buf: bytes, items: list[Item]) -> None:
        for handler, off, end, dt, cnt in items:
            mask = handler.update(buf, off + 16, cnt)
            if not mask:
                continue
            pv = handler.pv
            if (
                dt == pv.fast_type
                and cnt <= pv.fast_max
                and (cnt == pv.fast_count or not pv.fast_count)
                and end - off - 16 == (handler.head + cnt * handler.elem + 7) & ~7
            ):
                pvs.append(pv)
                offs.append(off)
                ends.append(end)
                masks.append(mask)
                if len(pvs) >= batch_flush:
                    run(buf)
                    flush_now()
                continue
            if pvs:
                run(buf)
            pv.post(mask)
        if pvs:
            run(buf)
        if len(items) >= 64:  # a burst: its tail leaves now; a few events wait for the
            flush_now()  # end of the loop turn, as on the per-event path (fewer writes)

    def consumer(buf: bytes, items: list[Item]) -> None:
        try:
            consume(buf, items)
        except Exception:  # raised out of the read callback it would close the upstream circuit
            log.exception("gateway fan-out of %d upstream events failed", len(items))
            pvs.clear()
            offs.clear()
            ends.clear()
            masks.clear()

    return consumer


class FanOutTable:
    """Rows of per-subscription state for the bulk path; one per gateway."""

    dirty: bytearray  # by bulk id: the PV's state must be rebuilt from ``last``
    stale: bytearray  # by bulk id: ``last`` must be copied back from the PV's state

    def __init__(
        self,
        gw: Any,
        per_message: Callable[[bytes, list[Item]], None],
        batch_flush: int = RUN_FLUSH,
    ) -> None:
        self.gw = gw
        self.per_message = per_message  # the make_fan_out consumer, for updates out of a run
        self.batch_flush = batch_flush
        self.handlers: list[UpdateHandler | None] = []  # by bulk id; None when free
        self.fast_rows: list[bytes] = []  # by bulk id: the PV's post_batch subscriber rows
        self._free: list[int] = []
        self.cap = 0
        self._alloc(256)
        # plans by (bulk ids, masks) of a run; dropped whenever a row changes
        self._plans: dict[bytes, FanPlan | object] = {}
        self._plan_bytes = 0
        self.plan_hits = 0

    # ------------------------------------------------------------ rows
    def _alloc(self, cap: int) -> None:
        """(Re)allocate every array for ``cap`` rows, keeping what the old ones held."""
        old = self.cap

        def grow(arr: Any, shape: tuple[int, ...], dtype: Any) -> Any:
            new = np.zeros(shape, dtype)
            if old:
                new[:old] = arr
            return new

        # bytearrays with numpy views: Python reads one flag in ~30 ns (the state getter),
        # numpy sets thousands at once
        dirty = bytearray(cap)
        stale = bytearray(b"\1" * cap)
        if old:
            dirty[:old] = self.dirty
            stale[:old] = self.stale
        self.dirty, self.stale = dirty, stale
        self.dirty_np = np.frombuffer(dirty, np.uint8)
        self.stale_np = np.frombuffer(stale, np.uint8)
        self.ok = grow(getattr(self, "ok", None), (cap,), bool)
        self.kind = grow(getattr(self, "kind", None), (cap,), np.int64)  # dtype << 16 | count
        self.length = grow(getattr(self, "length", None), (cap,), np.int64)
        self.value_mask = grow(getattr(self, "value_mask", None), (cap,), np.int64)
        self.events = grow(getattr(self, "events", None), (cap,), np.int64)
        self.posted = grow(getattr(self, "posted", None), (cap,), np.int64)
        self.subscribers = grow(getattr(self, "subscribers", None), (cap,), np.int64)
        self.mark = grow(getattr(self, "mark", None), (cap,), np.int64)  # scratch: repeats
        self.value_start = grow(getattr(self, "value_start", None), (cap,), np.int64)
        self.value_end = grow(getattr(self, "value_end", None), (cap,), np.int64)
        self.last = grow(getattr(self, "last", None), (cap, WIDTH), np.uint8)
        self.handlers.extend([None] * (cap - old))
        self.fast_rows.extend([b""] * (cap - old))
        self._free.extend(range(cap - 1, old - 1, -1))
        self.cap = cap

    def register(self, handler: UpdateHandler, native: int, count: int, value_mask: int) -> int:
        """A row for a new upstream DBR_TIME subscription (``handler.pv`` is its PV)."""
        if not self._free:
            self._alloc(self.cap * 2)
        bid = self._free.pop()
        head = dbr.data_size(dbr.time_type(native), 0)
        size = head + count * dbr.element_size(native)
        self._drop_plans()
        self.handlers[bid] = handler
        self.kind[bid] = dbr.time_type(native) << 16 | count
        self.length[bid] = 16 + ((size + 7) & ~7)
        self.value_mask[bid] = value_mask
        self.value_start[bid], self.value_end[bid] = 16 + head, 16 + size
        self.events[bid] = self.posted[bid] = 0
        self.dirty[bid] = 0
        self.stale[bid] = 1
        self.ok[bid] = False
        return bid

    def release(self, bid: int) -> tuple[int, int]:
        """Free a row (its subscription was cancelled); returns its (events, posted) counts.

        The PV reads its state first (:meth:`state_of`), so the row's newest value is not lost.
        """
        handler = self.handlers[bid]
        if handler is None:
            return 0, 0
        self._drop_plans()
        self.handlers[bid] = None
        self.fast_rows[bid] = b""
        self.ok[bid] = False
        self.dirty[bid] = 0
        counts = int(self.events[bid]), int(self.posted[bid])
        self.events[bid] = self.posted[bid] = 0
        self._free.append(bid)
        return counts

    def refresh(self, bid: int) -> None:
        """Recompute whether the row's updates may take the bulk path."""
        handler = self.handlers[bid]
        if handler is None:
            return
        self._drop_plans()  # the subscribers (or rights) changed: every plan may be wrong
        pv = handler.pv
        dt, cnt = divmod(int(self.kind[bid]), 1 << 16)
        if not pv.has_readers:  # no readable subscriber: the update only changes the state
            subs_ok = True
        else:
            subs_ok = pv.fast_type == dt and cnt <= pv.fast_max and pv.fast_count in (0, cnt)
        self.ok[bid] = bool(pv.valid and subs_ok and self.length[bid] <= WIDTH)
        self.fast_rows[bid] = pv.fast_rows  # (empty, as fast_subs, without readers)
        self.subscribers[bid] = len(pv.fast_subs)

    def state_of(self, bid: int, old: PVState | None) -> PVState | None:
        """The PV's state rebuilt from the row's last message (``dirty``: something reads
        it), with the metadata of ``old``, the state it had; the row is clean again."""
        handler = self.handlers[bid]
        self.dirty[bid] = 0
        if handler is None:
            return old
        cnt = int(self.kind[bid]) & 0xFFFF
        payload = self.last[bid, 16 : 16 + handler.head + cnt * handler.elem].tobytes()
        return PVState(handler.native, cnt, payload, old.meta if old is not None else None)

    def _restore(self, bids: np.ndarray) -> None:
        """Copy states set by the per-message path back into their rows."""
        for bid in np.unique(bids).tolist():
            handler = self.handlers[bid]
            assert handler is not None
            state = handler.pv.state  # a stale row is never dirty: no rebuild here
            assert state is not None
            payload = state.time_payload
            self.last[bid, 16 : 16 + len(payload)] = np.frombuffer(payload, np.uint8)
            self.stale[bid] = 0

    # ------------------------------------------------------------ plans
    def _keep(self, key: bytes, plan: FanPlan | object) -> None:
        """Remember a plan; the oldest go once they hold more than PLAN_BYTES."""
        size = len(key) + (plan.nbytes if isinstance(plan, FanPlan) else 0)
        plans = self._plans
        while plans and self._plan_bytes + size > PLAN_BYTES:
            old_key = next(iter(plans))
            old = plans.pop(old_key)
            self._plan_bytes -= len(old_key) + (old.nbytes if isinstance(old, FanPlan) else 0)
        plans[key] = plan
        self._plan_bytes += size

    def _drop_plans(self) -> None:
        self._plans.clear()
        self._plan_bytes = 0

    # ------------------------------------------------------------ runs
    def consume_run(self, buf: bytes, off: int, rows: np.ndarray, bids: np.ndarray) -> None:
        """``Framer.on_run``: ``rows`` are messages at ``off`` of ``buf``, ``bids`` their rows."""
        try:
            self._consume(buf, off, rows, bids)
        except Exception:  # raised into the read callback it would close the upstream circuit
            log.exception("gateway fan-out of a run of %d upstream events failed", len(rows))

    def _consume(self, buf: bytes, off: int, rows: np.ndarray, bids: np.ndarray) -> None:
        n, stride = rows.shape
        kind = rows.view(">u4")[:, 1]  # header bytes 4-8: data type << 16 | count
        good = self.ok[bids] & (kind == self.kind[bids]) & (self.length[bids] == stride)
        n_good = int(good.sum())
        if n_good < n and n_good < MIN_SEGMENT * (n - n_good + 1):
            # mostly short stretches between updates that must leave the run (e.g. many
            # PVs whose clients want another type): cheaper all message by message
            items = [
                (self.handlers[b], off + i * stride, off + (i + 1) * stride, k >> 16, k & 0xFFFF)
                for i, (b, k) in enumerate(zip(bids.tolist(), kind.tolist(), strict=True))
            ]
            self.per_message(buf, items)
            return
        start = 0
        while start < n:
            if good[start:].all():
                stop = n
            else:
                stop = start + int(good[start:].argmin())
            if stop > start:
                self._bulk(buf, off + start * stride, rows[start:stop], bids[start:stop])
            if stop < n:  # one update the bulk path cannot take: the per-message path, in place
                handler = self.handlers[int(bids[stop])]
                assert handler is not None  # a row in a run is live
                at = off + stop * stride
                dt, cnt = divmod(int(kind[stop]), 1 << 16)
                self.per_message(buf, [(handler, at, at + stride, dt, cnt)])
                # it may have changed rows (a first value makes the PV valid)
                good[stop + 1 :] &= self.ok[bids[stop + 1 :]]
            start = stop + 1

    def _bulk(self, buf: bytes, off: int, rows: np.ndarray, bids: np.ndarray) -> None:
        n, stride = rows.shape
        stale = self.stale_np[bids] != 0
        if stale.any():
            self._restore(bids[stale])
        last = self.last
        index = np.arange(n)
        self.mark[bids] = index
        if (self.mark[bids] == index).all():  # each PV once in the run (a burst)
            prev = last[bids, :stride]
            last[bids, :stride] = rows
            self.events[bids] += 1
        else:  # compare each repeat with the PV's previous update in the run
            order = np.argsort(bids, kind="stable")
            sorted_bids = bids[order]
            first = np.ones(n, bool)
            first[1:] = sorted_bids[1:] != sorted_bids[:-1]
            prev_sorted = np.empty((n, stride), np.uint8)
            prev_sorted[first] = last[sorted_bids[first], :stride]
            again = np.flatnonzero(~first)
            prev_sorted[again] = rows[order[again - 1]]
            prev = np.empty_like(prev_sorted)
            prev[order] = prev_sorted
            final = np.ones(n, bool)
            final[:-1] = first[1:]
            last[sorted_bids[final], :stride] = rows[order[final]]
            np.add.at(self.events, bids, 1)
        self.dirty_np[bids] = 1
        differ = rows != prev
        alarm = differ[:, 16:20].any(axis=1)
        v0, v1 = self.value_start[bids], self.value_end[bids]
        begin, end = int(v0[0]), int(v1[0])
        if (v0 == begin).all() and (v1 == end).all():  # one record type: one value column range
            value = differ[:, begin:end].any(axis=1)
        else:
            column = np.arange(stride)
            value = (differ & (column >= v0[:, None]) & (column < v1[:, None])).any(axis=1)
        vmask = self.value_mask[bids]
        masks = np.where(alarm, P.DBE_ALARM | np.where(value, vmask, 0), vmask)
        gw = self.gw
        gw.client_events += n
        gw.client_posts += n
        blobs = self.fast_rows
        nsubs = self.subscribers[bids]
        offs = off + index * stride
        length = np.full(n, stride, np.int64)
        # the messages as int64 rows, when 8-aligned in buf (CA messages are 8-byte multiples)
        words = rows.reshape(-1).view(np.int64).reshape(n, -1) if not off & 7 else None
        step = self.batch_flush
        flush_now = gw.server.flush_now
        plans = self._plans
        for a in range(0, n, step):
            b = min(n, a + step)
            part = bids[a:b]
            key = part.tobytes() + masks[a:b].astype(np.uint8).tobytes()
            plan = plans.get(key)
            if plan is None:
                blob = b"".join([blobs[x] for x in part.tolist()])
                plan = fan_plan(blob, nsubs[a:b], masks[a:b]) or _NOBODY
                self._keep(key, plan)
            else:
                self.plan_hits += 1
            flushing = b < n or n >= 64
            if isinstance(plan, FanPlan):
                msgs = words[a:b] if words is not None else None
                pvs = _PVs(self.handlers, part)
                fan_send(plan, buf, offs[a:b], length[a:b], pvs, msgs, flushing)
                np.add.at(self.posted, part, plan.counts)
            if flushing:
                flush_now()


class _PVs:
    """The PV of each update of a run, looked up only if a held circuit needs one."""

    __slots__ = ("bids", "handlers")

    def __init__(self, handlers: list[UpdateHandler | None], bids: np.ndarray) -> None:
        self.handlers = handlers
        self.bids = bids

    def __getitem__(self, i: int) -> UpstreamPV:
        handler = self.handlers[int(self.bids[i])]
        assert handler is not None
        return handler.pv

    def __len__(self) -> int:
        return len(self.bids)
