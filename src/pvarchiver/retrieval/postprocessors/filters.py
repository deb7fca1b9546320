"""Operators that pass raw samples through a filter or count them: nth, ncount, deadBand,
ignoreflyers and flyers."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ...pb import PayloadInfo, PayloadType, year_of
from ..model import Chunk, SampleBlock
from ._common import (
    CNX_LOST,
    Instant,
    OutRows,
    RowSink,
    check_numeric,
    emit_rows,
    first_event_rule,
    float_values,
    rows_with_field,
    take,
    to_ns,
    ts_ns,
)
from .binning import seg_lengths, segments
from .stats import STD, moment_values, moments

#: Nth's cap on the number of samples it returns (the AA's ``Integer.MAX_VALUE/1000``).
NTH_MAX_COUNT = 2_147_483


def _millis(t: Instant) -> int:
    return to_ns(t) // 1_000_000


class Nth:
    """Every n-th sample in ``[from, to]`` (compared in milliseconds, as the AA does),
    counting from the first one; any type. Rebuilt as plain events by the AA, so without
    fieldvalues."""

    def __init__(self, identity: str, n: int) -> None:
        self.identity = identity
        self.n = n

    def output_type(self, input_type: PayloadType) -> PayloadType:
        return input_type

    def process(self, chunks: Iterator[Chunk], start: Instant, end: Instant) -> Iterator[Chunk]:
        return first_event_rule(self._run(iter(chunks), start, end), start)

    def _run(self, chunks: Iterator[Chunk], start: Instant, end: Instant) -> Iterator[Chunk]:
        start_ms, end_ms = _millis(start), _millis(end)
        seen = 0
        sent = 0
        for chunk in chunks:
            b = chunk.block
            if len(b) == 0:
                continue
            ms = ts_ns(b) // 1_000_000
            lo = int(np.searchsorted(ms, start_ms, side="left"))
            hi = int(np.searchsorted(ms, end_ms, side="right"))
            if hi <= lo:
                continue
            idx = np.arange(lo + (-seen) % self.n, hi, self.n)
            seen += hi - lo
            if sent + len(idx) >= NTH_MAX_COUNT:
                idx = idx[: NTH_MAX_COUNT - sent]
            sent += len(idx)
            if len(idx):
                yield Chunk(chunk.header, take(b, idx, keep_extras=False), None)
            if sent >= NTH_MAX_COUNT:
                return


class NCount:
    """One SCALAR_INT sample at ``from`` (truncated to milliseconds): the number of samples
    in ``[from, to]`` (milliseconds). Sent even when the count is 0; with no data at all the
    header's PV name is unknown here and left empty."""

    identity = "ncount"

    def output_type(self, input_type: PayloadType) -> PayloadType:
        return PayloadType.SCALAR_INT

    def process(self, chunks: Iterator[Chunk], start: Instant, end: Instant) -> Iterator[Chunk]:
        start_ms, end_ms = _millis(start), _millis(end)
        proto: PayloadInfo | None = None
        count = 0
        for chunk in chunks:
            b = chunk.block
            if len(b) == 0:
                continue
            proto = proto or chunk.header
            ms = ts_ns(b) // 1_000_000
            count += int(np.searchsorted(ms, end_ms, side="right")) - int(
                np.searchsorted(ms, start_ms, side="left")
            )
        secs, ms_part = divmod(start_ms, 1000)
        if proto is None:
            proto = PayloadInfo(PayloadType.SCALAR_INT, "", year_of(secs))
        rows = OutRows(
            np.array([secs], dtype=np.int64),
            np.array([ms_part * 1_000_000], dtype=np.int64),
            np.array([count], dtype=np.int32),
            np.zeros(1, dtype=np.int32),
            np.zeros(1, dtype=np.int32),
        )
        count_ec = 1 if proto.type.is_vector else proto.element_count
        yield from emit_rows(proto, PayloadType.SCALAR_INT, count_ec, rows)


