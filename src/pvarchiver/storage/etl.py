"""ETL: move completed partitions from one store to the next (STS -> MTS -> LTS).

Crash safety comes from ordering, not transactions. For each source file: append to the
destination only the lines newer than the destination file's last sample (so a rerun after a
crash never duplicates), fsync the destination, and only then delete the source, and only if
the source has not changed since it was listed. A kill at any point leaves either the source
(and maybe a partial tail in the destination, cut off on the next append) or the destination
holding everything; the next pass completes the move.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Iterator, Sequence
from collections.abc import Set as AbstractSet
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..pb import PayloadType, PBDecodeError, Sample, fast
from ..pb.escape import EscapeError
from .batch import Batch
from .chains import BlackholeStore
from .partitions import parse_partition_name, partition_start, shift_partition
from .paths import PB_EXTENSION
from .pbfile import PBFile, PBFileError
from .pp_cache import refresh_caches
from .store import PartitionFile, PlainPBStore, StoreError, fsync_dir, iter_pb_files

if TYPE_CHECKING:
    from .parquet_store import ParquetStore

log = logging.getLogger(__name__)


@dataclass
class ETLStats:
    """What one ETL pass did; exposed in metrics and reports."""

    source: str
    dest: str
    files_moved: int = 0
    files_deleted_empty: int = 0
    files_skipped: int = 0
    #: files deleted unread: the destination is a blackhole (retention) or refuses data
    #: (``etlIntoStoreIf`` false)
    files_discarded: int = 0
    bytes_discarded: int = 0
    samples_moved: int = 0
    bytes_moved: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)


class DestinationNewerError(StoreError):
    """The destination already holds newer samples than (part of) a source file; appending
    would lose them, so the file stays where it is and is reported."""


def _pv_files(
    src: PlainPBStore | ParquetStore,
    pvs: Sequence[str] | None,
    exclude: AbstractSet[str] = frozenset(),
) -> dict[str, list[PartitionFile]]:
    """Partition files by PV: for the given PVs from their own folders, else for every PV in
    the store (but ``exclude``) by the name in each file's header."""
    if pvs is not None:
        return {pv: src.files_for_pv(pv) for pv in pvs}
    by_pv: dict[str, list[PartitionFile]] = defaultdict(list)
    if not isinstance(src, PlainPBStore):
        return _parquet_pv_files(src, exclude)
    for path in iter_pb_files(src.root):
        name = path.name
        term = src.naming.file_terminator
        cut = name.rfind(term)
        if cut < 0:
            continue
        start = parse_partition_name(name[cut + len(term) : -len(PB_EXTENSION)], src.granularity)
        if start is None:
            continue
        pv = _header_pv(path)
        if pv is None or pv in exclude:
            continue
        by_pv[pv].append(PartitionFile(start, shift_partition(start, src.granularity, 1), path))
    for files in by_pv.values():
        files.sort()
    return by_pv


def _parquet_pv_files(
    src: ParquetStore, exclude: AbstractSet[str]
) -> dict[str, list[PartitionFile]]:
    """:func:`_pv_files` of a ``parquet://`` store: PV names from the footers."""
    from .parquet_store import PARQUET_EXTENSION, ParquetReadError

    by_pv: dict[str, list[PartitionFile]] = defaultdict(list)
    term = src.naming.file_terminator
    for path in src.iter_files():
        name = path.name
        cut = name.rfind(term)
        start = None
        if cut >= 0:
            part = name[cut + len(term) : -len(PARQUET_EXTENSION)]
            start = parse_partition_name(part, src.granularity)
        if start is None:
            continue
        try:
            pv = "" if path.stat().st_size == 0 else src.file_info(path).pvname
        except (ParquetReadError, OSError) as e:
            log.error("ETL: skipping %s: %s", path, e)
            continue
        if pv in exclude:
            continue
        by_pv[pv].append(PartitionFile(start, shift_partition(start, src.granularity, 1), path))
    for files in by_pv.values():
        files.sort()
    return by_pv


def _header_pv(path: Path) -> str | None:
    """PV named by a file's header; '' for zero-byte files; None if unreadable."""
    try:
        if path.stat().st_size == 0:
            return ""
        with PBFile.open(path) as f:
            return f.header.pvname
    except (PBFileError, OSError) as e:
        log.error("ETL: skipping %s: %s", path, e)
        return None


