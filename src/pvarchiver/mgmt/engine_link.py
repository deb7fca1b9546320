"""What mgmt asks of the engine, and the per-PV engine status it reads back.

The AA's mgmt talks to its engine over HTTP (``/engine/bpl/status`` ...); here both live in
one process, so this is a thin object over :class:`~pvarchiver.engine.writer.Engine` and
:class:`~pvarchiver.engine.source.Archiver`. Everything here runs on the event loop,
except the data deletion, which touches files and is meant for a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..engine.archived_pv import SamplingMethod
from ..engine.source import Archiver
from ..engine.writer import Engine
from ..storage.chains import DataStore, StoreChains, keeps_data
from ..storage.store import PlainPBStore
from .typeinfo import PVTypeInfo

log = logging.getLogger(__name__)


@dataclass
class EngineStatus:
    """A snapshot of one PV in the engine (what getPVStatus, getPVDetails and the reports
    show). Epoch values are seconds, 0 for never."""

    name: str
    connected: bool
    method: str
    period: float
    host: str = ""
    element_count: int = 0
    dbr_type: str = ""
    events_received: int = 0
    events_stored: int = 0
    samples_written: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    first_connected_epoch: int = 0
    last_connection_lost_epoch: int = 0
    last_connection_regained_epoch: int = 0
    connection_loss_regain_count: int = 0
    last_event_epoch: int = 0
    write_errors: int = 0
    last_write_error: str = ""
    #: when its writes started failing, if they have failed for long enough to report
    #: (``StoreWriteHealth.pv_since``); 0 when its samples reach the store
    write_failing_since: float = 0.0
    #: the store the engine writes it to
    store: str = ""
    status_message: str = ""
    buffered_samples: int = 0
    fields: dict[str, str] = field(default_factory=dict)


class EngineLink:
    """Start/stop/flush PVs in the engine; without an ``archiver`` (no Channel Access) PVs
    are registered but not archived."""

    def __init__(
        self,
        engine: Engine,
        stores: Sequence[PlainPBStore],
        archiver: Archiver | None = None,
        chains: StoreChains | None = None,
    ) -> None:
        self.engine = engine
        self.stores = list(stores)
        self.archiver = archiver
        #: every PV's stores (the default chain: ``stores``)
        self.chains = chains or StoreChains.fixed(self.stores)

    def stores_holding(self, name: str) -> list[DataStore]:
        """Every store that may hold files of ``name`` (``pb://`` and ``parquet://``): its
        own chain first (in ETL order), then every other folder in use, each folder and
        format once."""
        out: list[DataStore] = []
        seen: set[tuple[str, str]] = set()
        for st in [*self.chains.readable(name), *self.chains.stores()]:
            if not keeps_data(st):
                continue
            key = (type(st).__name__, str(st.root))
            if key not in seen:
                seen.add(key)
                out.append(st)  # type: ignore[arg-type]
        return out

    @property
    def ready(self) -> bool:
        return self.archiver is not None

    # ------------------------------------------------------------------ control
    def start(self, info: PVTypeInfo) -> bool:
        """Archive a PV as its typeinfo says; False when it is not to be archived."""
        arch = self.archiver
        if arch is None or info.paused or info.samplingMethod == "DONT_ARCHIVE":
            return False
        method = SamplingMethod.SCAN if info.samplingMethod == "SCAN" else SamplingMethod.MONITOR
        arch.controls.set(info.pvName, info.controllingPV)
        if info.pvName in arch.channels:
            arch.change_sampling(info.pvName, method, info.samplingPeriod)
            arch.add_fields(info.pvName, info.archiveFields)
            return True
        arch.archive(
            info.pvName,
            method,
            info.samplingPeriod,
            fields=list(info.archiveFields),
            pva=info.usePVAccess,
        )
        return True

    def is_archiving(self, name: str) -> bool:
        return self.archiver is not None and name in self.archiver.channels

    def stop(self, name: str) -> None:
        """Pause: no more events; buffered samples are written by the normal write cycle."""
        if self.archiver is not None:
            self.archiver.stop_archiving(name)

    def change_sampling(self, name: str, method: str, period: float) -> None:
        if self.archiver is not None:
            m = SamplingMethod.SCAN if method == "SCAN" else SamplingMethod.MONITOR
            self.archiver.change_sampling(name, m, period)

    def add_fields(self, name: str, fields: list[str]) -> None:
        if self.archiver is not None:
            self.archiver.add_fields(name, fields)

    async def flush(self, name: str) -> None:
        """Write what the engine still buffers for ``name`` (consolidation, delete, rename).

        A failed write (disk full) keeps the samples in the engine and raises OSError, so
        that nothing is lost silently."""
        eng = self.engine
        while eng.is_in_flight(name):  # the write loop is writing it: let it finish
            await asyncio.sleep(0.05)
        taken = eng.take_one(name)
        if taken:
            _written, failed = await asyncio.to_thread(eng.write_buffers, taken)
            eng.finish(taken, failed)
            if failed:
                raise OSError(f"could not write the last samples of {name}: {failed[name]}")
        while eng.is_in_flight(name):
            await asyncio.sleep(0.05)

    async def flush_and_remove(self, name: str, keep: bool = True) -> None:
        """Stop archiving ``name``, write what the engine holds (unless ``keep`` is False:
        its data is about to be deleted), drop it (delete/rename). An OSError from the
        write leaves the samples in the engine, so the caller may ask again."""
        if self.archiver is not None:
            self.archiver.forget(name)
        if keep:
            await self.flush(name)
        while self.engine.is_in_flight(name):  # a write cycle still holds it
            await asyncio.sleep(0.05)
        self.engine.remove_pv(name)

    def delete_data(self, name: str) -> tuple[int, list[str]]:
        """Remove every file of the PV from every store (worker thread).

        Returns how many were removed and, for each file that could not be, its path and
        why: on Windows a file that a reader (a retrieval, a virus scanner) holds open
        cannot be deleted, and the caller must be able to say so rather than fail.
        """
        removed = 0
        failed: list[str] = []
        stores = self.stores_holding(name)
        with contextlib.ExitStack() as locks:
            # all stores at once, in ETL order: no ETL step of this PV runs in between
            for store in stores:
                locks.enter_context(store.lock(name))
            for store in stores:
                for pf in store.files_for_pv(name):
                    try:
                        pf.path.unlink()
                        removed += 1
                    except FileNotFoundError:
                        pass
                    except OSError as e:
                        failed.append(f"{pf.path}: {e.strerror or e}")
                store.forget(name)
        return removed, failed

    # ------------------------------------------------------------------ status
    def snapshot(self, name: str, full: bool = True) -> EngineStatus | None:
        """The engine's state of a PV it archives; None if it has no channel for it.
        ``full=False`` skips the per-reason drops and field values (getPVStatus of many)."""
        arch = self.archiver
        if arch is None:
            return None
        ch = arch.channels.get(name)
        if ch is None:
            return None
        method, period = arch.sampling.get(name, (SamplingMethod.MONITOR, 1.0))
        st = EngineStatus(
            name=name, connected=bool(ch.connected), method=str(method), period=period
        )
        if ch.server is not None:
            st.host = f"{ch.server[0]}:{ch.server[1]}"
        st.status_message = arch.status_message(name)  # why it is not archiving, if it is not
        pv = self.engine.pvs.get(name)
        if pv is None:
            return st
        m = pv.metrics
        st.method, st.period = str(pv.method), pv.period
        st.dbr_type = pv.ptype.arch_dbr_name
        st.element_count = ch.count
        st.events_received = m.events_received
        st.events_stored = m.events_stored
        st.samples_written = m.samples_written
        if full:
            st.drops = {str(k): v for k, v in m.drops.items()}
            st.fields = pv.field_values
        st.first_connected_epoch = m.first_connected_epoch
        st.last_connection_lost_epoch = m.last_connection_lost_epoch
        st.last_connection_regained_epoch = m.last_connection_regained_epoch
        st.connection_loss_regain_count = m.connection_loss_regain_count
        st.last_event_epoch = m.last_event_epoch
        st.write_errors = m.write_errors
        st.last_write_error = m.last_write_error
        health = self.engine.write_health
        st.store = health.store
        if health.pvs:
            st.write_failing_since = health.pv_since(name, self.engine.clock())
        st.status_message = st.status_message or pv.status_message
        st.buffered_samples = len(pv.buffer)
        return st

    def snapshots(self) -> dict[str, EngineStatus]:
        """Every PV the engine has a channel for."""
        arch = self.archiver
        if arch is None:
            return {}
        out = {}
        for name in list(arch.channels):
            s = self.snapshot(name)
            if s is not None:
                out[name] = s
        return out
