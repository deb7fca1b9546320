"""A PV's stores: ``consolidateDataForPV`` (push its data down its chain now),
``changeStore`` (move its data into another store and put that store in its chain) and
``modifyStoreURLForPV`` (change a store's URL, no data moved).

All three need the PV paused, as in the AA, and serialise with every other operation on the
PV (``Manager.busy``). They move data with ETL's own file moves, which are crash-safe file by
file: a SIGKILL leaves each file either in the old store or in the new one, and retrieval
reads every folder in use that holds files of the PV, so nothing is hidden meanwhile; asking
again finishes the move. The typeinfo changes only after every file has moved.

Differences from the AA (also in ``docs/mgmt.md``): refusals are 4xx with a JSON message
(the AA writes a ``validation`` body and then may or may not send an error status); a move
that fails answers an error and leaves the typeinfo as it was (the AA answers ``ok`` and
changes the typeinfo anyway); ``modifyStoreURLForPV`` answers the new typeinfo instead of an
empty body.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.responses import JSONResponse, Response

from ..mgmt.service import Mgmt
from ..mgmt.typeinfo import PVTypeInfo
from ..retrieval.times import TimeParseError, parse_time
from ..storage.chains import ChainError, Store, keeps_data
from ..storage.etl import ETLStats, run_etl
from .bpl import Actions, BPLError
from .mgmt_context import MgmtContext

log = logging.getLogger(__name__)

#: the actions of this module (listed in :data:`pvarchiver.web.mgmt_routes.MGMT_ACTION_MODULES`)
ACTIONS = Actions()
action = ACTIONS.action


def paused_typeinfo(m: Mgmt, requested: str, not_paused: str) -> tuple[str, PVTypeInfo]:
    """The PV's name and typeinfo, refused unless it exists and is paused (``not_paused``:
    the AA's message, ``{pv}`` for the name)."""
    name = m.resolve(requested)
    info = m.registry.typeinfo(name)
    if info is None:
        raise BPLError(404, f"PV {requested} is not being archived")
    if not info.paused:
        raise BPLError(400, not_paused.format(pv=name))
    return name, info


def pv_chain(m: Mgmt, name: str) -> tuple[Store, ...]:
    try:
        return m.link.chains.chain(name)
    except ChainError as e:
        raise BPLError(400, f"The data stores of {name} cannot be used: {e}") from None


def store_index(chain: Sequence[Store], storage: str, name: str) -> int:
    names = [s.name for s in chain]
    if storage not in names:
        raise BPLError(
            400,
            f"Cannot find storage with name {storage} for pv {name}; its stores: "
            + ", ".join(names),
        )
    return names.index(storage)


@dataclass
class StoreChange:
    """A request to change one store of a PV's chain: the PV, its typeinfo and chain, the
    store's place in it and the URLs the chain would have with the new one there."""

    name: str
    info: PVTypeInfo
    chain: tuple[Store, ...]
    index: int
    urls: list[str]


def store_change(ctx: MgmtContext, url_param: str, not_paused: str) -> StoreChange:
    """Parse and check what changeStore and modifyStoreURLForPV share (4xx when refused)."""
    m = ctx.mgmt
    storage = ctx.required("storage")
    new_url = ctx.required(url_param)
    name, info = paused_typeinfo(m, ctx.one_pv(), not_paused)
    chain = pv_chain(m, name)
    idx = store_index(chain, storage, name)
    urls = list(info.dataStores) or [s.config.url or s.config.to_url() for s in chain]
    urls[idx] = new_url
    return StoreChange(name, info, chain, idx, urls)


@asynccontextmanager
async def exclusive(m: Mgmt, name: str) -> AsyncIterator[None]:
    """No other operation on ``name`` (rename, delete, another move) meanwhile."""
    if name in m.manager.busy or name in m.manager.pending:
        raise BPLError(409, f"Another operation on {name} is in progress; try again")
    m.manager.busy.add(name)
    try:
        yield
    finally:
        m.manager.busy.discard(name)


def failed_move(name: str, stats: list[ETLStats], what: str) -> Response | None:
    """The answer when some files did not move (damaged, a newer destination): kept where
    they are, reported, nothing else changed."""
    errors = [e for s in stats for e in s.errors]
    if not errors:
        return None
    return JSONResponse(
        {
            "status": "error",
            "validation": f"Some files of {name} could not be moved; {what}: " + "; ".join(errors),
            "filesMoved": str(sum(s.files_moved for s in stats)),
        },
        status_code=500,
    )


def moved_ok(desc: str, stats: list[ETLStats], t0: float) -> Response:
    """The AA's ``ok`` answer of a data move, with what was moved and how long it took."""
    return JSONResponse(
        {
            "status": "ok",
            "desc": desc,
            "filesMoved": str(sum(s.files_moved for s in stats)),
            "samplesMoved": str(sum(s.samples_moved for s in stats)),
            "seconds": f"{time.monotonic() - t0:.3f}",
        }
    )