def files_to_move(
    files: list[PartitionFile], src: PlainPBStore | ParquetStore, now: float
) -> list[PartitionFile]:
    """Apply hold/gather to one PV's files (oldest first); see the module docstring of the AA.

    Only partitions before the current one are candidates. With hold=h and gather=g, nothing
    moves until the oldest file is h partitions old; then files at least h-g+1 partitions old
    move, which leaves h-g completed partitions in the source.
    """
    gran = src.granularity
    cur = partition_start(int(now), gran)
    done = [f for f in files if f.start < cur]
    if not done:
        return []
    hold, gather = src.config.hold, src.config.gather
    if hold > 0 and done[0].start > shift_partition(cur, gran, -hold):
        return []
    age = max(1, hold - gather + 1)
    limit = shift_partition(cur, gran, -age)
    return [f for f in done if f.start <= limit]


class Reducer(Protocol):
    """Post-processing for ETL, given by the layer that has post-processors (retrieval):
    ``reducedata=`` and the ``pp=`` caches."""

    def reduce(
        self, op: str, pv: str, ptype: PayloadType, samples: Iterator[Sample], start: int, end: int
    ) -> tuple[PayloadType, Iterable[Sample]]:
        """The samples of one partition ``[start, end)`` through the post-processor ``op``."""
        ...

    def extension(self, op: str) -> str:
        """The file extension of ``op``'s cache files (the AA's getExtension)."""
        ...


def move_file(
    src: PlainPBStore,
    dst: PlainPBStore,
    pv: str,
    pf: PartitionFile,
    reducer: Reducer | None = None,
) -> tuple[int, int]:
    """Move one source partition file into ``dst``; returns (samples, bytes) appended.
    A ``dst`` with ``reducedata=`` gets the file's samples through ``reducer``.

    The source is deleted only after the destination is synced and only if its size and
    modification time are what they were when the move started.
    """
    st0 = pf.path.stat()
    with src.lock(pv):
        f = PBFile.open(pf.path)
    with f:
        if f.header.pvname != pv:
            raise StoreError(f"{pf.path}: header names {f.header.pvname!r}")
        # run_etl groups files by the PV their header names: a file sitting at another PV's
        # path (key collision, botched copy) must not be moved as if it were in place
        if pf.path != src.path_for(pv, pf.start):
            raise StoreError(f"{pf.path}: header names {pv!r}, whose file is not here")
        if not f.has_samples:
            moved = (0, 0)
        elif dst.config.reduce_data:
            if reducer is None:
                raise StoreError(f"{dst.name}: reducedata= needs post-processors; not moved")
            moved = _reduced_append(f, dst, pv, pf, reducer)
        elif dst.granularity.approx_seconds >= src.granularity.approx_seconds:
            moved = _bulk_append(f, dst, pv)
        else:
            moved = _event_append(f, dst, pv)
    with src.lock(pv):
        st1 = pf.path.stat()
        if (st1.st_size, st1.st_mtime_ns) != (st0.st_size, st0.st_mtime_ns):
            log.warning("ETL: %s changed during the move; kept for the next pass", pf.path)
            return moved
        pf.path.unlink()
        fsync_dir(pf.path.parent)
        # the store's last-known timestamp stays: it still bounds what may be appended next
    return moved


