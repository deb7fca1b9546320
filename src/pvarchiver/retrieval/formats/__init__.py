"""Response bodies of ``getData.<ext>``: streaming renderers, one per extension.

Each renderer takes the response's :class:`~pvarchiver.retrieval.model.PVStream` objects and
returns an iterator of ``bytes`` pieces (a few hundred kB each when there is that much data),
pulling chunks from the streams only as it goes, so memory stays flat however long the time
range is. Layouts follow the AA's ``mimeresponses`` classes; where they deviate (valid JSON for
NaN, for instance) the module docstrings say so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from ..model import PVStream
from .jsonfmt import render_json, render_qw
from .matlab import render_mat
from .plots import render_flx, render_jplot, render_svg
from .raw import render_raw
from .text import render_csv, render_txt

__all__ = [
    "FORMATS",
    "Renderer",
    "render_csv",
    "render_flx",
    "render_jplot",
    "render_json",
    "render_mat",
    "render_parquet",
    "render_qw",
    "render_raw",
    "render_svg",
    "render_txt",
]

Renderer = Callable[[Iterable[PVStream]], Iterator[bytes]]


def render_parquet(streams: Iterable[PVStream]) -> Iterator[bytes]:
    """``.parquet`` (:mod:`.parquetfmt`), imported when first asked for: pyarrow is big."""
    from .parquetfmt import render_parquet as render

    return render(streams)


#: extension -> (renderer, Content-Type), as the AA's DataRetrievalServlet maps them
FORMATS: dict[str, tuple[Renderer, str]] = {
    "json": (render_json, "application/json"),
    "qw": (render_qw, "application/json"),
    "csv": (render_csv, "text/csv"),
    "txt": (render_txt, "text/plain"),
    "raw": (render_raw, "application/x-protobuf"),
    "mat": (render_mat, "application/matlab"),
    "jplot": (render_jplot, "application/json"),
    "flx": (render_flx, "text/xml"),
    "svg": (render_svg, "image/svg+xml"),
    # not an AA format: one Parquet file for analysis tools (issue 19)
    "parquet": (render_parquet, "application/vnd.apache.parquet"),
}
