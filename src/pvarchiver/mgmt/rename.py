"""renamePV's data step: copy a PV's partition files under a new name.

Only the header line names the PV, so each file is copied with a new header and its sample
lines byte for byte. Each copy is written to a temporary file and renamed into place, so a
crash leaves either no file or a whole one; the old files stay (the AA keeps the old PV too,
paused, until the user deletes it). A ``parquet://`` store's files name the PV in their
footer; they are copied row group by row group with a new footer
(:func:`~pvarchiver.storage.parquet_ops.copy_renamed`), with the same crash safety.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from ..pb import decode_header, header_line, unescape
from ..storage.chains import DataStore
from ..storage.store import PartitionFile, PlainPBStore


def copy_pv_data(
    stores: Sequence[DataStore], old: str, new: str, newest_first: bool = False
) -> int:
    """Copy every file of ``old`` in every store to ``new`` (``newest_first``: each store's
    newest partition first, for appendAndAliasPV's swap); returns how many."""
    copied = 0
    for store in stores:
        with store.lock(old), store.lock(new):
            files = store.files_for_pv(old)
            if not isinstance(store, PlainPBStore):  # parquet://
                copied += _copy_parquet(store, files, old, new, newest_first)
                continue
            for pf in reversed(files) if newest_first else files:
                data = pf.path.read_bytes()
                nl = data.find(b"\n")
                if nl < 0:
                    continue  # an empty or broken file: nothing to copy
                info = decode_header(unescape(data[:nl]))
                info.pvname = new
                dest = store.path_for(new, pf.start)
                dest.parent.mkdir(parents=True, exist_ok=True)
                tmp = dest.with_name(dest.name + ".renaming")
                with open(tmp, "wb") as fh:
                    fh.write(header_line(info))
                    fh.write(data[nl + 1 :])
                    fh.flush()
                    os.fsync(fh.fileno())
                os.replace(tmp, dest)
                copied += 1
            store.forget(new)
    return copied


def _copy_parquet(
    store: DataStore, files: Sequence[PartitionFile], old: str, new: str, newest_first: bool
) -> int:
    from ..storage.parquet_ops import copy_renamed

    n = 0
    for pf in reversed(files) if newest_first else files:
        if copy_renamed(store, pf, old, new) is not None:  # type: ignore[arg-type]
            n += 1
    store.forget(new)
    return n
