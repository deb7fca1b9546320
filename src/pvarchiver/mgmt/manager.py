"""The management runtime: archive requests through initial sampling and policy into the
engine, and the lifecycle operations (pause, resume, abort, delete, rename, change).

Work is batched on purpose: requests are persisted in one transaction per archivePV call,
finished measurements are collected every ``tick`` and turned into typeinfos in one worker
thread call and one transaction, so 10,000 PVs cost a handful of commits, not 10,000.
Operations on one PV are serialised by ``busy``: a delete while the PV's typeinfo is being
written, or an archive request while it is being deleted, is refused with a clear message.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from pathlib import Path

from ..ca import CAClient
from ..pva.client import PVAClient
from ..storage.chains import ChainError
from .engine_link import EngineLink
from .file_keys import FileKeyConflict, FileKeyIndex
from .metaget import MetaGet
from .metaget_pva import PVAMetaGet
from .policies import Policies, PolicyError
from .pvinput import ArchiveSpec, InputError, archive_target
from .registry import Registry
from .typeinfo import PVTypeInfo
from .workflow import ArchiveRequest, State, archived_name, build_typeinfo, policy_input

log = logging.getLogger(__name__)

#: fields read during initial sampling: NAME for aliases, the rest are policy inputs
META_FIELDS = ("NAME", "RTYP", "MDEL", "ADEL", "SCAN")
#: initial sampling over CA or PVA (same interface)
AnyMetaGet = MetaGet | PVAMetaGet


@dataclass
class MgmtConfig:
    """Settings of the management service (made from :class:`pvarchiver.settings.Settings`
    by the appliance builder; the defaults are the AA's or ours)."""

    identity: str = "appliance0"
    #: initial sampling window (the AA's 60 s; ours 3 s)
    measure_seconds: float = 3.0
    #: never-connecting requests are aborted after this (abortArchiveRequestInMins; <0 never)
    abort_minutes: float = 1440.0
    tick_seconds: float = 0.25
    storage_root: Path = Path("storage")
    #: a site policies.py (None: the built-in policies)
    policies_file: Path | None = None
    #: how long a storage scan is reused by reports and /metrics (0: scan on every call)
    storage_scan_seconds: float = 60.0
    #: the AA's named flags file, read at start (None: only the flags in the registry)
    named_flags_file: Path | None = None
    #: names without ``ca://``/``pva://`` are archived over PVA (defaultAccessProtocol=PVA)
    default_pva: bool = False
    #: the PV registry's URL ("": ``registry.sqlite`` in ``storage_root``)
    registry_url: str = ""


class OperationError(Exception):
    """A lifecycle operation refused; ``status`` is the HTTP status to answer with."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Manager:
    """Owns the archive workflow and the PV lifecycle of this appliance."""

    def __init__(
        self,
        registry: Registry,
        link: EngineLink,
        policies: Policies,
        config: MgmtConfig,
        default_stores: list[str],
    ) -> None:
        self.registry = registry
        self.link = link
        self.policies = policies
        self.config = config
        self.default_stores = default_stores
        self.client: CAClient | None = None
        self.pva_client: PVAClient | None = None
        self.pending: dict[str, ArchiveRequest] = {}
        self.metagets: dict[str, AnyMetaGet] = {}
        self.busy: set[str] = set()
        self._done: list[AnyMetaGet] = []
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()
        self.started_epoch = time.time()
        #: who owns which data files: refuses a PV whose files would be another PV's
        self.file_keys = FileKeyIndex(link.stores, self._exists)

    def _exists(self, name: str) -> bool:
        return self.registry.has_typeinfo(name) or name in self.pending

    def _all_names(self) -> list[str]:
        return [*self.registry.names(), *self.pending]

    def check_storable(self, requested: list[str]) -> None:
        """Raise :class:`InputError` if a new PV among ``requested`` has no file name in a
        store, or would share data files with an archived PV or another requested one."""
        stream_fields = self.policies.fields_archived_as_part_of_stream()
        among = FileKeyIndex(self.link.stores, lambda _pv: True)
        among.load([])
        for r in requested:
            name = self.registry.real_name(archive_target(r, stream_fields).pv)
            if self._exists(name):
                continue
            try:
                self.file_keys.check(name, self._all_names)
                among.check(name, list)
            except FileKeyConflict as e:
                raise InputError(f"Invalid PV name {r!r}: {e}") from None
            among.add(name)

    # ------------------------------------------------------------------ start / stop
    async def start(self, client: CAClient, pva_client: PVAClient | None = None) -> None:
        """Archive every registered PV (paused ones stay paused) and resume pending requests;
        ``pva_client`` measures the ``pva://`` requests (without one they wait)."""
        self.client = client
        self.pva_client = pva_client
        n = 0
        for info in self.registry.typeinfos():
            if self.link.start(info):
                n += 1
        for name, params in self.registry.requests().items():
            try:
                req = ArchiveRequest.from_params({**params, "pvName": name})
            except (TypeError, ValueError) as e:
                log.error("registry: archive request of %s unreadable, dropped: %s", name, e)
                continue
            self.pending[name] = req
            if not req.failed:
                self._start_metaget(req)
        log.info("mgmt: archiving %d PVs; %d requests resumed", n, len(self.pending))
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for mg in self.metagets.values():
            mg.cancel()
        self.metagets.clear()

    def _start_metaget(self, req: ArchiveRequest) -> None:
        if self.client is None:
            return
        req.currentState = State.METAINFO_REQUESTED.value
        mg: AnyMetaGet
        if req.usePVAccess:
            if self.pva_client is None:
                return
            mg = PVAMetaGet(
                self.pva_client, req.pvName, self.config.measure_seconds, self._on_measured
            )
            self.metagets[req.pvName] = mg
            mg.start()
            return
        mg = MetaGet(
            self.client,
            req.pvName,
            self.config.measure_seconds,
            list(META_FIELDS),
            self._on_measured,
        )
        self.metagets[req.pvName] = mg
        mg.start()

    def _on_measured(self, mg: AnyMetaGet) -> None:
        if self.metagets.get(mg.name) is mg:
            self._done.append(mg)
            self._wake.set()

    async def _loop(self) -> None:
        last_abort_check = 0.0
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.config.tick_seconds)
            self._wake.clear()
            await asyncio.sleep(self.config.tick_seconds)  # let a burst of results gather
            if self._done:
                batch, self._done = self._done, []
                try:
                    await self._finalize(batch)
                except Exception:
                    # e.g. the registry's disk is full: nothing was committed (one
                    # transaction), so the measured PVs are tried again a little later
                    # instead of staying in Initial sampling for ever
                    log.exception(
                        "archive workflow: finalizing %d PVs failed; retrying", len(batch)
                    )
                    self._done = batch + self._done
                    await asyncio.sleep(5)
            now = time.time()
            if now - last_abort_check > 10:
                last_abort_check = now
                self._abort_stale(now)

    def _abort_stale(self, now: float) -> None:
        limit = self.config.abort_minutes
        if limit < 0:
            return
        from .typeinfo import parse_aa_time

        for name, req in list(self.pending.items()):
            mg = self.metagets.get(name)
            if req.failed or mg is None or mg.result.connected:
                continue
            with contextlib.suppress(ValueError):
                if now - parse_aa_time(req.requestTime).timestamp() > limit * 60:
                    log.info("aborting archive request of %s: never connected", name)
                    self.abort(name)

    # ------------------------------------------------------------------ requests
    def submit(self, specs: list[ArchiveSpec]) -> list[dict[str, str]]:
        """archivePV: one status row per spec, as the AA (``Archive request submitted``,
        ``Already submitted``, ``Exception occured``); new requests persisted in one commit."""
        stream_fields = self.policies.fields_archived_as_part_of_stream()
        try:
            known_policies: set[str] | None = set(self.policies.policy_list())
        except PolicyError:
            known_policies = None
        rows: list[dict[str, str]] = []
        new: list[ArchiveRequest] = []
        started_engine: list[PVTypeInfo] = []
        edited: dict[str, PVTypeInfo] = {}  # typeinfos changed by earlier specs of this call
        with self.registry.batch() as b:
            for spec in specs:
                try:
                    t = archive_target(spec.pv, stream_fields)
                    if spec.appliance and spec.appliance != self.config.identity:
                        raise InputError(
                            f"Unknown appliance {spec.appliance!r} (this is {self.config.identity})"
                        )
                    if (
                        spec.policy
                        and known_policies is not None
                        and spec.policy not in known_policies
                    ):
                        raise InputError(f"Unknown policy {spec.policy!r}")
                    if spec.alias:
                        archive_target(spec.alias, [])
                except InputError as e:
                    rows.append(
                        {"pvName": spec.pv, "status": "Exception occured", "validation": str(e)}
                    )
                    continue
                name = self.registry.real_name(t.pv)
                if name in self.busy and name in self.pending:  # its typeinfo is being written
                    rows.append({"pvName": name, "status": "Already submitted"})
                    continue
                if name in self.busy:
                    rows.append(
                        {
                            "pvName": name,
                            "status": "Exception occured",
                            "validation": f"Another operation on {name} is in progress; try again",
                        }
                    )
                    continue
                info = edited.get(name) or self.registry.typeinfo_view(name)
                if info is not None:
                    if t.field and t.field not in info.archiveFields:
                        if name not in edited:  # the cached one is never changed in place
                            info = edited[name] = info.copy()
                            started_engine.append(info)
                        info.add_archive_field(t.field)
                        info.touch()
                        b.put_typeinfo(info)
                    if spec.alias:
                        b.add_alias(spec.alias, name)
                    rows.append({"pvName": name, "status": "Already submitted"})
                    continue
                req = self.pending.get(name)
                if req is not None and not req.failed:
                    changed = False
                    if t.field and t.field not in req.archiveFields:
                        req.archiveFields.append(t.field)
                        changed = True
                    if spec.alias and spec.alias not in req.aliases:
                        req.aliases.append(spec.alias)
                        changed = True
                    if changed:
                        b.put_request(name, req.to_params())
                    rows.append({"pvName": name, "status": "Already submitted"})
                    continue
                try:
                    self.file_keys.check(name, self._all_names)
                except FileKeyConflict as e:
                    rows.append(
                        {"pvName": name, "status": "Exception occured", "validation": str(e)}
                    )
                    continue
                self.file_keys.add(name)
                req = ArchiveRequest(
                    pvName=name,
                    samplingMethod=spec.samplingmethod,
                    samplingPeriod=spec.samplingperiod,
                    policyName=spec.policy,
                    controllingPV=spec.controllingPV,
                    appliance=spec.appliance,
                    archiveFields=[t.field] if t.field else [],
                    aliases=[spec.alias] if spec.alias else [],
                    usePVAccess=t.pva
                    or (self.config.default_pva and not spec.pv.strip().startswith("ca://")),
                )
                b.put_request(name, req.to_params())
                new.append(req)
                self.pending[name] = req
                rows.append({"pvName": name, "status": "Archive request submitted"})
        for info in started_engine:
            self.link.add_fields(info.pvName, info.archiveFields)
        for req in new:
            old = self.metagets.pop(req.pvName, None)
            if old is not None:
                old.cancel()
            self._start_metaget(req)
        return rows

    async def _finalize(self, batch: list[AnyMetaGet]) -> None:
        items = []
        for mg in batch:
            req = self.pending.get(mg.name)
            if req is None or self.metagets.get(mg.name) is not mg:
                continue  # aborted meanwhile
            req.currentState = State.METAINFO_OBTAINED.value
            self.busy.add(mg.name)
            items.append((req, mg))
        if not items:
            return
        t0 = time.monotonic()
        try:
            results = await asyncio.to_thread(self._compute_and_persist, items)
        finally:
            for req, _ in items:
                self.busy.discard(req.pvName)
        t1 = time.monotonic()
        for req, mg, info, _err in results:
            if self.metagets.get(req.pvName) is mg:
                del self.metagets[req.pvName]
            if info is None:
                continue
            self.pending.pop(req.pvName, None)
            stored = self.registry.typeinfo_view(info.pvName)
            if stored is not None:
                self.link.start(stored)
        ms = [mg.result for _, mg, _, _ in results]
        log.info(
            "archive workflow: %d PVs: connect after %.1f-%.1f s, metadata read %.1f-%.1f s "
            "later; policy+registry %.2f s, engine start %.2f s",
            len(results),
            min(m.connected_epoch - m.requested_epoch for m in ms),
            max(m.connected_epoch - m.requested_epoch for m in ms),
            min(m.reads_done_epoch - m.connected_epoch for m in ms),
            max(m.reads_done_epoch - m.connected_epoch for m in ms),
            t1 - t0,
            time.monotonic() - t1,
        )

    def _compute_and_persist(
        self, items: list[tuple[ArchiveRequest, AnyMetaGet]]
    ) -> list[tuple[ArchiveRequest, AnyMetaGet, PVTypeInfo | None, str]]:
        """Worker thread: policy and typeinfo for each measured PV, then one transaction
        that writes the typeinfos and aliases and deletes the requests (or records why a
        request failed)."""
        out: list[tuple[ArchiveRequest, AnyMetaGet, PVTypeInfo | None, str]] = []
        for req, mg in items:
            m = mg.result
            try:
                if not m.connected or m.payload_type is None:
                    raise PolicyError("the PV disconnected before its type was known")
                pol = self.policies.determine(policy_input(req, m))
                if pol.samplingMethod == "DONT_ARCHIVE" and req.samplingPeriod is None:
                    raise PolicyError(f"policy {pol.policyName} says DONT_ARCHIVE for this PV")
                real = archived_name(req, m)
                if real != req.pvName and archive_target(real, []).pv != real:
                    real = req.pvName  # .NAME gave something odd: keep the requested name
                info = build_typeinfo(
                    req,
                    m,
                    pol,
                    identity=self.config.identity,
                    default_stores=self.default_stores,
                    real_name=real,
                )
                try:  # a site policy's stores must be usable before the PV is archived
                    self.link.chains.validate(info.dataStores)
                except ChainError as e:
                    raise PolicyError(f"policy {pol.policyName}: its dataStores: {e}") from None
                out.append((req, mg, info, ""))
            except (PolicyError, InputError) as e:
                out.append((req, mg, None, f"policy error: {e}"))
            except Exception as e:
                log.exception("%s: building the typeinfo failed", req.pvName)
                out.append((req, mg, None, f"{type(e).__name__}: {e}"))
        with self.registry.batch() as b:
            for req, _mg, info, err in out:
                if info is None:
                    req.currentState = State.ABORTED.value
                    req.lastError = err
                    b.put_request(req.pvName, req.to_params())
                    continue
                if info.pvName != req.pvName:
                    b.add_alias(req.pvName, info.pvName)
                    log.info(
                        "%s is an alias of %s; archiving %s", req.pvName, info.pvName, info.pvName
                    )
                if not self.registry.has_typeinfo(info.pvName):
                    b.put_typeinfo(info)
                for a in req.aliases:
                    if a != info.pvName:
                        b.add_alias(a, info.pvName)
                b.delete_request(req.pvName)
                req.currentState = State.FINISHED.value
        return out

    def abort(self, name: str) -> bool:
        """abortArchivingPV: drop a request still in the workflow."""
        name = self.registry.real_name(name)
        if name in self.busy:
            raise OperationError(
                409, f"The archive request for {name} is being completed; try again"
            )
        req = self.pending.pop(name, None)
        mg = self.metagets.pop(name, None)
        if mg is not None:
            mg.cancel()
        if req is None:
            return False
        self.registry.delete_requests([name])
        return True

    def skip_alias_check(self, requested: str) -> None:
        """skipAliasCheck: archive a pending request under the name it was asked for, even
        if its .NAME names another record. Only a request not yet turned into a typeinfo."""
        name = self.registry.real_name(requested)
        if self.registry.has_typeinfo(name):
            raise OperationError(
                400, f"PV {name} is archived already: its alias check was done when it was added"
            )
        req = self.pending.get(name)
        if req is None:
            raise OperationError(404, f"No archive request for {name} in the archive workflow")
        if name in self.busy:
            raise OperationError(
                409, f"The archive request for {name} is being completed; too late to change it"
            )
        if not req.skipAliasCheck:
            req.skipAliasCheck = True
            self.registry.put_requests([(name, req.to_params())])

    def restart_workflow(self) -> tuple[int, bool]:
        """restartArchivePVWorkflowThreadForThisAppliance: abort every request in the
        workflow and start the workflow loop again if it has stopped; returns (requests
        aborted, loop restarted). Requests whose typeinfo is being written finish. A running
        loop is left alone: cancelled while it writes a batch, those PVs would be registered
        but never handed to the engine."""
        aborted = 0
        for name in list(self.pending):
            if name not in self.busy and self.abort(name):
                aborted += 1
        task = self._task
        if task is None or not task.done():
            return aborted, False
        if not task.cancelled() and task.exception() is not None:
            log.error("archive workflow: the loop had stopped: %r", task.exception())
        self._task = asyncio.create_task(self._loop())
        return aborted, True

    # ------------------------------------------------------------------ lifecycle
    def pause_resume(self, names: list[str], pause: bool) -> list[dict[str, str]]:
        """pause/resumeArchivingPV rows, AA wording; typeinfos updated in one commit."""
        rows: list[dict[str, str]] = []
        changed: list[PVTypeInfo] = []
        for requested in names:
            name = self.registry.real_name(requested)
            row = {"pvName": name}
            rows.append(row)
            info = self.registry.typeinfo(name)
            if info is None or name in self.busy:
                row["validation"] = f"Unable to {'pause' if pause else 'resume'} PV {name}"
            elif pause and info.paused:
                row["validation"] = f"PV {name} is already paused"
            elif not pause and not info.paused:
                row["validation"] = f"PV {name} is not paused"
            else:
                info.paused = pause
                info.touch()
                changed.append(info)
                row["status"] = "ok"
        self.registry.put_typeinfos(changed)
        for info in changed:
            if pause:
                self.link.stop(info.pvName)
            else:
                self.link.start(info)
        return rows

    async def delete(self, requested: str, delete_data: bool) -> str:
        """deletePV for one PV; returns a description, raises OperationError if refused."""
        name = self.registry.real_name(requested)
        info = self.registry.typeinfo(name)
        if info is None:
            if name in self.pending:
                raise OperationError(
                    400, f"PV {name} is still in the archive workflow; use abortArchivingPV"
                )
            raise OperationError(404, f"PV {name} is not being archived")
        if not info.paused:
            raise OperationError(
                400,
                f"We will not stop archiving PV {name} if it is not paused. "
                "Please pause recording first.",
            )
        if name in self.busy:
            raise OperationError(409, f"Another operation on {name} is in progress; try again")
        self.busy.add(name)
        try:
            try:
                await self.link.flush_and_remove(name, keep=not delete_data)
            except OSError as e:
                raise OperationError(
                    409, f"PV {name} is not deleted: {e}; it stays paused, ask again"
                ) from None
            aliases = [a for a, r in self.registry.aliases().items() if r == name]

            def drop() -> tuple[int, list[str]]:
                # files first: a PV whose files could not all be deleted stays registered
                # (paused), so deletePV can be asked again once they are free
                removed, failed = self.link.delete_data(name) if delete_data else (0, [])
                if failed:
                    return removed, failed
                with self.registry.batch() as b:
                    b.delete_typeinfo(name)
                    for a in aliases:
                        b.remove_alias(a)
                return removed, failed

            removed, failed = await asyncio.to_thread(drop)
        finally:
            self.busy.discard(name)
        if failed:
            raise OperationError(
                409,
                f"PV {name} is not deleted: {len(failed)} of its data files could not be "
                f"removed ({failed[0]}{', ...' if len(failed) > 1 else ''}); {removed} were. "
                "It stays paused; ask again when the files are no longer in use",
            )
        what = f" and {removed} data files" if delete_data else ""
        return f"Deleted PV {name}{what}"

    async def rename(self, requested: str, new_name: str) -> str:
        """renamePV, as the AA's (really a copy): the PV must be paused; its typeinfo and
        data files are copied under the new name (each file's header rewritten); both stay
        paused, so the user resumes the new one and deletes the old one when satisfied."""
        from .rename import copy_pv_data

        name = self.registry.real_name(requested)
        info = self.registry.typeinfo(name)
        if info is None:
            raise OperationError(404, f"PV {name} is not being archived")
        if not info.paused:
            raise OperationError(400, f"Need to pause PV before renaming {name} to {new_name}")
        target = archive_target(new_name, [])
        if target.pv != new_name or target.field:
            raise OperationError(400, f"Invalid new name {new_name!r}")
        if self.registry.has_typeinfo(new_name) or new_name in self.pending:
            raise OperationError(
                400, f"While renaming PV {name} to {new_name}, the new name already exists"
            )
        try:
            self.file_keys.check(new_name, self._all_names)
        except FileKeyConflict as e:
            raise OperationError(400, f"Cannot rename PV {name} to {new_name}: {e}") from None
        if name in self.busy or new_name in self.busy:
            raise OperationError(409, f"Another operation on {name} is in progress; try again")
        self.busy.update((name, new_name))
        try:
            try:
                await self.link.flush_and_remove(name)
            except OSError as e:
                raise OperationError(
                    409, f"PV {name} is not renamed: {e}; it stays paused, ask again"
                ) from None
            new_info = info.copy()
            new_info.pvName = new_name
            new_info.touch()

            def work() -> None:
                copy_pv_data(self.link.stores_holding(name), name, new_name)
                self.registry.put_typeinfo(new_info)

            await asyncio.to_thread(work)
        finally:
            self.busy.difference_update((name, new_name))
        self.file_keys.add(new_name)
        self.link.start(new_info)
        return f"Successfully renamed PV {name} to {new_name}"

    def change_params(self, requested: str, method: str, period: float) -> str:
        name = self.registry.real_name(requested)
        info = self.registry.typeinfo(name)
        if info is None:
            raise OperationError(404, f"PV {name} is not being archived")
        info.samplingMethod = method
        info.samplingPeriod = period
        info.touch()
        self.registry.put_typeinfo(info)
        self.link.change_sampling(name, method, period)
        return f"Successfully changed the archival parameters for {name}"
