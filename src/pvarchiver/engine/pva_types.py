"""How a PVA structure becomes the AA's stored samples: type, value, time, alarm, fields.

The rules are the AA's (``EPICS_V4_PV.determineDBRType``, ``FieldValuesCache``, the
``PB/data`` classes), see ``docs/pva.md``:

* the ``value`` field's type picks the ``ArchDBRType``: every numeric scalar and array
  type but ``long``/``ulong``/``boolean`` maps to its ``DBR_SCALAR_*``/``DBR_WAVEFORM_*``
  (unsigned values kept as the signed type of the same width), an NTEnum ``value`` (a
  structure whose id starts with ``enum``) to ``DBR_SCALAR_ENUM`` storing ``index`` only;
  a structure without ``value``, and ``long``, ``ulong``, ``boolean``, unions, ``any`` and
  other structures become ``DBR_V4_GENERIC_BYTES`` (:meth:`Value.generic_bytes`);
* ``timeStamp.secondsPastEpoch``/``nanoseconds`` are the sample's time, ``alarm.severity``
  and ``alarm.status`` its alarm (0 without ``alarm``), ``timeStamp.userTag`` is kept for
  generic bytes only;
* an update is a record-processing update (kept) when its changed BitSet has bit 0 or any
  ``timeStamp*`` field (:meth:`Layout.record_mask`); other updates are property-only;
* changed ``display``/``control``/``valueAlarm`` fields are stored under the V3 names
  (:data:`V4_TO_V3`), other fields only when listed in the PV's archive fields by dotted
  name; values as Java's ``toString`` writes them (PREC: see :data:`V4_TO_V3`).

Why one :class:`PVAMapping` per (connection, type): everything that depends only on the
structure (field indices, masks, the value converter) is worked out once, so that the hot
path is list indexing and one converter call.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np

from ..ca import dbr
from ..pb import PayloadType
from ..pva.codec import ARRAY_MASK, STRUCT, FieldDesc, type_name
from ..pva.data import Layout, Value

__all__ = [
    "V4_TO_V3",
    "PVAMapping",
    "TaggedBytes",
    "java_text",
    "payload_type",
    "reading",
]

P = PayloadType

#: the AA's fixed V4 -> V3 field names (``FieldValuesCache``), but for PREC: the AA stores
#: ``control.minStep`` as PREC (sic) and never ``display.precision``; we store the display
#: precision, which is what PREC means to every client (docs/pva.md, differences)
V4_TO_V3 = {
    "display.limitLow": "LOPR",
    "display.limitHigh": "HOPR",
    "display.description": "DESC",
    "display.units": "EGU",
    "control.limitLow": "DRVL",
    "control.limitHigh": "DRVH",
    "display.precision": "PREC",
    "valueAlarm.lowAlarmLimit": "LOLO",
    "valueAlarm.lowWarningLimit": "LOW",
    "valueAlarm.highWarningLimit": "HIGH",
    "valueAlarm.highAlarmLimit": "HIHI",
    "valueAlarm.hysteresis": "HYST",
}

#: value type string -> (scalar type, waveform type), as ``determineDBRType``
_BY_TYPE = {
    "double": P.SCALAR_DOUBLE,
    "float": P.SCALAR_FLOAT,
    "int": P.SCALAR_INT,
    "uint": P.SCALAR_INT,
    "short": P.SCALAR_SHORT,
    "ushort": P.SCALAR_SHORT,
    "byte": P.SCALAR_BYTE,
    "ubyte": P.SCALAR_BYTE,
    "string": P.SCALAR_STRING,
}
_SKIPPED = ("value", "timeStamp", "alarm")


class TaggedBytes(bytes):
    """The stored bytes of a ``DBR_V4_GENERIC_BYTES`` sample with its ``timeStamp.userTag``
    (the AA writes it to ``V4GenericBytes.userTag``; the engine's buffer passes the value
    through untouched and :class:`~.archived_pv.Buffer` reads the tag back)."""

    user_tag: int = 0


def payload_type(top: FieldDesc) -> PayloadType:
    """The AA's ``ArchDBRType`` for a structure (``EPICS_V4_PV.determineDBRType``)."""
    v = dict(top.fields).get("value")
    if v is None:
        return P.V4_GENERIC_BYTES
    if v.code == STRUCT:
        return P.SCALAR_ENUM if v.id.startswith("enum") else P.V4_GENERIC_BYTES
    if v.code == STRUCT | 0x08:  # structure[]
        elem = v.element
        if elem is not None and elem.id.startswith("enum_t"):
            return P.WAVEFORM_ENUM
        return P.V4_GENERIC_BYTES
    name = type_name(v)
    arr = name.endswith("[]")
    scalar = _BY_TYPE.get(name[:-2] if arr else name)
    if scalar is None:
        return P.V4_GENERIC_BYTES
    return PayloadType(scalar + 7) if arr else scalar


