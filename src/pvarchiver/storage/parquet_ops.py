"""Whole-file operations on one PV's ``.parquet`` files that management needs: a copy under
another PV's name (renamePV, appendAndAliasPV's copies).

Only the footer names the PV (``pvName``), but a Parquet footer cannot be edited in place,
so the copy re-writes the row groups into ``~TempFile~<new name>`` with the new footer,
syncs it and renames it into place: a crash leaves no file or a whole one, never a file
with the rows of one PV under the name of another.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

from .parquet_store import READ_ERRORS, TEMP_PREFIX, ParquetReadError, ParquetStore, open_file
from .store import PartitionFile, StoreError, fsync_dir


def copy_renamed(store: ParquetStore, pf: PartitionFile, old: str, new: str) -> Path | None:
    """Copy ``old``'s partition file ``pf`` to ``new``'s path in ``store``, footer renamed;
    the path written, or None for an empty file (nothing to copy). StoreError when the file
    cannot be read or is not ``old``'s. The caller holds both PVs' locks."""
    if pf.path.stat().st_size == 0:
        return None
    try:
        src, info = open_file(pf.path)
    except ParquetReadError as e:
        raise StoreError(f"{store.name}: cannot copy {e}") from None
    dest = store.path_for(new, pf.start)
    tmp = dest.with_name(TEMP_PREFIX + dest.name)
    with src:
        if info.pvname != old:
            raise StoreError(f"{store.name}: {pf.path} belongs to PV {info.pvname!r}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        out = store.writer(tmp, new, info.year, info.type)
        try:
            for rg in range(src.num_row_groups):
                out.write(src.read_row_group(rg))
            out.close()
        except (OSError, *READ_ERRORS) as e:
            out.abort()
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise StoreError(f"{store.name}: copying {pf.path} failed: {e}") from None
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    store.forget(new)
    return dest
