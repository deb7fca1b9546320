"""Operators that pick samples per bin: firstSample, lastSample, firstFill, lastFill and
caplotbinning.

Unlike the summaries these select rows by bin number: rows whose bin lies in
``[from//interval, to//interval]`` count (so a row in the first bin but before ``from`` is the
first bin's first sample), and the latest row of an earlier bin is "the last sample before
from". They work on any type except caplotbinning, which needs numbers.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ...pb import PayloadInfo, PayloadType
from ..model import Chunk, SampleBlock
from ._common import (
    CNX_REGAINED,
    Instant,
    OutRows,
    RowSink,
    check_numeric,
    emit_rows,
    first_event_rule,
    float_values,
    rows_with_field,
    take,
)
from .binning import FILL_REPEAT, BinWriter, Records, seg_flags, seg_lengths, segments


def _bin_range(block: SampleBlock, first_bin: int, last_bin: int, interval: int) -> tuple[int, int]:
    lo = int(np.searchsorted(block.secs, first_bin * interval, side="left"))
    hi = int(np.searchsorted(block.secs, (last_bin + 1) * interval, side="left"))
    return lo, hi


class _Binned:
    """Common argument handling: an interval in seconds."""

    def __init__(self, identity: str, interval: int) -> None:
        self.identity = identity
        self.interval = interval

    def output_type(self, input_type: PayloadType) -> PayloadType:
        return input_type

    def process(self, chunks: Iterator[Chunk], start: Instant, end: Instant) -> Iterator[Chunk]:
        interval = self.interval
        gen = self._run(iter(chunks), start[0] // interval, end[0] // interval)
        return first_event_rule(gen, start)

    def _run(self, chunks: Iterator[Chunk], first_bin: int, last_bin: int) -> Iterator[Chunk]:
        raise NotImplementedError


class FirstSample(_Binned):
    """The first raw sample of each bin, unchanged (FirstSamplePP); the last sample before
    ``from`` is sent ahead of them."""

    def _run(self, chunks: Iterator[Chunk], first_bin: int, last_bin: int) -> Iterator[Chunk]:
        interval = self.interval
        sink = RowSink()
        before: tuple[PayloadInfo, SampleBlock] | None = None
        started = False
        prev_bin: int | None = None
        for chunk in chunks:
            b = chunk.block
            if len(b) == 0:
                continue
            lo, hi = _bin_range(b, first_bin, last_bin, interval)
            if lo > 0 and not started:
                before = (chunk.header, take(b, np.array([lo - 1])))
            if hi <= lo:
                continue
            starts, bins = segments(b.secs[lo:hi], interval)
            idx = starts + lo
            if prev_bin is not None and int(bins[0]) == prev_bin:
                idx = idx[1:]
            prev_bin = int(bins[-1])
            if not started:
                started = True
                if before is not None:
                    sink.add(*before)
            sink.add(chunk.header, take(b, idx))
            yield from sink.flush()
        if not started and before is not None:
            yield Chunk(before[0], before[1], None)


class LastSample(_Binned):
    """The last raw sample of each bin with its own timestamp. The AA rebuilds these as plain
    events, so fieldvalues are not sent."""

    def _run(self, chunks: Iterator[Chunk], first_bin: int, last_bin: int) -> Iterator[Chunk]:
        interval = self.interval
        sink = RowSink()
        before: tuple[PayloadInfo, SampleBlock] | None = None
        started = False
        carry: tuple[PayloadInfo, SampleBlock, int] | None = None
        for chunk in chunks:
            b = chunk.block
            if len(b) == 0:
                continue
            lo, hi = _bin_range(b, first_bin, last_bin, interval)
            if lo > 0 and not started:
                before = (chunk.header, take(b, np.array([lo - 1]), keep_extras=False))
            if hi <= lo:
                continue
            if not started:
                started = True
                if before is not None:
                    sink.add(*before)
            starts, bins = segments(b.secs[lo:hi], interval)
            ends = starts + seg_lengths(starts, hi - lo) - 1 + lo
            if carry is not None and carry[2] != int(bins[0]):
                sink.add(carry[0], carry[1])
            sink.add(chunk.header, take(b, ends[:-1], keep_extras=False))
            carry = (chunk.header, take(b, ends[-1:], keep_extras=False), int(bins[-1]))
            yield from sink.flush()
        if carry is not None:
            sink.add(carry[0], carry[1])
        if not started and before is not None:
            sink.add(*before)
        yield from sink.flush()


class _Fill(_Binned):
    """firstFill / lastFill: the first / last sample of each bin moved to the bin centre
    (whole seconds, nanos 0, as the AA's FillsCollectorEventStream), empty bins repeat the
    previous one; value, status and severity are the sample's, fieldvalues are dropped."""

    last = False

    def _run(self, chunks: Iterator[Chunk], first_bin: int, last_bin: int) -> Iterator[Chunk]:
        interval = self.interval
        writer: BinWriter | None = None
        before: Records | None = None
        started = False
        carry: Records | None = None  # lastFill: the open bin's latest sample
        prev_bin: int | None = None
        for chunk in chunks:
            b = chunk.block
            if len(b) == 0:
                continue
            if writer is None:
                writer = BinWriter(
                    chunk.header,
                    chunk.header.type,
                    chunk.header.element_count,
                    interval,
                    FILL_REPEAT,
                    last_bin,
                    0,
                )
            lo, hi = _bin_range(b, first_bin, last_bin, interval)
            if lo > 0 and not started:
                before = _records(b, np.array([lo - 1]), np.array([first_bin - 1]))
            if hi <= lo:
                continue
            if not started:
                started = True
                yield from writer.write(before)
            starts, bins = segments(b.secs[lo:hi], interval)
            if self.last:
                ends = starts + seg_lengths(starts, hi - lo) - 1 + lo
                recs = _records(b, ends, bins)
                if carry is not None and int(carry.bins[0]) != int(bins[0]):
                    yield from writer.write(carry)
                yield from writer.write(recs.take(np.arange(len(recs) - 1)))
                carry = recs.take([len(recs) - 1])
            else:
                idx = starts + lo
                if prev_bin is not None and int(bins[0]) == prev_bin:
                    idx, bins = idx[1:], bins[1:]
                prev_bin = int(bins[-1]) if len(bins) else prev_bin
                yield from writer.write(_records(b, idx, bins))
        if writer is None:
            return
        if not started:
            yield from writer.write(before)
        yield from writer.write(carry)
        yield from writer.finish()


def _records(block: SampleBlock, idx: np.ndarray, bins: np.ndarray) -> Records:
    return Records(
        np.asarray(bins, dtype=np.int64),
        block.vals[idx],
        block.severity[idx].astype(np.int32),
        block.status[idx].astype(np.int32),
        np.zeros(len(idx), dtype=bool),
    )


class FirstFill(_Fill):
    last = False


class LastFill(_Fill):
    last = True


class CAPlotBinning(_Binned):
    """The Channel Archiver's plot binning as the AA approximates it: per bin one sample as is,
    two samples as they are, more than two as first/min/max/last at 0, 1/4, 1/2 and 3/4 of
    the bin (whole seconds); SCALAR_DOUBLE, severity = highest of the bin. The last sample
    before ``from`` is only written when the range has data. Output timestamps that do not
    increase (one-second bins, two samples in one second) are dropped, keeping the stream
    strictly ordered."""

    def output_type(self, input_type: PayloadType) -> PayloadType:
        check_numeric(self.identity, input_type)
        return PayloadType.SCALAR_DOUBLE

    def _run(self, chunks: Iterator[Chunk], first_bin: int, last_bin: int) -> Iterator[Chunk]:
        interval = self.interval
        proto: PayloadInfo | None = None
        before: tuple[int, float] | None = None
        started = False
        carry: dict[str, np.ndarray] | None = None
        last_secs = -(1 << 62)
        for chunk in chunks:
            b = chunk.block
            if len(b) == 0:
                continue
            check_numeric(self.identity, chunk.header.type)
            proto = proto or chunk.header
            lo, hi = _bin_range(b, first_bin, last_bin, interval)
            if lo > 0 and not started:
                before = (int(b.secs[lo - 1]), float(float_values(b, lo - 1, lo)[0]))
            if hi <= lo:
                continue
            parts: list[dict[str, np.ndarray]] = []
            if not started:
                started = True
                if before is not None:
                    parts.append(_single_bin(first_bin - 1, *before))
            aggs = _plot_aggregates(b, lo, hi, interval)
            if carry is not None:
                if int(carry["bin"][0]) == int(aggs["bin"][0]):
                    aggs = _merge_first(carry, aggs)
                else:
                    parts.append(carry)
            k = len(aggs["bin"])
            if k > 1:
                parts.append({f: a[: k - 1] for f, a in aggs.items()})
            carry = {f: a[k - 1 :] for f, a in aggs.items()}
            for part in parts:
                rows, last_secs = _plot_rows(part, interval, last_secs)
                yield from emit_rows(proto, PayloadType.SCALAR_DOUBLE, 1, rows)
        if proto is not None and carry is not None:
            rows, last_secs = _plot_rows(carry, interval, last_secs)
            yield from emit_rows(proto, PayloadType.SCALAR_DOUBLE, 1, rows)


def _single_bin(bin_: int, secs: int, v: float) -> dict[str, np.ndarray]:
    one = np.ones(1, dtype=np.int64)
    val = np.array([v])
    return {
        "bin": np.array([bin_], dtype=np.int64),
        "count": one,
        "first_secs": np.array([secs], dtype=np.int64),
        "first": val,
        "last_secs": np.array([secs], dtype=np.int64),
        "last": val,
        "min": val,
        "max": val,
        "sev": np.zeros(1, dtype=np.int32),
        "conn": np.zeros(1, dtype=bool),
    }


def _plot_aggregates(b: SampleBlock, lo: int, hi: int, interval: int) -> dict[str, np.ndarray]:
    secs = b.secs[lo:hi]
    v = float_values(b, lo, hi)
    starts, bins = segments(secs, interval)
    lengths = seg_lengths(starts, hi - lo)
    ends = starts + lengths - 1
    conn = rows_with_field(b, CNX_REGAINED)
    conn = conn[(conn >= lo) & (conn < hi)] - lo
    return {
        "bin": bins,
        "count": lengths.astype(np.int64),
        "first_secs": secs[starts],
        "first": v[starts],
        "last_secs": secs[ends],
        "last": v[ends],
        "min": np.fmin.reduceat(v, starts),
        "max": np.fmax.reduceat(v, starts),
        "sev": np.maximum.reduceat(b.severity[lo:hi], starts).astype(np.int32),
        "conn": seg_flags(starts, conn),
    }


def _merge_first(prev: dict[str, np.ndarray], cur: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {f: a.copy() for f, a in cur.items()}
    out["count"][0] += prev["count"][0]
    out["first_secs"][0] = prev["first_secs"][0]
    out["first"][0] = prev["first"][0]
    out["min"][0] = np.fmin(prev["min"][0], cur["min"][0])
    out["max"][0] = np.fmax(prev["max"][0], cur["max"][0])
    out["sev"][0] = max(int(prev["sev"][0]), int(cur["sev"][0]))
    out["conn"][0] = bool(prev["conn"][0]) or bool(cur["conn"][0])
    return out


def _plot_rows(agg: dict[str, np.ndarray], interval: int, last_secs: int) -> tuple[OutRows, int]:
    count = agg["count"]
    nout = np.where(count == 1, 1, np.where(count == 2, 2, 4))
    off = np.cumsum(nout) - nout
    total = int(nout.sum())
    secs = np.empty(total, dtype=np.int64)
    vals = np.empty(total)
    start = agg["bin"] * interval
    many = count > 2
    secs[off] = np.where(many, start, agg["first_secs"])
    vals[off] = agg["first"]
    two = count == 2
    secs[off[two] + 1] = agg["last_secs"][two]
    vals[off[two] + 1] = agg["last"][two]
    o = off[many]
    for slot, frac, col in ((1, 0.25, "min"), (2, 0.5, "max"), (3, 0.75, "last")):
        secs[o + slot] = start[many] + int(frac * interval)
        vals[o + slot] = agg[col][many]
    sev = np.repeat(agg["sev"], nout)
    conn = np.repeat(agg["conn"], nout)
    # keep the stream strictly increasing (the AA's merge would drop the repeats)
    prior = np.empty(total, dtype=np.int64)
    prior[0] = last_secs
    prior[1:] = secs[:-1]
    keep = secs > np.maximum.accumulate(prior)
    if not keep.all():
        secs, vals, sev, conn = secs[keep], vals[keep], sev[keep], conn[keep]
    new_last = int(secs[-1]) if len(secs) else last_secs
    fields: list[dict[str, str] | None] | None = None
    if conn.any():
        fields = [{"connectionChange": "true"} if c else None for c in conn.tolist()]
    rows = OutRows(
        secs,
        np.zeros(len(secs), dtype=np.int64),
        vals,
        sev,
        np.zeros(len(secs), dtype=np.int32),
        fields,
    )
    return rows, new_last
