"""PVWS ``update`` messages from live values: the fields and encodings PVWS's ``Vtype2Json``
writes (``docs/pvws.md``), with no I/O.

A value is a :class:`Update` (timestamp, severity, the value as the CA client decodes it), its
kind a VType name chosen from the PV's :class:`~pvarchiver.pb.PayloadType`, and its display
metadata a :class:`Meta` read once per PV (DBR_CTRL). :func:`encode` turns one update of one
PV into the JSON text PVWS would send, given what this socket sent for the PV before.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..pb import PayloadType

#: CA severity -> PVWS's AlarmSeverity names
SEVERITIES = ("NONE", "MINOR", "MAJOR", "INVALID", "UNDEFINED")
INVALID = 3

#: VType simple names PVWS sends as ``vtype``, per stored type
VTYPES: dict[PayloadType, str] = {
    PayloadType.SCALAR_DOUBLE: "VDouble",
    PayloadType.SCALAR_FLOAT: "VFloat",
    PayloadType.SCALAR_INT: "VInt",
    PayloadType.SCALAR_SHORT: "VShort",
    PayloadType.SCALAR_BYTE: "VByte",
    PayloadType.SCALAR_ENUM: "VEnum",
    PayloadType.SCALAR_STRING: "VString",
    PayloadType.WAVEFORM_DOUBLE: "VDoubleArray",
    PayloadType.WAVEFORM_FLOAT: "VFloatArray",
    PayloadType.WAVEFORM_INT: "VIntArray",
    PayloadType.WAVEFORM_SHORT: "VShortArray",
    PayloadType.WAVEFORM_BYTE: "VByteArray",
    PayloadType.WAVEFORM_STRING: "VStringArray",
    PayloadType.WAVEFORM_ENUM: "VEnumArray",
}
#: the b64 field and little-endian element type of each numeric array VType
ARRAY_FIELDS = {
    "VDoubleArray": ("b64dbl", "<f8"),
    "VFloatArray": ("b64flt", "<f4"),
    "VShortArray": ("b64srt", "<i2"),
    "VIntArray": ("b64int", "<i4"),
    "VByteArray": ("b64byt", "u1"),
}
#: the families ``Vtype2Json`` compares a previous value with to send a severity change
NUMBER, STRING, ENUM, ARRAY, OTHER = "number", "string", "enum", "array", "other"
FAMILIES = {
    "VDouble": NUMBER,
    "VFloat": NUMBER,
    "VInt": NUMBER,
    "VShort": NUMBER,
    "VByte": NUMBER,
    "VString": STRING,
    "VEnum": ENUM,
    **dict.fromkeys(ARRAY_FIELDS, ARRAY),
}


@dataclass(frozen=True, slots=True)
class Meta:
    """A PV's kind and display metadata, as PVWS sends them on a first update."""

    vtype: str
    units: str = ""
    description: str = ""
    precision: int | None = None
    display: tuple[float, float] | None = None
    warning: tuple[float, float] | None = None
    alarm: tuple[float, float] | None = None
    labels: tuple[str, ...] = ()

    @property
    def family(self) -> str:
        return FAMILIES.get(self.vtype, OTHER)

    @property
    def is_array(self) -> bool:
        return self.family == ARRAY or self.vtype in ("VStringArray", "VEnumArray")


def meta_for(ptype: PayloadType, reading: Any = None, description: str = "") -> Meta:
    """A :class:`Meta` for ``ptype`` from a DBR_CTRL ``reading`` (a ``ca.dbr.Reading``, or None
    when it could not be read: then only the kind is known)."""
    vtype = VTYPES.get(ptype, "VString")
    if reading is None:
        return Meta(vtype, description=description)

    def pair(lo: float | None, hi: float | None) -> tuple[float, float] | None:
        return None if lo is None or hi is None else (float(lo), float(hi))

    return Meta(
        vtype,
        units=reading.units or "",
        description=description,
        precision=reading.precision,
        display=pair(reading.lower_disp_limit, reading.upper_disp_limit),
        warning=pair(reading.lower_warning_limit, reading.upper_warning_limit),
        alarm=pair(reading.lower_alarm_limit, reading.upper_alarm_limit),
        labels=tuple(reading.enum_strings or ()),
    )


class Update:
    """One live value of a PV. ``disconnected``: PVWS's NaN VDouble with INVALID severity
    that core-pv emits when a PV disconnects."""

    __slots__ = ("disconnected", "nanos", "secs", "severity", "shared", "value")

    def __init__(
        self, secs: int, nanos: int, severity: int, value: Any, disconnected: bool = False
    ) -> None:
        self.secs = secs
        self.nanos = nanos
        self.severity = severity
        self.value = value
        self.disconnected = disconnected
        #: the value fields encoded once, shared by every socket that sends them (fan-out)
        self.shared: str | None = None

    @classmethod
    def lost(cls, now: float) -> Update:
        secs = int(now)
        return cls(secs, int((now - secs) * 1e9), INVALID, math.nan, disconnected=True)


