"""``/retrieval/bpl``: the AA's retrieval BPL (version, name searches, metadata), declared
like every other action (:mod:`.bpl`) over the retrieval service (:mod:`pvarchiver.retrieval`).

Refusals are plain text, as the AA's retrieval answers them; unknown parameters are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass

from starlette.responses import JSONResponse, PlainTextResponse, Response

from ..retrieval.runtime import RetrievalRuntime
from ..retrieval.service import Retrieval
from .bpl import Actions, BPLError, Context, in_thread

#: the actions of this module (listed in
#: :data:`pvarchiver.web.retrieval_routes.RETRIEVAL_ACTION_MODULES`)
ACTIONS = Actions()
action = ACTIONS.action

NAME_SEARCH_PARAMS = {"pv", "regex", "limit"}


@dataclass(frozen=True)
class RetrievalApp:
    """What ``/retrieval`` serves from: the retrieval service and its runtime state."""

    retrieval: Retrieval
    runtime: RetrievalRuntime


@dataclass
class RetrievalContext(Context):
    @property
    def app(self) -> RetrievalApp:
        return self.service  # type: ignore[no-any-return]

    @property
    def retrieval(self) -> Retrieval:
        return self.app.retrieval

    @property
    def runtime(self) -> RetrievalRuntime:
        return self.app.runtime

    def one_pv(self) -> str:
        pv = self.one("pv")
        if not pv:
            raise BPLError(400, "PV name is null.")
        return pv


@action("getVersion", set())
async def get_version(ctx: RetrievalContext) -> Response:
    return JSONResponse(ctx.retrieval.version())


async def _matching(ctx: RetrievalContext, default_limit: int) -> list[str]:
    limit = ctx.int_param("limit", default_limit)
    return await in_thread(ctx.retrieval.matching_pvs, ctx.one("pv"), ctx.one("regex"), limit)


@action("getMatchingPVs", NAME_SEARCH_PARAMS)
async def get_matching_pvs(ctx: RetrievalContext) -> Response:
    return JSONResponse(await _matching(ctx, 500))


@action("searchForPVsRegex", NAME_SEARCH_PARAMS)
async def search_for_pvs_regex(ctx: RetrievalContext) -> Response:
    names = await _matching(ctx, -1)
    return PlainTextResponse("".join(n + "\n" for n in names))


@action("areWeArchivingPV", {"pv"})
async def are_we_archiving_pv(ctx: RetrievalContext) -> Response:
    real = ctx.retrieval.resolve(ctx.one_pv())
    ptype = await in_thread(ctx.retrieval.pv_type, real)
    return JSONResponse({"status": ptype is not None})


@action("getMetadata", {"pv"})
async def get_metadata(ctx: RetrievalContext) -> Response:
    pv = ctx.one_pv()
    real = ctx.retrieval.resolve(pv)
    ptype = await in_thread(ctx.retrieval.pv_type, real)
    if ptype is None:
        raise BPLError(404, f"Unable to find typeinfo for pv {real}")
    meta = ctx.retrieval.meta_for(pv, real)
    meta.pop("name", None)
    meta.update(
        {
            "pvName": real,
            "DBRType": ptype.arch_dbr_name,
            "scalar": "false" if ptype.is_vector else "true",
        }
    )
    return JSONResponse(meta)
