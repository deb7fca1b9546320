"""Running the archiver process: HTTP server, ETL schedule, orderly shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import uvicorn
from starlette.applications import Starlette

from ..retrieval.service import Retrieval
from ..storage.naming import NamingSettings
from ..storage.schedule import ETLScheduler
from ..storage.store import PlainPBStore, open_store
from ..storage.url import default_store_urls, parse_store_url
from .app import build_app

log = logging.getLogger(__name__)


def open_stores(root: Path, naming: NamingSettings | None = None) -> list[PlainPBStore]:
    """The default STS/MTS/LTS under ``root``, each probed: raises
    :class:`~pvarchiver.storage.probe.StoreFolderError` for a folder that cannot hold them."""
    stores = [open_store(parse_store_url(u), naming) for u in default_store_urls(root)]
    for st in stores:
        log.info("store %s: %s: %s", st.name, st.root, st.naming.describe())
    return stores


async def etl_loop(scheduler: ETLScheduler, stop: asyncio.Event) -> None:
    """Run due ETL stages in a worker thread so that HTTP and ingest keep going.

    Stopped with ``stop`` rather than cancelled: a pass already running in its thread is
    waited for, so the shutdown consolidation never runs alongside it.
    """
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(1.0, scheduler.seconds_until_next(time.time())))
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


def build_server_app(
    root: Path,
    archive: list[str] | None = None,
    measure_seconds: float | None = None,
    naming: NamingSettings | None = None,
) -> Starlette:
    """The whole archiver process: CA engine, PV registry and archive workflow (``archive``
    names are archivePV requests), retrieval, ETL. ``measure_seconds`` is the initial
    sampling window of new requests (default: $PVARCHIVER_INITIAL_SAMPLING_SECONDS or 3)."""
    from ..ca import CAClient, CAConfig
    from ..engine.channels import CAArchiver
    from ..engine.writer import Engine
    from ..mgmt.engine_link import EngineLink
    from ..mgmt.manager import MgmtConfig
    from ..mgmt.pvinput import ArchiveSpec
    from ..mgmt.service import Mgmt

    stores = open_stores(root, naming)
    engine = Engine(stores[0])
    holder: dict[str, CAArchiver] = {}

    def metadata(pv: str) -> dict[str, str]:
        arch = holder.get("arch")
        return arch.metadata(pv) if arch is not None else {}

    config = MgmtConfig(storage_root=root)
    if measure_seconds is not None:
        config.measure_seconds = measure_seconds
    link = EngineLink(engine, stores)
    mgmt = Mgmt.create(root, link, default_store_urls(root), config)
    retrieval = Retrieval(
        stores, live=engine, metadata=metadata, resolve_alias=mgmt.registry.real_name
    )
    app = build_app(retrieval, mgmt)
    scheduler = ETLScheduler(stores, time.time())
    app.state.etl_scheduler = scheduler  # /metrics reports its stage timings

    @contextlib.asynccontextmanager
    async def lifespan(_app: Starlette) -> AsyncIterator[None]:
        client = CAClient(CAConfig.from_env())
        await client.start()
        arch = holder["arch"] = CAArchiver(engine, client)
        link.archiver = arch
        arch.start()
        # every registered PV is archived again, pending requests resume; --archive names
        # are ordinary archive requests (already archived ones answer "Already submitted")
        await mgmt.manager.start(client)
        if archive:
            for row in mgmt.manager.submit([ArchiveSpec(n) for n in archive]):
                why = row.get("validation", "")
                log.info("--archive %s: %s %s", row["pvName"], row["status"], why)
        stop = asyncio.Event()
        writer = asyncio.create_task(engine.run(stop))
        etl_stop = asyncio.Event()
        etl = asyncio.create_task(etl_loop(scheduler, etl_stop))
        try:
            yield
        finally:
            # Each step is guarded so that a failure in one (a CA socket error, a failed write
            # cycle) can never skip the flush of buffered samples that follows.
            etl_stop.set()
            await _logged(etl, "ETL loop")
            await _logged(mgmt.manager.stop(), "archive workflow stop")
            await _logged(arch.stop(), "CA archiver stop")
            await _logged(client.close(), "CA client close")
            stop.set()
            await _logged(writer, "write loop")
            # no events arrive any more: whatever the last cycle could not write goes now
            await asyncio.to_thread(engine.write_all)
            stats = await asyncio.to_thread(scheduler.on_shutdown)
            for s in stats:
                log.info("consolidateOnShutdown %s->%s: %d files", s.source, s.dest, s.files_moved)
            mgmt.registry.close()

    app.router.lifespan_context = lifespan
    return app


def run(
    root: Path,
    host: str,
    port: int,
    archive: list[str] | None = None,
    measure_seconds: float | None = None,
    naming: NamingSettings | None = None,
) -> None:
    app = build_server_app(root, archive, measure_seconds, naming)
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=10)