def _bulk_append(f: PBFile, dst: PlainPBStore, pv: str) -> tuple[int, int]:
    """Copy raw lines (no decode) after the destination file's last sample."""
    first = f.first_sample()
    assert first is not None
    path = dst.path_for(pv, first.secs)
    with dst.lock(pv):
        dst_last, size_before = dst._prepare_file(path, pv, f.header.type, f.header.year)
        begin = f.header_end if dst_last is None else f.find((dst_last[0], dst_last[1] + 1))
        if begin > f.header_end:
            # Lines at or before the destination's last sample are skipped. That is right only
            # when they are the prefix an interrupted earlier move already copied, whose last
            # line is then the destination's last sample; anything else would be lost.
            prev = f.prev_line_start(begin)
            line, _ = f.read_line(prev if prev is not None else f.header_end)
            if f.timestamp_of(line) != dst_last:
                raise DestinationNewerError(
                    f"{f.path}: {dst.name} already holds newer data for {pv} than this file; "
                    "not moved, so that nothing is lost"
                )
        if begin >= f.data_end:
            return 0, 0
        nbytes = 0
        nlines = 0
        try:
            with open(path, "ab") as out:
                for _off, block in f.iter_blocks(begin):
                    out.write(block)
                    nbytes += len(block)
                    nlines += block.count(b"\n")
                out.flush()
                os.fsync(out.fileno())
        except OSError:
            # e.g. disk full: leave the destination as it was; the source is still complete
            with contextlib.suppress(OSError):
                os.truncate(path, size_before)
            dst.forget(pv)
            raise
        fsync_dir(path.parent)
        dst.forget(pv)
    return nlines, nbytes


def _decoded(f: PBFile) -> Iterator[Sample]:
    for off, line in f.iter_lines(f.header_end):
        try:
            yield f.decode(line)
        except (PBDecodeError, EscapeError) as e:
            raise StoreError(f"{f.path}: corrupt line at offset {off}: {e}") from None


def _event_append(f: PBFile, dst: PlainPBStore, pv: str) -> tuple[int, int]:
    """Destination partitions finer than the source: re-partition sample by sample, streamed."""
    return _append_after(dst, pv, f.header.type, _decoded(f), str(f.path))


def _append_after(
    dst: PlainPBStore, pv: str, ptype: PayloadType, samples: Iterable[Sample], where: str
) -> tuple[int, int]:
    """Append ``samples`` (time-ordered) after the destination's last one, synced.

    As in the bulk path, samples at or before the destination's last one may only be skipped
    when they end exactly at it (the rerun of an interrupted move).
    """
    dst_last = dst.last_known_timestamp(pv)
    newer = DestinationNewerError(
        f"{where}: {dst.name} already holds newer data for {pv} than this file; "
        "not moved, so that nothing is lost"
    )

    def after() -> Iterator[Sample]:
        skipped_last: tuple[int, int] | None = None
        checked = dst_last is None
        for s in samples:
            if not checked:
                if (s.secs, s.nanos) <= dst_last:  # type: ignore[operator]
                    skipped_last = (s.secs, s.nanos)
                    continue
                if skipped_last is not None and skipped_last != dst_last:
                    raise newer
                checked = True
            yield s
        if not checked and skipped_last != dst_last:
            raise newer

    old_fsync = dst.fsync
    dst.fsync = True
    try:
        r = dst.append(Batch.of_samples(pv, ptype, after())).one()
    finally:
        dst.fsync = old_fsync
    return r.written, r.bytes_written


def _reduced_append(
    f: PBFile, dst: PlainPBStore, pv: str, pf: PartitionFile, reducer: Reducer
) -> tuple[int, int]:
    """``reducedata=<op>``: the file's samples through the post-processor ``op``, appended.

    Any failure raises, so the caller keeps the source: the AA deletes the source even when
    the reduction fails, which loses the data.
    """
    op = dst.config.reduce_data or ""
    try:
        out_type, reduced = reducer.reduce(op, pv, f.header.type, _decoded(f), pf.start, pf.end)
        rows = list(reduced)
    except StoreError:
        raise
    except Exception as e:
        raise StoreError(f"{f.path}: reducedata={op} failed: {e}") from e
    return _append_after(dst, pv, out_type, rows, f"{f.path} ({op})")


def discard_file(src: PlainPBStore | ParquetStore, pv: str, pf: PartitionFile) -> int:
    """Delete a source file whose data goes nowhere (a blackhole destination, or one whose
    ``etlIntoStoreIf`` flag is false); returns its size. Only a file at ``pv``'s own path."""
    if pf.path != src.path_for(pv, pf.start):
        raise StoreError(f"{pf.path}: header names {pv!r}, whose file is not here")
    with src.lock(pv):
        try:
            size = pf.path.stat().st_size
        except FileNotFoundError:
            return 0
        pf.path.unlink()
        fsync_dir(pf.path.parent)
    return size


