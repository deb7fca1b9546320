"""asyncio Channel Access client: search, circuits, monitors, beacons.

A thin I/O layer over pure modules: :mod:`~pvarchiver.ca.protocol` and
:mod:`~pvarchiver.ca.dbr` (bytes), :mod:`~pvarchiver.ca.lifecycle` (channel states, with
the :mod:`~pvarchiver.ca.search` scheduler), :mod:`~pvarchiver.ca.keepalive` (ECHO and dead
circuits), :mod:`~pvarchiver.ca.flow` (EVENTS_OFF/ON), :mod:`~pvarchiver.ca.beacons`
(anomalies) and :mod:`~pvarchiver.ca.circuit_state` (a circuit's up/closed state and its
pending GETs/PUTs). Those take the time as an argument and return decisions; this module moves
the bytes, runs the timers and calls the user's callbacks.
Why not caproto or libca: caproto's clients deliver 3-5 k events/s and the
libca-based ones ~50 k on one core, while an archiver engine needs 200 k+.
Here a monitor update costs one header unpack, one dict lookup, one payload
unpack and the user's callback, all inside ``data_received``.

Behaviour mirrors libca where it matters to an archiver:

* names are searched over UDP, many per datagram, with exponential backoff
  capped at ``EPICS_CA_MAX_SEARCH_PERIOD``;
* one TCP virtual circuit per server; silence for ``EPICS_CA_CONN_TMO``
  triggers an ECHO, and no answer within the echo timeout drops the circuit;
* channels that lose their circuit go back to searching and their
  subscriptions are re-established on reconnect;
* beacons (via our own repeater socket, or by registering with a running
  caRepeater) from a new or restarted server reset the backoff so unresolved
  channels reconnect at once instead of after minutes.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import getpass
import logging
import os
import socket
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from . import dbr
from . import protocol as P
from .beacons import BeaconMonitor
from .circuit_state import CircuitPhase, CircuitRequestError, CircuitState, Completion, RequestKind
from .env import addr_list, yes
from .flow import FlowAction, FlowControl
from .keepalive import ECHO_TIMEOUT, Keepalive, KeepaliveAction
from .lifecycle import Found, Lifecycle
from .names import validate_pv_name
from .search import SearchStats
from .sockets import udp_ignore_connreset

__all__ = [
    "CAClient",
    "CAConfig",
    "CAError",
    "Channel",
    "DisconnectedError",
    "RawSubscriber",
    "Subscription",
]

log = logging.getLogger(__name__)

try:  # POSIX: how many bytes a socket holds (Windows: None, the learnt read size decides)
    import fcntl
    import termios

    _FIONREAD: int | None = termios.FIONREAD
except ImportError:
    _FIONREAD = None


class CAError(Exception):
    """A CA request failed (server ERROR reply, bad status, or timeout)."""


class DisconnectedError(CAError):
    """The channel is not connected (or lost its circuit while a request was pending)."""


@dataclass
class CAConfig:
    """Client settings, normally read from the ``EPICS_CA_*`` environment variables."""

    addr_list: list[tuple[str, int]] = field(default_factory=list)
    auto_addr_list: bool = True
    server_port: int = 5064
    repeater_port: int = 5065
    max_array_bytes: int = 16384
    conn_tmo: float = 30.0
    max_search_period: float = 300.0
    echo_timeout: float = ECHO_TIMEOUT
    name_servers: list[tuple[str, int]] = field(default_factory=list)
    user: str = ""
    host: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CAConfig:
        """Build a config from ``env`` (default ``os.environ``) with CONFIG_ENV defaults.

        Unlike libca, MAX_SEARCH_PERIOD is not raised to a 60 s minimum, so
        tests can use short periods; values below 1 s are raised to 1 s.
        """
        env = os.environ if env is None else env
        port = int(env.get("EPICS_CA_SERVER_PORT", "5064") or 5064)
        try:
            user = getpass.getuser()
        except Exception:
            user = "unknown"
        return cls(
            addr_list=addr_list(env.get("EPICS_CA_ADDR_LIST", ""), port),
            auto_addr_list=yes(env.get("EPICS_CA_AUTO_ADDR_LIST", "YES")),
            server_port=port,
            repeater_port=int(env.get("EPICS_CA_REPEATER_PORT", "5065") or 5065),
            max_array_bytes=int(env.get("EPICS_CA_MAX_ARRAY_BYTES", "16384") or 16384),
            conn_tmo=float(env.get("EPICS_CA_CONN_TMO", "30") or 30),
            max_search_period=max(1.0, float(env.get("EPICS_CA_MAX_SEARCH_PERIOD", "300"))),
            name_servers=addr_list(env.get("EPICS_CA_NAME_SERVERS", ""), port),
            user=user,
            host=socket.gethostname(),
        )

    def search_targets(self) -> list[tuple[str, int]]:
        """Where search datagrams go: the explicit list plus, with AUTO, the limited broadcast."""
        out = list(self.addr_list)
        if self.auto_addr_list and ("255.255.255.255", self.server_port) not in out:
            out.append(("255.255.255.255", self.server_port))
        return out


ConnectionCallback = Callable[["Channel", bool], None]
AccessRightsCallback = Callable[["Channel", int], None]


class Channel:
    """One named PV.  Attributes are valid while ``connected`` is True.

    ``native_type`` is the DBR native type (0..6), ``count`` the element count
    the server reported, ``access`` the rights bits (1 read, 2 write), kept current
    from the server's ACCESS_RIGHTS messages.  ``error`` is "" while nothing is wrong,
    else a sentence for status pages: an invalid name (never searched), or an array too
    large for ``EPICS_CA_MAX_ARRAY_BYTES`` (requests are clipped).
    """

    __slots__ = (
        "_callbacks",
        "_circuit",
        "_follow",
        "_followers",
        "_rights_callbacks",
        "_subs",
        "access",
        "cid",
        "connected",
        "count",
        "created_at",
        "error",
        "name",
        "native_type",
        "server",
        "sid",
    )

    def __init__(self, name: str, cid: int) -> None:
        self.name = name
        self.cid = cid
        self.connected = False
        self.native_type = -1
        self.count = 0
        self.access = 0
        self.sid = -1
        self.server: tuple[str, int] | None = None
        self._circuit: _Circuit | None = None
        # the three lists below stay the shared empty tuple until something is added: an
        # archiver holds ~9 channels per PV (8 archive fields), most with no callback of
        # their own, and three empty lists each were ~200 bytes per channel
        self._callbacks: list[ConnectionCallback] | tuple[()] = ()
        self._rights_callbacks: list[AccessRightsCallback] | tuple[()] = ()
        self._subs: dict[int, Subscription] = {}
        self._follow: Channel | None = None
        self._followers: list[Channel] | tuple[()] = ()
        self.error = ""
        self.created_at = time.time()

    def _add_callback(self, cb: ConnectionCallback) -> None:
        if not isinstance(self._callbacks, list):
            self._callbacks = []
        self._callbacks.append(cb)

    def _add_rights_callback(self, cb: AccessRightsCallback) -> None:
        if not isinstance(self._rights_callbacks, list):
            self._rights_callbacks = []
        self._rights_callbacks.append(cb)

    def _add_follower(self, ch: Channel) -> None:
        if not isinstance(self._followers, list):
            self._followers = []
        self._followers.append(ch)

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """The channel's monitors that were not cancelled (they survive reconnects)."""
        return tuple(self._subs.values())

    @property
    def read_access(self) -> bool:
        """The server lets us read (and monitor) this channel."""
        return bool(self.access & 1)

    @property
    def write_access(self) -> bool:
        """The server lets us write this channel."""
        return bool(self.access & 2)

    @property
    def is_array(self) -> bool:
        """True for waveforms; decoders then return arrays even for one element."""
        return self.count != 1

    def __repr__(self) -> str:
        state = "connected" if self.connected else "disconnected"
        return f"<Channel {self.name!r} {state}>"


