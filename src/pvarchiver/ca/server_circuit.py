"""One CA virtual circuit on the server side: request handling and the output queue.

Split from ``server.py`` (which owns sockets, search and beacons) so the
per-client logic reads in one sitting.  ``ServerCircuit.handle`` is the whole
request logic, synchronous over bytes; only provider calls that return
awaitables (a gateway forwarding a put, or waiting for an IOC) become tasks.

Slow clients: updates are written through the transport until asyncio says
its buffer is full (``pause_writing``) or the client sent EVENTS_OFF; then
one update per subscription is *held*, the newest replacing the older (what an
IOC's event queue does), and the replaced ones are counted in ``dropped``.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
import socket
import struct
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from . import protocol as P
from .dbr_encode import CLASS_NAME, STSACK_STRING, empty_payload, payload_size
from .protocol import (
    ECA_BADCHID,
    ECA_BADTYPE,
    ECA_GETFAIL,
    ECA_NORDACCESS,
    ECA_NORMAL,
    ECA_NOWTACCESS,
    ECA_PUTFAIL,
)
from .server_config import RIGHT_READ, RIGHT_WRITE
from .server_pv import CAServerError, EventParts, ServedPV, Subscriber, event_parts
from .tasks import TaskSet

if TYPE_CHECKING:
    from .server import CAServer

__all__ = ["ServerChannel", "ServerCircuit"]

log = logging.getLogger(__name__)

HIGH_WATER = 256 * 1024
HARD_LIMIT = 64 * 1024 * 1024
_HEADER = P.HEADER
_EXT = struct.Struct(">II")
MAX_NAME = 1024
PUT_ACKT = 35  # DBR_PUT_ACKT
PUT_ACKS = 36  # DBR_PUT_ACKS


def _valid_type(dbr_type: int) -> bool:
    return 0 <= dbr_type <= 34 or dbr_type in (STSACK_STRING, CLASS_NAME)


class ServerChannel:
    """One client channel: which PV, which rights, which subscriptions."""

    __slots__ = ("cid", "circuit", "name", "pv", "rights", "sid", "subs")

    def __init__(
        self, circuit: ServerCircuit, cid: int, sid: int, name: str, pv: ServedPV, rights: int
    ) -> None:
        self.circuit = circuit
        self.cid = cid
        self.sid = sid
        self.name = name
        self.pv = pv
        self.rights = rights
        self.subs: dict[int, Subscriber] = {}

    @property
    def host(self) -> str:
        return self.circuit.host

    @property
    def user(self) -> str:
        return self.circuit.user


class ServerCircuit(asyncio.Protocol):
    """One client TCP connection.  ``handle`` is the whole request logic."""

    def __init__(self, server: CAServer) -> None:
        self.server = server
        self.loop = asyncio.get_event_loop()
        self.transport: Any = None
        self.peer: tuple[str, int] = ("", 0)
        self.host = ""
        self.user = ""
        self.priority = 0
        self.client_minor = 0
        self._buf = b""
        self.channels: dict[int, ServerChannel] = {}  # sid -> channel
        self.subs: dict[int, Subscriber] = {}  # subid -> subscriber
        self.out: list[bytes] = []
        self.flush_pending = False
        self._paused = False
        self._events_off = False
        self.hold = False  # paused or events off: keep only the newest update per subscription
        self._held: dict[int, tuple[Subscriber, EventParts]] = {}
        self.dropped = 0
        self.closed = False
        self._tasks = TaskSet()

    # ------------------------------------------------------------ transport
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport
        peer = transport.get_extra_info("peername") or ("", 0)
        self.peer = (peer[0], peer[1])
        self.host = peer[0]
        sock = transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        with contextlib.suppress(AttributeError, NotImplementedError):
            transport.set_write_buffer_limits(high=HIGH_WATER)  # type: ignore[attr-defined]
        self.server.circuits.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.server.circuits.discard(self)
        for ch in list(self.channels.values()):
            self._drop_channel(ch)
        self.channels.clear()
        self._held.clear()
        self.out.clear()
        self._tasks.cancel()

    def pause_writing(self) -> None:
        self._paused = self.hold = True

    def resume_writing(self) -> None:
        self._paused = False
        self.hold = self._events_off
        if not self.hold:
            self._release_held()

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        end_all = len(buf)
        off = 0
        limit = self.server.max_request
        while end_all - off >= 16:
            cmd, size, dt, cnt, p1, p2 = _HEADER.unpack_from(buf, off)
            start = off + 16
            if size == 0xFFFF and cnt == 0:
                if end_all - off < 24:
                    break
                size, cnt = _EXT.unpack_from(buf, start)
                start += 8
            if size > limit:
                log.warning("CA client %s:%d sent a %d-byte message; closing", *self.peer, size)
                self.send(P.error(buf[off : off + 16], 0, ECA_BADCHID, "message too large"))
                self.flush()
                self.transport.close()
                self._buf = b""
                return
            end = start + size
            if end > end_all:
                break
            try:
                self.handle(cmd, dt, cnt, p1, p2, buf[start:end])
            except Exception:
                log.exception("CA request %d from %s:%d failed", cmd, *self.peer)
                self.send(P.error(buf[off : off + 16], p1, ECA_BADCHID, "internal error"))
            off = end
            if self.closed:
                return
        self._buf = buf[off:] if off < end_all else b""

    # ------------------------------------------------------------ output
    def send(self, data: bytes) -> None:
        if self.closed:
            return
        self.out.append(data)
        if not self.flush_pending:
            self.flush_pending = True
            self.loop.call_soon(self.flush)

    def queue_event(self, sub: Subscriber, parts: EventParts) -> None:
        """Queue one monitor update; while held, keep only the newest per subscription."""
        if self.hold:
            self.hold_event(sub, parts)
            return
        self.out.extend((parts[0], sub.idb, parts[1]))
        if not self.flush_pending:
            self.schedule_flush()

    def send_events(self, data: bytes, flush: bool = True) -> None:
        """Queue monitor updates built elsewhere (whole EVENT_ADD messages for this client's
        subscriptions), as :meth:`queue_event` does for one; the caller checks :attr:`hold`
        first and gives a held circuit each update through :meth:`hold_event` instead.

        ``flush=False``: the caller calls ``CAServer.flush_now()`` next, so no flush is
        scheduled (a gateway writing a burst to many clients at once).
        """
        self.out.append(data)
        if not self.flush_pending:
            if flush:
                self.schedule_flush()
            else:
                self.flush_pending = True

    def hold_event(self, sub: Subscriber, parts: EventParts) -> None:
        """The client cannot take more now: replace any older held update of ``sub``."""
        if self._held.pop(sub.subid, None) is not None:
            self.dropped += 1
        self._held[sub.subid] = (sub, parts)

    def schedule_flush(self) -> None:
        self.flush_pending = True
        self.loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write the queued output now (normally at the end of the loop turn)."""
        self.flush_pending = False
        if not self.out or self.closed or self.transport is None:
            self.out.clear()
            return
        data = b"".join(self.out)
        self.out.clear()
        self.transport.write(data)
        self.server.bytes_sent += len(data)
        if self.transport.get_write_buffer_size() > HARD_LIMIT:
            log.warning("CA client %s:%d is not reading; disconnecting", *self.peer)
            self.transport.abort()

    def _release_held(self) -> None:
        held = self._held
        self._held = {}
        for sub, parts in held.values():
            if sub.subid in self.subs:
                self.queue_event(sub, parts)

    # ------------------------------------------------------------ requests
    def handle(self, cmd: int, dt: int, cnt: int, p1: int, p2: int, body: bytes) -> None:
        """Process one request (synchronous; async provider results become tasks)."""
        self.server.requests += 1
        if cmd == P.EVENT_ADD:
            self._event_add(dt, cnt, p1, p2, body)
        elif cmd == P.READ_NOTIFY:
            self._read(dt, cnt, p1, p2)
        elif cmd in (P.WRITE, P.WRITE_NOTIFY):
            self._write(cmd, dt, cnt, p1, p2, body)
        elif cmd == P.EVENT_CANCEL:
            sub = self.subs.pop(p2, None)
            if sub is not None:
                sub.channel.subs.pop(p2, None)
                sub.channel.pv.remove_subscriber(sub)
                self._held.pop(p2, None)
                self.send(P.pack_header(P.EVENT_ADD, 0, sub.dbr_type, sub.count, p1, p2))
        elif cmd == P.CREATE_CHAN:
            self._create(p1, P.cstring(body)[:MAX_NAME])
        elif cmd == P.CLEAR_CHANNEL:
            ch = self.channels.pop(p1, None)
            if ch is not None:
                self._drop_channel(ch)
            self.send(P.clear_channel(p1, p2))
        elif cmd == P.VERSION:
            self.priority, self.client_minor = dt, cnt
            self.send(P.HEADER.pack(P.VERSION, 0, 0, P.CA_MINOR_VERSION, 0, 0))
        elif cmd == P.ECHO:
            self.send(P.echo())
        elif cmd in (P.CLIENT_NAME, P.HOST_NAME):
            text = P.cstring(body)
            if cmd == P.CLIENT_NAME:
                self.user = text
            else:
                self.host = text
            if self.channels:
                self.refresh_access()
        elif cmd == P.EVENTS_OFF:
            self._events_off = self.hold = True
        elif cmd == P.EVENTS_ON:
            self._events_off = False
            self.hold = self._paused
            if not self.hold:
                self._release_held()
        elif cmd == P.SEARCH:  # name-server use (EPICS_CA_NAME_SERVERS)
            self.server.answer_search(P.cstring(body)[:MAX_NAME], p1, dt, self.peer, self.send)
        else:
            log.debug("CA client %s:%d: ignored command %d", *self.peer, cmd)

    def _run(self, aw: Awaitable[Any], done: Callable[[Any, BaseException | None], None]) -> None:
        async def wrapper() -> None:
            try:
                result = await aw
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                done(None, exc)
            else:
                done(result, None)

        self._tasks.spawn(wrapper())

    def _create(self, cid: int, name: str) -> None:
        server = self.server
        try:
            res = server.provider.attach(name, self.host, self.user)
        except Exception:
            log.exception("attach %r failed", name)
            res = None
        if inspect.isawaitable(res):
            self._run(res, lambda pv, exc: self._created(cid, name, None if exc else pv))
        else:
            self._created(cid, name, res)

    def _created(self, cid: int, name: str, pv: ServedPV | None) -> None:
        if self.closed:
            if pv is not None:
                self.server.provider.detach(name, pv)
            return
        if pv is None or pv.state is None:
            if pv is not None:
                self.server.provider.detach(name, pv)
            self.send(P.create_ch_fail(cid))
            return
        pv.max_array_bytes = self.server.config.max_array_bytes
        sid = self.server.next_sid()
        rights = self.server.provider.rights(name, pv, self.host, self.user)
        ch = ServerChannel(self, cid, sid, name, pv, rights)
        self.channels[sid] = ch
        count = min(pv.count, pv.max_elements(pv.native_type + 28))
        self.send(
            P.access_rights(cid, rights) + P.create_chan_reply(pv.native_type, count, cid, sid)
        )

    def _drop_channel(self, ch: ServerChannel) -> None:
        for subid, sub in ch.subs.items():
            self.subs.pop(subid, None)
            self._held.pop(subid, None)
            ch.pv.remove_subscriber(sub)
        ch.subs.clear()
        try:
            self.server.provider.detach(ch.name, ch.pv)
        except Exception:
            log.exception("detach %r failed", ch.name)

    def _count(self, ch: ServerChannel, dbr_type: int, count: int) -> int:
        """Clip a requested count to the channel and to EPICS_CA_MAX_ARRAY_BYTES."""
        pv = ch.pv
        n = pv.count if count == 0 else min(count, max(pv.count, 1))
        return max(1, min(n, pv.max_elements(dbr_type)))

    def _read(self, dt: int, cnt: int, sid: int, ioid: int) -> None:
        ch = self.channels.get(sid)
        if ch is None:
            self.send(P.error(P.read_notify(dt, cnt, sid, ioid), sid, ECA_BADCHID, "bad sid"))
            return
        if not _valid_type(dt):
            self._read_reply(dt, 0, ioid, None, ECA_BADTYPE)
            return
        n = self._count(ch, dt, cnt)
        if not ch.rights & RIGHT_READ:
            self._read_reply(dt, n, ioid, None, ECA_NORDACCESS)
            return
        try:
            res = ch.pv.read(dt, n, ch)
        except CAServerError as exc:
            self._read_reply(dt, n, ioid, None, exc.status)
            return
        if inspect.isawaitable(res):
            self._run(res, lambda data, exc: self._read_done(dt, n, ioid, data, exc))
        else:
            self._read_reply(dt, n, ioid, res, ECA_NORMAL)

    def _read_done(
        self, dt: int, n: int, ioid: int, data: bytes | None, exc: BaseException | None
    ) -> None:
        if exc is None:
            self._read_reply(dt, n, ioid, data, ECA_NORMAL)
        else:
            status = exc.status if isinstance(exc, CAServerError) else ECA_GETFAIL
            self._read_reply(dt, n, ioid, None, status)

    def _read_reply(self, dt: int, n: int, ioid: int, data: bytes | None, status: int) -> None:
        if data is None:
            data = empty_payload(dt, n) if _valid_type(dt) else b""
        body = P.pad(data)
        self.send(P.pack_header(P.READ_NOTIFY, len(body), dt, n, status, ioid) + body)

    def _write(self, cmd: int, dt: int, cnt: int, sid: int, ioid: int, body: bytes) -> None:
        notify = cmd == P.WRITE_NOTIFY
        ch = self.channels.get(sid)
        if ch is None:
            self.send(
                P.error(P.pack_header(cmd, 0, dt, cnt, sid, ioid), sid, ECA_BADCHID, "bad sid")
            )
            return

        def reply(status: int, text: str = "") -> None:
            if notify:
                self.send(P.write_notify_reply(dt, cnt, ioid, status))
            elif status != ECA_NORMAL:
                head = P.pack_header(cmd, 0, dt, cnt, sid, ioid)
                self.send(P.error(head, ch.cid, status, text or "put failed"))

        if not ch.rights & RIGHT_WRITE:
            reply(ECA_NOWTACCESS, "no write access")
            return
        if dt in (PUT_ACKT, PUT_ACKS):
            # alarm acknowledgement: one unsigned short; the PV decides (a gateway forwards)
            if len(body) < 2:
                reply(ECA_PUTFAIL, "empty put")
                return
            cnt, body = 1, body[:2]
            elem = 2
        elif not 0 <= dt <= 6:
            reply(ECA_BADTYPE, f"cannot write DBR type {dt}")
            return
        else:
            elem = payload_size(dt, 1)
        if dt == 0 and len(body) < cnt * elem:  # libca sends one string unpadded to 40
            body = body.ljust(cnt * elem, b"\0")
        n = (
            1
            if elem == 2 and dt > 6
            else max(0, min(cnt, len(body) // elem, ch.pv.max_elements(dt)))
        )
        if n == 0:
            reply(ECA_PUTFAIL, "empty put")
            return
        try:
            res = ch.pv.write(dt, n, body[: n * elem], ch)
        except CAServerError as exc:
            reply(exc.status, str(exc))
            return
        except Exception as exc:
            log.exception("put to %s failed", ch.name)
            reply(ECA_PUTFAIL, str(exc))
            return
        if inspect.isawaitable(res):

            def done(_r: Any, exc: BaseException | None) -> None:
                if exc is None:
                    reply(ECA_NORMAL)
                else:
                    reply(exc.status if isinstance(exc, CAServerError) else ECA_PUTFAIL, str(exc))

            self._run(res, done)
        else:
            reply(ECA_NORMAL)

    def _event_add(self, dt: int, cnt: int, sid: int, subid: int, body: bytes) -> None:
        ch = self.channels.get(sid)
        if ch is None:
            return
        mask = P.parse_event_add_payload(body) if len(body) >= 14 else 0
        mask = mask or (P.DBE_VALUE | P.DBE_ALARM)
        if not _valid_type(dt):
            parts = event_parts(b"", dt, 0, ECA_BADTYPE)
            self._send_now(subid, parts)
            return
        n = 0 if cnt == 0 else self._count(ch, dt, cnt)
        old = self.subs.pop(subid, None)
        if old is not None:  # a client re-using an id: replace
            old.channel.subs.pop(subid, None)
            old.channel.pv.remove_subscriber(old)
        sub = Subscriber(ch, subid, dt, n, mask)
        ch.subs[subid] = sub
        self.subs[subid] = sub
        ch.pv.add_subscriber(sub)
        self._initial_event(sub)

    def _initial_event(self, sub: Subscriber) -> None:
        pv = sub.channel.pv
        if not sub.readable:
            n = sub.count or 1
            self._send_now(
                sub.subid,
                event_parts(empty_payload(sub.dbr_type, n), sub.dbr_type, n, ECA_NORDACCESS),
            )
            return
        if pv.state is not None:
            self.queue_event(sub, pv.event_parts(sub.dbr_type, sub.count))

    def _send_now(self, subid: int, parts: EventParts) -> None:
        self.send(parts[0] + struct.pack(">I", subid) + parts[1])

    # ------------------------------------------------------------ access rights
    def refresh_access(self, pv: ServedPV | None = None) -> None:
        """Recompute rights (all channels, or those on ``pv``) and push the changes."""
        provider = self.server.provider
        for ch in list(self.channels.values()):
            if pv is not None and ch.pv is not pv:
                continue
            rights = provider.rights(ch.name, ch.pv, self.host, self.user)
            if rights == ch.rights:
                continue
            ch.rights = rights
            self.send(P.access_rights(ch.cid, rights))
            readable = bool(rights & RIGHT_READ)
            for sub in ch.subs.values():
                if readable and not sub.readable:
                    sub.readable = True
                    self._initial_event(sub)
                sub.readable = readable
            ch.pv.regroup()

    def disconnect_channels(self, pv: ServedPV) -> None:
        """SERVER_DISCONN every channel on ``pv`` (its source went away)."""
        for sid, ch in list(self.channels.items()):
            if ch.pv is pv:
                del self.channels[sid]
                self._drop_channel(ch)
                self.send(P.server_disconn(ch.cid))
