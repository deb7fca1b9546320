"""Vectorised PlainPB codec for scalar numeric streams (short, float, enum, int, double).

The general path (:func:`pvarchiver.pb.sample.sample_line` / ``decode_line``) goes through one
protobuf message per sample, which caps it at roughly 1.6 M samples/s. Storage append and
retrieval need more than that, so this module writes and parses the wire format directly with
numpy, one column of bytes at a time, never looping over samples in Python.

The contract is byte identity with the reference path: :func:`encode_scalar_lines` produces
exactly what protobuf would serialize (fields 1, 2, 3, then 4 and 5 only when non-zero, in field
order), escaped and LF-terminated. :func:`decode_scalar_lines` accepts only that canonical form
and flags every other line as ``fallback`` instead of guessing, so callers can hand the odd lines
(extra fields, reordered fields, corruption) to the reference decoder and still get the same
result as if everything had gone through protobuf.

Encoding, in outline: each sample becomes one row of an ``(n, W)`` byte matrix made of fixed
"slots" (tag byte + widest varint of the batch, or the fixed-width value), with a parallel
``keep`` mask marking the bytes a row really uses. Boolean compaction of the matrix yields the
unescaped lines already concatenated; the few bytes that need escaping are then found in that
flat array and widened into two-byte escape pairs with a single masked scatter.

Decoding, in outline: LFs delimit lines (an escaped stream has no other LF), the valid escape
pairs are collapsed with one compaction, and each field is parsed for all lines at once by
gathering the 8 bytes at every line's current position as one little-endian word (an unaligned
strided view of the buffer) and decoding the varint from that word with bit arithmetic.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .escape import CR, ESC, LF
from .schema import PayloadType

__all__ = ["SUPPORTED", "ScalarColumns", "decode_scalar_lines", "encode_scalar_lines"]

# Wire type per value kind: the tag byte of field 3 and how many bytes a fixed value occupies
# (0 = zigzag varint). Tags of the other fields are the same for every message type.
_TAG_SOY = 0x08  # field 1, varint
_TAG_NANO = 0x10  # field 2, varint
_TAG_SEVERITY = 0x20  # field 4, varint
_TAG_STATUS = 0x28  # field 5, varint


@dataclass(frozen=True, slots=True)
class _ValueSpec:
    tag: int
    width: int  # bytes of a fixed-width value; 0 for a zigzag varint
    wire: str  # numpy dtype of the fixed-width little-endian value, "" for varints
    native: type  # dtype of the decoded column


_SPECS: dict[PayloadType, _ValueSpec] = {
    PayloadType.SCALAR_SHORT: _ValueSpec(0x18, 0, "", np.int32),
    PayloadType.SCALAR_ENUM: _ValueSpec(0x18, 0, "", np.int32),
    PayloadType.SCALAR_FLOAT: _ValueSpec(0x1D, 4, "<f4", np.float32),
    PayloadType.SCALAR_INT: _ValueSpec(0x1D, 4, "<i4", np.int32),
    PayloadType.SCALAR_DOUBLE: _ValueSpec(0x19, 8, "<f8", np.float64),
}

#: Payload types this module can encode and decode.
SUPPORTED: frozenset[PayloadType] = frozenset(_SPECS)

# Escape code of each byte that must be escaped (see escape.py); 0 for all other bytes.
_ESCAPE_CODE = np.zeros(256, dtype=np.uint8)
_ESCAPE_CODE[ESC], _ESCAPE_CODE[LF], _ESCAPE_CODE[CR] = 1, 2, 3
# Byte encoded by escape codes 1..3 (index 0 unused).
_UNESCAPED = np.array([0, ESC, LF, CR], dtype=np.uint8)

# Zero bytes appended behind the unescaped buffer so that word gathers near its end stay in
# bounds; the furthest a parse position can run past the final LF is well under this.
_PAD = 64

# Rows encoded per pass: bounds the scratch matrices to a few MB, which stay in cache and make
# the whole encode ~25 % faster than one pass over a million rows.
_ENCODE_CHUNK = 65536

# Above one escape per this many bytes, unescaping switches from escape positions to masks.
_DENSE_ESCAPES = 16

_U32_THRESHOLDS = tuple(1 << (7 * k) for k in range(1, 5))


def _spec(ptype: PayloadType) -> _ValueSpec:
    try:
        return _SPECS[PayloadType(ptype)]
    except (KeyError, ValueError):
        raise ValueError(f"{ptype!r} is not a scalar numeric type handled by pb.fast") from None


# ============================================================================= encoding


def _integer_column(a: object, name: str, lo: int, hi: int, n: int | None) -> np.ndarray:
    """Validate an integer column against [lo, hi] the way protobuf would (it rejects
    out-of-range values and non-integers with an exception, never wraps them)."""
    arr = np.asarray(a)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if n is not None and arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} entries, expected {n}")
    if arr.dtype.kind not in "iub":
        if arr.size == 0:
            return np.zeros(0, dtype=np.int64)
        raise TypeError(f"{name} must be an integer array, got dtype {arr.dtype}")
    if arr.size and arr.dtype.kind != "b":
        mn, mx = int(arr.min()), int(arr.max())
        if mn < lo or mx > hi:
            raise ValueError(f"{name} values must lie in [{lo}, {hi}], got [{mn}, {mx}]")
    return arr


def _varint_lengths(v: np.ndarray, thresholds: tuple[int, ...]) -> np.ndarray:
    """Bytes of the varint of each value (uint8), by counting the 7-bit thresholds it reaches."""
    lens = np.ones(v.shape[0], dtype=np.uint8)
    for thr in thresholds:
        lens += v >= thr
    return lens


def _put_varint(
    mat: np.ndarray, keep: np.ndarray, col: int, v: np.ndarray, lens: np.ndarray, width: int
) -> None:
    """Write the varints of ``v`` into ``width`` columns from ``col``; unused bytes stay 0 and
    are masked out of ``keep``. ``lens`` 0 means the field is absent in that row."""
    for k in range(width):
        byte = ((v >> (7 * k)) & 0x7F).astype(np.uint8)
        if k + 1 < width:
            byte |= (lens > k + 1).view(np.uint8) << 7
        mat[:, col + k] = byte
        keep[:, col + k] = lens > k


def _optional_varint(
    a: np.ndarray | None, name: str, n: int
) -> tuple[np.ndarray, np.ndarray] | None:
    """(two's-complement uint64 values, varint lengths with 0 for absent) of an optional int32
    field, or None when no row carries it. Negative int32 values are sign-extended to 64 bits,
    which is why protobuf spends 10 bytes on them."""
    if a is None:
        return None
    arr = _integer_column(a, name, -(2**31), 2**31 - 1, n)
    if not arr.any():
        return None
    a32 = arr.astype(np.int32)
    lens = _varint_lengths(a32.view(np.uint32), _U32_THRESHOLDS)  # cheaper than 64-bit compares
    lens[a32 < 0] = 10
    lens[a32 == 0] = 0
    return a32.astype(np.int64).view(np.uint64), lens


def _value_column(spec: _ValueSpec, vals: object, n: int) -> np.ndarray:
    """Values converted to what protobuf would store: the wire dtype for fixed-width kinds, the
    zigzag-encoded uint32 for sint32."""
    arr = np.asarray(vals)
    if arr.ndim != 1:
        raise ValueError(f"vals must be one-dimensional, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise ValueError(f"vals has {arr.shape[0]} entries, expected {n}")
    if spec.wire.startswith("<f"):
        if arr.dtype.kind not in "fiub":
            raise TypeError(f"vals must be real numbers, got dtype {arr.dtype}")
        with np.errstate(over="ignore"):  # protobuf also turns out-of-range floats into inf
            return np.ascontiguousarray(arr, dtype=spec.wire)
    ints = _integer_column(arr, "vals", -(2**31), 2**31 - 1, None).astype(np.int32)
    if spec.width:
        return np.ascontiguousarray(ints, dtype=spec.wire)
    return ((ints << 1) ^ (ints >> 31)).view(np.uint32)


def encode_scalar_lines(
    ptype: PayloadType,
    secondsintoyear: np.ndarray,
    nanos: np.ndarray,
    vals: np.ndarray,
    severity: np.ndarray | None = None,
    status: np.ndarray | None = None,
) -> bytes:
    """Escaped, LF-terminated lines, identical to
    ``b''.join(sample_line(ptype, year, Sample(...)) ...)`` for samples without fields,
    repeatcount or fieldactualchange.

    severity/status are written only when non-zero (int32 varint: negative values take 10 bytes,
    as protobuf does). Out-of-range integers raise ValueError and non-numeric arrays TypeError,
    mirroring the exceptions protobuf raises, because a silently wrapped timestamp would corrupt
    the file. FLOAT values are rounded to float32 by numpy, which matches the C cast protobuf
    does.
    """
    spec = _spec(ptype)
    soy = _integer_column(secondsintoyear, "secondsintoyear", 0, 2**32 - 1, None)
    n = soy.shape[0]
    ns = _integer_column(nanos, "nanos", 0, 2**32 - 1, n)
    val = _value_column(spec, vals, n)
    sev = _optional_varint(severity, "severity", n)
    sta = _optional_varint(status, "status", n)
    if n == 0:
        return b""
    soy = soy.astype(np.uint32, copy=False)
    ns = ns.astype(np.uint32, copy=False)
    if n <= _ENCODE_CHUNK:
        return _encode_rows(spec, soy, ns, val, sev, sta)
    parts = []
    for i in range(0, n, _ENCODE_CHUNK):
        rows = slice(i, i + _ENCODE_CHUNK)
        parts.append(
            _encode_rows(
                spec,
                soy[rows],
                ns[rows],
                val[rows],
                None if sev is None else (sev[0][rows], sev[1][rows]),
                None if sta is None else (sta[0][rows], sta[1][rows]),
            )
        )
    return b"".join(parts)


def _encode_rows(
    spec: _ValueSpec,
    soy: np.ndarray,
    ns: np.ndarray,
    val: np.ndarray,
    sev: tuple[np.ndarray, np.ndarray] | None,
    sta: tuple[np.ndarray, np.ndarray] | None,
) -> bytes:
    """Encode validated, converted columns (see :func:`encode_scalar_lines`)."""
    n = soy.shape[0]
    soy_lens = _varint_lengths(soy, _U32_THRESHOLDS)
    ns_lens = _varint_lengths(ns, _U32_THRESHOLDS)
    val_lens = None if spec.width else _varint_lengths(val, _U32_THRESHOLDS)

    soy_w, ns_w = int(soy_lens.max()), int(ns_lens.max())
    val_w = spec.width if val_lens is None else int(val_lens.max())
    sev_w = int(sev[1].max()) if sev is not None else 0  # 0: no row of this chunk has it
    sta_w = int(sta[1].max()) if sta is not None else 0
    width = (1 + soy_w) + (1 + ns_w) + (1 + val_w) + (sev_w and 1 + sev_w) + (sta_w and 1 + sta_w)
    width += 1  # LF column

    mat = np.empty((n, width), dtype=np.uint8)
    keep = np.empty((n, width), dtype=np.bool_)
    rowlen = soy_lens.astype(np.int64) + ns_lens + 4  # three tags and the LF
    col = 0
    for tag, v, lens, w in ((_TAG_SOY, soy, soy_lens, soy_w), (_TAG_NANO, ns, ns_lens, ns_w)):
        mat[:, col] = tag
        keep[:, col] = True
        _put_varint(mat, keep, col + 1, v, lens, w)
        col += 1 + w
    mat[:, col] = spec.tag
    keep[:, col] = True
    if val_lens is None:
        mat[:, col + 1 : col + 1 + val_w] = val.view(np.uint8).reshape(n, val_w)
        keep[:, col + 1 : col + 1 + val_w] = True
        rowlen += val_w
    else:
        _put_varint(mat, keep, col + 1, val, val_lens, val_w)
        rowlen += val_lens
    col += 1 + val_w
    for tag, opt, w in ((_TAG_SEVERITY, sev, sev_w), (_TAG_STATUS, sta, sta_w)):
        if opt is None or w == 0:
            continue
        v, lens = opt
        present = lens > 0
        mat[:, col] = tag
        keep[:, col] = present
        _put_varint(mat, keep, col + 1, v, lens, w)
        rowlen += lens
        rowlen += present
        col += 1 + w
    # The terminator is a 0 placeholder until the escapable bytes have been located, so that the
    # search for bytes to escape does not have to tell terminators and data LFs apart.
    mat[:, col] = 0
    keep[:, col] = True

    out = mat[keep]
    special = out == ESC
    special |= out == LF
    special |= out == CR
    where = np.flatnonzero(special)
    out[np.cumsum(rowlen) - 1] = LF
    if where.size == 0:
        return out.tobytes()

    # Widen each escapable byte into ESC + code: the original bytes move right by the number of
    # escapes before them, which one masked assignment does for all of them at once.
    shifted = where + np.arange(where.size)
    res = np.empty(out.size + where.size, dtype=np.uint8)
    slots = np.ones(res.size, dtype=np.bool_)
    slots[shifted + 1] = False
    res[slots] = out
    res[shifted + 1] = _ESCAPE_CODE[out[where]]
    res[shifted] = ESC
    return res.tobytes()


# ============================================================================= decoding


@dataclass
class ScalarColumns:
    """Columns of a decoded run of lines; rows flagged ``fallback`` hold arbitrary values and
    must be decoded with :func:`pvarchiver.pb.decode_line` from ``buf[line_starts:line_ends]``."""

    secondsintoyear: np.ndarray  # uint32
    nanos: np.ndarray  # uint32
    vals: np.ndarray  # float64 for DOUBLE, float32 for FLOAT, int32 for SHORT/ENUM/INT
    severity: np.ndarray  # int32
    status: np.ndarray  # int32
    line_starts: np.ndarray  # int64 offsets into buf of each line's first byte
    line_ends: np.ndarray  # int64 offsets of each line's LF
    fallback: np.ndarray  # bool: line not in canonical form (or malformed)

    def __len__(self) -> int:
        return int(self.line_ends.shape[0])


def _empty_columns(spec: _ValueSpec) -> ScalarColumns:
    return ScalarColumns(
        secondsintoyear=np.zeros(0, dtype=np.uint32),
        nanos=np.zeros(0, dtype=np.uint32),
        vals=np.zeros(0, dtype=spec.native),
        severity=np.zeros(0, dtype=np.int32),
        status=np.zeros(0, dtype=np.int32),
        line_starts=np.zeros(0, dtype=np.int64),
        line_ends=np.zeros(0, dtype=np.int64),
        fallback=np.zeros(0, dtype=np.bool_),
    )


def _unaligned_view(u: np.ndarray, dtype: str) -> np.ndarray:
    """Array whose element i is the little-endian word starting at byte i of ``u``, so that one
    fancy-index gather fetches several bytes per line."""
    size = np.dtype(dtype).itemsize
    return np.ndarray(shape=(u.shape[0] - size + 1,), dtype=dtype, buffer=u, strides=(1,))


def _tagged_varint5(w: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the varint in bytes 1..5 of each gathered word (byte 0 is the field tag).

    Returns (value, byte length, terminated): ``terminated`` is False when none of the five
    bytes ends the varint; values are then meaningless. The lowest clear continuation bit marks
    the last byte; masking everything above it and squeezing out the continuation bits yields
    the value without a per-byte loop.
    """
    v = w >> np.uint64(8)
    stop = ~v & np.uint64(0x80_8080_8080)
    low = stop & (~stop + np.uint64(1))
    lens = (low > np.uint64(0x80)).astype(np.int64)
    lens += low > np.uint64(0x8000)
    lens += low > np.uint64(0x80_0000)
    lens += low > np.uint64(0x8000_0000)
    lens += 1
    v &= (low << np.uint64(1)) - np.uint64(1)
    val = v & np.uint64(0x7F)
    for k, mask in ((1, 0x3F80), (2, 0x1F_C000), (3, 0xFE0_0000), (4, 0x7_F000_0000)):
        val |= (v >> np.uint64(k)) & np.uint64(mask)
    return val, lens, stop != 0


def _varint_bytewise(u: np.ndarray, pos: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode up to 10-byte varints starting at ``pos`` one byte column at a time; slower than
    :func:`_tagged_varint5`, used only for the optional int32 fields, whose negative values are
    10 bytes long. Returns (value, length, acceptable)."""
    val = np.zeros(pos.shape[0], dtype=np.uint64)
    lens = np.zeros(pos.shape[0], dtype=np.int64)
    active = np.ones(pos.shape[0], dtype=np.bool_)
    byte = np.zeros(pos.shape[0], dtype=np.uint8)
    for k in range(10):
        byte = u[pos + k]
        part = (byte & 0x7F).astype(np.uint64) << np.uint64(7 * k)
        val |= np.where(active, part, np.uint64(0))
        lens += active
        active &= byte >= 0x80
        if not active.any():
            break
    # An unterminated varint, or a tenth byte carrying bits beyond 64, is not canonical.
    acceptable = ~active & ~((lens == 10) & (byte > 1))
    return val, lens, acceptable


def _optional_int32(
    u: np.ndarray, pos: np.ndarray, ends: np.ndarray, tag: int, out: np.ndarray, bad: np.ndarray
) -> None:
    """Parse an optional int32 field for every line whose next byte is its tag, advancing
    ``pos`` past it. int32 varints are truncated to 32 bits, as protobuf does."""
    rows = np.flatnonzero(pos < ends)
    if rows.size == 0:
        return
    rows = rows[u[pos[rows]] == tag]
    if rows.size == 0:
        return
    start = pos[rows] + 1
    val, lens, acceptable = _varint_bytewise(u, start)
    out[rows] = val.astype(np.uint32).view(np.int32)
    pos[rows] = start + lens
    bad[rows] |= ~acceptable


def _unescape(
    b: np.ndarray, starts: np.ndarray, ends: np.ndarray, bad: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Unescaped, zero-padded copy of ``b[:ends[-1] + 1]`` and the LF offsets in that copy.

    Only ESC 01/02/03 pairs are collapsed; a line holding any other ESC sequence (which the
    AA's lenient reader would accept but our encoder never writes) is flagged in ``bad``.
    Escapes are normally rare, so they are handled through their positions; a stream dense
    with them (several per line) is cheaper to handle with whole-buffer masks instead.
    """
    total = int(ends[-1]) + 1
    body = b[:total]
    is_esc = body == ESC
    count = int(np.count_nonzero(is_esc))
    if count == 0:
        u = np.zeros(total + _PAD, dtype=np.uint8)
        u[:total] = body
        return u, ends
    if count * _DENSE_ESCAPES > total:
        return _unescape_dense(body, is_esc, starts, ends, bad)

    esc = np.flatnonzero(is_esc)
    codes = body[esc + 1]  # the last byte is a LF, so esc + 1 is in range
    valid = (codes - np.uint8(1)) < 3
    if not valid.all():
        bad[np.searchsorted(ends, esc[~valid])] = True
        esc, codes = esc[valid], codes[valid]
    keep = np.ones(total, dtype=np.bool_)
    keep[esc] = False
    size = total - esc.size
    u = np.zeros(size + _PAD, dtype=np.uint8)
    u[:size] = body[keep]  # (np.compress with out= is several times slower)
    u[esc - np.arange(esc.size)] = _UNESCAPED[codes]  # the code byte took the ESC's place
    # Each LF moves left by the number of escapes before it. Search with whichever of the two
    # sorted arrays is shorter as the needles.
    if esc.size < ends.shape[0]:
        per_line = np.bincount(np.searchsorted(ends, esc), minlength=ends.shape[0])
        return u, ends - np.cumsum(per_line)
    return u, ends - np.searchsorted(esc, ends)


def _unescape_dense(
    body: np.ndarray, is_esc: np.ndarray, starts: np.ndarray, ends: np.ndarray, bad: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_unescape` for buffers with many escapes, using only byte-wide masks: index
    arrays of the escapes would take 8 bytes per escape and scatter/gather on each of them."""
    total = body.shape[0]
    pair = np.zeros(total, dtype=np.bool_)  # ESC that starts a valid pair
    np.logical_and(is_esc[:-1], (body[1:] - np.uint8(1)) < 3, out=pair[:-1])
    lone = is_esc ^ pair
    if lone.any():
        bad[np.searchsorted(ends, np.flatnonzero(lone))] = True
    code = np.zeros(total, dtype=np.bool_)  # byte that follows a valid ESC
    code[1:] = pair[:-1]
    mapped = body.copy()
    for c in (1, 2, 3):
        np.putmask(mapped, code & (body == c), _UNESCAPED[c])
    size = total - int(np.count_nonzero(pair))
    u = np.zeros(size + _PAD, dtype=np.uint8)
    u[:size] = mapped[~pair]
    # Segment i runs from line i's first byte through its LF, so segments are never empty.
    per_line = np.add.reduceat(pair.view(np.uint8), starts, dtype=np.int64)
    return u, ends - np.cumsum(per_line)


def decode_scalar_lines(ptype: PayloadType, buf: bytes | bytearray | memoryview) -> ScalarColumns:
    """Parse complete escaped lines (each ending with LF, no header) into columns.

    Never raises on bad data: any line that is not exactly fields 1, 2, 3 and optionally 4
    and 5 in canonical encoding is flagged ``fallback``. Bytes after the last LF do not form a
    line and are ignored.
    """
    spec = _spec(ptype)
    b = np.frombuffer(buf, dtype=np.uint8)
    ends = np.flatnonzero(b == LF).astype(np.int64, copy=False)
    n = ends.shape[0]
    if n == 0:
        return _empty_columns(spec)
    starts = np.empty(n, dtype=np.int64)
    starts[0] = 0
    starts[1:] = ends[:-1] + 1

    bad = np.zeros(n, dtype=np.bool_)
    u, uends = _unescape(b, starts, ends, bad)
    pos = np.empty(n, dtype=np.int64)
    pos[0] = 0
    pos[1:] = uends[:-1] + 1
    words = _unaligned_view(u, "<u8")

    # Fields 1 and 2: tag + uint32 varint each.
    uint_fields = []
    for tag in (_TAG_SOY, _TAG_NANO):
        w = words[pos]
        val, lens, term = _tagged_varint5(w)
        bad |= (w & np.uint64(0xFF)) != tag
        bad |= ~term
        bad |= (val >> np.uint64(32)) != 0
        uint_fields.append(val.astype(np.uint32))
        pos += 1 + lens

    # Field 3: the value.
    bad |= u[pos] != spec.tag
    if spec.width == 8:
        vals = words[pos + 1].view(spec.wire).astype(spec.native, copy=False)
    elif spec.width == 4:
        vals = _unaligned_view(u, "<u4")[pos + 1].view(spec.wire).astype(spec.native, copy=False)
    else:
        zz, lens, term = _tagged_varint5(words[pos])
        bad |= ~term
        bad |= (zz >> np.uint64(32)) != 0
        z = zz.astype(np.uint32)
        vals = ((z >> np.uint32(1)) ^ (np.uint32(0) - (z & np.uint32(1)))).view(np.int32)
    pos += 1 + (spec.width or lens)

    # Fields 4 and 5, both optional, in that order; then the line must be over.
    severity = np.zeros(n, dtype=np.int32)
    status = np.zeros(n, dtype=np.int32)
    if (pos < uends).any():
        _optional_int32(u, pos, uends, _TAG_SEVERITY, severity, bad)
        _optional_int32(u, pos, uends, _TAG_STATUS, status, bad)
    bad |= pos != uends

    return ScalarColumns(
        secondsintoyear=uint_fields[0],
        nanos=uint_fields[1],
        vals=vals,
        severity=severity,
        status=status,
        line_starts=starts,
        line_ends=ends,
        fallback=bad,
    )
