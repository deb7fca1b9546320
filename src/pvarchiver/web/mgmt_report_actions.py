"""The AA's reports and metrics calls (``/mgmt/bpl/get...Report``, getApplianceMetrics,
getStorageMetrics) over the pure row builders in :mod:`pvarchiver.mgmt.reports`.

Each report takes the optional ``limit`` the UI always sends (max rows; absent or -1 means
all, as the AA). Snapshots of 10,000 PVs take a few tens of milliseconds on the event loop;
only the storage scan touches the disk, and it runs in a worker thread behind a cache.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable

from starlette.responses import JSONResponse, Response

from ..mgmt import reports as rp
from ..mgmt.appliance_metrics import (
    appliance_details,
    appliance_row,
    storage_rows,
    summarize,
)
from ..mgmt.typeinfo import PVTypeInfo
from .bpl import Actions, BPLError
from .mgmt_context import MgmtContext

LIMIT = {"limit"}

#: the actions of this module (listed in :data:`pvarchiver.web.mgmt_routes.MGMT_ACTION_MODULES`)
ACTIONS = Actions()
action = ACTIONS.action


def limit_param(ctx: MgmtContext) -> int:
    """``limit``: rows wanted; absent or -1 for all; anything else below 0 is refused
    (a typo such as ``-10`` should not silently mean "everything")."""
    n = ctx.int_param("limit", -1)
    if n < -1:
        raise BPLError(400, f"limit must be -1 (all) or a number of rows >= 0, not {n}")
    return n


def _respond(ctx: MgmtContext, rows: list[rp.Row]) -> Response:
    return JSONResponse(rp.apply_limit(rows, limit_param(ctx)))


def _engine_report(
    build: Callable[[MgmtContext], list[rp.Row]],
) -> Callable[[MgmtContext], Awaitable[Response]]:
    async def handler(ctx: MgmtContext) -> Response:
        limit_param(ctx)  # refuse a bad limit before doing the work
        return _respond(ctx, build(ctx))

    return handler


def _infos(ctx: MgmtContext) -> dict[str, PVTypeInfo]:
    return {i.pvName: i for i in ctx.mgmt.registry.typeinfos()}


def _ident(ctx: MgmtContext) -> str:
    return ctx.mgmt.config.identity


# ---------------------------------------------------------------------- rate reports
action("getEventRateReport", LIMIT)(
    _engine_report(
        lambda ctx: rp.event_rate_report(ctx.mgmt.link.snapshots(), _infos(ctx), time.time())
    )
)
action("getStorageRateReport", LIMIT)(
    _engine_report(
        lambda ctx: rp.storage_rate_report(ctx.mgmt.link.snapshots(), _infos(ctx), time.time())
    )
)

# ---------------------------------------------------------------------- registry reports
_added = _engine_report(lambda ctx: rp.recently_added(ctx.mgmt.registry.typeinfos(), _ident(ctx)))
_modified = _engine_report(
    lambda ctx: rp.recently_modified(ctx.mgmt.registry.typeinfos(), _ident(ctx))
)
# the AA's cluster-wide and per-instance names; one appliance here, so both are the same
action("getRecentlyAddedPVs", LIMIT)(_added)
action("getRecentlyAddedPVsForThisInstance", LIMIT)(_added)
action("getRecentlyModifiedPVs", LIMIT)(_modified)
action("getRecentlyModifiedPVsForThisInstance", LIMIT)(_modified)

# ---------------------------------------------------------------------- connection reports
action("getLostConnectionsReport", LIMIT)(
    _engine_report(lambda ctx: rp.lost_connections(ctx.mgmt.link.snapshots(), _ident(ctx)))
)
action("getSilentPVsReport", LIMIT)(
    _engine_report(lambda ctx: rp.silent_pvs(ctx.mgmt.link.snapshots(), _ident(ctx)))
)

# ---------------------------------------------------------------------- dropped events
for _name, _reasons in (
    ("getPVsByDroppedEventsTimestamp", rp.TIMESTAMP_DROPS),
    ("getPVsByDroppedEventsBuffer", rp.BUFFER_DROPS),
    ("getPVsByDroppedEventsTypeChange", rp.TYPE_CHANGE_DROPS),
):
    action(_name, LIMIT)(
        _engine_report(
            lambda ctx, r=_reasons: rp.dropped_events(  # type: ignore[misc]
                ctx.mgmt.link.snapshots(), _ident(ctx), r
            )
        )
    )


# ---------------------------------------------------------------------- storage
@action("getPVsByStorageConsumed", LIMIT)
async def pvs_by_storage(ctx: MgmtContext) -> Response:
    limit_param(ctx)
    usage = await ctx.mgmt.usage.get()
    known = set(ctx.mgmt.registry.names())
    per_pv = {pv: n for pv, n in usage.per_pv().items() if pv in known}
    return _respond(ctx, rp.storage_consumed(per_pv, _ident(ctx)))


@action("getStorageMetrics", set())
async def storage_metrics(ctx: MgmtContext) -> Response:
    usage = await ctx.mgmt.usage.get()
    return JSONResponse(storage_rows(usage, ctx.mgmt.health.report()))


@action("getStorageMetricsForAppliance", {"appliance"})
async def storage_metrics_for(ctx: MgmtContext) -> Response:
    _check_appliance(ctx)
    usage = await ctx.mgmt.usage.get()
    return JSONResponse(storage_rows(usage, ctx.mgmt.health.report()))


@action("getApplianceHealth", set())
async def appliance_health(ctx: MgmtContext) -> Response:
    """Our own: ``status`` ok / warning / unhealthy with the reasons; 503 when unhealthy (a
    store whose writes have failed for longer than the setting), for container
    healthchecks and load balancers. Reads memory only, never the disk."""
    report = ctx.mgmt.health.report()
    body = report.as_json(ctx.mgmt.config.identity)
    return JSONResponse(body, status_code=report.http_status)


# ---------------------------------------------------------------------- appliance
def _check_appliance(ctx: MgmtContext) -> None:
    want = ctx.one("appliance")
    if want and want != ctx.mgmt.config.identity:
        raise BPLError(404, f"Unknown appliance {want} (this is {ctx.mgmt.config.identity})")


@action("getApplianceMetrics", set())
async def appliance_metrics(ctx: MgmtContext) -> Response:
    m = ctx.mgmt
    s = summarize(m, m.link.snapshots(), time.time())
    return JSONResponse([appliance_row(m, s, m.link.engine.write_timer)])


@action("getApplianceMetricsForAppliance", {"appliance"})
async def appliance_metrics_for(ctx: MgmtContext) -> Response:
    _check_appliance(ctx)
    m = ctx.mgmt
    s = summarize(m, m.link.snapshots(), time.time())
    return JSONResponse(appliance_details(m, s, m.link.engine.write_timer))
