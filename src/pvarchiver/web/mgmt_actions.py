"""``/mgmt/bpl``: the actions of the management core (PV lifecycle, queries, a few reports).

Each function answers one ``/mgmt/bpl/<action>`` with the AA's parameter names and JSON
shapes (see ``reference/aa.md`` §4), over the management service (:mod:`pvarchiver.mgmt`).
Refusals raise :class:`~.bpl.BPLError`/``OperationError``, which the dispatcher turns into
a 4xx JSON message.
"""

from __future__ import annotations

import asyncio

from starlette.responses import JSONResponse, PlainTextResponse, Response

from .. import __version__
from ..mgmt.pvinput import (
    ArchiveSpec,
    archive_specs_from_json,
    archive_target,
    is_glob,
    parse_method,
    parse_period,
)
from ..mgmt.typeinfo import aa_time, report_time
from ..pb import PayloadType
from ..storage.chains import ChainError
from .bpl import Actions, BPLError
from .mgmt_context import MgmtContext, typeinfo_from_body

#: the actions of this module (listed in :data:`pvarchiver.web.mgmt_routes.MGMT_ACTION_MODULES`)
ACTIONS = Actions()
action = ACTIONS.action

ARCHIVE_PARAMS = {
    "pv",
    "samplingperiod",
    "samplingmethod",
    "controllingPV",
    "policy",
    "appliance",
    "alias",
}


def _is_json(ctx: MgmtContext) -> bool:
    return ctx.content_type.split(";")[0].strip().lower() == "application/json" or (
        ctx.body.lstrip()[:1] == b"[" and "text/plain" not in ctx.content_type
    )


# ---------------------------------------------------------------------- lifecycle
@action("archivePV", ARCHIVE_PARAMS, mutating=True)
async def archive_pv(ctx: MgmtContext) -> Response:
    if ctx.request.method == "POST" and ctx.body and _is_json(ctx):
        specs = archive_specs_from_json(ctx.body)
    else:
        names = ctx.pv_names()
        period_text = ctx.one("samplingperiod")
        method_text = ctx.one("samplingmethod")
        period = parse_period(period_text) if period_text else None
        method = parse_method(method_text) if method_text else None
        specs = [
            ArchiveSpec(
                pv=n,
                samplingperiod=period,
                samplingmethod=method,
                policy=ctx.one("policy") or None,
                controllingPV=ctx.one("controllingPV") or None,
                appliance=ctx.one("appliance") or None,
                alias=ctx.one("alias") or None,
            )
            for n in names
        ]
    if not specs:
        raise BPLError(400, "No PV names given (pv=NAME or a POST body)")
    if any(is_glob(s.pv) for s in specs):
        raise BPLError(400, "archivePV does not take globs; give PV names")
    for s in specs:  # all or nothing: one bad name rejects the request before any is queued
        archive_target(s.pv, [])
        if s.alias:
            archive_target(s.alias, [])
    ctx.mgmt.manager.check_storable([s.pv for s in specs])
    return JSONResponse(ctx.mgmt.manager.submit(specs))


@action("getPVStatus", {"pv"})
async def get_pv_status(ctx: MgmtContext) -> Response:
    names = ctx.mgmt.expand(ctx.pv_names())
    if not names and not ctx.pv_names():
        raise BPLError(400, "No PV names given (pv=NAME or a POST body)")
    m = ctx.mgmt
    return JSONResponse([m.status(n) for n in names])


async def _pause_resume(ctx: MgmtContext, pause: bool) -> Response:
    given = ctx.pv_names()
    if not given:
        raise BPLError(400, "No PV names given (pv=NAME or a POST body)")
    names = ctx.mgmt.expand(given, include_pending=False)
    rows = ctx.mgmt.manager.pause_resume(names, pause)
    if len(given) == 1 and not is_glob(given[0]) and ctx.request.method == "GET":
        row = rows[0]
        if "status" in row:
            verb = "paused" if pause else "resumed"
            row["desc"] = f"Successfully {verb} the archiving of PV {row['pvName']}"
        return JSONResponse(row)
    return JSONResponse(rows)


