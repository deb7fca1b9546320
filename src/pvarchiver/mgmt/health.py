"""The appliance's health: stores whose writes fail, file systems running out of space, a
journal that cannot write. One report feeds getApplianceHealth (and so the container
healthcheck), ``/metrics`` and the UI's banner, so they never disagree.

* **Write failures** come from the engine
  (:class:`~pvarchiver.engine.store_health.StoreWriteHealth`): a store whose writes have
  failed for more than one write period is *failing* (a warning); failing for more than
  ``HealthSettings.unhealthy_after_seconds`` (60 s) makes the appliance *unhealthy*:
  getApplianceHealth answers 503 and the healthcheck fails.
* **Free space** of every store's file system and of the journal's is read every
  :data:`CHECK_SECONDS` in a worker thread (``statvfs``: no file is opened). Under the
  threshold (less than ``low_space_percent`` of the file system or less than
  ``low_space_bytes`` free, whichever is more) the folder is *low*: a warning in the
  report, ``/metrics`` and the log, before anything fails. Low space never makes the
  appliance unhealthy by itself (a restart would not free anything).
* **Journal** write errors (its counter grew since the last check): a warning; samples
  are still archived, but not crash-safe until it writes again.
* **Registry** database unreachable (a PostgreSQL registry lost while running): a warning;
  PVs are still archived, registry changes are refused until it is back (a restart would
  not bring it back, so it never makes the appliance unhealthy).

A report reads only what is in memory (the last space check, the engine's state), so a
health request never touches a disk that may be slow or hung.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine.store_health import StoreFailure
from ..engine.writer import Engine
from ..settings import HealthSettings
from ..storage.store import PlainPBStore
from .registry_backend import RegistryState
from .storage_usage import disk_space
from .typeinfo import aa_time, report_time

log = logging.getLogger(__name__)

#: seconds between free-space checks
CHECK_SECONDS = 2.0
#: while a folder stays low on space, a reminder in the log this often (seconds)
LOW_SPACE_REMIND_SECONDS = 600.0
GIB = float(1 << 30)

OK, WARNING, UNHEALTHY = "ok", "warning", "unhealthy"


def low_space_threshold(total: int, settings: HealthSettings) -> int:
    """Free bytes under which a file system of ``total`` bytes is low."""
    return max(int(total * settings.low_space_percent / 100.0), settings.low_space_bytes)


@dataclass
class FolderSpace:
    """The file system holding one store (or the journal)."""

    name: str
    root: Path
    total: int = 0
    free: int = 0
    threshold: int = 0
    low: bool = False
    #: why the space could not be read ("" when it was)
    error: str = ""

    @property
    def free_percent(self) -> float:
        return self.free * 100.0 / self.total if self.total else 0.0

    def describe(self) -> str:
        return (
            f"{self.free / GIB:.2f} GiB free of {self.total / GIB:.2f} GiB "
            f"({self.free_percent:.1f} %), under the threshold of {self.threshold / GIB:.2f} GiB"
        )


def measure(name: str, root: Path, settings: HealthSettings) -> FolderSpace:
    """Free space of the file system holding ``root`` (or its nearest existing parent: a
    store folder is created by its first write)."""
    out = FolderSpace(name, root)
    try:
        out.total, out.free = disk_space(root)
    except OSError as e:
        out.error = e.strerror or str(e)
        return out
    out.threshold = low_space_threshold(out.total, settings)
    out.low = out.free < out.threshold
    return out


@dataclass
class HealthReport:
    status: str
    problems: list[str]
    warnings: list[str]
    space: list[FolderSpace]
    #: the stores whose write failures count now (see store_health.py)
    failures: list[StoreFailure]
    #: stores the engine writes to (whose failures are tracked)
    written_stores: list[str]
    unhealthy_after: float
    checked_epoch: float
    now: float
    journal_errors: int | None = None
    #: the PV registry's backend and reachability (None: not known to this report)
    registry: RegistryState | None = None

    @property
    def http_status(self) -> int:
        return 503 if self.status == UNHEALTHY else 200

    def as_json(self, identity: str) -> dict[str, Any]:
        """getApplianceHealth's answer (values are strings, as everywhere in the mgmt BPL)."""
        failing = {f.store: f for f in self.failures}
        stores = []
        for sp in self.space:
            row = {
                "name": sp.name,
                "rootFolder": str(sp.root),
                "totalBytes": str(sp.total),
                "freeBytes": str(sp.free),
                "freePercent": f"{sp.free_percent:.2f}",
                "lowSpace": "true" if sp.low else "false",
                "lowSpaceThresholdBytes": str(sp.threshold),
            }
            if sp.error:
                row["spaceError"] = sp.error
            if sp.name in self.written_stores:
                f = failing.get(sp.name)
                row["writeFailing"] = "true" if f else "false"
                if f is not None:
                    row["writeFailingSince"] = report_time(f.since)
                    row["writeFailingSeconds"] = f"{f.seconds(self.now):.0f}"
                    row["writeFailingPVs"] = str(f.pvs)
                    row["writeError"] = f.error
            stores.append(row)
        out: dict[str, Any] = {
            "instance": identity,
            "status": self.status,
            "problems": self.problems,
            "warnings": self.warnings,
            "unhealthyAfterSeconds": f"{self.unhealthy_after:g}",
            "checkedAt": aa_time(self.checked_epoch) if self.checked_epoch else "Never",
            "stores": stores,
        }
        reg = self.registry
        if reg is not None:
            out["registry"] = {
                "backend": reg.backend,
                "location": reg.location,
                "connected": "true" if reg.connected else "false",
                "unreachableSince": report_time(reg.since) if reg.since else "",
                "error": reg.error,
                "refusedChanges": str(reg.refused),
                "remoteChanges": str(reg.remote_changes),
                "reconnects": str(reg.reconnects),
            }
        return out


