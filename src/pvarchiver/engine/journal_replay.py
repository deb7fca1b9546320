"""Replay the write-ahead journal into the store at start, before new samples are written.

Each PV's journaled samples are sorted, duplicates (carried blocks, a sample in two
segments) dropped, and only those after the newest sample already in the store appended,
so a replay never writes anything twice and a second replay of the same segments writes
nothing. Segments are deleted once everything is in the store; when a PV cannot be written
(its file now holds another type, the disk is full) the segments are moved aside to
``<journal>/unreplayed-<time>/`` and the reason logged: nothing is dropped silently and the
next start does not trip over them again.
"""

from __future__ import annotations

import logging
import pickle
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..pb import PayloadType, Sample
from ..storage.batch import Batch
from ..storage.chains import StoreChains, keeps_data
from ..storage.columns import NUMPY_DTYPE
from ..storage.store import PlainPBStore, fsync_dir
from .archived_pv import ROW_DTYPES
from .journal import (
    BLOCK,
    DEF_HEAD,
    DEFINE,
    FIELDS,
    FORGET,
    JID,
    OBJ,
    ROWS,
    iter_records,
    segment_numbers,
    segment_path,
)

log = logging.getLogger(__name__)

_COLS = ("secs", "nanos", "val", "sev", "stat")


@dataclass
class ReplayReport:
    segments: int = 0
    records: int = 0
    cut_bytes: int = 0  # torn or damaged tails, not replayed
    samples_read: int = 0
    samples_written: int = 0
    pvs: int = 0
    errors: list[str] = field(default_factory=list)
    moved_to: str = ""
    seconds: float = 0.0


@dataclass
class _PVData:
    name: str
    ptype: PayloadType
    numeric: list[np.ndarray] = field(default_factory=list)  # rows in ROW_DTYPES layout
    objs: list[tuple[int, int, Any, int, int]] = field(default_factory=list)
    fields: dict[tuple[int, int], dict[str, str]] = field(default_factory=dict)

    def count(self) -> int:
        return sum(len(a) for a in self.numeric) + len(self.objs)


def _with_id(typecode: str) -> np.dtype[Any]:
    row = ROW_DTYPES[typecode]
    return np.dtype([("jid", "<u4")] + [(n, row.fields[n][0]) for n in row.names])  # type: ignore[index]


class _Reader:
    """Accumulates the records of all segments, in order."""

    def __init__(self) -> None:
        self.pvs: dict[int, _PVData] = {}

    def feed(self, rtype: int, payload: bytes) -> None:
        if rtype == DEFINE:
            jid, ptype = DEF_HEAD.unpack_from(payload)
            if jid not in self.pvs:
                name = payload[DEF_HEAD.size :].decode("utf-8")
                self.pvs[jid] = _PVData(name, PayloadType(ptype))
        elif rtype == ROWS:
            tc = chr(payload[0])
            rows = np.frombuffer(payload, dtype=_with_id(tc), offset=1)
            order = np.argsort(rows["jid"], kind="stable")
            rows = rows[order]
            ids, starts = np.unique(rows["jid"], return_index=True)
            bounds = [*starts[1:], len(rows)]
            for jid, a, b in zip(ids.tolist(), starts.tolist(), bounds, strict=True):
                pv = self.pvs.get(jid)
                if pv is not None:
                    pv.numeric.append(_as_rows(rows[a:b], tc))
        elif rtype == BLOCK:
            (jid,) = JID.unpack_from(payload)
            tc = chr(payload[JID.size])
            pv = self.pvs.get(jid)
            if pv is not None:
                pv.numeric.append(np.frombuffer(payload, ROW_DTYPES[tc], offset=JID.size + 1))
        elif rtype == OBJ:
            jid, *row = pickle.loads(payload)
            pv = self.pvs.get(jid)
            if pv is not None:
                pv.objs.append(tuple(row))  # type: ignore[arg-type]
        elif rtype == FIELDS:
            jid, secs, nanos, fields = pickle.loads(payload)
            pv = self.pvs.get(jid)
            if pv is not None:
                pv.fields[(secs, nanos)] = fields
        elif rtype == FORGET:
            (jid,) = JID.unpack_from(payload)
            pv = self.pvs.get(jid)
            if pv is not None:  # deleted or renamed: what it had must not come back
                pv.numeric.clear()
                pv.objs.clear()
                pv.fields.clear()


def _as_rows(with_id: np.ndarray, typecode: str) -> np.ndarray:
    out = np.empty(len(with_id), dtype=ROW_DTYPES[typecode])
    for n in _COLS:
        out[n] = with_id[n]
    return out


def _newest(stores: Sequence[PlainPBStore], name: str) -> tuple[int, int] | None:
    """The newest sample of ``name`` in any store: ETL may have moved the STS's files on
    since they were journaled, and a replay must not write them a second time."""
    found = [t for st in stores if (t := st.last_known_timestamp(name)) is not None]
    return max(found) if found else None


