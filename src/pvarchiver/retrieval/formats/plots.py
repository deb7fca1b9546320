"""``.jplot``, ``.flx`` and ``.svg``: the AA's JPlotResponse, FlxXMLResponse and SVGResponse.

These are small plotting feeds (Flot, Flex and a bare SVG sparkline) that the AA still maps in
its DataRetrievalServlet. Layouts, with ``␣`` marking a space that ends a line:

``jplot`` (application/json; also for ``getDataForPVs``)::

  [␣
  { "label": "PV:1", "data": [␣
  [1700000000000, 1.5],
  [1700000001000, 2.5] ] } ,␣
  { "label": "PV:2", "data": [␣
  [1700000000000, 7] ] }␣
   ]

``flx`` (text/xml)::

  <data>
  <result><time>1700000000000</time><value>1.5</value></result><result>...</result></data>

``svg`` (image/svg+xml): one ``<path>`` from the start of the range, ``L <epoch s> <value>``
per sample, in a ``viewBox`` of the requested range by 4 units from -1.

Deliberate differences from the AA, each where the AA's output cannot be used:

* jplot times: the AA prints ``Instant.atZone(zone)`` (e.g. ``2024-01-01T00:00Z[UTC]``),
  unquoted, since its Joda-to-java.time change, so its body is not JSON. Here it is the number
  the response had before that change and that Flot expects: whole epoch seconds times 1000,
  shifted by the server's UTC offset at that instant (``DateTimeZone.convertUTCToLocal``),
  i.e. plain epoch milliseconds on a server running in UTC.
* jplot values are JSON: strings quoted and escaped, NaN/Infinity as ``null`` (the AA prints
  Java's ``toString``); labels are JSON-escaped.
* jplot and flx write an entry for a PV without samples (the AA writes its label only when a
  store returned a stream).
* flx values are XML-escaped (the AA pastes strings in raw); strings appear unquoted.
* svg: the AA concatenates ``viewBox="<from><-1.0><width> 4.0"`` without spaces (an invalid
  viewBox) and writes no ``<svg>`` element at all when no store returned data; here the
  viewBox is ``"<from> -1.0 <width> 4.0"`` and the element is always written. Samples that
  are not finite numbers are left out of the path (a path with ``NaN`` is not drawn at all).
  svg is for numeric scalar PVs; the HTTP layer refuses other types before answering.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from typing import Any
from xml.sax.saxutils import escape

import numpy as np

from ...pb import PayloadType
from ..model import Chunk, PVStream
from ._common import NUMERIC_SCALARS, Pieces, is_columnar, json_str, val_texts
from ._numtext import JAVA_SPECIALS, JSON_SPECIALS, Specials

__all__ = ["SVG_TYPES", "render_flx", "render_jplot", "render_svg"]

#: the types ``.svg`` can draw (numbers, one per sample)
SVG_TYPES = frozenset(NUMERIC_SCALARS | {PayloadType.SCALAR_BYTE})

_ROWS = 65536


def _texts(chunk: Chunk, start: int, stop: int, specials: Specials) -> list[str]:
    """Value text of rows ``start:stop`` (the formats' ``SampleValue.toString``)."""
    b = chunk.block
    if is_columnar(chunk):
        vals: Sequence[Any] = b.vals[start:stop]
    else:
        vals = [b.sample(i).val for i in range(start, stop)]
    return val_texts(chunk.header.type, vals, specials)


def _local_millis(secs: np.ndarray) -> np.ndarray:
    """Whole seconds * 1000 plus the server's UTC offset at each instant (per hour, so a
    long range costs one ``localtime`` call per distinct hour, not per sample)."""
    secs = np.asarray(secs, dtype=np.int64)
    if time.timezone == 0 and not time.daylight:
        return secs * 1000
    hours, inverse = np.unique(secs // 3600, return_inverse=True)
    offsets = np.array([time.localtime(int(h) * 3600).tm_gmtoff for h in hours], np.int64)
    return (secs + offsets[inverse]) * 1000


def _chunks(stream: PVStream) -> Iterator[tuple[Chunk, int, int]]:
    for chunk in stream.chunks:
        n = len(chunk)
        for start in range(0, n, _ROWS):
            yield chunk, start, min(n, start + _ROWS)


# ----------------------------------------------------------------------------- jplot


def render_jplot(streams: Iterable[PVStream]) -> Iterator[bytes]:
    """``application/json`` body of ``getData.jplot`` / ``getDataForPVs.jplot``."""
    out = Pieces()
    out.add(b"[ \n")
    first_pv = True
    for stream in streams:
        if not first_pv:
            out.add(b" ] } , \n")
        first_pv = False
        label = stream.meta.get("name") or stream.name
        out.add(b'{ "label": ' + json_str(label).encode() + b', "data": [ \n')
        sep = b""
        for chunk, start, stop in _chunks(stream):
            millis = _local_millis(chunk.block.secs[start:stop])
            texts = _texts(chunk, start, stop, JSON_SPECIALS)
            lines = [f"[{int(t)}, {v}]" for t, v in zip(millis, texts, strict=True)]
            out.add(sep + ",\n".join(lines).encode())
            sep = b",\n"
            if out.full:
                yield out.take()
    if not first_pv:
        out.add(b" ] } \n")
    out.add(b" ]\n")
    yield out.take()


# ----------------------------------------------------------------------------- flx


def _xml_texts(chunk: Chunk, start: int, stop: int) -> list[str]:
    if chunk.header.type is PayloadType.SCALAR_STRING:
        b = chunk.block
        return [escape(str(b.sample(i).val)) for i in range(start, stop)]
    return [escape(t) for t in _texts(chunk, start, stop, JAVA_SPECIALS)]


def render_flx(streams: Iterable[PVStream]) -> Iterator[bytes]:
    """``text/xml`` body of ``getData.flx``."""
    out = Pieces()
    out.add(b"<data>\n")
    for stream in streams:
        for chunk, start, stop in _chunks(stream):
            millis = chunk.block.secs[start:stop].astype(np.int64) * 1000
            texts = _xml_texts(chunk, start, stop)
            out.add(
                "".join(
                    f"<result><time>{int(t)}</time><value>{v}</value></result>"
                    for t, v in zip(millis, texts, strict=True)
                ).encode()
            )
            if out.full:
                yield out.take()
    out.add(b"</data>\n")
    yield out.take()


# ----------------------------------------------------------------------------- svg


def _range(stream: PVStream) -> tuple[int, int] | None:
    """Whole seconds of the request's ``from`` and ``to`` (set by the HTTP layer)."""
    lo, hi = stream.extra.get("from"), stream.extra.get("to")
    if isinstance(lo, tuple) and isinstance(hi, tuple):
        return int(lo[0]), int(hi[0])
    return None


def render_svg(streams: Iterable[PVStream]) -> Iterator[bytes]:
    """``image/svg+xml`` body of ``getData.svg`` (the first PV's samples)."""
    out = Pieces()
    stream = next(iter(streams), None)
    bounds = _range(stream) if stream is not None else None
    x, width = (bounds[0], bounds[1] - bounds[0]) if bounds else (0, 0)
    out.add(
        b'<svg xmlns:svg="http://www.w3.org/2000/svg" xmlns="http://www.w3.org/2000/svg" '
        + f'viewBox="{x} -1.0 {width} 4.0" width="1000px" height="500px">\n'.encode()
        + f'<path style="fill:none;stroke:red;stroke-width:1.0" d="m {x} -1.0'.encode()
    )
    if stream is not None:
        for chunk, start, stop in _chunks(stream):
            secs = chunk.block.secs[start:stop]
            texts = _texts(chunk, start, stop, JAVA_SPECIALS)
            out.add(
                "".join(
                    f"L {int(s)} {v} "
                    for s, v in zip(secs, texts, strict=True)
                    if v not in ("NaN", "Infinity", "-Infinity")
                ).encode()
            )
            if out.full:
                yield out.take()
    out.add(b' "/>\n</svg>\n')
    yield out.take()
