"""A PlainPB store (STS, MTS or LTS): one folder tree of partition files per store.

Appends keep the AA's invariants: timestamps strictly increase per PV (older or equal samples
are dropped and counted), a file holds only its own partition's time range, the header of an
existing file must name the same PV and type, and a partially written last line (left by a
crash) is cut off before new lines are added.
"""

from __future__ import annotations

import bisect
import contextlib
import errno
import logging
import os
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..pb import PayloadInfo, PayloadType, Sample, header_line, sample_line, year_of, year_start
from ..pb.escape import EscapeError
from ..pb.sample import PBDecodeError
from .batch import AppendResult, Batch, BatchResult
from .locks import PVLocks
from .naming import KeyNaming, NamingSettings
from .partitions import (
    Granularity,
    parse_partition_name,
    partition_for,
    partition_start,
    shift_partition,
)
from .paths import PB_EXTENSION, key_folder_and_prefix, long_path, partition_path
from .pbfile import Instant, PBFile, PBFileError, open_or_log
from .url import StoreConfig

if TYPE_CHECKING:
    from .columns import SampleBlock

__all__ = ["AppendResult", "PlainPBStore", "StoreError", "TypeMismatchError", "open_store"]

log = logging.getLogger(__name__)


class StoreError(RuntimeError):
    """An append or read that cannot be done without risking data (wrong PV, type change...)."""


class TypeMismatchError(StoreError):
    """The existing partition file holds another PayloadType than the samples to append."""


@dataclass(slots=True, order=True)
class PartitionFile:
    start: int
    end: int
    path: Path = field(compare=False)


@dataclass(slots=True)
class Segment:
    """A byte range of whole lines of one file that a read returns."""

    path: Path
    header: PayloadInfo
    begin: int
    end: int


