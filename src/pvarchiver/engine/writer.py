"""The engine's write loop: every ``secondsToBuffer`` all buffers go to the first store.

Samples are never lost on the way: a buffer that cannot be written (disk full) is put back in
front of the newer samples and retried at the next write; a PV whose stored type no longer
matches is paused with a clear status instead of writing into the wrong stream. Until a
buffer is on disk it stays readable through :meth:`Engine.read`, so retrieval sees recent
samples immediately.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from ..pb import PayloadInfo, PayloadType, Sample, year_of
from ..retrieval.model import Chunk, block_from_samples
from ..storage.columns import NUMPY_DTYPE
from ..storage.store import PlainPBStore, StoreError, TypeMismatchError
from .archived_pv import ArchivedPV, Buffer, SamplingMethod
from .budget import MemoryBudget

log = logging.getLogger(__name__)


DAY = 86400


class Engine:
    """All archived PVs of this process and the path of their samples into the STS."""

    def __init__(
        self,
        sts: PlainPBStore,
        memory_limit_bytes: int = 512 << 20,
        seconds_to_buffer: float = 10.0,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self.sts = sts
        self.budget = MemoryBudget(memory_limit_bytes)
        self.seconds_to_buffer = max(1.0, seconds_to_buffer)
        self.clock = clock or time.time
        self.pvs: dict[str, ArchivedPV] = {}
        self._in_flight: dict[str, Buffer] = {}
        self._last_daily: dict[str, float] = {}
        self._write_lock = threading.Lock()

    def add_pv(
        self,
        name: str,
        ptype: PayloadType,
        method: SamplingMethod = SamplingMethod.MONITOR,
        period: float = 1.0,
    ) -> ArchivedPV:
        pv = ArchivedPV(name, ptype, self.budget, method, period, self.clock)
        self.pvs[name] = pv
        return pv

    # ------------------------------------------------------------------ writing
    # A write cycle has three steps. Taking the buffers and putting failed ones back touch
    # state that ``on_event`` mutates, so they run on the event loop (or with no events
    # flowing); only the disk writes in between run in a worker thread.

    def take_all(self) -> dict[str, Buffer]:
        """Swap out every PV's buffer (event-loop side) and mark it in flight for readers."""
        now = self.clock()
        taken: dict[str, Buffer] = {}
        for name, pv in list(self.pvs.items()):
            if pv.paused:
                continue  # its samples stay in memory; the store would refuse them
            daily = None
            if now - self._last_daily.get(name, 0) >= DAY and pv.field_values:
                daily = pv.field_values
            if not len(pv.buffer):
                continue
            buf = pv.take_buffer(daily)
            if daily:
                self._last_daily[name] = now
            self._in_flight[name] = buf
            taken[name] = buf
        return taken

    def write_buffers(self, taken: dict[str, Buffer]) -> tuple[int, dict[str, Exception]]:
        """Write buffers to the STS (worker-thread side); returns (samples, failures)."""
        written = 0
        failed: dict[str, Exception] = {}
        with self._write_lock:
            for name, buf in taken.items():
                try:
                    written += self._write(self.pvs[name], buf)
                except Exception as e:
                    failed[name] = e
        return written, failed

    def finish(self, taken: dict[str, Buffer], failed: dict[str, Exception]) -> None:
        """Release written buffers, put failed ones back in front (event-loop side)."""
        for name, buf in taken.items():
            pv = self.pvs[name]
            self._in_flight.pop(name, None)
            e = failed.get(name)
            if e is None:
                pv.release(buf)
                continue
            pv.metrics.write_errors += 1
            pv.metrics.last_write_error = str(e)
            if isinstance(e, TypeMismatchError):
                pv.paused = True
                pv.status_message = str(e)
                log.error("%s: %s; archiving paused, samples kept in memory", name, e)
            elif isinstance(e, StoreError | OSError):
                log.error("%s: write failed, will retry: %s", name, e)
            else:
                log.error("%s: unexpected write failure, will retry", name, exc_info=e)
            pv.requeue(buf)

    def write_all(self) -> int:
        """One whole write cycle in the calling thread: for tests and the final flush, when
        no events are arriving any more."""
        taken = self.take_all()
        written, failed = self.write_buffers(taken)
        self.finish(taken, failed)
        return written

    def _write(self, pv: ArchivedPV, buf: Buffer) -> int:
        """Rows without fieldvalues go through the vectorised encoder in runs; the few rows
        with fields (reconnects, field changes) go through the general path, in order."""
        dtype = NUMPY_DTYPE.get(pv.ptype)
        if dtype is None:
            r = self.sts.append(pv.name, pv.ptype, buf.samples())
            pv.metrics.samples_written += r.written
            return r.written
        written = 0
        special = sorted(set(buf.fields) | buf.actual_change)
        secs, nanos, vals, sev, stat = (np.asarray(c) for c in buf.columns())
        start = 0
        for stop in [*special, len(buf)]:
            if stop > start:
                r = self.sts.append_columns(
                    pv.name,
                    pv.ptype,
                    secs[start:stop].astype(np.int64),
                    nanos[start:stop].astype(np.int64),
                    vals[start:stop].astype(dtype),
                    sev[start:stop].astype(np.int32),
                    stat[start:stop].astype(np.int32),
                )
                written += r.written
            if stop < len(buf):
                written += self.sts.append(pv.name, pv.ptype, [buf.sample_at(stop)]).written
            start = stop + 1
        pv.metrics.samples_written += written
        return written

    async def run(self, stop: asyncio.Event) -> None:
        """Write every ``seconds_to_buffer`` until ``stop`` is set, then flush everything."""
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), timeout=self.seconds_to_buffer)
            except TimeoutError:
                pass
            taken = self.take_all()
            try:
                _written, failed = await asyncio.to_thread(self.write_buffers, taken)
            except BaseException:
                self.finish(taken, dict.fromkeys(taken, RuntimeError("write cycle aborted")))
                raise
            self.finish(taken, failed)

    # ------------------------------------------------------------------ reading
    def names(self) -> list[str]:
        return list(self.pvs)

    def type_of(self, pvname: str) -> PayloadType | None:
        pv = self.pvs.get(pvname)
        return pv.ptype if pv is not None else None

    def read(self, pvname: str, start: tuple[int, int], end: tuple[int, int]) -> Iterator[Chunk]:
        """Unwritten samples (in flight to disk, then buffered), for the retrieval merge.

        Rows are in time order, so the range is found by bisection and only the rows in it
        (plus the one before ``start``) become Sample objects.
        """
        pv = self.pvs.get(pvname)
        if pv is None:
            return
        # snapshot both buffers' rows (list copies are atomic under the GIL)
        parts = [b for b in (self._in_flight.get(pvname), pv.buffer) if b is not None and len(b)]
        picked: list[Sample] = []
        before: Sample | None = None
        for buf in parts:
            rows = list(buf.rows)
            i = bisect.bisect_left(rows, start, key=lambda r: (r[0], r[1]))
            j = bisect.bisect_right(rows, end, key=lambda r: (r[0], r[1]))
            if i > 0:
                before = buf.sample_at(i - 1)
            picked.extend(buf.sample_at(k) for k in range(i, min(j, len(rows))))
        samples = ([before] if before is not None else []) + picked
        # one chunk per year, as a chunk's samples share the header's year
        by_year: dict[int, list[Sample]] = {}
        for s in samples:
            by_year.setdefault(year_of(s.secs), []).append(s)
        for year, ss in sorted(by_year.items()):
            yield Chunk(PayloadInfo(pv.ptype, pvname, year), block_from_samples(ss, pv.ptype))
