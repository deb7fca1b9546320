"""PVTypeInfo: what the archiver knows about one archived PV, in the AA's JSON encoding.

The AA's JSONEncoder writes every scalar as a JSON *string* (``"true"``, ``"1.0"``, ``"NaN"``),
omits nulls, writes instants as ``yyyy-MM-dd'T'HH:mm:ss.SSS'Z'`` and numbers the way Java's
``Float.toString``/``Double.toString`` print them. Tools written for the AA (the UI, pyarchappl,
exportConfig files moved between the Java AA and us) compare these strings, so we reproduce the
encoding exactly and keep keys we do not know (a newer AA's) for a lossless round trip.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import numpy as np

#: The AA's ctrl-limit mapping: record field -> PVTypeInfo key.
LIMIT_FIELDS = {
    "LOLO": "lowerAlarmLimit",
    "DRVL": "lowerCtrlLimit",
    "LOPR": "lowerDisplayLimit",
    "LOW": "lowerWarningLimit",
    "HIHI": "upperAlarmLimit",
    "DRVH": "upperCtrlLimit",
    "HOPR": "upperDisplayLimit",
    "HIGH": "upperWarningLimit",
}


def java_double(x: float) -> str:
    """``Double.toString``: ``1.0``, ``NaN``, ``1.0E-5``, ``1.2345678E7``."""
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    s = repr(x)
    if x == 0 or 1e-3 <= abs(x) < 1e7:
        return s  # Python's repr has no exponent in this range, like Java
    sign, digits, exp = Decimal(s).as_tuple()
    assert isinstance(exp, int)
    ds = "".join(map(str, digits)).rstrip("0") or "0"
    mant = ds[0] + "." + (ds[1:] or "0")
    return ("-" if sign else "") + f"{mant}E{exp + len(digits) - 1}"


def java_float(x: float) -> str:
    """``Float.toString``: the shortest decimal that identifies the 32-bit float."""
    return java_double(float(str(np.float32(x))))


def aa_time(t: datetime | float) -> str:
    """An instant as the AA's JSONEncoder writes it: ``2014-12-11T14:49:58.523Z``."""
    if not isinstance(t, datetime):
        t = datetime.fromtimestamp(t, UTC)
    t = t.astimezone(UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"


def parse_aa_time(text: str) -> datetime:
    """Inverse of :func:`aa_time`; also takes ISO times with offsets or no fraction."""
    text = text.strip()
    if text.endswith("Z"):
        text = text[:-1] + "+00:00"
    t = datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def report_time(epoch: float | None) -> str:
    """The AA's human time for reports/status: ``Oct/12/2015 13:54:53 -07:00``; 0 is Never."""
    if not epoch:
        return "Never"
    lt = time.localtime(epoch)
    off = lt.tm_gmtoff or 0
    sign = "-" if off < 0 else "+"
    off = abs(off)
    return (
        time.strftime("%b/%d/%Y %H:%M:%S", lt) + f" {sign}{off // 3600:02d}:{off % 3600 // 60:02d}"
    )


def _to_bool(v: Any) -> bool:
    if isinstance(v, bool):
        return v
    return str(v).strip().lower() == "true"


def _to_float(v: Any, default: float = 0.0) -> float:
    if v is None or v == "":
        return default
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"not a number: {v!r}") from None


def _to_int(v: Any, default: int = 0) -> int:
    if v is None or v == "":
        return default
    try:
        return int(float(v))
    except (TypeError, ValueError):
        raise ValueError(f"not an integer: {v!r}") from None


_NOW = object()


