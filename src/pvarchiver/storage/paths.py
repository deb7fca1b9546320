"""PV name -> file key -> path, as the AA's ConvertPVNameToKey and PVPath do it.

``:`` and ``-`` become folder separators and a terminator ``:`` follows the last component,
so ``X:CTRD_V`` and ``X:CTRD_V_BOOK`` never share a file-name prefix.

Windows (NTFS) refuses ``:`` and ``"*<>?|`` in file names, and ``:`` is in every AA file
name (``HEARTBEAT:2012.pb``). There the characters are mapped to the Unicode private-use
code points U+F000+c, the convention WSL and Cygwin use for the same problem, so a storage
folder written by the AA on Linux and copied through WSL, or a Linux store shared with a
Windows host, keeps the same names seen from both sides.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

DEFAULT_SEPARATORS = ":-"
DEFAULT_TERMINATOR = ":"
PB_EXTENSION = ".pb"

_PROTOCOL_PREFIXES = ("ca://", "pva://")
_FORBIDDEN = ("/", "\\", "\x00", "\n", "\r")
#: characters NTFS refuses in a file name (besides the folder separators and controls)
NTFS_RESERVED = '"*:<>?|'
#: whether file names use the NTFS-safe mapping on this machine
WINDOWS_NAMES = os.name == "nt"


def ntfs_safe(text: str) -> str:
    """Map the characters NTFS refuses to U+F000+c (WSL/Cygwin's convention)."""
    return "".join(chr(0xF000 + ord(c)) if c in NTFS_RESERVED else c for c in text)


def _windows(windows: bool | None) -> bool:
    # read at call time so that tests can exercise the Windows names on any platform
    return WINDOWS_NAMES if windows is None else windows


def file_terminator(terminator: str = DEFAULT_TERMINATOR, windows: bool | None = None) -> str:
    """The terminator as it appears in file names on this platform."""
    return ntfs_safe(terminator) if _windows(windows) else terminator


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
    windows: bool | None = None,
) -> str:
    """``EIOC:LI30:MP01:HEARTBEAT`` -> ``EIOC/LI30/MP01/HEARTBEAT:``.

    With ``windows`` the result is NTFS-safe (see the module docstring).
    """
    name = strip_protocol(pvname)
    if not name:
        raise ValueError("empty PV name")
    if any(c in name for c in _FORBIDDEN):
        raise ValueError(f"PV name {pvname!r} contains a character that cannot be in a file name")
    key = re.sub("[" + re.escape(separators) + "]", "/", name) if separators else name
    # A key is a relative path under the store's root: it must never climb out of it.
    if any(part in (".", "..") for part in key.split("/")):
        raise ValueError(f"PV name {pvname!r} would map outside the store's folder")
    key += terminator
    return ntfs_safe(key) if _windows(windows) else key


def partition_path(root: Path, key: str, partition_name: str, ext: str = PB_EXTENSION) -> Path:
    """``root/EIOC/LI30/MP01/HEARTBEAT:2012_08_24_16.pb``."""
    return root / (key + partition_name + ext)


def key_folder_and_prefix(root: Path, key: str) -> tuple[Path, str]:
    """Folder that holds a key's partition files, and the file-name prefix they share."""
    folder, _, prefix = key.rpartition("/")
    return (root / folder if folder else root), prefix
