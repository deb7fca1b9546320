"""``pvarchiver pb validate|repair`` for ``.parquet`` files.

A Parquet file is written whole and renamed into place, so it has no partially written
tail; what can be wrong is a file cut short or overwritten by something else (unreadable:
reported, never changed), a foreign file (reported), or rows that break the store's rules
(out of order, outside the year or the partition the name claims: dropped by ``repair``,
with the original kept as ``.bak``).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np

from ..pb import year_start
from .columns import take_rows
from .parquet_schema import CODECS, block_to_table
from .parquet_store import (
    PARQUET_EXTENSION,
    GroupWriter,
    ParquetReadError,
    file_blocks,
    open_file,
)
from .store import fsync_dir
from .validate import FileReport, Problem, RepairReport, partition_range_of

NS = 1_000_000_000


def _bounds(path: Path) -> tuple[int, int] | None:
    name = path.name
    if name.endswith(PARQUET_EXTENSION):  # partition_range_of knows .pb names
        return partition_range_of(path.with_name(name[: -len(PARQUET_EXTENSION)] + ".pb"))
    return None


def _row_checks(
    rep: FileReport, secs: np.ndarray, nanos: np.ndarray, base: int, year: int, path: Path
) -> np.ndarray:
    """Problems of one block of rows (row numbers from ``base``); returns the rows to keep."""
    ts = secs * NS + nanos
    keep = np.ones(len(ts), dtype=bool)
    ys, ye = year_start(year), year_start(year + 1)
    wrong_year = (secs < ys) | (secs >= ye)
    bounds = _bounds(path)
    outside = np.zeros(len(ts), dtype=bool)
    if bounds is not None:
        outside = (secs < bounds[0]) | (secs >= bounds[1])
    prev = -1 if rep.last is None else rep.last[0] * NS + rep.last[1]
    for i in range(len(ts)):
        t = int(ts[i])
        if wrong_year[i]:
            rep.problems.append(Problem(base + i, base + i, "wrong-year", f"row outside {year}"))
            keep[i] = False
        elif outside[i]:
            rep.problems.append(
                Problem(base + i, base + i, "outside-partition", "row not in the file's partition")
            )
            keep[i] = False
        if t <= prev:
            rep.problems.append(
                Problem(
                    base + i,
                    base + i,
                    "not-increasing",
                    f"{divmod(t, NS)} after {divmod(prev, NS)}",
                )
            )
            keep[i] = False
        elif keep[i]:
            prev = t
            rep.last = (t // NS, t % NS)
            rep.first = rep.first or rep.last
    return keep


def validate_parquet(path: Path) -> FileReport:
    """Check one ``.parquet`` file; the report's ``offset`` and ``line`` are row numbers."""
    rep = FileReport(path)
    if path.stat().st_size == 0:
        rep.problems.append(Problem(0, 0, "empty-file", "zero-byte file (no footer, no data)"))
        return rep
    row = 0
    try:
        for info, block in file_blocks(path):
            rep.pvname, rep.type_name, rep.year = info.pvname, info.type.name, info.year
            _row_checks(rep, block.secs, block.nanos, row, info.year, path)
            row += len(block)
            rep.samples += len(block)
    except ParquetReadError as e:
        rep.problems.append(Problem(row, row, "bad-file", str(e)))
    return rep


def repair_parquet(path: Path) -> RepairReport:
    """Drop rows out of order or outside the file's year or partition (original kept as
    ``.bak``); an unreadable or foreign file is reported and left as it is."""
    rep = RepairReport(path)
    v = validate_parquet(path)
    if any(p.kind == "empty-file" for p in v.problems):
        path.unlink()
        rep.removed_empty = True
        return rep
    bad = [p for p in v.problems if p.kind == "bad-file"]
    if bad:
        rep.unrepairable = f"{bad[0].message}; nothing was changed"
        return rep
    if not v.problems:
        return rep
    rep.dropped = list(v.problems)
    backup = path.with_name(path.name + ".bak")
    shutil.copy2(path, backup)
    rep.backup = backup
    tmp = path.with_name(path.name + ".repair")
    f, info = open_file(path)
    codec = f.metadata.row_group(0).column(0).compression if f.metadata.num_row_groups else "NONE"
    f.close()
    check = FileReport(path)
    row = 0
    with GroupWriter(tmp, info.pvname, info.year, info.type, _codec(codec), None) as out:
        for _info, block in file_blocks(path):
            keep = _row_checks(check, block.secs, block.nanos, row, info.year, path)
            row += len(block)
            kept = take_rows(block, keep)
            if len(kept):
                out.write(block_to_table(info.type, info.year, kept))
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return rep


def _codec(name: str) -> str:
    """The pyarrow codec of a column chunk's codec name (SNAPPY, ZSTD, UNCOMPRESSED...)."""
    name = name.upper()
    return CODECS.get(name, name if name in CODECS.values() else "NONE")
