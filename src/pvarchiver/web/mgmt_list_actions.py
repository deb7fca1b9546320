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
* modifyMetaFields, skipAliasCheck, restartArchivePVWorkflowThreadForThisAppliance,
  appendAndAliasPV: one PV's archive fields, alias check and history; the work is done in
  :mod:`pvarchiver.mgmt` (the manager, :mod:`pvarchiver.mgmt.append_alias`).
"""

from __future__ import annotations

import re

from starlette.responses import JSONResponse, Response

from ..mgmt import lists
from ..mgmt.append_alias import append_and_alias
from ..mgmt.pvinput import lookup_name
from ..mgmt.typeinfo import java_double
from ..mgmt.workflow import MINIMUM_SAMPLING_PERIOD
from . import mgmt_actions, mgmt_config_actions
from .bpl import Actions, BPLError, in_thread
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


# ---------------------------------------------------------------------- one PV's configuration
_FIELD = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def apply_meta_commands(fields: list[str], commands: list[str]) -> list[str]:
    """modifyMetaFields' commands, in order, on a PV's archive fields: ``add,F1,F2``,
    ``remove,F1`` and ``clear``. The AA ignores a verb it does not know; here it is a 400,
    so a typo never reads as done. Order is kept (the AA's is a hash set's)."""
    out = list(fields)
    for command in commands:
        verb, *names = [p.strip() for p in command.split(",")]
        names = [n for n in names if n]
        for n in names:
            if not _FIELD.fullmatch(n):
                raise BPLError(400, f"{n!r} in {command!r} is not a field name")
            if n == "VAL":
                raise BPLError(400, "VAL is the PV's value, not a field archived with it")
        if verb == "add":
            out += [n for n in dict.fromkeys(names) if n not in out]
        elif verb == "remove":
            out = [f for f in out if f not in names]
        elif verb == "clear":
            out = []
        else:
            raise BPLError(400, f"Unknown command {command!r}: use add,F,... remove,F,... or clear")
    return out


@action("modifyMetaFields", {"pv", "command"}, mutating=True)
async def modify_meta_fields(ctx: MgmtContext) -> Response:
    """The fields (HIHI, LOLO, ...) archived with a paused PV; they take effect when it is
    resumed. Answer: the AA's ``{"pvName", "fields": "F1,F2"}``."""
    m = ctx.mgmt
    name = m.registry.real_name(lookup_name(ctx.one_pv()))
    commands = ctx.all("command")
    if not [c for c in commands if c.strip()]:
        raise BPLError(400, "Missing parameter command (add,F1,F2 / remove,F1 / clear)")
    info = m.registry.typeinfo(name)
    if info is None:
        raise BPLError(404, f"PV {name} is not being archived")
    if not info.paused:
        raise BPLError(400, f"Please pause the pv {name} first")
    if name in m.manager.busy:
        raise BPLError(409, f"Another operation on {name} is in progress; try again")
    info.archiveFields = apply_meta_commands(info.archiveFields, commands)
    info.touch()
    await in_thread(m.registry.put_typeinfo, info)
    return JSONResponse({"pvName": name, "fields": ",".join(info.archiveFields)})


@action("skipAliasCheck", {"pv"}, mutating=True)
async def skip_alias_check(ctx: MgmtContext) -> Response:
    ctx.mgmt.manager.skip_alias_check(lookup_name(ctx.one_pv()))
    return JSONResponse({"status": "ok"})


@action("restartArchivePVWorkflowThreadForThisAppliance", set(), mutating=True)
async def restart_workflow(ctx: MgmtContext) -> Response:
    """Every request still in the archive workflow is aborted, as the AA's; the workflow
    loop is started again if it had stopped (see Manager.restart_workflow)."""
    aborted, restarted = ctx.mgmt.manager.restart_workflow()
    state = "restarted" if restarted else "was running; kept"
    desc = f"Aborted {aborted} archive requests; the archive PV workflow {state}"
    return JSONResponse({"status": "ok", "desc": desc})


@action("appendAndAliasPV", {"olderpv", "newerpv", "storage"}, mutating=True)
async def append_and_alias_pv(ctx: MgmtContext) -> Response:
    older, newer = ctx.required("olderpv"), ctx.required("newerpv")
    storage = ctx.required("storage")
    return JSONResponse(await append_and_alias(ctx.mgmt, older, newer, storage))
