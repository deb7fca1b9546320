"""ETL where a ``parquet://`` store is at either end: PlainPB -> Parquet, Parquet -> Parquet
(into coarser partitions) and Parquet -> PlainPB, as columns, never one object per sample.

The rules are :mod:`.etl`'s: the destination takes only samples after its last one (a rerun
after a crash never doubles; a skipped prefix must end exactly at the destination's last
sample, else the destination holds newer data and the files stay, reported), the
destination is synced before any source file is deleted, and a source file is deleted only
if it has not changed since the move started. The source files of one PV that fall in one
destination partition are moved together, so a Parquet partition is rewritten once per
pass, not once per source file.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ..pb import PayloadType
from .batch import Batch
from .columns import SampleBlock, block_from_samples, decode_block, take_rows
from .parquet_store import ParquetReadError, ParquetStore, file_blocks
from .partitions import partition_start
from .pbfile import PBFile, PBFileError
from .store import PartitionFile, PlainPBStore, StoreError, fsync_dir

if TYPE_CHECKING:
    from .etl import Reducer

log = logging.getLogger(__name__)

NS = 1_000_000_000
DataStore = PlainPBStore | ParquetStore


def source_blocks(
    src: DataStore, pv: str, pf: PartitionFile
) -> tuple[PayloadType, Iterator[SampleBlock]]:
    """The type and the blocks of one source file of ``pv`` (checked to be ``pv``'s, at its
    own path); StoreError for a file that cannot be moved whole."""
    if pf.path != src.path_for(pv, pf.start):
        raise StoreError(f"{pf.path}: names {pv!r}, whose file is not here")
    if isinstance(src, ParquetStore):
        info = src.file_info(pf.path)
        if info.pvname != pv:
            raise StoreError(f"{pf.path}: footer names {info.pvname!r}")

        def pq_blocks() -> Iterator[SampleBlock]:
            for _info, block in file_blocks(pf.path):
                yield block

        return info.type, pq_blocks()
    f = PBFile.open(pf.path)
    if f.header.pvname != pv:
        f.close()
        raise StoreError(f"{pf.path}: header names {f.header.pvname!r}")

    def pb_blocks() -> Iterator[SampleBlock]:
        with f:
            for off, data in f.iter_blocks(f.header_end):
                block, clean = decode_block(f.header, data, f.path)
                if not clean:
                    raise StoreError(f"{f.path}: corrupt line in the block at offset {off}")
                yield block

    return f.header.type, pb_blocks()


def after_destination(
    blocks: Iterator[SampleBlock], dst_last: tuple[int, int] | None, where: str
) -> Iterator[SampleBlock]:
    """``blocks`` without the samples at or before ``dst_last``; raises StoreError when the
    skipped samples do not end exactly at ``dst_last`` (the destination holds newer data
    than these files: moving them would lose nothing only if they were already there)."""
    if dst_last is None:
        yield from blocks
        return
    floor = dst_last[0] * NS + dst_last[1]
    skipped_last: int | None = None
    checked = False
    for block in blocks:
        if checked:
            yield block
            continue
        ts = block.secs * NS + block.nanos
        keep = ts > floor
        if not keep.all():
            skipped_last = int(ts[~keep][-1])
        if keep.any():
            if skipped_last is not None and skipped_last != floor:
                raise StoreError(f"{where}: destination already holds newer data; not moved")
            checked = True
            yield block if keep.all() else take_rows(block, keep)
    if not checked and skipped_last != floor:
        raise StoreError(f"{where}: destination already holds newer data; not moved")


def _append(dst: DataStore, pv: str, ptype: PayloadType, blocks: Iterator[SampleBlock]) -> int:
    """Append to ``dst``, synced; returns the samples written."""
    batch = Batch.of_blocks(pv, ptype, blocks)
    if isinstance(dst, ParquetStore):  # every rewrite is synced
        return dst.append(batch).one().written
    old = dst.fsync
    dst.fsync = True
    try:
        return dst.append(batch).one().written
    finally:
        dst.fsync = old


def group_by_destination(
    dst: DataStore, files: Sequence[PartitionFile]
) -> list[list[PartitionFile]]:
    """Consecutive source files whose partitions start in one destination partition."""
    groups: list[list[PartitionFile]] = []
    key: int | None = None
    for pf in files:
        k = partition_start(pf.start, dst.granularity)
        if groups and k == key:
            groups[-1].append(pf)
        else:
            groups.append([pf])
            key = k
    return groups


def move_files(src: DataStore, dst: DataStore, pv: str, files: Sequence[PartitionFile]) -> int:
    """Move ``files`` (one PV, oldest first) from ``src`` to ``dst`` in one append; returns
    the samples written. Sources are deleted after the destination is committed, each only
    if unchanged since the move started."""
    before = {pf.path: _sig(pf.path) for pf in files}
    with dst.lock(pv):
        types: set[PayloadType] = set()
        opened = []
        for pf in files:
            with src.lock(pv):
                try:
                    opened.append(source_blocks(src, pv, pf))
                except (PBFileError, ParquetReadError, OSError) as e:
                    raise StoreError(f"{pf.path}: {e}") from None
            types.add(opened[-1][0])
        if len(types) != 1:
            raise StoreError(f"{pv}: source files of one partition hold several types {types}")
        ptype = types.pop()

        def chained() -> Iterator[SampleBlock]:
            for _t, it in opened:
                yield from it

        where = f"{files[0].path}" + (f" (+{len(files) - 1} more)" if len(files) > 1 else "")
        blocks = after_destination(chained(), dst.last_known_timestamp(pv), where)
        written = _append(dst, pv, ptype, blocks)
    with src.lock(pv):
        for pf in files:
            if _sig(pf.path) != before[pf.path]:
                log.warning("ETL: %s changed during the move; kept for the next pass", pf.path)
                continue
            pf.path.unlink()
            fsync_dir(pf.path.parent)
    return written


def _sig(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def inspect_parquet(path: Path) -> tuple[bool, str | None]:
    """(whether the file holds rows, reason not to move it or None) from the footer."""
    from .parquet_store import open_file

    try:
        if path.stat().st_size == 0:
            return False, None
        f, _info = open_file(path)
    except (ParquetReadError, OSError) as e:
        return True, str(e)
    with f:
        return f.metadata.num_rows > 0, None


def move_reduced(
    src: DataStore, dst: DataStore, pv: str, pf: PartitionFile, reducer: Reducer
) -> int:
    """``reducedata=<op>`` where a Parquet store is at either end: one source file's samples
    through the post-processor ``op`` (``reducer``), appended to ``dst`` after its last
    sample, synced; the source deleted afterwards if unchanged. Returns the samples written.
    Any failure raises StoreError and keeps the source (the AA deletes it even when the
    reduction fails)."""
    op = dst.config.reduce_data or ""
    before = _sig(pf.path)
    with dst.lock(pv):
        with src.lock(pv):
            try:
                ptype, blocks = source_blocks(src, pv, pf)
            except (PBFileError, ParquetReadError, OSError) as e:
                raise StoreError(f"{pf.path}: {e}") from None
        samples = (b.sample(i) for b in blocks for i in range(len(b)))
        try:
            out_type, reduced = reducer.reduce(op, pv, ptype, samples, pf.start, pf.end)
            rows = list(reduced)
        except StoreError:
            raise
        except Exception as e:
            raise StoreError(f"{pf.path}: reducedata={op} failed: {e}") from e
        written = 0
        if rows:
            where = f"{pf.path} ({op})"
            block = block_from_samples(rows, out_type)
            kept = after_destination(iter([block]), dst.last_known_timestamp(pv), where)
            written = _append(dst, pv, out_type, kept)
    with src.lock(pv):
        if _sig(pf.path) != before:
            log.warning("ETL: %s changed during the move; kept for the next pass", pf.path)
            return written
        pf.path.unlink()
        fsync_dir(pf.path.parent)
    return written
