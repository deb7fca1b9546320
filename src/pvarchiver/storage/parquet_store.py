"""A ``parquet://`` store: the AA's Parquet partition files, one per PV and partition.

Files are named as PlainPB ones with ``.parquet`` instead of ``.pb`` and hold the AA's
schema and footer (:mod:`.parquet_schema`). A Parquet file cannot be appended to in place:
every append writes the whole partition (old rows, then new ones) to ``~TempFile~<name>``
beside it, syncs it, and renames it over the original, as the AA does. A kill therefore
leaves the old file or the new one, never a mixture, and a rerun writes only rows newer
than the file's last. Unlike the AA, which copies the old row groups and adds one per
append, rows are re-grouped on every rewrite, so a file has ``rows / group size`` row
groups however often it was appended to.

That rewrite is why a Parquet store cannot be a PV's first store here (see
:func:`~.chains.check_chain`): the engine writes every few seconds, and rewriting the
current partition of every PV that often costs far more than appending PlainPB lines.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from ..pb import PayloadInfo, PayloadType, Sample, year_of, year_start
from .batch import AppendResult, Batch, BatchResult
from .chunk import Chunk
from .columns import SampleBlock, take_rows
from .locks import PVLocks
from .naming import KeyNaming, NamingSettings
from .parquet_schema import (
    CODECS,
    PAGE_BYTES,
    ROW_GROUP_BYTES,
    FileInfo,
    ParquetFormatError,
    arrow_schema,
    block_to_table,
    footer_metadata,
    parse_footer,
    table_to_block,
)
from .partitions import (
    Granularity,
    parse_partition_name,
    partition_for,
    partition_start,
    shift_partition,
)
from .paths import key_folder_and_prefix, long_path, partition_path
from .pbfile import Instant
from .store import PartitionFile, StoreError, TypeMismatchError, fsync_dir
from .url import StoreConfig

log = logging.getLogger(__name__)

PARQUET_EXTENSION = ".parquet"
#: the AA's prefix of the file a rewrite goes to before it replaces the original
TEMP_PREFIX = "~TempFile~"
NS = 1_000_000_000
#: errors of reading a damaged or foreign file
READ_ERRORS = (OSError, ValueError, pa.ArrowException)


class ParquetReadError(StoreError):
    """A ``.parquet`` file that cannot be read (truncated, foreign); names the file."""


#: parsed footers of recently opened files: path -> ((inode, size, mtime_ns), metadata,
#: info). Parsing the footer of a yearly file of ~1,000 row groups costs ~5 ms, more than
#: decoding the day a request wants; a rewrite renames a new file over the old one, so a
#: changed file never matches its old entry.
_FOOTERS: OrderedDict[Path, tuple[tuple[int, int, int], pq.FileMetaData, FileInfo]] = OrderedDict()
_FOOTERS_MAX = 256
_FOOTERS_LOCK = threading.Lock()


def open_file(path: Path) -> tuple[pq.ParquetFile, FileInfo]:
    """A file's reader and footer; :class:`ParquetReadError` (naming the file) when it is
    truncated, not Parquet, or not one of the archiver's."""
    try:
        st = os.stat(path)
        sig = (st.st_ino, st.st_size, st.st_mtime_ns)
        with _FOOTERS_LOCK:
            hit = _FOOTERS.get(path)
        if hit is not None and hit[0] == sig:
            return pq.ParquetFile(path, metadata=hit[1]), hit[2]
        f = pq.ParquetFile(path)
    except READ_ERRORS as e:
        raise ParquetReadError(f"{path}: not a readable Parquet file: {e}") from None
    try:
        info = parse_footer(f.schema_arrow.metadata, f.schema_arrow, path)
    except ParquetFormatError as e:
        f.close()
        raise ParquetReadError(str(e)) from None
    with _FOOTERS_LOCK:
        _FOOTERS[path] = (sig, f.metadata, info)
        _FOOTERS.move_to_end(path)
        while len(_FOOTERS) > _FOOTERS_MAX:
            _FOOTERS.popitem(last=False)
    return f, info


