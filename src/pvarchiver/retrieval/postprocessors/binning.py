"""Time bins: which rows fall into which bin, and writing one result per bin with fills.

Bins are the AA's: ``bin = epochSeconds // interval``; a bin's result is timestamped at its
centre ``bin*interval + interval//2``. Rows are time-sorted, so a chunk's bins are runs of
consecutive rows; the run boundaries come from a binary search of the bin edges instead of a
division per row, which keeps the binning cost independent of the number of rows.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from ...pb import PayloadInfo, PayloadType
from ..model import Chunk
from ._common import OutRows, emit_rows


def segments(secs: np.ndarray, interval: int) -> tuple[np.ndarray, np.ndarray]:
    """(first row of each run of equal bins, bin of each run) for sorted epoch seconds."""
    n = len(secs)
    b0 = int(secs[0]) // interval
    b1 = int(secs[-1]) // interval
    if b1 - b0 <= 2 * n + 16:
        edges = np.arange(b0 + 1, b1 + 1, dtype=np.int64) * interval
        starts = np.empty(len(edges) + 1, dtype=np.int64)
        starts[0] = 0
        starts[1:] = np.searchsorted(secs, edges, side="left")
        bins = np.arange(b0, b1 + 1, dtype=np.int64)
        nonempty = np.empty(len(starts), dtype=bool)
        nonempty[:-1] = starts[:-1] < starts[1:]
        nonempty[-1] = True  # the last row is in bin b1
        return starts[nonempty], bins[nonempty]
    # Sparse data over a huge span of bins: one division per row is cheaper than the edges.
    b = secs // interval
    starts = np.concatenate(([0], np.flatnonzero(b[1:] != b[:-1]) + 1)).astype(np.int64)
    return starts, b[starts]


def seg_lengths(starts: np.ndarray, n: int) -> np.ndarray:
    return np.diff(np.append(starts, n))


def seg_flags(starts: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Per run: does it contain one of ``rows``."""
    out = np.zeros(len(starts), dtype=bool)
    if len(rows):
        out[np.searchsorted(starts, rows, side="right") - 1] = True
    return out


@dataclass
class Records:
    """One result per bin, in increasing bin order, waiting to be written."""

    bins: np.ndarray  # int64
    vals: np.ndarray  # 1-D column, or 2-D float64 (waveform results)
    sev: np.ndarray  # int32
    status: np.ndarray  # int32
    conn: np.ndarray  # bool: the bin saw a reconnect
    fields: list[dict[str, str] | None] | None = None  # extra fieldvalues per bin

    def __len__(self) -> int:
        return len(self.bins)

    def take(self, idx: np.ndarray | list[int]) -> Records:
        idx = np.asarray(idx, dtype=np.int64)
        fields = None if self.fields is None else [self.fields[int(i)] for i in idx]
        return Records(
            self.bins[idx], self.vals[idx], self.sev[idx], self.status[idx], self.conn[idx], fields
        )

    @staticmethod
    def concat(a: Records, b: Records) -> Records:
        if a.fields is None and b.fields is None:
            fields = None
        else:
            fields = (a.fields or [None] * len(a)) + (b.fields or [None] * len(b))
        vals = (
            np.concatenate([a.vals, b.vals])
            if a.vals.dtype == b.vals.dtype
            else np.concatenate([a.vals.astype(object), b.vals.astype(object)])
        )
        return Records(
            np.concatenate([a.bins, b.bins]),
            vals,
            np.concatenate([a.sev, b.sev]),
            np.concatenate([a.status, b.status]),
            np.concatenate([a.conn, b.conn]),
            fields,
        )


#: How empty bins between bins with data are written.
FILL_NONE = "none"  # not at all (the ``...Sample`` variants, lastSample)
FILL_REPEAT = "repeat"  # the previous bin's result again (the AA default)
FILL_ZERO = "zero"  # 0.0, severity 0 (count)
FILL_LAST = "last"  # [L, 0, L, L, 0, L] from the last value (optimLastSample)


