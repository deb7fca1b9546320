"""Building the archiver process from one :class:`~pvarchiver.settings.Settings`.

:func:`build_appliance` makes every part in dependency order (stores, CA client, engine,
management, retrieval, ETL, HTTP app) and wires them by passing objects to constructors;
:meth:`Appliance.lifespan` starts and stops them in the right order. Nothing here reads the
environment: what varies comes in through the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Sequence
from dataclasses import dataclass, field

from starlette.applications import Starlette

from .ca import CAClient
from .engine.channels import CAArchiver
from .engine.journal import Journal, run_journal
from .engine.journal_replay import replay
from .engine.pva_source import PVASource
from .engine.source import PVA, Archiver
from .engine.writer import Engine
from .mgmt.engine_link import EngineLink
from .mgmt.manager import MgmtConfig
from .mgmt.pvinput import ArchiveSpec
from .mgmt.service import Mgmt
from .pva.client import PVAClient
from .pvws.hub import Hub
from .pvws.web import PVWS
from .retrieval.reduce import REDUCER
from .retrieval.runtime import RetrievalOptions
from .retrieval.service import Retrieval
from .settings import Settings, StorageSettings
from .storage.chains import (
    BlackholeStore,
    ChainError,
    Store,
    StoreChains,
    check_chain,
    keeps_data,
    open_data_store,
)
from .storage.schedule import ETLScheduler
from .storage.store import PlainPBStore, open_store
from .storage.url import StoreURLError, parse_store_url

log = logging.getLogger(__name__)


def open_stores(storage: StorageSettings) -> list[Store]:
    """The default chain, the stores of ``storage.store_urls``, each probed: raises
    :class:`~pvarchiver.storage.probe.StoreFolderError` for a folder that cannot hold them
    and :class:`~pvarchiver.storage.url.StoreURLError` for a list that cannot be a chain.

    The first store is the engine's and must be ``pb://`` (a ``parquet://`` one is refused
    with :data:`~pvarchiver.storage.chains.PARQUET_FIRST_REASON`); later ones may be
    ``parquet://`` (an MTS or LTS) and the last a ``blackhole://``."""
    configs = [parse_store_url(u) for u in storage.store_urls]
    try:
        check_chain(configs)
    except ChainError as e:
        raise StoreURLError(f"the default data stores cannot be a chain: {e}") from None
    out: list[Store] = [open_store(configs[0], storage.naming)]
    for cfg in configs[1:]:
        if cfg.is_blackhole:
            out.append(BlackholeStore(cfg))
        else:
            out.append(open_data_store(cfg, storage.naming))
    return out


def describe_store(st: Store) -> str:
    """How a store names its files (a blackhole has none), for the start-up log."""
    return "keeps nothing" if not keeps_data(st) else st.naming.describe()


async def etl_loop(scheduler: ETLScheduler, stop: asyncio.Event) -> None:
    """Run due ETL stages in a worker thread so that HTTP and ingest keep going.

    Stopped with ``stop`` rather than cancelled: a pass already running in its thread is
    waited for, so the shutdown consolidation never runs alongside it.
    """
    while not stop.is_set():
        # at least once a minute (or as often as a set first-run delay): a PV given a new
        # chain gets its stages within that time
        cap = 60.0 if scheduler.first_run is None else max(1.0, scheduler.first_run)
        wait = min(cap, max(1.0, scheduler.seconds_until_next(time.time())))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), wait)
        if stop.is_set():
            return
        try:
            await asyncio.to_thread(scheduler.run_due, time.time())
        except Exception:
            log.exception("ETL pass failed")


async def _logged(awaitable: Awaitable[object], what: str) -> None:
    try:
        await awaitable
    except Exception:
        log.exception("shutdown: %s failed; carrying on", what)


