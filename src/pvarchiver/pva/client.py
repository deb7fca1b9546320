"""A thin asyncio PVA client over the sans-I/O protocol (``connection.py``, ``search.py``).

What the asyncio layer adds: sockets, timers and bookkeeping. One UDP socket sends the
searches to ``EPICS_PVA_ADDR_LIST`` (and the broadcast address with AUTO) and receives the
replies; name servers (``EPICS_PVA_NAME_SERVERS``) get the same searches over TCP. One TCP
connection per server is shared by all its channels. A lost connection, a server that
destroys a channel, a malformed message (the connection is closed: its stream position
can no longer be trusted) or a server that never finishes validation put the channels back
to searching, and monitors are re-created when they reconnect. An echo is sent when a
connection has been quiet for a while, and a connection silent for ``4/3 * conn_tmo`` is
closed as dead.

Usage::

    client = PVAClient(PVAConfig.from_env(env))
    await client.start()
    ch = client.channel("PV:NAME", on_state=lambda ch, up: ...)
    value = await ch.get()                       # a data.Value
    sub = ch.monitor(lambda update: ...)         # connection.MonitorUpdate per update
    ...
    await client.close()
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any

from .codec import FieldDesc
from .connection import (
    ChannelCreated,
    ChannelDestroyed,
    ClientConnection,
    GetResult,
    MonitorFinished,
    MonitorReady,
    MonitorUpdate,
    TcpSearchReply,
    Validated,
)
from .data import Value
from .env import PVAConfig
from .protocol import ProtocolError, SearchResponse, build_search, parse_search_response
from .request import AA_MONITOR_OPTIONS, pv_request
from .search import SearchScheduler

__all__ = ["Channel", "PVAClient", "Subscription"]

log = logging.getLogger(__name__)

StateCallback = Callable[["Channel", bool], None]
UpdateCallback = Callable[[MonitorUpdate], None]
#: pause before searching again after a connection failed (no hot reconnect loop)
RETRY_DELAY = 1.0


class Subscription:
    """A monitor that lives as long as its channel: re-created after every reconnect."""

    def __init__(self, channel: Channel, callback: UpdateCallback, request: Any) -> None:
        self.channel = channel
        self.callback = callback
        self.request = request
        self.ioid = 0
        self.active = True
        self.error = ""  #: why the server refused the monitor, if it did
        self.updates = 0

    def close(self) -> None:
        self.active = False
        self.channel._drop_subscription(self)


class Channel:
    """One PV name. ``connected``, ``server`` (host, port) and ``error`` (a sentence for
    status pages, "" while nothing is wrong) are kept current."""

    def __init__(self, client: PVAClient, cid: int, name: str) -> None:
        self.client = client
        self.cid = cid
        self.name = name
        self.sid = -1
        self.connected = False
        self.server: tuple[str, int] | None = None
        self.error = ""
        self.connects = 0  #: times this channel came up
        self._conn: _Conn | None = None
        self._callbacks: list[StateCallback] = []
        self._subs: list[Subscription] = []
        self._gets: list[tuple[asyncio.Future[Value], Any]] = []

    def on_state(self, callback: StateCallback) -> None:
        self._callbacks.append(callback)

    async def get(self, timeout: float = 10.0, fields: tuple[str, ...] = ()) -> Value:
        """The current value (waits for the connection)."""
        fut: asyncio.Future[Value] = asyncio.get_running_loop().create_future()
        self._gets.append((fut, pv_request(fields)))
        if self.connected:
            self._issue()
        return await asyncio.wait_for(fut, timeout)

    def monitor(
        self, callback: UpdateCallback, request: tuple[FieldDesc, dict[str, Any]] | None = None
    ) -> Subscription:
        """Call ``callback`` with each update; default request: the AA's (``field()``,
        ``record._options.DBE=2``)."""
        sub = Subscription(self, callback, request or pv_request((), AA_MONITOR_OPTIONS))
        self._subs.append(sub)
        if self.connected:
            self._issue()
        return sub

    def close(self) -> None:
        """Stop everything for this name (destroys the channel on its server)."""
        self.client._forget(self)

    def _drop_subscription(self, sub: Subscription) -> None:
        if sub in self._subs:
            self._subs.remove(sub)
        conn = self._conn
        if conn is not None and sub.ioid:
            conn.ops.pop(sub.ioid, None)
            conn.proto.cancel(sub.ioid)
            conn.flush()

    def _issue(self) -> None:
        """Send what waits for a connected channel: pending GETs, monitors not running."""
        conn = self._conn
        if conn is None:
            return
        while self._gets:
            fut, req = self._gets.pop(0)
            ioid = self.client._next_ioid()
            conn.ops[ioid] = fut
            conn.proto.get(self.sid, ioid, req)
        for sub in self._subs:
            if sub.active and sub.ioid == 0:
                sub.ioid = self.client._next_ioid()
                conn.ops[sub.ioid] = sub
                conn.proto.monitor(self.sid, sub.ioid, sub.request)
        conn.flush()

    def _set_state(self, up: bool) -> None:
        if up == self.connected:
            return
        self.connected = up
        if up:
            self.connects += 1
            self.error = ""
        else:
            self.sid = -1
            for sub in self._subs:
                sub.ioid = 0
        for cb in list(self._callbacks):
            try:
                cb(self, up)
            except Exception:
                log.exception("PVA connection callback for %s failed", self.name)


class _Conn(asyncio.Protocol):
    """One TCP connection to a server (or name server)."""

    def __init__(self, client: PVAClient, addr: tuple[str, int], name_server: bool) -> None:
        self.client = client
        self.addr = addr
        self.name_server = name_server
        cfg = client.config
        self.proto = ClientConnection(cfg.user, cfg.host)
        self.transport: asyncio.Transport | None = None
        self.channels: dict[int, Channel] = {}  # cid -> channel attached here
        self.ops: dict[int, Any] = {}  # ioid -> Future (GET) or Subscription
        self.ready = False
        self.closed = False
        self.opened = time.monotonic()
        self.last_rx = self.opened
        self.echo_sent = 0.0
        self.reason = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def flush(self) -> None:
        out = self.proto.outgoing()
        if out and self.transport is not None and not self.closed:
            self.transport.write(out)

    def data_received(self, data: bytes) -> None:
        self.last_rx = time.monotonic()
        self.echo_sent = 0.0
        try:
            events = self.proto.receive(data)
        except ProtocolError as exc:
            self.abort(f"malformed message from {self.addr[0]}:{self.addr[1]}: {exc}")
            return
        for ev in events:
            self._handle(ev)
        self.flush()

    def _handle(self, ev: Any) -> None:
        cls = type(ev)
        if cls is MonitorUpdate:
            sub = self.ops.get(ev.ioid)
            if sub is not None:
                sub.updates += 1
                try:
                    sub.callback(ev)
                except Exception:
                    log.exception("PVA monitor callback for %s failed", sub.channel.name)
        elif cls is Validated:
            if not ev.status.ok:
                self.abort(f"server refused validation: {ev.status}")
                return
            self.ready = True
            for ch in self.channels.values():
                self.proto.create_channel(ch.cid, ch.name)
            if self.name_server:
                self.client._search_over(self, everything=True)
        elif cls is ChannelCreated:
            ch = self.channels.get(ev.cid)
            if ch is None:
                return
            if not ev.status.ok:
                ch.error = f"server refused the channel: {ev.status}"
                self.detach(ch, research=True)
                return
            ch.sid = ev.sid
            ch._set_state(True)
            ch._issue()
        elif cls is GetResult:
            fut = self.ops.pop(ev.ioid, None)
            if isinstance(fut, asyncio.Future) and not fut.done():
                if ev.value is None:
                    fut.set_exception(RuntimeError(f"GET failed: {ev.status}"))
                else:
                    fut.set_result(ev.value)
        elif cls is MonitorReady:
            sub = self.ops.get(ev.ioid)
            if sub is not None and not ev.status.ok:
                sub.error = f"monitor refused: {ev.status}"
                self.ops.pop(ev.ioid, None)
        elif cls is MonitorFinished:
            sub = self.ops.pop(ev.ioid, None)
            if sub is not None:
                sub.ioid = 0
        elif cls is ChannelDestroyed:
            ch = self.channels.get(ev.cid)
            if ch is not None:
                ch.error = "the server destroyed the channel"
                self.detach(ch, research=True)
        elif cls is TcpSearchReply:
            self.client._on_search_reply(ev.response, self.addr[0])

    def detach(self, ch: Channel, research: bool) -> None:
        """Take a channel off this connection (and search it again)."""
        self.channels.pop(ch.cid, None)
        for ioid in [i for i, op in self.ops.items() if getattr(op, "channel", None) is ch]:
            self.ops.pop(ioid, None)
        ch._conn = None
        ch.server = None
        ch._set_state(False)
        if research:
            self.client._research(ch, RETRY_DELAY)

    def abort(self, reason: str) -> None:
        """Close the connection (channels go back to searching)."""
        if not self.reason:
            self.reason = reason
            log.warning("PVA connection to %s:%d closed: %s", *self.addr, reason)
        if self.transport is not None:
            self.transport.abort()
        else:
            self.connection_lost(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if self.closed:
            return
        self.closed = True
        self.client._conn_lost(self, self.reason or (str(exc) if exc else "closed by server"))


class _SearchSocket(asyncio.DatagramProtocol):
    def __init__(self, client: PVAClient) -> None:
        self.client = client

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        pos = 0
        while len(data) - pos >= 8:  # a datagram may hold several messages
            flags, cmd = data[pos + 2], data[pos + 3]
            order = ">" if flags & 0x80 else "<"
            size = int.from_bytes(data[pos + 4 : pos + 8], "big" if order == ">" else "little")
            body = data[pos + 8 : pos + 8 + size]
            pos += 8 + size
            if data[0] != 0xCA or len(body) < size:
                return
            if cmd == 4:
                try:
                    self.client._on_search_reply(parse_search_response(body, order), addr[0])
                except ValueError as exc:
                    log.debug("bad PVA search reply from %s: %s", addr, exc)


class PVAClient:
    """Channels by name over PV Access (see the module docstring)."""

    def __init__(self, config: PVAConfig | None = None) -> None:
        self.config = config or PVAConfig.from_env()
        self.scheduler = SearchScheduler(max_period=self.config.max_search_period)
        self.channels: dict[int, Channel] = {}
        self._by_name: dict[str, Channel] = {}
        self._conns: dict[tuple[str, int], _Conn] = {}
        self._cids = itertools.count(1)
        self._ioids = itertools.count(1)
        self._udp: asyncio.DatagramTransport | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._wake = asyncio.Event()
        self.connections_opened = 0  #: TCP connections attempted (tests and status pages)

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_datagram_endpoint(
            lambda: _SearchSocket(self), local_addr=("0.0.0.0", 0), allow_broadcast=True
        )
        self._udp = transport  # type: ignore[assignment]
        self._tasks = [
            asyncio.create_task(self._search_loop()),
            asyncio.create_task(self._keepalive_loop()),
        ]
        for addr in self.config.name_servers:
            self._connection(addr, name_server=True)

    async def close(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        for conn in list(self._conns.values()):
            conn.closed = True
            if conn.transport is not None:
                conn.transport.abort()
        self._conns.clear()
        if self._udp is not None:
            self._udp.close()

    def channel(self, name: str, on_state: StateCallback | None = None) -> Channel:
        """The channel for ``name`` (one per name), searching at once if new."""
        ch = self._by_name.get(name)
        if ch is None:
            ch = Channel(self, next(self._cids), name)
            self.channels[ch.cid] = ch
            self._by_name[name] = ch
            self._research(ch, 0.0)
        if on_state is not None:
            ch.on_state(on_state)
        return ch

    def _next_ioid(self) -> int:
        return next(self._ioids)

    def _forget(self, ch: Channel) -> None:
        self.scheduler.remove(ch.cid)
        self.channels.pop(ch.cid, None)
        self._by_name.pop(ch.name, None)
        conn = ch._conn
        if conn is not None:
            if ch.sid >= 0:
                conn.proto.destroy_channel(ch.sid, ch.cid)
                conn.flush()
            conn.channels.pop(ch.cid, None)
        ch._conn = None
        ch._subs.clear()

    def _research(self, ch: Channel, delay: float) -> None:
        if ch.cid in self.channels:
            self.scheduler.add(ch.cid, ch.name, time.monotonic(), delay)
            self._wake.set()

    # ------------------------------------------------------------ search

    async def _search_loop(self) -> None:
        while True:
            now = time.monotonic()
            self._search_over(None)
            wake = self.scheduler.next_wakeup()
            timeout = 1.0 if wake is None else min(1.0, max(0.0, wake - now))
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass

    def _search_over(self, only: _Conn | None, everything: bool = False) -> None:
        """Send due searches to every target (or, for a newly validated name server, every
        pending name to it alone)."""
        if only is not None and everything:
            pending = [(cid, self.channels[cid].name) for cid in list(self.channels)]
            names = [(c, n) for c, n in pending if c in self.scheduler]
            if names:
                only.proto.search(build_search(0, names, 0, order=only.proto.order))
                only.flush()
            return
        udp = self._udp
        port = udp.get_extra_info("sockname")[1] if udp is not None else 0
        for msg in self.scheduler.poll(time.monotonic(), port):
            if udp is not None:
                for target in self.config.search_targets():
                    try:
                        udp.sendto(msg, target)
                    except OSError as exc:
                        log.debug("PVA search to %s failed: %s", target, exc)
            for addr in self.config.name_servers:
                conn = self._conns.get(addr)
                if conn is not None and conn.ready and not conn.closed:
                    conn.proto.search(msg)
                    conn.flush()

    def _on_search_reply(self, resp: SearchResponse, src_host: str) -> None:
        if not resp.found or resp.protocol != "tcp":
            return
        addr = (resp.addr or src_host, resp.port)
        for cid in resp.cids:
            ch = self.channels.get(cid)
            if ch is None or cid not in self.scheduler or ch._conn is not None:
                continue
            self.scheduler.remove(cid)
            conn = self._connection(addr, name_server=False)
            ch._conn = conn
            ch.server = addr
            conn.channels[cid] = ch
            if conn.ready:
                conn.proto.create_channel(cid, ch.name)
                conn.flush()

    # ------------------------------------------------------------ connections

    def _connection(self, addr: tuple[str, int], name_server: bool) -> _Conn:
        conn = self._conns.get(addr)
        if conn is not None and not conn.closed:
            conn.name_server = conn.name_server or name_server
            return conn
        conn = _Conn(self, addr, name_server)
        self._conns[addr] = conn
        self.connections_opened += 1
        loop = asyncio.get_running_loop()

        async def connect() -> None:
            try:
                await loop.create_connection(lambda: conn, addr[0], addr[1])
            except OSError as exc:
                conn.reason = f"cannot connect to {addr[0]}:{addr[1]}: {exc}"
                conn.connection_lost(None)

        self._tasks.append(asyncio.create_task(connect()))
        self._tasks = [t for t in self._tasks if not t.done()]
        return conn

    def _conn_lost(self, conn: _Conn, reason: str) -> None:
        if self._conns.get(conn.addr) is conn:
            del self._conns[conn.addr]
        for op in conn.ops.values():
            if isinstance(op, asyncio.Future) and not op.done():
                op.set_exception(ConnectionError(reason))
        conn.ops.clear()
        for ch in list(conn.channels.values()):
            ch.error = reason
            conn.detach(ch, research=True)
        if conn.name_server and conn.addr in self.config.name_servers and self._tasks:
            loop = asyncio.get_running_loop()
            loop.call_later(RETRY_DELAY, self._reopen_name_server, conn.addr)

    def _reopen_name_server(self, addr: tuple[str, int]) -> None:
        if self._tasks and addr not in self._conns:
            self._connection(addr, name_server=True)

    async def _keepalive_loop(self) -> None:
        cfg = self.config
        echo_after = min(15.0, max(0.5, cfg.conn_tmo / 2))
        dead_after = cfg.conn_tmo * 4 / 3
        while True:
            await asyncio.sleep(min(1.0, echo_after / 2))
            now = time.monotonic()
            for conn in list(self._conns.values()):
                if conn.closed or conn.transport is None:
                    continue
                if not conn.ready and now - conn.opened > cfg.validation_timeout:
                    conn.abort(f"no connection validation within {cfg.validation_timeout:g} s")
                elif now - conn.last_rx > dead_after:
                    conn.abort(f"no reply for {dead_after:g} s")
                elif conn.ready and now - conn.last_rx > echo_after and not conn.echo_sent:
                    conn.echo_sent = now
                    conn.proto.echo()
                    conn.flush()
