"""Bare CA client circuits that only timestamp what arrives; decoding happens afterwards.

Why: on a 2-core machine, Python clients that decode 100,000 events/s take
more CPU than the gateway they measure, and their scheduling delay becomes
the "latency" reported.  These circuits do the CA handshake and subscriptions
with :mod:`pvarchiver.ca.protocol`, then in the measured window only call
``recv`` and keep ``(time.time(), bytes)``: the receive time of each event is
the time its last byte was read.  Timestamps and values are decoded after the
window, so the clients cost a few microseconds per read, not per event.

Receive times come from the kernel (``SO_TIMESTAMPNS``, Linux): the time the
last segment of a read arrived, not the time this process got round to
reading it, so a client delayed by the scheduler (two busy cores) does not
shift its own measurement.  Elsewhere ``time.time()`` at the read is used.
"""

from __future__ import annotations

import bisect
import selectors
import socket
import struct
import sys
import time
from collections.abc import Iterable

from pvarchiver.ca import protocol as P

DBR_TIME_DOUBLE = 20
EPICS_EPOCH = 631152000  # 1990-01-01 in POSIX seconds
_TIME = struct.Struct(">hhII")
_TIMESPEC = struct.Struct("@qq")
# not in Python's socket module: 35 on Linux x86/ARM (asm-generic/socket.h)
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35 if sys.platform == "linux" else None)


class RecordingCircuit:
    """One TCP circuit subscribed to ``names`` as DBR_TIME_DOUBLE (subscription id = index)."""

    def __init__(self, addr: tuple[str, int], names: list[str], keep: bool) -> None:
        self.keep = keep  # keep the bytes (latency) or only count them (load)
        self.chunks: list[tuple[float, bytes]] = []
        self.nbytes = 0
        self.sock = socket.create_connection(addr, timeout=60)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        if SO_TIMESTAMPNS is not None:
            self.sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
        out = [P.version(), P.client_name("bench"), P.host_name("localhost")]
        out += [P.create_chan(name, cid) for cid, name in enumerate(names)]
        self.sock.sendall(b"".join(out))
        self.names = names

    def subscribe(self) -> None:
        """Wait for every CREATE_CHAN reply, then add one monitor per channel."""
        sids: dict[int, int] = {}
        rest = b""
        while len(sids) < len(self.names):
            data = self.sock.recv(1 << 16)
            if not data:
                raise ConnectionError("server closed the circuit during channel creation")
            rest += data
            used = 0
            for msg in P.iter_messages(rest):
                used += 16 + len(msg.payload)
                if msg.cmd == P.CREATE_CHAN:
                    sids[msg.p1] = msg.p2
                elif msg.cmd == P.CREATE_CH_FAIL:
                    raise ConnectionError(f"channel {self.names[msg.p1]} refused")
            rest = rest[used:]
        self.sock.sendall(
            b"".join(P.event_add(DBR_TIME_DOUBLE, 1, sid, cid) for cid, sid in sids.items())
        )
        self.sock.setblocking(False)


def pump(circuits: Iterable[RecordingCircuit], seconds: float, record: bool) -> None:
    """Read every circuit for ``seconds``; with ``record`` keep or count what arrives."""
    sel = selectors.DefaultSelector()
    for c in circuits:
        sel.register(c.sock, selectors.EVENT_READ, c)
    end = time.monotonic() + seconds
    try:
        while (left := end - time.monotonic()) > 0:
            for key, _ in sel.select(left):
                c: RecordingCircuit = key.data
                while True:
                    try:
                        data, anc, _flags, _addr = c.sock.recvmsg(1 << 20, 64)
                    except BlockingIOError:
                        break
                    if not data:
                        raise ConnectionError("server closed a benchmark circuit")
                    if record:
                        if c.keep:
                            c.chunks.append((_arrival(anc), data))
                        c.nbytes += len(data)
    finally:
        sel.close()


def _arrival(anc: list[tuple[int, int, bytes]]) -> float:
    """The kernel's receive time of a read (SO_TIMESTAMPNS), else now."""
    for level, kind, data in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS and len(data) >= 16:
            secs, nanos = _TIMESPEC.unpack_from(data)
            return secs + nanos * 1e-9
    return time.time()


def arrivals(chunks: list[tuple[float, bytes]]) -> dict[tuple[int, int, int], float]:
    """``(subscription id, secs, nanos) -> receive time`` for every DBR_TIME_DOUBLE event.

    The stream is decoded from the first message boundary of the first chunk
    (recording starts between reads, which may split a message: anything
    before a plausible header is skipped by resynchronising on the event size).
    """
    if not chunks:
        return {}
    data = b"".join(c[1] for c in chunks)
    ends = []
    total = 0
    for _, part in chunks:
        total += len(part)
        ends.append(total)
    off = _first_event(data)
    out: dict[tuple[int, int, int], float] = {}
    for msg_off, msg in _walk(data, off):
        if msg.cmd == P.EVENT_ADD and msg.data_type == DBR_TIME_DOUBLE and len(msg.payload) >= 24:
            _status, _sev, secs, nanos = _TIME.unpack_from(msg.payload)
            last_byte = msg_off + 16 + len(msg.payload) - 1
            out[(msg.p2, secs, nanos)] = chunks[bisect.bisect_right(ends, last_byte)][0]
    return out


def latencies(got: dict[tuple[int, int, int], float]) -> list[float]:
    """Receive time minus the IOC's record timestamp, seconds."""
    return [t - (EPICS_EPOCH + secs + nanos * 1e-9) for (_, secs, nanos), t in got.items()]


def _first_event(data: bytes) -> int:
    """Offset of the first whole DBR_TIME_DOUBLE event message (40 bytes)."""
    for off in range(min(len(data) - 16, 4096)):
        cmd, size, dt, cnt, _p1, _p2 = P.HEADER.unpack_from(data, off)
        if cmd == P.EVENT_ADD and size == 24 and dt == DBR_TIME_DOUBLE and cnt == 1:
            return off
    return 0


def _walk(data: bytes, off: int) -> Iterable[tuple[int, P.Message]]:
    for msg in P.iter_messages(memoryview(data)[off:]):
        yield off, msg
        off += 16 + len(msg.payload)
