"""exportConfig / importConfig (moving an appliance's PV configuration).

exportConfig answers the list of every PVTypeInfo in the AA's JSON encoding, so a file saved
from a Java AA can be imported here and the other way round. importConfig validates the whole
body before it changes anything (one bad entry refuses the request, as archivePV does), then
registers the new PVs in one transaction and starts archiving them; names already known are
skipped and reported, never overwritten (putPVTypeInfo with override=true is for that).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from starlette.responses import JSONResponse, Response

from ..mgmt.pvinput import InputError, archive_target
from ..mgmt.service import Mgmt
from ..mgmt.typeinfo import PVTypeInfo
from ..pb import PayloadType
from ..storage.chains import ChainError
from .bpl import Actions, BPLError
from .mgmt_context import MgmtContext

log = logging.getLogger(__name__)

#: the actions of this module (listed in :data:`pvarchiver.web.mgmt_routes.MGMT_ACTION_MODULES`)
ACTIONS = Actions()
action = ACTIONS.action

METHODS = ("MONITOR", "SCAN", "DONT_ARCHIVE")


# ---------------------------------------------------------------------- export
@action("exportConfig", set())
async def export_config(ctx: MgmtContext) -> Response:
    infos = ctx.mgmt.registry.typeinfos()  # cached objects, read only

    def encode() -> bytes:
        rows = [i.to_json() for i in sorted(infos, key=lambda i: i.pvName)]
        return json.dumps(rows).encode()

    body = await asyncio.to_thread(encode)
    return Response(body, media_type="application/json")


# ---------------------------------------------------------------------- import
def validate_import(data: Any) -> list[PVTypeInfo]:
    """The typeinfos of an importConfig body; ValueError names the first bad entry."""
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list):
        raise ValueError("importConfig wants a JSON list of PVTypeInfo objects")
    dbr_types = {t.arch_dbr_name for t in PayloadType}
    out: list[PVTypeInfo] = []
    seen: set[str] = set()
    for i, entry in enumerate(data):
        where = f"entry {i}"
        try:
            info = PVTypeInfo.from_json(entry)
        except ValueError as e:
            raise ValueError(f"{where}: {e}") from None
        where = f"entry {i} ({info.pvName})"
        try:
            target = archive_target(info.pvName, [])
        except InputError as e:
            raise ValueError(f"{where}: {e}") from None
        if target.pv != info.pvName or target.field:
            raise ValueError(f"{where}: not a plain PV name")
        if info.samplingMethod not in METHODS:
            raise ValueError(
                f"{where}: samplingMethod {info.samplingMethod!r} is not one of {METHODS}"
            )
        if not 0 < info.samplingPeriod < float("inf"):
            raise ValueError(f"{where}: samplingPeriod must be a positive number")
        if info.DBRType not in dbr_types:
            raise ValueError(f"{where}: unknown DBRType {info.DBRType!r}")
        if info.pvName in seen:
            raise ValueError(f"{where}: {info.pvName} appears twice")
        seen.add(info.pvName)
        out.append(info)
    return out


@action("importConfig", set(), mutating=True)
async def import_config(ctx: MgmtContext) -> Response:
    infos = import_body(ctx, "importConfig")
    return JSONResponse(await register_imports(ctx.mgmt, infos))


def import_body(ctx: MgmtContext, action_name: str) -> list[PVTypeInfo]:
    """The validated typeinfos of an import POST; 405/400 with the reason otherwise."""
    if ctx.request.method != "POST":
        raise BPLError(405, f"{action_name} needs a POST with the exportConfig JSON as the body")
    try:
        data = json.loads(ctx.body.decode("utf-8", "replace") or "null")
    except json.JSONDecodeError as e:
        raise BPLError(400, f"The body is not valid JSON: {e}") from None
    try:
        return validate_import(data)
    except ValueError as e:
        raise BPLError(400, str(e)) from None


async def register_imports(m: Mgmt, infos: list[PVTypeInfo]) -> list[dict[str, str]]:
    """Register validated typeinfos as this appliance's PVs (one transaction) and start
    archiving them; a name already known is skipped, never overwritten. One row per entry
    (``Imported``/``Skipped``); importConfig and importConfigForAppliance answer with it."""
    aliases = m.registry.aliases()
    rows: list[dict[str, str]] = []
    new: list[PVTypeInfo] = []
    for info in infos:
        name = info.pvName
        why = ""
        if m.registry.has_typeinfo(name):
            why = f"PV {name} is already archived here; skipped"
        elif name in aliases:
            why = f"{name} is an alias of {aliases[name]}; skipped"
        elif name in m.manager.pending or name in m.manager.busy:
            why = f"PV {name} is in the archive workflow; skipped"
        if why:
            rows.append({"pvName": name, "status": "Skipped", "validation": why})
            continue
        info.applianceIdentity = m.config.identity  # it is ours now
        if not info.dataStores:
            info.dataStores = list(m.manager.default_stores)
        try:
            m.link.chains.validate(info.dataStores)
        except ChainError as e:
            why = f"The dataStores of {name} cannot be used here: {e}; skipped"
            rows.append({"pvName": name, "status": "Skipped", "validation": why})
            continue
        new.append(info)
        rows.append({"pvName": name, "status": "Imported"})
    if new:
        await asyncio.to_thread(m.registry.put_typeinfos, new)
        for info in new:
            stored = m.registry.typeinfo_view(info.pvName)
            if stored is not None:
                m.link.start(stored)
    log.info("importConfig: %d imported, %d skipped", len(new), len(rows) - len(new))
    return rows