def _inspect(pf: PartitionFile) -> tuple[bool, str | None]:
    """(whether the file holds samples, reason not to move it or None), in one read."""
    if not pf.path.name.endswith(PB_EXTENSION):
        from .etl_columns import inspect_parquet

        return inspect_parquet(pf.path)
    try:
        with PBFile.open(pf.path) as f:
            if not f.has_samples:
                return False, None
            if f.header.type in fast.SUPPORTED:
                # vectorised check; only lines it cannot vouch for go through protobuf
                for block_start, block in f.iter_blocks(f.header_end):
                    cols = fast.decode_scalar_lines(f.header.type, block)
                    for i in np.flatnonzero(cols.fallback).tolist():
                        a, b = int(cols.line_starts[i]), int(cols.line_ends[i])
                        try:
                            f.decode(block[a:b])
                        except (PBDecodeError, EscapeError) as e:
                            return True, f"corrupt line at offset {block_start + a}: {e}"
                return True, None
            for off, line in f.iter_lines(f.header_end):
                try:
                    f.decode(line)
                except (PBDecodeError, EscapeError) as e:
                    return True, f"corrupt line at offset {off}: {e}"
    except (PBFileError, OSError) as e:
        return True, str(e)
    return True, None


def run_etl(
    src: PlainPBStore | ParquetStore,
    dst: PlainPBStore | ParquetStore | BlackholeStore,
    now: float | None = None,
    pvs: Sequence[str] | None = None,
    everything: bool = False,
    *,
    exclude: AbstractSet[str] = frozenset(),
    discard: bool = False,
    reducer: Reducer | None = None,
) -> ETLStats:
    """One ETL pass from ``src`` into ``dst``.

    ``pvs``: only these PVs (None: every PV with files in ``src`` but ``exclude``).
    ``everything`` moves all partitions, the current one included (consolidateOnShutdown and
    consolidateDataForPV); the caller must make sure nothing appends to ``src`` meanwhile.
    ``discard`` (or a blackhole ``dst``) deletes what is due instead of moving it: that is
    how a chain ending in ``blackhole://`` ages data out.
    Files with undecodable lines are left in place and reported: ``pvarchiver pb repair``
    fixes them.
    """
    t0 = time.monotonic()
    now = time.time() if now is None else now
    stats = ETLStats(src.name, dst.name)
    gran = src.granularity
    cur = partition_start(int(now), gran)
    empty_limit = shift_partition(cur, gran, -(src.config.hold + 1))
    discard = discard or dst.is_blackhole
    for pv, files in sorted(_pv_files(src, pvs, exclude).items()):
        if pv == "":
            for pf in files:  # zero-byte files: no PV to attribute them to
                if pf.start <= empty_limit:
                    pf.path.unlink(missing_ok=True)
                    stats.files_deleted_empty += 1
            continue
        movable = files if everything else files_to_move(files, src, now)
        if discard:
            _discard_all(src, pv, movable, stats)
            continue
        assert not isinstance(dst, BlackholeStore)
        moved_before = stats.files_moved
        if not (isinstance(src, PlainPBStore) and isinstance(dst, PlainPBStore)):
            _move_columnar(src, dst, pv, movable, stats, everything, empty_limit, reducer)
            if stats.files_moved > moved_before and isinstance(dst, PlainPBStore):
                if dst.config.post_processors and reducer:  # parquet -> pb with pp=
                    stats.errors += refresh_caches(dst, pv, reducer)
            continue
        for pf in movable:
            drop_empty = everything or pf.start <= empty_limit
            if not _move_one(src, dst, pv, pf, stats, drop_empty, reducer):
                break  # later files must not overtake it: the destination only grows forward
        if stats.files_moved > moved_before and dst.config.post_processors and reducer:
            # the AA's pp= caches, after the commit; a failure costs speed, not data
            stats.errors += refresh_caches(dst, pv, reducer)
    stats.seconds = time.monotonic() - t0
    return stats


