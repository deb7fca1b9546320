"""Where the engine meets the protocols that bring it samples (Channel Access, later PVA).

A *source* reaches PVs over one protocol; :class:`Archiver` is the engine's side, the same
for every protocol. What passes between them:

* the archiver asks a source to ``archive`` a name (connect, subscribe, watch its archive
  fields), to ``add_fields``, ``stop_archiving`` and ``forget`` it, for its ``metadata``
  and for a ``status_message`` when it is not archiving;
* a source tells the engine about a PV through :class:`SourceHost`: at the first connect it
  asks :meth:`SourceHost.create_pv` for the PV's :class:`~.archived_pv.ArchivedPV` (made
  with the sampling method and period the archiver holds for it), and from then on it calls
  that object directly: ``on_connect(ptype, problem)`` / ``on_disconnect()`` for connection
  events, ``set_field`` for archive-field values and ``on_event(secs, nanos, severity,
  status, value)`` for each sample. No call in between: ``on_event`` is the engine's hot
  path (one bound method handed to the protocol's decoder).

Which source gets a name is chosen by protocol (``ca``, ``pva``), as the AA chooses with
``usePVAccess`` or a ``pva://`` prefix (:func:`split_protocol`). Until a PVA source is
registered, a PVA name is archived by the CA source, as it always was here.

What stays in the engine whatever the protocol: the per-PV sampling parameters, the SCAN
ticks, conditional archiving (the AA also watches controlling PVs over CA only).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import ChainMap
from collections.abc import Iterable, Mapping
from typing import Protocol

from ..pb import PayloadType
from .archived_pv import ArchivedPV, SamplingMethod
from .scan import ScanSchedule
from .writer import Engine

log = logging.getLogger(__name__)

CA = "ca"
PVA = "pva"

#: The AA's default archive fields (``getFieldsArchivedAsPartOfStream``).
DEFAULT_ARCHIVE_FIELDS = ("HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR", "DRVH", "DRVL")


def split_protocol(name: str, use_pva: bool = False) -> tuple[str, str]:
    """(protocol, name without prefix): ``pva://X`` -> (``pva``, ``X``), ``ca://X`` -> (``ca``,
    ``X``); a bare name is PVA when ``use_pva`` (the typeinfo's ``usePVAccess``), else CA."""
    if name.startswith("pva://"):
        return PVA, name[6:]
    if name.startswith("ca://"):
        return CA, name[5:]
    return (PVA if use_pva else CA), name


class Connection(Protocol):
    """A source's connection to one PV, as status pages show it."""

    @property
    def connected(self) -> bool: ...

    @property
    def server(self) -> tuple[str, int] | None: ...  # (host, port) while connected

    @property
    def count(self) -> int: ...  # element count the server reported


class Controls(Protocol):
    """Conditional archiving (:class:`~.conditional.ControllingPVs`)."""

    def set(self, name: str, controlling: str | None) -> None: ...

    def apply(self, name: str) -> None: ...


class SourceHost(Protocol):
    """What a source may ask of the engine (implemented by :class:`Archiver`)."""

    @property
    def pvs(self) -> Mapping[str, ArchivedPV]: ...  # the engine's PVs by name

    def create_pv(self, name: str, ptype: PayloadType) -> ArchivedPV:
        """The PV's engine state at its first connect (sampling and control applied)."""
        ...


class Source(Protocol):
    """One protocol's way to archive PVs. Every method runs on the event loop."""

    @property
    def channels(self) -> Mapping[str, Connection]: ...  # the PVs it archives

    def attach(self, host: SourceHost) -> None:
        """Called once, when the source is registered with an :class:`Archiver`."""
        ...

    def archive(self, name: str, fields: Iterable[str]) -> None:
        """Connect to ``name`` (now or whenever its server answers), subscribe, and watch
        the archive ``fields``; not called for a name already in :attr:`channels`."""
        ...

    def add_fields(self, name: str, fields: Iterable[str]) -> None: ...

    def stop_archiving(self, name: str) -> bool:
        """Close the PV's connection (its ArchivedPV gets ``on_disconnect``); False if it
        was not archived here."""
        ...

    def forget(self, name: str) -> None:
        """Drop everything kept about a PV no longer archived (deleted, renamed)."""
        ...

    def metadata(self, name: str) -> Mapping[str, str]:
        """The latest EGU, PREC, limits ... read from the server ({} if none)."""
        ...

    def status_message(self, name: str) -> str:
        """Why a PV archived here has no data, as far as the protocol knows ("" if none)."""
        ...

    def start(self) -> None: ...

    async def stop(self) -> None: ...


class HostedSource:
    """What every source does the same way: :meth:`attach` (the archiver hands itself over
    once, in :meth:`Archiver.add_source`) and :attr:`host`."""

    _host: SourceHost | None = None

    def attach(self, host: SourceHost) -> None:
        self._host = host

    @property
    def host(self) -> SourceHost:
        if self._host is None:
            raise RuntimeError(f"{type(self).__name__} used before it was added to an Archiver")
        return self._host


class Archiver:
    """The engine's side of its sources: archives PVs of an :class:`Engine`, each through the
    source registered for its protocol (:meth:`add_source`)."""

    def __init__(self, engine: Engine, controls: Controls) -> None:
        self.engine = engine
        self.sources: dict[str, Source] = {}
        #: every archived PV's connection, whichever source holds it
        self.channels: Mapping[str, Connection] = {}
        #: (method, period) per PV, applied when its ArchivedPV is created (mgmt may change it
        #: before the first connect)
        self.sampling: dict[str, tuple[SamplingMethod, float]] = {}
        #: conditional archiving (the AA's controllingPV)
        self.controls = controls
        self._distinct: list[Source] = []  # each registered source once
        self._scan_task: asyncio.Task[None] | None = None
        #: SCAN PVs by due time (only they: no walk over every PV, see scan.py)
        self.scan_schedule = ScanSchedule()
        self._scan_changed: asyncio.Event | None = None

    def add_source(self, protocol: str, source: Source) -> None:
        """Archive the names of ``protocol`` (``ca``, ``pva``) through ``source``."""
        self.sources[protocol] = source
        source.attach(self)
        self._distinct = list({id(s): s for s in self.sources.values()}.values())
        self.channels = ChainMap(*(s.channels for s in self._distinct))

    def source_for(self, protocol: str) -> Source:
        """The source of ``protocol``; the CA source for one not registered (a PVA request
        is archived over CA until a PVA source exists, as before there were sources)."""
        src = self.sources.get(protocol)
        return src if src is not None else self.sources[CA]

    def source_of(self, name: str) -> Source | None:
        """The source archiving ``name`` now, if any."""
        for src in self._distinct:
            if name in src.channels:
                return src
        return None

    # ------------------------------------------------------------------ SourceHost
    @property
    def pvs(self) -> Mapping[str, ArchivedPV]:
        return self.engine.pvs

    def create_pv(self, name: str, ptype: PayloadType) -> ArchivedPV:
        method, period = self.sampling.get(name, (SamplingMethod.MONITOR, 1.0))
        pv = self.engine.add_pv(name, ptype, method, period)
        self.controls.apply(name)
        self._schedule_scan(name, method, period)
        return pv

    def _schedule_scan(self, name: str, method: SamplingMethod, period: float) -> None:
        if method is SamplingMethod.SCAN:
            self.scan_schedule.add(name, period, time.monotonic())
            if self._scan_changed is not None:
                self._scan_changed.set()
        else:
            self.scan_schedule.remove(name)

    # ------------------------------------------------------------------ what mgmt asks
    # (archive/pause/resume/delete/changeArchivalParameters/added stream fields; mgmt calls
    # these on the event loop)
    def archive(
        self,
        name: str,
        method: SamplingMethod = SamplingMethod.MONITOR,
        period: float = 1.0,
        fields: Iterable[str] = DEFAULT_ARCHIVE_FIELDS,
        *,
        pva: bool = False,
    ) -> None:
        """Start archiving ``name``; it connects whenever its server answers. ``pva`` (or a
        ``pva://`` prefix) picks the PVA source."""
        protocol, name = split_protocol(name, pva)
        if name in self.channels:
            return
        self.sampling[name] = (method, period)
        self.source_for(protocol).archive(name, fields)

    def stop_archiving(self, name: str) -> bool:
        """Close the PV's connections (its engine state and buffer stay until
        :meth:`Engine.remove_pv`); returns whether it was archived."""
        src = self.source_of(name)
        return src is not None and src.stop_archiving(name)

    def forget(self, name: str) -> None:
        """Drop what is kept about a PV that is no longer archived (deleted/renamed)."""
        self.stop_archiving(name)
        for src in self._distinct:
            src.forget(name)
        self.controls.set(name, None)
        self.sampling.pop(name, None)

    def change_sampling(self, name: str, method: SamplingMethod, period: float) -> None:
        self.sampling[name] = (method, period)
        pv = self.engine.pvs.get(name)
        if pv is not None:
            pv.set_sampling(method, period)
            self._schedule_scan(name, method, period)

    def add_fields(self, name: str, fields: Iterable[str]) -> None:
        """Start watching more archive fields of an archived PV (``PV.HIHI`` requests)."""
        src = self.source_of(name)
        if src is not None:
            src.add_fields(name, fields)

    def metadata(self, pvname: str) -> dict[str, str]:
        """Latest EGU/PREC/limits and field values, for retrieval's ``meta``."""
        out: dict[str, str] = {}
        for src in self._distinct:
            meta = src.metadata(pvname)
            if meta:
                out.update(meta)
                break
        pv = self.engine.pvs.get(pvname)
        if pv is not None:
            out.update(pv.field_values)
        return out

    def status_message(self, name: str) -> str:
        """Why a PV is not archiving, in a sentence for getPVStatus ("" when all is well):
        the engine's PV state first, then what its source knows (an invalid name, a PV that
        never connected)."""
        pv = self.engine.pvs.get(name)
        if pv is not None and (pv.status_message or pv.control_off):
            return pv.status_message or pv.control_off
        src = self.source_of(name)
        return src.status_message(name) if src is not None else ""

    # ------------------------------------------------------------------ run
    async def scan_ticks(self) -> None:
        """Once per period, SCAN PVs store their latest unstored value. Sleeps until the next
        one is due (or the schedule changes): the cost follows the SCAN PVs, not all PVs."""
        changed = self._scan_changed = asyncio.Event()
        sched = self.scan_schedule
        pvs = self.engine.pvs
        while True:
            now = time.monotonic()
            for name in sched.due(now):
                pv = pvs.get(name)
                if pv is None or pv.method is not SamplingMethod.SCAN:
                    sched.remove(name)  # removed from the engine or no longer SCAN
                    continue
                pv.on_scan_tick()
            wait = sched.seconds_until_next(time.monotonic())
            changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), 3600.0 if wait is None else wait)

    def start(self) -> None:
        self._scan_task = asyncio.ensure_future(self.scan_ticks())
        for src in self._distinct:
            src.start()

    async def stop(self) -> None:
        if self._scan_task is not None:
            self._scan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scan_task
        for src in self._distinct:
            await src.stop()
