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
from collections.abc import Iterable

from ..ca import CAClient, dbr
from ..ca.client import Channel
from ..ca.protocol import DBE_ALARM, DBE_LOG, DBE_VALUE
from .archived_pv import ArchivedPV, SamplingMethod
from .writer import Engine

log = logging.getLogger(__name__)

#: The AA's default archive fields (``getFieldsArchivedAsPartOfStream``).
DEFAULT_ARCHIVE_FIELDS = ("HIHI", "HIGH", "LOW", "LOLO", "LOPR", "HOPR", "DRVH", "DRVL")


def _text(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


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
        state = {"method": method, "period": period}

        def on_connection(ch: Channel, up: bool) -> None:
            pv = self.engine.pvs.get(name)
            if not up:
                if pv is not None:
                    pv.on_disconnect()
                return
            ptype = dbr.payload_type(ch.native_type, ch.count)
            if pv is None:
                pv = self.engine.add_pv(name, ptype, state["method"], state["period"])
                # count=None: the channel's element count at every (re)connect, so a waveform
                # whose NELM grew across an IOC restart is archived whole
                self.client.subscribe(ch, pv.on_event, count=None, mask=DBE_LOG | DBE_ALARM)
                for fname, fval in self._early_fields.pop(name, {}).items():
                    pv.set_field(fname, fval)
            pv.on_connect(ptype)
            self._spawn(self._read_metadata(name, ch, pv))

        self.channels[name] = self.client.create_channel(name, on_connection)
        for f in fields:
            self._watch_field(name, f)

    def _watch_field(self, name: str, field: str) -> None:
        def on_field(secs: int, nanos: int, sev: int, stat: int, value: object) -> None:
            pv = self.engine.pvs.get(name)
            if pv is not None:
                pv.set_field(field, _text(value))
            else:  # the field connected before its PV: keep the value until the PV exists
                self._early_fields.setdefault(name, {})[field] = _text(value)

        ch = self.client.create_channel(f"{name}.{field}")
        self.field_channels.setdefault(name, []).append(ch)
        self.client.subscribe(
            ch, on_field, dbr_type=dbr.time_type(0), count=1, mask=DBE_VALUE | DBE_ALARM
        )

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
