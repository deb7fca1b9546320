"""The AA's SummaryStatsPostProcessor family (mean, std, ..., stats, errorbar) and the two
"optimized" operators built on it.

Rules, from ``SummaryStatsPostProcessor.wrap`` / ``SummaryStatsCollectorEventStream``:

* rows with ``from <= t <= to`` (full precision) are binned by ``epochSeconds // interval``;
  later rows are ignored;
* the latest row before ``from`` forms bin ``firstBin-1`` on its own (severity 0, no
  reconnect flag), unless a row lies exactly at ``from``; so the output starts with that bin;
* a bin's result is written at its centre with nanos 500000000 for odd intervals, severity =
  highest severity of its rows, status 0, field ``connectionChange=true`` if one of its rows
  carried ``cnxregainedepsecs``;
* empty bins after the first bin with data, up to ``to // interval``, repeat the previous
  result (count writes 0 instead), except in the ``...Sample`` variants which skip them.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import numpy as np

from ...pb import PayloadInfo, PayloadType
from ..model import Chunk, SampleBlock
from ._common import (
    CNX_REGAINED,
    NON_NUMERIC,
    NS,
    Instant,
    RowSink,
    check_numeric,
    first_event_rule,
    float_values,
    row_ns,
    rows_with_field,
    take,
    to_ns,
)
from .binning import FILL_LAST, FILL_NONE, FILL_REPEAT, FILL_ZERO, BinWriter, Records
from .stats import (
    COUNT,
    MOMENT_KINDS,
    STATS,
    STATS_LAST,
    VECTOR_KINDS,
    HolisticAccumulator,
    MomentAccumulator,
)


class RowObserver(Protocol):
    """Sees every raw row that goes into a bin (optimized needs them to decide raw vs bins)."""

    def rows(self, header: PayloadInfo, block: SampleBlock, lo: int, hi: int) -> None: ...


def summary_nanos(interval: int) -> int:
    return 500_000_000 if interval % 2 else 0


def _instant_range(block: SampleBlock, start_ns: int, end_ns: int) -> tuple[int, int]:
    n = len(block)
    if row_ns(block, 0) >= start_ns and row_ns(block, n - 1) <= end_ns:
        return 0, n
    ts = block.secs * NS + block.nanos
    return (
        int(np.searchsorted(ts, start_ns, side="left")),
        int(np.searchsorted(ts, end_ns, side="right")),
    )


def _scalar_element_count(proto: PayloadInfo) -> int | None:
    return 1 if proto.type.is_vector else proto.element_count


class BinnedCore:
    """Drives an accumulator over the stream and writes its bins (see module docstring).

    ``by_bin`` selects rows by bin number (``firstBin <= bin <= lastBin``) instead of by
    instant, as OptimizedWithLastSample does; ``before_without_data`` says whether the last
    row before ``from`` is written when nothing lies inside the range.
    """

    def __init__(
        self,
        identity: str,
        kind: str,
        interval: int,
        fill: str,
        by_bin: bool = False,
        before_without_data: bool = True,
    ) -> None:
        self.identity = identity
        self.kind = kind
        self.interval = interval
        self.fill = fill
        self.by_bin = by_bin
        self.before_without_data = before_without_data

    def run(
        self,
        chunks: Iterator[Chunk],
        start: Instant,
        end: Instant,
        observer: RowObserver | None = None,
    ) -> Iterator[Chunk]:
        interval = self.interval
        start_ns, end_ns = to_ns(start), to_ns(end)
        first_bin, last_bin = start[0] // interval, end[0] // interval
        moment = self.kind in MOMENT_KINDS
        acc: MomentAccumulator | HolisticAccumulator = (
            MomentAccumulator(self.kind, interval)
            if moment
            else HolisticAccumulator(self.kind, interval)
        )
        writer: BinWriter | None = None
        before: tuple[PayloadInfo, SampleBlock] | None = None
        started = False
        for chunk in chunks:
            b = chunk.block
            if len(b) == 0:
                continue
            check_numeric(self.identity, chunk.header.type)
            if writer is None:
                writer = self._writer(chunk.header, last_bin)
            if self.by_bin:
                lo = int(np.searchsorted(b.secs, first_bin * interval, side="left"))
                hi = int(np.searchsorted(b.secs, (last_bin + 1) * interval, side="left"))
            else:
                lo, hi = _instant_range(b, start_ns, end_ns)
            if lo > 0 and not started:
                before = (chunk.header, take(b, np.array([lo - 1])))
            if hi <= lo:
                continue
            if not started:
                started = True
                if not self.by_bin and row_ns(b, lo) == start_ns:
                    before = None
                if before is not None:
                    yield from writer.write(self._single(acc, first_bin - 1, before, observer))
            v = float_values(b, lo, hi)
            if observer is not None:
                observer.rows(chunk.header, b, lo, hi)
            conn = rows_with_field(b, CNX_REGAINED)
            conn = conn[(conn >= lo) & (conn < hi)] - lo
            if isinstance(acc, MomentAccumulator):
                recs = acc.feed(b.secs[lo:hi], v, b.severity[lo:hi], conn)
            else:
                recs = acc.feed(b.secs[lo:hi], b.nanos[lo:hi], v, b.severity[lo:hi], conn)
            yield from writer.write(recs)
        if writer is None:
            return
        if not started and before is not None and self.before_without_data:
            yield from writer.write(self._single(acc, first_bin - 1, before, observer))
        yield from writer.write(acc.close())
        yield from writer.finish()

    def _writer(self, proto: PayloadInfo, last_bin: int) -> BinWriter:
        if self.kind in VECTOR_KINDS:
            ptype, count = PayloadType.WAVEFORM_DOUBLE, VECTOR_KINDS[self.kind]
        else:
            ptype, count = PayloadType.SCALAR_DOUBLE, _scalar_element_count(proto)
        return BinWriter(
            proto,
            ptype,
            count,
            self.interval,
            self.fill,
            last_bin,
            summary_nanos(self.interval),
        )

    def _single(
        self,
        acc: MomentAccumulator | HolisticAccumulator,
        bin_: int,
        before: tuple[PayloadInfo, SampleBlock],
        observer: RowObserver | None,
    ) -> Records:
        header, row = before
        if observer is not None:
            observer.rows(header, row, 0, 1)
        v = float(float_values(row)[0])
        if isinstance(acc, MomentAccumulator):
            return acc.single(bin_, v)
        return acc.single(bin_, int(row.secs[0]), int(row.nanos[0]), v)


def _fill_mode(kind: str, fill: bool) -> str:
    if not fill:
        return FILL_NONE
    return FILL_ZERO if kind == COUNT else FILL_REPEAT


class Summary:
    """One of the AA's summary operators (``mean_600`` and friends)."""

    def __init__(self, identity: str, kind: str, interval: int, fill: bool) -> None:
        self.identity = identity
        self.kind = kind
        self.interval = interval
        self.fill = fill

    def output_type(self, input_type: PayloadType) -> PayloadType:
        if self.kind != COUNT:  # counting needs no number (deliberately more lenient than AA)
            check_numeric(self.identity, input_type)
        if self.kind in VECTOR_KINDS:
            return PayloadType.WAVEFORM_DOUBLE
        return PayloadType.SCALAR_DOUBLE

    def process(self, chunks: Iterator[Chunk], start: Instant, end: Instant) -> Iterator[Chunk]:
        core = BinnedCore(self.identity, self.kind, self.interval, _fill_mode(self.kind, self.fill))
        if self.kind == COUNT:
            chunks = _count_ready(chunks)
        return first_event_rule(core.run(iter(chunks), start, end), start)