class RawSubscriber(Protocol):
    """A monitor consumer that takes each update as it arrived (:meth:`CAClient.subscribe_raw`).

    Called as ``subscriber(buf, offset, count)``: the DBR payload of ``count``
    elements starts at ``buf[offset]`` (the receive buffer: copy what you keep).
    No decoding and no exception guard: it runs inside the circuit's read, where
    an exception closes the circuit.  A gateway forwards these bytes unchanged.
    """

    def __call__(self, buf: bytes, offset: int, count: int, /) -> None: ...


class Subscription:
    """A monitor; lives across reconnects until :meth:`cancel`."""

    __slots__ = ("_client", "callback", "channel", "count", "dbr_type", "mask", "raw", "subid")

    def __init__(
        self,
        client: CAClient,
        channel: Channel,
        subid: int,
        dbr_type: int | None,
        count: int | None,
        mask: int,
        callback: Callable[..., None],
        raw: bool = False,
    ) -> None:
        self._client = client
        self.channel = channel
        self.subid = subid
        self.dbr_type = dbr_type
        self.count = count
        self.mask = mask
        self.callback = callback
        self.raw = raw  # callback is a RawSubscriber

    def cancel(self) -> None:
        """Stop the monitor (EVENT_CANCEL if connected); idempotent."""
        self._client._cancel(self)


