"""Connecting the engine's PVs to Channel Access.

Per PV: one channel with a DBR_TIME subscription of the channel's element count and the
AA's archive mask DBE_LOG|DBE_ALARM, a DBR_CTRL read at each connect for the metadata (EGU,
PREC, limits), and one channel per archive field (``PV.HIHI`` ...) whose value changes are
attached to the stream as fieldvalues, as the AA does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterable

from ..ca import CAClient, dbr
from ..ca.client import Channel
from ..ca.protocol import DBE_ALARM, DBE_LOG, DBE_VALUE
from .archived_pv import ArchivedPV, SamplingMethod
from .conditional import ControllingPVs
from .writer import Engine

log = logging.getLogger(__name__)

#: The AA's default archive fields (``getFieldsArchivedAsPartOfStream``).
DEFAULT_ARCHIVE_FIELDS = ("HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR", "DRVH", "DRVL")


def _text(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


class _PVWatch:
    """Connection callback of an archived PV's own channel (see ``CAArchiver.archive``).

    A small object rather than a closure over five variables: one per archived PV, and the
    closure with its cells cost ~430 bytes of the 5 KB per PV budget, this ~100."""

    __slots__ = ("archiver", "method", "name", "period", "subscribed")

    def __init__(
        self, archiver: CAArchiver, name: str, method: SamplingMethod, period: float
    ) -> None:
        self.archiver = archiver
        self.name = name
        self.method = method
        self.period = period
        self.subscribed = False  # monitor installed on this channel (once per channel)

    def __call__(self, ch: Channel, up: bool) -> None:
        self.archiver._on_connection(self, ch, up)


class _FieldWatch:
    """Monitor callback of one archive field channel (``PV.HIHI``).

    A small object rather than a closure: 8 fields per PV, and a closure with its three
    cells cost ~3 times the memory of this."""

    __slots__ = ("archiver", "field", "name")

    def __init__(self, archiver: CAArchiver, name: str, field: str) -> None:
        self.archiver = archiver
        self.name = name
        self.field = field

    def __call__(self, secs: int, nanos: int, sev: int, stat: int, value: object) -> None:
        self.archiver._on_field(self.name, self.field, value)


class CAArchiver:
    """Archives PVs of an :class:`Engine` from a :class:`CAClient`."""

    def __init__(self, engine: Engine, client: CAClient) -> None:
        self.engine = engine
        self.client = client
        self.channels: dict[str, Channel] = {}
        self._meta: dict[str, dict[str, str]] = {}
        self._early_fields: dict[str, dict[str, str]] = {}
        self.field_channels: dict[str, list[Channel]] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._scan_task: asyncio.Task[None] | None = None
        #: (method, period) per PV, applied when its ArchivedPV is created (mgmt may change it
        #: before the first connect)
        self.sampling: dict[str, tuple[SamplingMethod, float]] = {}
        #: conditional archiving (the AA's controllingPV)
        self.controls = ControllingPVs(engine, client)

    def metadata(self, pvname: str) -> dict[str, str]:
        """Latest EGU/PREC/limits and field values, for retrieval's ``meta``."""
        pv = self.engine.pvs.get(pvname)
        out = dict(self._meta.get(pvname, {}))
        if pv is not None:
            out.update(pv.field_values)
        return out

    def archive(
        self,
        name: str,
        method: SamplingMethod = SamplingMethod.MONITOR,
        period: float = 1.0,
        fields: Iterable[str] = DEFAULT_ARCHIVE_FIELDS,
    ) -> None:
        """Start archiving ``name``; it connects whenever its IOC answers."""
        if name in self.channels:
            return
        self.sampling[name] = (method, period)
        watch = _PVWatch(self, name, method, period)
        self.channels[name] = self.client.create_channel(name, watch)
        for f in fields:
            self._watch_field(name, f)

    def _on_connection(self, w: _PVWatch, ch: Channel, up: bool) -> None:
        name = w.name
        pv = self.engine.pvs.get(name)
        if not up:
            if pv is not None:
                pv.on_disconnect()
            return
        ptype = dbr.payload_type(ch.native_type, ch.count)
        if pv is None:
            m, p = self.sampling.get(name, (w.method, w.period))
            pv = self.engine.add_pv(name, ptype, m, p)
            self.controls.apply(name)
        if not w.subscribed:
            # once per channel: a resumed PV keeps its engine state but has a new channel.
            # count=None: the channel's element count at every (re)connect, so a waveform
            # whose NELM grew across an IOC restart is archived whole
            w.subscribed = True
            self.client.subscribe(ch, pv.on_event, count=None, mask=DBE_LOG | DBE_ALARM)
            for fname, fval in self._early_fields.pop(name, {}).items():
                pv.set_field(fname, fval)
        pv.on_connect(ptype, ch.error)
        self._spawn(self._read_metadata(name, ch, pv))

    # ------------------------------------------------------------------ mgmt hooks
    # (pause/resume/delete/changeArchivalParameters/added stream fields; mgmt calls these on
    # the event loop)
    def stop_archiving(self, name: str) -> bool:
        """Close the PV's channels (its engine state and buffer stay until
        :meth:`Engine.remove_pv`); returns whether it was archived."""
        ch = self.channels.pop(name, None)
        for fch in self.field_channels.pop(name, []):
            self.client.clear_channel(fch)
        self._early_fields.pop(name, None)
        if ch is None:
            return False
        self.client.clear_channel(ch)
        pv = self.engine.pvs.get(name)
        if pv is not None:
            pv.on_disconnect()
        return True

    def forget(self, name: str) -> None:
        """Drop what is kept about a PV that is no longer archived (deleted/renamed)."""
        self.stop_archiving(name)
        self.controls.set(name, None)
        self._meta.pop(name, None)
        self.sampling.pop(name, None)

    def change_sampling(self, name: str, method: SamplingMethod, period: float) -> None:
        self.sampling[name] = (method, period)
        pv = self.engine.pvs.get(name)
        if pv is not None:
            pv.set_sampling(method, period)

    def add_fields(self, name: str, fields: Iterable[str]) -> None:
        """Start watching more archive fields of an archived PV (``PV.HIHI`` requests)."""
        if name not in self.channels:
            return
        have = {c.name for c in self.field_channels.get(name, [])}
        for f in fields:
            if f"{name}.{f}" not in have:
                self._watch_field(name, f)

    def status_message(self, name: str) -> str:
        """Why a PV is not archiving, in a sentence for getPVStatus ("" when all is well).

        Covers what the engine's PV state cannot: a name that is not a valid PV name, and a
        PV that never connected (with how long and how many searches).
        """
        pv = self.engine.pvs.get(name)
        if pv is not None and (pv.status_message or pv.control_off):
            return pv.status_message or pv.control_off
        ch = self.channels.get(name)
        if ch is None:
            return ""
        if ch.error:
            return ch.error
        if pv is None and not ch.connected:
            since = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ch.created_at))
            tries = self.client.search_tries(ch)
            return f"never connected: no server answered {tries} searches since {since}"
        return ""

    def _watch_field(self, name: str, field: str) -> None:
        # created on the PV's own circuit, never searched (see CAClient.create_channel)
        ch = self.client.create_channel(f"{name}.{field}", follow=self.channels.get(name))
        self.field_channels.setdefault(name, []).append(ch)
        self.client.subscribe(
            ch,
            _FieldWatch(self, name, field),
            dbr_type=dbr.time_type(0),
            count=1,
            mask=DBE_VALUE | DBE_ALARM,
        )

    def _on_field(self, name: str, field: str, value: object) -> None:
        pv = self.engine.pvs.get(name)
        if pv is not None:
            pv.set_field(field, _text(value))
        else:  # the field connected before its PV: keep the value until the PV exists
            self._early_fields.setdefault(name, {})[field] = _text(value)

    async def _read_metadata(self, name: str, ch: Channel, pv: ArchivedPV) -> None:
        try:
            r = await self.client.get(ch, dbr.ctrl_type(ch.native_type), count=1)
        except Exception as e:
            log.warning("%s: no DBR_CTRL metadata: %s", name, e)
            return
        meta: dict[str, str] = {}
        if r.units:
            meta["EGU"] = r.units
        if r.precision is not None:
            meta["PREC"] = str(r.precision)
        for key, val in (("HOPR", r.upper_disp_limit), ("LOPR", r.lower_disp_limit)):
            if val is not None:
                meta[key] = _text(float(val))
        if r.enum_strings:
            meta["LABELS"] = ",".join(r.enum_strings)
        self._meta[name] = meta
        for key in ("EGU", "PREC"):
            if key in meta:
                pv.set_field(key, meta[key])

    def _spawn(self, coro: object) -> None:
        task = asyncio.ensure_future(coro)  # type: ignore[arg-type]
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def scan_ticks(self) -> None:
        """Once per period, SCAN PVs store their latest unstored value."""
        loop = asyncio.get_running_loop()
        next_tick: dict[str, float] = {}
        while True:
            now = loop.time()
            for name, pv in list(self.engine.pvs.items()):
                if pv.method is not SamplingMethod.SCAN:
                    continue
                due = next_tick.setdefault(name, now + pv.period)
                if now >= due:
                    pv.on_scan_tick()
                    next_tick[name] = due + pv.period if due + pv.period > now else now + pv.period
            await asyncio.sleep(0.05)

    def start(self) -> None:
        self._scan_task = asyncio.ensure_future(self.scan_ticks())

    async def stop(self) -> None:
        if self._scan_task is not None:
            self._scan_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._scan_task
        tasks = list(self._tasks)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
