"""``/retrieval/...``: the AA's DataRetrievalServlet (``/retrieval/data``) and retrieval BPL
(``/retrieval/bpl``, its actions declared in the modules of :data:`RETRIEVAL_ACTION_MODULES`).

Bad input is answered with a 4xx and a one-line message before any body is streamed; the
work of reading and formatting runs in Starlette's thread pool (sync iterators), so a big
query does not block the event loop that also serves ingest.
"""

from __future__ import annotations

import importlib.util
import json
import logging
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Iterator
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Route

from ..retrieval.model import Chunk, PVStream
from ..retrieval.names import normalize_pv_name
from ..retrieval.runtime import RetrievalRuntime
from ..retrieval.service import PING_PV, Retrieval, RetrievalError
from ..retrieval.times import Instant, TimeParseError, parse_period, parse_time, resolve_range
from . import retrieval_actions, retrieval_more_actions
from .bpl import BPLStyle, action_table, bpl_route, in_thread
from .retrieval_actions import RetrievalApp, RetrievalContext
from .retrieval_request import java_bool, shape_meta, spans

log = logging.getLogger(__name__)

SINGLE_PV_FORMATS = ("json", "raw", "csv", "txt", "qw", "mat", "jplot", "flx", "svg", "parquet")
#: the AA's four for several PVs, ``mat`` (one struct element per PV; the AA refuses it) and
#: ``parquet`` (not an AA format: docs/parquet.md)
MULTI_PV_FORMATS = ("json", "raw", "jplot", "qw", "mat", "parquet")
#: every module declaring ``/retrieval/bpl`` actions; a new module is added here
RETRIEVAL_ACTION_MODULES = (retrieval_actions, retrieval_more_actions)


def error(status: int, message: str) -> PlainTextResponse:
    return PlainTextResponse(message + "\n", status_code=status)


def _formats() -> dict[str, tuple[object, str]]:
    from ..retrieval.formats import FORMATS

    return FORMATS


def _guarded(pieces: Iterable[bytes], what: str) -> Iterator[bytes]:
    """Once the status line is sent an error cannot become a 4xx: log it and end the body."""
    try:
        yield from pieces
    except Exception:
        log.exception("error while streaming %s; response truncated", what)


async def _respond(streams: list[PVStream], ext: str, donotchunk: bool, what: str) -> Response:
    renderer, content_type = _formats()[ext]
    if ext == "parquet" and importlib.util.find_spec("pyarrow") is None:
        return error(
            400,
            "getData.parquet needs pyarrow on the server: pip install 'pvarchiver[parquet]'",
        )
    body = _guarded(renderer(streams), what)  # type: ignore[operator]
    if not donotchunk:
        # a sync iterator: Starlette pulls it in its thread pool, off the event loop
        return StreamingResponse(body, media_type=content_type)

    def spool_all() -> tuple[tempfile.SpooledTemporaryFile[bytes], int]:
        # a Content-Length needs the whole body first; spooled to disk past 16 MB
        spool: tempfile.SpooledTemporaryFile[bytes] = tempfile.SpooledTemporaryFile(
            max_size=16 << 20
        )
        for piece in body:
            spool.write(piece)
        size = spool.tell()
        spool.seek(0)
        return spool, size

    spool, size = await in_thread(spool_all)

    def drain() -> Iterator[bytes]:
        with spool:
            while piece := spool.read(1 << 20):
                yield piece

    return StreamingResponse(
        drain(), media_type=content_type, headers={"Content-Length": str(size)}
    )


async def _params(request: Request) -> list[tuple[str, str]]:
    return list(request.query_params.multi_items())


def _one(params: list[tuple[str, str]], key: str) -> str | None:
    vals = [v for k, v in params if k == key]
    return vals[-1] if vals else None


def _time_ranges(params: list[tuple[str, str]]) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    tr = _one(params, "timeranges")
    if tr:
        parts = [p for p in tr.split(",") if p.strip()]
        if len(parts) % 2:
            raise TimeParseError("timeranges needs an even number of times (start,end,...)")
        ranges = []
        for a, b in zip(parts[::2], parts[1::2], strict=True):
            r = resolve_range(a, b)
            ranges.append(r)
        return ranges
    return [resolve_range(_one(params, "from"), _one(params, "to"))]


def _donotchunk(params: list[tuple[str, str]]) -> bool:
    donot = _one(params, "donotchunk")
    return donot is not None and donot.lower() != "false"


def _failed(e: TimeParseError | RetrievalError) -> PlainTextResponse:
    return error(getattr(e, "status", 400), getattr(e, "message", str(e)))