class _Circuit(asyncio.Protocol):
    """One TCP virtual circuit to a CA server; owns the framer and pending requests."""

    def __init__(
        self, client: CAClient, server: tuple[str, int], name_server: bool = False
    ) -> None:
        self.client = client
        self.server = server
        self.name_server = name_server
        self.lost = asyncio.Event()
        self.transport: asyncio.Transport | None = None
        self.framer = client.new_framer()
        self.framer.other = self._on_message
        self.channels: dict[int, Channel] = {}  # cid -> channel
        #: up/closed and the pending GETs/PUTs (sans-I/O, see circuit_state.py)
        self.state: CircuitState[asyncio.Future[Any]] = CircuitState(server)
        self.active_subs: dict[int, tuple[int, int, int]] = {}  # subid -> (type, count, sid)
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self.last_rx = time.monotonic()
        self.keepalive = Keepalive(client.config.conn_tmo, client.config.echo_timeout)
        self.flow = FlowControl()

    @property
    def closed(self) -> bool:
        return self.state.phase is CircuitPhase.CLOSED

    # -- output: batch writes so connecting 1000 channels is one send, not 1000
    def send(self, data: bytes) -> None:
        self._out.append(data)
        if not self._flush_scheduled and self.transport is not None:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if self._out and self.transport is not None and not self.closed:
            self.transport.write(b"".join(self._out))
        self._out.clear()

    # -- asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        cfg = self.client.config
        self._out.insert(0, self.state.opened(cfg.user, cfg.host))
        self.send(b"")

    def data_received(self, data: bytes) -> None:
        self.last_rx = now = time.monotonic()
        flow = self.flow
        n = len(data)
        if n >= flow.full_size:  # may be a backlog: ask the kernel (a syscall) only then
            self._flow_action(flow.full_read(n, self._bytes_waiting(), now))
        elif flow.armed:  # a short read after full ones: nothing to do in a steady flow
            self._flow_action(flow.short_read())
        self.framer.feed(data)

    def _flow_action(self, action: FlowAction) -> None:
        """Send what flow control decided (see :mod:`pvarchiver.ca.flow`)."""
        if action is FlowAction.NOTHING or self.closed:
            return
        if action is FlowAction.EVENTS_OFF:
            self.client.flow_control_offs += 1
            log.info("CA circuit %s:%d: behind, EVENTS_OFF", *self.server)
            self.send(P.events_off())
            self._flush()
            asyncio.get_running_loop().call_later(self.flow.idle_delay, self._flow_idle)
        elif action is FlowAction.EVENTS_ON:
            log.info("CA circuit %s:%d: caught up, EVENTS_ON", *self.server)
            self.send(P.events_on())
            self._flush()

    def _flow_idle(self) -> None:
        """Timer after EVENTS_OFF: silence on the socket also means caught up."""
        if self.closed:
            return
        action = self.flow.idle(time.monotonic(), self.last_rx)
        if action is FlowAction.RECHECK:
            asyncio.get_running_loop().call_later(self.flow.idle_delay, self._flow_idle)
        else:
            self._flow_action(action)

    def _bytes_waiting(self) -> int | None:
        """Bytes the kernel holds for us after this read (None: cannot tell, e.g. Windows).

        Why: the learnt read size alone cannot tell "the kernel had more" from "a
        burst of exactly the usual size arrived whole"; a gateway or archiver whose
        IOC scans a thousand records at once gets such reads every period, and
        then sent EVENTS_OFF (and lost coalesced updates) while keeping up easily.
        """
        if _FIONREAD is None or self.transport is None:
            return None
        sock = self.transport.get_extra_info("socket")
        if sock is None:
            return None
        try:
            raw = fcntl.ioctl(sock.fileno(), _FIONREAD, b"\0\0\0\0")  # type: ignore[union-attr]
        except OSError:
            return None
        return int.from_bytes(raw, sys.byteorder)

    def connection_lost(self, exc: Exception | None) -> None:
        for done in self.state.lost():
            _complete(done)
        self.transport = None
        self.lost.set()
        self.client._circuit_lost(self)

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()

    # -- channels
    def attach(self, ch: Channel) -> None:
        ch._circuit = self
        ch.server = self.server
        self.channels[ch.cid] = ch
        self.send(P.create_chan(ch.name, ch.cid))

    def _on_message(self, cmd: int, dt: int, cnt: int, p1: int, p2: int, body: bytes) -> None:
        client = self.client
        if cmd == P.CREATE_CHAN:
            ch = self.channels.get(p1)
            if ch is not None:
                client._channel_connected(ch, dt, cnt, p2)
        elif cmd == P.ACCESS_RIGHTS:
            ch = self.channels.get(p1)
            if ch is not None:
                client._access_rights(ch, p2)
        elif cmd in (P.READ_NOTIFY, P.WRITE_NOTIFY):
            done = self.state.reply(cmd, dt, cnt, p1, p2, body)
            if done is not None:
                _complete(done)
        elif cmd == P.EVENT_ADD:
            pass  # zero-length EVENT_ADD confirms an EVENT_CANCEL
        elif cmd in (P.CREATE_CH_FAIL, P.SERVER_DISCONN):
            ch = self.channels.pop(p1, None)
            if ch is not None:
                if cmd == P.CREATE_CH_FAIL and ch._follow is not None:
                    ch.error = "no such channel on {}:{}".format(*self.server)
                client._channel_lost(ch)
        elif cmd == P.ERROR:
            req, text = P.parse_error_payload(body)
            log.warning("CA server %s:%d error %d: %s", *self.server, p2, text)
            if req is not None and req.cmd in (P.READ_NOTIFY, P.WRITE_NOTIFY):
                done = self.state.refused(req.p2, text)
                if done is not None:
                    _complete(done)
            elif req is not None and req.cmd == P.CREATE_CHAN:
                ch = self.channels.pop(req.p1, None)
                if ch is not None:
                    if ch._follow is not None:
                        ch.error = text or "channel refused by {}:{}".format(*self.server)
                    client._channel_lost(ch)
        elif cmd == P.SEARCH:  # reply from a name server (EPICS_CA_NAME_SERVERS)
            host = self.server[0] if p1 in (0, 0xFFFFFFFF) else P.int_to_ip(p1)
            client._resolved(p2, (host, dt))
        elif cmd == P.CLEAR_CHANNEL:
            pass  # confirmation of our own request