# ---------------------------------------------------------------- value converters
def _signed(bits: int) -> Callable[[int], int]:
    top, wrap = 1 << (bits - 1), 1 << bits

    def conv(v: int) -> int:
        return v - wrap if v >= top else v

    return conv


def _byte(v: int) -> int:
    return v & 0xFF


def _enum_index(v: Any) -> int:
    return int(v.get("index", 0)) if isinstance(v, dict) else 0


def _enum_indices(v: Any) -> list[int]:
    return [_enum_index(e) for e in v or ()]


def _waveform(dtype: str, view: str | None = None) -> Callable[[Any], np.ndarray]:
    def conv(v: Any) -> np.ndarray:
        a = np.asarray(v, dtype=dtype)
        return a.view(view) if view else a

    return conv


def _bytes_of(v: Any) -> bytes:
    return bytes(b & 0xFF for b in v)


def value_converter(ptype: PayloadType, value: FieldDesc | None) -> Callable[[Any], Any] | None:
    """What turns the decoded ``value`` into the stored one (None: stored as decoded)."""
    if value is None or ptype is P.V4_GENERIC_BYTES:
        return None
    unsigned = type_name(value).lstrip("[").startswith("u")
    if ptype is P.SCALAR_ENUM:
        return _enum_index
    if ptype is P.WAVEFORM_ENUM:
        return _enum_indices
    if ptype is P.SCALAR_BYTE:
        return _byte
    if ptype is P.SCALAR_INT and unsigned:
        return _signed(32)
    if ptype is P.SCALAR_SHORT and unsigned:
        return _signed(16)
    if ptype is P.WAVEFORM_BYTE:
        return _bytes_of
    if ptype is P.WAVEFORM_INT:
        return _waveform("<u4", "<i4") if unsigned else _waveform("<i4")
    if ptype is P.WAVEFORM_SHORT:
        return _waveform("<u2", "<i2") if unsigned else _waveform("<i2")
    if ptype is P.WAVEFORM_DOUBLE:
        return _waveform("<f8")
    if ptype is P.WAVEFORM_FLOAT:
        return _waveform("<f4")
    if ptype is P.WAVEFORM_STRING:
        return list
    return None


