"""Plumbing shared by all post-processors: numbers out of samples, rows in, chunks out.

Every post-processor consumes a lazy stream of :class:`~pvarchiver.retrieval.model.Chunk` and
produces one. The helpers here keep that flat in memory (one input chunk at a time, plus
whatever a bin still needs) and keep the output valid for the encoders: time-ordered, one
PayloadType and one UTC year per chunk, ``raw`` dropped.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from ...pb import PayloadInfo, PayloadType, Sample, year_of, year_start
from ..model import Chunk, SampleBlock

NS = 1_000_000_000

Instant = tuple[int, int]

#: Types whose samples have no number the AA could summarise (its ``getValue()`` throws).
NON_NUMERIC: frozenset[PayloadType] = frozenset(
    {PayloadType.SCALAR_STRING, PayloadType.WAVEFORM_STRING, PayloadType.V4_GENERIC_BYTES}
)

#: Field the AA engine writes on the first sample after a reconnect; binned operators flag
#: such bins with ``connectionChange``.
CNX_REGAINED = "cnxregainedepsecs"
#: Field of a disconnect marker sample; deadBand writes a sample when its presence changes.
CNX_LOST = "cnxlostepsecs"


class PostProcessorError(ValueError):
    """A post-processor that does not exist, has a bad argument, or does not apply to the data.

    The HTTP layer answers 400 with ``str(e)``.
    """


def to_ns(t: Instant) -> int:
    return t[0] * NS + t[1]


def check_numeric(identity: str, ptype: PayloadType) -> None:
    """Refuse types without a numeric value instead of failing half-way through a response."""
    if ptype in NON_NUMERIC:
        raise PostProcessorError(
            f"post processor {identity} needs numeric samples; "
            f"it cannot be applied to {ptype.arch_dbr_name} data"
        )


def _first_number(v: object) -> float:
    """The AA's ``getSampleValue().getValue().doubleValue()``: a waveform's first element, a
    byte's signed value. An empty waveform (where the AA throws) counts as NaN."""
    if isinstance(v, bytes | bytearray | memoryview):
        return float(int.from_bytes(bytes(v[:1]), "big", signed=True)) if len(v) else math.nan
    if isinstance(v, list | tuple | np.ndarray):
        if len(v) == 0:
            return math.nan
        v = v[0]
        if isinstance(v, bytes | bytearray):
            return _first_number(v)
    try:
        return float(v)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return math.nan


def float_values(block: SampleBlock, lo: int = 0, hi: int | None = None) -> np.ndarray:
    """float64 values of rows ``lo:hi`` (numeric columns are converted without a loop)."""
    vals = block.vals[lo:hi]
    if vals.dtype != object:
        return vals.astype(np.float64, copy=False)
    return np.fromiter((_first_number(v) for v in vals), dtype=np.float64, count=len(vals))


def ts_ns(block: SampleBlock, lo: int = 0, hi: int | None = None) -> np.ndarray:
    return block.secs[lo:hi] * NS + block.nanos[lo:hi]


def row_ns(block: SampleBlock, i: int) -> int:
    return int(block.secs[i]) * NS + int(block.nanos[i])


def rows_with_field(block: SampleBlock, name: str) -> np.ndarray:
    """Sorted row numbers whose sample carries the field ``name``."""
    rows = [i for i, s in block.extras.items() if s.fields and name in s.fields]
    rows.sort()
    return np.array(rows, dtype=np.int64)


def take(block: SampleBlock, idx: np.ndarray, keep_extras: bool = True) -> SampleBlock:
    """Rows ``idx`` (sorted) of a block. ``keep_extras=False`` drops fieldvalues etc., as the
    AA does where it rebuilds events as plain POJOEvents (value, time, status, severity)."""
    idx = np.asarray(idx, dtype=np.int64)
    extras: dict[int, Sample] = {}
    if keep_extras and block.extras and len(idx):
        keys = np.fromiter(block.extras.keys(), dtype=np.int64, count=len(block.extras))
        pos = np.searchsorted(idx, keys)
        ok = pos < len(idx)
        ok[ok] = idx[pos[ok]] == keys[ok]
        extras = {int(p): block.extras[int(k)] for p, k in zip(pos[ok], keys[ok], strict=True)}
    return SampleBlock(
        block.secs[idx],
        block.nanos[idx],
        block.vals[idx],
        block.severity[idx],
        block.status[idx],
        extras,
    )


def concat_blocks(blocks: list[SampleBlock]) -> SampleBlock:
    if len(blocks) == 1:
        return blocks[0]
    extras: dict[int, Sample] = {}
    base = 0
    for b in blocks:
        for k, s in b.extras.items():
            extras[base + k] = s
        base += len(b)
    vals = [b.vals for b in blocks]
    if any(v.dtype == object for v in vals) and not all(v.dtype == object for v in vals):
        vals = [v.astype(object) for v in vals]
    return SampleBlock(
        np.concatenate([b.secs for b in blocks]),
        np.concatenate([b.nanos for b in blocks]),
        np.concatenate(vals),
        np.concatenate([b.severity for b in blocks]),
        np.concatenate([b.status for b in blocks]),
        extras,
    )


def _same_chunk_kind(a: PayloadInfo, b: PayloadInfo) -> bool:
    return a.type == b.type and a.year == b.year and a.pvname == b.pvname