def _typeinfo_meta(request: Request, pv: str) -> tuple[str | None, float | None]:
    """The typeinfo's units and precision of ``pv`` (None, None without mgmt or typeinfo)."""
    mgmt = getattr(request.app.state, "mgmt", None)
    if mgmt is None:
        return None, None
    info = mgmt.registry.typeinfo_view(pv)
    return (info.units, info.precision) if info is not None else (None, None)


def _open(
    app: RetrievalApp,
    request: Request,
    requested: str,
    ranges: list[tuple[Instant, Instant]],
    params: list[tuple[str, str]],
) -> PVStream:
    """One PV's stream over ``ranges`` (in order), with ``usereduced`` and
    ``fetchLatestMetadata`` applied; raises RetrievalError before anything is read."""
    from ..retrieval.postprocessors import split_function_syntax

    retrieval = app.retrieval
    name, pp_in_name = split_function_syntax(requested.strip())
    pp = pp_in_name or _one(params, "pp")
    use_reduced = java_bool(_one(params, "usereduced"))
    pieces = [
        piece
        for start, end in ranges
        for piece in spans(start, end, pp, use_reduced, app.runtime.options.use_reduced)
    ]
    streams = []
    for start, end, piece_pp in pieces:
        # the function syntax is taken apart here; the service gets the PV and the pp
        st = retrieval.stream(name if pp_in_name else requested, start, end, piece_pp)
        # the AA names the answer after the PV, never the function: ``mean_3(X)`` is ``X``
        # (its pvNameFromRequest, which ``qw`` prints as it was sent)
        st.name = name
        streams.append(st)
    stream = _concat(streams) if len(streams) > 1 else streams[0]
    stream.extra.update({"from": ranges[0][0], "to": ranges[-1][1]})
    if name != PING_PV:
        real = retrieval.resolve(name)
        units, precision = _typeinfo_meta(request, real)
        fetch = _one(params, "fetchLatestMetadata") == "true"  # the AA compares exactly
        engine = retrieval.metadata(real)
        # the other formats print the AA's pvName: prefix and ``.VAL`` gone, alias kept
        stream.meta = shape_meta(normalize_pv_name(name), engine, units, precision, fetch)
    return stream


def _count_request(app: RetrievalApp, request: Request, requested: str) -> None:
    """The AA's updateRetrievalMetrics: per PV (prefix and .VAL gone), per client address."""
    from ..retrieval.postprocessors import split_function_syntax

    name = normalize_pv_name(split_function_syntax(requested.strip())[0])
    user = request.client.host if request.client else ""
    app.runtime.metrics.record(name, user)


def _svg_refusal(stream: PVStream) -> PlainTextResponse | None:
    from ..retrieval.formats.plots import SVG_TYPES

    if stream.type is not None and stream.type not in SVG_TYPES:
        return error(400, f"svg draws numeric scalar PVs only; {stream.name} is {stream.type.name}")
    return None


async def get_data(request: Request, app: RetrievalApp) -> Response:
    ext = request.path_params["ext"]
    params = await _params(request)
    if ext not in SINGLE_PV_FORMATS:
        return error(400, f"Unsupported format {ext!r}; use one of " + ", ".join(SINGLE_PV_FORMATS))
    pv = _one(params, "pv")
    if not pv:
        return error(400, "PV name is null.")
    _count_request(app, request, pv)
    try:
        ranges = _time_ranges(params)
        # resolving names lists folders and opens files: off the event loop
        stream = await in_thread(_open, app, request, pv, ranges, params)
    except (TimeParseError, RetrievalError) as e:
        return _failed(e)
    if ext == "svg" and (refused := _svg_refusal(stream)) is not None:
        return refused
    return await _respond([stream], ext, _donotchunk(params), pv)


async def get_data_for_pvs(request: Request, app: RetrievalApp) -> Response:
    ext = request.path_params["ext"]
    if ext not in MULTI_PV_FORMATS:
        return error(
            400,
            f"Mime type {ext} is not supported for getDataForPVs. Please use "
            + ", ".join(f'"{f}"' for f in MULTI_PV_FORMATS)
            + ".",
        )
    params = await _params(request)
    names = [v for k, v in params if k == "pv"]
    if request.method == "POST":
        names += await _names_from_body(request)
    names = [n for part in names for n in part.split(",") if n.strip()] if names else []
    if not names:
        return error(400, "PV name is null.")
    for n in names:
        _count_request(app, request, n)
    try:
        ranges = [resolve_range(_one(params, "from"), _one(params, "to"))]

        def open_streams() -> list[PVStream]:
            out = []
            for n in names:
                try:
                    out.append(_open(app, request, n, ranges, params))
                except RetrievalError as e:
                    if e.status != 404:
                        raise
                    log.info("getDataForPVs: skipping %s: %s", n, e.message)
            return out

        streams = await in_thread(open_streams)
    except (TimeParseError, RetrievalError) as e:
        return _failed(e)
    return await _respond(streams, ext, _donotchunk(params), f"{len(names)} PVs")