def fsync_dir(path: Path) -> None:
    """Make a created/removed directory entry durable (no-op where directories can't be opened)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


#: flags of every append: no Python file object (whose open costs fstat, two lseeks and an
#: ioctl on top of openat, and a buffer), no inheritance by child processes
_APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)


def _write_fd(fd: int, data: bytes, size_before: int, fsync: bool) -> None:
    """Write all of ``data`` at the end of the O_APPEND file ``fd``; if that fails (disk full,
    I/O error) cut the file back to ``size_before`` and raise, so the file stays valid and the
    caller still owns, and can retry, the whole batch."""
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            if n <= 0:  # a regular file never does this; never loop on it
                raise OSError(errno.EIO, "write returned 0")
            view = view[n:]
        if fsync:
            os.fsync(fd)
    except OSError:
        with contextlib.suppress(OSError):
            os.ftruncate(fd, size_before)
        raise


def append_or_restore(path: Path, data: bytes, size_before: int, fsync: bool) -> None:
    """Append ``data`` (creating the file if needed); if that fails (disk full, I/O error)
    cut the file back to ``size_before`` so it stays valid and the caller still owns, and can
    retry, the whole batch.
    """
    fd = os.open(path, _APPEND_FLAGS | os.O_CREAT, 0o666)
    try:
        _write_fd(fd, data, size_before, fsync)
    finally:
        os.close(fd)


class PlainPBStore:
    """One ``pb://`` store. Thread-safe per PV within one process.

    ``fsync`` makes every append durable before it returns; the engine's STS leaves it off (a
    killed process loses nothing that reached the page cache), ETL always syncs a destination
    before it deletes the source.
    """

    #: a store that keeps its data (see :class:`~.chains.BlackholeStore`)
    is_blackhole = False

    def __init__(
        self, config: StoreConfig, fsync: bool = False, naming: KeyNaming | None = None
    ) -> None:
        self.config = config
        self.name = config.name
        self.root = long_path(Path(config.root_folder))
        #: how PV names become file names here (see :mod:`.probe`)
        self.naming = naming or self._probed_naming(config)
        self.granularity: Granularity = config.granularity
        self.fsync = fsync
        self._last_known: dict[str, Instant] = {}
        # PVs found without files by prime_last_known; consumed by the next lookup, so a
        # file created behind the store's back is never hidden for longer than one append
        self._known_empty: set[str] = set()
        self._paths: dict[tuple[str, int], Path] = {}
        # path -> (size, mtime_ns, (pv, type, year), last timestamp) after our last append
        self._prepared: dict[Path, tuple[int, int, tuple[str, PayloadType, int], Instant | None]]
        self._prepared = {}
        #: per-PV locks; shared with every other store object of this folder (StoreChains)
        self.locks = PVLocks()

    def __repr__(self) -> str:
        return f"PlainPBStore({self.name}, {self.root}, {self.granularity.name})"

    @staticmethod
    def _probed_naming(config: StoreConfig) -> KeyNaming:
        """The folder's naming, found by trying it; where it cannot be tried (read-only,
        missing rights) the URL's or the AA's terminator with this platform's rules, so that
        reading works (writing then fails with the folder's own error). :func:`open_store`
        is the strict form that ``serve`` uses."""
        from .probe import StoreFolderError, open_naming

        try:
            return open_naming(config)
        except StoreFolderError as e:
            log.warning("%s", e)
            return KeyNaming(
                terminator=config.extra.get("terminator", ":"), portable=os.name == "nt"
            )

    # ------------------------------------------------------------------ naming
    def key(self, pvname: str) -> str:
        """The PV's file key here; :class:`UnmappableName` (a ValueError) if it has none."""
        return self.naming.key(pvname)

    def lock(self, pvname: str) -> threading.RLock:
        return self.locks.get(pvname)

    def path_for(self, pvname: str, epoch_secs: int) -> Path:
        # cached per (PV, partition): building it (key, partition name, Path joins) cost
        # ~20 µs, paid by every PV on every engine write cycle
        start = partition_start(epoch_secs, self.granularity)
        path = self._paths.get((pvname, start))
        if path is None:
            name = partition_for(epoch_secs, self.granularity)
            path = partition_path(self.root, self.key(pvname), name)
            if len(self._paths) >= 100_000:
                self._paths.clear()
            self._paths[(pvname, start)] = path
        return path

    def files_for_pv(self, pvname: str) -> list[PartitionFile]:
        """This PV's partition files, oldest first; names that do not fit are skipped.

        A name that cannot be a file name has no files (asking is not an error).
        """
        try:
            key = self.key(pvname)
        except ValueError:
            return []
        folder, prefix = key_folder_and_prefix(self.root, key)
        try:
            names = os.listdir(folder)
        except (FileNotFoundError, NotADirectoryError):  # no folder: no files
            return []
        out = []
        fold = self.naming.case_insensitive
        if fold:  # such folders may list names in another case than they were written
            prefix = prefix.casefold()
        for n in names:
            if not ((n.casefold() if fold else n).startswith(prefix) and n.endswith(PB_EXTENSION)):
                continue
            pname = n[len(prefix) : -len(PB_EXTENSION)]
            start = parse_partition_name(pname, self.granularity)
            if start is None:
                log.warning(
                    "%s: skipping %s: name does not fit %s",
                    self.name,
                    folder / n,
                    self.granularity.name,
                )
                continue
            end = shift_partition(start, self.granularity, 1)
            out.append(PartitionFile(start, end, folder / n))
        out.sort()
        return out

    def files_for_pvs(self, pvnames: Iterable[str]) -> dict[str, list[PartitionFile]]:
        """:meth:`files_for_pv` for many PVs, listing each folder once.

        Why: thousands of PVs often share one folder (``SR/...``); asking per PV lists that
        folder once per PV, which made the engine's first write of 10,000 PVs take minutes.
        File names that fit no asked PV's prefix are ignored here.
        """
        out: dict[str, list[PartitionFile]] = {}
        by_folder: dict[Path, dict[str, str]] = {}
        for pv in pvnames:
            out[pv] = []
            try:
                key = self.key(pv)
            except ValueError:
                continue
            folder, prefix = key_folder_and_prefix(self.root, key)
            by_folder.setdefault(folder, {})[self.naming.match_key(prefix)] = pv
        tail = len(partition_for(0, self.granularity)) + len(PB_EXTENSION)
        match = self.naming.match_key
        for folder, prefixes in by_folder.items():
            try:
                names = os.listdir(folder)
            except (FileNotFoundError, NotADirectoryError):
                continue
            for n in names:
                pv = prefixes.get(match(n[:-tail]))
                if pv is None or not n.endswith(PB_EXTENSION):
                    continue
                start = parse_partition_name(n[-tail : -len(PB_EXTENSION)], self.granularity)
                if start is not None:
                    end = shift_partition(start, self.granularity, 1)
                    out[pv].append(PartitionFile(start, end, folder / n))
        for files in out.values():
            files.sort()
        return out

    # ------------------------------------------------------------------ append
    def prime_last_known(self, pvnames: Iterable[str]) -> None:
        """Find the newest stored sample of many PVs at once (see :meth:`files_for_pvs`).

        The engine calls this before a write cycle so that its first write does not list a
        big folder once per PV; PVs already known are skipped.
        """
        todo = [pv for pv in pvnames if pv not in self._last_known]
        if len(todo) < 2:
            return
        for pv, files in self.files_for_pvs(todo).items():
            if not files:
                self._known_empty.add(pv)
                continue
            self._last_in_files(pv, files)

    def last_known_timestamp(self, pvname: str) -> Instant | None:
        """Timestamp of the newest sample stored for the PV in this store (cached)."""
        ts = self._last_known.get(pvname)
        if ts is not None:
            return ts
        if pvname in self._known_empty:
            self._known_empty.discard(pvname)
            return None
        return self._last_in_files(pvname, self.files_for_pv(pvname))

    def _last_in_files(self, pvname: str, files: list[PartitionFile]) -> Instant | None:
        for pf in reversed(files):
            try:
                with PBFile.open(pf.path) as f:
                    s = f.last_sample()
            except (PBFileError, PBDecodeError, EscapeError, OSError) as e:
                log.error("%s: cannot read last sample of %s: %s", self.name, pf.path, e)
                continue
            if s is not None:
                self._last_known[pvname] = (s.secs, s.nanos)
                return (s.secs, s.nanos)
        return None

    def forget(self, pvname: str) -> None:
        """Drop cached state, e.g. after files were changed behind the store's back."""
        self._last_known.pop(pvname, None)
        self._known_empty.discard(pvname)

    def _prepare_file(
        self, path: Path, pvname: str, ptype: PayloadType, year: int
    ) -> tuple[Instant | None, int]:
        """Make ``path`` ready for appending; returns (last timestamp in it, its size).

        A file this store appended to last, still with the size and modification time it had
        then, was checked already: the remembered answer saves opening and reading it on every
        write cycle of every PV.
        """
        try:
            st = path.stat()
            size = st.st_size
        except FileNotFoundError:
            size = -1
            st = None
        known = self._prepared.get(path)
        if (
            known is not None
            and st is not None
            and known[:3] == (size, st.st_mtime_ns, (pvname, ptype, year))
        ):
            return known[3], size
        if size <= 0:
            path.parent.mkdir(parents=True, exist_ok=True)
            created = size < 0
            hdr = header_line(PayloadInfo(ptype, pvname, year))
            try:
                append_or_restore(path, hdr, 0, self.fsync)
            except OSError as e:
                if created:
                    with contextlib.suppress(OSError):
                        path.unlink()
                raise StoreError(f"{self.name}: cannot create {path}: {e.strerror or e}") from e
            if created and self.fsync:
                fsync_dir(path.parent)
            return None, len(hdr)
        try:
            f = PBFile.open(path)
        except PBFileError as e:
            if _has_no_lf(path):
                # a header whose write was interrupted: no sample can follow it yet
                log.warning("%s: %s: rewriting an incomplete header", self.name, path)
                os.truncate(path, 0)
                return self._prepare_file(path, pvname, ptype, year)
            raise StoreError(f"{self.name}: cannot append to {path}: {e}") from None
        with f:
            if f.header.pvname != pvname:
                raise StoreError(
                    f"{self.name}: {path} belongs to PV {f.header.pvname!r}, not {pvname!r}"
                )
            if f.header.type != ptype:
                raise TypeMismatchError(
                    f"{self.name}: {path} holds {f.header.type.name}, not {ptype.name}"
                )
            if f.header.year != year:
                raise StoreError(
                    f"{self.name}: {path} header says year {f.header.year}, not {year}"
                )
            last = f.last_sample() if f.has_samples else None
            data_end = f.data_end
        if data_end != size:
            log.warning(
                "%s: %s: truncating %d bytes of a partially written line",
                self.name,
                path,
                size - data_end,
            )
            os.truncate(path, data_end)
        return ((last.secs, last.nanos) if last else None), data_end

    def append(self, batch: Batch) -> BatchResult:
        """Append a batch (the one way to write to a store): see :mod:`.batch`.

        Each form takes its fastest path; all produce exactly the bytes the general path
        (one Sample at a time) would. A PV that fails (wrong header, type change, disk full)
        is in the result's ``failures``; the other PVs of the batch are written.
        """
        result = BatchResult.for_batch(batch)
        if batch.is_columns and (len(batch.names) != 1 or batch.special):
            self._append_many(batch, result)
            return result
        name = batch.names[0]
        try:
            if batch.samples is not None:
                result.add(0, self._append_samples(name, batch.ptype, batch.samples))
            elif batch.blocks is not None:
                self._append_blocks(name, batch.ptype, batch.blocks, result)
            else:
                assert batch.secs is not None and batch.nanos is not None
                assert batch.vals is not None
                r = self._append_columns(
                    name, batch.ptype, batch.secs, batch.nanos, batch.vals,
                    batch.severity, batch.status,
                )  # fmt: skip
                result.add(0, r)
        except Exception as e:
            result.failures[name] = e
        return result

    def _append_blocks(
        self, pvname: str, ptype: PayloadType, blocks: Iterable[SampleBlock], out: BatchResult
    ) -> None:
        """One PV's stream of blocks: plain ones through the vectorised encoder, those with
        extras (fieldvalues) through the general one."""
        from ..pb import fast

        for b in blocks:
            if ptype in fast.SUPPORTED and not b.extras:
                r = self._append_columns(
                    pvname, ptype, b.secs, b.nanos, b.vals, b.severity, b.status
                )
            else:
                r = self._append_samples(pvname, ptype, (b.sample(i) for i in range(len(b))))
            out.add(0, r)

    def _append_samples(
        self, pvname: str, ptype: PayloadType, samples: Iterable[Sample]
    ) -> AppendResult:
        """The general path: Samples (in time order) to their partitions."""
        result = AppendResult()
        with self.lock(pvname):
            last = self.last_known_timestamp(pvname)
            cur_start = cur_end = 0
            cur_path: Path | None = None
            year = 0
            lines: list[bytes] = []
            first: Instant = (0, 0)
            for s in samples:
                ts = (s.secs, s.nanos)
                if last is not None and ts <= last:
                    result.dropped_not_increasing += 1
                    continue
                if cur_path is None or not cur_start <= s.secs < cur_end:
                    if lines and cur_path is not None:
                        data = b"".join(lines)
                        result.add(
                            self._write_bytes(
                                cur_path, data, len(lines), pvname, ptype, year, first, last
                            )
                        )
                    lines = []
                    first = ts
                    cur_path = self.path_for(pvname, s.secs)
                    cur_start = partition_start(s.secs, self.granularity)
                    cur_end = shift_partition(cur_start, self.granularity, 1)
                    year = year_of(s.secs)
                lines.append(sample_line(ptype, year, s))
                last = ts
            if lines and cur_path is not None:
                data = b"".join(lines)
                result.add(
                    self._write_bytes(cur_path, data, len(lines), pvname, ptype, year, first, last)
                )
        return result

    def _append_columns(
        self,
        pvname: str,
        ptype: PayloadType,
        secs: np.ndarray,
        nanos: np.ndarray,
        vals: np.ndarray,
        severity: np.ndarray | None = None,
        status: np.ndarray | None = None,
    ) -> AppendResult:
        """One PV's scalar numeric columns (the benchmark's and ETL's fast path), through
        the vectorised encoder; other types through the general path."""
        from ..pb import fast

        if ptype not in fast.SUPPORTED:
            samples = (
                Sample(
                    int(a),
                    int(b),
                    v.item() if hasattr(v, "item") else v,
                    int(severity[i]) if severity is not None else 0,
                    int(status[i]) if status is not None else 0,
                )
                for i, (a, b, v) in enumerate(zip(secs, nanos, vals, strict=True))
            )
            return self._append_samples(pvname, ptype, samples)
        secs = np.asarray(secs, dtype=np.int64)
        nanos = np.asarray(nanos, dtype=np.int64)
        result = AppendResult()
        n = len(secs)
        if n == 0:
            return result
        with self.lock(pvname):
            last = self.last_known_timestamp(pvname)
            # keep only strictly increasing (secs, nanos), relative to the stored last sample
            key = secs * 1_000_000_000 + nanos
            running = np.maximum.accumulate(key)
            keep = np.ones(n, dtype=bool)
            keep[1:] = key[1:] > running[:-1]
            if last is not None:
                keep &= key > last[0] * 1_000_000_000 + last[1]
            result.dropped_not_increasing = int(n - keep.sum())
            idx = np.flatnonzero(keep)
            if len(idx) == 0:
                return result
            secs, nanos, key = secs[idx], nanos[idx], key[idx]
            vals = np.asarray(vals)[idx]
            sev = np.asarray(severity)[idx] if severity is not None else None
            stat = np.asarray(status)[idx] if status is not None else None
            i = 0
            while i < len(secs):
                start = partition_start(int(secs[i]), self.granularity)
                end = shift_partition(start, self.granularity, 1)
                j = int(np.searchsorted(secs, end, side="left"))
                year = year_of(int(secs[i]))
                soy = secs[i:j] - year_start(year)
                data = fast.encode_scalar_lines(
                    ptype,
                    soy,
                    nanos[i:j],
                    vals[i:j],
                    None if sev is None else sev[i:j],
                    None if stat is None else stat[i:j],
                )
                path = self.path_for(pvname, int(secs[i]))
                first_ts = (int(secs[i]), int(nanos[i]))
                last_ts = (int(secs[j - 1]), int(nanos[j - 1]))
                result.add(
                    self._write_bytes(path, data, j - i, pvname, ptype, year, first_ts, last_ts)
                )
                i = j
        return result

    def _append_many(self, batch: Batch, out: BatchResult) -> None:
        """Columns of many PVs of one type (or one PV with special rows) in one vectorised
        encode, into ``out``.

        Why: a 1 Hz PV brings ~10 samples per engine write cycle, and the per-call numpy work
        of :meth:`_append_columns` (~150 µs) then costs more than its samples; 10,000 such PVs
        spent ~25 µs per sample. Here the columns of all PVs are filtered, split into
        partitions and encoded at once, and each PV's slice of the bytes is appended to its
        file. Special rows (fieldvalues) come from the general encoder and are spliced in
        place, so no PV leaves the batch because of them. The result is lists of counts, not
        an object per PV: 20,000 such objects per write cycle of 10,000 PVs were what made
        the garbage collector run full passes over the heap.

        A PV whose rows are not strictly increasing, or any batch that the vectorised path
        cannot take (month/year partitions, a value the encoder refuses), goes through the
        general path one PV at a time instead.
        """
        from ..pb import fast

        ptype, names, counts, special = batch.ptype, batch.names, batch.counts, batch.special
        failures = out.failures
        span = self.granularity.value
        if (
            ptype not in fast.SUPPORTED
            or span > Granularity.PARTITION_DAY.value
            or len(set(names)) != len(names)
        ):
            self._append_each(batch, out)
            return
        counts_a = np.asarray(counts, dtype=np.int64)
        secs = np.asarray(batch.secs, dtype=np.int64)
        nanos = batch.nanos
        n_all = len(secs)
        sev = np.zeros(n_all, np.int32) if batch.severity is None else batch.severity
        stat = np.zeros(n_all, np.int32) if batch.status is None else batch.status
        gid, keep, dropped, bad = self._rows_after_stored(names, counts_a, secs, nanos, failures)
        if len(bad):
            keep &= ~np.isin(gid, bad)
            dropped[bad] = 0  # counted by the general path
            starts = np.concatenate(([0], np.cumsum(counts_a)))
            for g in sorted({int(g) for g in bad}):
                name = names[g]
                try:
                    rows = batch.rows(int(starts[g]), int(starts[g + 1]))
                    out.add(g, self._append_samples(name, ptype, rows))
                except Exception as e:
                    failures[name] = e
        for g in np.flatnonzero(dropped).tolist():
            out.dropped_not_increasing[g] += int(dropped[g])
        idx = np.flatnonzero(keep)
        if len(idx) == 0:
            return
        gk, sk = gid[idx], secs[idx]
        pstart = sk - sk % span
        cut = np.flatnonzero((gk[1:] != gk[:-1]) | (pstart[1:] != pstart[:-1])) + 1
        seg_start = np.concatenate(([0], cut))
        seg_end = np.concatenate((cut, [len(idx)]))
        # a partition (at most a day) never spans two years: one year_of per partition
        uniq, inv = np.unique(pstart[seg_start], return_inverse=True)
        year_u = [year_of(int(u)) for u in uniq]
        years = [year_u[i] for i in inv.tolist()]
        ystart = np.repeat([year_start(y) for y in years], seg_end - seg_start)
        nk = np.asarray(nanos)[idx]
        try:
            data = fast.encode_scalar_lines(
                ptype, sk - ystart, nk, np.asarray(batch.vals)[idx],
                np.asarray(sev)[idx], np.asarray(stat)[idx],
            )  # fmt: skip
        except (ValueError, TypeError):
            self._append_each(batch, out)
            return
        line_end = np.flatnonzero(np.frombuffer(data, dtype=np.uint8) == 10) + 1
        if special:
            yrow = np.repeat(years, seg_end - seg_start)
            data, line_end = _splice(data, line_end, idx, special, ptype, yrow)
        byte_end = line_end[seg_end - 1]
        byte_start = np.concatenate(([0], byte_end[:-1]))
        # per segment (one PV's rows in one partition) as Python lists: numpy scalars cost
        # ~100 ns per int() and this loop runs once per PV and write cycle
        last_row = seg_end - 1
        view = memoryview(data)  # slices without copying the bytes
        written, nbytes, files = out.written, out.bytes_written, out.files
        for g, a, b, s0, n0, s1, n1, y, bs, be in zip(
            gk[seg_start].tolist(), seg_start.tolist(), seg_end.tolist(),
            sk[seg_start].tolist(), nk[seg_start].tolist(),
            sk[last_row].tolist(), nk[last_row].tolist(),
            years, byte_start.tolist(), byte_end.tolist(), strict=True,
        ):  # fmt: skip
            name = names[g]
            if name in failures:
                continue  # an earlier partition of this PV failed: later ones must wait
            path = self.path_for(name, s0)
            try:
                with self.lock(name):
                    self._append_bytes(
                        path, view[bs:be],  # type: ignore[arg-type]
                        name, ptype, y, (s0, n0), (s1, n1),
                    )  # fmt: skip
            except Exception as e:
                failures[name] = e
                continue
            written[g] += b - a
            nbytes[g] += be - bs
            files.append(path)

    def _rows_after_stored(
        self,
        names: Sequence[str],
        counts: np.ndarray,
        secs: np.ndarray,
        nanos: np.ndarray,
        failures: dict[str, Exception],
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """For the rows of many PVs (``counts[i]`` rows of ``names[i]``): each row's PV index,
        which rows are newer than the PV's stored data, how many of each PV's rows are not,
        and the PVs whose own rows are not strictly increasing (the general path takes
        those). A PV whose newest sample cannot be read goes into ``failures``."""
        gid = np.repeat(np.arange(len(names)), counts)
        key = secs * 1_000_000_000 + np.asarray(nanos, dtype=np.int64)
        same = gid[1:] == gid[:-1]
        bad = np.unique(gid[1:][same & (key[1:] <= key[:-1])])
        floor = np.full(len(names), -1, dtype=np.int64)
        for i, name in enumerate(names):
            try:
                last = self.last_known_timestamp(name)
            except Exception as e:  # e.g. a file where its folder must go: this PV only
                failures[name] = e
                floor[i] = np.iinfo(np.int64).max
                continue
            if last is not None:
                floor[i] = last[0] * 1_000_000_000 + last[1]
        keep = key > floor[gid]
        dropped = np.bincount(gid[~keep], minlength=len(names))
        for name in failures:
            dropped[names.index(name)] = 0
        return gid, keep, dropped, bad

    def _append_each(self, batch: Batch, out: BatchResult) -> None:
        """The general path, PV by PV (fallback of :meth:`_append_many`)."""
        a = 0
        for g, (name, n) in enumerate(zip(batch.names, batch.counts, strict=True)):
            b = a + n
            try:
                out.add(g, self._append_samples(name, batch.ptype, batch.rows(a, b)))
            except Exception as e:
                out.failures[name] = e
            a = b

    def _write_bytes(
        self,
        path: Path,
        data: bytes,
        count: int,
        pvname: str,
        ptype: PayloadType,
        year: int,
        first_ts: Instant,
        last_ts: Instant,
    ) -> AppendResult:
        """:meth:`_append_bytes` of ``count`` samples, as an AppendResult."""
        self._append_bytes(path, data, pvname, ptype, year, first_ts, last_ts)
        return AppendResult(written=count, bytes_written=len(data), files=[path])

    def _append_bytes(
        self,
        path: Path,
        data: bytes,
        pvname: str,
        ptype: PayloadType,
        year: int,
        first_ts: Instant,
        last_ts: Instant,
    ) -> None:
        """Append whole lines to ``path`` (the caller holds the PV's lock).

        Fast path, for a file this store appended to last: open it (without O_CREAT: a file
        deleted meanwhile, e.g. by ETL, takes the full path), fstat the open descriptor and,
        when size and modification time are still what our last append left, trust the
        remembered header check and last timestamp. Then write, fstat, close: five syscalls
        per PV and write cycle instead of nine through a Python file object and two path
        stats. Anything else (new file, changed behind our back, partial last line left by a
        crash) goes through :meth:`_prepare_file`, which checks and repairs it.
        """
        ident = (pvname, ptype, year)
        known = self._prepared.pop(path, None)
        fd = -1
        file_last: Instant | None = None
        size_before = 0
        if known is not None and known[2] == ident:
            ident = known[2]  # keep the cached tuple: one object fewer per PV and cycle
            try:
                fd = os.open(path, _APPEND_FLAGS)
            except OSError:
                fd = -1
            else:
                try:
                    cur: os.stat_result | None = os.fstat(fd)
                except OSError:
                    cur = None
                if cur is not None and (cur.st_size, cur.st_mtime_ns) == known[:2]:
                    file_last, size_before = known[3], cur.st_size
                else:
                    os.close(fd)
                    fd = -1
        if fd < 0:
            file_last, size_before = self._prepare_file(path, pvname, ptype, year)
            self._prepared.pop(path, None)
            try:
                fd = os.open(path, _APPEND_FLAGS)
            except OSError as e:
                self.forget(pvname)
                raise StoreError(
                    f"{self.name}: cannot open {path}: {e.strerror or e}; file left as it was"
                ) from e
        if file_last is not None and file_last >= first_ts:
            # cannot happen when the cache is right; refuse rather than write out of order
            os.close(fd)
            self.forget(pvname)
            raise StoreError(f"{self.name}: {path} already holds data up to {file_last}")
        st: os.stat_result | None = None
        try:
            _write_fd(fd, data, size_before, self.fsync)
            with contextlib.suppress(OSError):
                st = os.fstat(fd)
        except OSError as e:
            os.close(fd)
            self.forget(pvname)
            raise StoreError(
                f"{self.name}: writing {path} failed: {e.strerror or e}; file left as it was"
            ) from e
        try:
            os.close(fd)
        except OSError as e:  # a deferred write error (network file systems): undo it all
            with contextlib.suppress(OSError):
                os.truncate(path, size_before)
            self.forget(pvname)
            raise StoreError(
                f"{self.name}: writing {path} failed: {e.strerror or e}; file left as it was"
            ) from e
        self._last_known[pvname] = last_ts
        if st is not None:
            if len(self._prepared) > 200_000:  # one entry per partition written: keep bounded
                self._prepared.clear()
            self._prepared[path] = (st.st_size, st.st_mtime_ns, ident, last_ts)

    # ------------------------------------------------------------------ read
    def locate(
        self, pvname: str, start: Instant, end: Instant
    ) -> tuple[Segment | None, list[Segment]]:
        """Where the samples of [start, end] are, and where the last sample before start is.

        Returns (segment holding just the last sample before ``start`` or None, segments of
        the samples in [start, end] in time order).
        """
        files = self.files_for_pv(pvname)
        prev: Segment | None = None
        segs: list[Segment] = []
        after_end = (end[0], end[1] + 1)
        # Files wholly before the range can only supply "the last sample before start": look at
        # the newest of them only (walking back past empty or unreadable ones), not all of them.
        first_in = bisect.bisect_right([pf.end for pf in files], start[0])
        for pf in reversed(files[:first_in]):
            f = self._open_own(pf, pvname)
            if f is None:
                continue
            with f:
                p = f.prev_line_start(f.data_end)
                if p is not None:
                    prev = Segment(pf.path, f.header, p, f.data_end)
                    break
        for pf in files[first_in:]:
            if pf.start > end[0]:
                break
            f = self._open_own(pf, pvname)
            if f is None:
                continue
            with f:
                if not f.has_samples:
                    continue
                b = f.find(start) if pf.start <= start[0] else f.header_end
                e = f.find(after_end) if pf.end > end[0] else f.data_end
                p = f.prev_line_start(b)
                if p is not None:
                    prev = Segment(pf.path, f.header, p, b)
                if e > b:
                    segs.append(Segment(pf.path, f.header, b, e))
        return prev, segs

    def _open_own(self, pf: PartitionFile, pvname: str) -> PBFile | None:
        """Open a partition file for reading if it is readable and really holds ``pvname``."""
        try:
            f = PBFile.open(pf.path)
        except (PBFileError, OSError) as e:
            log.error("%s: skipping unreadable %s: %s", self.name, pf.path, e)
            return None
        if f.header.pvname != pvname:
            log.error("%s: skipping %s: header names PV %r", self.name, pf.path, f.header.pvname)
            f.close()
            return None
        return f

    def read(
        self, pvname: str, start: Instant, end: Instant, include_prev: bool = True
    ) -> Iterator[Sample]:
        """Samples in [start, end], preceded by the last sample before ``start`` if any."""
        prev, segs = self.locate(pvname, start, end)
        if include_prev and prev is not None:
            segs = [prev, *segs]
        for seg in segs:
            yield from iter_segment_samples(seg)

    def read_all(self, pvname: str) -> Iterator[Sample]:
        return self.read(pvname, (-(2**62), 0), (2**62, 0), include_prev=False)

    def pv_names(self) -> list[str]:
        """PV names with at least one partition file here (read from the file headers)."""
        names: set[str] = set()
        for path in iter_pb_files(self.root):
            try:
                with PBFile.open(path) as f:
                    names.add(f.header.pvname)
            except (PBFileError, OSError):
                continue
        return sorted(names)


def _splice(
    data: bytes,
    line_end: np.ndarray,
    idx: np.ndarray,
    special: dict[int, Sample],
    ptype: PayloadType,
    year_of_line: np.ndarray,
) -> tuple[bytes, np.ndarray]:
    """Replace the lines of special rows (batch row -> Sample) by their general encoding."""
    line_start = np.concatenate(([0], line_end[:-1]))
    lengths = line_end - line_start
    pieces: list[bytes] = []
    prev = 0
    for row in sorted(special):
        p = int(np.searchsorted(idx, row))
        if p >= len(idx) or idx[p] != row:
            continue  # the row was dropped (not after the stored data)
        line = sample_line(ptype, int(year_of_line[p]), special[row])
        pieces.append(data[prev : int(line_start[p])])
        pieces.append(line)
        lengths[p] = len(line)
        prev = int(line_end[p])
    pieces.append(data[prev:])
    return b"".join(pieces), np.cumsum(lengths)


def _has_no_lf(path: Path) -> bool:
    with open(path, "rb") as fh:
        return b"\n" not in fh.read(1 << 20) and fh.read(1) == b""


def iter_segment_samples(seg: Segment) -> Iterator[Sample]:
    f = open_or_log(seg.path)
    if f is None:
        return
    with f:
        for off, line in f.iter_lines(seg.begin, seg.end):
            try:
                yield f.decode(line)
            except (PBDecodeError, EscapeError) as e:
                log.error("%s: skipping corrupt line at offset %d: %s", seg.path, off, e)


def iter_pb_files(root: Path) -> Iterator[Path]:
    for dirpath, _dirs, files in os.walk(root):
        for n in files:
            if n.endswith(PB_EXTENSION):
                yield Path(dirpath) / n


def open_store(
    config: StoreConfig, settings: NamingSettings | None = None, fsync: bool = False
) -> PlainPBStore:
    """A store whose naming fits its folder: probed, created if missing, checked writable.

    Raises :class:`~.probe.StoreFolderError` (one line for the user) when the folder cannot
    hold the store's files; see :func:`~.probe.choose_naming`.
    """
    from .probe import open_naming, remove_stale_probes

    remove_stale_probes(Path(config.root_folder))
    return PlainPBStore(config, fsync=fsync, naming=open_naming(config, settings))
