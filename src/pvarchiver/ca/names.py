"""Is this string a PV name an archiver can search for?  (pure)

Why check at all: a name with a space or a control character can never be served, yet a CA
client would search for it forever, and a name that cannot become a file key breaks the
store. Rejecting it up front gives the user a reason instead of a PV that silently never
connects.

The rules combine the AA's (``PVNames.isValidPVName``) with the EPICS limits:

* record part: ``[a-zA-Z0-9_\\-+:[]<>;/,#{}^]``, at most 60 characters (EPICS
  ``PVNAME_STRINGSZ`` is 61 with the NUL);
* optional ``.FIELD``: a letter or ``_`` then letters, digits, ``_`` (EPICS field names are
  at most 4 characters in practice, but the AA accepts any identifier);
* optional field modifier after the field: ``$`` (long string), a JSON channel filter
  ``{...}`` or an array slice ``[a:b]`` (passed through as the IOC parses them);
* the whole name at most 500 characters (libca refuses longer names).
"""

from __future__ import annotations

import re

__all__ = ["MAX_NAME_LENGTH", "MAX_RECORD_NAME_LENGTH", "validate_pv_name"]

MAX_RECORD_NAME_LENGTH = 60
MAX_NAME_LENGTH = 500

_RECORD = re.compile(r"[a-zA-Z0-9_\-+:\[\]<>;/,#{}^]+")
_FIELD = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_SLICE = re.compile(r"\[-?\d*(:-?\d*){0,2}\]")


def _describe(ch: str) -> str:
    if ch == " ":
        return "a space"
    if ord(ch) < 32 or ord(ch) == 127:
        return f"control character {ord(ch):#04x}"
    if ord(ch) > 127:
        return f"non-ASCII character {ch!r}"
    return f"character {ch!r}"


def _check_modifier(mod: str) -> str | None:
    if mod == "$":
        return None
    if mod.startswith("{") and mod.endswith("}"):
        bad = next((c for c in mod if ord(c) < 32 or ord(c) == 127), None)
        return None if bad is None else f"{_describe(bad)} in the channel filter"
    if _SLICE.fullmatch(mod):
        return None
    return f"invalid field modifier {mod!r} (expected $, a {{json}} filter or [a:b])"


def validate_pv_name(name: object) -> str | None:
    """None when ``name`` is a valid PV name, else a sentence saying what is wrong."""
    if not isinstance(name, str):
        return f"a PV name must be a string, not {type(name).__name__}"
    if not name:
        return "empty PV name"
    if len(name) > MAX_NAME_LENGTH:
        return f"PV name longer than {MAX_NAME_LENGTH} characters ({len(name)})"
    if name != name.strip():
        return "PV name starts or ends with white space"
    record, dot, rest = name.partition(".")
    if not record:
        return "PV name has no record part before the '.'"
    m = _RECORD.match(record)
    if m is None or m.end() != len(record):
        pos = 0 if m is None else m.end()
        return f"{_describe(record[pos])} at position {pos} is not allowed in a PV name"
    if len(record) > MAX_RECORD_NAME_LENGTH:
        return (
            f"record name longer than {MAX_RECORD_NAME_LENGTH} characters ({len(record)}), "
            "which EPICS does not allow"
        )
    if not dot:
        return None
    f = _FIELD.match(rest)
    if f is None:
        where = len(record) + 1
        if not rest:
            return "PV name ends with '.' and no field name"
        return f"{_describe(rest[0])} at position {where} cannot start a field name"
    mod = rest[f.end() :]
    if not mod:
        return None
    problem = _check_modifier(mod)
    if problem is None:
        return None
    bad = next((c for c in mod if c == " " or ord(c) < 32 or ord(c) > 126), None)
    if bad is not None and not mod.startswith("{"):
        return f"{_describe(bad)} after the field name is not allowed in a PV name"
    return problem
