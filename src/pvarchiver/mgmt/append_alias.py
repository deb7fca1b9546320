"""appendAndAliasPV: a PV was renamed in its IOC; give the new name the old name's history.

The older PV's samples from before the newer PV's first sample and all of the newer PV's
samples are written, in time order, into one store of the newer PV (``storage``, usually
the LTS) under a temporary name; once the copy holds every sample, its files replace the
newer PV's (each file renamed into place atomically), the newer PV's files elsewhere go,
then the older PV is deleted and its name becomes an alias of the newer one.

A crash (or an error) at any point loses nothing, and calling again finishes the work:

* until the newer PV's files are replaced, the copy is extra; its name is fixed, so the next
  call removes what a crashed one left;
* the copy's files replace the newer PV's newest first, so an interrupted swap leaves in the
  newer PV a time-suffix of the older PV's samples, and the next call copies the rest (each
  PV is read as the union of its stores, each timestamp once, so a sample is never counted
  twice nor skipped);
* the newer PV's other files and then the older PV are deleted last, once the newer PV's
  files in ``storage`` hold all their samples.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Collection, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..pb import PayloadType, Sample
from ..storage.batch import Batch
from ..storage.chains import ChainError, keeps_data
from ..storage.pbfile import PBFile, PBFileError
from ..storage.store import PlainPBStore
from .manager import OperationError
from .pvinput import lookup_name
from .rename import copy_pv_data
from .service import Mgmt

log = logging.getLogger(__name__)

Instant = tuple[int, int]

#: the temporary name's infix (the AA's)
TEMP_INFIX = "_appendAlias_"


@dataclass
class AppendCounts:
    """Samples of each PV copied, and samples the combined files hold."""

    older: int = 0
    newer: int = 0
    written: int = 0


#: why appendAndAliasPV refuses Parquet data (docs/parquet.md)
PARQUET_REASON = (
    "appendAndAliasPV copies PlainPB files only; move the data to pb:// stores first "
    "(changeStore), nothing was changed"
)


class AppendAliasError(Exception):
    """The data step refused or failed; nothing of either PV was changed."""


# ---------------------------------------------------------------------- reading
def _plain(stores: Sequence[object]) -> list[PlainPBStore]:
    return [s for s in stores if isinstance(s, PlainPBStore)]


def first_timestamp(stores: Sequence[PlainPBStore], pv: str) -> Instant | None:
    """The timestamp of ``pv``'s first sample in any of ``stores``, None if it has none."""
    best: Instant | None = None
    for st in stores:
        for s in st.read_all(pv):
            if best is None or s.timestamp < best:
                best = s.timestamp
            break
    return best


def merged(stores: Sequence[PlainPBStore], pv: str, before: Instant | None) -> Iterator[Sample]:
    """Every sample of ``pv`` in ``stores``, in time order, each timestamp once (the first
    store's, oldest store first, when two stores hold one), up to ``before``.

    A union, not retrieval's "each later than the last" walk of the chain: after an
    interrupted call the newer PV's store may hold older samples than its other stores, and
    a walk would skip them; the union loses none and equals the walk otherwise."""
    streams = [st.read_all(pv) for st in reversed(stores)]
    last: Instant | None = None
    for s in heapq.merge(*streams, key=lambda x: x.timestamp):
        ts = s.timestamp
        if before is not None and ts >= before:
            break
        if ts != last:
            last = ts
            yield s


def check_types(stores: Sequence[PlainPBStore], pv: str, ptype: PayloadType) -> None:
    """Refuse before anything is written if a file of ``pv`` holds another type."""
    for st in stores:
        for pf in st.files_for_pv(pv):
            try:
                with PBFile.open(pf.path) as f:
                    if f.header.pvname == pv and f.header.type != ptype:
                        raise AppendAliasError(
                            f"{pf.path} holds {f.header.type.arch_dbr_name}, "
                            f"not {ptype.arch_dbr_name} as the typeinfo of {pv} says"
                        )
            except (PBFileError, OSError) as e:
                raise AppendAliasError(f"{pf.path} cannot be read: {e}") from None


