"""``.csv`` and ``.txt``: the AA's SinglePVCSVResponse and TextResponse layouts.

CSV, one line per sample and no header line, then one empty line at the very end (the AA's
``close()`` prints it)::

    1540229999,60.35,0,0,823158037

i.e. ``epochSeconds,value,severity,status,nanos``. TXT (meant for people) starts each PV with
``Beginning data for <name>`` and then writes
``<Mon/dd/yyyy HH:mm:ss zone>\\t<value>\\t<severity>\\t<status>\\t<nanos>`` per sample, e.g.
``Oct/22/2018 17:39:59 UTC\\t60.35\\t0\\t0\\t823158037``.

Values are written as the AA's ``SampleValue.toString``: numbers in Python's shortest
round-trip form with Java's ``NaN``/``Infinity``/``-Infinity`` for non-finite doubles, strings as
a quoted JSON string, waveforms as ``[v1,v2,...]`` without spaces. Like the AA, nothing is
CSV-quoted: waveforms and strings containing commas make lines that a strict CSV reader splits
into more columns; this format is meant for scalar PVs.

Differences from the AA: TXT times are in UTC (the AA uses the server's default time zone,
which for a containerised archiver is UTC anyway), and TXT omits the AA's
``Data from stream <source>`` lines, because chunks here do not record which store they came
from.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

import numpy as np

from ..model import Chunk, PVStream
from ._common import Pieces, is_columnar, numeric_segment, row_runs, val_texts
from ._numtext import JAVA_SPECIALS, IntCol, Lit, Segment, TableCol, render_rows

__all__ = ["render_csv", "render_txt"]

_MONTHS = [m.encode() for m in "Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split()]


def _date_segments(secs: np.ndarray) -> list[Segment]:
    """``Mon/dd/yyyy HH:mm:ss UTC`` of epoch seconds (Joda's ``MMM/dd/yyyy HH:mm:ss z``)."""
    secs = np.asarray(secs, dtype=np.int64)
    days = secs // 86400
    sod = secs - days * 86400
    day64 = days.astype("datetime64[D]")
    month64 = day64.astype("datetime64[M]")
    year = month64.astype("datetime64[Y]").astype(np.int64) + 1970
    month = month64.astype(np.int64) - (year - 1970) * 12
    day = (day64 - month64).astype(np.int64) + 1
    return [
        TableCol(month, _MONTHS),
        Lit(b"/"),
        IntCol(day, pad=2),
        Lit(b"/"),
        IntCol(year, pad=4),
        Lit(b" "),
        IntCol(sod // 3600, pad=2),
        Lit(b":"),
        IntCol(sod // 60 % 60, pad=2),
        Lit(b":"),
        IntCol(sod % 60, pad=2),
        Lit(b" UTC"),
    ]


def _columnar(chunk: Chunk, start: int, stop: int, txt: bool) -> bytes:
    b = chunk.block
    rows = slice(start, stop)
    sep = b"\t" if txt else b","
    head: list[Segment] = _date_segments(b.secs[rows]) if txt else [IntCol(b.secs[rows])]
    return render_rows(
        [
            *head,
            Lit(sep),
            numeric_segment(chunk.header.type, b.vals[rows], JAVA_SPECIALS),
            Lit(sep),
            IntCol(b.severity[rows]),
            Lit(sep),
            IntCol(b.status[rows]),
            Lit(sep),
            IntCol(b.nanos[rows]),
            Lit(b"\n"),
        ],
        stop - start,
    )


def _per_sample(chunk: Chunk, start: int, stop: int, txt: bool) -> bytes:
    b = chunk.block
    samples = [b.sample(i) for i in range(start, stop)]
    texts = val_texts(chunk.header.type, [s.val for s in samples], JAVA_SPECIALS)
    if txt:
        secs = np.array([s.secs for s in samples], dtype=np.int64)
        stamps = render_rows([*_date_segments(secs), Lit(b"\n")], len(secs)).decode().split("\n")
        lines = [
            f"{d}\t{t}\t{s.severity}\t{s.status}\t{s.nanos}\n"
            for d, t, s in zip(stamps, texts, samples, strict=False)
        ]
    else:
        lines = [
            f"{s.secs},{t},{s.severity},{s.status},{s.nanos}\n"
            for t, s in zip(texts, samples, strict=True)
        ]
    return "".join(lines).encode()


def _chunk_lines(chunk: Chunk, txt: bool) -> Iterator[bytes]:
    if not is_columnar(chunk):
        for start in range(0, len(chunk), 16384):
            yield _per_sample(chunk, start, min(len(chunk), start + 16384), txt)
        return
    for start, stop, extra in row_runs(chunk.block):
        yield (_per_sample if extra else _columnar)(chunk, start, stop, txt)


def _render(streams: Iterable[PVStream], txt: bool) -> Iterator[bytes]:
    out = Pieces()
    for stream in streams:
        if txt:
            out.add(f"Beginning data for {stream.meta.get('name') or stream.name}\n".encode())
        for chunk in stream.chunks:
            if len(chunk) == 0:
                continue
            for piece in _chunk_lines(chunk, txt):
                out.add(piece)
                if out.full:
                    yield out.take()
    if not txt:
        out.add(b"\n")
    if out.size:
        yield out.take()


def render_csv(streams: Iterable[PVStream]) -> Iterator[bytes]:
    """``text/csv`` body of ``getData.csv``."""
    return _render(streams, txt=False)


def render_txt(streams: Iterable[PVStream]) -> Iterator[bytes]:
    """``text/plain`` body of ``getData.txt``."""
    return _render(streams, txt=True)