@dataclass
class PVTypeInfo:
    """One PV's archival parameters. Python names are the AA's JSON keys on purpose: a reader
    can match this class against the AA's JSON without a mapping table."""

    pvName: str
    DBRType: str = "DBR_SCALAR_DOUBLE"
    scalar: bool = True
    elementCount: int = 1
    applianceIdentity: str = "appliance0"
    hostName: str | None = None
    lowerAlarmLimit: float = math.nan
    lowerCtrlLimit: float = math.nan
    lowerDisplayLimit: float = math.nan
    lowerWarningLimit: float = math.nan
    upperAlarmLimit: float = math.nan
    upperCtrlLimit: float = math.nan
    upperDisplayLimit: float = math.nan
    upperWarningLimit: float = math.nan
    precision: float = 0.0
    units: str = ""
    hasReducedDataSet: bool = False
    computedEventRate: float = 0.0
    computedStorageRate: float = 0.0
    computedBytesPerEvent: int = 0
    userSpecifiedEventRate: float = 0.0
    creationTime: datetime = field(default_factory=lambda: datetime.now(UTC))
    modificationTime: datetime = field(default_factory=lambda: datetime.now(UTC))
    paused: bool = False
    samplingMethod: str = "MONITOR"
    samplingPeriod: float = 1.0
    policyName: str | None = None
    controllingPV: str | None = None
    chunkKey: str | None = None
    usePVAccess: bool = False
    useDBEProperties: bool = False
    extraFields: dict[str, str] = field(default_factory=dict)
    dataStores: list[str] = field(default_factory=list)
    archiveFields: list[str] = field(default_factory=list)
    #: keys this version does not know, kept as they came
    other: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            name = f.name
            if name == "other":
                continue
            v = getattr(self, name)
            if v is None:
                continue
            if name in ("usePVAccess", "useDBEProperties") and not v:
                continue  # the AA omits these unless set
            if isinstance(v, bool):
                out[name] = "true" if v else "false"
            elif isinstance(v, datetime):
                out[name] = aa_time(v)
            elif name in _FLOAT32:
                out[name] = java_float(v)
            elif isinstance(v, float):
                out[name] = java_double(v)
            elif isinstance(v, int):
                out[name] = str(v)
            elif isinstance(v, dict):
                out[name] = {str(k): str(x) for k, x in v.items()}
            elif isinstance(v, list):
                out[name] = [str(x) for x in v]
            else:
                out[name] = str(v)
        for k, v in self.other.items():
            out.setdefault(k, v)
        return out

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> PVTypeInfo:
        """Decode the AA's JSON (strings or native JSON values both accepted).

        Raises ValueError with a message naming the bad key, never a bare KeyError/TypeError:
        this is what putPVTypeInfo and importConfig answer to a client.
        """
        if not isinstance(d, dict):
            raise ValueError("a PVTypeInfo must be a JSON object")
        name = d.get("pvName")
        if not isinstance(name, str) or not name.strip():
            raise ValueError("PVTypeInfo has no pvName")
        decoders = _decoders()
        kwargs: dict[str, Any] = {}
        other: dict[str, Any] = {}
        for k, v in d.items():
            dec = decoders.get(k)
            if dec is None:
                other[k] = v
                continue
            try:
                kwargs[k] = dec(v)
            except (TypeError, ValueError) as e:
                raise ValueError(f"PVTypeInfo key {k!r}: {e}") from None
        kwargs["pvName"] = name
        return cls(**kwargs, other=other)

    # ------------------------------------------------------------------ helpers
    def touch(self) -> None:
        self.modificationTime = datetime.now(UTC)

    def add_archive_field(self, name: str) -> bool:
        if name in self.archiveFields:
            return False
        self.archiveFields.append(name)
        return True

    def copy(self) -> PVTypeInfo:
        return PVTypeInfo.from_json(self.to_json())


_FLOAT32 = {"computedEventRate", "computedStorageRate", "userSpecifiedEventRate", "samplingPeriod"}


def _dict(v: Any) -> dict[str, str]:
    if not isinstance(v, dict):
        raise ValueError("expected an object")
    return {str(k): str(x) for k, x in v.items()}


def _list(v: Any) -> list[str]:
    if not isinstance(v, list):
        raise ValueError("expected an array")
    return [str(x) for x in v]


def _opt_str(v: Any) -> str | None:
    return None if v is None else str(v)


_DECODERS: dict[str, Callable[[Any], Any]] = {}


def _decoders() -> dict[str, Callable[[Any], Any]]:
    """Key -> decoder, chosen once from the type of each field's default (loading 100,000
    typeinfos at start-up must not redo this per key)."""
    if not _DECODERS:
        proto = PVTypeInfo("x")
        for f in fields(PVTypeInfo):
            if f.name == "other":
                continue
            cur = getattr(proto, f.name)
            if isinstance(cur, bool):
                _DECODERS[f.name] = _to_bool
            elif isinstance(cur, datetime):
                _DECODERS[f.name] = lambda v: parse_aa_time(str(v))
            elif isinstance(cur, float):
                _DECODERS[f.name] = _to_float
            elif isinstance(cur, int):
                _DECODERS[f.name] = _to_int
            elif isinstance(cur, dict):
                _DECODERS[f.name] = _dict
            elif isinstance(cur, list):
                _DECODERS[f.name] = _list
            else:
                _DECODERS[f.name] = _opt_str
    return _DECODERS