class BinWriter:
    """Writes bin results as chunks, filling empty bins from the first bin with data up to the
    last bin of the request, as the AA's SummaryStatsCollectorEventStream does.

    Fills are expanded in pieces of at most ``LIMIT`` bins so that a long gap with a small bin
    size cannot build one huge array.
    """

    LIMIT = 1 << 16

    def __init__(
        self,
        proto: PayloadInfo,
        ptype: PayloadType,
        element_count: int | None,
        interval: int,
        mode: str,
        last_bin: int,
        nanos: int,
    ) -> None:
        self.proto = proto
        self.ptype = ptype
        self.element_count = element_count
        self.interval = interval
        self.mode = mode
        self.last_bin = last_bin
        self.nanos = nanos
        self._prev: Records | None = None  # last bin with data written so far

    def write(self, recs: Records | None) -> Iterator[Chunk]:
        if recs is None or len(recs) == 0:
            return
        if self.mode == FILL_NONE:
            yield from self._out(recs.bins, recs)
        elif self._prev is None:
            yield from self._expand(recs, int(recs.bins[0]), int(recs.bins[-1]), False)
        else:
            table = Records.concat(self._prev, recs)
            yield from self._expand(table, int(self._prev.bins[0]) + 1, int(recs.bins[-1]), False)
        self._prev = recs.take([len(recs) - 1])

    def finish(self) -> Iterator[Chunk]:
        """Fill the bins after the last one with data, up to the request's last bin."""
        prev = self._prev
        if self.mode != FILL_NONE and prev is not None and int(prev.bins[0]) < self.last_bin:
            yield from self._expand(prev, int(prev.bins[0]) + 1, self.last_bin, True)

    def _expand(self, table: Records, lo: int, hi: int, trailing: bool) -> Iterator[Chunk]:
        for a in range(lo, hi + 1, self.LIMIT):
            out_bins = np.arange(a, min(a + self.LIMIT - 1, hi) + 1, dtype=np.int64)
            src = np.searchsorted(table.bins, out_bins, side="right") - 1
            rows = table.take(src)
            fill = table.bins[src] != out_bins
            if fill.any() and self.mode != FILL_REPEAT:
                self._refill(rows, fill, table, src, trailing)
            yield from self._out(out_bins, rows)

    def _refill(
        self, rows: Records, fill: np.ndarray, table: Records, src: np.ndarray, trailing: bool
    ) -> None:
        pos = np.flatnonzero(fill)
        if self.mode == FILL_ZERO:
            rows.vals[pos] = 0.0
            rows.sev[pos] = 0
            rows.conn[pos] = False
        elif self.mode == FILL_LAST:
            last = rows.vals[pos, 5]
            zero = np.zeros_like(last)
            rows.vals[pos] = np.column_stack([last, zero, last, last, zero, last])
            # The AA gives a gap the severity/connection flag of the bin that ends it (or of
            # the last bin, for the gap up to the end of the request).
            after = src[pos] if trailing else src[pos] + 1
            rows.sev[pos] = table.sev[after]
            rows.conn[pos] = table.conn[after]
        if rows.fields is not None and self.mode != FILL_LAST:
            for p in pos.tolist():
                rows.fields[p] = None

    def _out(self, out_bins: np.ndarray, rows: Records) -> Iterator[Chunk]:
        fields: list[dict[str, str] | None] | None = None
        if rows.conn.any() or rows.fields is not None:
            fields = []
            for i in range(len(out_bins)):
                f: dict[str, str] = {}
                if rows.conn[i]:
                    f["connectionChange"] = "true"
                if rows.fields is not None and rows.fields[i]:
                    f.update(rows.fields[i])  # type: ignore[arg-type]
                fields.append(f or None)
        secs = out_bins * self.interval + self.interval // 2
        out = OutRows(
            secs,
            np.full(len(secs), self.nanos, dtype=np.int64),
            rows.vals,
            rows.sev,
            rows.status,
            fields,
        )
        yield from emit_rows(self.proto, self.ptype, self.element_count, out)
