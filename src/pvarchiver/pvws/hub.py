"""Where PVWS sockets meet live values: the engine's own monitors for archived PVs, the CA
client on demand for the others.

One :class:`_Live` per subscribed name (exactly as the clients spelled it) holds the sockets
watching it. For a PV the engine archives it is a listener on the engine's
:class:`~pvarchiver.engine.archived_pv.ArchivedPV` (no second connection to the IOC: the
metadata and the current value are read once over the engine's own channel); for any other
PV it owns a CA channel and monitor, up to ``max_unarchived`` such channels, closed when its
last socket leaves.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

from ..ca import dbr
from ..ca.client import CAClient, Channel
from ..ca.protocol import DBE_ALARM, DBE_VALUE
from ..ca.tasks import TaskSet
from ..engine.archived_pv import ArchivedPV
from .session import Session, error
from .values import Meta, Update, meta_for

log = logging.getLogger(__name__)

#: the kind sent for a PV that never connected (PVWS sends no value for it at all)
UNKNOWN = Meta("VString")


def source_name(name: str) -> str:
    """The PV a client's name reaches: ``ca://``/``pva://`` gone, ``X.VAL`` is ``X``."""
    for prefix in ("ca://", "pva://"):
        if name.startswith(prefix):
            name = name[len(prefix) :]
    name = name.strip()
    return name[:-4] if name.endswith(".VAL") else name


class _Live:
    """One subscribed name and the sockets watching it (the engine listener too)."""

    __slots__ = (
        "channel",
        "clock",
        "connected",
        "engine_pv",
        "hub",
        "last",
        "meta",
        "name",
        "own",
        "sessions",
    )

    def __init__(self, hub: Hub, name: str) -> None:
        self.hub = hub
        self.name = name
        self.clock = hub.clock
        self.sessions: dict[Session, None] = {}
        self.meta: Meta | None = None
        self.last: Update | None = None
        self.connected = False
        self.channel: Channel | None = None
        self.own = False  # the channel is the hub's (not the engine's)
        self.engine_pv: ArchivedPV | None = None

    # the engine's (and the CA monitor's) callbacks: the fan-out
    def on_event(self, secs: int, nanos: int, sev: int, stat: int, val: Any) -> None:
        upd = Update(secs, nanos, sev, val)
        self.last = upd
        if self.meta is None:
            return  # the metadata read is under way; it sends the value it reads
        now = self.clock()
        for s in self.sessions:
            s.on_update(self.name, upd, now)

    def on_connection(self, connected: bool) -> None:
        self.connected = connected
        if connected:
            self.hub.read_meta(self)
            return
        now = self.clock()
        upd = self.last = Update.lost(now)
        for s in self.sessions:
            s.on_update(self.name, upd, now)

    def readonly(self, session: Session) -> bool:
        ch = self.channel
        return not (session.limits.may_write and ch is not None and ch.write_access)

    def announce(self, session: Session) -> None:
        """Tell ``session`` what is known: the kind and access, and the last value."""
        session.set_meta(self.name, self.meta or UNKNOWN, self.readonly(session))
        if self.meta is not None and self.last is not None:
            session.on_update(self.name, self.last, self.clock())