class DeadBand:
    """ADEL-like decimation (the AA's DeadBand): the first sample is sent; after that a sample
    is sent when it or the last sent one is NaN/Inf, when the severity differs from the last
    sent one's, when the presence of ``cnxlostepsecs`` differs, or when
    ``|value - last sent value| > ADEL`` (strictly greater, despite the AA's comment).
    Samples are sent unchanged, including the one before ``from``."""

    def __init__(self, identity: str, adel: float) -> None:
        self.identity = identity
        self.adel = adel

    def output_type(self, input_type: PayloadType) -> PayloadType:
        check_numeric(self.identity, input_type)
        return input_type

    def process(self, chunks: Iterator[Chunk], start: Instant, end: Instant) -> Iterator[Chunk]:
        return first_event_rule(self._run(iter(chunks)), start)

    def _run(self, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        adel = self.adel
        ref: tuple[float, int, bool] | None = None
        for chunk in chunks:
            b = chunk.block
            n = len(b)
            if n == 0:
                continue
            check_numeric(self.identity, chunk.header.type)
            v = float_values(b)
            sev = b.severity
            cnx = np.zeros(n, dtype=bool)
            cnx[rows_with_field(b, CNX_LOST)] = True
            finite = np.isfinite(v)
            picked: list[int] = []
            i = 0
            if ref is None:
                picked.append(0)
                ref = (float(v[0]), int(sev[0]), bool(cnx[0]))
                i = 1
            while i < n:
                rv, rs, rc = ref
                if not np.isfinite(rv):
                    j = i
                else:
                    j = _next_change(v, finite, sev, cnx, i, rv, rs, rc, adel)
                    if j < 0:
                        break
                picked.append(j)
                ref = (float(v[j]), int(sev[j]), bool(cnx[j]))
                i = j + 1
            if picked:
                yield Chunk(chunk.header, take(b, np.array(picked)), None)


def _next_change(
    v: np.ndarray,
    finite: np.ndarray,
    sev: np.ndarray,
    cnx: np.ndarray,
    i: int,
    rv: float,
    rs: int,
    rc: bool,
    adel: float,
) -> int:
    """First row >= i that deadBand sends, given the last sent (finite) value ``rv``; -1 if
    none. Looks at the next row directly (busy signals), then at growing windows (quiet
    ones), so both cost little."""
    n = len(v)
    x = float(v[i])
    if not finite[i] or int(sev[i]) != rs or bool(cnx[i]) != rc or abs(x - rv) > adel:
        return i
    lo = i + 1
    width = 64
    while lo < n:
        hi = min(n, lo + width)
        hit = (
            ~finite[lo:hi]
            | (sev[lo:hi] != rs)
            | (cnx[lo:hi] != rc)
            | (np.abs(v[lo:hi] - rv) > adel)
        )
        k = int(np.argmax(hit))
        if hit[k]:
            return lo + k
        lo = hi
        width *= 4
    return -1


class Flyers:
    """ignoreflyers / flyers: per bin, the mean and (sample) standard deviation of the non-NaN
    values; keep the samples within (ignoreflyers) or beyond (flyers) ``numStdDev`` standard
    deviations of the mean. NaN samples are dropped by both, as are bins without numbers.
    Samples are sent unchanged; no time range filtering (like the AA). The AA's factor is a
    Java float, so it is rounded to single precision here too."""

    def __init__(self, identity: str, interval: int, num_dev: float, keep_flyers: bool) -> None:
        self.identity = identity
        self.interval = interval
        self.num_dev = float(np.float32(num_dev))
        self.keep_flyers = keep_flyers

    def output_type(self, input_type: PayloadType) -> PayloadType:
        check_numeric(self.identity, input_type)
        return input_type

    def process(self, chunks: Iterator[Chunk], start: Instant, end: Instant) -> Iterator[Chunk]:
        return first_event_rule(self._run(iter(chunks)), start)

    def _keep(self, v: np.ndarray, starts: np.ndarray) -> np.ndarray:
        m = moments(
            starts,
            np.zeros(len(starts), dtype=np.int64),
            v,
            np.zeros(len(v), dtype=np.int32),
            np.zeros(0, dtype=np.int64),
            STD,
        )
        std, _ = moment_values(STD, m)
        lengths = seg_lengths(starts, len(v))
        with np.errstate(invalid="ignore"):
            mean = np.where(m.n > 0, m.total / m.n, np.nan)
            dist = np.abs(v - np.repeat(mean, lengths))
            cutoff = np.repeat(self.num_dev * std, lengths)
            return dist > cutoff if self.keep_flyers else dist <= cutoff

    def _run(self, chunks: Iterator[Chunk]) -> Iterator[Chunk]:
        interval = self.interval
        sink = RowSink()
        open_bin: int | None = None
        pieces: list[tuple[PayloadInfo, SampleBlock]] = []
        for chunk in chunks:
            b = chunk.block
            n = len(b)
            if n == 0:
                continue
            check_numeric(self.identity, chunk.header.type)
            starts, bins = segments(b.secs, interval)
            if open_bin is not None and int(bins[0]) == open_bin and len(starts) == 1:
                pieces.append((chunk.header, b))
                continue
            first_run = 0
            if open_bin is not None:
                if int(bins[0]) == open_bin:
                    first_run = 1
                    end0 = int(starts[1])
                    pieces.append((chunk.header, take(b, np.arange(end0))))
                self._flush_pieces(pieces, sink)
            last_start = int(starts[-1])
            lo = int(starts[first_run]) if first_run < len(starts) - 1 else last_start
            if lo < last_start:
                v = float_values(b, lo, last_start)
                keep = self._keep(v, starts[first_run:-1] - lo)
                sink.add(chunk.header, take(b, lo + np.flatnonzero(keep)))
            open_bin = int(bins[-1])
            pieces = [(chunk.header, take(b, np.arange(last_start, n)))]
            yield from sink.flush()
        if open_bin is not None:
            self._flush_pieces(pieces, sink)
            yield from sink.flush()

    def _flush_pieces(self, pieces: list[tuple[PayloadInfo, SampleBlock]], sink: RowSink) -> None:
        v = np.concatenate([float_values(p[1]) for p in pieces])
        keep = self._keep(v, np.zeros(1, dtype=np.int64))
        at = 0
        for header, block in pieces:
            k = keep[at : at + len(block)]
            at += len(block)
            sink.add(header, take(block, np.flatnonzero(k)))
