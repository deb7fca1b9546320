"""asyncio Channel Access server: UDP search, TCP virtual circuits, beacons.

Why our own (design.md, environment.md §3): caproto's server saturates near
15 k events/s and dies when a subscribed client disconnects under load.  Here
the circuit is a plain ``asyncio.Protocol``; message handling is synchronous
code over bytes (``ServerCircuit.handle`` in ``server_circuit.py``) and only provider calls that
return awaitables (a gateway forwarding a put or waiting for an IOC) become
tasks.

Slow clients: each circuit writes through the transport until asyncio says
its buffer is full (``pause_writing``) or the client sent EVENTS_OFF; from
then on monitor updates are *held*, one per subscription, the newest
replacing the older (what an IOC's event queue does), and the replaced ones
are counted in ``dropped``.  Memory per client is thus bounded by the
transport buffer plus one payload per subscription; a client whose buffer
still grows past ``HARD_LIMIT`` (replies to a flood of reads it never
collects) is disconnected.  Nothing a client does can raise into another
client's path.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import inspect
import logging
import socket
from collections.abc import Awaitable, Callable
from typing import Any

from . import protocol as P
from .server_circuit import MAX_NAME, ServerChannel, ServerCircuit
from .server_config import ServerConfig
from .server_pv import CAServerError, DictProvider, Provider, ServedPV
from .sockets import udp_ignore_connreset
from .tasks import TaskSet

__all__ = [
    "CAServer",
    "CAServerError",
    "DictProvider",
    "ServedPV",
    "ServerChannel",
    "ServerCircuit",
    "ServerConfig",
]

log = logging.getLogger(__name__)


class _SearchProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: CAServer) -> None:
        self.server = server
        self.transport: Any = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.server.on_search_datagram(data, (addr[0], addr[1]), self.transport)
        except Exception:
            log.exception("bad CA search datagram from %s", addr)

    def error_received(self, exc: Exception) -> None:
        log.debug("CA server UDP error: %s", exc)


def _udp_socket(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    udp_ignore_connreset(sock)
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


class CAServer:
    """A CA server for one provider; ``async with CAServer(provider, config):``."""

    def __init__(self, provider: Provider, config: ServerConfig | None = None) -> None:
        self.provider = provider
        self.config = config or ServerConfig.from_env()
        self.circuits: set[ServerCircuit] = set()
        self.tcp_port = 0
        self.requests = 0
        self.searches = 0
        self.bytes_sent = 0
        self._next_sid = 1
        self._servers: list[asyncio.AbstractServer] = []
        self._udp: list[Any] = []
        self._beacon_tr: Any = None
        self._beacon_wake = asyncio.Event()
        self._beacon_delay = 0.02
        self._beacon_id = 0
        self._tasks = TaskSet()
        self._closed = False
        self.max_request = max(16384, self.config.max_array_bytes) + 4096

    async def __aenter__(self) -> CAServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    @property
    def port(self) -> int:
        """The port announced in search replies and beacons."""
        return self.config.advertise_port or self.tcp_port

    def next_sid(self) -> int:
        sid = self._next_sid
        self._next_sid = (sid + 1) & 0xFFFFFFFF or 1
        return sid

    async def start(self) -> None:
        """Bind TCP (falling back to a free port if taken) and UDP, start beacons."""
        loop = asyncio.get_running_loop()
        cfg = self.config
        port = cfg.port
        for host in cfg.interfaces:
            try:
                srv = await loop.create_server(
                    lambda: ServerCircuit(self), host, port, reuse_address=True
                )
            except OSError as exc:
                if exc.errno != errno.EADDRINUSE or self._servers:
                    raise
                log.warning("CA server TCP port %d in use; using a free port", port)
                srv = await loop.create_server(lambda: ServerCircuit(self), host, 0)
            self._servers.append(srv)
            port = srv.sockets[0].getsockname()[1]
        self.tcp_port = port
        for host in cfg.interfaces:
            tr, _ = await loop.create_datagram_endpoint(
                lambda: _SearchProtocol(self), sock=_udp_socket(host, cfg.port)
            )
            self._udp.append(tr)
        bsock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        bsock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        bsock.bind((cfg.interfaces[0], 0))
        bsock.setblocking(False)
        self._beacon_tr, _ = await loop.create_datagram_endpoint(
            asyncio.DatagramProtocol, sock=bsock
        )
        self._tasks.spawn(self._beacon_loop())
        log.info("CA server on %s port %d (TCP %d)", cfg.interfaces, cfg.port, self.tcp_port)

    async def close(self) -> None:
        """Stop listening, close every circuit and socket."""
        if self._closed:
            return
        self._closed = True
        self._tasks.cancel()
        for srv in self._servers:
            srv.close()
        for circuit in list(self.circuits):
            circuit.flush()
            if circuit.transport is not None:
                circuit.transport.close()
        for tr in [*self._udp, self._beacon_tr]:
            if tr is not None:
                tr.close()
        for srv in self._servers:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(srv.wait_closed(), 2.0)
        await asyncio.sleep(0)

    # ------------------------------------------------------------ search
    def on_search_datagram(self, data: bytes, addr: tuple[str, int], transport: Any) -> None:
        if addr[0] in self.config.ignore_addrs:
            return
        replies: list[bytes] = []

        def deferred(reply: bytes) -> None:
            self._send_udp(transport, [reply], addr)

        for msg in P.iter_messages(data):
            if msg.cmd == P.SEARCH:
                name = P.cstring(msg.payload)[:MAX_NAME]
                self.answer_search(
                    name, msg.p1, msg.data_type, addr, replies.append, deferred=deferred
                )
        if replies:
            self._send_udp(transport, replies, addr)

    def _send_udp(self, transport: Any, replies: list[bytes], addr: tuple[str, int]) -> None:
        head = P.HEADER.pack(P.VERSION, 0, 0, P.CA_MINOR_VERSION, 0, 0)
        with contextlib.suppress(OSError):
            transport.sendto(head + b"".join(replies), addr)

    def answer_search(
        self,
        name: str,
        cid: int,
        reply_flag: int,
        addr: tuple[str, int],
        send: Callable[[bytes], None],
        deferred: Callable[[bytes], None] | None = None,
    ) -> None:
        """Ask the provider; reply now, later (deferred), or NOT_FOUND when asked to."""
        self.searches += 1
        try:
            found = self.provider.search(name, addr)
        except Exception:
            log.exception("search %r failed", name)
            found = False
        later = deferred or send
        if inspect.isawaitable(found):

            async def wait(aw: Awaitable[bool] = found) -> None:
                try:
                    ok = await aw
                except Exception:
                    ok = False
                if self._closed:
                    return
                if ok:
                    later(P.search_reply(self.port, cid))
                elif reply_flag == P.DO_REPLY:
                    later(P.not_found(cid))

            self._tasks.spawn(wait())
        elif found:
            send(P.search_reply(self.port, cid))
        elif reply_flag == P.DO_REPLY:
            send(P.not_found(cid))

    # ------------------------------------------------------------ beacons
    async def _beacon_loop(self) -> None:
        """Beacons every period after a fast ramp (0.02 s doubling), restarted by anomalies."""
        cfg = self.config
        host = cfg.interfaces[0]
        ip = "0.0.0.0" if host == "0.0.0.0" else host
        while not self._closed:
            if cfg.beacon_addrs and self._beacon_tr is not None:
                msg = P.beacon(self.port, self._beacon_id, ip)
                for target in cfg.beacon_addrs:
                    with contextlib.suppress(OSError):
                        self._beacon_tr.sendto(msg, target)
                self._beacon_id = (self._beacon_id + 1) & 0xFFFFFFFF
            self._beacon_wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._beacon_wake.wait(), self._beacon_delay)
            self._beacon_delay = min(self._beacon_delay * 2, cfg.beacon_period)

    def beacon_anomaly(self) -> None:
        """Restart the fast beacon ramp so clients re-search unresolved channels now."""
        self._beacon_delay = 0.02
        self._beacon_wake.set()

    # ------------------------------------------------------------ provider-driven events
    def flush_now(self) -> None:
        """Write every circuit's pending output now instead of at the end of this loop turn.

        Why: a provider that posts many updates in one go (a gateway handling a
        read of hundreds of upstream events) would otherwise hold all of them
        until it returns; calling this every so many updates lets the first
        ones leave, and the clients start decoding, while the rest are made.
        """
        for circuit in self.circuits:
            if circuit.flush_pending:
                circuit.flush()

    def refresh_access(self, pv: ServedPV | None = None) -> None:
        """Re-evaluate rights of every channel (or of ``pv``'s) and push changes to clients."""
        for circuit in list(self.circuits):
            circuit.refresh_access(pv)

    def disconnect(self, pv: ServedPV) -> None:
        """Tell every client that ``pv`` is gone (SERVER_DISCONN); they will search again."""
        for circuit in list(self.circuits):
            circuit.disconnect_channels(pv)

    @property
    def channel_count(self) -> int:
        return sum(len(c.channels) for c in self.circuits)

    @property
    def dropped(self) -> int:
        """Monitor updates replaced by newer ones for slow clients (since start, live circuits)."""
        return sum(c.dropped for c in self.circuits)
