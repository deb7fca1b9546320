"""Channel Access wire protocol: headers, message builders and a streaming framer.

Pure code, no sockets: everything here turns Python values into bytes or bytes
into Python values, so it can be tested without a network and reused by a
client, a server or a gateway.  The byte layouts follow the CA protocol
specification (protocol version 4.13): every message is a 16-byte big-endian
header ``cmd u16, payload_size u16, data_type u16, data_count u16, p1 u32,
p2 u32`` followed by a payload padded to a multiple of 8 bytes.  Large payloads
(> 0xFFFE bytes or > 0xFFFF elements) use the *extended* header: payload_size
0xFFFF and data_count 0, then two more u32 with the real size and count.

The hot path of an archiver is the stream of EVENT_ADD (monitor) messages on a
TCP circuit, so :class:`Framer` dispatches those straight from the receive
buffer to a per-subscription handler without building any intermediate object.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from typing import NamedTuple

__all__ = [
    "ACCESS_RIGHTS",
    "CA_MINOR_VERSION",
    "CLEAR_CHANNEL",
    "CLIENT_NAME",
    "CREATE_CHAN",
    "CREATE_CH_FAIL",
    "DBE_ALARM",
    "DBE_LOG",
    "DBE_PROPERTY",
    "DBE_VALUE",
    "DONT_REPLY",
    "DO_REPLY",
    "ECA_BADCHID",
    "ECA_BADCOUNT",
    "ECA_BADTYPE",
    "ECA_DISCONN",
    "ECA_GETFAIL",
    "ECA_NORDACCESS",
    "ECA_NORMAL",
    "ECA_NOWTACCESS",
    "ECA_PUTFAIL",
    "ECA_TIMEOUT",
    "ECA_TOLARGE",
    "ECHO",
    "ERROR",
    "EVENTS_OFF",
    "EVENTS_ON",
    "EVENT_ADD",
    "EVENT_CANCEL",
    "EXT_HEADER",
    "HEADER",
    "HOST_NAME",
    "NOT_FOUND",
    "READ_NOTIFY",
    "REPEATER_CONFIRM",
    "REPEATER_REGISTER",
    "RSRV_IS_UP",
    "SEARCH",
    "SERVER_DISCONN",
    "VERSION",
    "WRITE",
    "WRITE_NOTIFY",
    "Framer",
    "Message",
    "access_rights",
    "beacon",
    "clear_channel",
    "client_name",
    "create_ch_fail",
    "create_chan",
    "create_chan_reply",
    "cstring",
    "echo",
    "error",
    "event_add",
    "event_add_reply",
    "event_cancel",
    "events_off",
    "events_on",
    "host_name",
    "int_to_ip",
    "ip_to_int",
    "iter_messages",
    "message",
    "not_found",
    "pack_header",
    "pad",
    "parse_error_payload",
    "parse_event_add_payload",
    "read_notify",
    "read_notify_reply",
    "repeater_confirm",
    "repeater_register",
    "search",
    "search_reply",
    "server_disconn",
    "string_payload",
    "version",
    "write_notify",
    "write_notify_reply",
]

# Commands (caProto.h numbering).
VERSION = 0
EVENT_ADD = 1
EVENT_CANCEL = 2
WRITE = 4
SEARCH = 6
EVENTS_OFF = 8
EVENTS_ON = 9
ERROR = 11
CLEAR_CHANNEL = 12
RSRV_IS_UP = 13
NOT_FOUND = 14
READ_NOTIFY = 15
REPEATER_CONFIRM = 17
CREATE_CHAN = 18
WRITE_NOTIFY = 19
CLIENT_NAME = 20
HOST_NAME = 21
ACCESS_RIGHTS = 22
ECHO = 23
REPEATER_REGISTER = 24
CREATE_CH_FAIL = 26
SERVER_DISCONN = 27

CA_MINOR_VERSION = 13
DO_REPLY = 10
DONT_REPLY = 5

# Status codes (caerr.h): (message number << 3) | severity (0 warning, 1 success, 2 error).
ECA_NORMAL = 1
ECA_TOLARGE = 72
ECA_TIMEOUT = 80
ECA_BADTYPE = 114
ECA_GETFAIL = 152
ECA_PUTFAIL = 160
ECA_BADCOUNT = 176
ECA_DISCONN = 192
ECA_BADCHID = 410
ECA_NORDACCESS = 368
ECA_NOWTACCESS = 376

# Monitor masks for EVENT_ADD.
DBE_VALUE = 1
DBE_LOG = 2
DBE_ALARM = 4
DBE_PROPERTY = 8

HEADER = struct.Struct(">HHHHII")
EXT_HEADER = struct.Struct(">II")  # payload size and count of an extended header
_EVENT_REQ = struct.Struct(">fffHxx")
_U16 = struct.Struct(">H")
_IPV4 = struct.Struct(">I")

_PADS = tuple(b"\0" * n for n in range(8))


class Message(NamedTuple):
    """One decoded CA message; ``payload`` excludes the header and keeps the padding."""

    cmd: int
    data_type: int
    data_count: int
    p1: int
    p2: int
    payload: bytes


def cstring(raw: bytes, utf8: bool = False) -> str:
    """The text before the first NUL of a C string (a name, a DBR string, an error message).

    Names and protocol text are Latin-1, one character per byte, so every name a client
    sends comes back byte for byte; DBR string values (``utf8=True``: values, units, enum
    strings) are UTF-8 where they can be, else Latin-1, as IOCs hold either.
    """
    raw = raw.split(b"\0", 1)[0]
    if utf8:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return raw.decode("latin-1")


def pad(payload: bytes) -> bytes:
    """Pad to a multiple of 8 bytes, as every CA peer expects (and rsrv checks)."""
    rem = len(payload) & 7
    return payload + _PADS[8 - rem] if rem else payload


def string_payload(text: str | bytes) -> bytes:
    """NUL-terminate and pad a name; the NUL is needed even at a multiple of 8 bytes."""
    raw = text.encode() if isinstance(text, str) else text
    return pad(raw + b"\0")


def pack_header(cmd: int, size: int, data_type: int, count: int, p1: int, p2: int) -> bytes:
    """Pack a header, switching to the extended form when size or count do not fit in 16 bits."""
    if size >= 0xFFFF or count > 0xFFFF:
        return HEADER.pack(cmd, 0xFFFF, data_type, 0, p1, p2) + EXT_HEADER.pack(size, count)
    return HEADER.pack(cmd, size, data_type, count, p1, p2)


def message(
    cmd: int, data_type: int = 0, count: int = 0, p1: int = 0, p2: int = 0, payload: bytes = b""
) -> bytes:
    """Build a whole message; ``payload`` is padded here so callers never forget it."""
    payload = pad(payload)
    return pack_header(cmd, len(payload), data_type, count, p1, p2) + payload


def ip_to_int(host: str) -> int:
    """Dotted IPv4 to the u32 that CA puts in p1/p2 fields."""
    a, b, c, d = (int(x) for x in host.split("."))
    return (a << 24) | (b << 16) | (c << 8) | d


def int_to_ip(value: int) -> str:
    """u32 from a p1/p2 field back to dotted IPv4."""
    return f"{value >> 24 & 255}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"


# ---------------------------------------------------------------- requests (client -> server)


def version(priority: int = 0, sequence: int = 0) -> bytes:
    """VERSION: sent first on a circuit (priority) and before searches in a datagram."""
    return HEADER.pack(VERSION, 0, priority, CA_MINOR_VERSION, sequence, 0)


def search(name: str | bytes, cid: int, reply: int = DONT_REPLY) -> bytes:
    """SEARCH request; DONT_REPLY keeps servers silent for names they do not host."""
    payload = string_payload(name)
    return HEADER.pack(SEARCH, len(payload), reply, CA_MINOR_VERSION, cid, cid) + payload


def create_chan(name: str | bytes, cid: int) -> bytes:
    """CREATE_CHAN request: p1 is our channel id, p2 our minor protocol version."""
    payload = string_payload(name)
    return HEADER.pack(CREATE_CHAN, len(payload), 0, 0, cid, CA_MINOR_VERSION) + payload


def clear_channel(sid: int, cid: int) -> bytes:
    """CLEAR_CHANNEL request (the server echoes it back)."""
    return HEADER.pack(CLEAR_CHANNEL, 0, 0, 0, sid, cid)


def event_add(
    data_type: int, count: int, sid: int, subid: int, mask: int = DBE_VALUE | DBE_ALARM
) -> bytes:
    """EVENT_ADD request; the three floats (low, high, timeout) are obsolete and sent as 0."""
    body = _EVENT_REQ.pack(0.0, 0.0, 0.0, mask)
    return pack_header(EVENT_ADD, len(body), data_type, count, sid, subid) + body


def event_cancel(data_type: int, count: int, sid: int, subid: int) -> bytes:
    """EVENT_CANCEL; the server answers with an EVENT_ADD of payload size 0."""
    return pack_header(EVENT_CANCEL, 0, data_type, count, sid, subid)


def read_notify(data_type: int, count: int, sid: int, ioid: int) -> bytes:
    """READ_NOTIFY (the only read still supported by rsrv; READ/READ_SYNC are obsolete)."""
    return pack_header(READ_NOTIFY, 0, data_type, count, sid, ioid)


def write_notify(data_type: int, count: int, sid: int, ioid: int, payload: bytes) -> bytes:
    """WRITE_NOTIFY: a put that the server confirms once record processing completes."""
    payload = pad(payload)
    return pack_header(WRITE_NOTIFY, len(payload), data_type, count, sid, ioid) + payload


def echo() -> bytes:
    """ECHO: keepalive probe, answered by an identical message."""
    return HEADER.pack(ECHO, 0, 0, 0, 0, 0)


def events_off() -> bytes:
    """EVENTS_OFF: flow control, asks the server to stop (coalesce) monitor updates."""
    return HEADER.pack(EVENTS_OFF, 0, 0, 0, 0, 0)


def events_on() -> bytes:
    """EVENTS_ON: resumes monitor updates after EVENTS_OFF."""
    return HEADER.pack(EVENTS_ON, 0, 0, 0, 0, 0)


def client_name(user: str) -> bytes:
    """CLIENT_NAME: the user name the server's access security (UAG) sees."""
    return message(CLIENT_NAME, payload=user.encode() + b"\0")