def open_journal(
    settings: Settings, stores: Sequence[Store], chains: StoreChains | None = None
) -> Journal | None:
    """Replay what an earlier process journaled into each PV's first store (before anything
    else writes there), then open the journal for this one."""
    js = settings.journal
    if js.folder is None:
        return None
    first = stores[0]
    assert isinstance(first, PlainPBStore)  # open_stores refuses any other first store
    later = [st for st in stores[1:] if keeps_data(st)]
    rep = replay(js.folder, first, later, chains)  # type: ignore[arg-type]
    if rep.segments:
        log.info(
            "journal replay: %d samples of %d PVs from %d segments, %d written to their "
            "first stores (the rest were there already), %d bytes of torn tail cut, %.2f s",
            rep.samples_read,
            rep.pvs,
            rep.segments,
            rep.samples_written,
            rep.cut_bytes,
            rep.seconds,
        )
    if rep.errors:
        log.error("journal replay left segments in %s: %s", rep.moved_to, rep.errors[:3])
    try:
        return Journal(js.folder, js.fsync_seconds)
    except OSError as e:
        # archiving without crash protection loses less than not archiving at all
        log.error("journal: cannot open %s (%s); archiving WITHOUT the journal", js.folder, e)
        return None


def mgmt_config(settings: Settings) -> MgmtConfig:
    m = settings.mgmt
    return MgmtConfig(
        identity=m.identity,
        measure_seconds=m.initial_sampling_seconds,
        abort_minutes=m.abort_request_minutes,
        storage_root=settings.storage.root,
        policies_file=m.policies_file,
        storage_scan_seconds=m.storage_scan_seconds,
        named_flags_file=m.named_flags_file,
        default_pva=settings.pva.default_pva,
        registry_url=m.registry,
    )


def bind_chains(chains: StoreChains, mgmt: Mgmt) -> None:
    """Each PV's chain is its typeinfo's ``dataStores``, read from the registry when used."""
    registry = mgmt.registry

    def urls_of(pv: str) -> list[str] | None:
        info = registry.typeinfo_view(pv)
        return info.dataStores if info is not None else None

    def listing() -> list[tuple[str, list[str]]]:
        return [(i.pvName, i.dataStores) for i in registry.typeinfos()]

    chains.bind(urls_of, listing)


@dataclass
class Appliance:
    """One archiver: its parts, already wired; :meth:`lifespan` runs them."""

    settings: Settings
    stores: list[Store]
    engine: Engine
    client: CAClient
    archiver: Archiver
    mgmt: Mgmt
    retrieval: Retrieval
    etl: ETLScheduler
    pvws: PVWS | None = None
    #: the PV Access client of the engine and the archive workflow (``pva://`` PVs)
    pva_client: PVAClient | None = None
    app: Starlette = field(init=False)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list, init=False)
    _stops: list[asyncio.Event] = field(default_factory=list, init=False)
    _health_stop: asyncio.Event = field(default_factory=asyncio.Event, init=False)
    _health_task: asyncio.Task[None] | None = field(default=None, init=False)

    async def start(self) -> None:
        """CA, the archiver, the workflow (every registered PV is archived again, pending
        requests resume), the ``--archive`` requests, the write loop and ETL; the health
        watch (free space) first, so that a store already short of space is logged at once."""
        health = self.mgmt.health
        await asyncio.to_thread(health.check)
        self._health_task = asyncio.create_task(health.run(self._health_stop))
        await self.client.start()
        if self.pva_client is not None:
            await self.pva_client.start()
        self.archiver.start()
        await self.mgmt.manager.start(self.client, self.pva_client)
        if self.settings.archive:
            specs = [ArchiveSpec(n) for n in self.settings.archive]
            # ordinary archive requests: already archived ones answer "Already submitted"
            for row in self.mgmt.manager.submit(specs):
                why = row.get("validation", "")
                log.info("--archive %s: %s %s", row["pvName"], row["status"], why)
        write_stop, etl_stop, journal_stop = asyncio.Event(), asyncio.Event(), asyncio.Event()
        self._stops = [write_stop, etl_stop, journal_stop]
        journal = self.engine.journal
        self._tasks = [
            asyncio.create_task(self.engine.run(write_stop)),
            asyncio.create_task(etl_loop(self.etl, etl_stop)),
            asyncio.create_task(run_journal(journal, journal_stop))
            if journal is not None
            else asyncio.create_task(journal_stop.wait()),
        ]

    async def stop(self) -> None:
        """Everything buffered is written and ``consolidateOnShutdown`` runs. Each step is
        guarded so that a failure in one (a CA socket error, a failed write cycle) can never
        skip the flush of buffered samples that follows."""
        write_stop, etl_stop, journal_stop = self._stops
        writer, etl, journaling = self._tasks
        self._health_stop.set()
        if self._health_task is not None:
            await _logged(self._health_task, "health watch")
        etl_stop.set()
        await _logged(etl, "ETL loop")
        if self.pvws is not None:  # its listeners and own channels, before CA closes
            await _logged(self.pvws.hub.stop(), "PVWS stop")
        await _logged(self.mgmt.manager.stop(), "archive workflow stop")
        await _logged(self.archiver.stop(), "CA archiver stop")
        await _logged(self.client.close(), "CA client close")
        if self.pva_client is not None:
            await _logged(self.pva_client.close(), "PVA client close")
        write_stop.set()
        await _logged(writer, "write loop")
        journal_stop.set()  # the final write below rotates the journal itself
        await _logged(journaling, "journal")
        # no events arrive any more: whatever the last cycle could not write goes now
        await asyncio.to_thread(self.engine.write_all)
        journal = self.engine.journal
        if journal is not None:
            left = self.engine.unwritten()
            journal.close(drop_all=left == 0)
            if left:
                log.error("%d samples could not be written; the journal keeps them", left)
        stats = await asyncio.to_thread(self.etl.on_shutdown)
        for s in stats:
            log.info("consolidateOnShutdown %s->%s: %d files", s.source, s.dest, s.files_moved)
        self.mgmt.registry.close()

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        await self.start()
        try:
            yield
        finally:
            await self.stop()


