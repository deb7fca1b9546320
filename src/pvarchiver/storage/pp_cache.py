"""``pp=<post-processor>``: the post-processed caches the AA keeps next to a store's files.

For a data file ``<key>:<partition>.pb`` and ``pp=firstSample_3600`` the cache is
``<key>:<partition>.firstSample_3600``: the same PlainPB format, the file's samples through
the post-processor, one partition at a time. ETL regenerates a cache after moving data into
the file, when the cache is missing or older than the file (the AA, through a lookup bug,
regenerates every cache on every pass). Retrieval answers a request for that post-processor
from the caches when they cover the whole request (see :func:`read_caches`), which makes
long-range plots of a year-long store cheap.

A cache is written to a temporary name, synced and renamed, so a crash leaves the old cache
or the new one; a stale or missing cache only costs speed, never data.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

from ..pb import PayloadInfo, Sample, sample_line
from ..pb.sample import header_line
from .paths import PB_EXTENSION
from .pbfile import PBFile
from .store import PartitionFile, PlainPBStore, fsync_dir

if TYPE_CHECKING:
    from .etl import Reducer

log = logging.getLogger(__name__)


def cache_path(data_file: Path, ext: str) -> Path:
    """The cache of ``data_file`` for the post-processor extension ``ext``."""
    return data_file.with_name(data_file.name[: -len(PB_EXTENSION)] + "." + ext)


def _fresh(data_file: Path, cache: Path) -> bool:
    """Newer than its data file (:func:`write_cache` dates a cache after the data it read:
    file times tick in jiffies, so "written later" alone can give equal times)."""
    try:
        return cache.stat().st_mtime_ns > data_file.stat().st_mtime_ns
    except FileNotFoundError:
        return False


def _samples(f: PBFile) -> list[Sample]:
    return [f.decode(line) for _off, line in f.iter_lines(f.header_end)]


def write_cache(
    store: PlainPBStore, pv: str, pf: PartitionFile, op: str, ext: str, reducer: Reducer
) -> Path:
    """(Re)write the cache of one data file for ``op``: temp file, fsync, rename."""
    with store.lock(pv):
        read_mtime = pf.path.stat().st_mtime_ns
        with PBFile.open(pf.path) as f:
            info = f.header
            rows = _samples(f)
    out_type, reduced = reducer.reduce(op, pv, info.type, iter(rows), pf.start, pf.end)
    dest = cache_path(pf.path, ext)
    tmp = dest.with_name(dest.name + ".tmp")
    year = info.year
    with open(tmp, "wb") as out:
        out.write(header_line(PayloadInfo(out_type, pv, year)))
        out.writelines(sample_line(out_type, year, s) for s in reduced)
        out.flush()
        os.fsync(out.fileno())
    made = os.stat(tmp).st_mtime_ns
    if made <= read_mtime:  # same clock tick as the data's last write
        os.utime(tmp, ns=(made, read_mtime + 1))
    os.replace(tmp, dest)
    fsync_dir(dest.parent)
    return dest


def refresh_caches(store: PlainPBStore, pv: str, reducer: Reducer) -> list[str]:
    """Regenerate ``pv``'s caches in ``store`` that are missing or older than their data
    file; returns what failed (logged; an unknown ``pp=`` is skipped, as in the AA)."""
    errors: list[str] = []
    for op in store.config.post_processors:
        try:
            ext = reducer.extension(op)
        except Exception as e:
            log.warning("%s: pp=%s skipped: %s", store.name, op, e)
            continue
        for pf in store.files_for_pv(pv):
            if _fresh(pf.path, cache_path(pf.path, ext)):
                continue
            try:
                write_cache(store, pv, pf, op, ext, reducer)
            except Exception as e:  # a cache is only an optimisation: report and go on
                errors.append(f"{pf.path}: pp={op} cache not written: {e}")
                log.error("%s: pp=%s cache of %s not written: %s", store.name, op, pf.path, e)
                tmp = cache_path(pf.path, ext)
                with contextlib.suppress(OSError):
                    tmp.with_name(tmp.name + ".tmp").unlink(missing_ok=True)
    return errors


def cached_op(store: PlainPBStore, ext: str, reducer: Reducer) -> bool:
    """Whether ``store`` keeps caches with the extension ``ext`` (``parquet://`` stores
    keep none: their ``pp=`` is not implemented, so their raw data answers)."""
    if not isinstance(store, PlainPBStore):
        return False
    for op in store.config.post_processors:
        with contextlib.suppress(Exception):
            if reducer.extension(op) == ext:
                return True
    return False


def read_caches(
    store: PlainPBStore, pv: str, ext: str, start: int, end: int
) -> list[Sample] | None:
    """The cached samples of ``pv`` in ``[start, end]`` (seconds), or None unless every
    data file of the store overlapping the range has a fresh cache (and there is at least
    one): only then is the cache the same answer as the raw data."""
    files = [pf for pf in store.files_for_pv(pv) if pf.end > start and pf.start <= end]
    if not files:
        return None
    out: list[Sample] = []
    for pf in files:
        cache = cache_path(pf.path, ext)
        if not _fresh(pf.path, cache):
            return None
        try:
            with PBFile.open(cache) as f:
                out.extend(s for s in _samples(f) if start <= s.secs <= end)
        except Exception as e:  # damaged cache: the raw data answers
            log.warning("%s: cache %s unreadable, using the raw data: %s", store.name, cache, e)
            return None
    return out