def host_name(host: str) -> bytes:
    """HOST_NAME: the host name the server's access security (HAG) sees."""
    return message(HOST_NAME, payload=host.encode() + b"\0")


def repeater_register(client_ip: str = "127.0.0.1") -> bytes:
    """REPEATER_REGISTER: ask a caRepeater to forward beacons to the sending UDP port."""
    return HEADER.pack(REPEATER_REGISTER, 0, 0, 0, 0, ip_to_int(client_ip))


# ---------------------------------------------------------------- replies (server -> client)


def search_reply(port: int, cid: int, server_ip: int = 0xFFFFFFFF) -> bytes:
    """SEARCH reply; server_ip ~0 tells the client to use the datagram's source address."""
    body = _U16.pack(CA_MINOR_VERSION) + b"\0" * 6
    return HEADER.pack(SEARCH, 8, port, 0, server_ip, cid) + body


def not_found(cid: int) -> bytes:
    """NOT_FOUND: only sent when the search asked for DO_REPLY."""
    return HEADER.pack(NOT_FOUND, 0, DO_REPLY, CA_MINOR_VERSION, cid, cid)


def create_chan_reply(native_type: int, count: int, cid: int, sid: int) -> bytes:
    """CREATE_CHAN reply: native type and element count of the channel, plus the server id."""
    return pack_header(CREATE_CHAN, 0, native_type, count, cid, sid)


