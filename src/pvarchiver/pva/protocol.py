"""PV Access messages: the 8-byte header, a streaming framer, Status, and search messages.

Pure code, no sockets. Every PVA message starts with ``0xCA, version, flags, command`` and
a 32-bit payload size in the byte order that bit 7 of the flags names (set = big-endian).
Bit 0 marks a *control* message: its "size" word is a value and no payload follows
(``SET_BYTE_ORDER`` is the one a client must obey: the server sends it first and expects
every later client message in that order). Bits 4-5 mark segments of one large message;
the framer joins them before handing the message on. Bit 6 says the server sent it.

Search (UDP, or TCP to a name server) is a ``SEARCH`` with a sequence id, flags, the
address and port to reply to, the protocols accepted (``tcp``) and (cid, name) pairs; the
``SEARCH_RESPONSE`` carries the server GUID, the sequence id, the server's address and TCP
port (address all zeros = "the address this came from"), ``found`` and the cids.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Iterable, Iterator
from typing import NamedTuple

from .codec import DecodeError, Reader, Writer

__all__ = [
    "Frame",
    "Framer",
    "ProtocolError",
    "SearchResponse",
    "Status",
    "build_message",
    "build_search",
    "parse_search_response",
    "read_status",
    "write_status",
]

MAGIC, VERSION = 0xCA, 2
F_CONTROL, SEG_FIRST, SEG_LAST, SEG_MASK, F_SERVER, F_MSB = 0x01, 0x10, 0x20, 0x30, 0x40, 0x80

# application commands
BEACON, CONNECTION_VALIDATION, ECHO, SEARCH, SEARCH_RESPONSE = 0, 1, 2, 3, 4
CREATE_CHANNEL, DESTROY_CHANNEL, CONNECTION_VALIDATED, GET = 7, 8, 9, 10
MONITOR, DESTROY_REQUEST, MESSAGE = 13, 15, 18
# control commands
SET_MARKER, ACK_MARKER, SET_BYTE_ORDER = 0, 1, 2
# operation subcommands
SUB_INIT, SUB_DESTROY, SUB_GET, SUB_PIPELINE, MONITOR_START, MONITOR_STOP = (
    0x08,
    0x10,
    0x40,
    0x80,
    0x44,
    0x04,
)

#: largest message accepted (a hostile or broken peer must not make us buffer gigabytes)
MAX_MESSAGE = 64 * 1024 * 1024
_SIZE = {">": struct.Struct(">I"), "<": struct.Struct("<I")}


class ProtocolError(DecodeError):
    """A message that breaks the protocol (bad magic, size, state): close the connection."""


class Frame(NamedTuple):
    """One complete message (segments joined) or one control message."""

    command: int
    flags: int
    payload: bytes  #: empty for control messages
    value: int  #: the size word: payload length, or a control message's value

    @property
    def order(self) -> str:
        return ">" if self.flags & F_MSB else "<"

    @property
    def control(self) -> bool:
        return bool(self.flags & F_CONTROL)


def build_message(command: int, body: bytes | bytearray, order: str, server: bool = False) -> bytes:
    """Header + body of one application message."""
    flags = (F_MSB if order == ">" else 0) | (F_SERVER if server else 0)
    return bytes((MAGIC, VERSION, flags, command)) + _SIZE[order].pack(len(body)) + bytes(body)


def build_control(command: int, value: int, order: str, server: bool = False) -> bytes:
    flags = F_CONTROL | (F_MSB if order == ">" else 0) | (F_SERVER if server else 0)
    return bytes((MAGIC, VERSION, flags, command)) + _SIZE[order].pack(value)


class Framer:
    """Splits a byte stream into :class:`Frame`\\ s. ``from_server`` says which direction
    bit every header must carry (a mismatch is a protocol error, as in pvxs)."""

    def __init__(self, from_server: bool = True) -> None:
        self._buf = bytearray()
        self._want_server = F_SERVER if from_server else 0
        self._seg_cmd = -1
        self._seg_flags = 0
        self._seg: list[bytes] = []
        self._seg_size = 0

    def feed(self, data: bytes) -> Iterator[Frame]:
        """Add received bytes; yield every message now complete. Raises ProtocolError."""
        buf = self._buf
        buf += data
        pos = 0
        try:
            while len(buf) - pos >= 8:
                if buf[pos] != MAGIC or buf[pos + 1] == 0:
                    raise ProtocolError(f"bad PVA header {bytes(buf[pos : pos + 8]).hex()}")
                flags, cmd = buf[pos + 2], buf[pos + 3]
                if flags & F_SERVER != self._want_server:
                    raise ProtocolError("PVA message in the wrong direction")
                size = _SIZE[">" if flags & F_MSB else "<"].unpack_from(buf, pos + 4)[0]
                if flags & F_CONTROL:
                    pos += 8
                    yield Frame(cmd, flags, b"", size)
                    continue
                if size > MAX_MESSAGE:
                    raise ProtocolError(f"PVA message of {size} bytes is too large")
                if len(buf) - pos < 8 + size:
                    break
                payload = bytes(buf[pos + 8 : pos + 8 + size])
                pos += 8 + size
                frame = self._segment(cmd, flags, payload)
                if frame is not None:
                    yield frame
        finally:
            del buf[:pos]

    def _segment(self, cmd: int, flags: int, payload: bytes) -> Frame | None:
        seg = flags & SEG_MASK
        continuation = bool(seg & SEG_LAST)  # middle or last
        if continuation != (self._seg_cmd >= 0) or (continuation and cmd != self._seg_cmd):
            raise ProtocolError("PVA segmentation violation")
        if seg == 0:
            return Frame(cmd, flags, payload, len(payload))
        if seg == SEG_FIRST:
            self._seg_cmd, self._seg_flags, self._seg, self._seg_size = cmd, flags, [], 0
        self._seg.append(payload)
        self._seg_size += len(payload)
        if self._seg_size > MAX_MESSAGE:
            raise ProtocolError("segmented PVA message is too large")
        if seg == SEG_LAST:
            whole = b"".join(self._seg)
            flags = self._seg_flags & ~SEG_MASK
            self._seg_cmd, self._seg = -1, []
            return Frame(cmd, flags, whole, len(whole))
        return None


class Status(NamedTuple):
    """A server's status: type 0 OK, 1 warning, 2 error, 3 fatal; message; call tree."""

    type: int = 0
    message: str = ""
    stack: str = ""

    @property
    def ok(self) -> bool:
        return self.type in (0, 1)

    def __str__(self) -> str:
        kind = ("OK", "warning", "error", "fatal")[self.type] if self.type < 4 else "?"
        return f"{kind}: {self.message}" if self.message else kind


