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

from ..pb import PBDecodeError, Sample, decode_line, fast, year_start
from ..pb.escape import EscapeError
from .pbfile import Instant, PBFile, PBFileError
from .store import PlainPBStore, Segment, iter_segment_samples

log = logging.getLogger(__name__)


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


def _block_from_samples(samples: list[Sample], dtype: np.dtype) -> SampleBlock:
    return SampleBlock(
        np.array([s.secs for s in samples], dtype=np.int64),
        np.array([s.nanos for s in samples], dtype=np.int64),
        np.array([s.val for s in samples], dtype=dtype),
        np.array([s.severity for s in samples], dtype=np.int32),
        np.array([s.status for s in samples], dtype=np.int32),
        {i: s for i, s in enumerate(samples) if s.fields or s.repeatcount is not None},
    )


def iter_segment_columns(seg: Segment) -> Iterator[SampleBlock]:
    ptype = seg.header.type
    if ptype not in fast.SUPPORTED:
        raise ValueError(f"{ptype.name} has no columnar form")
    try:
        f = PBFile.open(seg.path)
    except (PBFileError, OSError) as e:
        log.error("cannot read %s: %s", seg.path, e)
        return
    base = year_start(seg.header.year)
    with f:
        for _off, block in f.iter_blocks(seg.begin, seg.end):
            cols = fast.decode_scalar_lines(ptype, block)
            out = SampleBlock(
                cols.secondsintoyear.astype(np.int64) + base,
                cols.nanos.astype(np.int64),
                cols.vals,
                cols.severity.astype(np.int32),
                cols.status.astype(np.int32),
            )
            fallback = np.flatnonzero(cols.fallback)
            if len(fallback) == 0:
                yield out
                continue
            keep = np.ones(len(out), dtype=bool)
            for i in fallback.tolist():
                line = block[int(cols.line_starts[i]) : int(cols.line_ends[i])]
                try:
                    s = decode_line(ptype, seg.header.year, line)
                except (PBDecodeError, EscapeError) as e:
                    log.error("%s: skipping corrupt line: %s", seg.path, e)
                    keep[i] = False
                    continue
                out.secs[i], out.nanos[i], out.vals[i] = s.secs, s.nanos, s.val
                out.severity[i], out.status[i] = s.severity, s.status
                if s.fields or s.repeatcount is not None:
                    out.extras[i] = s
            if not keep.all():
                new_index = np.cumsum(keep) - 1
                out = SampleBlock(
                    out.secs[keep],
                    out.nanos[keep],
                    out.vals[keep],
                    out.severity[keep],
                    out.status[keep],
                    {int(new_index[i]): s for i, s in out.extras.items()},
                )
            yield out


def read_columns(
    store: PlainPBStore, pvname: str, start: Instant, end: Instant, include_prev: bool = True
) -> Iterator[SampleBlock]:
    """Like :meth:`PlainPBStore.read`, as blocks of arrays (scalar numeric PVs only)."""
    prev, segs = store.locate(pvname, start, end)
    if include_prev and prev is not None:
        segs = [prev, *segs]
    for seg in segs:
        if seg.header.type in fast.SUPPORTED:
            yield from iter_segment_columns(seg)
        else:
            samples = list(iter_segment_samples(seg))
            if samples:
                yield _block_from_samples(samples, np.dtype(object))
