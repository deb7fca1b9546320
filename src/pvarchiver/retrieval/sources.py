"""Merge a PV's data from all stores into one strictly increasing stream of chunks.

The AA's rules (``MergeDedupConsumer``): stores are read oldest first (LTS, MTS, STS, then the
engine's buffer); the response starts with at most one sample at or before ``from`` (the latest
such); after it, only samples strictly newer than the last one sent. Stored lines are passed
on as raw bytes when nothing had to be filtered, so ``.raw`` answers without re-encoding.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Protocol

import numpy as np

from ..pb import PayloadInfo, PBDecodeError, decode_line, fast
from ..pb.escape import EscapeError
from ..storage.columns import SampleBlock
from ..storage.pbfile import Instant, PBFile, PBFileError
from ..storage.store import PlainPBStore, Segment
from .model import Chunk, block_from_samples

log = logging.getLogger(__name__)

NS = 1_000_000_000


class LiveSource(Protocol):
    """The engine's not yet written samples (a later issue); chunks in time order."""

    def read(self, pvname: str, start: Instant, end: Instant) -> Iterator[Chunk]: ...


def _ns(ts: Instant) -> int:
    return ts[0] * NS + ts[1]


def _decode_block(header: PayloadInfo, data: bytes, path: object) -> tuple[SampleBlock, bool]:
    """Decode whole lines; returns (block, every line decoded)."""
    ptype = header.type
    if ptype in fast.SUPPORTED:
        cols = fast.decode_scalar_lines(ptype, data)
        base = np.int64(_year_start(header.year))
        block = SampleBlock(
            cols.secondsintoyear.astype(np.int64) + base,
            cols.nanos.astype(np.int64),
            cols.vals,
            cols.severity.astype(np.int32),
            cols.status.astype(np.int32),
        )
        fb = np.flatnonzero(cols.fallback)
        if len(fb) == 0:
            return block, True
        keep = np.ones(len(block), dtype=bool)
        for i in fb.tolist():
            line = data[int(cols.line_starts[i]) : int(cols.line_ends[i])]
            try:
                s = decode_line(ptype, header.year, line)
            except (PBDecodeError, EscapeError) as e:
                log.error("%s: skipping corrupt line: %s", path, e)
                keep[i] = False
                continue
            block.secs[i], block.nanos[i], block.vals[i] = s.secs, s.nanos, s.val
            block.severity[i], block.status[i] = s.severity, s.status
            if s.fields or s.repeatcount is not None or s.fieldactualchange is not None:
                block.extras[i] = s
        if keep.all():
            return block, True
        return _take(block, keep), False
    samples = []
    ok = True
    for line in data.split(b"\n")[:-1]:
        try:
            samples.append(decode_line(ptype, header.year, line))
        except (PBDecodeError, EscapeError) as e:
            log.error("%s: skipping corrupt line: %s", path, e)
            ok = False
    return block_from_samples(samples, ptype), ok


def _take(block: SampleBlock, keep: np.ndarray) -> SampleBlock:
    new_index = np.cumsum(keep) - 1
    return SampleBlock(
        block.secs[keep],
        block.nanos[keep],
        block.vals[keep],
        block.severity[keep],
        block.status[keep],
        {int(new_index[i]): s for i, s in block.extras.items() if keep[i]},
    )


def _year_start(year: int) -> int:
    from ..pb import year_start

    return year_start(year)


def _segment_chunks(seg: Segment, after_ns: int | None) -> Iterator[Chunk]:
    """Chunks of one segment, skipping samples at or before ``after_ns``."""
    try:
        f = PBFile.open(seg.path)
    except (PBFileError, OSError) as e:
        log.error("cannot read %s: %s", seg.path, e)
        return
    with f:
        begin = seg.begin
        if after_ns is not None:
            begin = max(begin, f.find((after_ns // NS, after_ns % NS + 1)))
        header = PayloadInfo(
            seg.header.type,
            seg.header.pvname,
            seg.header.year,
            seg.header.element_count,
            dict(seg.header.headers),
        )
        last = after_ns
        for _off, data in f.iter_blocks(begin, seg.end):
            block, clean = _decode_block(header, data, seg.path)
            if len(block) == 0:
                continue
            ts = block.secs * NS + block.nanos
            # Files are sorted when valid; a damaged one may not be: enforce it here.
            running = np.maximum.accumulate(ts)
            keep = np.ones(len(ts), dtype=bool)
            keep[1:] = ts[1:] > running[:-1]
            if last is not None:
                keep &= ts > last
            if not keep.all():
                block = _take(block, keep)
                clean = False
                if len(block) == 0:
                    continue
                ts = ts[keep]
            last = int(ts[-1])
            yield Chunk(header, block, data if clean else None)


def _first_line(seg: Segment) -> tuple[int, Segment] | None:
    """Timestamp of a segment's first sample, and a segment holding just that line."""
    try:
        with PBFile.open(seg.path) as f:
            line, end = f.read_line(seg.begin)
            s = f.decode(line)
    except (PBFileError, PBDecodeError, EscapeError, OSError):
        return None
    return s.secs * NS + s.nanos, Segment(seg.path, seg.header, seg.begin, end)


def merged_chunks(
    stores: Sequence[PlainPBStore],
    pvname: str,
    start: Instant,
    end: Instant,
    live: LiveSource | None = None,
) -> Iterator[Chunk]:
    """The AA's merge of all stores (given newest first, as a PV's dataStores list is: STS,
    MTS, LTS) for [start, end], plus the last sample at or before ``start``."""
    located = [store.locate(pvname, start, end) for store in reversed(stores)]
    start_ns = _ns(start)
    # The one sample "at or before from": the latest over all stores of each store's sample
    # exactly at `from` or, failing that, its last sample before `from`.
    best: tuple[int, Segment] | None = None
    for prev, segs in located:
        first = _first_line(segs[0]) if segs else None
        cand = first if first is not None and first[0] == start_ns else None
        if cand is None and prev is not None:
            cand = _first_line(prev)
        if cand is not None and (best is None or cand[0] > best[0]):
            best = cand
    last: int | None = None
    if best is not None:
        for chunk in _segment_chunks(best[1], None):
            yield chunk
            last = chunk.last_ns()
    for _prev, segs in located:
        for seg in segs:
            for chunk in _segment_chunks(seg, last):
                yield chunk
                last = chunk.last_ns()
    if live is not None:
        for chunk in live.read(pvname, start, end):
            kept = drop_not_after(chunk, last)
            if kept is not None:
                yield kept
                last = kept.last_ns()


def drop_not_after(chunk: Chunk, last_ns: int | None) -> Chunk | None:
    """The chunk without samples at or before ``last_ns``; None if nothing is left."""
    if last_ns is None or len(chunk) == 0:
        return chunk if len(chunk) else None
    ts = chunk.block.secs * NS + chunk.block.nanos
    keep = ts > last_ns
    if keep.all():
        return chunk
    if not keep.any():
        return None
    return Chunk(chunk.header, _take(chunk.block, keep), None)