# ---------------------------------------------------------------------- the data step
def _remove(stores: Sequence[PlainPBStore], pv: str, keep: Collection[Path] = ()) -> None:
    """Delete ``pv``'s files in ``stores`` except those in ``keep``."""
    for st in stores:
        for pf in st.files_for_pv(pv):
            if pf.path not in keep:
                pf.path.unlink(missing_ok=True)
        st.forget(pv)


def append_older_into_newer(
    older_stores: Sequence[PlainPBStore],
    newer_stores: Sequence[PlainPBStore],
    dest: PlainPBStore,
    older: str,
    newer: str,
    temp: str,
    ptype: PayloadType,
) -> AppendCounts:
    """The data step (a worker thread; both PVs paused and flushed). ``older_stores`` and
    ``newer_stores`` are each PV's chain (first store first), ``dest`` one of the newer's.
    Files of the PVs outside their chains are not read and not touched."""
    older_stores, newer_stores = _plain(older_stores), _plain(newer_stores)
    every = [*older_stores, *newer_stores, dest]
    with contextlib.ExitStack() as locks:
        # no ETL step of either PV runs in between (ETL takes one PV's locks at a time)
        for pv in (older, newer, temp):
            for st in every:
                locks.enter_context(st.lock(pv))
        check_types(older_stores, older, ptype)
        check_types(newer_stores, newer, ptype)
        _remove([dest], temp)  # what a crashed earlier call left
        if first_timestamp(older_stores, older) is None:
            raise AppendAliasError(f"There seems to be no data for {older}; nothing to append")
        first = first_timestamp(newer_stores, newer)
        counts = AppendCounts()

        def combined() -> Iterator[Sample]:
            for s in merged(older_stores, older, first):
                counts.older += 1
                yield s
            for s in merged(newer_stores, newer, None):
                counts.newer += 1
                yield s

        try:
            result = dest.append(Batch.of_samples(temp, ptype, combined())).one()
            counts.written = sum(1 for _ in dest.read_all(temp))
            if result.dropped_not_increasing or counts.written != counts.older + counts.newer:
                raise AppendAliasError(
                    f"the combined copy holds {counts.written} samples, not "
                    f"{counts.older} + {counts.newer}; {newer} and {older} are unchanged"
                )
            # each file renamed over the newer PV's, newest first: interrupted, the newer PV
            # holds a time-suffix of the older samples, and a new call copies the rest
            copy_pv_data([dest], temp, newer, newest_first=True)
        except BaseException:
            _remove([dest], temp)
            raise
        copied = {pf.start for pf in dest.files_for_pv(temp)}
        kept = {pf.path for pf in dest.files_for_pv(newer) if pf.start in copied}
        _remove([*newer_stores, dest], newer, kept)  # every sample of them is in `kept`
        _remove([dest], temp)
        for st in every:
            st.forget(newer)
    return counts


# ---------------------------------------------------------------------- the action
def temp_name(newer: str) -> str:
    """The copy's name: always the same for one PV, so that a call finds (and removes) what
    a crashed call left."""
    return f"{newer}{TEMP_INFIX}0"