async def get_data_at_time(request: Request, app: RetrievalApp) -> Response:
    params = await _params(request)
    at_text = _one(params, "at")
    try:
        at = parse_time(at_text) if at_text else resolve_range(None, None)[1]
        period = parse_period(_one(params, "searchPeriod") or "P1D")
    except TimeParseError as e:
        return error(400, str(e))
    names = await _names_from_body(request) if request.method == "POST" else []
    names += [v for k, v in params if k == "pv"]
    if not names:
        return error(400, "Send a JSON list of PV names in the body (or pv= parameters).")
    result = await in_thread(app.retrieval.data_at_time, names, at, period)
    return JSONResponse(_json_safe(result))


async def ping(_request: Request) -> Response:
    return PlainTextResponse("pong\n")


def _known_error(e: Exception) -> tuple[int, str] | None:
    return (e.status, e.message) if isinstance(e, RetrievalError) else None


#: how ``/retrieval/bpl`` answers: plain-text refusals, 400 for an unknown method, the
#: body not read, unknown parameters ignored (as the AA's retrieval does)
RETRIEVAL_STYLE = BPLStyle(
    prefix="/retrieval/bpl",
    error=error,
    unknown_status=400,
    context=RetrievalContext,
    known_error=_known_error,
)


def _bound(
    handler: Callable[[Request, RetrievalApp], Awaitable[Response]], app: RetrievalApp
) -> Callable[[Request], Awaitable[Response]]:
    async def endpoint(request: Request) -> Response:
        return await handler(request, app)

    return endpoint


def make_routes(retrieval: Retrieval, runtime: RetrievalRuntime | None = None) -> list[Route]:
    """``/retrieval/...`` over ``retrieval``; ``runtime``: the site's retrieval options and
    the request counters (a fresh one with the AA's defaults when not given)."""
    table = action_table(m.ACTIONS for m in RETRIEVAL_ACTION_MODULES)
    retrieval_app = RetrievalApp(retrieval, runtime or RetrievalRuntime())
    return [
        Route("/retrieval/ping", ping, methods=["GET"]),
        Route("/retrieval/data/getData.{ext}", _bound(get_data, retrieval_app), methods=["GET"]),
        Route(
            "/retrieval/data/getDataForPVs.{ext}",
            _bound(get_data_for_pvs, retrieval_app),
            methods=["GET", "POST"],
        ),
        Route(
            "/retrieval/data/getDataAtTime",
            _bound(get_data_at_time, retrieval_app),
            methods=["GET", "POST"],
        ),
        bpl_route(RETRIEVAL_STYLE, table, retrieval_app),
    ]


async def _names_from_body(request: Request) -> list[str]:
    """PV names in any of the AA's three body forms: JSON list (of names or {"pv": ...}),
    one per line, or a form ``pv=a,b``."""
    raw = (await request.body()).decode("utf-8", "replace").strip()
    if not raw:
        return []
    ctype = request.headers.get("content-type", "")
    if raw.startswith("[") or "json" in ctype:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            return []
        out = []
        for item in data if isinstance(data, list) else []:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, dict) and isinstance(item.get("pv"), str):
                out.append(item["pv"])
        return out
    if "form" in ctype or (raw.startswith("pv=") and "\n" not in raw):
        return [n for k, v in parse_qsl(raw) if k == "pv" for n in v.split(",") if n]
    return [line.strip() for line in raw.splitlines() if line.strip()]


def _json_safe(obj: object) -> object:
    """NaN/Inf become null: the body must parse with any strict JSON parser."""
    import math

    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if isinstance(obj, bytes):
        return list(obj)
    return obj


def _concat(streams: list[PVStream]) -> PVStream:
    """``timeranges``: several ranges of one PV as one stream, in order, strictly increasing
    (each range starts with the sample before its start, which may repeat the previous one)."""
    from ..retrieval.sources import drop_not_after

    def chunks() -> Iterator[Chunk]:
        last: int | None = None
        for s in streams:
            for chunk in s.chunks:
                kept = drop_not_after(chunk, last)
                if kept is not None:
                    last = kept.last_ns()
                    yield kept

    first = streams[0]
    return PVStream(first.name, first.meta, chunks(), first.type)
