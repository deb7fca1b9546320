"""changeTypeForPV, mergeInData and importDataFromPlugin: the management side (checks, the
engine's unwritten samples, the typeinfo), over the file work of :mod:`pvarchiver.storage`.

Every refusal is an :class:`~.manager.OperationError` with a 4xx status and the reason, and
is decided before any file changes. The PV's stores are always its chain's own store
objects (``link.chains``), held with :func:`~pvarchiver.storage.chains.locked_chain` while
files change, so no ETL step or engine write of the PV runs in between.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TypeVar

from ..pb import PayloadType, Sample
from ..retrieval.times import TimeParseError, parse_time
from ..storage.batch import Batch
from ..storage.chains import ChainError, DataStore, Store, keeps_data, locked_chain
from ..storage.convert import ConversionError, ConvertReport, convert_pv, parse_type
from ..storage.merge import MergeError, MergeReport, merge_into
from ..storage.pbfile import Instant
from ..storage.store import PlainPBStore, StoreError
from ..storage.url import StoreURLError, parse_store_url
from .manager import OperationError
from .service import Mgmt
from .typeinfo import PVTypeInfo

log = logging.getLogger(__name__)

T = TypeVar("T")


def not_paused(pv: str) -> str:
    """The AA's words for an action that needs a paused PV (changeTypeForPV, mergeInData)."""
    return f"Need to pause PV before changing type for {pv}"


def _typeinfo(m: Mgmt, requested: str) -> PVTypeInfo:
    info = m.registry.typeinfo(m.resolve(requested))
    if info is None:
        raise OperationError(404, f"PV {requested} is not being archived")
    return info


def _chain(m: Mgmt, pv: str) -> tuple[Store, ...]:
    try:
        return m.link.chains.chain(pv)
    except ChainError as e:
        raise OperationError(400, f"The data stores of {pv} cannot be used: {e}") from None


def _real(stores: Iterable[Store]) -> list[PlainPBStore]:
    return [st for st in stores if isinstance(st, PlainPBStore)]


#: why changeTypeForPV refuses a PV with Parquet files (docs/parquet.md)
PARQUET_TYPE_REASON = (
    "changeTypeForPV does not rewrite .parquet files (their schema is the type); "
    "move the data to a pb:// store first (changeStore or consolidateDataForPV), or delete it"
)


def _parquet_holding(chain: Iterable[Store], pv: str) -> list[str]:
    """Names of the ``parquet://`` stores of ``chain`` that hold files of ``pv``."""
    return [
        st.name
        for st in chain
        if keeps_data(st) and not isinstance(st, PlainPBStore) and st.files_for_pv(pv)
    ]


async def _exclusive(m: Mgmt, pv: str, work: Callable[[], T]) -> T:
    """Run ``work`` in a worker thread while ``pv`` is marked busy (no pause/resume,
    delete, rename or other data action of it meanwhile)."""
    if pv in m.manager.busy:
        raise OperationError(409, f"Another operation on {pv} is in progress; try again")
    m.manager.busy.add(pv)
    try:
        return await asyncio.to_thread(work)
    finally:
        m.manager.busy.discard(pv)


# ---------------------------------------------------------------------- changeTypeForPV
async def _engine_leftovers(m: Mgmt, pv: str) -> tuple[PayloadType, list[Sample]] | None:
    """What the engine still holds of a paused PV, written out where it can be.

    Pausing closes the PV's channel, but the engine keeps its last samples until the next
    write cycle; those are written now (in the old type, so the conversion converts them
    with the files). Samples the engine holds back because their store refused them (the
    engine paused the PV itself after a type mismatch) cannot be written in the old type;
    they are returned, to be converted and appended after the files."""
    eng = m.link.engine
    pv_state = eng.pvs.get(pv)
    if pv_state is None:
        return None
    if not pv_state.paused:
        try:
            await m.link.flush(pv)
        except OSError as e:
            raise OperationError(409, f"{e}; nothing was converted, ask again") from None
    while eng.is_in_flight(pv):
        await asyncio.sleep(0.05)
    held = pv_state.buffer.snapshot().samples() if len(pv_state.buffer) else []
    return pv_state.ptype, held