async def append_and_alias(
    mgmt: Mgmt, older_requested: str, newer_requested: str, storage: str
) -> dict[str, str]:
    """appendAndAliasPV; the AA's checks and answer keys. Raises OperationError (4xx) for a
    refused request, with nothing changed."""
    reg, man, link = mgmt.registry, mgmt.manager, mgmt.link
    older = reg.real_name(lookup_name(older_requested))
    newer = reg.real_name(lookup_name(newer_requested))
    if older == newer:
        raise OperationError(400, f"{older_requested} and {newer_requested} are the same PV")
    old_info, new_info = reg.typeinfo(older), reg.typeinfo(newer)
    for name, info in ((older, old_info), (newer, new_info)):
        if info is None:
            raise OperationError(404, f"PV {name} is not being archived")
        if not info.paused:
            raise OperationError(400, f"Cannot append unless PV {name} is paused.")
    assert old_info is not None and new_info is not None
    if old_info.DBRType != new_info.DBRType:
        raise OperationError(
            400,
            f"The PVs {older} and {newer} are of different DBR Types. Cannot consolidate.",
        )
    try:  # each PV's own chain (its typeinfo's dataStores); `storage` is one of the newer's
        dest = link.chains.named(newer, storage)
    except ChainError as e:
        raise OperationError(400, f"The stores of {newer} cannot be used: {e}") from None
    if dest is not None and keeps_data(dest) and not isinstance(dest, PlainPBStore):
        raise OperationError(400, f"{storage} of {newer} is a parquet:// store; {PARQUET_REASON}")
    if not isinstance(dest, PlainPBStore):  # absent, or a blackhole: nothing could be kept
        raise OperationError(400, f"Cannot find storage with name {storage} for pv {newer}")
    for name in (older, newer):
        held = [
            st.name
            for st in link.chains.readable(name)
            if keeps_data(st) and not isinstance(st, PlainPBStore) and st.files_for_pv(name)
        ]
        if held:  # the copy would leave them out, and the older PV's data is deleted after
            raise OperationError(
                400, f"{name} has data in parquet:// store {', '.join(held)}; {PARQUET_REASON}"
            )
    older_chain = _plain(link.chains.readable(older))
    newer_chain = _plain(link.chains.readable(newer))
    ptype = next(t for t in PayloadType if t.arch_dbr_name == new_info.DBRType)
    if older in man.busy or newer in man.busy:
        raise OperationError(409, f"Another operation on {older} or {newer} is in progress")
    temp = temp_name(newer)
    if reg.has_typeinfo(temp) or temp in man.pending:
        raise OperationError(409, f"{temp}, the name of the temporary copy, is a PV here")
    man.busy.update((older, newer, temp))
    try:
        try:
            for name in (older, newer):  # pausing stops new events; buffered ones go too
                await link.flush(name)
        except OSError as e:
            raise OperationError(409, f"Nothing was changed: {e}; ask again") from None
        try:
            counts = await asyncio.to_thread(
                append_older_into_newer,
                older_chain,
                newer_chain,
                dest,
                older,
                newer,
                temp,
                ptype,
            )
        except AppendAliasError as e:
            raise OperationError(400, f"Giving up on append and alias of {older}: {e}") from None
    finally:
        man.busy.difference_update((older, newer, temp))
        mgmt.usage.invalidate()
    log.info("appendAndAliasPV %s -> %s: %s", older, newer, counts)
    new_info.touch()
    await asyncio.to_thread(reg.put_typeinfo, new_info)
    out = {
        "status": "ok",
        "desc": f"Appended the data of {older} to {newer}; {older} is an alias of {newer}",
        "deleteNewer": "ok",
        "beforeEventCount": str(counts.older + counts.newer),
        "afterEventCount": str(counts.written),
    }
    aliases = [a for a, real in reg.aliases().items() if real == older]
    try:
        await man.delete(older, delete_data=True)
        out["deleteOlder"] = "ok"
    except OperationError as e:  # its data is in the newer PV already: nothing is lost
        log.error("appendAndAliasPV: deleting %s failed: %s", older, e.message)
        out["deleteOlder"] = "failed"
        out["desc"] = f"Appended the data of {older} to {newer}; deleting {older} failed: {e}"
        return out

    def add_aliases() -> None:  # the older name and its own aliases now lead to the newer PV
        with reg.batch() as b:
            for a in [older, *aliases]:
                b.add_alias(a, newer)

    await asyncio.to_thread(add_aliases)
    out["addAlias"] = "ok"
    return out
