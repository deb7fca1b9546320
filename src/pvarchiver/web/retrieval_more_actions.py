"""The rest of the AA's retrieval BPL (its ``retrieval/BPLServlet`` and ``BasicDispatcher``):
retrieval metrics, process metrics, getPVDetails, getClientConfig, filterArchivedPVs,
resetFailoverCachesForThisAppliance, ping, startupState and postStartup.

Shapes are the AA's; where the AA answers a refusal with an empty 404/400 page, the status is
the same and the body says why (docs/retrieval.md, "Retrieval parity with the AA").
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..mgmt.metrics_reports import process_sample_json
from ..mgmt.process_metrics import PROCESS
from ..mgmt.pvinput import InputError, lookup_name, names_from_body, split_names
from ..mgmt.typeinfo import report_time
from ..retrieval.names import normalize_pv_name
from .bpl import Actions, BPLError, in_thread, read_body
from .retrieval_actions import RetrievalContext

#: the actions of this module (listed in
#: :data:`pvarchiver.web.retrieval_routes.RETRIEVAL_ACTION_MODULES`)
ACTIONS = Actions()
action = ACTIONS.action

#: the largest filterArchivedPVs body read (a list of a million names fits)
MAX_BODY = 32 << 20


def _mgmt(request: Request) -> object | None:
    """The management service of this app, None for a retrieval-only app."""
    return getattr(request.app.state, "mgmt", None)


def _identity(request: Request) -> str:
    mgmt = _mgmt(request)
    return mgmt.config.identity if mgmt is not None else "appliance0"  # type: ignore[attr-defined]


def _json(obj: object) -> Response:
    return JSONResponse(obj)


# ------------------------------------------------------------------------------- metrics


@action("getApplianceMetrics", set())
async def get_appliance_metrics(ctx: RetrievalContext) -> Response:
    """The AA's retrieval ApplianceMetrics: one object of three strings, over all PVs."""
    return _json(ctx.runtime.metrics.summary())


@action("getApplianceMetricsForAppliance", {"appliance"})
async def get_appliance_metrics_for_appliance(ctx: RetrievalContext) -> Response:
    """``{name, value, source}`` rows (the AA's retrieval ignores ``appliance``)."""
    return _json(ctx.runtime.metrics.details())


@action("getInstanceMetricsForAppliance", {"appliance"})
async def get_instance_metrics_for_appliance(ctx: RetrievalContext) -> Response:
    """The same rows as getApplianceMetricsForAppliance, as in the AA."""
    return _json(ctx.runtime.metrics.details())


@action("getPVDetails", {"pv"})
async def get_pv_details(ctx: RetrievalContext) -> Response:
    """Retrieval's rows of a PV's details: how often it was read, when last, by how many
    clients (zeros and "Never" for a PV nobody read, as the AA)."""
    pv = ctx.one("pv")
    if not pv or not pv.strip():
        raise BPLError(400, "PV name is null.")
    return _json(ctx.runtime.metrics.pv_details(normalize_pv_name(pv)))


@action("getProcessMetrics", set())
async def get_process_metrics(ctx: RetrievalContext) -> Response:
    """``RETRIEVAL_uptime`` (s), ``RETRIEVAL_start`` and ``RETRIEVAL_metrics`` (one sample a
    minute for the last day: time, load average, memory %, ...), as the AA's
    ProcessMetricsReport of its retrieval web application. All four of the AA's applications
    are this one process, so these are the figures mgmt's getProcessMetrics also reports."""
    PROCESS.start()  # once; a retrieval-only app has no mgmt routes to start it
    samples = PROCESS.samples() or [PROCESS.sample()]
    return _json(
        {
            "RETRIEVAL_uptime": int(PROCESS.uptime_seconds()),
            "RETRIEVAL_start": report_time(PROCESS.started_epoch),
            "RETRIEVAL_metrics": [process_sample_json(s) for s in samples],
        }
    )


# ------------------------------------------------------------------------------- config


def _client_config_path(root: Path | None, name: str | None) -> Path:
    """The file getClientConfig serves, or BPLError(404) saying why not (the AA's checks)."""
    if root is None:
        raise BPLError(
            404, "This installation has not been configured to serve client config files."
        )
    if not name or ".." in name:
        raise BPLError(404, "The config file has not been specified (correctly).")
    if not root.is_dir():
        raise BPLError(404, f"The document root {root} does not exist.")
    try:
        base = root.resolve()
        path = (base / name).resolve()
        inside = path.is_relative_to(base)
        exists = inside and path.is_file()
    except (OSError, ValueError):  # a NUL, a name too long for the file system
        raise BPLError(404, f"The config file {name!r} is not a valid file name.") from None
    if not inside:
        raise BPLError(404, "The config file is not inside the document root.")
    if not exists:
        raise BPLError(404, f"The config file {name} does not exist.")
    return path


@action("getClientConfig", {"configFile"})
async def get_client_config(ctx: RetrievalContext) -> Response:
    """A JSON file from the site's client-config folder (``GetClientConfiguration.DocumentRoot``
    in archappl.properties), sent as it is, as ``application/json``."""
    path = _client_config_path(ctx.runtime.options.client_config_root, ctx.one("configFile"))
    try:
        data = await in_thread(path.read_bytes)
    except OSError as e:
        raise BPLError(404, f"The config file cannot be read: {e.strerror or e}") from None
    return Response(data, media_type="application/json")


# ------------------------------------------------------------------------------- names


def _archived(request: Request, ctx: RetrievalContext, name: str) -> bool:
    """Whether ``name`` (alias, ``.VAL``, ``ca://`` prefix and a stream field of an archived
    PV included) is archived here: by its typeinfo when there is a management service, else
    by the data the stores hold."""
    mgmt = _mgmt(request)
    if mgmt is not None:
        real = mgmt.resolve(name)  # type: ignore[attr-defined]
        return bool(mgmt.registry.has_typeinfo(real))  # type: ignore[attr-defined]
    return ctx.retrieval.pv_type(ctx.retrieval.resolve(lookup_name(name))) is not None


@action("filterArchivedPVs", {"pv"})
async def filter_archived_pvs(ctx: RetrievalContext) -> Response:
    """The names of the POST body (JSON list, one per line, or ``pv=a,b``; also ``pv=``
    parameters) that are archived here, as given and in their order."""
    names = split_names(ctx.all("pv"))
    if ctx.request.method == "POST":
        body = await read_body(ctx.request, MAX_BODY)
        try:
            names += names_from_body(ctx.request.headers.get("content-type", ""), body)
        except InputError as e:
            raise BPLError(400, str(e)) from None

    def keep() -> list[str]:
        return [n for n in names if _archived(ctx.request, ctx, n)]

    return _json(await in_thread(keep))


# ------------------------------------------------------------------------------- appliance


@action("resetFailoverCachesForThisAppliance", set())
async def reset_failover_caches(ctx: RetrievalContext) -> Response:
    """There are no failover caches here (no clusters, no failover appliances), so there is
    nothing to reset; the answer is the AA's."""
    return _json([{"appliance": _identity(ctx.request), "status": "ok"}])


@action("ping", set())
async def ping(ctx: RetrievalContext) -> Response:
    return PlainTextResponse("pong\n")


@action("startupState", set())
async def startup_state(ctx: RetrievalContext) -> Response:
    """The app answers only once it has started, so this is always complete."""
    return _json({"status": "STARTUP_COMPLETE"})


@action("postStartup", set())
async def post_startup(ctx: RetrievalContext) -> Response:
    """The AA's cluster start-up hook; startup is already complete here, as the AA answers
    a late call."""
    return PlainTextResponse("Done\n")
