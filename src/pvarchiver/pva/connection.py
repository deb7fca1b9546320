"""The client side of one PVA TCP connection, as a sans-I/O state machine.

Feed it the bytes the server sent (:meth:`ClientConnection.receive`, which returns
events), call its methods to create channels and operations, and send whatever
:meth:`ClientConnection.outgoing` returns. Nothing here touches a socket or a clock, so the
same code is tested on byte streams and run by the asyncio client.

The sequence it implements: the server sends ``SET_BYTE_ORDER`` then
``CONNECTION_VALIDATION`` (its buffer size, introspection registry size, auth methods);
we answer with ours and the ``ca`` method (user and host) when offered and a user is set,
else ``anonymous``; the server confirms with ``CONNECTION_VALIDATED`` (a Status). Then
``CREATE_CHANNEL`` (cid -> sid), GET (INIT with a pvRequest, then GET, then
DESTROY_REQUEST) and MONITOR (INIT, START, updates with changed and overrun BitSets,
pipeline off). An update is decoded into a copy of the previous value and published only
when the whole message decoded: a malformed message raises :class:`ProtocolError` and
never yields a half-decoded value (the caller then closes the connection).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from typing import Any, NamedTuple

from .codec import (
    STRING,
    STRUCT,
    DecodeError,
    FieldDesc,
    Reader,
    Writer,
    decode_bitset,
    decode_type,
    encode_type,
)
from .data import Layout, Value, ValueDecoder, encode_value
from .protocol import (
    CONNECTION_VALIDATED,
    CONNECTION_VALIDATION,
    CREATE_CHANNEL,
    DESTROY_CHANNEL,
    DESTROY_REQUEST,
    ECHO,
    GET,
    MESSAGE,
    MONITOR,
    MONITOR_START,
    SEARCH_RESPONSE,
    SET_BYTE_ORDER,
    SUB_DESTROY,
    SUB_INIT,
    Frame,
    Framer,
    ProtocolError,
    SearchResponse,
    Status,
    build_message,
    parse_search_response,
    read_status,
)
from .request import encode_request

__all__ = [
    "ChannelCreated",
    "ChannelDestroyed",
    "ClientConnection",
    "Echo",
    "GetResult",
    "MonitorFinished",
    "MonitorReady",
    "MonitorUpdate",
    "ServerMessage",
    "TcpSearchReply",
    "Validated",
]

_IOID_SUB = {o: struct.Struct(o + "IB") for o in "<>"}
_CA_AUTH = FieldDesc(STRUCT, fields=[("user", FieldDesc(STRING)), ("host", FieldDesc(STRING))])


class Validated(NamedTuple):
    status: Status
    auth: str  #: the method we chose (``ca`` or ``anonymous``)


class ChannelCreated(NamedTuple):
    cid: int
    sid: int
    status: Status


class ChannelDestroyed(NamedTuple):
    cid: int
    sid: int


class GetResult(NamedTuple):
    ioid: int
    status: Status
    value: Value | None


class MonitorReady(NamedTuple):
    ioid: int
    status: Status
    type: FieldDesc | None


class MonitorUpdate(NamedTuple):
    ioid: int
    value: Value  #: the whole structure after this update (never a partial one)
    changed: int  #: BitSet of the fields this update carried (bit 0 = all)
    overrun: int  #: BitSet of fields the server changed more than once in between


class MonitorFinished(NamedTuple):
    ioid: int
    status: Status


class Echo(NamedTuple):
    payload: bytes


class ServerMessage(NamedTuple):
    ioid: int
    type: int
    text: str


class TcpSearchReply(NamedTuple):
    response: SearchResponse


Event = (
    Validated
    | ChannelCreated
    | ChannelDestroyed
    | GetResult
    | MonitorReady
    | MonitorUpdate
    | MonitorFinished
    | Echo
    | ServerMessage
    | TcpSearchReply
)


@dataclass
class _Op:
    kind: int  # GET or MONITOR
    sid: int
    state: str = "init"  # init -> ready/running -> done
    decoder: ValueDecoder | None = None
    flat: list[Any] | None = None


class ClientConnection:
    """One client connection's protocol state (see the module docstring)."""

    def __init__(self, user: str = "", host: str = "", buffer_size: int = 0x10000) -> None:
        self.user = user
        self.host = host
        self.buffer_size = buffer_size
        self.order = ">"  # until the server's SET_BYTE_ORDER says otherwise
        self.state = "validating"  # -> validated -> ready (CONNECTION_VALIDATED) | closed
        self.server_buffer_size = 0
        self.server_registry_size = 0
        self.auth_methods: tuple[str, ...] = ()
        self._framer = Framer(from_server=True)
        self._out: list[bytes] = []
        self._registry: dict[int, FieldDesc] = {}
        self._ops: dict[int, _Op] = {}
        self._auth = "anonymous"
        #: one Layout and ValueDecoder per distinct structure type and byte order, shared by
        #: every operation of that type: 1,000 NTScalar monitors cost one layout and one
        #: set of compiled BitSet plans, not 1,000 (memory per PV, and plans compiled once)
        self._decoders: dict[tuple[FieldDesc, str], ValueDecoder] = {}

    # ------------------------------------------------------------ output

    def outgoing(self) -> bytes:
        """Bytes to send now (and forget)."""
        out = b"".join(self._out)
        self._out.clear()
        return out

    def _send(self, command: int, body: bytes | bytearray) -> None:
        self._out.append(build_message(command, body, self.order))

    def _writer(self) -> Writer:
        return Writer(self.order)

    def create_channel(self, cid: int, name: str) -> None:
        w = self._writer()
        w.pack("HI", 1, cid)
        w.string(name)
        self._send(CREATE_CHANNEL, w.buf)

    def destroy_channel(self, sid: int, cid: int) -> None:
        w = self._writer()
        w.pack("II", sid, cid)
        self._send(DESTROY_CHANNEL, w.buf)
        for ioid in [i for i, op in self._ops.items() if op.sid == sid]:
            del self._ops[ioid]

    def get(self, sid: int, ioid: int, request: tuple[FieldDesc, dict[str, Any]]) -> None:
        """Start a GET: INIT now, the GET itself when the INIT is answered."""
        self._init(GET, sid, ioid, request)

    def monitor(self, sid: int, ioid: int, request: tuple[FieldDesc, dict[str, Any]]) -> None:
        """Start a MONITOR (pipeline off): INIT now, START when the INIT is answered."""
        self._init(MONITOR, sid, ioid, request)

    def _init(self, kind: int, sid: int, ioid: int, request: tuple[FieldDesc, Any]) -> None:
        if ioid in self._ops:
            raise ValueError(f"ioid {ioid} in use")
        w = self._writer()
        w.pack("IIB", sid, ioid, SUB_INIT)
        encode_request(w, request)
        self._ops[ioid] = _Op(kind, sid)
        self._send(kind, w.buf)

    def cancel(self, ioid: int) -> None:
        """DESTROY_REQUEST for an operation (a monitor no longer wanted)."""
        op = self._ops.pop(ioid, None)
        if op is not None:
            w = self._writer()
            w.pack("II", op.sid, ioid)
            self._send(DESTROY_REQUEST, w.buf)

    def echo(self, payload: bytes = b"") -> None:
        self._send(ECHO, payload)

    def search(self, message: bytes) -> None:
        """Send a SEARCH built by :func:`protocol.build_search` with ``order=self.order``
        over this connection (TCP search of a name server)."""
        self._out.append(message)

    # ------------------------------------------------------------ input

    def receive(self, data: bytes) -> list[Event]:
        """Decode received bytes. Raises ProtocolError on anything malformed."""
        events: list[Event] = []
        for frame in self._framer.feed(data):
            try:
                self._dispatch(frame, events)
            except ProtocolError:
                raise
            except (DecodeError, struct.error, IndexError, ValueError, RecursionError) as exc:
                raise ProtocolError(f"bad PVA message (command {frame.command}): {exc}") from None
        return events

    def _dispatch(self, f: Frame, events: list[Event]) -> None:
        if f.control:
            if f.command == SET_BYTE_ORDER:
                self.order = f.order
            return
        cmd = f.command
        if cmd == MONITOR and self.state == "ready" and len(f.payload) >= 5:
            self._on_monitor_data(f, events)
            return
        r = Reader(f.payload, f.order)
        if cmd == CONNECTION_VALIDATION:
            self._on_validation(r)
        elif cmd == CONNECTION_VALIDATED:
            status = read_status(r)
            self.state = "ready" if status.ok else "closed"
            events.append(Validated(status, self._auth))
        elif cmd == ECHO:
            events.append(Echo(f.payload))
        elif self.state == "validating":
            raise ProtocolError(f"command {cmd} before connection validation")
        elif cmd == CREATE_CHANNEL:
            cid, sid = r.u32(), r.u32()
            events.append(ChannelCreated(cid, sid, read_status(r)))
        elif cmd == DESTROY_CHANNEL:
            sid, cid = r.u32(), r.u32()
            for ioid in [i for i, op in self._ops.items() if op.sid == sid]:
                del self._ops[ioid]
            events.append(ChannelDestroyed(cid, sid))
        elif cmd == GET:
            self._on_get(r, events)
        elif cmd == MONITOR:
            self._on_monitor(r, events)
        elif cmd == MESSAGE:
            ioid, mtype = r.u32(), r.u8()
            events.append(ServerMessage(ioid, mtype, r.string()))
        elif cmd == SEARCH_RESPONSE:
            events.append(TcpSearchReply(parse_search_response(f.payload, f.order)))
        # other commands (beacons on TCP, ACL changes...) are not used by this client

    def _on_validation(self, r: Reader) -> None:
        self.server_buffer_size = r.u32()
        self.server_registry_size = r.u16()
        n = r.count()
        self.auth_methods = tuple(r.string() for _ in range(n))
        # the server lists methods lowest priority first; "ca" wins when we have a user
        self._auth = "ca" if "ca" in self.auth_methods and self.user else "anonymous"
        w = self._writer()
        w.pack("IHH", self.buffer_size, 0x7FFF, 0)
        w.string(self._auth)
        if self._auth == "ca":
            encode_type(_CA_AUTH, w)
            encode_value(_CA_AUTH, {"user": self.user, "host": self.host}, w)
        else:
            w.u8(0xFF)
        self._send(CONNECTION_VALIDATION, w.buf)
        self.state = "validated"

    def _op(self, ioid: int, kind: int) -> _Op | None:
        op = self._ops.get(ioid)
        if op is not None and op.kind != kind:
            raise ProtocolError(f"ioid {ioid} answered with the wrong command {kind}")
        return op

    def _init_reply(self, r: Reader, op: _Op, ioid: int) -> Status:
        status = read_status(r)
        if op.state != "init":
            raise ProtocolError(f"second INIT reply for ioid {ioid}")
        if not status.ok:
            return status
        fd = decode_type(r, self._registry)
        if fd is None or fd.code != STRUCT:
            raise ProtocolError(f"ioid {ioid}: INIT reply without a structure type")
        op.decoder = self._shared_decoder(fd, r.order)
        op.flat = op.decoder.layout.defaults()
        op.state = "ready"
        return status

    def _shared_decoder(self, fd: FieldDesc, order: str) -> ValueDecoder:
        key = (fd, order)
        dec = self._decoders.get(key)
        if dec is None or dec.layout.top.type_id != fd.type_id:
            dec = ValueDecoder(Layout(fd), order, self._registry)
            if len(self._decoders) < 1024:  # a hostile peer must not grow it for ever
                self._decoders[key] = dec
        return dec

    def _decoder(self, op: _Op, order: str) -> ValueDecoder:
        dec = op.decoder
        assert dec is not None
        if dec.order != order:  # a server may switch byte order between messages
            dec = op.decoder = self._shared_decoder(dec.layout.top, order)
        return dec

    def _on_get(self, r: Reader, events: list[Event]) -> None:
        ioid, sub = r.u32(), r.u8()
        op = self._op(ioid, GET)
        if op is None:
            return  # a request we already dropped
        if sub & SUB_INIT:
            status = self._init_reply(r, op, ioid)
            if not status.ok:
                del self._ops[ioid]
                events.append(GetResult(ioid, status, None))
                return
            w = self._writer()
            w.pack("IIB", op.sid, ioid, 0)
            self._send(GET, w.buf)
            return
        status = read_status(r)
        if op.state != "ready":
            raise ProtocolError(f"GET data for ioid {ioid} before its INIT")
        value = None
        if status.ok:
            assert op.decoder is not None and op.flat is not None
            dec = self._decoder(op, r.order)
            flat = op.flat.copy()
            dec.apply(r.buf, r.off, flat)
            value = Value(dec.layout, flat)
        self.cancel(ioid)
        events.append(GetResult(ioid, status, value))

    def _on_monitor(self, r: Reader, events: list[Event]) -> None:
        ioid, sub = r.u32(), r.u8()
        op = self._op(ioid, MONITOR)
        if op is None:
            return
        if sub & SUB_INIT:
            status = self._init_reply(r, op, ioid)
            events.append(MonitorReady(ioid, status, op.decoder.layout.top if op.decoder else None))
            if not status.ok:
                del self._ops[ioid]
                return
            w = self._writer()
            w.pack("IIB", op.sid, ioid, MONITOR_START)
            self._send(MONITOR, w.buf)
            op.state = "running"
            return
        if op.state != "running":
            raise ProtocolError(f"MONITOR data for ioid {ioid} before its INIT")
        final = bool(sub & SUB_DESTROY)
        status = read_status(r) if final else None
        if not final or r.remaining():
            dec, prev = self._decoder(op, r.order), op.flat
            assert prev is not None
            flat = prev.copy()
            changed, off = dec.apply(r.buf, r.off, flat)
            r.off = off
            overrun = r.bitset()
            op.flat = flat
            events.append(MonitorUpdate(ioid, Value(dec.layout, flat), changed, overrun))
        if final:
            self._ops.pop(ioid, None)
            events.append(MonitorFinished(ioid, status or Status()))

    def _on_monitor_data(self, f: Frame, events: list[Event]) -> None:
        """The hot path: a plain monitor update (no INIT, no final flag) decoded without
        a Reader; anything else goes through :meth:`_on_monitor`."""
        buf, order = f.payload, f.order
        ioid, sub = _IOID_SUB[order].unpack_from(buf, 0)
        op = self._ops.get(ioid)
        if op is None or op.kind != MONITOR or op.state != "running" or sub & 0x18:
            self._on_monitor(Reader(buf, order), events)
            return
        dec = op.decoder
        if dec is None or dec.order != order:
            dec = self._decoder(op, order)
        flat = op.flat.copy()  # type: ignore[union-attr]
        changed, off = dec.apply(buf, 5, flat)
        raw, off = dec.read_bitset(buf, off)
        overrun = int.from_bytes(raw, "little") if order == "<" else decode_bitset(raw, ">")
        op.flat = flat
        events.append(MonitorUpdate(ioid, Value(dec.layout, flat), changed, overrun))