def build_appliance(settings: Settings, stores: Sequence[Store] | None = None) -> Appliance:
    """The whole archiver process, not started yet. ``stores``: already opened ones
    (``serve`` opens them first to report a bad folder before anything else starts)."""
    from .web.app import build_app

    opened = list(stores) if stores is not None else open_stores(settings.storage)
    for st in opened:
        log.info("store %s: %s: %s", st.name, st.root, describe_store(st))
    chains = StoreChains(opened, settings.storage.macros, settings.storage.naming)
    engine = Engine(opened[0], seconds_to_buffer=settings.engine.seconds_to_buffer, chains=chains)
    client = CAClient(settings.ca.config())
    archiver = CAArchiver(engine, client)
    pva_client = PVAClient(settings.pva.config())  # one per appliance, as the AA's engine
    archiver.add_source(PVA, PVASource(pva_client))
    link = EngineLink(engine, opened, archiver, chains)
    mgmt = Mgmt.create(
        settings.storage.root,
        link,
        list(settings.storage.store_urls),
        mgmt_config(settings),
        settings.health,
    )
    bind_chains(chains, mgmt)
    # after the registry is read: each PV's journaled samples go to its own first store
    engine.journal = open_journal(settings, opened, chains)
    retrieval = Retrieval(
        opened,
        live=engine,
        metadata=archiver.metadata,
        resolve_alias=mgmt.registry.real_name,
        chains=chains,
        flags=mgmt.flags.get,
    )
    etl = ETLScheduler(
        opened,
        time.time(),
        chains,
        mgmt.flags.get,
        REDUCER,
        settings.storage.etl_first_run_seconds,
    )
    mgmt.etl = etl
    # live values for /pvws/pv: the engine's own monitors, the CA client for other PVs
    hub = Hub(
        engine.pvs,
        archiver.channels,
        client,
        settings.pvws.max_unarchived,
        resolve=mgmt.registry.real_name,
    )
    pvws = PVWS(hub, settings.pvws, settings.http)
    appliance = Appliance(settings, opened, engine, client, archiver, mgmt, retrieval, etl, pvws)
    appliance.pva_client = pva_client
    options = RetrievalOptions(
        settings.retrieval.use_reduced, settings.retrieval.client_config_root
    )
    app = build_app(retrieval, mgmt, settings.http, etl, options, pvws)
    app.router.lifespan_context = appliance.lifespan
    appliance.app = app
    return appliance
