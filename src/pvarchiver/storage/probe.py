"""What a store folder accepts, found by trying it, and the naming a store uses there.

Why probe instead of asking ``os.name``: the folder decides, not the operating system. A Linux
host may keep its store on an NTFS disk (ntfs-3g with ``windows_names``), a Samba share or a
FAT stick; macOS folders are case-insensitive by default; a Windows host may store on a Linux
file server. Before this probe the archiver started on such a folder, accepted every PV,
said "Being archived" and never wrote one sample.

:func:`probe_folder` creates a scratch folder inside the store's root, tries the characters the
naming may produce, checks whether ``a`` and ``A`` are one file, and removes the scratch
folder. :func:`choose_naming` turns that into the store's :class:`~.naming.KeyNaming`, or a
:class:`StoreFolderError` whose one-line message says which store, folder, character and
setting are involved.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path

from .naming import (
    AA_TERMINATOR,
    PORTABLE_TERMINATOR,
    PROP_TERMINATOR,
    KeyNaming,
    NamingSettings,
    unportable,
)
from .partitions import Granularity, parse_partition_name, split_partition_suffix
from .url import StoreConfig

log = logging.getLogger(__name__)

#: characters a file name of ours may contain under AA names (besides letters and digits)
_AA_CHARS = ':"*<>?|'
#: characters the portable form needs (the U+F000 block) and PV-name punctuation
_PORTABLE_CHARS = "\uf03a\uf03f[]{};,#^+_"
#: how many folder entries the search for an existing data file may look at
_SCAN_LIMIT = 20_000


#: errors that mean "no room now", not "this folder cannot hold files"
_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}


class StoreFolderError(RuntimeError):
    """A store whose folder cannot hold its files; the message is one line for the user."""


@dataclass(frozen=True)
class FolderProbe:
    """What one folder was seen to accept."""

    folder: Path
    refused: frozenset[str]  # characters that could not be in a file name there
    case_insensitive: bool
    #: terminator of the first data file found there (as spelled in the file name), if any
    existing_terminator: str | None = None
    existing_example: str = ""


def _try_create(folder: Path, name: str) -> bool:
    try:
        fd = os.open(folder / name, os.O_CREAT | os.O_WRONLY | os.O_EXCL, 0o644)
    except OSError:
        return False
    os.close(fd)
    return True


def probe_folder(
    root: Path, granularity: Granularity | None = None, ext: str = ".pb"
) -> FolderProbe:
    """Create ``root`` if needed and try what file names it takes.

    With the store's ``granularity``, the first data file found (a name ending in a partition
    name of that granularity) tells which terminator the files already there use. Raises
    :class:`StoreFolderError` when the folder cannot be created or written at all.
    """
    try:
        root.mkdir(parents=True, exist_ok=True)
        scratch = root / f".pvarchiver-probe-{uuid.uuid4().hex[:12]}"
        scratch.mkdir()
    except OSError as e:
        if e.errno in _FULL and root.is_dir():
            # A full disk is no reason not to start: retrieval works, ETL frees space, and
            # the store's failing writes are reported (getPVStatus, health) until it has
            # room. The names are then those of the files already there, else the default.
            log.warning("cannot probe %s (%s): naming taken from its files", root, e.strerror)
            return _with_existing(root, granularity, ext)
        raise StoreFolderError(
            f"cannot create or write the folder {root}: {e.strerror or e}"
        ) from None
    try:
        if not _try_create(scratch, "probe"):
            raise StoreFolderError(f"cannot create files in {root}")
        refused = frozenset(
            c for c in _AA_CHARS + _PORTABLE_CHARS if not _try_create(scratch, f"p{c}x")
        )
        # trailing dots: Windows (and ntfs-3g windows_names) refuse or strip them
        if not _try_create(scratch, "dot.") or "dot." not in os.listdir(scratch):
            refused |= {"."}  # refused, or silently stripped as Windows does
        case_insensitive = (scratch / "PROBE").exists()
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _with_existing(root, granularity, ext, refused, case_insensitive)


def _with_existing(
    root: Path,
    granularity: Granularity | None,
    ext: str,
    refused: frozenset[str] = frozenset(),
    case_insensitive: bool = False,
) -> FolderProbe:
    """The probe's result with the terminator of the files already there."""
    term, example = (None, "")
    if granularity is not None:
        term, example = _existing_terminator(root, granularity, ext)
    return FolderProbe(root, refused, case_insensitive, term, example)