# ---------------------------------------------------------------------- consolidate
@action("consolidateDataForPV", {"pv", "storage", "date"}, mutating=True)
async def consolidate_pv(ctx: MgmtContext) -> Response:
    m = ctx.mgmt
    storage = ctx.required("storage")
    at: float | None = None
    date = ctx.one("date")
    if date:
        try:
            at = float(parse_time(date)[0])
        except TimeParseError as e:
            raise BPLError(400, f"Cannot parse date {date!r}: {e}") from None
    name, _info = paused_typeinfo(m, ctx.one_pv(), "Cannot consolidate unless PV {pv} is paused.")
    chain = pv_chain(m, name)
    idx = store_index(chain, storage, name)
    if chain[idx].is_blackhole:
        raise BPLError(
            400,
            f"{storage} is a blackhole: consolidating into it would delete the data of {name}; "
            "use deletePV with deleteData=true for that",
        )
    etl = m.etl
    if etl is None:
        raise BPLError(503, "ETL is not running in this process")
    t0 = time.monotonic()
    async with exclusive(m, name):
        try:  # what the engine still buffers (pausing stops new events only) moves too
            await m.link.flush(name)
        except OSError as exc:
            raise BPLError(500, f"Could not write the buffered samples of {name}: {exc}") from exc
        stats = await asyncio.to_thread(etl.consolidate, chain, storage, name, at)
    m.usage.invalidate()
    m.consolidations = [*m.consolidations, *stats][-100:]
    bad = failed_move(name, stats, "they stay where they are")
    if bad is not None:
        return bad
    return moved_ok(f"Successfully consolidated PV {name} into {storage}", stats, t0)


# ---------------------------------------------------------------------- changeStore
@action("changeStore", {"pv", "storage", "newbackend"}, mutating=True)
async def change_store(ctx: MgmtContext) -> Response:
    m = ctx.mgmt
    req = store_change(ctx, "newbackend", "Need to pause PV before changing store for {pv}")
    name, info, idx, urls = req.name, req.info, req.index, req.urls
    storage, new_url = req.chain[idx].name, urls[idx]
    old = req.chain[idx]
    try:
        new_chain = m.link.chains.resolve(urls)
    except ChainError as e:
        raise BPLError(400, f"Cannot use {new_url!r} for {name}: {e}") from None
    new = new_chain[idx]
    if new.is_blackhole and not old.is_blackhole:
        raise BPLError(
            400,
            f"changeStore into a blackhole would delete the data of {name} in {storage}; "
            "use modifyStoreURLForPV to make a store a blackhole",
        )
    t0 = time.monotonic()
    async with exclusive(m, name):
        try:
            await m.link.flush(name)
        except OSError as exc:
            raise BPLError(500, f"Could not write the buffered samples of {name}: {exc}") from exc
        stats: list[ETLStats] = []
        if keeps_data(old) and keeps_data(new) and not _same(old, new):
            # pb <-> parquet goes through ETL's column path (etl_columns): crash-safe alike
            st = await asyncio.to_thread(run_etl, old, new, None, [name], True)
            stats.append(st)
        bad = failed_move(name, stats, "the PV keeps its old store")
        if bad is not None:
            return bad
        info.dataStores = urls
        info.touch()
        await asyncio.to_thread(m.registry.put_typeinfo, info)
    m.usage.invalidate()
    log.info("changeStore %s: %s -> %s", name, storage, new_url)
    return moved_ok(f"Successfully changed the storage for PV {name} into {storage}", stats, t0)


def _same(a: Store, b: Store) -> bool:
    """One folder, one format and one partitioning: the files are already where the new URL
    looks (the AA would append each file to itself and then delete it)."""
    return (
        str(a.root) == str(b.root)
        and a.granularity == b.granularity
        and a.config.scheme == b.config.scheme
    )


# ---------------------------------------------------------------------- modifyStoreURL
@action("modifyStoreURLForPV", {"pv", "storage", "plugin_url"}, mutating=True)
async def modify_store_url(ctx: MgmtContext) -> Response:
    m = ctx.mgmt
    req = store_change(ctx, "plugin_url", "PV is not paused {pv}")
    name, info, urls, new_url = req.name, req.info, req.urls, req.urls[req.index]
    try:
        m.link.chains.validate(urls)
    except ChainError as e:
        raise BPLError(400, f"Cannot parse URL {new_url!r} for {name}: {e}") from None
    async with exclusive(m, name):
        info.dataStores = urls
        info.touch()
        await asyncio.to_thread(m.registry.put_typeinfo, info)
    return JSONResponse(info.to_json())
