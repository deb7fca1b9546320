"""DBR payload layouts and decoders (pure, no I/O).

CA payloads are C structs from ``db_access.h`` sent big-endian, including the
"RISC padding" fields that align the value; getting one pad byte wrong shifts
every value, so each layout is spelled out here once and tested against a real
IOC.  Two kinds of decoders are offered:

* :func:`time_event_decoder` builds a closure for the monitor hot path that
  turns a DBR_TIME_* payload straight into ``callback(secs, nanos, severity,
  status, value)`` with one ``struct.unpack_from`` for scalars;
* :func:`decode` turns any supported DBR payload into a :class:`Reading`
  (used for gets and DBR_CTRL/GR metadata, where speed does not matter).

Timestamps are returned as POSIX seconds (EPICS epoch 1990-01-01 + 631152000)
and nanoseconds, because that is what the archiver's storage layer works in.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from pvarchiver.pb import PayloadType

from .protocol import cstring

log = logging.getLogger(__name__)

__all__ = [
    "CHAR",
    "DOUBLE",
    "ENUM",
    "EPICS_EPOCH_OFFSET",
    "FLOAT",
    "INT16",
    "LONG",
    "NATIVE_NAMES",
    "SHORT",
    "STRING",
    "EventCallback",
    "Reading",
    "ctrl_type",
    "data_size",
    "decode",
    "element_size",
    "encode",
    "gr_type",
    "native_of",
    "payload_type",
    "sts_type",
    "time_event_decoder",
    "time_type",
]

STRING = 0
SHORT = INT16 = 1
FLOAT = 2
ENUM = 3
CHAR = 4
LONG = 5
DOUBLE = 6
NATIVE_NAMES = ("STRING", "SHORT", "FLOAT", "ENUM", "CHAR", "LONG", "DOUBLE")

EPICS_EPOCH_OFFSET = 631152000  # POSIX seconds at 1990-01-01T00:00:00Z
MAX_STRING_SIZE = 40
MAX_UNITS_SIZE = 8
MAX_ENUM_STATES = 16
MAX_ENUM_STRING_SIZE = 26

_ELEM_FMT = ("40s", "h", "f", "H", "B", "i", "d")
_ELEM_SIZE = (40, 2, 4, 2, 1, 4, 8)
_NP_DTYPE = (None, ">i2", ">f4", ">u2", "u1", ">i4", ">f8")
_NP_NATIVE = (None, "<i2", "<f4", "<u2", "u1", "<i4", "<f8")

# Bytes in front of the value(s) for each family, indexed by native type.
_STS_OFF = (4, 4, 4, 4, 5, 4, 8)
_TIME_OFF = (12, 14, 12, 14, 15, 12, 16)
_GR_OFF = (4, 24, 40, 422, 19, 36, 64)
_CTRL_OFF = (4, 28, 48, 422, 21, 44, 80)


def sts_type(native: int) -> int:
    """DBR_STS_<native>: value + status/severity."""
    return native + 7


def time_type(native: int) -> int:
    """DBR_TIME_<native>: what archivers subscribe with."""
    return native + 14


def gr_type(native: int) -> int:
    """DBR_GR_<native>: graphic metadata (units, precision, display/alarm limits)."""
    return native + 21


def ctrl_type(native: int) -> int:
    """DBR_CTRL_<native>: GR plus control limits; what archivers read for metadata."""
    return native + 28


def native_of(dbr_type: int) -> int:
    """Native type underlying any DBR_x type 0..34."""
    if not 0 <= dbr_type <= 34:
        raise ValueError(f"unsupported DBR type {dbr_type}")
    return dbr_type % 7


def element_size(native: int) -> int:
    """Bytes per element of a native type on the wire."""
    return _ELEM_SIZE[native]


# bytes before the value for DBR types 0..34, looked up once per request
_HEADER_SIZES = tuple(
    (0, _STS_OFF[n], _TIME_OFF[n], _GR_OFF[n], _CTRL_OFF[n])[t // 7]
    for t in range(35)
    for n in (t % 7,)
)


def _header_size(dbr_type: int) -> int:
    return _HEADER_SIZES[dbr_type]


def data_size(dbr_type: int, count: int) -> int:
    """Unpadded payload size of a DBR of ``count`` elements (used for MAX_ARRAY_BYTES checks)."""
    native = native_of(dbr_type)
    return _header_size(dbr_type) + count * _ELEM_SIZE[native]


def payload_type(native: int, count: int) -> PayloadType:
    """The AA PB PayloadType for a channel of this native type and element count.

    Scalars (count 1) map to SCALAR_*, arrays to WAVEFORM_*; the AA stores CA
    LONG as its "INT" types and CHAR as "BYTE" (VectorChar for waveforms).
    """
    scalar = (
        PayloadType.SCALAR_STRING,
        PayloadType.SCALAR_SHORT,
        PayloadType.SCALAR_FLOAT,
        PayloadType.SCALAR_ENUM,
        PayloadType.SCALAR_BYTE,
        PayloadType.SCALAR_INT,
        PayloadType.SCALAR_DOUBLE,
    )[native]
    return scalar if count == 1 else PayloadType(scalar + 7)


def _values(native: int, buf: bytes, off: int, count: int, as_array: bool) -> Any:
    """Value(s) at ``off``: a scalar when not an array, else numpy / bytes / list[str]."""
    if native == STRING:
        strings = [cstring(buf[off + i * 40 : off + i * 40 + 40], utf8=True) for i in range(count)]
        return strings if as_array else (strings[0] if strings else "")
    if not as_array:
        return struct.unpack_from(">" + _ELEM_FMT[native], buf, off)[0]
    if native == CHAR:
        return bytes(buf[off : off + count])
    arr = np.frombuffer(buf, dtype=_NP_DTYPE[native], count=count, offset=off)
    return arr.astype(_NP_NATIVE[native])


EventCallback = Callable[[int, int, int, int, Any], None]

# One whole-payload struct per native type, shared by every subscription (a Struct is ~400
# bytes; an archiver has one subscription per PV).
_TIME_SCALAR = tuple(
    struct.Struct(f">hhII{_TIME_OFF[n] - 12}x{_ELEM_FMT[n]}") for n in range(len(_ELEM_FMT))
)


_TIME_HEAD = struct.Struct(">hhII").unpack_from  # shared by every general decoder


def time_event_decoder(
    native: int, as_array: bool, callback: EventCallback
) -> Callable[[bytes, int, int], None]:
    """Hot-path decoder of DBR_TIME_<native> for :class:`~pvarchiver.ca.protocol.Framer`.

    Returns ``handler(buf, offset, count)`` that calls ``callback(secs, nanos,
    severity, status, value)`` with POSIX seconds.  Scalars of numeric types
    use a single precompiled struct covering the whole payload.
    """
    epoch = EPICS_EPOCH_OFFSET
    if not as_array and native != STRING:
        unpack = _TIME_SCALAR[native].unpack_from

        def scalar(buf: bytes, off: int, _count: int) -> None:
            st, sev, sec, ns, val = unpack(buf, off)
            try:
                callback(sec + epoch, ns, sev, st, val)
            except Exception:
                log.exception("CA monitor callback failed")

        return scalar

    return _GeneralTimeDecoder(native, as_array, callback)


class _GeneralTimeDecoder:
    """DBR_TIME of strings and arrays (see :func:`time_event_decoder`).

    A small object rather than a closure: an archiver holds one per archive-field channel
    (8 per PV, DBR_TIME_STRING), and a closure with its cells and a Struct of its own cost
    ~600 bytes each, this ~80."""

    __slots__ = ("as_array", "callback", "native", "voff")

    def __init__(self, native: int, as_array: bool, callback: EventCallback) -> None:
        self.native = native
        self.as_array = as_array
        self.callback = callback
        self.voff = _TIME_OFF[native]

    def __call__(self, buf: bytes, off: int, count: int) -> None:
        st, sev, sec, ns = _TIME_HEAD(buf, off)
        native = self.native
        try:
            self.callback(
                sec + EPICS_EPOCH_OFFSET,
                ns,
                sev,
                st,
                _values(native, buf, off + self.voff, count, self.as_array),
            )
        except Exception:
            log.exception("CA monitor callback failed")


@dataclass(slots=True)
class Reading:
    """A decoded DBR of any family; fields the family does not carry stay None."""

    value: Any
    status: int = 0
    severity: int = 0
    secs: int | None = None
    nanos: int | None = None
    units: str | None = None
    precision: int | None = None
    upper_disp_limit: float | None = None
    lower_disp_limit: float | None = None
    upper_alarm_limit: float | None = None
    upper_warning_limit: float | None = None
    lower_warning_limit: float | None = None
    lower_alarm_limit: float | None = None
    upper_ctrl_limit: float | None = None
    lower_ctrl_limit: float | None = None
    enum_strings: list[str] | None = field(default=None)

    @property
    def timestamp(self) -> float | None:
        """POSIX time as a float (convenience; loses sub-microsecond precision)."""
        if self.secs is None:
            return None
        return self.secs + (self.nanos or 0) * 1e-9


_LIMIT_FMT = ("", "h", "f", "", "B", "i", "d")


def decode(dbr_type: int, buf: bytes, count: int, as_array: bool | None = None) -> Reading:
    """Decode a DBR payload of any supported family (plain, STS, TIME, GR, CTRL).

    ``as_array`` defaults to ``count != 1``; pass True for one-element waveforms
    so they keep the array type of their channel.
    """
    native = native_of(dbr_type)
    family = dbr_type // 7
    if as_array is None:
        as_array = count != 1
    rd = Reading(None)
    if family == 0:
        rd.value = _values(native, buf, 0, count, as_array)
        return rd
    rd.status, rd.severity = struct.unpack_from(">hh", buf, 0)
    if family == 2:
        sec, rd.nanos = struct.unpack_from(">II", buf, 4)
        rd.secs = sec + EPICS_EPOCH_OFFSET
    elif family in (3, 4) and native != STRING:
        ctrl = family == 4
        if native == ENUM:
            (nstr,) = struct.unpack_from(">h", buf, 4)
            rd.enum_strings = [
                cstring(buf[6 + i * 26 : 6 + i * 26 + 26], utf8=True)
                for i in range(max(0, min(nstr, MAX_ENUM_STATES)))
            ]
        else:
            pos = 4
            if native in (FLOAT, DOUBLE):
                rd.precision = struct.unpack_from(">h", buf, pos)[0]
                pos += 4
            rd.units = cstring(buf[pos : pos + MAX_UNITS_SIZE], utf8=True)
            pos += MAX_UNITS_SIZE
            nlim = 8 if ctrl else 6
            lims = struct.unpack_from(f">{nlim}{_LIMIT_FMT[native]}", buf, pos)
            (
                rd.upper_disp_limit,
                rd.lower_disp_limit,
                rd.upper_alarm_limit,
                rd.upper_warning_limit,
                rd.lower_warning_limit,
                rd.lower_alarm_limit,
            ) = lims[:6]
            if ctrl:
                rd.upper_ctrl_limit, rd.lower_ctrl_limit = lims[6:]
    rd.value = _values(native, buf, _header_size(dbr_type), count, as_array)
    return rd


def encode(native: int, value: Any) -> tuple[bytes, int]:
    """Encode a put value as a plain native DBR; returns (payload, count)."""
    if native == STRING:
        items = [value] if isinstance(value, str | bytes) else list(value)
        out = b"".join(
            (v.encode() if isinstance(v, str) else v)[: MAX_STRING_SIZE - 1].ljust(40, b"\0")
            for v in items
        )
        return out, len(items)
    if native == CHAR and isinstance(value, bytes | bytearray):
        return bytes(value), len(value)
    arr = np.atleast_1d(np.asarray(value)).astype(_NP_DTYPE[native])
    return arr.tobytes(), int(arr.size)