def _ts_of(table: pa.Table, year: int) -> np.ndarray:
    soy = table.column("secondsintoyear").to_numpy().astype(np.int64)
    return (soy + year_start(year)) * NS + table.column("nano").to_numpy().astype(np.int64)


def _group_secs(f: pq.ParquetFile, rg: int, year: int) -> tuple[int, int] | None:
    """Epoch seconds of the first and last row of row group ``rg`` from its statistics."""
    col = f.metadata.row_group(rg).column(0)
    st = col.statistics
    if st is None or not st.has_min_max:
        return None
    ys = year_start(year)
    return int(st.min) + ys, int(st.max) + ys


def last_timestamp(f: pq.ParquetFile, info: FileInfo) -> Instant | None:
    """The file's last sample's time: the last row of its last non-empty row group."""
    for rg in reversed(range(f.num_row_groups)):
        if f.metadata.row_group(rg).num_rows == 0:
            continue
        t = f.read_row_group(rg, columns=["secondsintoyear", "nano"])
        ts = int(_ts_of(t, info.year)[-1])
        return ts // NS, ts % NS
    return None


class ParquetStore:
    """One ``parquet://`` store; thread-safe per PV within one process."""

    is_blackhole = False
    extension = PARQUET_EXTENSION

    def __init__(self, config: StoreConfig, naming: KeyNaming | None = None) -> None:
        self.config = config
        self.name = config.name
        self.root = long_path(Path(config.root_folder))
        self.naming = naming or KeyNaming(terminator=config.extra.get("terminator", ":"))
        self.granularity: Granularity = config.granularity
        #: every rewrite is synced before it replaces the original (the rename is the commit)
        self.fsync = True
        codec = config.extra.get("compress", "UNCOMPRESSED")
        self.compression = CODECS[codec]
        level = config.extra.get("zstdLevel") if codec == "ZSTD" else None
        self.compression_level = int(level) if level else None
        self._last_known: dict[str, Instant | None] = {}
        #: per-PV locks; shared with every other store object of this folder (StoreChains)
        self.locks = PVLocks()

    def __repr__(self) -> str:
        return f"ParquetStore({self.name}, {self.root}, {self.granularity.name})"

    # ------------------------------------------------------------------ naming
    def key(self, pvname: str) -> str:
        return self.naming.key(pvname)

    def lock(self, pvname: str) -> threading.RLock:
        return self.locks.get(pvname)

    def path_for(self, pvname: str, epoch_secs: int) -> Path:
        name = partition_for(epoch_secs, self.granularity)
        return partition_path(self.root, self.key(pvname), name, PARQUET_EXTENSION)

    def files_for_pv(self, pvname: str) -> list[PartitionFile]:
        """This PV's partition files, oldest first (names that do not fit are skipped)."""
        return self.files_for_pvs([pvname])[pvname]

    def files_for_pvs(self, pvnames: Iterable[str]) -> dict[str, list[PartitionFile]]:
        """:meth:`files_for_pv` for many PVs, listing each folder once."""
        out: dict[str, list[PartitionFile]] = {}
        listed: dict[Path, list[str]] = {}
        fold = self.naming.case_insensitive
        for pv in pvnames:
            out[pv] = []
            try:
                folder, prefix = key_folder_and_prefix(self.root, self.key(pv))
            except ValueError:
                continue
            if folder not in listed:
                try:
                    listed[folder] = os.listdir(folder)
                except (FileNotFoundError, NotADirectoryError):
                    listed[folder] = []
            if fold:
                prefix = prefix.casefold()
            for n in listed[folder]:
                m = n.casefold() if fold else n
                if not (m.startswith(prefix) and n.endswith(PARQUET_EXTENSION)):
                    continue
                start = parse_partition_name(
                    n[len(prefix) : -len(PARQUET_EXTENSION)], self.granularity
                )
                if start is not None:
                    end = shift_partition(start, self.granularity, 1)
                    out[pv].append(PartitionFile(start, end, folder / n))
            out[pv].sort()
        return out

    def iter_files(self) -> Iterator[Path]:
        """Every data file under the root (the rewrite's temporaries left out)."""
        for dirpath, _dirs, files in os.walk(self.root):
            for n in files:
                if n.endswith(PARQUET_EXTENSION) and not n.startswith(TEMP_PREFIX):
                    yield Path(dirpath) / n

    def pv_names(self) -> list[str]:
        """PV names with at least one readable file here (from the footers)."""
        names: set[str] = set()
        for path in self.iter_files():
            with contextlib.suppress(StoreError):
                names.add(self.file_info(path).pvname)
        return sorted(names)

    def file_info(self, path: Path) -> FileInfo:
        f, info = open_file(path)
        f.close()
        return info

    # ------------------------------------------------------------------ last sample
    def prime_last_known(self, pvnames: Iterable[str]) -> None:
        return None

    def last_known_timestamp(self, pvname: str) -> Instant | None:
        if pvname in self._last_known:
            return self._last_known[pvname]
        last: Instant | None = None
        for pf in reversed(self.files_for_pv(pvname)):
            if pf.path.stat().st_size == 0:
                continue
            try:
                f, info = open_file(pf.path)
            except ParquetReadError as e:
                log.error("%s: cannot read last sample: %s", self.name, e)
                continue
            with f:
                last = last_timestamp(f, info)
            if last is not None:
                break
        self._last_known[pvname] = last
        return last

    def forget(self, pvname: str) -> None:
        self._last_known.pop(pvname, None)

    # ------------------------------------------------------------------ append
    def append(self, batch: Batch) -> BatchResult:
        """Append a batch (the one way to write to a store, see :mod:`.batch`): each PV's
        rows as blocks, one rewrite per partition. A PV that fails is in ``failures``."""
        result = BatchResult.for_batch(batch)
        for i, name, blocks in batch.pv_blocks():
            try:
                result.add(i, self._append_blocks(name, batch.ptype, blocks))
            except Exception as e:
                result.failures[name] = e
        return result

    def _append_blocks(
        self, pvname: str, ptype: PayloadType, blocks: Iterable[SampleBlock]
    ) -> AppendResult:
        """Append blocks of samples (time order): rows not after the stored data (or after
        the previous row) are dropped and counted, as the AA drops them; the rest go to their
        partitions, each rewritten once per call. Streamed: memory holds about one row group
        whatever the size of the partition or of ``blocks``. If ``blocks`` raises, the
        partitions finished before stay written and the one in progress is left as it was."""
        result = AppendResult()
        with self.lock(pvname):
            last = self.last_known_timestamp(pvname)
            floor = -1 if last is None else last[0] * NS + last[1]
            cur: _Rewrite | None = None
            try:
                for block in blocks:
                    if len(block) == 0:
                        continue
                    ts = block.secs * NS + block.nanos
                    running = np.maximum.accumulate(np.concatenate(([floor], ts)))
                    keep = ts > running[:-1]
                    result.dropped_not_increasing += int(len(ts) - keep.sum())
                    if not keep.all():
                        block = take_rows(block, keep)
                        ts = ts[keep]
                    if len(block) == 0:
                        continue
                    floor = int(ts[-1])
                    i = 0
                    while i < len(block):
                        start = partition_start(int(block.secs[i]), self.granularity)
                        end = shift_partition(start, self.granularity, 1)
                        j = int(np.searchsorted(block.secs, end, side="left"))
                        if cur is not None and cur.start != start:
                            result.add(cur.commit())
                            cur = None
                        if cur is None:
                            cur = _Rewrite(self, pvname, ptype, start)
                        cur.write(block if (i, j) == (0, len(block)) else _rows(block, i, j))
                        i = j
                if cur is not None:
                    result.add(cur.commit())
                    cur = None
            finally:
                if cur is not None:
                    cur.abort()
        return result

    def writer(self, path: Path, pvname: str, year: int, ptype: PayloadType) -> GroupWriter:
        """A writer of one file of this store's codec (see :class:`GroupWriter`)."""
        return GroupWriter(path, pvname, year, ptype, self.compression, self.compression_level)

    # ------------------------------------------------------------------ read
    def _open_own(self, pf: PartitionFile, pvname: str) -> tuple[pq.ParquetFile, FileInfo] | None:
        try:
            if pf.path.stat().st_size == 0:
                return None
            f, info = open_file(pf.path)
        except (ParquetReadError, OSError) as e:
            log.warning("%s: skipping %s", self.name, e)
            return None
        if info.pvname != pvname:
            log.warning("%s: skipping %s: footer names PV %r", self.name, pf.path, info.pvname)
            f.close()
            return None
        return f, info

    def _last_at_or_before(
        self, pvname: str, files: list[PartitionFile], at_ns: int, memo: _GroupMemo | None = None
    ) -> Chunk | None:
        """The latest sample at or before ``at_ns`` (one row), walking files back."""
        for pf in reversed(files):
            if pf.start * NS > at_ns:
                continue
            got = self._open_own(pf, pvname)
            if got is None:
                continue
            f, info = got
            with f:
                for rg in reversed(range(f.num_row_groups)):
                    span = _group_secs(f, rg, info.year)
                    if span is not None and span[0] * NS > at_ns:
                        continue
                    try:
                        t, ts = _read_group(f, rg, info.year, pf.path, memo)
                    except READ_ERRORS as e:
                        log.warning(
                            "%s: skipping row group %d of %s: %s", self.name, rg, pf.path, e
                        )
                        continue
                    k = int(np.searchsorted(ts, at_ns, side="right"))
                    if k > 0:
                        row = t.slice(k - 1, 1)
                        return Chunk(
                            _header(info, pvname), table_to_block(info.type, info.year, row)
                        )
        return None

    def read_chunks(
        self, pvname: str, start: Instant, end: Instant
    ) -> tuple[Chunk | None, Iterator[Chunk]]:
        """(the latest sample at or before ``start`` as a one-row chunk, or None; the chunks of
        the samples in [start, end]). Row groups whose ``secondsintoyear`` statistics lie
        outside the range are not read; unreadable files are skipped with a warning."""
        files = self.files_for_pv(pvname)
        lo, hi = start[0] * NS + start[1], end[0] * NS + end[1]
        # the row group holding `start` is usually both the previous sample's and the first
        # of the range: decoded once (a one-day read of a yearly file costs half)
        memo: _GroupMemo = {}
        prev = self._last_at_or_before(pvname, files, lo, memo)
        inside = [pf for pf in files if pf.end > start[0] and pf.start <= end[0]]
        return prev, self._range_chunks(pvname, inside, lo, hi, memo)

    def _range_chunks(
        self,
        pvname: str,
        files: Sequence[PartitionFile],
        lo: int,
        hi: int,
        memo: _GroupMemo | None = None,
    ) -> Iterator[Chunk]:
        for pf in files:
            got = self._open_own(pf, pvname)
            if got is None:
                continue
            f, info = got
            with f:
                for rg in range(f.num_row_groups):
                    span = _group_secs(f, rg, info.year)
                    if span is not None and (span[1] < lo // NS or span[0] > hi // NS):
                        continue
                    try:
                        t, ts = _read_group(f, rg, info.year, pf.path, memo)
                    except READ_ERRORS as e:
                        log.warning(
                            "%s: skipping row group %d of %s: %s", self.name, rg, pf.path, e
                        )
                        continue
                    a = int(np.searchsorted(ts, lo, side="left"))
                    b = int(np.searchsorted(ts, hi, side="right"))
                    if b > a:
                        block = table_to_block(info.type, info.year, t.slice(a, b - a))
                        yield Chunk(_header(info, pvname), block)

    def read(
        self, pvname: str, start: Instant, end: Instant, include_prev: bool = True
    ) -> Iterator[Sample]:
        """Samples in [start, end], preceded by the last sample before ``start`` if any."""
        prev, chunks = self.read_chunks(pvname, start, end)
        lo = start[0] * NS + start[1]
        if include_prev and prev is not None and prev.last_ns() < lo:
            yield prev.block.sample(0)
        for c in chunks:
            for i in range(len(c)):
                yield c.block.sample(i)

    def read_all(self, pvname: str) -> Iterator[Sample]:
        return self.read(pvname, (-(2**62), 0), (2**62, 0), include_prev=False)


#: (file, row group) -> its table and time stamps; one entry (the last group read)
_GroupMemo = dict[tuple[Path, int], tuple[pa.Table, np.ndarray]]


def _read_group(
    f: pq.ParquetFile, rg: int, year: int, path: Path, memo: _GroupMemo | None
) -> tuple[pa.Table, np.ndarray]:
    """Row group ``rg`` and its time stamps (ns), from ``memo`` when it was the last read."""
    key = (path, rg)
    if memo is not None and key in memo:
        return memo[key]
    t = f.read_row_group(rg)
    got = (t, _ts_of(t, year))
    if memo is not None:
        memo.clear()  # memory: one row group at most
        memo[key] = got
    return got


def file_blocks(path: Path) -> Iterator[tuple[FileInfo, SampleBlock]]:
    """Every row group of one file as a block (ETL, convert, dump); ParquetReadError when
    the file or a row group cannot be read."""
    f, info = open_file(path)
    with f:
        for rg in range(f.num_row_groups):
            try:
                t = f.read_row_group(rg)
            except READ_ERRORS as e:
                raise ParquetReadError(f"{path}: row group {rg} cannot be read: {e}") from None
            yield info, table_to_block(info.type, info.year, t)


def _header(info: FileInfo, pvname: str) -> PayloadInfo:
    return PayloadInfo(info.type, pvname, info.year)


def _rows(block: SampleBlock, a: int, b: int) -> SampleBlock:
    m = np.zeros(len(block), dtype=bool)
    m[a:b] = True
    return take_rows(block, m)


class _Rewrite:
    """One partition being rewritten: its old rows (checked to be this PV's, of this type
    and year) copied into ``~TempFile~<name>``, new rows after them; :meth:`commit` syncs
    and renames it over the original, :meth:`abort` leaves the original as it was."""

    def __init__(self, store: ParquetStore, pvname: str, ptype: PayloadType, start: int) -> None:
        self.store, self.pvname, self.ptype, self.start = store, pvname, ptype, start
        self.path = path = store.path_for(pvname, start)
        self.year = year = year_of(start)
        self.tmp = path.with_name(TEMP_PREFIX + path.name)
        self.rows = 0
        self.last: Instant | None = None
        self.out: GroupWriter | None = None
        old = self._old()
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self.out = store.writer(self.tmp, pvname, year, ptype)
            if old is not None:
                with old:
                    for rg in range(old.num_row_groups):
                        self.out.write(old.read_row_group(rg))
        except (OSError, *READ_ERRORS) as e:
            self._fail(e)

    def _old(self) -> pq.ParquetFile | None:
        st, path = self.store, self.path
        if not path.exists() or path.stat().st_size == 0:
            return None  # a zero-byte file is replaced, as the AA deletes it first
        try:
            old, info = open_file(path)
        except ParquetReadError as e:
            st.forget(self.pvname)
            raise StoreError(f"{st.name}: cannot append: {e}; file left as it was") from None
        why: StoreError | None = None
        if info.pvname != self.pvname:
            why = StoreError(
                f"{st.name}: {path} belongs to PV {info.pvname!r}, not {self.pvname!r}"
            )
        elif info.type != self.ptype:
            why = TypeMismatchError(
                f"{st.name}: {path} holds {info.type.name}, not {self.ptype.name}"
            )
        elif info.year != self.year:
            why = StoreError(f"{st.name}: {path} footer says year {info.year}, not {self.year}")
        if why is not None:
            old.close()
            raise why
        return old

    def _fail(self, e: BaseException) -> None:
        self.abort()
        self.store.forget(self.pvname)
        raise StoreError(
            f"{self.store.name}: writing {self.path} failed: {e}; file left as it was"
        ) from e

    def write(self, block: SampleBlock) -> None:
        assert self.out is not None
        try:
            self.out.write(block_to_table(self.ptype, self.year, block))
        except (OSError, *READ_ERRORS) as e:
            self._fail(e)
        self.rows += len(block)
        self.last = (int(block.secs[-1]), int(block.nanos[-1]))

    def commit(self) -> AppendResult:
        assert self.out is not None
        try:
            self.out.close()
            os.replace(self.tmp, self.path)
        except (OSError, *READ_ERRORS) as e:
            self._fail(e)
        fsync_dir(self.path.parent)
        self.store._last_known[self.pvname] = self.last
        size = self.path.stat().st_size
        return AppendResult(written=self.rows, bytes_written=size, files=[self.path])

    def abort(self) -> None:
        if self.out is not None:
            self.out.abort()
        with contextlib.suppress(OSError):
            self.tmp.unlink()


def _encodings(ptype: PayloadType) -> dict[str, str]:
    enc = {"secondsintoyear": "DELTA_BINARY_PACKED", "nano": "DELTA_BINARY_PACKED"}
    if ptype in (PayloadType.SCALAR_DOUBLE, PayloadType.SCALAR_FLOAT):
        enc["val"] = "BYTE_STREAM_SPLIT"
    return enc


class GroupWriter:
    """Writes one file in the AA's layout, in row groups of about ``ROW_GROUP_BYTES``
    (uncompressed) however the rows arrive, synced on close."""

    def __init__(
        self,
        path: Path,
        pvname: str,
        year: int,
        ptype: PayloadType,
        compression: str,
        level: int | None,
    ) -> None:
        self.path = path
        self.footer = footer_metadata(pvname, year, ptype)
        schema = arrow_schema(ptype).with_metadata(self.footer)
        self.schema = schema
        # the footer keys go in through add_key_value_metadata where pyarrow has it (16+),
        # so that no ARROW:schema key is written beside the AA's; older ones carry them in
        # the stored Arrow schema
        self._kv = hasattr(pq.ParquetWriter, "add_key_value_metadata")
        self._w = pq.ParquetWriter(
            path,
            schema,
            compression=compression,
            compression_level=level,
            version="2.6",
            # time columns delta-encoded and float values byte-stream-split instead of
            # parquet-java's dictionary (which gives up on unique values): ~30% smaller
            # files of 1 Hz data; parquet-java reads both encodings (docs/parquet.md)
            use_dictionary=[c for c in schema.names if c not in _encodings(ptype)],
            column_encoding=_encodings(ptype),
            write_statistics=True,
            data_page_size=PAGE_BYTES,
            write_page_checksum=True,
            store_schema=not self._kv,
        )
        self._buf: list[pa.Table] = []
        self._rows = 0
        self._group_rows: int | None = None
        self.rows = 0

    def write(self, table: pa.Table) -> None:
        if table.num_rows == 0:
            return
        table = table.select(self.schema.names).cast(self.schema)
        if self._group_rows is None:
            per_row = max(1, table.nbytes // table.num_rows)
            self._group_rows = max(1024, ROW_GROUP_BYTES // per_row)
        self._buf.append(table)
        self._rows += table.num_rows
        self.rows += table.num_rows
        while self._rows >= self._group_rows:
            self._flush(self._group_rows)

    def _flush(self, n: int) -> None:
        whole = pa.concat_tables(self._buf)
        self._w.write_table(whole.slice(0, n), row_group_size=n)
        rest = whole.slice(n)
        self._buf = [rest] if rest.num_rows else []
        self._rows = rest.num_rows

    def close(self) -> None:
        if self._rows:
            self._flush(self._rows)
        if self._kv:
            self._w.add_key_value_metadata(self.footer)
        self._w.close()
        with open(self.path, "rb+") as fh:
            os.fsync(fh.fileno())

    def abort(self) -> None:
        with contextlib.suppress(Exception):
            self._w.close()

    def __enter__(self) -> GroupWriter:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def open_parquet_store(config: StoreConfig, settings: NamingSettings | None = None) -> ParquetStore:
    """A store whose naming fits its folder (probed, created if missing), as open_store."""
    from .probe import StoreFolderError, choose_naming, probe_folder, remove_stale_probes

    remove_stale_probes(Path(config.root_folder))
    probe = probe_folder(Path(config.root_folder), config.granularity, PARQUET_EXTENSION)
    try:
        naming = choose_naming(config, settings or NamingSettings(), probe)
    except StoreFolderError:
        raise
    return ParquetStore(config, naming=naming)
