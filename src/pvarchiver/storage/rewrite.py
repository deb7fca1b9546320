"""Replace a partition file as a whole, so that a crash leaves it either wholly old or wholly new.

Why: changeTypeForPV and mergeInData change samples that are already stored, which an
append cannot do. The new content goes to a temporary file next to the old one (same folder,
so the same file system), is synced, and is then renamed over the old name with
``os.replace``, which is atomic: a reader or a process killed at any moment sees one of the
two files, never a mix. The folder is synced after the rename so that the new name survives
a power cut too. A temporary file left by a crash is never mistaken for data (its name does
not end in ``.pb``) and is removed by the next rewrite of that file or by
:func:`remove_stale_temps`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from ..pb import PayloadInfo, Sample, header_line, sample_line
from .paths import key_folder_and_prefix
from .store import PlainPBStore, fsync_dir

#: suffix of the temporary file a rewrite writes before renaming it over the data file
TEMP_SUFFIX = ".rewritetmp"


def temp_path(path: Path) -> Path:
    """Where the new content of ``path`` is written before it replaces ``path``."""
    return path.with_name(path.name + TEMP_SUFFIX)


def write_temp(path: Path, pieces: Iterable[bytes]) -> Path:
    """Write ``pieces`` to ``path``'s temporary file and sync it; returns that file, for
    :func:`commit`. The caller may still be reading ``path`` (Windows cannot replace a file
    that is open, so the reader is closed between the two steps). On an error the
    temporary file is removed and ``path`` is untouched."""
    tmp = temp_path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(tmp, "wb") as fh:
            for p in pieces:
                fh.write(p)
            fh.flush()
            os.fsync(fh.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return tmp


def commit(tmp: Path, path: Path) -> None:
    """Rename a synced temporary file over ``path`` (atomic) and make the rename durable."""
    try:
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    fsync_dir(path.parent)


def atomic_write(path: Path, pieces: Iterable[bytes]) -> None:
    """Replace ``path`` (or create it) by ``pieces``, crash-safe."""
    commit(write_temp(path, pieces), path)


def sample_lines(
    header: PayloadInfo, samples: Iterable[Sample], count: list[int]
) -> Iterator[bytes]:
    """A file's bytes: ``header`` and ``samples`` (all of the header's year, in time order),
    in blocks; ``count[0]`` counts the samples."""
    yield header_line(header)
    batch: list[bytes] = []
    for s in samples:
        batch.append(sample_line(header.type, header.year, s))
        if len(batch) >= 4096:
            count[0] += len(batch)
            yield b"".join(batch)
            batch = []
    if batch:
        count[0] += len(batch)
        yield b"".join(batch)


def remove_stale_temps(store: PlainPBStore, pvname: str) -> int:
    """Delete the temporary files an interrupted rewrite of ``pvname`` left in ``store``."""
    try:
        folder, prefix = key_folder_and_prefix(store.root, store.key(pvname))
    except ValueError:  # a name that cannot be a file name here has no files
        return 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    removed = 0
    for n in names:
        if n.endswith(TEMP_SUFFIX) and n.startswith(prefix):
            with contextlib.suppress(OSError):
                (folder / n).unlink()
                removed += 1
    return removed
