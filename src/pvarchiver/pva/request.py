"""pvRequest structures: which fields a GET/MONITOR wants, and record options.

A pvRequest is an ordinary PVA structure sent (type + full value) in the INIT of an
operation: ``field`` lists the wanted fields as nested empty structures (empty = all),
``record._options`` carries options. The AA (core-pva ``RecordOptions``) subscribes with
``field()`` and ``record._options.DBE = 2`` (DBE_ARCHIVE) as an ``int``; p4p and pvxs send
option values as strings. Both forms are built here; servers that do not know an option
ignore it (pvxs QSRV ignores ``DBE``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from .codec import BOOL, INT, STRING, STRUCT, FieldDesc, Writer, encode_type
from .data import encode_value

__all__ = ["AA_MONITOR_OPTIONS", "encode_request", "pv_request"]

#: what the AA asks for on every PVA monitor (DBE_ARCHIVE, as an int)
AA_MONITOR_OPTIONS: Mapping[str, int] = {"DBE": 2}

Option = str | int | bool


def _option_type(value: Option) -> FieldDesc:
    if isinstance(value, bool):
        return FieldDesc(BOOL)
    if isinstance(value, int):
        return FieldDesc(INT)
    return FieldDesc(STRING)


def _field_tree(paths: Iterable[str]) -> FieldDesc:
    tree: dict[str, Any] = {}
    for path in paths:
        node = tree
        for part in path.split("."):
            if not part:
                raise ValueError(f"empty field name in {path!r}")
            node = node.setdefault(part, {})

    def build(node: dict[str, Any]) -> FieldDesc:
        return FieldDesc(STRUCT, fields=[(k, build(v)) for k, v in node.items()])

    return build(tree)


def pv_request(
    fields: Iterable[str] = (), options: Mapping[str, Option] | None = None
) -> tuple[FieldDesc, dict[str, Any]]:
    """The type and value of ``field(<fields>)record[<options>]``."""
    members: list[tuple[str, FieldDesc]] = [("field", _field_tree(fields))]
    value: dict[str, Any] = {"field": {}}
    if options:
        opts = FieldDesc(STRUCT, fields=[(k, _option_type(v)) for k, v in options.items()])
        members.append(("record", FieldDesc(STRUCT, fields=[("_options", opts)])))
        value["record"] = {"_options": dict(options)}
    top = FieldDesc(STRUCT, fields=members)
    return top, _fill(top, value)


def _fill(fd: FieldDesc, value: Any) -> Any:
    if fd.code != STRUCT:
        return value
    value = value or {}
    return {name: _fill(sub, value.get(name)) for name, sub in fd.fields}


def encode_request(w: Writer, request: tuple[FieldDesc, dict[str, Any]]) -> None:
    """Append a pvRequest (type in full, then the value) to a message body."""
    fd, value = request
    encode_type(fd, w)
    encode_value(fd, value, w)
