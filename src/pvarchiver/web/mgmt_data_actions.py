"""``changeTypeForPV``, ``mergeInData``, ``importDataFromPlugin``: the AA's actions that change
a PV's stored data, over :mod:`pvarchiver.mgmt.data_ops`.

Parameters and success shapes are the AA's (``{"status": "ok"}``, and ``{"status": "ok",
"pvName": ...}`` for importDataFromPlugin). Unlike the AA every refusal is a 4xx with the
reason (the AA answers a PV that is not paused with HTTP 200 and a ``validation`` text, and
importDataFromPlugin's errors with bare 404s); ``docs/mgmt.md`` lists the differences.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

from starlette.responses import JSONResponse, Response

from ..mgmt import data_ops
from ..pb import PayloadInfo, Sample
from ..storage.merge import MergeError, parse_raw
from .bpl import Actions, BPLError
from .mgmt_context import MgmtContext

#: the actions of this module (listed in :data:`pvarchiver.web.mgmt_routes.MGMT_ACTION_MODULES`)
ACTIONS = Actions()
action = ACTIONS.action

#: the time range asked of the other appliance: all of it (the AA asks per local file)
MERGE_FROM = "1970-01-01T00:00:00.000Z"
MERGE_TO = "2200-01-01T00:00:00.000Z"


@action("changeTypeForPV", {"pv", "newtype", "force"}, mutating=True)
async def change_type_for_pv(ctx: MgmtContext) -> Response:
    pv, newtype = ctx.required("pv"), ctx.required("newtype")
    rep = await data_ops.change_type(ctx.mgmt, pv, newtype, ctx.flag("force"))
    desc = (
        f"Converted {rep.files_converted} files ({rep.samples} samples) to {newtype}; "
        f"{rep.files_already} were already of that type"
    )
    if rep.dropped:
        desc += f"; {rep.dropped} samples could not be converted and were dropped (force)"
    return JSONResponse({"status": "ok", "desc": desc})


def raw_fetcher(other: str) -> Callable[[str], Iterator[tuple[PayloadInfo, Sample]]]:
    """Streams a PV's samples from another appliance's ``getData.raw`` (``other`` is its
    data_retrieval_url, e.g. ``http://host:17665/retrieval``)."""

    def fetch(pv: str) -> Iterator[tuple[PayloadInfo, Sample]]:
        query = urlencode({"pv": pv, "from": MERGE_FROM, "to": MERGE_TO})
        url = f"{other.rstrip('/')}/data/getData.raw?{query}"
        # the standard library's client: a blocking stream in the merge's worker thread, and
        # no HTTP client dependency for one action
        try:
            resp = urllib.request.urlopen(url, timeout=60)
        except urllib.error.HTTPError as e:
            if e.code == 404:
                return  # the other appliance has no data of the PV
            text = e.read().decode("utf-8", "replace")[:200]
            raise MergeError(f"{url} answered {e.code}: {text}") from None
        except (urllib.error.URLError, OSError, ValueError) as e:
            raise MergeError(f"cannot read {url}: {e}") from None
        with resp:
            try:
                yield from parse_raw(iter(lambda: resp.read(1 << 16), b""))
            except OSError as e:
                raise MergeError(f"cannot read {url}: {e}") from None

    return fetch


@action("mergeInData", {"pv", "other", "storage", "from", "to"}, mutating=True)
async def merge_in_data(ctx: MgmtContext) -> Response:
    pv, other, storage = ctx.required("pv"), ctx.required("other"), ctx.required("storage")
    if not other.startswith(("http://", "https://")):
        raise BPLError(
            400, f"other must be the other appliance's data retrieval URL, not {other!r}"
        )
    rep = await data_ops.merge_in(ctx.mgmt, pv, storage, raw_fetcher(other))
    desc = (
        f"Merged {rep.added} of {rep.remote_samples} samples from {other} into "
        f"{rep.partitions} partitions of {storage} ({rep.created} new)"
    )
    return JSONResponse({"status": "ok", "desc": desc})


@action("importDataFromPlugin", {"pv", "from", "to", "src", "dest"}, mutating=True)
async def import_data_from_plugin(ctx: MgmtContext) -> Response:
    pv = ctx.required("pv")
    start, end = ctx.required("from"), ctx.required("to")
    src, dest = ctx.required("src"), ctx.required("dest")
    await data_ops.import_from(ctx.mgmt, pv, start, end, src, dest)
    return JSONResponse({"status": "ok", "pvName": pv})
