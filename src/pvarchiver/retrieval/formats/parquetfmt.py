"""``getData.parquet`` / ``getDataForPVs.parquet``: the answer as one Parquet file, for
analysis tools (``pandas.read_parquet(url)``, ``polars.read_parquet(url)``, DuckDB).

Not an AA format (the AA has none like it). One row per sample: ``pv`` (dictionary-encoded
string), ``timestamp`` (UTC, nanoseconds), ``value``, ``severity``, ``status``. ``value`` is a
float64 for numeric scalars (int32 values are exact in it), a list of float64 for numeric
waveforms, a string for strings, a list of strings for string waveforms, binary for the byte
types; when several PVs of different kinds share one answer, ``value`` holds each sample's
text (numbers as ``repr``, lists as JSON). The file streams out: a row group every
``ROWS_PER_GROUP`` rows, the footer at the end, so memory stays flat for long ranges.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterable, Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ...pb import PayloadType
from ..model import Chunk, PVStream

ROWS_PER_GROUP = 256 * 1024

_BYTES = {PayloadType.SCALAR_BYTE, PayloadType.WAVEFORM_BYTE, PayloadType.V4_GENERIC_BYTES}
_KIND_TYPE = {
    "float": pa.float64(),
    "floatlist": pa.list_(pa.float64()),
    "string": pa.string(),
    "stringlist": pa.list_(pa.string()),
    "binary": pa.binary(),
}


def kind_of(ptype: PayloadType | None) -> str:
    """How ``value`` holds a PV of ``ptype`` (None, a PV with no data: numeric)."""
    if ptype is None:
        return "float"
    if ptype in _BYTES:
        return "binary"
    if ptype == PayloadType.SCALAR_STRING:
        return "string"
    if ptype == PayloadType.WAVEFORM_STRING:
        return "stringlist"
    return "floatlist" if ptype.is_vector else "float"


def schema_for(kind: str) -> pa.Schema:
    return pa.schema(
        [
            pa.field("pv", pa.dictionary(pa.int32(), pa.string()), nullable=False),
            pa.field("timestamp", pa.timestamp("ns", tz="UTC"), nullable=False),
            pa.field("value", _KIND_TYPE[kind]),
            pa.field("severity", pa.int32(), nullable=False),
            pa.field("status", pa.int32(), nullable=False),
        ]
    )


def _text(v: object) -> str:
    if isinstance(v, bytes):
        return v.hex()
    if isinstance(v, list):
        return json.dumps(v)
    return repr(v) if isinstance(v, float) else str(v)


def _values(chunk: Chunk, kind: str, own: str) -> pa.Array:
    vals = chunk.block.vals
    if kind != own:  # mixed kinds in one answer: text
        return pa.array(
            [_text(v.item() if isinstance(v, np.generic) else v) for v in vals], pa.string()
        )
    if kind == "float":
        return pa.array(np.asarray(vals, dtype=np.float64), pa.float64())
    if kind == "floatlist":
        return pa.array([[float(x) for x in v] for v in vals], _KIND_TYPE[kind])
    return pa.array(list(vals), _KIND_TYPE[kind])


def chunk_table(name: str, chunk: Chunk, kind: str, own: str) -> pa.Table:
    b = chunk.block
    n = len(b)
    ts = np.asarray(b.secs, dtype=np.int64) * 1_000_000_000 + np.asarray(b.nanos, dtype=np.int64)
    pv = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, np.int32)), pa.array([name]))
    return pa.Table.from_arrays(
        [
            pv,
            pa.array(ts, pa.timestamp("ns", tz="UTC")),
            _values(chunk, kind, own),
            pa.array(np.asarray(b.severity, np.int32)),
            pa.array(np.asarray(b.status, np.int32)),
        ],
        schema=schema_for(kind),
    )


class _Sink(io.RawIOBase):
    """Collects what the writer writes, handed out piece by piece."""

    def __init__(self) -> None:
        self.pieces: list[bytes] = []
        self.pos = 0

    def writable(self) -> bool:
        return True

    def write(self, b: bytes) -> int:  # type: ignore[override]
        self.pieces.append(bytes(b))
        self.pos += len(b)
        return len(b)

    def tell(self) -> int:
        return self.pos

    def take(self) -> bytes:
        out = b"".join(self.pieces)
        self.pieces = []
        return out


def render_parquet(streams: Iterable[PVStream]) -> Iterator[bytes]:
    streams = list(streams)
    kinds = {kind_of(s.type) for s in streams if s.type is not None}
    kind = kinds.pop() if len(kinds) == 1 else ("string" if kinds else "float")
    sink = _Sink()
    writer = pq.ParquetWriter(sink, schema_for(kind), compression="zstd")
    pending: list[pa.Table] = []
    rows = 0
    for s in streams:
        for chunk in s.chunks:
            if len(chunk) == 0:
                continue
            pending.append(chunk_table(s.name, chunk, kind, kind_of(chunk.header.type)))
            rows += len(chunk)
            if rows >= ROWS_PER_GROUP:
                writer.write_table(pa.concat_tables(pending).unify_dictionaries().combine_chunks())
                pending, rows = [], 0
                piece = sink.take()
                if piece:
                    yield piece
    if pending:
        writer.write_table(pa.concat_tables(pending).unify_dictionaries().combine_chunks())
    writer.close()
    yield sink.take()