class Hub:
    """Live values for every PVWS socket of the process."""

    def __init__(
        self,
        engine_pvs: Mapping[str, ArchivedPV],
        channels: Mapping[str, object],
        client: CAClient | None,
        max_unarchived: int = 1000,
        resolve: Callable[[str], str] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.engine_pvs = engine_pvs
        self.channels = channels  # the engine's connections by PV name (CA: Channel)
        self.client = client
        self.max_unarchived = max_unarchived
        self.resolve = resolve or (lambda n: n)
        self.clock = clock
        self.live: dict[str, _Live] = {}
        self.sessions: set[Session] = set()
        self._tasks = TaskSet()

    @property
    def own_channels(self) -> int:
        return sum(1 for lv in self.live.values() if lv.own)

    # ------------------------------------------------------------------ sockets
    def attach(self, session: Session) -> None:
        self.sessions.add(session)

    def detach(self, session: Session) -> None:
        self.sessions.discard(session)
        for name in list(session.pvs):
            self.clear(session, name)

    def subscribe(self, session: Session, name: str) -> None:
        lv = self.live.get(name)
        if lv is None:
            lv = self._open(session, name)
            if lv is None:
                return
        lv.sessions[session] = None
        lv.announce(session)

    def clear(self, session: Session, name: str) -> None:
        lv = self.live.get(name)
        if lv is None:
            return
        lv.sessions.pop(session, None)
        if not lv.sessions:
            self._close(lv)

    # ------------------------------------------------------------------ sources
    def _open(self, session: Session, name: str) -> _Live | None:
        real = self.resolve(source_name(name))
        lv = _Live(self, name)
        pv = self.engine_pvs.get(real)
        ch = self.channels.get(real)
        if pv is not None and isinstance(ch, Channel):
            lv.engine_pv = pv
            lv.channel = ch
            pv.add_listener(lv)
            self.live[name] = lv
            if ch.connected:
                lv.connected = True
                self.read_meta(lv)
            return lv
        if name.startswith("pva://") or self.client is None:
            session.push(error(f"{name}: only archived PVs are served over PV Access"))
            self.live[name] = lv
            return lv
        if self.own_channels >= self.max_unarchived:
            session.push(
                error(
                    f"Limit of {self.max_unarchived} PVs that are not archived reached; "
                    f"{name} is not connected"
                )
            )
            return None
        lv.own = True
        self.live[name] = lv
        lv.channel = self.client.create_channel(real, self._on_own_connection(lv))
        return lv

    def _on_own_connection(self, lv: _Live) -> Callable[[Channel, bool], None]:
        def cb(ch: Channel, up: bool) -> None:
            if self.live.get(lv.name) is not lv:
                return
            if up and not ch.subscriptions and self.client is not None:
                mask = DBE_VALUE | DBE_ALARM
                self.client.subscribe(ch, lv.on_event, count=None, mask=mask)
            lv.on_connection(up)

        return cb

    def _close(self, lv: _Live) -> None:
        self.live.pop(lv.name, None)
        if lv.engine_pv is not None:
            lv.engine_pv.remove_listener(lv)
        if lv.own and lv.channel is not None and self.client is not None:
            self.client.clear_channel(lv.channel)

    def read_meta(self, lv: _Live) -> None:
        self._tasks.spawn(self._read_meta(lv))

    async def _read_meta(self, lv: _Live) -> None:
        """Kind and DBR_CTRL metadata, and for an engine PV its current value (an own
        channel's monitor brings that itself), over the channel already there."""
        ch = lv.channel
        if ch is None or self.client is None or not ch.connected:
            return
        ptype = dbr.payload_type(ch.native_type, ch.count)
        if lv.engine_pv is not None:
            ptype = lv.engine_pv.ptype
        reading = None
        try:
            reading = await self.client.get(ch, dbr.ctrl_type(ch.native_type), count=1)
        except Exception as e:  # the kind is still known; no display metadata
            log.info("pvws: %s: no DBR_CTRL metadata: %s", lv.name, e)
        if lv.engine_pv is not None and lv.last is None:
            try:
                r = await self.client.get(ch)
                lv.last = Update(r.secs or 0, r.nanos or 0, r.severity, r.value)
            except Exception as e:
                log.info("pvws: %s: no current value: %s", lv.name, e)
        lv.meta = meta_for(ptype, reading)
        for s in list(lv.sessions):
            lv.announce(s)

    # ------------------------------------------------------------------ writes
    async def write(self, session: Session, name: str, value: Any) -> None:
        """Put ``value`` (a number or a text) to the PV; failures go to ``session`` as PVWS
        ``error`` messages."""
        lv = self.live.get(name)
        ch = lv.channel if lv is not None else None
        if lv is None or ch is None or self.client is None:
            session.push(error(f"Cannot write unknown PV {name}"))
            return
        if not ch.connected:
            session.push(error(f"Cannot write {name}: not connected"))
            return
        if lv.readonly(session):
            session.push(error(f"Cannot write {name}: the IOC does not allow writes"))
            return
        try:
            await self.client.put(ch, _put_value(ch, value, lv.meta))
        except Exception as e:
            session.push(error(f"Cannot write {name}: {e}"))

    async def stop(self) -> None:
        for lv in list(self.live.values()):
            self._close(lv)
        tasks = list(self._tasks)
        self._tasks.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


def _put_value(ch: Channel, value: Any, meta: Meta | None) -> Any:
    """PVWS writes a JSON number as a double and anything else as text; CA wants the
    channel's native type: numbers for numeric channels, enum labels as their index."""
    native = ch.native_type
    if native == 0:  # DBR_STRING
        return str(value)
    if native == 3 and isinstance(value, str) and meta is not None and value in meta.labels:
        return meta.labels.index(value)
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ValueError(f"{value!r} is not a number") from None
    if native in (1, 3, 4, 5):
        return int(value)
    return float(value)