class _Datagram(asyncio.DatagramProtocol):
    def __init__(self, on_datagram: Callable[[bytes, tuple[str, int]], None]) -> None:
        self.on_datagram = on_datagram

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.on_datagram(data, addr)
        except Exception:
            log.exception("bad CA datagram from %s", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("CA UDP error: %s", exc)


class CAClient:
    """A Channel Access client context; use as ``async with CAClient() as ca:``.

    All methods must be called from the event loop thread.  Callbacks run in
    that thread too, synchronously: keep them short.
    """

    def __init__(
        self, config: CAConfig | None = None, framer: Callable[[], P.Framer] = P.Framer
    ) -> None:
        self.config = config or CAConfig.from_env()
        # makes each circuit's framer: a subclass may deliver monitor updates its own way
        # (the gateway's BulkFramer hands them over a whole read at a time)
        self.new_framer = framer
        self._channels: dict[int, Channel] = {}
        # channel states and the search scheduler of the channels being searched
        self._life = Lifecycle(self.config.max_search_period)
        self._search = self._life.search
        self._circuits: dict[tuple[str, int], _Circuit] = {}
        self._name_servers: list[_Circuit] = []
        self._next_cid = 1
        self._next_subid = 1
        self._next_ioid = 1
        self._search_transport: asyncio.DatagramTransport | None = None
        self._beacon_transport: asyncio.DatagramTransport | None = None
        self._is_repeater = False
        self._repeater_clients: set[tuple[str, int]] = set()
        self._repeater_confirmed = False
        self._beacons = BeaconMonitor()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._sequence = 0
        self._closed = False
        #: times any circuit sent EVENTS_OFF because this client fell behind
        self.flow_control_offs = 0

    async def __aenter__(self) -> CAClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def start(self) -> None:
        """Open the search socket and the beacon listener, start the background tasks."""
        loop = asyncio.get_running_loop()
        search = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if self.config.auto_addr_list:
            search.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        udp_ignore_connreset(search)
        search.bind(("0.0.0.0", 0))
        search.setblocking(False)
        self._search_transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagram(self._on_search_datagram), sock=search
        )
        await self._start_beacon_listener(loop)
        self._tasks.append(loop.create_task(self._search_loop()))
        self._tasks.append(loop.create_task(self._keepalive_loop()))
        for addr in self.config.name_servers:
            self._tasks.append(loop.create_task(self._name_server_loop(addr)))

    async def _start_beacon_listener(self, loop: asyncio.AbstractEventLoop) -> None:
        """Bind the repeater port if free (and act as a repeater), else register with it."""
        port = self.config.repeater_port
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.bind(("0.0.0.0", port))
            self._is_repeater = True
        except OSError as exc:
            if exc.errno != errno.EADDRINUSE:
                log.warning("cannot bind CA repeater port %d: %s", port, exc)
            sock.bind(("0.0.0.0", 0))
        udp_ignore_connreset(sock)
        sock.setblocking(False)
        self._beacon_transport, _ = await loop.create_datagram_endpoint(
            lambda: _Datagram(self._on_beacon_datagram), sock=sock
        )
        if not self._is_repeater:
            self._tasks.append(loop.create_task(self._register_loop()))

    async def _register_loop(self) -> None:
        """Keep registering with the external repeater; it may start after us or restart."""
        msg = P.repeater_register("127.0.0.1")
        while not self._closed:
            if self._beacon_transport is not None:
                self._beacon_transport.sendto(msg, ("127.0.0.1", self.config.repeater_port))
            await asyncio.sleep(1.0 if not self._repeater_confirmed else 30.0)

    async def close(self) -> None:
        """Clear every channel, close circuits and sockets, stop background tasks."""
        if self._closed:
            return
        self._closed = True
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for circuit in self._name_servers:
            circuit.abort()
        for circuit in list(self._circuits.values()):
            for ch in circuit.channels.values():
                if ch.connected:
                    circuit.send(P.clear_channel(ch.sid, ch.cid))
            circuit._flush()
            for done in circuit.state.close():
                _complete(done)
            if circuit.transport is not None:
                circuit.transport.close()
        self._circuits.clear()
        for tr in (self._search_transport, self._beacon_transport):
            if tr is not None:
                tr.close()
        for ch in self._channels.values():
            ch.connected = False
        self._channels.clear()
        self._life.close()

    # ------------------------------------------------------------ public API

    def create_channel(
        self,
        name: str,
        on_connection: ConnectionCallback | None = None,
        on_access_rights: AccessRightsCallback | None = None,
        follow: Channel | None = None,
    ) -> Channel:
        """Create a channel and start searching; returns immediately.

        ``on_connection(channel, connected)`` runs on every connect and
        disconnect (with ``channel.native_type``/``count``/``access`` set).
        ``on_access_rights(channel, access)`` runs for every ACCESS_RIGHTS message
        (at connect, and whenever the server's access security changes them).
        A name that is not a valid PV name (:func:`~pvarchiver.ca.names.validate_pv_name`)
        gives a channel with ``error`` set that is never searched, so one bad name
        cannot disturb the others and its status says why.

        ``follow``: a channel on the same server (``REC.HIHI`` follows ``REC``). It is
        never searched: it is created on ``follow``'s circuit each time that one connects.
        Why: an archiver watches ~8 fields per PV; searching them would multiply the UDP
        traffic by 9, and a field the record type lacks (``calc.DRVH``) would be searched
        forever, while CREATE_CHAN on the known circuit answers at once (CREATE_CH_FAIL
        sets ``error``; it is tried again at the next connect).
        """
        if self._closed:
            raise CAError("client is closed")
        cid = self._next_cid
        self._next_cid += 1
        ch = Channel(name, cid)
        if on_connection is not None:
            ch._add_callback(on_connection)
        if on_access_rights is not None:
            ch._add_rights_callback(on_access_rights)
        self._channels[cid] = ch
        problem = validate_pv_name(name)
        if problem is not None:
            self._life.add(cid, name, 0.0, valid=False)
            ch.error = f"invalid PV name: {problem}"
            if follow is None or not follow.error:  # say it once, not once per field
                log.warning("%r: %s", name, ch.error)
            return ch
        if follow is not None:
            ch._follow = follow
            follow._add_follower(ch)
            self._life.add(cid, name, 0.0, follows=True)
            circuit = follow._circuit
            if follow.connected and circuit is not None and not circuit.closed:
                if self._life.attach(cid):
                    circuit.attach(ch)
            return ch
        self._life.add(cid, name, time.monotonic())
        self._wake.set()
        return ch

    def clear_channel(self, ch: Channel) -> None:
        """Drop a channel and its subscriptions (CLEAR_CHANNEL to the server)."""
        self._channels.pop(ch.cid, None)
        self._life.clear(ch.cid)
        if ch._follow is not None:
            followers = ch._follow._followers
            if isinstance(followers, list):
                with contextlib.suppress(ValueError):
                    followers.remove(ch)
        circuit = ch._circuit
        if circuit is not None:
            circuit.channels.pop(ch.cid, None)
            for subid in ch._subs:
                circuit.framer.remove_handler(subid)
                circuit.active_subs.pop(subid, None)
            if ch.connected and not circuit.closed:
                circuit.send(P.clear_channel(ch.sid, ch.cid))
        ch._subs.clear()
        ch._circuit = None
        ch.connected = False

    async def wait_connected(self, ch: Channel, timeout: float | None = None) -> None:
        """Wait until ``ch`` is connected; raises TimeoutError."""
        if ch.connected:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def cb(_ch: Channel, up: bool) -> None:
            if up and not fut.done():
                fut.set_result(None)

        ch._add_callback(cb)
        try:
            await asyncio.wait_for(fut, timeout)
        finally:
            ch._callbacks.remove(cb)  # type: ignore[union-attr]

    async def get(
        self,
        ch: Channel,
        dbr_type: int | None = None,
        count: int | None = None,
        timeout: float = 5.0,
    ) -> dbr.Reading:
        """READ_NOTIFY; ``dbr_type`` defaults to DBR_TIME of the native type.

        Use ``dbr.ctrl_type(ch.native_type)`` for the metadata (units,
        precision, limits, enum strings) an archiver keeps per PV.
        """
        circuit = self._require(ch)
        if dbr_type is None:
            dbr_type = dbr.time_type(ch.native_type)
        n = self._clip_count(ch, dbr_type, count)
        ioid = self._new_ioid()
        request = P.read_notify(dbr_type, n, ch.sid, ioid)
        kind = RequestKind.GET
        return await self._request(circuit, ioid, kind, dbr_type, ch.is_array, request, timeout)

    async def put(self, ch: Channel, value: Any, timeout: float = 5.0) -> None:
        """WRITE_NOTIFY of ``value`` in the channel's native type; waits for completion."""
        circuit = self._require(ch)
        payload, n = dbr.encode(ch.native_type, value)
        ioid = self._new_ioid()
        request = P.write_notify(ch.native_type, n, ch.sid, ioid, payload)
        await self._request(circuit, ioid, RequestKind.PUT, ch.native_type, False, request, timeout)

    async def put_raw(
        self, ch: Channel, dbr_type: int, count: int, payload: bytes, timeout: float = 5.0
    ) -> None:
        """WRITE_NOTIFY of an already-encoded payload of any plain DBR type (gateway puts).

        The server converts, so a client's DBR_STRING put to a DOUBLE PV
        reaches the IOC as the string, exactly as if sent directly.
        """
        circuit = self._require(ch)
        ioid = self._new_ioid()
        request = P.write_notify(dbr_type, count, ch.sid, ioid, payload)
        await self._request(circuit, ioid, RequestKind.PUT, dbr_type, False, request, timeout)

    def _new_ioid(self) -> int:
        ioid = self._next_ioid
        self._next_ioid += 1
        return ioid

    async def _request(
        self,
        circuit: _Circuit,
        ioid: int,
        kind: RequestKind,
        dbr_type: int,
        as_array: bool,
        request: bytes,
        timeout: float,
    ) -> Any:
        """Send a GET/PUT and wait for the answer the circuit's state hands back."""
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        try:
            circuit.state.request(ioid, kind, fut, dbr_type, as_array)
        except CircuitRequestError as e:
            raise DisconnectedError(str(e)) from None
        circuit.send(request)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            circuit.state.give_up(ioid)
            raise

    def subscribe(
        self,
        ch: Channel,
        callback: Callable[..., None],
        dbr_type: int | None = None,
        count: int | None = None,
        mask: int = P.DBE_VALUE | P.DBE_ALARM,
    ) -> Subscription:
        """Monitor ``ch``; works before connection and survives reconnects.

        With ``dbr_type`` None (DBR_TIME of the native type) or any DBR_TIME_x,
        ``callback(secs, nanos, severity, status, value)`` gets POSIX seconds;
        scalars are Python numbers/str, arrays numpy (CHAR: bytes, STRING:
        list[str]).  Other DBR types call ``callback(reading: dbr.Reading)``.
        ``count`` None means the channel's native count at each connect.
        """
        return self._subscribe(ch, callback, dbr_type, count, mask, False)

    def subscribe_raw(
        self,
        ch: Channel,
        subscriber: RawSubscriber,
        dbr_type: int | None = None,
        count: int | None = None,
        mask: int = P.DBE_VALUE | P.DBE_ALARM,
    ) -> Subscription:
        """:meth:`subscribe` without decoding: ``subscriber(buf, offset, count)`` gets
        each update's payload in the receive buffer (see :class:`RawSubscriber`).

        The subscriber is what the circuit's framer is given for the subscription, so
        a framer made by the client's ``framer`` factory may recognise its own kind of
        subscriber and deliver its updates otherwise (the gateway's bulk fan-out).
        """
        return self._subscribe(ch, subscriber, dbr_type, count, mask, True)

    def _subscribe(
        self,
        ch: Channel,
        callback: Callable[..., None],
        dbr_type: int | None,
        count: int | None,
        mask: int,
        raw: bool,
    ) -> Subscription:
        if dbr_type is not None and not 0 <= dbr_type <= 34:
            raise ValueError(f"unsupported DBR type {dbr_type}")
        subid = self._next_subid
        self._next_subid += 1
        sub = Subscription(self, ch, subid, dbr_type, count, mask, callback, raw)
        ch._subs[subid] = sub
        if ch.connected:
            self._install(sub)
        return sub

    @property
    def channels(self) -> list[Channel]:
        """Every channel not cleared."""
        return list(self._channels.values())

    @property
    def beacon_anomalies(self) -> int:
        """Beacons from a new or restarted server (each searched the unresolved names again)."""
        return self._beacons.anomalies

    @property
    def search_stats(self) -> SearchStats:
        """Datagrams and names sent, answers, backoff resets, window cuts."""
        return self._search.stats

    def search_tries(self, ch: Channel) -> int:
        """Searches sent for ``ch`` since it last lost (or never had) its server."""
        return self._search.tries(ch.cid)

    @property
    def search_address(self) -> tuple[str, int] | None:
        """Local address of the UDP socket searches go out from (None before :meth:`start`).

        A CA server in the same process (a gateway) uses it to ignore its own searches.
        """
        tr = self._search_transport
        if tr is None:
            return None
        host, port = tr.get_extra_info("sockname")[:2]
        return host, port

    # ------------------------------------------------------------ internals

    def _require(self, ch: Channel) -> _Circuit:
        circuit = ch._circuit
        if not ch.connected or circuit is None or circuit.closed:
            raise DisconnectedError(f"{ch.name} is not connected")
        return circuit

    def _clip_count(self, ch: Channel, dbr_type: int, count: int | None) -> int:
        n = ch.count if count is None else min(count, ch.count) if ch.count else count
        limit = self.config.max_array_bytes
        if dbr.data_size(dbr_type, n) > limit:
            native = dbr.native_of(dbr_type)
            fit = max(1, (limit - dbr.data_size(dbr_type, 0)) // dbr.element_size(native))
            log.warning(
                "%s: %d elements exceed EPICS_CA_MAX_ARRAY_BYTES=%d, requesting %d",
                ch.name,
                n,
                limit,
                fit,
            )
            n = fit
        return n

    def _install(self, sub: Subscription) -> None:
        ch = sub.channel
        circuit = ch._circuit
        if circuit is None:
            return
        dbr_type = dbr.time_type(ch.native_type) if sub.dbr_type is None else sub.dbr_type
        n = self._clip_count(ch, dbr_type, sub.count)
        native = dbr.native_of(dbr_type)
        if sub.raw:  # gateway: bytes, no decoding
            handler = sub.callback
        elif dbr_type // 7 == 2:
            handler = dbr.time_event_decoder(native, ch.is_array, sub.callback)
        else:
            handler = _reading_handler(dbr_type, ch.is_array, sub.callback)
        circuit.framer.add_handler(sub.subid, handler)
        circuit.active_subs[sub.subid] = (dbr_type, n, ch.sid)
        circuit.send(P.event_add(dbr_type, n, ch.sid, sub.subid, sub.mask))

    def _cancel(self, sub: Subscription) -> None:
        ch = sub.channel
        if ch._subs.pop(sub.subid, None) is None:
            return
        circuit = ch._circuit
        if circuit is not None:
            circuit.framer.remove_handler(sub.subid)
            active = circuit.active_subs.pop(sub.subid, None)
            if active is not None and ch.connected and not circuit.closed:
                circuit.send(P.event_cancel(active[0], active[1], active[2], sub.subid))

    def _access_rights(self, ch: Channel, access: int) -> None:
        ch.access = access
        for cb in list(ch._rights_callbacks):
            try:
                cb(ch, access)
            except Exception:
                log.exception("access rights callback of %s failed", ch.name)

    def _notify(self, ch: Channel, up: bool) -> None:
        for cb in list(ch._callbacks):
            try:
                cb(ch, up)
            except Exception:
                log.exception("connection callback of %s failed", ch.name)

    def _channel_connected(self, ch: Channel, native: int, count: int, sid: int) -> None:
        if not self._life.connected(ch.cid):
            return  # cleared meanwhile (or a reply we did not ask for)
        ch.native_type = native
        ch.count = count
        ch.sid = sid
        ch.connected = True
        ch.error = self._array_problem(ch)
        for sub in list(ch._subs.values()):
            self._install(sub)
        circuit = ch._circuit
        if circuit is not None:
            for f in ch._followers:
                if self._life.attach(f.cid):
                    circuit.attach(f)
        self._notify(ch, True)

    def _array_problem(self, ch: Channel) -> str:
        """Why the channel's whole array cannot be received, or "" (checked per connect)."""
        if ch.native_type < 0 or ch.native_type > 6:
            return ""
        dbr_type = dbr.time_type(ch.native_type)
        need = dbr.data_size(dbr_type, ch.count)
        limit = self.config.max_array_bytes
        if need <= limit:
            return ""
        return (
            f"{ch.count} elements of {dbr.NATIVE_NAMES[ch.native_type]} need {need} bytes as "
            f"DBR_TIME, more than EPICS_CA_MAX_ARRAY_BYTES={limit}; raise it (on the IOC too)"
        )

    def _channel_lost(self, ch: Channel) -> None:
        """The channel lost its server or was refused: back to the search (a follower waits
        for the channel it follows), subscriptions kept for the next circuit."""
        was = ch.connected
        circuit = ch._circuit
        if circuit is not None:
            for subid in ch._subs:
                circuit.framer.remove_handler(subid)
                circuit.active_subs.pop(subid, None)
        ch.connected = False
        ch._circuit = None
        ch.sid = -1
        if not self._closed:
            self._life.lost(ch.cid, time.monotonic())
            self._wake.set()
        if was:
            self._notify(ch, False)

    def _circuit_lost(self, circuit: _Circuit) -> None:
        if circuit.name_server:
            if circuit in self._name_servers:
                self._name_servers.remove(circuit)
            return
        if self._circuits.get(circuit.server) is circuit:
            del self._circuits[circuit.server]
        channels = list(circuit.channels.values())
        circuit.channels.clear()
        if self._closed:
            return
        log.info("CA circuit to %s:%d lost (%d channels)", *circuit.server, len(channels))
        for ch in channels:
            self._channel_lost(ch)

    # -- search
    def _on_search_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        for msg in P.iter_messages(data):
            if msg.cmd == P.SEARCH:
                host = addr[0] if msg.p1 in (0, 0xFFFFFFFF) else P.int_to_ip(msg.p1)
                self._resolved(msg.p2, (host, msg.data_type))

    def _resolved(self, cid: int, server: tuple[str, int]) -> None:
        circuit = self._circuits.get(server)
        up = circuit is not None and not circuit.closed
        found = self._life.found(cid, server, time.monotonic(), up)
        if found is Found.CREATE and circuit is not None:
            circuit.attach(self._channels[cid])
        elif found is Found.CONNECT:
            self._tasks.append(asyncio.get_running_loop().create_task(self._connect(server)))

    async def _connect(self, server: tuple[str, int]) -> None:
        loop = asyncio.get_running_loop()
        try:
            _, circuit = await loop.create_connection(
                lambda: _Circuit(self, server), server[0], server[1]
            )
        except OSError as exc:
            log.info("CA connect to %s:%d failed: %s", *server, exc)
            if not self._closed and self._life.circuit_failed(server, time.monotonic()):
                self._wake.set()
            return
        finally:
            self._tasks = [t for t in self._tasks if not t.done()]
        self._circuits[server] = circuit
        for cid in self._life.circuit_up(server):
            circuit.attach(self._channels[cid])

    async def _search_loop(self) -> None:
        """Send what the scheduler says is due, then sleep until the next send or a wake-up."""
        targets = self.config.search_targets()
        search = self._search
        while not self._closed:
            self._wake.clear()
            now = time.monotonic()
            bodies = search.poll(now)
            if bodies and self._search_transport is not None and targets:
                for body in bodies:
                    self._sequence = (self._sequence + 1) & 0xFFFFFFFF
                    datagram = P.version(sequence=self._sequence) + body
                    for target in targets:
                        self._search_transport.sendto(datagram, target)
            if bodies and self._name_servers:
                requests = b"".join(bodies)
                for ns in self._name_servers:
                    ns.send(requests)
            wake_at = search.next_wakeup()
            delay = 3600.0 if wake_at is None else max(0.001, wake_at - time.monotonic())
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)

    async def _name_server_loop(self, addr: tuple[str, int]) -> None:
        """Keep a TCP circuit to a name server; searches go over it as well as UDP."""
        loop = asyncio.get_running_loop()
        retry = 0.5
        while not self._closed:
            try:
                _, circuit = await loop.create_connection(
                    lambda: _Circuit(self, addr, name_server=True), addr[0], addr[1]
                )
            except OSError as exc:
                log.debug("CA name server %s:%d: %s", *addr, exc)
                await asyncio.sleep(retry)
                retry = min(retry * 2, self.config.max_search_period)
                continue
            retry = 0.5
            self._name_servers.append(circuit)
            self._research_all()
            await circuit.lost.wait()

    def _research_all(self) -> None:
        """Search every unresolved channel now, with the backoff restarted (rate-limited)."""
        self._life.research(time.monotonic())
        self._wake.set()

    # -- beacons
    def _on_beacon_datagram(self, data: bytes, addr: tuple[str, int]) -> None:
        forward = False
        for msg in P.iter_messages(data):
            if msg.cmd == P.RSRV_IS_UP:
                host = addr[0] if msg.p2 == 0 else P.int_to_ip(msg.p2)
                anomaly = self._beacons.beacon((host, msg.data_count), msg.p1, time.monotonic())
                if anomaly and self._life.unresolved:
                    self._research_all()
                forward = True
            elif msg.cmd == P.REPEATER_CONFIRM:
                self._repeater_confirmed = True
            elif msg.cmd == P.REPEATER_REGISTER and self._is_repeater:
                self._repeater_clients.add(addr)
                if self._beacon_transport is not None:
                    self._beacon_transport.sendto(P.repeater_confirm(addr[0]), addr)
        if forward and self._is_repeater and self._beacon_transport is not None:
            for client in list(self._repeater_clients):
                self._beacon_transport.sendto(data, client)

    # -- keepalive
    async def _keepalive_loop(self) -> None:
        """ECHO idle circuits; drop circuits whose echo stays unanswered (dead server/link)."""
        cfg = self.config
        tick = Keepalive.tick(cfg.conn_tmo, cfg.echo_timeout)
        while not self._closed:
            await asyncio.sleep(tick)
            now = time.monotonic()
            for circuit in [*self._circuits.values(), *self._name_servers]:
                if circuit.closed:
                    continue
                action = circuit.keepalive.poll(now, circuit.last_rx)
                if action is KeepaliveAction.SEND_ECHO:
                    circuit.send(P.echo())
                elif action is KeepaliveAction.DEAD:
                    log.warning("CA circuit to %s:%d timed out", *circuit.server)
                    circuit.abort()


def _complete(done: Completion[asyncio.Future[Any]]) -> None:
    """Hand a request's end, as the circuit state decided it, to its waiting future."""
    fut = done.waiter
    if fut.done():  # given up (timeout, cancelled) meanwhile
        return
    try:
        value = done.result()
    except CircuitRequestError as e:
        fut.set_exception((DisconnectedError if e.disconnected else CAError)(str(e)))
    else:
        fut.set_result(value)


def _reading_handler(
    dbr_type: int, as_array: bool, callback: Callable[[dbr.Reading], None]
) -> Callable[[bytes, int, int], None]:
    """Monitor handler for non-TIME types (e.g. DBR_CTRL with DBE_PROPERTY)."""

    def handler(buf: bytes, off: int, count: int) -> None:
        try:
            callback(dbr.decode(dbr_type, bytes(buf[off:]), count, as_array))
        except Exception:
            log.exception("CA monitor callback failed")

    return handler
