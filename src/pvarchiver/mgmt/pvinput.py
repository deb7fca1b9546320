"""PV names as clients send them to the BPL: the AA's three multi-PV forms, fields, prefixes.

Pure functions (no HTTP objects) so that every form can be unit-tested:

* ``application/json``: a list of names or of objects with a ``pv`` key;
* ``text/plain`` (or anything with newlines): one name per line;
* form or query: ``pv=a,b,c`` (repeatable).

Names are checked with :func:`pvarchiver.ca.names.validate_pv_name`; a bad one is a clear
error for the client, never something the CA client searches for forever.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from urllib.parse import parse_qsl

from ..ca.names import validate_pv_name


class InputError(ValueError):
    """Bad client input; the message is shown to the client (HTTP 400)."""


_SPLIT = re.compile(r"^(?P<rec>[^.]+)(?:\.(?P<field>[A-Za-z_][A-Za-z0-9_]*)(?P<mod>.*))?$")


def strip_prefix(name: str) -> tuple[str, bool]:
    """Remove ``ca://``/``pva://``; returns (name, uses PVAccess)."""
    name = name.strip()
    if name.startswith("pva://"):
        return name[6:], True
    if name.startswith("ca://"):
        return name[5:], False
    return name, False


def split_field(name: str) -> tuple[str, str | None]:
    """``REC:X.HIHI`` -> (``REC:X``, ``HIHI``); names with a modifier stay whole."""
    m = _SPLIT.match(name)
    if m is None or m.group("field") is None or m.group("mod"):
        return name, None
    return m.group("rec"), m.group("field")


@dataclass(frozen=True)
class Target:
    """What a requested name means for archiving."""

    requested: str
    pv: str  # the PV whose stream is archived
    field: str | None  # a stream field to add to ``pv`` (``PV.HIHI``), else None
    pva: bool = False


def archive_target(requested: str, stream_fields: list[str]) -> Target:
    """The AA's name rules for archivePV: ``PV.VAL`` is ``PV``; ``PV.F`` with F one of the
    policy's stream fields adds F to PV; any other field is a PV of its own."""
    name, pva = strip_prefix(requested)
    reason = validate_pv_name(name)
    if reason:
        raise InputError(f"Invalid PV name {requested!r}: {reason}")
    rec, fld = split_field(name)
    if fld == "VAL":
        return Target(requested, rec, None, pva)
    if fld is not None and fld in stream_fields:
        return Target(requested, rec, fld, pva)
    return Target(requested, name, None, pva)


def lookup_name(requested: str) -> str:
    """A name for queries: prefix gone, ``.VAL`` dropped (a real suffix only: AA issue #356)."""
    name, _ = strip_prefix(requested)
    if name.endswith(".VAL"):
        name = name[:-4]
    return name


def is_glob(name: str) -> bool:
    return "*" in name or "?" in name


def split_names(values: list[str]) -> list[str]:
    """``pv=a,b`` values (each possibly a comma list) as names, blanks dropped, order kept."""
    return [n.strip() for v in values for n in v.split(",") if n.strip()]


def names_from_body(content_type: str, body: bytes) -> list[str]:
    """PV names from a POST body in any of the three AA forms."""
    text = body.decode("utf-8", "replace").strip()
    if not text:
        return []
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == "application/json" or (text[0] in "[{" and ctype != "text/plain"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"The body is not valid JSON: {e}") from None
        if not isinstance(data, list):
            raise InputError("Send a JSON list of PV names (or of objects with a 'pv' key).")
        out = []
        for i, item in enumerate(data):
            if isinstance(item, str):
                out.append(item.strip())
            elif isinstance(item, dict) and isinstance(item.get("pv"), str):
                out.append(item["pv"].strip())
            else:
                raise InputError(f"Item {i} of the JSON list is neither a name nor {{'pv': name}}.")
        return [n for n in out if n]
    if ctype == "application/x-www-form-urlencoded" or (
        text.startswith("pv=") and "\n" not in text
    ):
        return split_names([v for k, v in parse_qsl(text) if k == "pv"])
    return [line.strip() for line in text.splitlines() if line.strip()]


ARCHIVE_KEYS = {
    "pv",
    "samplingperiod",
    "samplingmethod",
    "policy",
    "controllingPV",
    "appliance",
    "alias",
}


@dataclass
class ArchiveSpec:
    """One archivePV request as a client sent it."""

    pv: str
    samplingperiod: float | None = None
    samplingmethod: str | None = None
    policy: str | None = None
    controllingPV: str | None = None
    appliance: str | None = None
    alias: str | None = None


def _opt_str(obj: dict[str, object], key: str, i: int) -> str | None:
    v = obj.get(key)
    if v is None or v == "":
        return None
    if not isinstance(v, str):
        raise InputError(f"Item {i}: {key} must be a string")
    return v.strip()


def parse_period(text: object, where: str = "") -> float:
    try:
        p = float(text)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise InputError(f"{where}samplingperiod {text!r} is not a number") from None
    if not p > 0 or p != p or p == float("inf"):
        raise InputError(f"{where}samplingperiod must be a positive number, not {text!r}")
    return p


def parse_method(text: object, where: str = "") -> str:
    m = str(text).strip().upper()
    if m not in ("MONITOR", "SCAN"):
        raise InputError(f"{where}samplingmethod must be MONITOR or SCAN, not {text!r}")
    return m


def archive_specs_from_json(body: bytes) -> list[ArchiveSpec]:
    """archivePV's POST body: ``[{"pv": .., "samplingperiod": "1.0", ...}, ...]`` (plain names
    are accepted too). Unknown keys and bad values are errors, reported with the item index."""
    try:
        data = json.loads(body.decode("utf-8", "replace") or "null")
    except json.JSONDecodeError as e:
        raise InputError(f"The body is not valid JSON: {e}") from None
    if not isinstance(data, list):
        raise InputError("Send a JSON list of objects with a 'pv' key.")
    out: list[ArchiveSpec] = []
    for i, item in enumerate(data):
        if isinstance(item, str):
            out.append(ArchiveSpec(item.strip()))
            continue
        if not isinstance(item, dict):
            raise InputError(f"Item {i} is not an object")
        unknown = set(item) - ARCHIVE_KEYS
        if unknown:
            raise InputError(f"Item {i}: unknown key(s) {', '.join(sorted(unknown))}")
        pv = _opt_str(item, "pv", i)
        if not pv:
            raise InputError(f"Item {i} has no pv")
        where = f"Item {i}: "
        period = item.get("samplingperiod")
        method = item.get("samplingmethod")
        out.append(
            ArchiveSpec(
                pv=pv,
                samplingperiod=parse_period(period, where) if period not in (None, "") else None,
                samplingmethod=parse_method(method, where) if method not in (None, "") else None,
                policy=_opt_str(item, "policy", i),
                controllingPV=_opt_str(item, "controllingPV", i),
                appliance=_opt_str(item, "appliance", i),
                alias=_opt_str(item, "alias", i),
            )
        )
    return out
