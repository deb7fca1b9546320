"""``.mat``: a MATLAB level-5 MAT-file, laid out as the AA's MatlabResponse writes it.

Two variables, as MATLAB's ``load`` sees them:

* ``header``: struct with char fields ``source`` ("Archiver appliance"), ``pvName``,
  ``from`` and ``to`` (ISO 8601, UTC, milliseconds).
* ``data``: struct with ``epochSeconds`` (N x 1 uint64, UTC), ``values`` (N x 1 double for
  scalars, N x NELM double for waveforms), ``nanos`` (N x 1 uint64) and ``isDST`` (N x 1 uint8,
  whether the time was daylight saving time in the server's local time zone; all 0 in UTC).

For one PV both are 1x1 structs, exactly the AA's file. For several PVs (``getDataForPVs.mat``,
which the AA refuses) they are 1xK struct arrays, one element per PV in request order:
``header(2).pvName`` names the PV whose samples are ``data(2).values``.

A MAT-file states every element's byte size before its data, and the sizes depend on the
number of samples, so the columns are first spooled to temporary files (memory stays flat for
any time range; the PVs share one set of four files, each PV a segment of them) and the file
is then streamed out of them; ``values`` is column-major in the file, so a waveform matrix is
read back column by column through a memory map. The writer is written from the format's
published description (uncompressed elements only), not from the AA's JMatIO.

Details and differences from the AA:

* Every PV of the request is written (the AA serves ``.mat`` for single PVs only, and would
  keep only the last PV's samples if it were given several).
* NELM is the first sample's element count, as in the AA; longer waveforms are cut to it and
  shorter ones padded with NaN (the AA pads with 0, which cannot be told from real zeros).
* Values that are not numbers (strings, string waveforms, V4 structures) are NaN; the AA fails
  the request. ScalarByte/VectorChar are signed, as Java bytes.
* ``from``/``to`` come from ``PVStream.extra["from"|"to"]`` (an ``(epoch s, ns)`` Instant or
  a string) when the caller provides them, else from the first and last sample.
* A level-5 element cannot exceed 4 GiB; a larger result (some 150 M scalar samples in all)
  raises ``ValueError`` before anything is sent. Level 7.3 (HDF5) would be needed for more.
"""

from __future__ import annotations

import struct
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import IO, Any

import numpy as np

from ...pb import PayloadType
from ..model import Chunk, PVStream
from ._common import coalesce, signed_byte, signed_bytes

__all__ = ["render_mat"]

# data types and array classes of the MAT-file level 5 format
_MI_INT8, _MI_UINT8, _MI_UINT16, _MI_INT32, _MI_UINT32 = 1, 2, 4, 5, 6
_MI_DOUBLE, _MI_UINT64, _MI_MATRIX = 9, 13, 14
_MX_STRUCT, _MX_CHAR, _MX_DOUBLE, _MX_UINT8, _MX_UINT64 = 2, 4, 6, 9, 15

_FIELD_NAME_LEN = 32  # bytes reserved per struct field name, NUL included
_MAX_ELEMENT = 2**32 - 1
_READ = 1 << 20


def _pad(n: int) -> bytes:
    return b"\0" * (-n % 8)


def _element(mi_type: int, payload: bytes) -> bytes:
    """A data element; payloads of up to 4 bytes use the compact 'small element' form."""
    n = len(payload)
    if n <= 4:
        return struct.pack("<HH", mi_type, n) + payload.ljust(4, b"\0")
    return struct.pack("<II", mi_type, n) + payload + _pad(n)


def _array_head(mx_class: int, dims: tuple[int, int], name: str) -> bytes:
    """Array flags, dimensions and name: the subelements every matrix starts with."""
    return (
        _element(_MI_UINT32, struct.pack("<II", mx_class, 0))
        + _element(_MI_INT32, struct.pack("<2i", *dims))
        + _element(_MI_INT8, name.encode("ascii"))
    )


def _matrix(body: bytes) -> bytes:
    return struct.pack("<II", _MI_MATRIX, len(body)) + body


