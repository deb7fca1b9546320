"""Checking and repairing single PlainPB files (``pvarchiver pb validate|repair``).

Repair never deletes data silently: it reports every dropped line, and when it has to drop
anything but a partially written tail it keeps the original next to the file as ``.bak``.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..pb import PBDecodeError, year_start
from ..pb.escape import EscapeError
from .partitions import Granularity, parse_partition_name, shift_partition, split_partition_suffix
from .pbfile import PBFile, PBFileError
from .store import fsync_dir


@dataclass
class Problem:
    offset: int
    line: int  # 1 = header
    kind: (
        str  # bad-header, corrupt-line, not-increasing, wrong-year, outside-partition, partial-tail
    )
    message: str

    def __str__(self) -> str:
        return f"line {self.line} (offset {self.offset}): {self.kind}: {self.message}"


@dataclass
class FileReport:
    path: Path
    pvname: str | None = None
    type_name: str | None = None
    year: int | None = None
    samples: int = 0
    first: tuple[int, int] | None = None
    last: tuple[int, int] | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def partition_range_of(path: Path) -> tuple[int, int] | None:
    """[start, end) of the partition the file name claims, whatever its granularity."""
    split = split_partition_suffix(path.name)
    if split is None:
        return None
    name = split[1]
    n = name.count("_") + 1
    for g in Granularity:
        if g.name_components == n:
            start = parse_partition_name(name, g)
            if start is None:
                continue
            if n == 5:  # minutes: the finest granularity that fits is the safest bound
                return start, start + 300
            return start, shift_partition(start, g, 1)
    return None


def validate_file(path: Path) -> FileReport:
    if path.name.endswith(".parquet"):  # parquet:// stores' files (issue 19)
        from .parquet_validate import validate_parquet

        return validate_parquet(path)
    rep = FileReport(path)
    if path.stat().st_size == 0:
        # left by a kill between creating a partition file and writing its header; it holds
        # nothing, readers skip it and the next append writes the header
        rep.problems.append(Problem(0, 1, "empty-file", "zero-byte file (no header, no data)"))
        return rep
    try:
        f = PBFile.open(path)
    except PBFileError as e:
        rep.problems.append(Problem(0, 1, "bad-header", str(e)))
        return rep
    with f:
        h = f.header
        rep.pvname, rep.type_name, rep.year = h.pvname, h.type.name, h.year
        bounds = partition_range_of(path)
        ys, ye = year_start(h.year), year_start(h.year + 1)
        prev: tuple[int, int] | None = None
        for i, (off, line) in enumerate(f.iter_lines(f.header_end), start=2):
            try:
                s = f.decode(line)
            except (PBDecodeError, EscapeError) as e:
                rep.problems.append(Problem(off, i, "corrupt-line", str(e)))
                continue
            ts = (s.secs, s.nanos)
            if not ys <= s.secs < ye:
                rep.problems.append(Problem(off, i, "wrong-year", f"sample outside {h.year}"))
            if bounds and not bounds[0] <= s.secs < bounds[1]:
                rep.problems.append(
                    Problem(off, i, "outside-partition", f"{ts} not in the file's partition")
                )
            if prev is not None and ts <= prev:
                rep.problems.append(Problem(off, i, "not-increasing", f"{ts} after {prev}"))
            else:
                prev = ts
            rep.samples += 1
            rep.first = rep.first or ts
            rep.last = ts
        if f.data_end != f.size:
            rep.problems.append(
                Problem(
                    f.data_end,
                    rep.samples + 2,
                    "partial-tail",
                    f"{f.size - f.data_end} bytes after the last LF (interrupted write)",
                )
            )
    return rep


@dataclass
class RepairReport:
    path: Path
    truncated_bytes: int = 0
    dropped: list[Problem] = field(default_factory=list)
    backup: Path | None = None
    unrepairable: str | None = None
    removed_empty: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.truncated_bytes or self.dropped or self.removed_empty)


def repair_file(path: Path) -> RepairReport:
    """Cut a partial tail; drop undecodable and out-of-order lines (kept in a ``.bak``)."""
    if path.name.endswith(".parquet"):
        from .parquet_validate import repair_parquet

        return repair_parquet(path)
    rep = RepairReport(path)
    v = validate_file(path)
    if any(p.kind == "empty-file" for p in v.problems):
        path.unlink()
        rep.removed_empty = True
        return rep
    if any(p.kind == "bad-header" for p in v.problems):
        rep.unrepairable = "the header cannot be read; nothing was changed"
        return rep
    drop_kinds = {"corrupt-line", "not-increasing", "wrong-year"}
    to_drop = {p.offset for p in v.problems if p.kind in drop_kinds}
    tail = [p for p in v.problems if p.kind == "partial-tail"]
    if not to_drop:
        if tail:
            size = path.stat().st_size
            os.truncate(path, tail[0].offset)
            rep.truncated_bytes = size - tail[0].offset
        return rep
    rep.dropped = [p for p in v.problems if p.kind in drop_kinds]
    backup = path.with_name(path.name + ".bak")
    shutil.copy2(path, backup)
    rep.backup = backup
    tmp = path.with_name(path.name + ".repair")
    with PBFile.open(path) as f, open(tmp, "wb") as out:
        f.fh.seek(0)
        out.write(f.fh.read(f.header_end))
        for off, line in f.iter_lines(f.header_end):
            if off not in to_drop:
                out.write(line + b"\n")
        rep.truncated_bytes = f.size - f.data_end
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    return rep
