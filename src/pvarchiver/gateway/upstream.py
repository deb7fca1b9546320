"""One real (upstream) PV of the gateway: a CA client channel fanned out to the CA server.

Why one object per *real* name: every downstream channel on a PV, whatever
alias it was found under, shares one upstream channel and one set of
subscriptions (ca-gateway's VC), so the IOC sees one client per gateway.

Upstream subscriptions (re-made on every connect, as the native type may have
changed across an IOC restart):

* DBR_TIME_<native> with the gateway mask (default value|alarm); the payload
  bytes are kept as they arrived and forwarded untouched to downstream
  subscribers asking for the same type (see ``dbr_encode.encode``);
* DBR_CTRL_<native> with DBE_PROPERTY, so units, limits and enum strings stay
  current (ca-gateway issues #11/#58: only right on the first update);
* with ``-archive``, DBR_TIME with DBE_LOG, posted to DBE_LOG subscribers only.

Besides the value, each connect reads ``<record>.RTYP`` once (a follower
channel on the same circuit, so no extra search) for DBR_CLASS_NAME, and the
IOC's own ACCESS_RIGHTS changes are pushed to the downstream channels (the
gateway ANDs them with its ACF rights), as ca-gateway does.

States follow ca-gateway: connecting, active (downstream channels attached),
inactive (connected, none attached), disconnected, dead (never connected
within the connect timeout).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from ..ca import dbr
from ..ca import protocol as P
from ..ca.client import CAClient, Channel, Subscription
from ..ca.dbr_encode import CLASS_NAME, Meta, PVState, encode, meta_from_reading
from ..ca.protocol import ECA_BADTYPE, ECA_NOWTACCESS, ECA_PUTFAIL
from ..ca.server_config import RIGHT_READ
from ..ca.server_pv import CAServerError
from ..ca.tasks import TaskSet
from .fanout import FanOutTable, UpdateHandler
from .fanplan import FanOutPV

if TYPE_CHECKING:
    from ..ca.server import ServerChannel

__all__ = ["CONNECTING", "DEAD", "DISCONNECTED", "STATES", "UpstreamPV"]

log = logging.getLogger(__name__)

CONNECTING = "connecting"
CONNECTED = "connected"  # active or inactive, depending on downstream channels
DISCONNECTED = "disconnected"
DEAD = "dead"
STATES = (CONNECTING, "active", "inactive", DISCONNECTED, DEAD)

_VALUE_MASK = P.DBE_VALUE | P.DBE_LOG

PUT_ACKT = 35  # DBR_PUT_ACKT: set the record's ACKT (transient alarms need acknowledging)
PUT_ACKS = 36  # DBR_PUT_ACKS: acknowledge alarms up to this severity
_PUT_TYPES = frozenset(range(7)) | {PUT_ACKT, PUT_ACKS}


class UpstreamPV(FanOutPV):
    """A served PV backed by an upstream channel of the gateway's CA client."""

    def __init__(self, gateway: Any, real_name: str) -> None:
        self._bid = -1  # row of the current DBR_TIME subscription in gateway.fanout (-1: none)
        self._state: PVState | None = None
        self._posted = 0
        self._table: FanOutTable = gateway.fanout
        super().__init__(real_name, None)
        self.gateway = gateway
        self.client: CAClient = gateway.client
        self.conn_state = CONNECTING
        self.since = time.monotonic()
        self.downstream = 0  # attached downstream channels
        self._events = 0  # upstream events received (per-message path and released rows)
        self._subs: list[Subscription] = []
        self._have_ctrl = False
        self._pending_meta: Meta | None = None
        self._stale = False
        self._ready: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._ever_connected = False
        self._tasks = TaskSet()
        # the state holds a value read with read access (False: none yet, or the IOC
        # withdrew our read access); downstream channels get no read right meanwhile
        self.valid = False
        self._rtyp_done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.channel: Channel = self.client.create_channel(
            real_name, self._on_connection, self._on_rights
        )
        # the record type, for DBR_CLASS_NAME: created on the PV's circuit at every connect
        self._rtyp: Channel = self.client.create_channel(
            real_name.split(".", 1)[0] + ".RTYP", self._on_rtyp_connection, follow=self.channel
        )

    # ------------------------------------------------------------ state
    @property  # type: ignore[override]
    def state(self) -> PVState | None:
        """The cached value; after bulk updates it is rebuilt from the row on first read."""
        bid = self._bid
        if bid >= 0 and self._table.dirty[bid]:
            self._state = self._table.state_of(bid, self._state)
        return self._state

    @state.setter
    def state(self, value: PVState | None) -> None:
        self._state = value
        bid = self._bid
        if bid >= 0:  # the row no longer holds the newest value: copied back before its next use
            self._table.dirty[bid] = 0
            self._table.stale[bid] = 1

    @property
    def events(self) -> int:
        """Upstream updates received."""
        bid = self._bid
        return self._events + (int(self._table.events[bid]) if bid >= 0 else 0)

    @property  # type: ignore[override]
    def posted(self) -> int:
        """Updates handed to downstream circuits (the bulk path counts in the table)."""
        bid = self._bid
        return self._posted + (int(self._table.posted[bid]) if bid >= 0 else 0)

    @posted.setter
    def posted(self, value: int) -> None:
        bid = self._bid
        self._posted = value - (int(self._table.posted[bid]) if bid >= 0 else 0)

    @property
    def posted_off_table(self) -> int:
        """``posted`` but for what the PV's live row in the fan-out table counts: summed
        over all PVs, plus the table's total, this gives every PV's ``posted`` at once."""
        return self._posted

    def fan_out_changed(self) -> None:
        super().fan_out_changed()  # the subscribers' rows for the bulk fan-out
        self._refresh_row()

    def _refresh_row(self) -> None:
        """Whether the bulk path may take this PV's updates changed (or its subscribers)."""
        if self._bid >= 0:
            self._table.refresh(self._bid)

    @property
    def state_name(self) -> str:
        if self.conn_state == CONNECTED:
            return "active" if self.downstream > 0 else "inactive"
        return self.conn_state

    @property
    def ready(self) -> bool:
        return self.conn_state == CONNECTED and self.state is not None and self._have_ctrl

    def _set(self, conn_state: str) -> None:
        self.conn_state = conn_state
        self.since = time.monotonic()

    async def wait_ready(self, timeout: float) -> bool:
        """True once connected with value and metadata; False if dead/disconnected/timeout."""
        if self.ready:
            return True
        if self.conn_state in (DEAD, DISCONNECTED):
            return False
        try:
            return await asyncio.wait_for(asyncio.shield(self._ready), timeout)
        except TimeoutError:
            if self.conn_state == CONNECTING:
                self.mark_dead()
            return False

    def mark_dead(self) -> None:
        """Connect timeout passed: searches get no reply until it connects or is purged."""
        if self.conn_state == CONNECTING:
            self._set(DEAD)
            self._resolve(False)

    def _resolve(self, ok: bool) -> None:
        if not self._ready.done():
            self._ready.set_result(ok)
        if not ok:
            self._ready = asyncio.get_running_loop().create_future()

    # ------------------------------------------------------------ upstream callbacks
    def _on_connection(self, ch: Channel, up: bool) -> None:
        if up:
            self._connected(ch)
        else:
            self._disconnected()

    def _connected(self, ch: Channel) -> None:
        self._cancel_subs()
        self.state = None
        self.valid = False
        self._have_ctrl = False
        self._set(CONNECTED)
        if self._rtyp_done.done():  # read RTYP again: the follower connects after this
            self._rtyp_done = asyncio.get_running_loop().create_future()
        native = ch.native_type
        gw = self.gateway
        handler = self._time_handler(native, P.DBE_ALARM | (0 if gw.archive else P.DBE_LOG))
        self._subs.append(self.client.subscribe_raw(ch, handler, None, None, gw.mask))
        self._subs.append(
            self.client.subscribe(ch, self._on_ctrl, dbr.ctrl_type(native), 1, P.DBE_PROPERTY)
        )
        if gw.archive:
            log_handler = self._time_handler(native, -1)
            self._subs.append(self.client.subscribe_raw(ch, log_handler, None, None, P.DBE_LOG))
        if self._ever_connected:
            gw.reconnected(self)
        self._ever_connected = True

    def _on_rights(self, ch: Channel, access: int) -> None:
        """The IOC changed what the gateway may do (its own ACF): re-evaluate downstream.

        Rights of downstream channels are the gateway's ACF rights ANDed with
        ``ch.access`` (see ``Gateway.rights``); the server sends ACCESS_RIGHTS
        to each client whose rights changed, without reconnecting it.
        """
        if not access & RIGHT_READ:
            self.valid = False
            self._refresh_row()
        if self.downstream:
            self.gateway.upstream_rights_changed(self)

    def _on_rtyp_connection(self, ch: Channel, up: bool) -> None:
        if up:
            self._tasks.spawn(self._read_rtyp(ch))

    async def _read_rtyp(self, ch: Channel) -> None:
        """Read the record type once per connect (an IOC restart may change it)."""
        try:
            rd = await self.client.get(
                ch, dbr.STRING, timeout=self.gateway.settings.connect_timeout
            )
            value = rd.value
            self.class_name = str(value[0] if isinstance(value, list | tuple) else value)
        except Exception as exc:  # not an IOC (no RTYP field) or gone again: stays ""
            log.debug("%s: no record type: %s", self.name, exc)
        finally:
            if not self._rtyp_done.done():
                self._rtyp_done.set_result(None)

    async def _class_name(self, count: int) -> bytes:
        """DBR_CLASS_NAME asked for before RTYP arrived: wait for it (bounded)."""
        try:
            await asyncio.wait_for(
                asyncio.shield(self._rtyp_done), self.gateway.settings.connect_timeout
            )
        except TimeoutError:
            pass
        assert self.state is not None
        return encode(self.state, CLASS_NAME, count, self.class_name)

    def _disconnected(self) -> None:
        self._cancel_subs()
        self._set(DISCONNECTED)
        self._have_ctrl = False
        self._resolve(False)
        self.gateway.server.disconnect(self)
        self.state = None

    def _cancel_subs(self) -> None:
        for sub in self._subs:
            sub.cancel()
        self._subs.clear()
        if self._bid >= 0:
            state = self.state  # rebuilt from the row while it still exists
            events, posted = self._table.release(self._bid)
            self._events += events
            self._posted += posted
            self._bid = -1
            self._state = state

    def _time_handler(self, native: int, extra: int) -> UpdateHandler:
        """Raw DBR_TIME subscriber.  ``extra`` -1 marks the DBE_LOG-only (``-archive``) stream.

        Hot path (one call of ``update`` per upstream event): no decoding, the
        payload bytes become the new state; alarm and value are compared as raw
        bytes; ``update`` returns the mask to post (0: none).  The gateway's framer
        hands whole reads to ``fanout.make_fan_out`` and runs to the fan-out table
        (the handler's row there is ``batch_id``), which post them in bulk.
        """
        head = dbr.data_size(dbr.time_type(native), 0)
        elem = dbr.element_size(native)
        value_mask = P.DBE_VALUE | (extra & P.DBE_LOG) if extra != -1 else 0
        gw = self.gateway
        ch = self.channel

        def update(buf: bytes, off: int, count: int) -> int:
            payload = bytes(buf[off : off + head + count * elem])
            self._events += 1
            gw.client_events += 1
            old = self.state
            if not self.valid:  # rare: first value, or the IOC denies us read access
                if not ch.access & RIGHT_READ:
                    # an IOC without read access sends zeroed ECA_NORDACCESS events: keep
                    # the last real value; a first one only serves as a placeholder (its
                    # channels get no read right until a real value arrives)
                    if old is None and extra != -1:
                        self.state = PVState(native, count, payload, None)
                        self._maybe_ready()
                    return 0
                if extra == -1:
                    return 0
                self.valid = True
                self.state = PVState(native, count, payload, old.meta if old else None)
                self._refresh_row()
                if old is None:
                    self._maybe_ready()
                else:
                    self.gateway.upstream_rights_changed(self)  # read right back, real value
                return 0
            self.state = PVState(native, count, payload, old.meta)  # type: ignore[union-attr]
            if extra == -1:
                return P.DBE_LOG
            old_payload = old.time_payload  # type: ignore[union-attr]
            if old_payload[:4] != payload[:4]:
                mask = P.DBE_ALARM
                if old_payload[head:] != payload[head:]:
                    mask |= value_mask
            else:
                mask = value_mask
            gw.client_posts += 1
            return mask

        handler = UpdateHandler(self, gw, native, update, log_only=extra == -1)
        if extra != -1:  # the DBE_LOG-only stream of -archive stays on the per-message path
            handler.batch_id = self._bid = gw.fanout.register(handler, native, ch.count, value_mask)
            self._refresh_row()
        return handler

    def _on_ctrl(self, reading: dbr.Reading) -> None:
        if self._have_ctrl and not self.channel.access & RIGHT_READ:
            return  # zeroed metadata of an ECA_NORDACCESS event: keep the real one
        meta = meta_from_reading(reading)
        first = not self._have_ctrl
        self._have_ctrl = True
        state = self.state
        if state is not None:
            changed = state.meta != meta
            self.state = PVState(state.native, state.count, state.time_payload, meta)
            if changed and not first:
                self.post(P.DBE_PROPERTY)
        else:
            self._pending_meta = meta
        self._maybe_ready()

    def _maybe_ready(self) -> None:
        state = self.state
        pending = self._pending_meta
        if state is not None and pending is not None:
            self.state = PVState(state.native, state.count, state.time_payload, pending)
            self._pending_meta = None
        if self.ready:
            self._resolve(True)

    # ------------------------------------------------------------ served PV
    def read(self, dbr_type: int, count: int, channel: ServerChannel) -> Any:
        if dbr_type == CLASS_NAME:
            if self._rtyp_done.done() or self._rtyp.error or self.state is None:
                return super().read(dbr_type, count, channel)
            return self._class_name(count)
        if self.state is None or (self.gateway.cache and not self._stale):
            return super().read(dbr_type, count, channel)
        self._stale = False
        return self._read_uncached(dbr_type, count)

    async def _read_uncached(self, dbr_type: int, count: int) -> bytes:
        """``-no_cache``: ask the IOC, then encode what the client asked for."""
        ch = self.channel
        rd = await self.client.get(ch, dbr.time_type(ch.native_type))
        assert self.state is not None
        fresh = PVState.from_value(
            ch.native_type,
            rd.value,
            status=rd.status,
            severity=rd.severity,
            timestamp=rd.timestamp,
            meta=self.state.meta,
        )
        return encode(fresh, dbr_type, count, self.class_name)

    def write(self, dbr_type: int, count: int, payload: bytes, channel: ServerChannel) -> Any:
        """Forward a put (plain types, and DBR_PUT_ACKT/ACKS, which are puts too) to the IOC.

        The server checked the downstream channel's rights (ACF AND IOC) before
        calling this; ``-ro`` is checked here as well, so no path bypasses it.
        """
        if self.gateway.read_only:
            raise CAServerError(ECA_NOWTACCESS, "gateway is read-only")
        if dbr_type not in _PUT_TYPES:
            raise CAServerError(ECA_BADTYPE, f"cannot write DBR type {dbr_type}")
        if dbr_type <= 6:
            # a read arriving before the put is confirmed (a plain WRITE does not wait,
            # and `caput` reads back at once) must not get the cached old value: it goes
            # to the IOC, sent after the put on the same circuit, so the IOC answers in order
            self._stale = True
        return self._put(dbr_type, count, payload, channel)

    async def _put(self, dbr_type: int, count: int, payload: bytes, channel: ServerChannel) -> None:
        old = self.state  # for the caPutLog "old=" value
        try:
            await self.client.put_raw(self.channel, dbr_type, count, payload)
        except Exception as exc:
            raise CAServerError(ECA_PUTFAIL, f"put to {self.name} failed: {exc}") from exc
        # the IOC's monitor update may trail its put confirmation: the next read asks the
        # IOC, so `caput` shows the new value (and e.g. a changed .EGU) right away
        if dbr_type <= 6:
            self._stale = True
        self.gateway.put_done(self, channel, dbr_type, count, payload, old)

    def close(self) -> None:
        """Drop the upstream channel (purge after a timeout, or gateway shutdown)."""
        self._cancel_subs()
        self._resolve(False)
        self._tasks.cancel()
        self.client.clear_channel(self._rtyp)
        self.client.clear_channel(self.channel)
