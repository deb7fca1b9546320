"""``.json`` and ``.qw``: the AA's JSONResponse and QWResponse layouts, streamed.

Layout, byte for byte the AA's, one sample per line (``␣`` marks a space that ends a line)::

  [␣
  { "meta": { "name": "PV:1" , "EGU": "degF" , "PREC": "2" },
  "data": [␣
  { "secs": 1540229999, "val": 60.35, "nanos": 823158037, "severity":0, "status":0 },
  { "secs": 1540230000, "val": 2.5, "nanos": 0, "severity":0, "status":0, "fields": { "A": ""} }] },
  { "meta": { "name": "PV:2" , "PREC": "0" },
  "data": [␣
  ] }
   ]

``.qw`` (Grafana's legacy frontend, the AA's quick chart) is the same frame with
``{ "millis": <epoch ms>, "val": ...[, "fields": {...}] }`` samples and a ``"waveform": true|false``
meta entry (a JSON boolean) right after the name whenever the PV's type is known.

Deliberate differences from the AA, all about producing valid JSON:

* NaN and ±Infinity values are written as ``null``. The AA writes a bare ``NaN`` in ``.json``
  (AA issue #65), which strict parsers (Python's ``json`` with ``parse_constant`` raising,
  JavaScript's ``JSON.parse``, Go) reject; its ``.qw`` already maps NaN to ``null`` but not
  Infinity. Clients that read numbers get ``None``/``null`` where the value was not finite.
* meta keys and values and ``fields`` keys are JSON-escaped (the AA pastes them in raw).
* string waveforms keep their empty elements (the AA drops them, shifting indices).
* V4GenericBytes values are an array of signed byte values, like VectorChar; the AA decodes the
  PVAccess structure into a JSON object, which needs the PVA type system we do not carry.

Numbers: Python's shortest round-trip form (``1.0``, ``60.35``, ``1e-05``, ``1e+16``), which is
what Java prints for most values; float32 (SCALAR_FLOAT / WAVEFORM_FLOAT) values print their
float32 shortest form (``0.1``, not ``0.10000000149011612``), like Java's ``Float.toString``;
SHORT/INT/ENUM as integers; ScalarByte/VectorChar as signed numbers (Java bytes), SCALAR_STRING
as a JSON string.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from ..model import Chunk, PVStream
from ._common import (
    Pieces,
    fields_json,
    is_columnar,
    json_str,
    numeric_segment,
    peek,
    row_runs,
    val_texts,
)
from ._numtext import JSON_SPECIALS, IntCol, Lit, render_rows

__all__ = ["render_json", "render_qw"]

_SEP = b",\n"


def _meta(stream: PVStream, waveform: bool | None) -> bytes:
    # qw (``waveform`` given) prints the name as the request sent it, the AA's
    # pvNameFromRequest; json prints its normalised pvName (``meta["name"]``)
    name = stream.name if waveform is not None else (stream.meta.get("name") or stream.name)
    out = ['{ "meta": { "name": ', json_str(name), " "]
    if waveform is not None:
        out.append(f', "waveform": {"true" if waveform else "false"} ')
    for k, v in stream.meta.items():
        if k != "name" and v not in (None, ""):
            out.append(f", {json_str(k)}: {json_str(v)} ")
    out.append('},\n"data": [ \n')
    return "".join(out).encode()


def _columnar_lines(chunk: Chunk, start: int, stop: int, qw: bool) -> bytes:
    """Rows [start, stop) of a numeric chunk (no extras among them), each preceded by ",\\n"."""
    b = chunk.block
    rows = slice(start, stop)
    val = numeric_segment(chunk.header.type, b.vals[rows], JSON_SPECIALS)
    if qw:
        millis = b.secs[rows] * 1000 + b.nanos[rows] // 1_000_000
        segments = [Lit(b',\n{ "millis": '), IntCol(millis), Lit(b', "val": '), val, Lit(b" }")]
    else:
        segments = [
            Lit(b',\n{ "secs": '),
            IntCol(b.secs[rows]),
            Lit(b', "val": '),
            val,
            Lit(b', "nanos": '),
            IntCol(b.nanos[rows]),
            Lit(b', "severity":'),
            IntCol(b.severity[rows]),
            Lit(b', "status":'),
            IntCol(b.status[rows]),
            Lit(b" }"),
        ]
    return render_rows(segments, stop - start)


def _sample_lines(chunk: Chunk, start: int, stop: int, qw: bool) -> bytes:
    """Rows [start, stop) one by one (strings, waveforms, rows with fields)."""
    b = chunk.block
    samples = [b.sample(i) for i in range(start, stop)]
    texts = val_texts(chunk.header.type, [s.val for s in samples], JSON_SPECIALS)
    if qw:
        lines = [
            f',\n{{ "millis": {s.secs * 1000 + s.nanos // 1_000_000}, "val": {t}'
            f"{fields_json(s.fields)} }}"
            for s, t in zip(samples, texts, strict=True)
        ]
    else:
        lines = [
            f',\n{{ "secs": {s.secs}, "val": {t}, "nanos": {s.nanos}, '
            f'"severity":{s.severity}, "status":{s.status}{fields_json(s.fields)} }}'
            for s, t in zip(samples, texts, strict=True)
        ]
    return "".join(lines).encode()


def _chunk_lines(chunk: Chunk, qw: bool) -> Iterator[bytes]:
    if not is_columnar(chunk):
        for start in range(0, len(chunk), 16384):
            yield _sample_lines(chunk, start, min(len(chunk), start + 16384), qw)
        return
    for start, stop, extra in row_runs(chunk.block):
        if extra:
            yield _sample_lines(chunk, start, stop, qw)
        else:
            yield _columnar_lines(chunk, start, stop, qw)


def _render(streams: Iterable[PVStream], qw: bool) -> Iterator[bytes]:
    out = Pieces()
    out.add(b"[ \n")
    any_pv = False
    for stream in streams:
        if any_pv:
            out.add(b"] },\n")
        any_pv = True
        first, chunks = peek(stream.chunks)
        waveform = None
        if qw:
            ptype = stream.type
            if ptype is None and first is not None:
                ptype = first.header.type
            waveform = None if ptype is None else ptype.is_vector
        out.add(_meta(stream, waveform))
        need_sep = False
        for chunk in chunks:
            if len(chunk) == 0:
                continue
            for piece in _chunk_lines(chunk, qw):
                # every line comes with its leading separator; the PV's first line must not
                out.add(piece if need_sep else piece[len(_SEP) :])
                need_sep = True
                if out.full:
                    yield out.take()
    if any_pv:
        out.add(b"] }\n")
    out.add(b" ]\n")
    yield out.take()


def render_json(streams: Iterable[PVStream]) -> Iterator[bytes]:
    """``application/json`` body of ``getData.json`` / ``getDataForPVs.json``."""
    return _render(streams, qw=False)


def render_qw(streams: Iterable[PVStream]) -> Iterator[bytes]:
    """``application/json`` body of ``getData.qw`` (epoch milliseconds, no nanos/alarms)."""
    return _render(streams, qw=True)
