"""PV Access as a source of the engine (:class:`~.source.Source`), as the AA's
``EPICS_V4_PV`` does it.

Per PV, at every (re)connect of its channel: a GET of the whole structure, from which the
type is derived afresh (:func:`~.pva_types.payload_type`; a PV whose type changed is
paused by its :class:`~.archived_pv.ArchivedPV`, as for CA), its metadata read and its
first sample stored; then a monitor with the AA's pvRequest (``field()``,
``record._options.DBE=2``). Each update whose changed BitSet touches neither bit 0 nor a
``timeStamp`` field is property-only and not stored (the AA drops it); the display,
control and valueAlarm fields it changes are kept as the PV's field values (V3 names),
attached at the next write. A disconnect closes the monitor; the engine records the
connection loss and the next connect's ``cnxlostepsecs``/``cnxregainedepsecs``.

The hot path is :meth:`_PVAWatch.__call__`: two BitSet tests and, for a numeric scalar,
five list lookups handed to the PV's ``on_event``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

from ..ca.tasks import TaskSet
from ..pva.client import Channel, PVAClient, Subscription
from ..pva.connection import MonitorUpdate
from ..pva.data import Value
from .pva_types import PVAMapping
from .source import HostedSource

__all__ = ["PVASource"]

log = logging.getLogger(__name__)

#: seconds between GET attempts while a connected channel does not answer one
GET_RETRY = 5.0


class _PVAWatch:
    """One archived PV: its channel, monitor and mapping (the source's
    :class:`~.source.Connection` for status pages, and the monitor callback)."""

    __slots__ = (
        "channel",
        "count",
        "direct",
        "error",
        "field_mask",
        "fields",
        "gen",
        "idx",
        "mapping",
        "name",
        "on_event",
        "record_mask",
        "skip_ts",
        "source",
        "sub",
    )

    def __init__(self, source: PVASource, name: str, fields: Iterable[str]) -> None:
        self.source = source
        self.name = name
        self.fields = list(fields)
        self.channel: Channel | None = None
        self.sub: Subscription | None = None
        self.mapping: PVAMapping | None = None
        self.on_event: Any = None
        self.gen = 0  # bumped at each connect/disconnect: stale GETs are ignored
        self.count = 0
        self.error = ""
        self.skip_ts: tuple[int, int] | None = None  # the GET's sample, repeated by the monitor
        self.record_mask = 0
        self.field_mask = 0
        self.direct = False
        self.idx = (0, 0, 0, 0, 0)

    # ---------------------------------------------------------------- Connection
    @property
    def connected(self) -> bool:
        return self.channel is not None and self.channel.connected

    @property
    def server(self) -> tuple[str, int] | None:
        return self.channel.server if self.channel is not None else None

    # ---------------------------------------------------------------- callbacks
    def on_state(self, ch: Channel, up: bool) -> None:
        self.source._on_state(self, up)

    def __call__(self, ev: MonitorUpdate) -> None:
        """One monitor update (the engine's PVA hot path)."""
        changed = ev.changed
        flat = ev.value.flat
        if changed & self.field_mask or ev.value.layout is not self.mapping.layout:  # type: ignore[union-attr]
            if not self.source._slow_update(self, ev):
                return
        if not changed & self.record_mask:
            return  # property-only: the AA stores no sample for it
        if self.skip_ts is not None:
            if self.source._repeat_of_get(self, ev):
                return
        if self.direct:
            si, ni, sev, stat, vi = self.idx
            self.on_event(flat[si], flat[ni], flat[sev], flat[stat], flat[vi])
            return
        s = self.mapping.sample(ev.value)  # type: ignore[union-attr]
        if s is not None:
            self.on_event(*s)


class PVASource(HostedSource):
    """Archives PVs from a :class:`PVAClient` (a :class:`~.source.Source`)."""

    def __init__(self, client: PVAClient) -> None:
        self.client = client
        self.channels: dict[str, _PVAWatch] = {}
        self._meta: dict[str, dict[str, str]] = {}
        self._tasks = TaskSet()

    # ---------------------------------------------------------------- Source
    def archive(self, name: str, fields: Iterable[str]) -> None:
        if name in self.channels:
            return
        w = _PVAWatch(self, name, fields)
        self.channels[name] = w
        w.channel = self.client.channel(name, on_state=w.on_state)
        if w.channel.connected:  # already open (another user of the same name)
            self._on_state(w, True)

    def add_fields(self, name: str, fields: Iterable[str]) -> None:
        w = self.channels.get(name)
        if w is None:
            return
        for f in fields:
            if f not in w.fields:
                w.fields.append(f)
        if w.mapping is not None:
            w.mapping.set_archive_fields(w.fields)
            w.field_mask = w.mapping.field_mask

    def stop_archiving(self, name: str) -> bool:
        w = self.channels.pop(name, None)
        if w is None:
            return False
        w.gen += 1
        if w.sub is not None:
            w.sub.close()
            w.sub = None
        if w.channel is not None:
            w.channel.close()
        pv = self.host.pvs.get(name)
        if pv is not None:
            pv.on_disconnect()
        return True

    def forget(self, name: str) -> None:
        self.stop_archiving(name)
        self._meta.pop(name, None)

    def metadata(self, name: str) -> dict[str, str]:
        return self._meta.get(name, {})

    def status_message(self, name: str) -> str:
        """Why a PV has no data: a structure the AA cannot store, a GET that failed, the
        reason its connection was closed (a malformed message...), or that no server
        answered its searches."""
        w = self.channels.get(name)
        if w is None:
            return ""
        if w.error:
            return w.error
        ch = w.channel
        if ch is not None and not ch.connected:
            if ch.error:
                return f"disconnected: {ch.error}"
            if name not in self.host.pvs:
                return "never connected: no PVA server answered its searches"
        return ""

    def start(self) -> None:
        """Nothing to start: the client runs on its own (``PVAClient.start``)."""

    async def stop(self) -> None:
        """Cancel the GETs still running."""
        tasks = list(self._tasks)
        self._tasks.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # ---------------------------------------------------------------- connection
    def _on_state(self, w: _PVAWatch, up: bool) -> None:
        if self.channels.get(w.name) is not w:
            return
        w.gen += 1
        if w.sub is not None:
            w.sub.close()
            w.sub = None
        if up:
            self._tasks.spawn(self._connected(w, w.gen))
            return
        pv = self.host.pvs.get(w.name)
        if pv is not None:
            pv.on_disconnect()

    async def _connected(self, w: _PVAWatch, gen: int) -> None:
        """The AA's connect sequence: GET, type, metadata, first sample, then monitor."""
        ch = w.channel
        assert ch is not None
        while True:
            try:
                value = await ch.get()
                break
            except (TimeoutError, RuntimeError, ConnectionError) as exc:
                if w.gen != gen:
                    return
                w.error = f"connected, but its GET failed: {exc or type(exc).__name__}"
                log.warning("%s: %s", w.name, w.error)
                await asyncio.sleep(GET_RETRY)
                if w.gen != gen:
                    return
        if w.gen != gen or self.channels.get(w.name) is not w:
            return
        self._setup(w, value)
        w.sub = ch.monitor(w)

    def _setup(self, w: _PVAWatch, value: Value) -> None:
        """Type, metadata and the first sample from a whole value (GET)."""
        m = PVAMapping(value.layout, w.fields)
        self._use_mapping(w, m)
        problem = "" if m.has_time else "its structure has no timeStamp field (nothing to store)"
        w.error = ""
        v = m.layout.descs[m.value_index] if m.value_index >= 0 else None
        w.count = len(value.flat[m.value_index]) if v is not None and v.is_array else 1
        host = self.host
        pv = host.pvs.get(w.name)
        if pv is None:
            pv = host.create_pv(w.name, m.ptype)
        w.on_event = pv.on_event
        pv.on_connect(m.ptype, problem)
        self._meta[w.name] = m.all_fields(value.flat)
        for key, text in m.changed_fields(value.flat, 1).items():
            pv.set_field(key, text)
        s = m.sample(value)
        w.skip_ts = None
        if s is not None:
            w.skip_ts = (s[0], s[1])
            pv.on_event(*s)

    def _use_mapping(self, w: _PVAWatch, m: PVAMapping) -> None:
        w.mapping = m
        w.record_mask = m.record_mask if m.has_time else 0
        w.field_mask = m.field_mask
        w.direct = (
            m.has_time
            and m.sev_index >= 0
            and m.stat_index >= 0
            and m.convert is None
            and not m.generic
        )
        w.idx = (m.secs_index, m.nanos_index, m.sev_index, m.stat_index, m.value_index)

    def _slow_update(self, w: _PVAWatch, ev: MonitorUpdate) -> bool:
        """An update that changed watched fields, or the first from a new monitor type;
        False when nothing more is to be done with it."""
        m = w.mapping
        if m is None:
            return False
        if ev.value.layout is not m.layout:
            new = PVAMapping(ev.value.layout, w.fields)
            if new.ptype is not m.ptype:  # the monitor's type is not the GET's
                pv = self.host.pvs.get(w.name)
                if pv is not None:
                    pv.on_connect(new.ptype)
            self._use_mapping(w, new)
            m = new
        fields = m.changed_fields(ev.value.flat, ev.changed)
        if fields:
            pv = self.host.pvs.get(w.name)
            meta = self._meta.setdefault(w.name, {})
            for key, text in fields.items():
                meta[key] = text
                if pv is not None:
                    pv.set_field(key, text)
        return True

    def _repeat_of_get(self, w: _PVAWatch, ev: MonitorUpdate) -> bool:
        """The monitor's first update repeats the value the GET stored: skip it (the
        engine would count it as a timestamp that did not increase)."""
        m = w.mapping
        skip, w.skip_ts = w.skip_ts, None
        if m is None or not m.has_time:
            return False
        flat = ev.value.flat
        return (flat[m.secs_index], flat[m.nanos_index]) == skip