def _existing_terminator(root: Path, granularity: Granularity, ext: str) -> tuple[str | None, str]:
    """The character before the partition name in the first data file under ``root``
    (stray files whose names do not end in a partition name are passed over)."""
    seen = 0
    stack = [root]
    while stack and seen < _SCAN_LIMIT:
        folder = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        seen += len(entries)
        for e in entries:
            split = split_partition_suffix(e.name, ext)
            if split is None or e.is_dir():
                continue
            if parse_partition_name(split[1], granularity) is None:
                continue  # another granularity's file: not this store's
            return split[0], str(Path(e.path).relative_to(root))
        stack.extend(
            Path(e.path)
            for e in entries
            if e.is_dir(follow_symlinks=False) and not e.name.startswith(".pvarchiver-probe-")
        )
    return None, ""


def choose_naming(config: StoreConfig, settings: NamingSettings, probe: FolderProbe) -> KeyNaming:
    """The naming a store uses in the probed folder, or :class:`StoreFolderError`.

    The terminator comes from the store URL's ``terminator=``, else ``siteNameSpaceTerminator``,
    else the AA's ``:``. Names are portable where the folder refuses any character Windows
    forbids (and always on Windows), or where, with the default terminator, the files already
    there are portable. A terminator the folder refuses, or files already there that use
    another spelling, stop the store: writing beside them would split every PV in two.
    """
    where = f"store {config.name} (folder {probe.folder})"
    if "terminator" in config.extra:
        term, source = config.extra["terminator"], f"terminator= in the store URL of {config.name}"
    else:
        term, source = settings.terminator, settings.terminator_source
    portable = os.name == "nt" or bool(probe.refused & set(_AA_CHARS))
    if term is None:
        term = AA_TERMINATOR
        if probe.existing_terminator == PORTABLE_TERMINATOR:
            portable = True  # a store written on Windows, now read elsewhere: keep its names
    try:
        naming = KeyNaming(settings.separators, term, portable, probe.case_insensitive)
    except ValueError as e:
        raise StoreFolderError(f"{where}: {e} (from {source})") from None
    spelled = naming.file_terminator
    if spelled in probe.refused:
        fix = "set another terminator" if source != "default" else "set a terminator"
        raise StoreFolderError(
            f"{where}: the folder refuses {spelled!r} in file names, the key terminator "
            f"(from {source}); {fix} (terminator= in the store URL or {PROP_TERMINATOR})"
        )
    existing = probe.existing_terminator
    if existing is not None and existing != spelled:
        raise StoreFolderError(
            f"{where}: its files use the terminator {existing!r} (e.g. {probe.existing_example}) "
            f"but this store would write {spelled!r} (from {source}); set terminator="
            f"{unportable(existing)} or copy the files with 'pvarchiver pb rekey'"
        )
    return naming


def open_naming(config: StoreConfig, settings: NamingSettings | None = None) -> KeyNaming:
    """Probe a store's folder and choose its naming (see :func:`choose_naming`)."""
    probe = probe_folder(Path(config.root_folder), config.granularity)
    return choose_naming(config, settings or NamingSettings(), probe)


def remove_stale_probes(root: Path) -> None:
    """Scratch folders left by a probe that was killed half-way."""
    with contextlib.suppress(OSError):
        for e in os.scandir(root):
            if e.name.startswith(".pvarchiver-probe-") and e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