def _num(x: float) -> float | str:
    """A finite number as it is, else PVWS's "NaN" (Jackson's WRITE_NAN_AS_STRINGS)."""
    return x if math.isfinite(x) else "NaN"


def _display(meta: Meta, out: dict[str, Any]) -> None:
    out["units"] = meta.units
    out["description"] = meta.description
    if meta.precision is not None:
        out["precision"] = meta.precision
    for (lo, hi), rng in (
        (("min", "max"), meta.display),
        (("warn_low", "warn_high"), meta.warning),
        (("alarm_low", "alarm_high"), meta.alarm),
    ):
        if rng is not None:
            out[lo] = _num(rng[0])
            out[hi] = _num(rng[1])


def _value_fields(meta: Meta, upd: Update) -> dict[str, Any]:
    """The value part of an update: ``value``, ``text`` or a ``b64*`` field."""
    if upd.disconnected:
        return {"value": "NaN"}
    v = upd.value
    vt = meta.vtype
    if vt in ("VDouble", "VFloat"):
        return {"value": _num(float(v))}
    if vt in ("VInt", "VShort", "VByte"):
        return {"value": int(v)}
    if vt == "VEnum":
        i = int(v)
        labels = meta.labels
        return {"value": i, "text": labels[i] if 0 <= i < len(labels) else str(i)}
    if vt == "VString":
        return {"text": v if isinstance(v, str) else str(v)}
    fields = ARRAY_FIELDS.get(vt)
    if fields is not None:
        name, dtype = fields
        raw = bytes(v) if isinstance(v, bytes | bytearray) else np.asarray(v).astype(dtype)
        data = raw if isinstance(raw, bytes) else raw.tobytes()
        return {name: base64.b64encode(data).decode("ascii")}
    if isinstance(v, np.ndarray | list | tuple):
        return {"text": "[" + ", ".join(str(x) for x in list(v)) + "]"}
    return {"text": str(v)}


@dataclass(slots=True)
class Sent:
    """What one socket sent for one PV so far: ``Vtype2Json``'s ``last_value`` (its family
    and severity; None before the first value) and ``last_readonly``."""

    family: str | None = None
    severity: int | None = None
    readonly: bool | None = None


def encode(pv: str, meta: Meta, upd: Update | None, sent: Sent, readonly: bool, now: float) -> str:
    """The ``update`` message for ``upd`` (None: no value yet, only the access state), and
    ``sent`` brought up to date. Fields in PVWS's order: type, pv, value part with metadata
    on the first value, readonly when it changed, seconds/nanos (now when no value)."""
    first = sent.family is None
    family = NUMBER if upd is not None and upd.disconnected else meta.family
    readonly_changed = sent.readonly is None or sent.readonly != readonly
    # the common case, identical for every socket: encoded once per update
    if (
        upd is not None
        and not first
        and not readonly_changed
        and sent.severity == upd.severity
        and upd.shared is not None
    ):
        sent.family = family
        return _with_name(pv, upd.shared)
    out: dict[str, Any] = {}
    if upd is not None:
        if first:
            out["vtype"] = "VDouble" if upd.disconnected else meta.vtype
            if upd.disconnected:
                pass
            elif family == ENUM:
                out["labels"] = list(meta.labels)
            elif family in (NUMBER, ARRAY):
                _display(meta, out)
            if family != OTHER:
                out["severity"] = SEVERITIES[upd.severity]
        elif sent.severity != upd.severity and _compares(family, sent.family):
            out["severity"] = SEVERITIES[min(upd.severity, 4)]
        out.update(_value_fields(meta, upd))
        sent.family = family
        sent.severity = upd.severity
    if readonly_changed:
        out["readonly"] = readonly
        sent.readonly = readonly
    if upd is not None:
        out["seconds"] = upd.secs
        out["nanos"] = upd.nanos
    else:
        secs = int(now)
        out["seconds"] = secs
        out["nanos"] = int((now - secs) * 1e9)
    body = json.dumps(out, separators=(",", ":"), allow_nan=False)
    if upd is not None and set(out) <= {"value", "text", "seconds", "nanos", *ARRAY_B64}:
        upd.shared = body
    return _with_name(pv, body)


ARRAY_B64 = {f for f, _ in ARRAY_FIELDS.values()}


def _compares(family: str, last_family: str | None) -> bool:
    """``Vtype2Json`` sends a severity change only when the previous value is of the family
    it checks: VNumber for numbers and arrays (so arrays never), VString, VEnum."""
    if family in (NUMBER, ARRAY):
        return last_family == NUMBER
    return family == last_family and family in (STRING, ENUM)


def _with_name(pv: str, body: str) -> str:
    """``{"type":"update","pv":...,`` before the encoded fields (``body`` is a JSON object)."""
    return '{"type":"update","pv":' + json.dumps(pv) + "," + body[1:]
