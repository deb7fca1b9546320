"""DBR payload *encoding* for a CA server: any requested type from one cached PV state.

Why a cached state rather than values: a gateway receives DBR_TIME_<native>
payloads from the IOC and most downstream clients ask for exactly that type,
so :class:`PVState` keeps the upstream payload bytes as they arrived and
:func:`encode` hands them back untouched in that case (no decode, no
re-encode).  Every other request (plain, STS, GR, CTRL, another native type,
another element count) is synthesised from the same state plus the metadata
(:class:`Meta`) taken from the IOC's DBR_CTRL, following ``db_access.h``
layouts including the RISC padding.  Pure code: no sockets, no asyncio.

Conversions follow what an IOC does for a field of another type: numeric
casts (C-like truncation, saturation for limits), numbers to strings with the
PV's precision, enum indices to their state strings and back.
"""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .dbr import (
    CHAR,
    DOUBLE,
    ENUM,
    EPICS_EPOCH_OFFSET,
    FLOAT,
    LONG,
    SHORT,
    STRING,
    Reading,
    data_size,
    element_size,
)
from .protocol import cstring

__all__ = [
    "CLASS_NAME",
    "STSACK_STRING",
    "Meta",
    "PVState",
    "convert_values",
    "default_meta",
    "empty_payload",
    "encode",
    "meta_from_reading",
    "payload_size",
    "values_from_python",
]

STSACK_STRING = 37
CLASS_NAME = 38

_BE = (None, ">i2", ">f4", ">u2", "u1", ">i4", ">f8")
_TIME_HEAD = struct.Struct(">hhII")
_STS_HEAD = struct.Struct(">hh")
_TIME_PAD = (0, 2, 0, 2, 3, 0, 4)
_STS_PAD = (0, 0, 0, 0, 1, 0, 4)
_INT_RANGE = {SHORT: (-32768, 32767), CHAR: (0, 255), LONG: (-(2**31), 2**31 - 1)}


@dataclass(slots=True)
class Meta:
    """Display/control metadata of a PV (what DBR_GR/DBR_CTRL carry).

    ``limits`` is (upper_disp, lower_disp, upper_alarm, upper_warning,
    lower_warning, lower_alarm, upper_ctrl, lower_ctrl), the wire order.
    """

    units: str = ""
    precision: int = 0
    limits: tuple[float, ...] = (0.0,) * 8
    enum_strings: tuple[str, ...] = ()


def meta_from_reading(rd: Reading) -> Meta:
    """Metadata from a decoded DBR_CTRL/GR reading (missing fields become 0/empty)."""
    lim = (
        rd.upper_disp_limit,
        rd.lower_disp_limit,
        rd.upper_alarm_limit,
        rd.upper_warning_limit,
        rd.lower_warning_limit,
        rd.lower_alarm_limit,
        rd.upper_ctrl_limit,
        rd.lower_ctrl_limit,
    )
    return Meta(
        units=rd.units or "",
        precision=rd.precision or 0,
        limits=tuple(float(x) if x is not None else 0.0 for x in lim),
        enum_strings=tuple(rd.enum_strings or ()),
    )


