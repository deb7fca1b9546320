"""The AA's remaining reports and metrics calls on ``/mgmt/bpl``: archived waveforms, time
span and creation reports, meta gets, slow-changing PVs with dropped events, instance, mgmt
and process metrics, and the aggregated appliance info.

The AA's mgmt gathers most of these from its engine, ETL and retrieval web applications over
HTTP; here they are one process, so each action reads the engine snapshots, the registry and
this process's samples (:data:`pvarchiver.mgmt.process_metrics.PROCESS`) directly. The rows
are built by :mod:`pvarchiver.mgmt.metrics_reports`; docs/mgmt.md ("Named flags, reports and
metrics") says what each figure means here where the AA's is a JVM's.
"""

from __future__ import annotations

import re
import time

from starlette.responses import JSONResponse, Response

from ..mgmt import metrics_reports as mr
from ..mgmt.appliance_metrics import appliance_details, appliance_row, summarize
from ..mgmt.process_metrics import PROCESS, ProcessSample
from ..mgmt.reports import apply_limit, fmt_number
from ..mgmt.typeinfo import PVTypeInfo
from .bpl import Actions, BPLError, in_thread
from .mgmt_context import MgmtContext
from .mgmt_report_actions import limit_param

#: the actions of this module (listed in :data:`pvarchiver.web.mgmt_routes.MGMT_ACTION_MODULES`)
ACTIONS = Actions()
action = ACTIONS.action


def _infos(ctx: MgmtContext) -> dict[str, PVTypeInfo]:
    return {i.pvName: i for i in ctx.mgmt.registry.typeinfos()}


def _regex(ctx: MgmtContext) -> re.Pattern[str] | None:
    """``regex``: a whole-name match, as Java's ``matcher().matches()``; a bad one is a
    400 (the route's known errors turn ``re.error`` into one)."""
    text = ctx.one("regex")
    return re.compile(text) if text is not None else None


def _check_appliance(ctx: MgmtContext, required: bool = False) -> None:
    want = ctx.one("appliance")
    ident = ctx.mgmt.config.identity
    if not want:
        if required:
            # the AA's answer to a missing appliance here is a 404 too
            raise BPLError(404, "Missing parameter appliance")
        return
    if want != ident:
        raise BPLError(404, f"Unknown appliance {want} (this is {ident})")


async def _latest_sample() -> ProcessSample:
    got = PROCESS.samples()
    return got[-1] if got else await in_thread(PROCESS.sample)


# ---------------------------------------------------------------------- engine reports
@action("getArchivedWaveforms", set())
async def archived_waveforms(ctx: MgmtContext) -> Response:
    return JSONResponse(mr.archived_waveforms(ctx.mgmt.link.snapshots(), _infos(ctx)))


@action("getSlowChangingPVsWithDroppedEvents", {"limit"})
async def slow_changing(ctx: MgmtContext) -> Response:
    limit = limit_param(ctx)  # a non-numeric limit is a 400 (the AA drops the appliance)
    rows = mr.slow_changing_dropped(ctx.mgmt.link.snapshots(), _infos(ctx))
    return JSONResponse(apply_limit(rows, limit))


@action("getMetaGets", set())
async def meta_gets(ctx: MgmtContext) -> Response:
    m = ctx.mgmt
    pending = m.manager.pending
    pva = {n: r.usePVAccess for n, r in pending.items()}
    rows = mr.metaget_rows(m.manager.metagets, pva, m.config.identity, time.time())
    return JSONResponse(rows)


# ---------------------------------------------------------------------- creation / time span
@action("getCreationReportForAppliance", {"regex", "appliance"})
async def creation_report(ctx: MgmtContext) -> Response:
    _check_appliance(ctx)
    return JSONResponse(mr.creation_report(ctx.mgmt.registry.typeinfos(), _regex(ctx)))


@action("getTimeSpanReport", {"regex"})
async def time_span(ctx: MgmtContext) -> Response:
    rx = _regex(ctx)
    creation = mr.creation_report(ctx.mgmt.registry.typeinfos(), rx)
    return JSONResponse(mr.time_span_report(creation, ctx.mgmt.link.snapshots(), rx))


# ---------------------------------------------------------------------- instance / mgmt
def _instance_row(ctx: MgmtContext) -> dict[str, str]:
    m = ctx.mgmt
    timer = m.link.engine.write_timer
    s = summarize(m, m.link.snapshots(), time.time())
    row = appliance_row(m, s, timer)
    row.pop("capacityUtilized", None)  # getApplianceMetrics' only, not the instance report's
    row["MGMT_uptime"] = mr.aa_uptime(mr.java_duration(s.uptime_seconds))
    if timer is not None and timer.cycles:
        per_cycle = timer.seconds / timer.cycles
        row["formattedWriteThreadSeconds"] = fmt_number(per_cycle)
        row["secondsConsumedByWriter"] = mr.java_double(per_cycle)
    return row


@action("getInstanceMetrics", set())
async def instance_metrics(ctx: MgmtContext) -> Response:
    return JSONResponse([_instance_row(ctx)])


@action("getInstanceMetricsForAppliance", {"appliance"})
async def instance_metrics_for(ctx: MgmtContext) -> Response:
    _check_appliance(ctx)
    m = ctx.mgmt
    s = summarize(m, m.link.snapshots(), time.time())
    rows = [{"name": "Appliance Identity", "value": m.config.identity, "source": "mgmt"}]
    rows += [r for r in appliance_details(m, s, m.link.engine.write_timer)][1:]
    waiting = sum(1 for mg in m.manager.metagets.values() if not mg.done)
    rows.append(
        {"name": "PVs pending computation of meta info", "value": str(waiting), "source": "engine"}
    )
    rows += mr.process_rows(await _latest_sample(), PROCESS.uptime_seconds())
    return JSONResponse(rows)


@action("getMgmtMetricsForAppliance", {"appliance"})
async def mgmt_metrics(ctx: MgmtContext) -> Response:
    _check_appliance(ctx)
    uptime = time.time() - ctx.mgmt.manager.started_epoch
    return JSONResponse({"uptime": mr.java_duration(uptime)})


@action("getAggregatedApplianceInfo", set())
async def aggregated_info(ctx: MgmtContext) -> Response:
    return JSONResponse(mr.aggregated_info(ctx.mgmt.registry.typeinfos()))


# ---------------------------------------------------------------------- process
@action("getProcessMetrics", set())
async def process_metrics(ctx: MgmtContext) -> Response:
    body = mr.process_metrics_json(
        PROCESS.samples(), PROCESS.uptime_seconds(), PROCESS.started_epoch
    )
    return JSONResponse(body)


@action("getProcessMetricsDataForAppliance", {"appliance"})
async def process_chart(ctx: MgmtContext) -> Response:
    _check_appliance(ctx, required=True)
    return JSONResponse(mr.process_chart(PROCESS.samples()))
