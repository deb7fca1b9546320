"""PV name -> file key -> path, as the AA's ConvertPVNameToKey and PVPath do it.

``:`` and ``-`` become folder separators and a terminator ``:`` follows the last component,
so ``X:CTRD_V`` and ``X:CTRD_V_BOOK`` never share a file-name prefix.
"""

from __future__ import annotations

import re
from pathlib import Path

DEFAULT_SEPARATORS = ":-"
DEFAULT_TERMINATOR = ":"
PB_EXTENSION = ".pb"

_PROTOCOL_PREFIXES = ("ca://", "pva://")
_FORBIDDEN = ("/", "\\", "\x00", "\n", "\r")


def strip_protocol(pvname: str) -> str:
    """Drop a ``ca://`` or ``pva://`` prefix, which the AA ignores for storage."""
    for prefix in _PROTOCOL_PREFIXES:
        if pvname.startswith(prefix):
            return pvname[len(prefix) :]
    return pvname


def pv_name_to_key(
    pvname: str,
    separators: str = DEFAULT_SEPARATORS,
    terminator: str = DEFAULT_TERMINATOR,
) -> str:
    """``EIOC:LI30:MP01:HEARTBEAT`` -> ``EIOC/LI30/MP01/HEARTBEAT:``."""
    name = strip_protocol(pvname)
    if not name:
        raise ValueError("empty PV name")
    if any(c in name for c in _FORBIDDEN):
        raise ValueError(f"PV name {pvname!r} contains a character that cannot be in a file name")
    key = re.sub("[" + re.escape(separators) + "]", "/", name) if separators else name
    # A key is a relative path under the store's root: it must never climb out of it.
    if any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"PV name {pvname!r} would map outside the store's folder")
    return key + terminator


def partition_path(root: Path, key: str, partition_name: str, ext: str = PB_EXTENSION) -> Path:
    """``root/EIOC/LI30/MP01/HEARTBEAT:2012_08_24_16.pb``."""
    return root / (key + partition_name + ext)


def key_folder_and_prefix(root: Path, key: str) -> tuple[Path, str]:
    """Folder that holds a key's partition files, and the file-name prefix they share."""
    folder, _, prefix = key.rpartition("/")
    return (root / folder if folder else root), prefix