@action("pauseArchivingPV", {"pv"}, mutating=True)
async def pause_pv(ctx: MgmtContext) -> Response:
    return await _pause_resume(ctx, True)


@action("resumeArchivingPV", {"pv"}, mutating=True)
async def resume_pv(ctx: MgmtContext) -> Response:
    return await _pause_resume(ctx, False)


@action("abortArchivingPV", {"pv"}, mutating=True)
async def abort_pv(ctx: MgmtContext) -> Response:
    rows = []
    for name in ctx.pv_names() or [ctx.one_pv()]:
        if ctx.mgmt.manager.abort(name):
            rows.append({"status": "ok", "desc": f"Aborted request for archiving PV {name}"})
        else:
            rows.append({"status": "no", "desc": f"No pending request for archiving PV {name}"})
    return JSONResponse(rows[0] if len(rows) == 1 else rows)


@action("deletePV", {"pv", "deleteData"}, mutating=True)
async def delete_pv(ctx: MgmtContext) -> Response:
    given = ctx.pv_names()
    if not given:
        raise BPLError(400, "Missing parameter pv")
    delete_data = ctx.flag("deleteData")
    single = len(given) == 1 and not is_glob(given[0])
    if single:
        try:
            desc = await ctx.mgmt.manager.delete(given[0], delete_data)
        finally:
            ctx.mgmt.usage.invalidate()  # its files (and its row) are gone from the reports
        return JSONResponse({"status": "ok", "validation": "", "desc": desc})
    problems = []
    for name in ctx.mgmt.expand(given, include_pending=False):
        try:
            await ctx.mgmt.manager.delete(name, delete_data)
        except Exception as e:  # one bad PV must not stop the others
            problems.append(getattr(e, "message", str(e)))
    ctx.mgmt.usage.invalidate()
    out: dict[str, str] = {"validation": "\n".join(problems)}
    if not problems:
        out["status"] = "ok"
    return JSONResponse(out)


@action("changeArchivalParameters", {"pv", "samplingperiod", "samplingmethod"}, mutating=True)
async def change_params(ctx: MgmtContext) -> Response:
    name = ctx.one_pv()
    period = parse_period(ctx.required("samplingperiod"))
    info = ctx.mgmt.registry.typeinfo(ctx.mgmt.resolve(name))
    if info is None:
        raise BPLError(404, f"PV {name} is not being archived")
    method_text = ctx.one("samplingmethod")
    method = parse_method(method_text) if method_text else info.samplingMethod
    desc = ctx.mgmt.manager.change_params(info.pvName, method, period)
    return JSONResponse({"status": "ok", "desc": desc})


@action("renamePV", {"pv", "newname"}, mutating=True)
async def rename_pv(ctx: MgmtContext) -> Response:
    try:
        desc = await ctx.mgmt.manager.rename(ctx.one_pv(), ctx.required("newname"))
    finally:
        ctx.mgmt.usage.invalidate()  # the files moved to the new name
    return JSONResponse({"status": "ok", "desc": desc})


# ---------------------------------------------------------------------- typeinfo
@action("getPVTypeInfo", {"pv"})
async def get_typeinfo(ctx: MgmtContext) -> Response:
    name = ctx.mgmt.resolve(ctx.one_pv())
    info = ctx.mgmt.registry.typeinfo_view(name)
    if info is None:
        raise BPLError(404, f"Cannot find typeinfo for PV {name}")
    return JSONResponse(info.to_json())