OK = Status()


def read_status(r: Reader) -> Status:
    t = r.u8()
    if t == 0xFF:
        return OK
    if t > 3:
        raise DecodeError(f"unknown status type {t}")
    return Status(t, r.string(), r.string())


def write_status(w: Writer, status: Status) -> None:
    if status == OK:
        w.u8(0xFF)
        return
    w.u8(status.type)
    w.string(status.message)
    w.string(status.stack)


# ---------------------------------------------------------------- search


class SearchResponse(NamedTuple):
    guid: bytes
    seq: int
    addr: str | None  #: None when the server left it to the datagram's source address
    port: int
    protocol: str
    found: bool
    cids: tuple[int, ...]


def _addr16(addr: str | None) -> bytes:
    if not addr:
        return bytes(16)
    return ipaddress.IPv6Address(f"::ffff:{addr}").packed


def build_search(
    seq: int,
    channels: Iterable[tuple[int, str]],
    reply_port: int,
    *,
    unicast: bool = True,
    reply_addr: str | None = None,
    order: str = ">",
) -> bytes:
    """A SEARCH message (header included) for (cid, name) pairs; the reply goes to
    ``reply_addr`` (None: the datagram's source address) and ``reply_port``."""
    w = Writer(order)
    chans = list(channels)
    w.pack("IB3x", seq & 0xFFFFFFFF, 0x80 if unicast else 0)
    w.buf += _addr16(reply_addr)
    w.pack("H", reply_port)
    w.size(1)
    w.string("tcp")
    w.pack("H", len(chans))
    for cid, name in chans:
        w.pack("I", cid & 0xFFFFFFFF)
        w.string(name)
    return build_message(SEARCH, w.buf, order)


def search_payload_size(name: str) -> int:
    """Bytes one name adds to a SEARCH body (to pack datagrams)."""
    n = len(name.encode())
    return 4 + n + (1 if n < 254 else 5)


#: bytes of a SEARCH message before the first name
SEARCH_OVERHEAD = 8 + 4 + 4 + 16 + 2 + 1 + 4 + 2


def parse_search_response(payload: bytes, order: str) -> SearchResponse:
    """The body of a SEARCH_RESPONSE. Raises DecodeError."""
    r = Reader(payload, order)
    guid = r.take(12)
    seq = r.u32()
    raw = r.take(16)
    port = r.u16()
    protocol = r.string()
    found = bool(r.u8())
    n = r.u16()
    r.need(4 * n)
    cids = tuple(r.u32() for _ in range(n))
    addr: str | None = None
    if any(raw):
        ip = ipaddress.IPv6Address(raw)
        mapped = ip.ipv4_mapped
        addr = str(mapped) if mapped is not None else str(ip)
        if addr == "0.0.0.0":
            addr = None
    return SearchResponse(guid, seq, addr, port, protocol, found, cids)