def _move_columnar(
    src: PlainPBStore | ParquetStore,
    dst: PlainPBStore | ParquetStore,
    pv: str,
    movable: list[PartitionFile],
    stats: ETLStats,
    everything: bool,
    empty_limit: int,
    reducer: Reducer | None = None,
) -> None:
    """Move one PV's files where a Parquet store is at either end (:mod:`.etl_columns`):
    the files of one destination partition together, oldest first, stopping at the first
    that cannot move so that later data never overtakes it. A ``reducedata=`` destination
    gets each file through ``reducer``, one file at a time (a partition's reduction needs
    that partition's bounds)."""
    from .etl_columns import group_by_destination, move_files, move_reduced

    ready: list[PartitionFile] = []
    for pf in movable:
        has_samples, problem = _inspect(pf)
        if problem:
            stats.files_skipped += 1
            stats.errors.append(f"{pf.path}: {problem}")
            log.error("ETL %s->%s: not moving %s: %s", src.name, dst.name, pf.path, problem)
            break
        if not has_samples:
            if everything or pf.start <= empty_limit:
                pf.path.unlink(missing_ok=True)
                stats.files_deleted_empty += 1
            continue
        ready.append(pf)
    op = dst.config.reduce_data
    if op and reducer is None:
        stats.files_skipped += len(ready)
        stats.errors.append(f"{dst.name}: reducedata={op} needs post-processors; not moved")
        return
    groups = [[pf] for pf in ready] if op else group_by_destination(dst, ready)
    for group in groups:
        try:
            if op:
                assert reducer is not None
                n = move_reduced(src, dst, pv, group[0], reducer)
            else:
                n = move_files(src, dst, pv, group)
        except (StoreError, OSError) as e:
            stats.files_skipped += len(group)
            stats.errors.append(str(e))
            log.error("ETL %s->%s: %s", src.name, dst.name, e)
            return
        stats.files_moved += len(group)
        stats.samples_moved += n


def _discard_all(
    src: PlainPBStore | ParquetStore, pv: str, movable: list[PartitionFile], stats: ETLStats
) -> None:
    for pf in movable:
        try:
            stats.bytes_discarded += discard_file(src, pv, pf)
            stats.files_discarded += 1
        except (StoreError, OSError) as e:
            stats.files_skipped += 1
            stats.errors.append(f"{pf.path}: {e}")
            log.error("ETL %s->%s: %s", src.name, stats.dest, e)


def _move_one(
    src: PlainPBStore,
    dst: PlainPBStore,
    pv: str,
    pf: PartitionFile,
    stats: ETLStats,
    drop_empty: bool,
    reducer: Reducer | None,
) -> bool:
    """Move one file, counted in ``stats``; False when the PV's later files must wait."""
    has_samples, problem = _inspect(pf)
    if not has_samples and problem is None:
        if drop_empty:
            pf.path.unlink(missing_ok=True)
            stats.files_deleted_empty += 1
        return True
    if problem:
        stats.files_skipped += 1
        stats.errors.append(f"{pf.path}: {problem}")
        log.error("ETL %s->%s: not moving %s: %s", src.name, dst.name, pf.path, problem)
        return False
    try:
        n, b = move_file(src, dst, pv, pf, reducer)
    except DestinationNewerError as e:
        # kept and reported every pass; newer files may still move after it
        stats.files_skipped += 1
        stats.errors.append(str(e))
        log.error("ETL %s->%s: %s", src.name, dst.name, e)
        return True
    except (StoreError, PBFileError, OSError) as e:
        stats.files_skipped += 1
        stats.errors.append(f"{pf.path}: {e}")
        log.error("ETL %s->%s: %s", src.name, dst.name, e)
        return False
    stats.files_moved += 1
    stats.samples_moved += n
    stats.bytes_moved += b
    return True


def consolidate(
    stores: Sequence[PlainPBStore | ParquetStore | BlackholeStore],
    upto: str,
    pvs: list[str] | None = None,
    reducer: Reducer | None = None,
) -> list[ETLStats]:
    """Push all data of ``pvs`` (or every PV) down the store chain into the store named ``upto``."""
    names = [s.name for s in stores]
    if upto not in names:
        raise ValueError(f"no store named {upto!r}; stores: {', '.join(names)}")
    out = []
    for a, b in itertools.pairwise(stores[: names.index(upto) + 1]):
        if not a.is_blackhole:
            out.append(run_etl(a, b, pvs=pvs, everything=True, reducer=reducer))
    return out
