"""``getNamedFlag``, ``setNamedFlag``, ``getAllNamedFlags``: the AA's named flags over
:class:`pvarchiver.mgmt.named_flags.NamedFlags` (persisted in the registry, unlike the AA).

Shapes are the AA's: ``{"<name>": true}`` with a JSON boolean, ``{"status": "ok"}``, and the
map of every flag set or loaded. A missing or empty ``name`` / ``value`` is a 400, as in the
AA (whose 400 has no body; ours says which parameter is missing).
"""

from __future__ import annotations

from starlette.responses import JSONResponse, Response

from ..mgmt.named_flags import parse_boolean
from .bpl import Actions, BPLError, in_thread
from .mgmt_context import MgmtContext

#: the actions of this module (listed in :data:`pvarchiver.web.mgmt_routes.MGMT_ACTION_MODULES`)
ACTIONS = Actions()
action = ACTIONS.action


def _given(ctx: MgmtContext, key: str) -> str:
    """The parameter as sent (flag names are exact: not stripped); 400 if absent or empty,
    the AA's test (``null`` or ``""``)."""
    value = ctx.one(key)
    if value is None or value == "":
        raise BPLError(400, f"Missing parameter {key}")
    return value


@action("getNamedFlag", {"name"})
async def get_named_flag(ctx: MgmtContext) -> Response:
    name = _given(ctx, "name")
    return JSONResponse({name: ctx.mgmt.flags.get(name)})


@action("setNamedFlag", {"name", "value"}, mutating=True)
async def set_named_flag(ctx: MgmtContext) -> Response:
    name = _given(ctx, "name")
    value = parse_boolean(_given(ctx, "value"))
    try:
        # a registry commit: off the event loop, it may wait for a big batch of typeinfos
        await in_thread(ctx.mgmt.flags.set, name, value)
    except ValueError as e:
        raise BPLError(400, str(e)) from None
    return JSONResponse({"status": "ok"})


@action("getAllNamedFlags", set())
async def get_all_named_flags(ctx: MgmtContext) -> Response:
    return JSONResponse(ctx.mgmt.flags.all())
