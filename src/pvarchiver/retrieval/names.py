"""Requested PV names -> stored PV names, as the AA's PVNames does before a lookup."""

from __future__ import annotations

from ..storage.paths import strip_protocol


def normalize_pv_name(name: str) -> str:
    """Strip ``ca://``/``pva://`` and a trailing ``.VAL`` (``X.VAL`` is stored as ``X``).

    Only a real ``.VAL`` suffix is stripped: the AA's old substring bug (#356) turned
    ``X.VALUE_A`` into ``XUE_A``.
    """
    name = strip_protocol(name.strip())
    if name.endswith(".VAL"):
        name = name[: -len(".VAL")]
    return name
