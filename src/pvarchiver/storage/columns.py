"""Columnar reads of scalar numeric PVs: numpy arrays instead of one object per sample.

Retrieval of long ranges and the benchmarks read millions of samples; decoding them as blocks
through :mod:`pvarchiver.pb.fast` is several times faster than one protobuf message per line.
Lines the vectorised decoder does not handle (those with fieldvalues, for instance) go through
the general decoder and are returned in ``extras`` so that nothing is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from ..pb import PayloadInfo, PayloadType, PBDecodeError, Sample, decode_line, fast, year_start
from ..pb.escape import EscapeError
from .pbfile import Instant, open_or_log
from .store import PlainPBStore, Segment

log = logging.getLogger(__name__)

#: numpy column type of each scalar numeric PayloadType
NUMPY_DTYPE = {
    PayloadType.SCALAR_DOUBLE: np.float64,
    PayloadType.SCALAR_FLOAT: np.float32,
    PayloadType.SCALAR_INT: np.int32,
    PayloadType.SCALAR_SHORT: np.int32,
    PayloadType.SCALAR_ENUM: np.int32,
}


@dataclass
class SampleBlock:
    """Consecutive samples of one file; ``extras[i]`` is the full sample at row ``i`` when the
    row carries more than the columns hold (fieldvalues, repeatcount, ...)."""

    secs: np.ndarray  # int64 epoch seconds
    nanos: np.ndarray  # int64
    vals: np.ndarray
    severity: np.ndarray  # int32
    status: np.ndarray  # int32
    extras: dict[int, Sample] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.secs)

    def sample(self, i: int) -> Sample:
        """Row ``i`` as a Sample: the extras entry when there is one (it is the full sample),
        else the columns, with numpy scalars turned into Python values."""
        extra = self.extras.get(i)
        if extra is not None:
            return extra
        v = self.vals[i]
        if isinstance(v, np.generic):
            v = v.item()
        return Sample(
            int(self.secs[i]), int(self.nanos[i]), v, int(self.severity[i]), int(self.status[i])
        )


def block_from_samples(samples: list[Sample], ptype: PayloadType) -> SampleBlock:
    """A block from Sample objects: numeric scalars get numeric columns, others object arrays."""
    dtype = NUMPY_DTYPE.get(ptype)
    if dtype is not None:
        vals = np.array([s.val for s in samples], dtype=dtype)
    else:
        vals = np.empty(len(samples), dtype=object)
        for i, s in enumerate(samples):
            vals[i] = s.val
    return SampleBlock(
        np.array([s.secs for s in samples], dtype=np.int64),
        np.array([s.nanos for s in samples], dtype=np.int64),
        vals,
        np.array([s.severity for s in samples], dtype=np.int32),
        np.array([s.status for s in samples], dtype=np.int32),
        {i: s for i, s in enumerate(samples) if _has_extras(s)},
    )


def _has_extras(s: Sample) -> bool:
    return (
        bool(s.fields)
        or s.repeatcount is not None
        or s.fieldactualchange is not None
        or s.user_tag is not None
    )


def take_rows(block: SampleBlock, keep: np.ndarray) -> SampleBlock:
    """The rows of ``block`` where ``keep`` is true, extras renumbered."""
    new_index = np.cumsum(keep) - 1
    return SampleBlock(
        block.secs[keep],
        block.nanos[keep],
        block.vals[keep],
        block.severity[keep],
        block.status[keep],
        {int(new_index[i]): s for i, s in block.extras.items() if keep[i]},
    )


def decode_block(header: PayloadInfo, data: bytes, where: object = "") -> tuple[SampleBlock, bool]:
    """Decode whole escaped lines of one file; returns (block, every line decoded).

    Scalar numeric lines go through the vectorised decoder; the lines it flags (fieldvalues,
    unusual encodings, damage) and all other types go through the general decoder. Lines that
    do not decode at all are skipped with an error in the log, never fatal.
    """
    ptype = header.type
    if ptype not in fast.SUPPORTED:
        samples = []
        ok = True
        for line in data.split(b"\n")[:-1]:
            try:
                samples.append(decode_line(ptype, header.year, line))
            except (PBDecodeError, EscapeError) as e:
                log.error("%s: skipping corrupt line: %s", where, e)
                ok = False
        return block_from_samples(samples, ptype), ok
    cols = fast.decode_scalar_lines(ptype, data)
    block = SampleBlock(
        cols.secondsintoyear.astype(np.int64) + year_start(header.year),
        cols.nanos.astype(np.int64),
        cols.vals,
        cols.severity.astype(np.int32),
        cols.status.astype(np.int32),
    )
    fallback = np.flatnonzero(cols.fallback)
    if len(fallback) == 0:
        return block, True
    keep = np.ones(len(block), dtype=bool)
    for i in fallback.tolist():
        line = data[int(cols.line_starts[i]) : int(cols.line_ends[i])]
        try:
            s = decode_line(ptype, header.year, line)
        except (PBDecodeError, EscapeError) as e:
            log.error("%s: skipping corrupt line: %s", where, e)
            keep[i] = False
            continue
        block.secs[i], block.nanos[i], block.vals[i] = s.secs, s.nanos, s.val
        block.severity[i], block.status[i] = s.severity, s.status
        if _has_extras(s):
            block.extras[i] = s
    if keep.all():
        return block, True
    return take_rows(block, keep), False


def iter_segment_columns(seg: Segment) -> Iterator[SampleBlock]:
    f = open_or_log(seg.path)
    if f is None:
        return
    with f:
        for _off, data in f.iter_blocks(seg.begin, seg.end):
            block, _clean = decode_block(seg.header, data, seg.path)
            if len(block):
                yield block


def read_columns(
    store: PlainPBStore, pvname: str, start: Instant, end: Instant, include_prev: bool = True
) -> Iterator[SampleBlock]:
    """Like :meth:`PlainPBStore.read`, as blocks of arrays (object arrays for types that
    have no numeric column)."""
    prev, segs = store.locate(pvname, start, end)
    if include_prev and prev is not None:
        segs = [prev, *segs]
    for seg in segs:
        yield from iter_segment_columns(seg)