class PVState:
    """Value, alarm, timestamp and metadata of one PV, anchored on a DBR_TIME payload.

    ``time_payload`` is the unpadded DBR_TIME_<native> payload of ``count``
    elements; value/alarm/timestamp are read out of it on demand.
    """

    __slots__ = ("count", "meta", "native", "time_payload")

    def __init__(self, native: int, count: int, time_payload: bytes, meta: Meta | None = None):
        self.native = native
        self.count = count
        self.time_payload = time_payload
        self.meta = meta or Meta()

    @classmethod
    def from_value(
        cls,
        native: int,
        value: Any,
        *,
        status: int = 0,
        severity: int = 0,
        timestamp: float | None = None,
        meta: Meta | None = None,
    ) -> PVState:
        """Build a state from a Python value (scalar, sequence, numpy array or str)."""
        meta = meta or Meta()
        raw, count = values_from_python(native, value, meta.enum_strings)
        return cls.from_raw(
            native, count, raw, status=status, severity=severity, timestamp=timestamp, meta=meta
        )

    @classmethod
    def from_raw(
        cls,
        native: int,
        count: int,
        raw: bytes,
        *,
        status: int = 0,
        severity: int = 0,
        timestamp: float | None = None,
        meta: Meta | None = None,
    ) -> PVState:
        """Build a state from big-endian element bytes of the native type."""
        ts = time.time() if timestamp is None else timestamp
        secs = int(ts)
        nsec = min(999_999_999, round((ts - secs) * 1e9))
        head = _TIME_HEAD.pack(status, severity, max(0, secs - EPICS_EPOCH_OFFSET), nsec)
        return cls(native, count, head + b"\0" * _TIME_PAD[native] + raw, meta)

    @property
    def status(self) -> int:
        return _STS_HEAD.unpack_from(self.time_payload)[0]

    @property
    def severity(self) -> int:
        return _STS_HEAD.unpack_from(self.time_payload)[1]

    @property
    def alarm(self) -> bytes:
        """Status and severity as 4 raw bytes (cheap to compare between updates)."""
        return self.time_payload[:4]

    @property
    def stamp(self) -> tuple[int, int]:
        """(secPastEpoch, nsec) as on the wire (EPICS epoch)."""
        _st, _sev, sec, nsec = _TIME_HEAD.unpack_from(self.time_payload)
        return sec, nsec

    @property
    def raw_values(self) -> bytes:
        """Big-endian element bytes of the native type."""
        return self.time_payload[12 + _TIME_PAD[self.native] :]

    def value(self) -> Any:
        """The value as Python (scalar for count 1, else list/array); for tests and logs."""
        raw = self.raw_values
        if self.native == STRING:
            items = [cstring(raw[i * 40 : i * 40 + 40], utf8=True) for i in range(self.count)]
            return items[0] if self.count == 1 else items
        arr = np.frombuffer(raw, dtype=_BE[self.native], count=self.count)
        return arr[0].item() if self.count == 1 else arr


def _str40(text: str) -> bytes:
    return text.encode("utf-8", "replace")[:39].ljust(40, b"\0")


def values_from_python(
    native: int, value: Any, enum_strings: Sequence[str] = ()
) -> tuple[bytes, int]:
    """Python value(s) to big-endian element bytes of ``native``; returns (bytes, count)."""
    if native == STRING:
        items = [value] if isinstance(value, str | bytes) else list(value)
        out = b"".join(
            (v[:39].ljust(40, b"\0") if isinstance(v, bytes) else _str40(str(v))) for v in items
        )
        return out, len(items)
    if native == CHAR and isinstance(value, bytes | bytearray):
        return bytes(value), len(value)
    if native == ENUM and isinstance(value, str):
        idx = list(enum_strings).index(value) if value in enum_strings else int(value)
        return struct.pack(">H", idx), 1
    arr = np.atleast_1d(np.asarray(value, dtype=float if native in (FLOAT, DOUBLE) else None))
    with np.errstate(invalid="ignore", over="ignore"):
        return arr.astype(_BE[native]).tobytes(), int(arr.size)


def _format_number(v: float, native: int, precision: int) -> str:
    if native in (FLOAT, DOUBLE):
        if math.isnan(v) or math.isinf(v):
            return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")
        prec = max(0, min(precision, 17))
        if v != 0 and (abs(v) >= 1e15 or abs(v) < 10.0 ** (-prec) / 2):
            return f"{v:.{prec}e}"
        return f"{v:.{prec}f}"
    return str(int(v))


def _parse_number(text: str) -> float:
    text = text.strip()
    try:
        return float(text)
    except ValueError:
        try:
            return float(int(text, 0))
        except ValueError:
            return 0.0


def convert_values(src_native: int, raw: bytes, count: int, dst_native: int, meta: Meta) -> bytes:
    """Convert ``count`` big-endian elements from one native type to another."""
    if src_native == dst_native:
        return raw
    if dst_native == STRING:
        if src_native == ENUM:
            idx = np.frombuffer(raw, dtype=">u2", count=count)
            names = meta.enum_strings
            return b"".join(_str40(names[i] if i < len(names) else str(i)) for i in idx.tolist())
        nums = np.frombuffer(raw, dtype=_BE[src_native], count=count).tolist()
        return b"".join(_str40(_format_number(v, src_native, meta.precision)) for v in nums)
    if src_native == STRING:
        texts = [cstring(raw[i * 40 : i * 40 + 40], utf8=True) for i in range(count)]
        if dst_native == ENUM:
            names = meta.enum_strings
            nums = [names.index(t) if t in names else _parse_number(t) for t in texts]
        else:
            nums = [_parse_number(t) for t in texts]
        arr = np.asarray(nums, dtype=float)
    else:
        arr = np.frombuffer(raw, dtype=_BE[src_native], count=count)
    with np.errstate(invalid="ignore", over="ignore"):
        if dst_native in _INT_RANGE or dst_native == ENUM:
            arr = np.nan_to_num(np.asarray(arr, dtype=float))
        return arr.astype(_BE[dst_native]).tobytes()