def _count_ready(chunks: Iterator[Chunk]) -> Iterator[Chunk]:
    """count of a PV without numbers (strings, V4 bytes): every sample counts, so feed ones."""
    for chunk in chunks:
        if chunk.header.type in NON_NUMERIC:
            b = chunk.block
            ones = SampleBlock(
                b.secs, b.nanos, np.ones(len(b)), b.severity, b.status, dict(b.extras)
            )
            header = PayloadInfo(
                PayloadType.SCALAR_DOUBLE,
                chunk.header.pvname,
                chunk.header.year,
                chunk.header.element_count,
                chunk.header.headers,
            )
            yield Chunk(header, ones, None)
        else:
            yield chunk


class _RawBuffer:
    """Keeps the first ``limit`` rows fed to the bins; knows when there were more."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.count = 0
        self.sink: RowSink | None = RowSink()

    @property
    def overflowed(self) -> bool:
        return self.count > self.limit

    def rows(self, header: PayloadInfo, block: SampleBlock, lo: int, hi: int) -> None:
        self.count += hi - lo
        if self.sink is None:
            return
        if self.overflowed:
            self.sink = None  # the answer will be bins: the raw rows are not needed any more
            return
        self.sink.add(header, take(block, np.arange(lo, hi)))


class Optimized:
    """``optimized_N``: the raw samples if there are at most N of them (counting the one
    before ``from``), else ``stats`` over bins of ``(to-from)//N`` seconds (at least 1).

    The decision needs N+1 rows, so up to N raw rows and the bins computed meanwhile are
    held back; the output type therefore depends on the data (Phoebus checks for
    WAVEFORM_DOUBLE and treats anything else as raw)."""

    def __init__(self, identity: str, points: int, fill: bool, with_last: bool = False) -> None:
        self.identity = identity
        self.points = points
        self.fill = fill
        self.with_last = with_last

    def output_type(self, input_type: PayloadType) -> PayloadType:
        check_numeric(self.identity, input_type)
        return PayloadType.WAVEFORM_DOUBLE

    def _core(self, start: Instant, end: Instant) -> BinnedCore:
        if not self.with_last:
            interval = max(1, (end[0] - start[0]) // self.points)
            fill = FILL_REPEAT if self.fill else FILL_NONE
            return BinnedCore(self.identity, STATS, interval, fill)
        # OptimizedWithLastSample: millisecond arithmetic; a zero interval (the AA divides by
        # it and fails) becomes 1 s.
        millis = to_ns(end) // 1_000_000 - to_ns(start) // 1_000_000
        interval = max(1, millis // (1000 * self.points))
        fill = FILL_LAST if self.fill else FILL_NONE
        return BinnedCore(
            self.identity, STATS_LAST, interval, fill, by_bin=True, before_without_data=False
        )

    def process(self, chunks: Iterator[Chunk], start: Instant, end: Instant) -> Iterator[Chunk]:
        return first_event_rule(self._run(iter(chunks), start, end), start)

    def _run(self, chunks: Iterator[Chunk], start: Instant, end: Instant) -> Iterator[Chunk]:
        raw = _RawBuffer(self.points)
        pending: list[Chunk] = []
        for out in self._core(start, end).run(chunks, start, end, observer=raw):
            if raw.overflowed:
                yield from pending
                pending.clear()
                yield out
            else:
                pending.append(out)
        if raw.overflowed:
            yield from pending
        elif raw.sink is not None:
            yield from raw.sink.flush()