async def change_type(m: Mgmt, requested: str, newtype: str, force: bool) -> ConvertReport:
    """Convert every stored sample of a paused PV to ``newtype`` and set its typeinfo's
    DBRType (and ``scalar``); see :mod:`pvarchiver.storage.convert`."""
    try:
        dst = parse_type(newtype)
    except ConversionError as e:
        raise OperationError(400, str(e)) from None
    info = _typeinfo(m, requested)
    pv = info.pvName
    if not info.paused:
        raise OperationError(400, not_paused(pv))
    chain = _chain(m, pv)
    held = _parquet_holding(chain, pv)
    if held:
        raise OperationError(
            400,
            f"Cannot change the type of {pv}: store {', '.join(held)} holds it in Parquet "
            f"files; {PARQUET_TYPE_REASON}; nothing was changed",
        )
    if pv in m.manager.busy:
        raise OperationError(409, f"Another operation on {pv} is in progress; try again")
    m.manager.busy.add(pv)
    try:
        leftovers = await _engine_leftovers(m, pv)

        def work() -> ConvertReport:
            with locked_chain(chain, pv):
                return convert_pv(_real(chain), pv, dst, force, leftovers)

        try:
            rep = await asyncio.to_thread(work)
        except ConversionError as e:
            raise OperationError(
                400,
                f"Cannot change the type of {pv} to {dst.arch_dbr_name}: {e}"
                + ("" if force else "; nothing was changed (force=true converts anyway)"),
            ) from None
        except (StoreError, OSError) as e:
            raise OperationError(
                500,
                f"Changing the type of {pv} stopped: {e}; each file is either converted or "
                "as it was, ask again to finish",
            ) from None
        info = m.registry.typeinfo(pv) or info
        info.DBRType = dst.arch_dbr_name
        info.scalar = not dst.is_vector
        info.touch()
        await asyncio.to_thread(m.registry.put_typeinfo, info)
        # the engine's state of the PV has the old type: forget it, so that resuming
        # starts it afresh (from its channel); its samples are in the files now
        if pv in m.link.engine.pvs and not m.link.engine.is_in_flight(pv):
            m.link.engine.remove_pv(pv)
    finally:
        m.manager.busy.discard(pv)
    m.usage.invalidate()
    log.info("%s: type changed to %s: %s", pv, dst.arch_dbr_name, rep)
    return rep


# ---------------------------------------------------------------------- mergeInData
def _named(m: Mgmt, pv: str, chain: Sequence[Store], name: str) -> DataStore:
    for st in chain:
        if st.name == name:
            if not keeps_data(st):
                raise OperationError(400, f"Store {name} of {pv} is a blackhole: it keeps nothing")
            return st  # type: ignore[return-value]
    names = ", ".join(st.name for st in chain)
    raise OperationError(400, f"Cannot find storage with name {name} for pv {pv} (it has {names})")


def ptype_of(info: PVTypeInfo) -> PayloadType:
    try:
        return parse_type(info.DBRType)
    except ConversionError:
        raise OperationError(400, f"{info.pvName} has an unknown DBRType {info.DBRType}") from None


