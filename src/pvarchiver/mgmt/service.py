"""The management service object: registry + engine link + policies + workflow, and the
read-side answers (getPVStatus objects, getPVDetails rows, name lookups) built from them.

No HTTP here: :mod:`pvarchiver.web.mgmt_routes` turns these into responses; reports (another
module) read :attr:`Mgmt.registry` and :meth:`EngineLink.snapshots` the same way.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from .. import __version__
from ..settings import HealthSettings
from ..storage.etl import ETLStats
from ..storage.schedule import ETLScheduler
from ..storage.store import PlainPBStore
from .engine_link import EngineLink, EngineStatus
from .health import Health
from .manager import Manager, MgmtConfig
from .named_flags import NamedFlags
from .policies import Policies
from .pvinput import is_glob, lookup_name, split_field
from .registry import REGISTRY_FILENAME, Registry, open_registry
from .storage_usage import UsageCache
from .typeinfo import aa_time, report_time


def store_name(url: str) -> str:
    """The ``name=`` of a store URL (any scheme), or the URL's scheme if it has none."""
    parts = urlsplit(url)
    for k, v in parse_qsl(parts.query):
        if k == "name":
            return v
    return parts.scheme.upper()


@dataclass
class Mgmt:
    registry: Registry
    link: EngineLink
    policies: Policies
    config: MgmtConfig
    manager: Manager
    stores: Sequence[PlainPBStore]
    #: space per store and PV (reports, getStorageMetrics, /metrics): one cached scan
    usage: UsageCache
    #: write failures, free space, journal: getApplianceHealth, /metrics, the UI
    health: Health
    #: the last 100 consolidateDataForPV ETL steps, for /metrics
    consolidations: list[ETLStats] = field(default_factory=list)
    #: the appliance's ETL (consolidateDataForPV runs a PV's stages through it); None in
    #: a process without ETL
    etl: ETLScheduler | None = None
    #: named flags (getNamedFlag/setNamedFlag; ETL and retrieval read ``flags.get``)
    flags: NamedFlags = field(default_factory=NamedFlags)

    @classmethod
    def create(
        cls,
        storage_root: Path,
        link: EngineLink,
        default_stores: list[str],
        config: MgmtConfig | None = None,
        health: HealthSettings | None = None,
    ) -> Mgmt:
        config = config or MgmtConfig(storage_root=storage_root)
        if config.registry_url:
            registry = open_registry(config.registry_url)
        else:
            registry = Registry(storage_root / REGISTRY_FILENAME)
        policies = Policies(config.policies_file)
        manager = Manager(registry, link, policies, config, default_stores)
        usage = UsageCache(link.chains.stores, registry.names, config.storage_scan_seconds)
        watch = Health(link.chains.stores, link.engine, health or HealthSettings(), registry.state)
        flags = NamedFlags.open(registry, config.named_flags_file)
        return cls(
            registry, link, policies, config, manager, link.stores, usage, watch, flags=flags
        )

    # ------------------------------------------------------------------ names
    def all_names(self) -> list[str]:
        """PVs with a typeinfo (getAllPVs)."""
        return self.registry.names()

    def matching(self, glob: str | None, regex: str | None, limit: int) -> list[str]:
        if regex:
            rx = re.compile(regex)
        else:
            rx = re.compile(fnmatch.translate(glob or "*"))
        out = [n for n in self.all_names() if rx.fullmatch(n)]
        return out if limit < 0 else out[:limit]

    def expand(self, names: list[str], include_pending: bool = True) -> list[str]:
        """Globs against archived (and pending) PVs and aliases; plain names as given."""
        out: list[str] = []
        pool: list[str] | None = None
        for n in names:
            if not is_glob(n):
                out.append(n)
                continue
            if pool is None:
                pool = list(self.all_names()) + list(self.registry.aliases())
                if include_pending:
                    pool += list(self.manager.pending)
            rx = re.compile(fnmatch.translate(n))
            out.extend(sorted({p for p in pool if rx.fullmatch(p)}))
        return out

    def resolve(self, requested: str) -> str:
        """Requested name -> archived PV: prefix and .VAL dropped, alias resolved, and a
        stream field (``PV.HIHI``) of an archived PV resolved to that PV."""
        name = self.registry.real_name(lookup_name(requested))
        if not self.registry.has_typeinfo(name):
            rec, fld = split_field(name)
            if fld is not None:
                info = self.registry.typeinfo_view(self.registry.real_name(rec))
                if info is not None and fld in info.archiveFields:
                    return info.pvName
        return name

    # ------------------------------------------------------------------ status
    def status(self, requested: str) -> dict[str, str]:
        """One getPVStatus object (AA keys and status strings)."""
        name = self.resolve(requested)
        info = self.registry.typeinfo_view(name)
        ident = self.config.identity
        if info is not None:
            if info.paused:
                paused = {
                    "appliance": ident,
                    "pvName": requested,
                    "pvNameOnly": name,
                    "status": "Paused",
                }
                # its last samples may still be waiting for a failing store
                failing = self._write_failure(name)
                if failing is not None:
                    paused.update(failing)
                return paused
            snap = self.link.snapshot(name, full=False)
            if snap is None:
                return {
                    "pvName": requested,
                    "pvNameOnly": name,
                    "appliance": ident,
                    "status": "Appliance assigned",
                }
            out = {
                "pvName": requested,
                "pvNameOnly": name,
                "appliance": ident,
                "status": "Being archived",
                "isMonitored": "true" if snap.method == "MONITOR" else "false",
                "samplingPeriod": str(snap.period),
                "connectionState": "true" if snap.connected else "false",
                "lastEvent": report_time(snap.last_event_epoch),
                "lastRotateLogs": "Never",
                "connectionFirstEstablished": report_time(snap.first_connected_epoch),
                "connectionLastRestablished": report_time(
                    snap.last_connection_regained_epoch if snap.connection_loss_regain_count else 0
                ),
                "connectionLossRegainCount": str(snap.connection_loss_regain_count),
            }
            if snap.status_message:
                out["statusMessage"] = snap.status_message
            if snap.write_failing_since:
                out.update(_write_error_fields(snap))
            return out
        req = self.manager.pending.get(name)
        if req is not None:
            if req.failed:
                return {
                    "pvName": requested,
                    "status": "Not being archived",
                    "validation": req.lastError,
                }
            return {"pvName": requested, "status": "Initial sampling"}
        return {"pvName": requested, "status": "Not being archived"}

    def _write_failure(self, name: str) -> dict[str, str] | None:
        """getPVStatus' write-error fields of a PV the engine holds (with or without a
        channel: a paused PV's last samples may wait too); None while its writes succeed."""
        pv = self.link.engine.pvs.get(name)
        if pv is None:
            return None
        health = self.link.engine.write_health
        since = health.pv_since(name, self.link.engine.clock()) if health.pvs else 0.0
        if not since:
            return None
        st = EngineStatus(name, False, "", 0.0, store=health.store, write_failing_since=since)
        st.last_write_error = pv.metrics.last_write_error
        return _write_error_fields(st)

    # ------------------------------------------------------------------ details
    def details(self, requested: str) -> list[dict[str, str]] | None:
        """getPVDetails rows ``{name, value, source}``; None if the PV is unknown."""
        name = self.resolve(requested)
        info = self.registry.typeinfo_view(name)
        rows: list[dict[str, str]] = []

        def row(label: str, value: Any, source: str = "mgmt") -> None:
            rows.append({"name": label, "value": str(value), "source": source})

        if info is None:
            req = self.manager.pending.get(name)
            if req is None:
                return None
            row("PV Name", name)
            row("Status", "Not being archived" if req.failed else "Initial sampling")
            row("Workflow state", req.currentState)
            row("Request time", req.requestTime)
            if req.lastError:
                row("Reason", req.lastError)
            mg = self.manager.metagets.get(name)
            if mg is not None:
                row(
                    "Is this PV currently connected?",
                    "Yes" if mg.result.connected else "No",
                    "engine",
                )
                row("How many events so far?", mg.result.events, "engine")
            return rows
        b = lambda v: "Yes" if v else "No"  # noqa: E731
        row("PV Name", name)
        row("Instance archiving PV", info.applianceIdentity)
        row("Archival params creation time:", aa_time(info.creationTime))
        row("Archival params modification time:", aa_time(info.modificationTime))
        row("Archiver DBR type (from typeinfo):", info.DBRType)
        row("Is this a scalar:", b(info.scalar))
        row("Number of elements:", info.elementCount)
        row("Precision:", info.precision)
        row("Units:", info.units)
        row("Is this PV paused:", b(info.paused))
        row("Sampling method:", info.samplingMethod)
        row("Sampling period:", info.samplingPeriod)
        row("Policy:", info.policyName or "")
        row("Are we using PVAccess?", b(info.usePVAccess))
        if info.controllingPV:
            row("Controlling PV:", info.controllingPV)
        for k, v in sorted(info.extraFields.items()):
            row(f"Extra info - {k}:", v)
        row("Archive Fields", ",".join(info.archiveFields))
        aliases = sorted(a for a, r in self.registry.aliases().items() if r == name)
        if aliases:
            row("Aliases", ",".join(aliases))
        row("Computed event rate (events/sec):", f"{info.computedEventRate:.3f}")
        row("Computed storage rate (bytes/sec):", f"{info.computedStorageRate:.3f}")
        for url in info.dataStores:
            row(f"Store {store_name(url)}", url)
        snap = self.link.snapshot(name)
        if snap is not None:
            e = "engine"
            row("Channel Name", name, e)
            row("Host name", snap.host, e)
            row("Is this PV currently connected?", b(snap.connected), e)
            row("Connection first established", report_time(snap.first_connected_epoch), e)
            row("Connection last lost", report_time(snap.last_connection_lost_epoch), e)
            row("Connection lost/regained count", snap.connection_loss_regain_count, e)
            row("How many events so far?", snap.events_received, e)
            row("How many events stored?", snap.events_stored, e)
            row("Samples written to the STS", snap.samples_written, e)
            row("Samples buffered in memory", snap.buffered_samples, e)
            row("Time of last event", report_time(snap.last_event_epoch), e)
            for reason, n in sorted(snap.drops.items()):
                row(f"Dropped events ({reason})", n, e)
            if snap.write_errors:
                row("Write errors", snap.write_errors, e)
                row("Last write error", snap.last_write_error, e)
            if snap.status_message:
                row("Status message", snap.status_message, e)
            for k, v in sorted(snap.fields.items()):
                row(f"Field {k}", v, e)
        failing = self._write_failure(name)
        if failing is not None:
            store = failing["archiveWriteErrorStore"]
            row(f"Writes to the {store} failing since", failing["archiveWriteErrorSince"], "engine")
            row(f"Writes to the {store} failing because", failing["archiveWriteError"], "engine")
        return rows

    # ------------------------------------------------------------------ appliance
    def appliance_info(self, base_url: str) -> dict[str, str]:
        base = base_url.rstrip("/")
        host = urlsplit(base).hostname or "localhost"
        return {
            "identity": self.config.identity,
            "mgmtURL": f"{base}/mgmt/bpl",
            "engineURL": f"{base}/engine/bpl",
            "etlURL": f"{base}/etl/bpl",
            "retrievalURL": f"{base}/retrieval/bpl",
            "dataRetrievalURL": f"{base}/retrieval",
            "clusterInetPort": f"{host}:16670",
            "version": __version__,
        }


def _write_error_fields(snap: EngineStatus) -> dict[str, str]:
    """getPVStatus' own fields for a PV whose samples have not reached its store for more
    than two write periods (the AA's fields and status strings stay as they are)."""
    return {
        "archiveWriteError": snap.last_write_error,
        "archiveWriteErrorSince": report_time(snap.write_failing_since),
        "archiveWriteErrorStore": snap.store,
    }