def _write_numeric(store: PlainPBStore, pv: _PVData, later: Sequence[PlainPBStore]) -> int:
    rows = np.concatenate(pv.numeric)
    order = np.lexsort((rows["nanos"], rows["secs"]))
    rows = rows[order]
    keep = np.ones(len(rows), dtype=bool)  # drop repeated timestamps (carried blocks)
    keep[1:] = (rows["secs"][1:] != rows["secs"][:-1]) | (rows["nanos"][1:] != rows["nanos"][:-1])
    rows = rows[keep]
    last = _newest([store, *later], pv.name)
    if last is not None:
        after = (rows["secs"] > last[0]) | ((rows["secs"] == last[0]) & (rows["nanos"] > last[1]))
        rows = rows[after]
    if not len(rows):
        return 0
    special: dict[int, Sample] = {}
    if pv.fields:
        for i, (s, n) in enumerate(zip(rows["secs"].tolist(), rows["nanos"].tolist(), strict=True)):
            f = pv.fields.get((s, n))
            if f is not None:
                r = rows[i]
                special[i] = Sample(s, n, r["val"].item(), int(r["sev"]), int(r["stat"]), fields=f)
    batch = Batch.of_columns(
        pv.name,
        pv.ptype,
        rows["secs"].astype(np.int64),
        rows["nanos"].astype(np.int64),
        rows["val"].astype(NUMPY_DTYPE[pv.ptype]),
        rows["sev"].astype(np.int32),
        rows["stat"].astype(np.int32),
        special,
    )
    return store.append(batch).one().written


def _write_objs(store: PlainPBStore, pv: _PVData, later: Sequence[PlainPBStore]) -> int:
    seen: set[tuple[int, int]] = set()
    samples = []
    last = _newest(later, pv.name)
    for secs, nanos, val, sev, stat in sorted(pv.objs, key=lambda r: (r[0], r[1])):
        if (secs, nanos) in seen or (last is not None and (secs, nanos) <= last):
            continue
        seen.add((secs, nanos))
        samples.append(Sample(secs, nanos, val, sev, stat, fields=pv.fields.get((secs, nanos))))
    return store.append(Batch.of_samples(pv.name, pv.ptype, samples)).one().written


def replay(
    folder: Path,
    store: PlainPBStore,
    later: Sequence[PlainPBStore] = (),
    chains: StoreChains | None = None,
) -> ReplayReport:
    """Write every journaled sample newer than what ``store`` and the ``later`` stores of the
    chain hold into ``store``; delete (or set aside) the segments. With ``chains``, each PV
    goes to its own first store instead, checked against its own later stores."""
    t0 = time.monotonic()
    rep = ReplayReport()
    nums = segment_numbers(folder) if folder.is_dir() else []
    if not nums:
        return rep
    reader = _Reader()
    for n in nums:
        path = segment_path(folder, n)
        try:
            data = path.read_bytes()
        except OSError as e:
            rep.errors.append(f"{path}: {e.strerror or e}")
            continue
        end = 0
        for rtype, payload, nxt in iter_records(data):
            reader.feed(rtype, payload)
            rep.records += 1
            end = nxt
        rep.cut_bytes += len(data) - end
        if len(data) > end:
            log.warning(
                "journal %s: %d bytes of torn or damaged tail cut", path.name, len(data) - end
            )
        rep.segments += 1
    chains = chains or StoreChains.fixed([store, *later])
    _write_all(reader, chains, rep)
    if rep.errors:
        aside = folder / time.strftime("unreplayed-%Y%m%dT%H%M%S", time.gmtime())
        aside.mkdir(exist_ok=True)
        for n in nums:
            p = segment_path(folder, n)
            if p.exists():
                shutil.move(str(p), aside / p.name)
        rep.moved_to = str(aside)
        log.error("journal segments kept in %s: %s", aside, "; ".join(rep.errors[:5]))
    else:
        for n in nums:
            segment_path(folder, n).unlink(missing_ok=True)
        fsync_dir(folder)
    rep.seconds = time.monotonic() - t0
    return rep


def _write_all(reader: _Reader, chains: StoreChains, rep: ReplayReport) -> None:
    for pv in reader.pvs.values():
        k = pv.count()
        if not k:
            continue
        rep.pvs += 1
        rep.samples_read += k
        try:
            chain = chains.chain(pv.name)
            # later stores of either format: ETL may have moved journaled samples on
            store, later = chain[0], [s for s in chain[1:] if keeps_data(s)]
            if not isinstance(store, PlainPBStore):  # a blackhole first: nothing to keep
                continue
            # what replay writes must be durable before its segments go
            synced, store.fsync = store.fsync, True
            try:
                w = _write_numeric(store, pv, later) if pv.numeric else 0
                w += _write_objs(store, pv, later) if pv.objs else 0
            finally:
                store.fsync = synced
        except Exception as e:  # the store refused: keep the segments, say why
            rep.errors.append(f"{pv.name}: {e}")
            log.error("journal replay of %s failed: %s", pv.name, e)
            continue
        rep.samples_written += w
