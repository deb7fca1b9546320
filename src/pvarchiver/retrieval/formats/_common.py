"""Pieces shared by the renderers: output batching, row runs, per-type value text."""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from itertools import chain
from typing import Any

import numpy as np

from ...pb import PayloadType
from ..model import Chunk, SampleBlock
from ._numtext import FloatCol, IntCol, Segment, Specials, float_strings

#: Pieces handed to the HTTP layer are at least this big (when the data allows): one write per
#: piece, and few enough pieces that per-piece overhead is noise.
PIECE = 256 * 1024

# A chunk whose rows carry extras this densely is rendered row by row; sparser extras split
# the vectorised rendering into runs around them.
_DENSE_EXTRAS = 16

_FLOAT_TYPES = {PayloadType.SCALAR_DOUBLE: np.float64, PayloadType.SCALAR_FLOAT: np.float32}
_INT_TYPES = (PayloadType.SCALAR_SHORT, PayloadType.SCALAR_INT, PayloadType.SCALAR_ENUM)
_INT_WAVES = (PayloadType.WAVEFORM_SHORT, PayloadType.WAVEFORM_INT, PayloadType.WAVEFORM_ENUM)
NUMERIC_SCALARS = frozenset((*_FLOAT_TYPES, *_INT_TYPES))


class Pieces:
    """Accumulates output and releases it in pieces of at least :data:`PIECE` bytes, so a
    generator yields a few large writes instead of one per line or per chunk."""

    def __init__(self) -> None:
        self._parts: list[bytes] = []
        self.size = 0

    def add(self, data: bytes) -> None:
        if data:
            self._parts.append(data)
            self.size += len(data)

    @property
    def full(self) -> bool:
        return self.size >= PIECE

    def take(self) -> bytes:
        parts, self._parts, self.size = self._parts, [], 0
        return parts[0] if len(parts) == 1 else b"".join(parts)


def coalesce(pieces: Iterable[bytes]) -> Iterator[bytes]:
    """The same bytes in pieces of at least :data:`PIECE` bytes (except the last)."""
    out = Pieces()
    for p in pieces:
        if not out.size and len(p) >= PIECE:
            yield p
            continue
        out.add(p)
        if out.full:
            yield out.take()
    if out.size:
        yield out.take()


def peek(chunks: Iterator[Chunk]) -> tuple[Chunk | None, Iterator[Chunk]]:
    """The first chunk (to learn a PV's type before writing its meta) and all chunks."""
    it = iter(chunks)
    first = next(it, None)
    if first is None:
        return None, iter(())
    return first, chain((first,), it)


def row_runs(block: SampleBlock) -> Iterator[tuple[int, int, bool]]:
    """(start, stop, is_extra): ranges of plain rows, and each row with extras on its own.
    A chunk dense with extras comes out as a single run flagged ``is_extra`` (row by row)."""
    n = len(block)
    keys = sorted(i for i in block.extras if 0 <= i < n)
    if len(keys) * _DENSE_EXTRAS > n:
        yield 0, n, True
        return
    pos = 0
    for i in keys:
        if i > pos:
            yield pos, i, False
        yield i, i + 1, True
        pos = i + 1
    if pos < n:
        yield pos, n, False


def numeric_segment(ptype: PayloadType, vals: np.ndarray, specials: Specials) -> Segment:
    """The value column of a numeric scalar chunk as a vectorised text segment."""
    ftype = _FLOAT_TYPES.get(ptype)
    if ftype is not None:
        return FloatCol(np.asarray(vals, dtype=ftype), specials)
    return IntCol(np.asarray(vals).astype(np.int64))


def is_columnar(chunk: Chunk) -> bool:
    """Whether the chunk's values are a numeric column the vectorised renderers can take."""
    return chunk.header.type in NUMERIC_SCALARS and chunk.block.vals.dtype != object


# ----------------------------------------------------------------------------- value text


def json_str(s: object) -> str:
    """A JSON string literal (ASCII-only, so any client decodes it whatever it assumes)."""
    return json.dumps(s if isinstance(s, str) else str(s))


def signed_byte(v: Any) -> int:
    """A ScalarByte value as the AA prints it: a Java ``byte``, i.e. signed."""
    if isinstance(v, bytes | bytearray | memoryview):
        b = bytes(v)
        return int.from_bytes(b[:1], "little", signed=True) if b else 0
    return (int(v) + 128) % 256 - 128


def signed_bytes(v: Any) -> list[int]:
    """VectorChar / V4GenericBytes content as signed numbers (Java bytes, as the AA)."""
    if isinstance(v, bytes | bytearray | memoryview):
        out: list[int] = np.frombuffer(bytes(v), dtype=np.int8).tolist()
        return out
    return [signed_byte(x) for x in v]


def _join(items: list[str]) -> str:
    return "[" + ",".join(items) + "]"


def val_texts(ptype: PayloadType, vals: Sequence[Any], specials: Specials) -> list[str]:
    """The text of each value the way the AA's ``SampleValue.toString``/``toJSONString``
    writes it (numbers in Python's shortest form, arrays without spaces). One call per chunk,
    so that float waveforms are formatted in a single vectorised pass."""
    ftype = _FLOAT_TYPES.get(ptype)
    if ftype is not None:
        arr = np.asarray([float(v) for v in vals], dtype=ftype)
        return [b.decode() for b in float_strings(arr, specials)]
    if ptype in _INT_TYPES:
        return [str(int(v)) for v in vals]
    if ptype is PayloadType.SCALAR_STRING:
        return [json_str(v) for v in vals]
    if ptype is PayloadType.SCALAR_BYTE:
        return [str(signed_byte(v)) for v in vals]
    if ptype is PayloadType.WAVEFORM_STRING:
        return [_join([json_str(x) for x in v]) for v in vals]
    if ptype in (PayloadType.WAVEFORM_DOUBLE, PayloadType.WAVEFORM_FLOAT):
        dtype = np.float64 if ptype is PayloadType.WAVEFORM_DOUBLE else np.float32
        arrays = [np.asarray(v, dtype=dtype).ravel() for v in vals]
        if not arrays:
            return []
        texts = [b.decode() for b in float_strings(np.concatenate(arrays), specials)]
        out, pos = [], 0
        for a in arrays:
            out.append(_join(texts[pos : pos + len(a)]))
            pos += len(a)
        return out
    if ptype in _INT_WAVES:
        return [
            _join(list(map(str, np.asarray(v).astype(np.int64).ravel().tolist()))) for v in vals
        ]
    # WAVEFORM_BYTE, V4_GENERIC_BYTES
    return [_join(list(map(str, signed_bytes(v)))) for v in vals]


def fields_json(fields: dict[str, str] | None) -> str:
    """``, "fields": { "k": "v","k2": "v2"}`` as the AA appends it, or nothing."""
    if not fields:
        return ""
    pairs = ",".join(f"{json_str(k)}: {json_str(v)}" for k, v in fields.items())
    return ', "fields": { ' + pairs + "}"
