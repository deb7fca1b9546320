"""PV name -> file key -> path, as the AA's ConvertPVNameToKey and PVPath do it.

The key mapping itself (separators, terminator, the portable Windows spelling) lives in
:mod:`pvarchiver.storage.naming`; this module joins keys and partition names into paths.
"""

from __future__ import annotations

import os
from pathlib import Path

from .naming import AA_SEPARATORS, AA_TERMINATOR, KeyNaming, strip_protocol

PB_EXTENSION = ".pb"

__all__ = [
    "PB_EXTENSION",
    "key_folder_and_prefix",
    "long_path",
    "partition_path",
    "pv_name_to_key",
    "strip_protocol",
]


def pv_name_to_key(
    pvname: str,
    separators: str = AA_SEPARATORS,
    terminator: str = AA_TERMINATOR,
    portable: bool = False,
) -> str:
    """``EIOC:LI30:MP01:HEARTBEAT`` -> ``EIOC/LI30/MP01/HEARTBEAT:`` (the AA's defaults).

    With ``portable`` the result uses the Windows-safe spelling (see :mod:`.naming`).
    """
    return KeyNaming(separators, terminator, portable).key(pvname)


def partition_path(root: Path, key: str, partition_name: str, ext: str = PB_EXTENSION) -> Path:
    """``root/EIOC/LI30/MP01/HEARTBEAT:2012_08_24_16.pb``."""
    return root / (key + partition_name + ext)


def key_folder_and_prefix(root: Path, key: str) -> tuple[Path, str]:
    """Folder that holds a key's partition files, and the file-name prefix they share."""
    folder, _, prefix = key.rpartition("/")
    return (root / folder if folder else root), prefix


def long_path(root: Path) -> Path:
    """A store root in the form that lifts Windows' 260-character path limit.

    On Windows an absolute ``\\\\?\\C:\\...`` (or ``\\\\?\\UNC\\server\\share\\...``) path
    reaches 32,767 characters whatever the LongPathsEnabled registry setting says; elsewhere
    the root is returned as it is.
    """
    if os.name != "nt":
        return root
    text = os.path.abspath(str(root))
    if text.startswith("\\\\?\\"):
        return Path(text)
    if text.startswith("\\\\"):
        return Path("\\\\?\\UNC\\" + text[2:])
    return Path("\\\\?\\" + text)