@action("putPVTypeInfo", {"pv", "override", "createnew"}, mutating=True)
async def put_typeinfo(ctx: MgmtContext) -> Response:
    if ctx.request.method != "POST":
        raise BPLError(405, "putPVTypeInfo needs a POST with the typeinfo JSON as the body")
    name = ctx.one_pv()
    target = archive_target(name, [])
    if target.pv != name:
        raise BPLError(400, f"Invalid PV name {name!r}")
    override, createnew = ctx.flag("override"), ctx.flag("createnew")
    info = typeinfo_from_body(ctx)
    info.pvName = name
    if info.samplingMethod not in ("MONITOR", "SCAN", "DONT_ARCHIVE"):
        raise BPLError(
            400, f"samplingMethod {info.samplingMethod!r} is not MONITOR, SCAN or DONT_ARCHIVE"
        )
    if not info.samplingPeriod > 0 or info.samplingPeriod == float("inf"):
        raise BPLError(400, f"samplingPeriod must be a positive number, not {info.samplingPeriod}")
    if info.DBRType not in {t.arch_dbr_name for t in PayloadType}:
        raise BPLError(400, f"Unknown DBRType {info.DBRType!r}")
    m = ctx.mgmt
    existing = m.registry.typeinfo(name)
    if existing is None and not createnew:
        raise BPLError(400, f"PV {name} has no typeinfo; use createnew=true to add one")
    if existing is not None and not override:
        raise BPLError(400, f"PV {name} already has a typeinfo; use override=true to replace it")
    if name in m.manager.busy or name in m.manager.pending:
        raise BPLError(409, f"PV {name} is in the archive workflow or busy; try again")
    if not info.dataStores:
        info.dataStores = list(m.manager.default_stores)
    try:
        m.link.chains.validate(info.dataStores)
    except ChainError as e:
        raise BPLError(400, f"The dataStores of {name} cannot be used: {e}") from None
    info.applianceIdentity = m.config.identity
    info.touch()
    await asyncio.to_thread(m.registry.put_typeinfo, info)
    if info.paused:
        m.link.stop(name)
    else:
        m.link.start(info)
    return JSONResponse(info.to_json())


@action("getStoresForPV", {"pv"})
async def get_stores(ctx: MgmtContext) -> Response:
    name = ctx.mgmt.resolve(ctx.one_pv())
    info = ctx.mgmt.registry.typeinfo_view(name)
    if info is None:
        raise BPLError(404, f"Cannot find typeinfo for PV {name}")
    from ..mgmt.service import store_name

    return JSONResponse({store_name(u): u for u in info.dataStores})


@action("getPVDetails", {"pv"})
async def get_details(ctx: MgmtContext) -> Response:
    rows = ctx.mgmt.details(ctx.one_pv())
    if rows is None:
        raise BPLError(404, f"PV {ctx.one_pv()} is not being archived")
    return JSONResponse(rows)


# ---------------------------------------------------------------------- names
@action("getAllPVs", {"pv", "regex", "limit"})
async def get_all_pvs(ctx: MgmtContext) -> Response:
    limit = ctx.int_param("limit", 500)
    return JSONResponse(ctx.mgmt.matching(ctx.one("pv"), ctx.one("regex"), limit))


@action("getMatchingPVsForThisAppliance", {"pv", "regex", "limit"})
async def get_matching_here(ctx: MgmtContext) -> Response:
    limit = ctx.int_param("limit", 500)
    return JSONResponse(ctx.mgmt.matching(ctx.one("pv"), ctx.one("regex"), limit))


@action("getAllExpandedPVNames", set())
async def get_expanded(ctx: MgmtContext) -> Response:
    m = ctx.mgmt
    out: list[str] = []
    for info in m.registry.typeinfos():
        out.append(info.pvName)
        out.append(info.pvName + ".VAL")
        out.extend(f"{info.pvName}.{f}" for f in info.archiveFields)
    out.extend(m.registry.aliases())
    out.extend(m.manager.pending)
    return JSONResponse(sorted(set(out)))


# ---------------------------------------------------------------------- aliases
@action("addAlias", {"pv", "aliasname"}, mutating=True)
async def add_alias(ctx: MgmtContext) -> Response:
    m = ctx.mgmt
    name = m.resolve(ctx.one_pv())
    alias = ctx.required("aliasname")
    archive_target(alias, [])  # validates
    if not m.registry.has_typeinfo(name):
        raise BPLError(404, f"PV {name} is not being archived")
    if m.registry.has_typeinfo(alias):
        raise BPLError(400, f"{alias} is an archived PV; it cannot be an alias")
    await asyncio.to_thread(m.registry.add_alias, alias, name)
    return JSONResponse({"status": "ok", "desc": f"Added an alias {alias} for PV {name}"})