async def merge_in(
    m: Mgmt,
    requested: str,
    storage: str,
    fetch: Callable[[str], Iterable[tuple[object, Sample]]],
) -> MergeReport:
    """Merge the other appliance's samples of a paused PV into its store ``storage``;
    ``fetch(pv)`` streams them (parsed ``getData.raw``), raising MergeError if it cannot."""
    info = _typeinfo(m, requested)
    pv = info.pvName
    if not info.paused:
        raise OperationError(400, not_paused(pv))
    store = _named(m, pv, _chain(m, pv), storage)
    if not isinstance(store, PlainPBStore):
        raise OperationError(
            400,
            f"Cannot merge data of {pv} into {storage}: it is a parquet:// store, and "
            "mergeInData rewrites PlainPB files only; merge into a pb:// store of the PV "
            "(ETL then moves the data on)",
        )
    ptype = ptype_of(info)

    def work() -> MergeReport:
        with store.lock(pv):
            return merge_into(store, pv, ptype, fetch(pv))  # type: ignore[arg-type]

    try:
        rep = await _exclusive(m, pv, work)
    except MergeError as e:
        raise OperationError(400, f"Cannot merge data of {pv}: {e}") from None
    except (StoreError, OSError) as e:
        raise OperationError(
            500, f"Merging data of {pv} stopped: {e}; each file is either merged or as it was"
        ) from None
    m.usage.invalidate()
    return rep


# ---------------------------------------------------------------------- importDataFromPlugin
def open_source(url: str, macros: dict[str, str]) -> DataStore:
    """The store a ``src=`` URL names (``pb://`` or ``parquet://``), opened for reading only
    (it is not one of this appliance's stores: nothing is written to it)."""
    try:
        cfg = parse_store_url(url, macros)
    except StoreURLError as e:
        raise OperationError(400, f"Cannot parse src {url!r}: {e}") from None
    if cfg.is_blackhole:
        raise OperationError(400, f"src {url!r} is a blackhole: there is nothing to read")
    if not cfg.root_folder.is_dir():
        raise OperationError(400, f"src folder {cfg.root_folder} does not exist")
    if cfg.scheme == "parquet":
        from ..storage.parquet_store import ParquetStore

        return ParquetStore(cfg)  # not probed: probing writes into the folder
    return PlainPBStore(cfg)


def _src_types(
    src: DataStore, pv: str, start: Instant, end: Instant
) -> list[tuple[str, PayloadType]]:
    """(file name, type) of each file of ``src`` holding ``pv``'s samples in [start, end]."""
    if isinstance(src, PlainPBStore):
        _prev, segments = src.locate(pv, start, end)
        return [(seg.path.name, seg.header.type) for seg in segments]
    out = []
    for pf in src.files_for_pv(pv):
        if pf.end > start[0] and pf.start <= end[0]:
            try:
                out.append((pf.path.name, src.file_info(pf.path).type))
            except StoreError as e:
                raise OperationError(400, f"Cannot read src: {e}") from None
    return out


async def import_from(
    m: Mgmt, requested: str, from_text: str, to_text: str, src_url: str, dest: str
) -> int:
    """importDataFromPlugin: append ``src``'s samples of the PV in [from, to] that are newer
    than the newest in ``dest``; returns how many were written."""
    info = _typeinfo(m, requested)
    pv = info.pvName
    try:
        start, end = parse_time(from_text), parse_time(to_text)
    except TimeParseError as e:
        raise OperationError(400, str(e)) from None
    if end < start:
        raise OperationError(400, f"to ({to_text}) is before from ({from_text})")
    dest_store = _named(m, pv, _chain(m, pv), dest)
    ptype = ptype_of(info)
    src = open_source(src_url, m.link.chains.macros)
    if str(src.root) == str(dest_store.root):
        raise OperationError(400, f"src and dest {dest} are the same folder")
    for fname, ftype in _src_types(src, pv, start, end):
        if ftype != ptype:
            raise OperationError(
                400,
                f"{fname} in src holds {ftype.arch_dbr_name}, but {pv} is "
                f"{ptype.arch_dbr_name}; nothing was imported",
            )

    def work() -> int:
        samples = src.read(pv, start, end, include_prev=False)
        return dest_store.append(Batch.of_samples(pv, ptype, samples)).one().written

    try:
        written = await _exclusive(m, pv, work)
    except (StoreError, OSError) as e:
        raise OperationError(
            500, f"Importing data of {pv} stopped: {e}; what was written stays, ask again"
        ) from None
    m.usage.invalidate()
    return written
