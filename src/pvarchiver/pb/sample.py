"""One PlainPB line <-> one Python object, for every one of the AA's 15 sample types.

This is the general (and reference) path of the codec; :mod:`pvarchiver.pb.fast` is a
vectorised path for scalar numeric streams that must produce the same bytes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from google.protobuf.message import DecodeError as _PBDecodeError

from .escape import escape, unescape
from .schema import MESSAGE_CLASS, PayloadInfoMsg, PayloadType
from .timestamps import from_year_seconds, year_start


class PBDecodeError(ValueError):
    """A line that is not a valid message of the expected type."""


@dataclass(slots=True)
class Sample:
    """One archived event.

    ``secs`` are Unix epoch seconds (UTC); the file's year and ``secondsintoyear`` are derived
    when the sample is written. ``val`` is ``str``, ``int``, ``float``, ``bytes`` (ScalarByte,
    VectorChar, V4GenericBytes) or a list for the numeric/string waveforms.
    """

    secs: int
    nanos: int
    val: Any
    severity: int = 0
    status: int = 0
    fields: dict[str, str] | None = None
    fieldactualchange: bool | None = None
    repeatcount: int | None = None
    user_tag: int | None = None

    @property
    def timestamp(self) -> tuple[int, int]:
        return (self.secs, self.nanos)


@dataclass(slots=True)
class PayloadInfo:
    """The header line of a PlainPB file (and of each chunk of a ``.raw`` response)."""

    type: PayloadType
    pvname: str
    year: int
    element_count: int | None = None
    headers: dict[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------- header


def encode_header(info: PayloadInfo) -> bytes:
    """Serialize a PayloadInfo (unescaped, no LF)."""
    msg = PayloadInfoMsg(type=int(info.type), pvname=info.pvname, year=info.year)
    if info.element_count is not None:
        msg.elementCount = info.element_count
    for name, val in info.headers.items():
        msg.headers.add(name=name, val=val)
    return msg.SerializeToString()


def decode_header(raw: bytes) -> PayloadInfo:
    """Parse an unescaped header line."""
    try:
        msg = PayloadInfoMsg.FromString(raw)
    except _PBDecodeError as e:
        raise PBDecodeError(f"not a PayloadInfo header: {e}") from None
    if not msg.IsInitialized():
        missing = ", ".join(msg.FindInitializationErrors())
        raise PBDecodeError(f"PayloadInfo header lacks required field(s): {missing}")
    try:
        ptype = PayloadType(msg.type)
    except ValueError:
        raise PBDecodeError(f"unknown payload type {msg.type}") from None
    return PayloadInfo(
        type=ptype,
        pvname=msg.pvname,
        year=msg.year,
        element_count=msg.elementCount if msg.HasField("elementCount") else None,
        headers={h.name: h.val for h in msg.headers},
    )


def header_line(info: PayloadInfo) -> bytes:
    """Escaped header with its terminating LF, ready to be the first line of a file."""
    return escape(encode_header(info)) + b"\n"


# ----------------------------------------------------------------------------- samples


# Waveform types whose ``val`` is a packed run of fixed-width little-endian numbers, with
# the numpy dtypes that convert to them exactly as protobuf would (``safe`` casts only).
_PACKED_FIXED = {
    PayloadType.WAVEFORM_DOUBLE: ("<f8", (np.float64, np.float32, np.int32, np.int16, np.uint8)),
    PayloadType.WAVEFORM_FLOAT: ("<f4", (np.float32,)),
    PayloadType.WAVEFORM_INT: ("<i4", (np.int32, np.int16, np.uint16, np.int8, np.uint8)),
}


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def encode_sample(ptype: PayloadType, year: int, s: Sample) -> bytes:
    """Serialize one sample of a file whose header says ``year`` (unescaped, no LF)."""
    soy = s.secs - year_start(year)
    if not 0 <= soy < year_start(year + 1) - year_start(year):
        raise ValueError(f"sample at {s.secs} does not belong to year {year}")
    cls = MESSAGE_CLASS[ptype]
    msg = cls(secondsintoyear=soy, nano=s.nanos)
    val = s.val
    packed = _PACKED_FIXED.get(ptype)
    if (
        packed is not None
        and isinstance(val, np.ndarray)
        and val.ndim == 1
        and val.dtype.type in packed[1]
    ):
        # Waveforms from CA arrive as numpy arrays: write the packed field (tag 3, length,
        # raw little-endian values) with numpy instead of converting each element to a
        # Python object for protobuf (~300 µs for 10,000 doubles). Fields serialize in
        # number order, so val goes right after secondsintoyear (1) and nano (2).
        head = msg.SerializeToString()
        raw = np.ascontiguousarray(val, dtype=packed[0]).tobytes()
        field3 = b"\x1a" + _varint(len(raw)) + raw if raw else b""
        _set_rest(msg, s)
        whole = msg.SerializeToString()
        return head + field3 + whole[len(head) :]
    if ptype.is_vector and ptype is not PayloadType.WAVEFORM_BYTE:
        msg.val.extend(val)
    elif ptype is PayloadType.SCALAR_BYTE and isinstance(val, int):
        msg.val = bytes([val & 0xFF])
    else:
        msg.val = val
    _set_rest(msg, s)
    return msg.SerializeToString()


def _set_rest(msg: Any, s: Sample) -> None:
    """Every field after ``val`` (4 and up)."""
    # The AA writes severity/status only when they are not zero.
    if s.severity:
        msg.severity = s.severity
    if s.status:
        msg.status = s.status
    if s.repeatcount is not None:
        msg.repeatcount = s.repeatcount
    if s.fields:
        for name, fval in s.fields.items():
            msg.fieldvalues.add(name=name, val=fval)
    if s.fieldactualchange is not None:
        msg.fieldactualchange = s.fieldactualchange
    if s.user_tag is not None:
        msg.userTag = s.user_tag


def decode_sample(ptype: PayloadType, year: int, raw: bytes) -> Sample:
    """Parse one unescaped sample line of a file whose header says ``year``."""
    try:
        msg = MESSAGE_CLASS[ptype].FromString(raw)
    except _PBDecodeError as e:
        raise PBDecodeError(f"not a {ptype.message_name}: {e}") from None
    # Like the AA's builder .build(): every required field (incl. a scalar's val and the
    # name/val of each FieldValue) must be present, or the line is not a sample.
    if not msg.IsInitialized():
        missing = ", ".join(msg.FindInitializationErrors())
        raise PBDecodeError(f"{ptype.message_name} lacks required field(s): {missing}")
    if ptype.is_vector and ptype is not PayloadType.WAVEFORM_BYTE:
        val: Any = list(msg.val)
    else:
        val = msg.val
    fields = {fv.name: fv.val for fv in msg.fieldvalues} if len(msg.fieldvalues) else None
    return Sample(
        secs=from_year_seconds(year, msg.secondsintoyear),
        nanos=msg.nano,
        val=val,
        severity=msg.severity,
        status=msg.status,
        fields=fields,
        fieldactualchange=msg.fieldactualchange if msg.HasField("fieldactualchange") else None,
        repeatcount=msg.repeatcount if msg.HasField("repeatcount") else None,
        user_tag=msg.userTag
        if ptype is PayloadType.V4_GENERIC_BYTES and msg.HasField("userTag")
        else None,
    )


def sample_line(ptype: PayloadType, year: int, s: Sample) -> bytes:
    """Escaped sample with its terminating LF."""
    return escape(encode_sample(ptype, year, s)) + b"\n"


def decode_line(ptype: PayloadType, year: int, line: bytes) -> Sample:
    """Unescape and parse one line (without its LF)."""
    return decode_sample(ptype, year, unescape(line))
