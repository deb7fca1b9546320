"""The engine's write loop: every ``secondsToBuffer`` all buffers go to each PV's first store.

Samples are never lost on the way: a buffer that cannot be written (disk full) is put back in
front of the newer samples and retried at the next write; a PV whose stored type no longer
matches is paused with a clear status instead of writing into the wrong stream. Until a
buffer is on disk it stays readable through :meth:`Engine.read`, so retrieval sees recent
samples immediately.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from ..pb import PayloadInfo, PayloadType, Sample, year_of
from ..storage.batch import Batch
from ..storage.chains import StoreChains
from ..storage.chunk import Chunk
from ..storage.columns import NUMPY_DTYPE, block_from_samples
from ..storage.store import PlainPBStore, StoreError, TypeMismatchError
from .archived_pv import ROW_DTYPES, VALUE_TYPECODES, ArchivedPV, Buffer, SamplingMethod
from .budget import MemoryBudget
from .journal import Journal
from .metrics import WriteTimer
from .store_health import StoreWriteHealth

log = logging.getLogger(__name__)


DAY = 86400
#: rows per vectorised batch write: bounds the temporary memory of one encode
BATCH_ROWS = 200_000


#: GIL switch interval while a write cycle runs (CPython's default is 5 ms)
WRITER_SWITCH_INTERVAL = 0.0002


@contextlib.contextmanager
def _short_gil_switches() -> Iterator[None]:
    """Let the writer thread get the GIL back quickly after each file syscall.

    Why: every stat/open/write/close releases the GIL, and while the event loop is busy
    receiving 200,000 events/s the writer then waits for the next forced switch (5 ms by
    default) to continue: 2,000 PVs x 5 syscalls took 12 s of wall time for one write
    cycle. The interval only matters while two threads want the GIL, and it is restored.
    """
    old = sys.getswitchinterval()
    sys.setswitchinterval(min(old, WRITER_SWITCH_INTERVAL))
    try:
        yield
    finally:
        sys.setswitchinterval(old)


def sync_filesystems() -> None:
    """Flush written file data to disk (where the platform has a call for it: on Windows the
    journal's power-cut bound is then the STS's own, see docs/explanation.md)."""
    sync = getattr(os, "sync", None)
    if sync is not None:
        sync()


def _chunks(names: list[str], taken: dict[str, Buffer]) -> Iterator[list[str]]:
    """Split PVs into batches of about BATCH_ROWS rows (a PV is never split)."""
    chunk: list[str] = []
    rows = 0
    for name in names:
        chunk.append(name)
        rows += len(taken[name])
        if rows >= BATCH_ROWS:
            yield chunk
            chunk, rows = [], 0
    if chunk:
        yield chunk


class Engine:
    """All archived PVs of this process and the path of their samples into their first
    stores (``sts``, the default chain's first, for every PV unless ``chains`` says other)."""

    def __init__(
        self,
        sts: PlainPBStore,
        memory_limit_bytes: int = 512 << 20,
        seconds_to_buffer: float = 10.0,
        clock: Callable[[], float] | None = None,
        journal: Journal | None = None,
        chains: StoreChains | None = None,
    ) -> None:
        self.sts = sts
        #: each PV's stores; asked every write cycle, so a changed chain applies at once
        self.chains = chains or StoreChains.fixed([sts])
        #: write-ahead journal of every stored sample (None: off); see journal.py
        self.journal = journal
        self._sealed: int | None = None  # journal segment sealed by the last take_all
        self._held: list[str] = []  # paused PVs whose samples stay in memory
        self.budget = MemoryBudget(memory_limit_bytes)
        self.seconds_to_buffer = max(1.0, seconds_to_buffer)
        self.clock = clock or time.time
        #: PVs whose writes into the STS are failing now, and since when (getPVStatus, health)
        self.write_health = StoreWriteHealth(sts.name, self.seconds_to_buffer)
        self.pvs: dict[str, ArchivedPV] = {}
        self._in_flight: dict[str, Buffer] = {}
        self._last_daily: dict[str, float] = {}
        self._write_lock = threading.Lock()
        self.write_timer = WriteTimer()  # the write-latency metric and secondsConsumedByWritter

    def add_pv(
        self,
        name: str,
        ptype: PayloadType,
        method: SamplingMethod = SamplingMethod.MONITOR,
        period: float = 1.0,
    ) -> ArchivedPV:
        pv = ArchivedPV(name, ptype, self.budget, method, period, self.clock)
        if self.journal is not None:
            pv.attach_journal(self.journal)
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
        held: list[str] = []
        if self.journal is not None:
            # everything journaled so far is in the buffers taken now (or held): the
            # segment can go once they are written
            self._sealed = self.journal.rotate()
        # on the event loop: nothing adds or removes PVs meanwhile, so no copy of the items
        for name, pv in self.pvs.items():
            if pv.paused:
                if len(pv.buffer):
                    held.append(name)
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
        self._held = held
        return taken

    def write_buffers(self, taken: dict[str, Buffer]) -> tuple[int, dict[str, Exception]]:
        """Write buffers to the STS (worker-thread side); returns (samples, failures)."""
        with self._write_lock, _short_gil_switches():
            t0 = time.perf_counter()
            written, failed = self._write_buffers(taken)
            if taken:
                self.write_timer.record(time.perf_counter() - t0, written)
            return written, failed

    def _write_buffers(self, taken: dict[str, Buffer]) -> tuple[int, dict[str, Exception]]:
        written = 0
        failed: dict[str, Exception] = {}
        by_store: dict[int, tuple[PlainPBStore, dict[str, Buffer]]] = {}
        chains = self.chains
        for name, buf in taken.items():
            try:
                store = chains.first(name)
            except StoreError as e:  # its typeinfo names a store that cannot be opened
                failed[name] = e
                continue
            if store.is_blackhole:
                # the AA's blackhole as a first store: samples are accepted and discarded
                written += len(buf)
                continue
            by_store.setdefault(id(store), (store, {}))[1][name] = buf  # type: ignore[arg-type]
        for store, bufs in by_store.values():
            w, f = self._write_to(store, bufs)
            written += w
            failed.update(f)
        return written, failed

    def _write_to(
        self, store: PlainPBStore, taken: dict[str, Buffer]
    ) -> tuple[int, dict[str, Exception]]:
        """Write the buffers of PVs whose first store is ``store``."""
        written = 0
        failed: dict[str, Exception] = {}
        # one folder listing for all PVs new to the store, not one per PV
        try:
            store.prime_last_known(taken)
        except OSError as e:
            log.warning("cannot list %s ahead of the write: %s", store.name, e)
        batches: dict[PayloadType, list[str]] = {}
        for name, buf in taken.items():
            ptype = self.pvs[name].ptype
            if ptype in NUMPY_DTYPE:
                batches.setdefault(ptype, []).append(name)
                continue
            try:
                written += self._write(store, self.pvs[name], buf)
            except Exception as e:
                failed[name] = e
        for ptype, names in batches.items():
            for chunk in _chunks(names, taken):
                try:
                    w, f = self._write_batch(store, ptype, chunk, taken)
                except Exception as e:  # unforeseen: retry the whole chunk next cycle
                    log.exception("batch write of %d PVs failed", len(chunk))
                    w, f = 0, dict.fromkeys(chunk, e)
                written += w
                failed.update(f)
        return written, failed

    def _write_batch(
        self, store: PlainPBStore, ptype: PayloadType, names: list[str], taken: dict[str, Buffer]
    ) -> tuple[int, dict[str, Exception]]:
        """Scalar PVs of one type: all their rows in one vectorised encode (see
        ``PlainPBStore.append`` of a many-PV batch), the few rows with fields spliced in."""
        counts: list[int] = []
        special: dict[int, Sample] = {}
        typecode = VALUE_TYPECODES[ptype]
        # the packed rows of all PVs joined (one memcpy each), seen by numpy as columns
        parts: list[bytearray] = []
        base = 0
        try:
            for name in names:
                buf = taken[name]
                if buf.typecode != typecode:
                    raise TypeError(f"{name}: buffer of typecode {buf.typecode}")
                n = len(buf)
                if buf.fields or buf.actual_change:
                    for i in buf.special_rows():
                        special[base + i] = buf.sample_at(i)
                parts.append(buf.data)
                counts.append(n)
                base += n
            rec = np.frombuffer(b"".join(parts), dtype=ROW_DTYPES[typecode])
            cols = (
                rec["secs"].astype(np.int64),
                rec["nanos"].astype(np.int64),
                rec["val"].astype(NUMPY_DTYPE[ptype]),
                rec["sev"].astype(np.int32),
                rec["stat"].astype(np.int32),
            )
        except (ValueError, TypeError, OverflowError):
            # a buffer that is not in typed columns: PV by PV, so only that PV can fail
            written, failed = 0, {}
            for name in names:
                try:
                    written += self._write(store, self.pvs[name], taken[name])
                except Exception as e:
                    failed[name] = e
            return written, failed
        res = store.append(Batch.of_many(ptype, names, counts, *cols, special=special))
        pvs = self.pvs
        for name, w in zip(names, res.written, strict=True):
            if w:
                pvs[name].metrics.samples_written += w
        return sum(res.written), res.failures

    def finish(self, taken: dict[str, Buffer], failed: dict[str, Exception]) -> None:
        """Release written buffers, put failed ones back in front (event-loop side), and
        keep :attr:`write_health` up to date: a PV's failure ends with its first successful
        write. Failures are logged per store (see store_health.py), not per PV and cycle."""
        health = self.write_health
        now = self.clock()
        for name, buf in taken.items():
            pv = self.pvs[name]
            self._in_flight.pop(name, None)
            e = failed.get(name)
            if e is None:
                pv.release(buf)
                if name in health.pvs:
                    health.succeeded(name, now)
                continue
            pv.metrics.write_errors += 1
            pv.metrics.last_write_error = str(e)
            if self.journal is not None:  # not in a .pb file: keep it journaled
                self.journal.carry(pv.journal_id, buf)
            if isinstance(e, TypeMismatchError):
                pv.paused = True
                pv.status_message = str(e)
                log.error("%s: %s; archiving paused, samples kept in memory", name, e)
            else:
                if not isinstance(e, StoreError | OSError) and name not in health.pvs:
                    log.error("%s: unexpected write failure, will retry", name, exc_info=e)
                log.debug("%s: write failed, will retry: %s", name, e)
                health.failed(name, str(e), now)
            pv.requeue(buf)

    def write_all(self) -> int:
        """One whole write cycle in the calling thread: for tests and the final flush, when
        no events are arriving any more."""
        taken = self.take_all()
        written, failed = self.write_buffers(taken)
        self.finish(taken, failed)
        if self.journal is not None:
            sync_filesystems()
            self.journal_done(durable=True)
        return written

    def journal_done(self, durable: bool) -> None:
        """After a write cycle: carry the held PVs' samples into the current journal segment
        and drop the sealed ones. ``durable``: the written ``.pb`` data has been synced (or
        only a process crash, not a power cut, is to be survived)."""
        j, sealed = self.journal, self._sealed
        if j is None or sealed is None:
            return
        self._sealed = None
        for name in self._held:
            pv = self.pvs.get(name)
            if pv is not None:
                j.carry(pv.journal_id, pv.buffer)
        self._held = []
        if durable:
            j.drop_through(sealed)

    def unwritten(self) -> int:
        """Samples still only in memory (buffers, held PVs)."""
        return sum(len(pv.buffer) for pv in self.pvs.values()) + sum(
            len(b) for b in self._in_flight.values()
        )

    def _write(self, store: PlainPBStore, pv: ArchivedPV, buf: Buffer) -> int:
        """One PV's buffer: numeric rows as columns (the few rows with fieldvalues, from
        reconnects and field changes, spliced in by the store), other types as Samples."""
        dtype = NUMPY_DTYPE.get(pv.ptype)
        if dtype is None:
            batch = Batch.of_samples(pv.name, pv.ptype, buf.samples())
        else:
            secs, nanos, vals, sev, stat = (np.asarray(c) for c in buf.columns())
            special = {i: buf.sample_at(i) for i in buf.special_rows()}
            batch = Batch.of_columns(
                pv.name, pv.ptype, secs.astype(np.int64), nanos.astype(np.int64),
                vals.astype(dtype), sev.astype(np.int32), stat.astype(np.int32), special,
            )  # fmt: skip
        written = store.append(batch).one().written
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
            if self.journal is not None:
                # the journal may only forget what a power cut cannot take from the .pb files
                await asyncio.to_thread(sync_filesystems)
                self.journal_done(durable=True)

    # ------------------------------------------------------------------ mgmt hooks
    # Delete/rename flush one PV and then drop it. These run on the event loop, like
    # take_all/finish; a PV is only removed while none of its buffers is in flight, since
    # finish() looks the PV up again.
    def is_in_flight(self, name: str) -> bool:
        return name in self._in_flight

    def take_one(self, name: str) -> dict[str, Buffer]:
        """take_all for one PV: its buffer, marked in flight, or {} if nothing to write."""
        pv = self.pvs.get(name)
        if pv is None or pv.paused or not len(pv.buffer) or name in self._in_flight:
            return {}
        buf = pv.take_buffer()
        self._in_flight[name] = buf
        return {name: buf}

    def remove_pv(self, name: str) -> ArchivedPV | None:
        """Forget a PV (deleted or renamed); unwritten samples are dropped and their memory
        given back. The caller flushes first if the samples matter."""
        if name in self._in_flight:
            raise RuntimeError(f"{name}: a write of this PV is in progress")
        pv = self.pvs.pop(name, None)
        self.write_health.forget(name, self.clock())
        if pv is not None:
            if self.journal is not None and pv.journal_id:
                self.journal.forget(pv.journal_id)
            pv.release(pv.buffer)
            pv.buffer = Buffer()
        self._last_daily.pop(name, None)
        return pv

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
        # snapshot both buffers (whole rows only: the event loop may be appending)
        bufs = (self._in_flight.get(pvname), pv.buffer)
        parts = [b.snapshot() for b in bufs if b is not None and len(b)]
        picked: list[Sample] = []
        before: Sample | None = None
        for buf in parts:
            secs, nanos = buf.secs.tolist(), buf.nanos.tolist()
            n = len(buf)
            i = bisect.bisect_left(range(n), start, key=lambda k: (secs[k], nanos[k]))
            j = bisect.bisect_right(range(n), end, key=lambda k: (secs[k], nanos[k]))
            if i > 0:
                before = buf.sample_at(i - 1)
            picked.extend(buf.sample_at(k) for k in range(i, min(j, n)))
        samples = ([before] if before is not None else []) + picked
        # one chunk per year, as a chunk's samples share the header's year
        by_year: dict[int, list[Sample]] = {}
        for s in samples:
            by_year.setdefault(year_of(s.secs), []).append(s)
        for year, ss in sorted(by_year.items()):
            yield Chunk(PayloadInfo(pv.ptype, pvname, year), block_from_samples(ss, pv.ptype))
