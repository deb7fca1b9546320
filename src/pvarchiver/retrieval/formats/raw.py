"""``.raw``: the AA's PB-over-HTTP stream (``PBRAWResponse``), which Phoebus, Grafana's backend,
pyarchappl and the Java pbrawclient parse.

Body = chunks; a chunk is an escaped ``PayloadInfo`` line and its escaped sample lines, all
LF-terminated, and every header but the very first is preceded by an empty line (one extra LF),
which is how readers know the next line is a header. A header carries ``type``, ``pvname``,
``year``, ``elementCount`` and ``headers`` (the chunk's own header fields, then the PV's
``meta`` except ``name``: EGU, PREC, engine metadata...). A new header is written for each PV
and whenever pvname, type, year, elementCount or the header fields change, in particular at
every year boundary, since samples only carry seconds into the header's year.

Stored lines are passed through untouched when the chunk still has them (``chunk.raw``), so a
long query costs little more than reading the files; otherwise samples are encoded with the
vectorised codec (numeric scalars) or the protobuf reference path (everything else, and rows
with field values).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ...pb import PayloadInfo, fast, header_line, sample_line, year_start
from ..model import Chunk, PVStream
from ._common import PIECE, Pieces, row_runs

__all__ = ["encode_chunk", "render_raw"]


def _element_count(chunk: Chunk) -> int:
    """The header's elementCount: as stored, else 1 for scalars and the first value's length
    for waveforms (the AA takes it from the PV's type info, i.e. NELM)."""
    h = chunk.header
    if h.element_count is not None:
        return h.element_count
    if not h.type.is_vector or len(chunk) == 0:
        return 1
    return len(chunk.block.sample(0).val)


def _header(stream: PVStream, chunk: Chunk) -> bytes:
    h = chunk.header
    headers = {k: v for k, v in h.headers.items() if v not in (None, "")}
    meta = stream.meta.items()
    headers.update((k, str(v)) for k, v in meta if k != "name" and v not in (None, ""))
    info = PayloadInfo(h.type, h.pvname or stream.name, h.year, _element_count(chunk), headers)
    return header_line(info)


def encode_chunk(chunk: Chunk) -> bytes:
    """The escaped, LF-terminated PlainPB lines of a chunk's samples (for chunks without
    ``raw``: post-processed, filtered or live data)."""
    ptype, year, b = chunk.header.type, chunk.header.year, chunk.block
    n = len(b)
    if n == 0:
        return b""
    if ptype in fast.SUPPORTED and b.vals.dtype != object:
        base = year_start(year)
        parts: list[bytes] = []
        for start, stop, extra in row_runs(b):
            if extra:
                parts.extend(sample_line(ptype, year, b.sample(i)) for i in range(start, stop))
                continue
            rows = slice(start, stop)
            parts.append(
                fast.encode_scalar_lines(
                    ptype,
                    b.secs[rows] - base,
                    b.nanos[rows],
                    b.vals[rows],
                    b.severity[rows],
                    b.status[rows],
                )
            )
        return b"".join(parts)
    return b"".join(sample_line(ptype, year, b.sample(i)) for i in range(n))


def render_raw(streams: Iterable[PVStream]) -> Iterator[bytes]:
    """``application/x-protobuf`` body of ``getData.raw`` / ``getDataForPVs.raw``."""
    out = Pieces()
    first_header = True
    for stream in streams:
        last: bytes | None = None
        for chunk in stream.chunks:
            header = _header(stream, chunk)
            if header != last:
                if not first_header:
                    out.add(b"\n")
                out.add(header)
                first_header = False
                last = header
            body = chunk.raw if chunk.raw is not None else encode_chunk(chunk)
            if len(body) >= PIECE:
                # big enough on its own: hand it over without copying it into a join
                if out.size:
                    yield out.take()
                yield body
                continue
            out.add(body)
            if out.full:
                yield out.take()
    if out.size:
        yield out.take()
