"""``/mgmt/bpl``: PV lists and the AA's per-appliance forms of cluster actions.

* archivedPVs, unarchivedPVs, archivedPVsNotInList: which of a client's names are archived
  (POST only, as the AA: a JSON list of names or of ``{"pv": name}``, ``text/plain`` one
  name per line, or the form parameter ``pv=a,b,c``); the rules are in
  :mod:`pvarchiver.mgmt.lists`.
* getPVsForThisAppliance, getTypeInfoKeys, getPausedPVsForThisAppliance,
  getNeverConnectedPVsForThisAppliance, abortArchivingPVForThisAppliance,
  exportConfigForAppliance, importConfigForAppliance: in the AA a cluster action asks each
  appliance for its part with these. This server is one appliance, so they answer what the
  cluster-wide actions answer, through the same code.
* getApplianceProperties, webAppReady: what the AA's UI and its other web apps ask mgmt.
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from ..mgmt import lists
from ..mgmt.typeinfo import java_double
from ..mgmt.workflow import MINIMUM_SAMPLING_PERIOD
from . import mgmt_actions, mgmt_config_actions
from .bpl import Actions, BPLError
from .mgmt_context import MgmtContext

#: the actions of this module (listed in :data:`pvarchiver.web.mgmt_routes.MGMT_ACTION_MODULES`)
ACTIONS = Actions()
action = ACTIONS.action

#: the AA's web applications (its ``WAR_FILE`` names), which report to mgmt when started
WEBAPPS = ("MGMT", "ENGINE", "ETL", "RETRIEVAL")


# ---------------------------------------------------------------------- lists
def posted_names(ctx: MgmtContext, action_name: str) -> list[str]:
    """The names a list action was sent; 405 for a GET (the AA has these as POST only),
    400 when neither a body nor ``pv`` came (an empty JSON list is a list: allowed)."""
    if ctx.request.method != "POST":
        raise BPLError(
            405,
            f'{action_name} needs a POST: a JSON list of PV names (or of {{"pv": name}}), '
            "text/plain with one name per line, or the form parameter pv=a,b,c",
        )
    if not ctx.body.strip() and not ctx.all("pv"):
        raise BPLError(400, f"No PV names given to {action_name} (POST a list, or pv=a,b,c)")
    return ctx.pv_names()


@action("archivedPVs", {"pv"})
async def archived_pvs(ctx: MgmtContext) -> Response:
    return JSONResponse(lists.archived(ctx.mgmt, posted_names(ctx, "archivedPVs")))


@action("unarchivedPVs", {"pv"})
async def unarchived_pvs(ctx: MgmtContext) -> Response:
    return JSONResponse(lists.unarchived(ctx.mgmt, posted_names(ctx, "unarchivedPVs")))


@action("archivedPVsNotInList", {"pv"})
async def archived_not_in_list(ctx: MgmtContext) -> Response:
    names = posted_names(ctx, "archivedPVsNotInList")
    if not names:
        # the AA's 400: an empty list would name every archived PV, which a script that
        # deletes "what is not in the IOC list" must never be told by mistake
        raise BPLError(400, "The list of PV names is empty")
    return JSONResponse(lists.archived_not_in(ctx.mgmt, names))


# ---------------------------------------------------------------------- this appliance
@action("getPVsForThisAppliance", set())
async def pvs_for_this_appliance(ctx: MgmtContext) -> Response:
    return JSONResponse(ctx.mgmt.all_names())


@action("getTypeInfoKeys", set())
async def typeinfo_keys(ctx: MgmtContext) -> Response:
    """The AA joins every appliance's getPVsForThisAppliance; there is one here."""
    return JSONResponse(ctx.mgmt.all_names())


@action("getPausedPVsForThisAppliance", set())
async def paused_for_this_appliance(ctx: MgmtContext) -> Response:
    return JSONResponse(lists.paused_names(ctx.mgmt))


@action("getNeverConnectedPVsForThisAppliance", {"limit"})
async def never_connected_here(ctx: MgmtContext) -> Response:
    return await mgmt_actions.never_connected(ctx)


@action("abortArchivingPVForThisAppliance", {"pv"}, mutating=True)
async def abort_here(ctx: MgmtContext) -> Response:
    ctx.one_pv()  # one PV, as the AA's (400 without it)
    return await mgmt_actions.abort_pv(ctx)


@action("exportConfigForAppliance", set())
async def export_config_here(ctx: MgmtContext) -> Response:
    return await mgmt_config_actions.export_config(ctx)


@action("importConfigForAppliance", set(), mutating=True)
async def import_config_here(ctx: MgmtContext) -> Response:
    """The AA's answer ``{"appliance", "errorPVs"}``: entries of another appliance and
    names already known here are not imported and are listed in errorPVs."""
    infos = mgmt_config_actions.import_body(ctx, "importConfigForAppliance")
    me = ctx.mgmt.config.identity
    mine = [i for i in infos if i.applianceIdentity == me]
    rows = await mgmt_config_actions.register_imports(ctx.mgmt, mine)
    imported = {r["pvName"] for r in rows if r["status"] == "Imported"}
    errors = [i.pvName for i in infos if i.pvName not in imported]  # in the body's order
    return JSONResponse({"appliance": me, "errorPVs": errors})


# ---------------------------------------------------------------------- appliance
@action("getApplianceProperties", set())
async def appliance_properties(ctx: MgmtContext) -> Response:
    """The AA's one property: the floor archivePV applies to a user's sampling period."""
    return JSONResponse({"minimum_sampling_period": java_double(MINIMUM_SAMPLING_PERIOD)})


@action("webAppReady", {"webapp"})
async def webapp_ready(ctx: MgmtContext) -> Response:
    """The AA's engine, ETL and retrieval web apps call this when they have started. Here
    they are parts of this one process, started before it answers HTTP: nothing to do but
    check the name. An empty 200, as the AA's."""
    name = ctx.required("webapp")
    if name not in WEBAPPS:
        raise BPLError(400, f"Unknown webapp {name!r}; one of {', '.join(WEBAPPS)}")
    return Response(b"", status_code=200)