class RowSink:
    """Collects selected raw rows (each with the header of the chunk it came from) and hands
    them out as few chunks as possible: neighbouring pieces of the same type and year merge."""

    def __init__(self) -> None:
        self._pieces: list[tuple[PayloadInfo, SampleBlock]] = []

    def add(self, header: PayloadInfo, block: SampleBlock) -> None:
        if len(block):
            self._pieces.append((header, block))

    def __len__(self) -> int:
        return sum(len(b) for _h, b in self._pieces)

    def flush(self) -> Iterator[Chunk]:
        pieces, self._pieces = self._pieces, []
        i = 0
        while i < len(pieces):
            header = pieces[i][0]
            j = i + 1
            while j < len(pieces) and _same_chunk_kind(header, pieces[j][0]):
                j += 1
            yield Chunk(header, concat_blocks([b for _h, b in pieces[i:j]]), None)
            i = j


def year_runs(secs: np.ndarray) -> Iterator[tuple[int, int, int]]:
    """(year, lo, hi) runs of a non-decreasing epoch-seconds array."""
    n = len(secs)
    lo = 0
    while lo < n:
        year = year_of(int(secs[lo]))
        hi = int(np.searchsorted(secs, year_start(year + 1), side="left"))
        yield year, lo, max(hi, lo + 1)
        lo = max(hi, lo + 1)


def vector_column(mat: np.ndarray) -> np.ndarray:
    """Rows of a 2-D float array as an object column of lists (the waveform value form)."""
    out = np.empty(len(mat), dtype=object)
    for i, row in enumerate(mat.tolist()):
        out[i] = row
    return out


@dataclass
class OutRows:
    """Rows made up by a post-processor, before they are cut into per-year chunks."""

    secs: np.ndarray
    nanos: np.ndarray
    vals: np.ndarray  # 1-D column, or 2-D float64 for waveform results
    severity: np.ndarray
    status: np.ndarray
    fields: list[dict[str, str] | None] | None = None  # per row, None = no fieldvalues


def emit_rows(
    proto: PayloadInfo, ptype: PayloadType, element_count: int | None, rows: OutRows
) -> Iterator[Chunk]:
    """Made-up rows as chunks of type ``ptype``, split at UTC year boundaries; the header keeps
    the input's PV name and header fields (EGU, PREC, ...) as the AA's stream desc does."""
    if len(rows.secs) == 0:
        return
    vals = vector_column(rows.vals) if rows.vals.ndim == 2 else rows.vals
    for year, lo, hi in year_runs(rows.secs):
        extras: dict[int, Sample] = {}
        if rows.fields is not None:
            for i in range(lo, hi):
                f = rows.fields[i]
                if f:
                    extras[i - lo] = Sample(
                        int(rows.secs[i]),
                        int(rows.nanos[i]),
                        _plain(vals[i]),
                        int(rows.severity[i]),
                        int(rows.status[i]),
                        fields=dict(f),
                    )
        block = SampleBlock(
            np.ascontiguousarray(rows.secs[lo:hi], dtype=np.int64),
            np.ascontiguousarray(rows.nanos[lo:hi], dtype=np.int64),
            vals[lo:hi],
            np.ascontiguousarray(rows.severity[lo:hi], dtype=np.int32),
            np.ascontiguousarray(rows.status[lo:hi], dtype=np.int32),
            extras,
        )
        header = PayloadInfo(ptype, proto.pvname, year, element_count, dict(proto.headers))
        yield Chunk(header, block, None)


def _plain(v: object) -> object:
    return v.item() if isinstance(v, np.generic) else v


def first_event_rule(chunks: Iterable[Chunk], start: Instant) -> Iterator[Chunk]:
    """The AA sends post-processed data through its MergeDedupConsumer, which keeps at most
    one sample before ``from`` (the latest) ahead of the rest; the same rule applies here so
    that, e.g., a fill bin before ``from`` is not sent next to a bin centre that is also before
    ``from``."""
    start_ns = to_ns(start)
    pending: Chunk | None = None
    it = iter(chunks)
    for chunk in it:
        b = chunk.block
        n = len(b)
        if n == 0:
            continue
        if row_ns(b, n - 1) < start_ns:
            pending = Chunk(chunk.header, take(b, np.array([n - 1])), None)
            continue
        k = int(np.searchsorted(ts_ns(b), start_ns, side="left"))
        if k > 0:
            pending = None
            chunk = Chunk(chunk.header, take(b, np.arange(k - 1, n)), None)
        if pending is not None:
            yield pending
            pending = None
        yield chunk
        yield from it
        return
    if pending is not None:
        yield pending


def java_double_str(x: float, single: bool = False) -> str:
    """Java's ``Double.toString`` (``Float.toString`` with ``single``): shortest digits, plain
    notation for 1e-3 <= |x| < 1e7, else ``d.dddE<n>``. Used where the AA puts numbers into
    strings (errorbar's ``stdz`` field, post-processor extensions)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    num = np.float32(x) if single else np.float64(x)
    text = np.format_float_scientific(num, unique=True, trim="-")
    mant, exp_text = text.split("e")
    exp = int(exp_text)
    neg = mant.startswith("-")
    digits = mant.lstrip("-").replace(".", "").rstrip("0") or "0"
    mag = abs(float(num))
    if 1e-3 <= mag < 1e7:
        point = exp + 1
        if point <= 0:
            body = "0." + "0" * (-point) + digits
        elif point >= len(digits):
            body = digits + "0" * (point - len(digits)) + ".0"
        else:
            body = digits[:point] + "." + digits[point:]
    else:
        body = digits[0] + "." + (digits[1:] or "0") + "E" + str(exp)
    return ("-" if neg else "") + body