class Health:
    """Watches the stores' space and the journal; builds :class:`HealthReport` on demand."""

    def __init__(
        self,
        stores: Sequence[PlainPBStore] | Callable[[], Sequence[PlainPBStore]],
        engine: Engine,
        settings: HealthSettings,
        registry_state: Callable[[], RegistryState] | None = None,
    ) -> None:
        self.engine = engine
        self._registry_state = registry_state
        self.settings = settings
        # a callable: the folders in use grow as PVs get chains of their own
        self._stores = stores
        journal = engine.journal
        #: the last check, by folder name
        self.space: dict[str, FolderSpace] = {}
        self.checked_epoch = 0.0
        self._low_logged: dict[str, float] = {}
        self._journal_errors = journal.stats.write_errors if journal is not None else 0
        self.journal_failing_since = 0.0
        self.journal_error = ""

    @property
    def folders(self) -> list[tuple[str, Path]]:
        """(name, folder) of every store folder in use and of the journal."""
        stores = self._stores() if callable(self._stores) else self._stores
        out = [(s.name, s.root) for s in stores]
        journal = self.engine.journal  # opened after the registry is read
        if journal is not None:
            out.append(("journal", journal.folder))
        return out

    # ------------------------------------------------------------------ checking
    def check(self, now: float | None = None) -> None:
        """Read every folder's free space and the journal's error count (worker thread);
        log what changed."""
        now = time.time() if now is None else now
        space = {name: measure(name, root, self.settings) for name, root in self.folders}
        for sp in space.values():
            self._log_space(sp, now)
        self.space = space
        self.checked_epoch = now
        self._check_journal(now)

    def _log_space(self, sp: FolderSpace, now: float) -> None:
        last = self._low_logged.get(sp.name)
        if sp.error:
            if last is None or now - last >= LOW_SPACE_REMIND_SECONDS:
                log.warning("%s (%s): cannot read its free space: %s", sp.name, sp.root, sp.error)
                self._low_logged[sp.name] = now
            return
        if sp.low:
            if last is None or now - last >= LOW_SPACE_REMIND_SECONDS:
                log.warning(
                    "%s (%s): low disk space: %s; writes fail when it is full",
                    sp.name,
                    sp.root,
                    sp.describe(),
                )
                self._low_logged[sp.name] = now
        elif last is not None:
            del self._low_logged[sp.name]
            log.info(
                "%s (%s): disk space back above the threshold: %.2f GiB free",
                sp.name,
                sp.root,
                sp.free / GIB,
            )

    def _check_journal(self, now: float) -> None:
        journal = self.engine.journal
        if journal is None:
            return
        errors = journal.stats.write_errors
        if errors > self._journal_errors:
            if not self.journal_failing_since:
                self.journal_failing_since = now
            self.journal_error = journal.stats.last_error
        elif self.journal_failing_since:
            log.info("journal: writes succeed again")
            self.journal_failing_since = 0.0
            self.journal_error = ""
        self._journal_errors = errors

    async def run(self, stop: asyncio.Event) -> None:
        """Check every :data:`CHECK_SECONDS` until ``stop``."""
        while not stop.is_set():
            try:
                await asyncio.to_thread(self.check)
            except Exception:
                log.exception("health check failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), CHECK_SECONDS)

    # ------------------------------------------------------------------ reporting
    def report(self, now: float | None = None) -> HealthReport:
        """The health now, from memory only."""
        now = time.time() if now is None else now
        problems: list[str] = []
        warnings: list[str] = []
        wh = self.engine.write_health
        failures = [f for f in (wh.failure(now),) if f is not None]
        limit = self.settings.unhealthy_after_seconds
        for f in failures:
            secs = f.seconds(now)
            text = (
                f"store {f.store}: writes failing for {secs:.0f} s (since "
                f"{report_time(f.since)}), {f.pvs} PV(s) waiting, latest error "
                f"({f.error_pv}): {f.error}"
            )
            (problems if secs > limit else warnings).append(text)
        space = list(self.space.values())
        for sp in space:
            if sp.error:
                warnings.append(f"{sp.name}: cannot read its free space ({sp.root}): {sp.error}")
            elif sp.low:
                warnings.append(f"{sp.name}: low disk space: {sp.describe()}")
        if self.journal_failing_since:
            warnings.append(
                f"journal: writes failing since {report_time(self.journal_failing_since)}: "
                f"{self.journal_error}; samples are archived but not crash-safe meanwhile"
            )
        reg = self._registry_state() if self._registry_state is not None else None
        if reg is not None and not reg.connected:
            warnings.append(
                f"registry: {reg.backend} {reg.location} unreachable since "
                f"{report_time(reg.since)}: {reg.error}; PVs are archived, registry changes "
                "are refused until it is back"
            )
        status = UNHEALTHY if problems else WARNING if warnings else OK
        journal = self.engine.journal
        return HealthReport(
            status=status,
            problems=problems,
            warnings=warnings,
            space=space,
            failures=failures,
            written_stores=[wh.store],
            unhealthy_after=limit,
            checked_epoch=self.checked_epoch,
            now=now,
            journal_errors=journal.stats.write_errors if journal is not None else None,
            registry=reg,
        )