@action("removeAlias", {"pv", "aliasname"}, mutating=True)
async def remove_alias(ctx: MgmtContext) -> Response:
    m = ctx.mgmt
    name = ctx.one_pv()
    alias = ctx.required("aliasname")
    if m.registry.aliases().get(alias) != m.registry.real_name(name):
        raise BPLError(404, f"{alias} is not an alias of {name}")
    await asyncio.to_thread(m.registry.remove_alias, alias)
    return JSONResponse({"status": "ok", "desc": f"Removed the alias {alias} for PV {name}"})


@action("getAllAliases", set())
async def get_aliases(ctx: MgmtContext) -> Response:
    rows = [
        {"aliasName": a, "srcPVName": r} for a, r in sorted(ctx.mgmt.registry.aliases().items())
    ]
    return JSONResponse(rows)


# ---------------------------------------------------------------------- appliance
@action("getApplianceInfo", {"id"})
async def get_appliance_info(ctx: MgmtContext) -> Response:
    ident = ctx.one("id")
    if ident and ident != ctx.mgmt.config.identity:
        raise BPLError(404, f"Unknown appliance {ident}")
    return JSONResponse(ctx.mgmt.appliance_info(ctx.base_url))


@action("getAppliancesInCluster", set())
async def get_appliances(ctx: MgmtContext) -> Response:
    return JSONResponse([ctx.mgmt.appliance_info(ctx.base_url)])


@action("getVersions", {"id"})
async def get_versions(ctx: MgmtContext) -> Response:
    v = __version__
    return JSONResponse(
        {"mgmt_version": v, "engine_version": v, "etl_version": v, "retrieval_version": v}
    )


@action("getPolicyList", set())
async def get_policy_list(ctx: MgmtContext) -> Response:
    return JSONResponse(ctx.mgmt.policies.policy_list())


@action("getPolicyText", set())
async def get_policy_text(ctx: MgmtContext) -> Response:
    return PlainTextResponse(ctx.mgmt.policies.text)


# ---------------------------------------------------------------------- reports
@action("getNeverConnectedPVs", {"limit"})
async def never_connected(ctx: MgmtContext) -> Response:
    m = ctx.mgmt
    limit = ctx.int_param("limit", -1)
    rows = []
    for name, req in sorted(m.manager.pending.items()):
        mg = m.manager.metagets.get(name)
        if mg is not None and mg.result.connected:
            continue
        rows.append(
            {
                "pvName": name,
                "requestTime": req.requestTime,
                "startOfWorkflow": req.requestTime,
                "currentState": req.currentState,
                "appliance": m.config.identity,
            }
        )
    return JSONResponse(rows if limit < 0 else rows[:limit])


@action("getCurrentlyDisconnectedPVs", {"limit"})
async def currently_disconnected(ctx: MgmtContext) -> Response:
    m = ctx.mgmt
    limit = ctx.int_param("limit", -1)
    rows = []
    for name, s in sorted(m.link.snapshots().items()):
        if s.connected:
            continue
        rows.append(
            {
                "pvName": name,
                "instance": m.config.identity,
                "lastKnownEvent": report_time(s.last_event_epoch),
                "connectionLostAt": report_time(s.last_connection_lost_epoch),
                "noConnectionAsOfEpochSecs": str(s.last_connection_lost_epoch),
                "hostName": s.host,
                "commandThreadID": "0",
            }
        )
    return JSONResponse(rows if limit < 0 else rows[:limit])


@action("getPausedPVsReport", {"limit"})
async def paused_report(ctx: MgmtContext) -> Response:
    m = ctx.mgmt
    limit = ctx.int_param("limit", -1)
    rows = [
        {
            "pvName": i.pvName,
            "instance": m.config.identity,
            "modificationTime": aa_time(i.modificationTime),
        }
        for i in sorted(m.registry.typeinfos(), key=lambda i: i.pvName)
        if i.paused
    ]
    return JSONResponse(rows if limit < 0 else rows[:limit])