def _char(name: str, text: str) -> bytes:
    units = text.encode("utf-16-le")
    return _matrix(_array_head(_MX_CHAR, (1, len(units) // 2), name) + _element(_MI_UINT16, units))


def _struct_head(name: str, fields: list[str], count: int = 1) -> bytes:
    """A 1 x ``count`` struct array; its elements' fields follow, element by element."""
    names = b"".join(f.encode("ascii").ljust(_FIELD_NAME_LEN, b"\0") for f in fields)
    return (
        _array_head(_MX_STRUCT, (1, count), name)
        + _element(_MI_INT32, struct.pack("<i", _FIELD_NAME_LEN))
        + _element(_MI_INT8, names)
    )


def _file_header() -> bytes:
    text = f"MATLAB 5.0 MAT-file, Platform: pvarchiver, Created on: {time.asctime(time.gmtime())}"
    return text.encode("ascii").ljust(116, b" ") + b"\0" * 8 + struct.pack("<H", 0x0100) + b"IM"


def _iso(secs: int, nanos: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + f".{nanos // 1_000_000:03d}Z"


def _bound(value: Any, fallback: tuple[int, int] | None) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, tuple) and len(value) == 2:
        return _iso(int(value[0]), int(value[1]))
    return _iso(*fallback) if fallback is not None else ""


# ----------------------------------------------------------------------------- columns


def _isdst(secs: np.ndarray) -> np.ndarray:
    """Daylight saving flags in the local time zone, by bisection: DST changes at most twice
    a year, so only a few dozen ``localtime`` calls are needed per chunk."""
    out = np.zeros(len(secs), dtype=np.uint8)
    if not time.daylight or len(secs) == 0:
        return out

    def dst(i: int) -> int:
        return 1 if time.localtime(int(secs[i])).tm_isdst > 0 else 0

    stack = [(0, len(secs) - 1, dst(0), dst(len(secs) - 1))]
    while stack:
        lo, hi, dlo, dhi = stack.pop()
        # same flag at both ends and less than a month apart: no change in between
        if dlo == dhi and int(secs[hi]) - int(secs[lo]) < 28 * 86400:
            out[lo : hi + 1] = dlo
        elif hi - lo <= 1:
            out[lo], out[hi] = dlo, dhi
        else:
            mid = (lo + hi) // 2
            dmid = dst(mid)
            stack.append((lo, mid, dlo, dmid))
            stack.append((mid, hi, dmid, dhi))
    return out


_NUMERIC_WAVES = (
    PayloadType.WAVEFORM_SHORT,
    PayloadType.WAVEFORM_FLOAT,
    PayloadType.WAVEFORM_ENUM,
    PayloadType.WAVEFORM_INT,
    PayloadType.WAVEFORM_DOUBLE,
)


def _scalar(ptype: PayloadType, v: Any) -> float:
    if ptype is PayloadType.SCALAR_BYTE:
        return float(signed_byte(v))
    if ptype in (PayloadType.SCALAR_STRING, PayloadType.V4_GENERIC_BYTES) or ptype.is_vector:
        return float("nan")
    return float(v)


def _row(ptype: PayloadType, v: Any, ncols: int) -> np.ndarray:
    row = np.full(ncols, np.nan)
    if ptype in _NUMERIC_WAVES:
        a = np.asarray(v, dtype=np.float64).ravel()[:ncols]
    elif ptype is PayloadType.WAVEFORM_BYTE:
        a = np.asarray(signed_bytes(v)[:ncols], dtype=np.float64)
    else:
        return row
    row[: len(a)] = a
    return row


def _element_count(chunk: Chunk) -> int:
    ptype = chunk.header.type
    if not ptype.is_vector or ptype is PayloadType.WAVEFORM_STRING:
        return 1
    v = chunk.block.sample(0).val
    return max(1, len(v))


def _values(chunk: Chunk, ncols: int) -> np.ndarray:
    """(rows, ncols) float64 values of a chunk."""
    b, ptype = chunk.block, chunk.header.type
    n = len(b)
    if ptype.is_vector:
        out = np.empty((n, ncols))
        for i in range(n):
            out[i] = _row(ptype, b.sample(i).val, ncols)
        return out
    if b.vals.dtype != object:
        col = b.vals.astype(np.float64)
        for i, s in b.extras.items():
            col[i] = _scalar(ptype, s.val)
        return col.reshape(n, 1)
    col = np.array([_scalar(ptype, b.sample(i).val) for i in range(n)])
    return col.reshape(n, 1)


@dataclass
class _Segment:
    """One PV's rows in the shared spool files (rows are contiguous: PVs are spooled one
    after the other)."""

    name: str
    extra: dict[str, object]
    row0: int  # first row in the secs/nanos/dst files
    vals0: int  # first byte in the values file
    n: int = 0
    ncols: int = 0
    first: tuple[int, int] | None = None
    last: tuple[int, int] | None = None


class _Spool:
    """The four columns of ``data`` on disk, for every PV of the response."""

    def __init__(self) -> None:
        self.secs = tempfile.TemporaryFile()
        self.nanos = tempfile.TemporaryFile()
        self.dst = tempfile.TemporaryFile()
        self.vals = tempfile.TemporaryFile()
        self.segments: list[_Segment] = []
        self._rows = 0
        self._vals_bytes = 0

    def begin(self, name: str, extra: dict[str, object]) -> None:
        self.segments.append(_Segment(name, extra, self._rows, self._vals_bytes))

    def add(self, chunk: Chunk) -> None:
        b = chunk.block
        if len(b) == 0:
            return
        seg = self.segments[-1]
        if not seg.ncols:
            seg.ncols = _element_count(chunk)
            seg.first = (int(b.secs[0]), int(b.nanos[0]))
        seg.last = (int(b.secs[-1]), int(b.nanos[-1]))
        self.secs.write(b.secs.astype("<u8").tobytes())
        self.nanos.write(b.nanos.astype("<u8").tobytes())
        self.dst.write(_isdst(b.secs).tobytes())
        vals = _values(chunk, seg.ncols).astype("<f8").tobytes()
        self.vals.write(vals)
        seg.n += len(b)
        self._rows += len(b)
        self._vals_bytes += len(vals)

    def close(self) -> None:
        for f in (self.secs, self.nanos, self.dst, self.vals):
            f.close()


def _stream_file(f: IO[bytes], offset: int, nbytes: int) -> Iterator[bytes]:
    f.flush()
    f.seek(offset)
    left = nbytes
    while left > 0:
        data = f.read(min(_READ, left))
        if not data:
            raise OSError("spool file shorter than expected")
        left -= len(data)
        yield data


def _stream_columns(sp: _Spool, seg: _Segment) -> Iterator[bytes]:
    """A PV's ``values`` column-major: column 0 of every row, then column 1, ..."""
    if seg.ncols <= 1 or seg.n == 0:
        yield from _stream_file(sp.vals, seg.vals0, seg.n * seg.ncols * 8)
        return
    sp.vals.flush()
    mm = np.memmap(sp.vals, dtype="<f8", mode="r", offset=seg.vals0, shape=(seg.n, seg.ncols))
    step = max(1, _READ // 8)
    try:
        for c in range(seg.ncols):
            for r in range(0, seg.n, step):
                yield np.ascontiguousarray(mm[r : r + step, c]).tobytes()
    finally:
        del mm


class _Column:
    """A numeric field of ``data`` whose bytes come from a spool file."""

    def __init__(self, name: str, mx: int, mi: int, rows: int, cols: int, itemsize: int) -> None:
        self.nbytes = rows * cols * itemsize
        self.head = _array_head(mx, (rows, cols), "")
        self.mi = mi
        self.size = 8 + len(self.head) + 8 + self.nbytes + len(_pad(self.nbytes))
        self.name = name

    def pieces(self, body: Iterator[bytes]) -> Iterator[bytes]:
        yield _matrix_header(self.size - 8) + self.head + struct.pack("<II", self.mi, self.nbytes)
        yield from body
        yield _pad(self.nbytes)


def _matrix_header(nbytes: int) -> bytes:
    if nbytes > _MAX_ELEMENT:
        raise ValueError(
            "result too large for a MAT-file (level 5 elements are limited to 4 GiB); "
            "request a shorter time range or a post-processor"
        )
    return struct.pack("<II", _MI_MATRIX, nbytes)


def render_mat(streams: Iterable[PVStream]) -> Iterator[bytes]:
    """``application/matlab`` body of ``getData.mat`` / ``getDataForPVs.mat``."""
    return coalesce(_render(streams))


_HEADER_FIELDS = ["source", "pvName", "from", "to"]
_DATA_FIELDS = ["epochSeconds", "values", "nanos", "isDST"]


def _columns(sp: _Spool, seg: _Segment) -> list[tuple[_Column, Iterator[bytes]]]:
    """The four fields of one ``data`` element, each with the (lazy) source of its bytes."""
    n, ncols = seg.n, max(seg.ncols, 1)
    return [
        (
            _Column("epochSeconds", _MX_UINT64, _MI_UINT64, n, 1, 8),
            _stream_file(sp.secs, seg.row0 * 8, n * 8),
        ),
        (_Column("values", _MX_DOUBLE, _MI_DOUBLE, n, ncols, 8), _stream_columns(sp, seg)),
        (
            _Column("nanos", _MX_UINT64, _MI_UINT64, n, 1, 8),
            _stream_file(sp.nanos, seg.row0 * 8, n * 8),
        ),
        (_Column("isDST", _MX_UINT8, _MI_UINT8, n, 1, 1), _stream_file(sp.dst, seg.row0, n)),
    ]


def _render(streams: Iterable[PVStream]) -> Iterator[bytes]:
    sp = _Spool()
    try:
        for stream in streams:
            sp.begin(stream.meta.get("name") or stream.name, stream.extra)
            for chunk in stream.chunks:
                sp.add(chunk)
        if not sp.segments:  # no PV at all: one empty element, as for a PV without data
            sp.begin("", {})
        segs = sp.segments
        header = _matrix(
            _struct_head("header", _HEADER_FIELDS, len(segs))
            + b"".join(
                _char("", "Archiver appliance")
                + _char("", seg.name)
                + _char("", _bound(seg.extra.get("from"), seg.first))
                + _char("", _bound(seg.extra.get("to"), seg.last))
                for seg in segs
            )
        )
        columns = [_columns(sp, seg) for seg in segs]
        data_head = _struct_head("data", _DATA_FIELDS, len(segs))
        data_size = len(data_head) + sum(c.size for cols in columns for c, _ in cols)
        first = _file_header() + header + _matrix_header(data_size) + data_head
        for cols in columns:
            for c, _ in cols:
                _matrix_header(c.size - 8)  # size check before anything is sent
        yield first
        for cols in columns:
            for col, body in cols:
                yield from col.pieces(body)
    finally:
        sp.close()
