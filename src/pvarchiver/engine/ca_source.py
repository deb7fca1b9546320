"""Channel Access as a source of the engine (:class:`~.source.Source`).

Per PV: one channel with a DBR_TIME subscription of the channel's element count and the
AA's archive mask DBE_LOG|DBE_ALARM, a DBR_CTRL read at each connect for the metadata (EGU,
PREC, limits), and one channel per archive field (``PV.HIHI`` ...) whose value changes are
attached to the stream as fieldvalues, as the AA does.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable

from ..ca import CAClient, dbr
from ..ca.client import Channel
from ..ca.protocol import DBE_ALARM, DBE_LOG, DBE_VALUE
from ..ca.tasks import TaskSet
from .archived_pv import ArchivedPV
from .source import HostedSource

log = logging.getLogger(__name__)


def _text(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


class _PVWatch:
    """Connection callback of an archived PV's own channel (see ``CASource.archive``).

    A small object rather than a closure over its variables: one per archived PV, and the
    closure with its cells cost ~430 bytes of the 5 KB per PV budget, this ~100."""

    __slots__ = ("name", "source", "subscribed")

    def __init__(self, source: CASource, name: str) -> None:
        self.source = source
        self.name = name
        self.subscribed = False  # monitor installed on this channel (once per channel)

    def __call__(self, ch: Channel, up: bool) -> None:
        self.source._on_connection(self, ch, up)


class _FieldWatch:
    """Monitor callback of one archive field channel (``PV.HIHI``).

    A small object rather than a closure: 8 fields per PV, and a closure with its three
    cells cost ~3 times the memory of this."""

    __slots__ = ("field", "name", "source")

    def __init__(self, source: CASource, name: str, field: str) -> None:
        self.source = source
        self.name = name
        self.field = field

    def __call__(self, secs: int, nanos: int, sev: int, stat: int, value: object) -> None:
        self.source._on_field(self.name, self.field, value)


class CASource(HostedSource):
    """Archives PVs from a :class:`CAClient` (a :class:`~.source.Source`)."""

    def __init__(self, client: CAClient) -> None:
        self.client = client
        self.channels: dict[str, Channel] = {}
        self.field_channels: dict[str, list[Channel]] = {}
        self._meta: dict[str, dict[str, str]] = {}
        self._early_fields: dict[str, dict[str, str]] = {}
        self._tasks = TaskSet()

    def archive(self, name: str, fields: Iterable[str]) -> None:
        if name in self.channels:
            return
        self.channels[name] = self.client.create_channel(name, _PVWatch(self, name))
        for f in fields:
            self._watch_field(name, f)

    def _on_connection(self, w: _PVWatch, ch: Channel, up: bool) -> None:
        name = w.name
        host = self.host
        pv = host.pvs.get(name)
        if not up:
            if pv is not None:
                pv.on_disconnect()
            return
        ptype = dbr.payload_type(ch.native_type, ch.count)
        if pv is None:
            pv = host.create_pv(name, ptype)
        if not w.subscribed:
            # once per channel: a resumed PV keeps its engine state but has a new channel.
            # count=None: the channel's element count at every (re)connect, so a waveform
            # whose NELM grew across an IOC restart is archived whole. The engine's hot
            # path: the client calls pv.on_event itself, with nothing in between
            w.subscribed = True
            self.client.subscribe(ch, pv.on_event, count=None, mask=DBE_LOG | DBE_ALARM)
            for fname, fval in self._early_fields.pop(name, {}).items():
                pv.set_field(fname, fval)
        pv.on_connect(ptype, ch.error)
        self._tasks.spawn(self._read_metadata(name, ch, pv))

    def stop_archiving(self, name: str) -> bool:
        ch = self.channels.pop(name, None)
        for fch in self.field_channels.pop(name, []):
            self.client.clear_channel(fch)
        self._early_fields.pop(name, None)
        if ch is None:
            return False
        self.client.clear_channel(ch)
        pv = self.host.pvs.get(name)
        if pv is not None:
            pv.on_disconnect()
        return True

    def forget(self, name: str) -> None:
        self.stop_archiving(name)
        self._meta.pop(name, None)

    def add_fields(self, name: str, fields: Iterable[str]) -> None:
        if name not in self.channels:
            return
        have = {c.name for c in self.field_channels.get(name, [])}
        for f in fields:
            if f"{name}.{f}" not in have:
                self._watch_field(name, f)

    def metadata(self, name: str) -> dict[str, str]:
        return self._meta.get(name, {})

    def status_message(self, name: str) -> str:
        """A name that is not a valid PV name (never searched), an array too large for
        ``EPICS_CA_MAX_ARRAY_BYTES``, or a PV that never connected (how long, how many
        searches)."""
        ch = self.channels.get(name)
        if ch is None:
            return ""
        if ch.error:
            return ch.error
        if name not in self.host.pvs and not ch.connected:
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
        pv = self.host.pvs.get(name)
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

    def start(self) -> None:
        """Nothing to start: the client runs on its own (``CAClient.start``)."""

    async def stop(self) -> None:
        """Cancel the metadata reads still running."""
        tasks = list(self._tasks)
        self._tasks.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