def create_ch_fail(cid: int) -> bytes:
    """CREATE_CH_FAIL: the server refuses (or no longer has) the channel."""
    return HEADER.pack(CREATE_CH_FAIL, 0, 0, 0, cid, 0)


def access_rights(cid: int, rights: int) -> bytes:
    """ACCESS_RIGHTS: bit 0 read, bit 1 write; pushed at create time and on every change."""
    return HEADER.pack(ACCESS_RIGHTS, 0, 0, 0, cid, rights)


def server_disconn(cid: int) -> bytes:
    """SERVER_DISCONN: the server dropped one channel (e.g. record deleted)."""
    return HEADER.pack(SERVER_DISCONN, 0, 0, 0, cid, 0)


def event_add_reply(data_type: int, count: int, subid: int, payload: bytes) -> bytes:
    """Monitor update (p1 = ECA status, p2 = subscription id)."""
    payload = pad(payload)
    return pack_header(EVENT_ADD, len(payload), data_type, count, ECA_NORMAL, subid) + payload


def read_notify_reply(data_type: int, count: int, ioid: int, payload: bytes) -> bytes:
    """READ_NOTIFY reply (p1 = ECA status, p2 = request id)."""
    payload = pad(payload)
    return pack_header(READ_NOTIFY, len(payload), data_type, count, ECA_NORMAL, ioid) + payload


def write_notify_reply(data_type: int, count: int, ioid: int, status: int = ECA_NORMAL) -> bytes:
    """WRITE_NOTIFY reply (p1 = ECA status, p2 = request id)."""
    return pack_header(WRITE_NOTIFY, 0, data_type, count, status, ioid)


def error(request: bytes, cid: int, status: int, text: str) -> bytes:
    """ERROR: the offending request header, then a message text."""
    return message(ERROR, 0, 0, cid, status, request[:16] + text.encode() + b"\0")