# ---------------------------------------------------------------- field values as text
def _java_double(x: float) -> str:
    """``Double.toString``: ``1.0``, ``1.0E-5``, ``NaN``, ``Infinity``."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    a = abs(x)
    if a == 0 or 1e-3 <= a < 1e7:
        s = repr(float(x))
        return s if "." in s or "e" in s else s + ".0"
    mant, _, exp = f"{x!r}".partition("e")
    if not exp:  # repr printed it positionally (1e7 <= a < 1e16)
        mant, _, exp = f"{x:.17e}".partition("e")
        mant = repr(float(mant))
    if "." not in mant:
        mant += ".0"
    return f"{mant}E{int(exp)}"


def _java_float(x: float) -> str:
    return _java_double(float(str(np.float32(x))))


def java_text(fd: FieldDesc, v: Any) -> str:
    """A field's value as the AA stores it (Java ``toString``; arrays as
    ``Arrays.toString``)."""
    name = type_name(fd)
    if fd.code & ARRAY_MASK and name.endswith("[]"):
        one = FieldDesc(fd.code & ~ARRAY_MASK & 0xFF)
        items = v or []
        if fd.base in (STRUCT,) or name in ("union[]", "any[]"):
            return "[" + ", ".join("null" if e is None else str(e) for e in items) + "]"
        return "[" + ", ".join(java_text(one, e) for e in items) + "]"
    if name == "double":
        return _java_double(v)
    if name == "float":
        return _java_float(v)
    if name == "boolean":
        return "true" if v else "false"
    if name == "byte":
        return str(v - 256 if v > 127 else v)
    return "" if v is None else str(v)


# ---------------------------------------------------------------- per-structure mapping
class PVAMapping:
    """Everything derived from one structure type: its :class:`PayloadType`, the indices
    of time, alarm and value in the flat value, the masks of the hot path and the
    converter of the value (see the module docstring)."""

    def __init__(self, layout: Layout, archive_fields: Iterable[str] = ()) -> None:
        self.layout = layout
        top = layout.top
        self.ptype = payload_type(top)
        idx = layout.index
        self.value_index = idx.get("value", -1)
        value_fd = layout.descs[self.value_index] if self.value_index >= 0 else None
        self.convert = value_converter(self.ptype, value_fd)
        if self.ptype is P.SCALAR_ENUM:  # NTEnum: the index leaf is stored, as it is
            self.value_index = idx.get("value.index", -1)
            self.convert = None if self.value_index >= 0 else self.convert
        self.generic = self.ptype is P.V4_GENERIC_BYTES
        self.secs_index = idx.get("timeStamp.secondsPastEpoch", -1)
        self.nanos_index = idx.get("timeStamp.nanoseconds", -1)
        self.tag_index = idx.get("timeStamp.userTag", -1)
        self.sev_index = idx.get("alarm.severity", -1)
        self.stat_index = idx.get("alarm.status", -1)
        #: the AA stores nothing for a structure without a timeStamp
        self.has_time = self.secs_index >= 0 and self.nanos_index >= 0
        self.record_mask = layout.record_mask()
        self.field_mask = 0
        self._fields: list[tuple[int, str]] = []  # (index, stored name) of watched leaves
        self.set_archive_fields(archive_fields)

    def set_archive_fields(self, archive_fields: Iterable[str]) -> None:
        """Watch the V3-mapped fields and the archive fields given by dotted V4 name."""
        lay = self.layout
        wanted = set(archive_fields)
        out: list[tuple[int, str]] = []
        mask = 1  # bit 0: the whole structure (a first update after subscribe)
        for i, name in enumerate(lay.names):
            if lay.descs[i].code == STRUCT or not name or name.split(".")[0] in _SKIPPED:
                continue
            stored = V4_TO_V3.get(name) or (name if name in wanted else None)
            if stored is None:
                continue
            out.append((i, stored))
            mask |= 1 << i
            parent = name.rpartition(".")[0]
            while parent:  # a parent's bit marks all of its members
                mask |= 1 << lay.index[parent]
                parent = parent.rpartition(".")[0]
        self._fields = out
        self.field_mask = mask

    def changed_fields(self, flat: list[Any], changed: int) -> dict[str, str]:
        """The watched fields an update's BitSet marks (directly or through a parent),
        as stored names and text."""
        lay = self.layout
        out: dict[str, str] = {}
        for i, stored in self._fields:
            if changed & (1 << i) or changed & 1 or self._parent_marked(i, changed):
                out[stored] = java_text(lay.descs[i], flat[i])
        return out

    def _parent_marked(self, i: int, changed: int) -> bool:
        name = self.layout.names[i].rpartition(".")[0]
        while name:
            if changed >> self.layout.index[name] & 1:
                return True
            name = name.rpartition(".")[0]
        return False

    def all_fields(self, flat: list[Any]) -> dict[str, str]:
        """Every field but ``value``: the V3-mapped ones under their V3 name, the others
        under their dotted V4 name (the AA's latest metadata, ``getMetadata``)."""
        lay = self.layout
        out: dict[str, str] = {}
        for i, name in enumerate(lay.names):
            if not name or lay.descs[i].code == STRUCT or name.split(".")[0] == "value":
                continue
            out[V4_TO_V3.get(name, name)] = java_text(lay.descs[i], flat[i])
        return out

    def sample(self, value: Value) -> tuple[int, int, int, int, Any] | None:
        """(secs, nanos, severity, status, stored value) of a whole value; None without a
        timeStamp (the AA cannot store it either)."""
        flat = value.flat
        if not self.has_time:
            return None
        sev = flat[self.sev_index] if self.sev_index >= 0 else 0
        stat = flat[self.stat_index] if self.stat_index >= 0 else 0
        if self.generic:
            val: Any = TaggedBytes(value.generic_bytes())
            val.user_tag = flat[self.tag_index] if self.tag_index >= 0 else 0
        else:
            val = flat[self.value_index]
            if self.convert is not None:
                val = self.convert(val)
        return flat[self.secs_index], flat[self.nanos_index], sev, stat, val


def reading(value: Value) -> dbr.Reading:
    """The limits, units, precision and enum labels of a value, as a DBR_CTRL reading
    (what the archive workflow puts in the typeinfo)."""

    def num(name: str) -> float | None:
        v = value.get(name)
        return float(v) if isinstance(v, int | float) and not isinstance(v, bool) else None

    prec = value.get("display.precision")
    choices = value.get("value.choices")
    units = value.get("display.units")
    return dbr.Reading(
        value=None,
        units=units if isinstance(units, str) else None,
        precision=int(prec) if isinstance(prec, int) else None,
        upper_disp_limit=num("display.limitHigh"),
        lower_disp_limit=num("display.limitLow"),
        upper_alarm_limit=num("valueAlarm.highAlarmLimit"),
        upper_warning_limit=num("valueAlarm.highWarningLimit"),
        lower_warning_limit=num("valueAlarm.lowWarningLimit"),
        lower_alarm_limit=num("valueAlarm.lowAlarmLimit"),
        upper_ctrl_limit=num("control.limitHigh"),
        lower_ctrl_limit=num("control.limitLow"),
        enum_strings=list(choices) if isinstance(choices, list) else None,
    )