def payload_size(dbr_type: int, count: int) -> int:
    """Unpadded payload bytes of ``count`` elements of ``dbr_type`` (0..34, 37, 38)."""
    if dbr_type == STSACK_STRING:
        return 8 + 40 * count
    if dbr_type == CLASS_NAME:
        return 40
    return data_size(dbr_type, count)


def _limit_pack(native: int, values: tuple[float, ...]) -> tuple[Any, ...]:
    if native in (FLOAT, DOUBLE):
        return values
    lo, hi = _INT_RANGE[native]
    out = []
    for v in values:
        if math.isnan(v):
            v = 0.0
        out.append(int(min(hi, max(lo, round(v)))))
    return tuple(out)


_GR_FMT = {
    SHORT: ">hh8s{n}h",
    FLOAT: ">hhhxx8s{n}f",
    CHAR: ">hh8s{n}Bx",
    LONG: ">hh8s{n}i",
    DOUBLE: ">hhhxx8s{n}d",
}


def _meta_head(family: int, native: int, status: int, severity: int, meta: Meta) -> bytes:
    """The GR (family 3) or CTRL (family 4) block in front of the values."""
    if native == STRING:
        return _STS_HEAD.pack(status, severity)
    if native == ENUM:
        names = meta.enum_strings[:16]
        strs = b"".join(n.encode("utf-8", "replace")[:25].ljust(26, b"\0") for n in names)
        return struct.pack(">hhh", status, severity, len(names)) + strs.ljust(16 * 26, b"\0")
    nlim = 8 if family == 4 else 6
    fmt = _GR_FMT[native].format(n=nlim)
    units = meta.units.encode("utf-8", "replace")[:7].ljust(8, b"\0")
    lims = _limit_pack(native, tuple(meta.limits[:nlim]))
    if native in (FLOAT, DOUBLE):
        return struct.pack(fmt, status, severity, meta.precision, units, *lims)
    return struct.pack(fmt, status, severity, units, *lims)


def encode(state: PVState, dbr_type: int, count: int, class_name: str = "") -> bytes:
    """Unpadded payload of ``dbr_type`` with ``count`` elements from ``state``.

    Elements beyond the state's count are zero-filled and extra ones dropped,
    as an IOC does for an explicit request count.  The identical-type case
    returns the stored upstream payload itself.
    """
    if dbr_type == CLASS_NAME:
        return _str40(class_name)
    src = state.native
    if dbr_type == STSACK_STRING:
        dst, family = STRING, -1
    else:
        family, dst = divmod(dbr_type, 7)
        if family == 2 and dst == src and count == state.count:
            return state.time_payload
    values = convert_values(src, state.raw_values, state.count, dst, state.meta)
    want = count * element_size(dst)
    if len(values) != want:
        values = values[:want].ljust(want, b"\0")
    if family == 0:
        return values
    payload = state.time_payload
    status, severity = _STS_HEAD.unpack_from(payload)
    if family == -1:
        return struct.pack(">hhHH", status, severity, 0, 0) + values
    if family == 1:
        return _STS_HEAD.pack(status, severity) + b"\0" * _STS_PAD[dst] + values
    if family == 2:
        return payload[:12] + b"\0" * _TIME_PAD[dst] + values
    return _meta_head(family, dst, status, severity, state.meta) + values


def empty_payload(dbr_type: int, count: int) -> bytes:
    """Zeroed payload (sent with an error status, as rsrv does on refused reads)."""
    return bytes(payload_size(dbr_type, count))


def default_meta(**kwargs: Any) -> Meta:
    """A Meta with keyword overrides (``limits`` may be given partially)."""
    lim = list(kwargs.pop("limits", ()))
    meta = Meta(**kwargs)
    if lim:
        meta.limits = tuple(lim + [0.0] * (8 - len(lim)))[:8]
    return meta