def beacon(port: int, beacon_id: int, server_ip: str = "127.0.0.1") -> bytes:
    """RSRV_IS_UP beacon: data_type = minor version, count = server TCP port."""
    return HEADER.pack(RSRV_IS_UP, 0, CA_MINOR_VERSION, port, beacon_id, ip_to_int(server_ip))


def repeater_confirm(client_ip: str = "127.0.0.1") -> bytes:
    """REPEATER_CONFIRM: a repeater accepted our REPEATER_REGISTER."""
    return HEADER.pack(REPEATER_CONFIRM, 0, 0, 0, 0, ip_to_int(client_ip))


def parse_event_add_payload(payload: bytes) -> int:
    """Return the DBE mask of an EVENT_ADD request payload."""
    return _EVENT_REQ.unpack_from(payload)[3]


def parse_error_payload(payload: bytes) -> tuple[Message | None, str]:
    """Split an ERROR payload into the echoed request header and the message text."""
    req = None
    if len(payload) >= 16:
        cmd, _size, dt, cnt, p1, p2 = HEADER.unpack_from(payload)
        req = Message(cmd, dt, cnt, p1, p2, b"")
    return req, cstring(payload[16:])


# ---------------------------------------------------------------- decoding


def iter_messages(data: bytes) -> Iterator[Message]:
    """Decode every complete message in ``data`` (a datagram, or a captured stream).

    Unlike :class:`Framer` this yields every message as a :class:`Message`,
    requests included, so it suits UDP, servers and tests; a trailing partial
    message is ignored.
    """
    end_all = len(data)
    off = 0
    while end_all - off >= 16:
        cmd, size, dt, cnt, p1, p2 = HEADER.unpack_from(data, off)
        start = off + 16
        if size == 0xFFFF and cnt == 0:
            if end_all - off < 24:
                return
            size, cnt = EXT_HEADER.unpack_from(data, start)
            start += 8
        end = start + size
        if end > end_all:
            return
        yield Message(cmd, dt, cnt, p1, p2, bytes(data[start:end]))
        off = end


EventHandler = Callable[[bytes, int, int], None]
OtherHandler = Callable[[int, int, int, int, int, bytes], None]


class Framer:
    """Streaming TCP framer: feed bytes, get callbacks per message.

    Monitor updates (EVENT_ADD with a payload) go to the handler added for
    their subscription id, ``handler(buf, offset, count)``: it decodes straight
    out of the receive buffer, so a scalar update costs one header unpack, one
    dict lookup and the handler.  Everything else goes to ``other(cmd,
    data_type, count, p1, p2, payload_bytes)``.  Partial messages are kept
    until the rest arrives.

    A subclass may deliver updates differently by replacing :meth:`dispatch`
    (and :meth:`add_handler`/:meth:`remove_handler` to learn the handlers):
    the gateway's ``BulkFramer`` hands its upstream updates over a whole read
    at a time.  :meth:`feed` keeps the partial messages for it.
    """

    __slots__ = ("_rest", "events", "other")

    def __init__(self) -> None:
        self._rest = b""
        self.events: dict[int, EventHandler] = {}
        self.other: OtherHandler = _ignore

    def add_handler(self, subid: int, handler: EventHandler) -> None:
        """Send the updates of subscription ``subid`` to ``handler``."""
        self.events[subid] = handler

    def remove_handler(self, subid: int) -> None:
        """Forget subscription ``subid`` (no error if it has no handler)."""
        self.events.pop(subid, None)

    def feed(self, data: bytes) -> None:
        """Consume ``data``; callbacks run synchronously before this returns."""
        if self._rest:
            data = self._rest + data
            self._rest = b""
        off = self.dispatch(data)
        if off < len(data):
            self._rest = data[off:]

    def dispatch(self, data: bytes) -> int:
        """Handle every complete message from the start of ``data``; returns where the
        first incomplete one starts (``len(data)`` if none)."""
        end_all = len(data)
        off = 0
        unpack = HEADER.unpack_from
        events = self.events
        other = self.other
        while end_all - off >= 16:
            cmd, size, dt, cnt, p1, p2 = unpack(data, off)
            start = off + 16
            if size == 0xFFFF and cnt == 0:
                if end_all - off < 24:
                    break
                size, cnt = EXT_HEADER.unpack_from(data, start)
                start += 8
            end = start + size
            if end > end_all:
                break
            if cmd == 1 and size:
                handler = events.get(p2)
                if handler is not None:
                    handler(data, start, cnt)
            else:
                other(cmd, dt, cnt, p1, p2, data[start:end])
            off = end
        return off

    @property
    def pending(self) -> int:
        """Bytes of an incomplete message waiting for more data."""
        return len(self._rest)


def _ignore(*_args: object) -> None:
    return None
