"""Disk use of the stores: per store (getStorageMetrics, /metrics) and per PV
(getPVsByStorageConsumed), from one walk of each store's folder tree.

Why a cache: with 10,000 PVs a scan stats tens of thousands of files; the reports page and a
Prometheus scraper may ask every few seconds. A scan runs in a worker thread, at most one at
a time, and its result is reused for the cache's ``ttl`` seconds (the setting
``PVARCHIVER_STORAGE_SCAN_SECONDS``, default 60 s).
Numbers are therefore up to that old; every answer that uses them says when they were taken.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..storage.store import PlainPBStore

log = logging.getLogger(__name__)

PB_SUFFIX = ".pb"


@dataclass
class StoreUsage:
    """One store: its file system's size and free space, and what our files take."""

    name: str
    root: Path
    total_bytes: int = 0
    available_bytes: int = 0
    used_bytes: int = 0
    files: int = 0
    pv_bytes: dict[str, int] = field(default_factory=dict)

    @property
    def pv_count(self) -> int:
        return sum(1 for n in self.pv_bytes.values() if n > 0)


@dataclass
class Usage:
    stores: list[StoreUsage]
    taken_epoch: float
    scan_seconds: float

    def per_pv(self) -> dict[str, int]:
        """Bytes per PV summed over all stores."""
        out: dict[str, int] = {}
        for st in self.stores:
            for pv, n in st.pv_bytes.items():
                out[pv] = out.get(pv, 0) + n
        return out


def _walk_sizes(root: Path, suffix: str = PB_SUFFIX) -> dict[str, int]:
    """Size of every data file (``suffix``: ``.pb``, ``.parquet``) under ``root`` by path
    (an explicit stack of scandir calls: one stat per file, which os.walk plus Path.stat
    would double)."""
    sizes: dict[str, int] = {}
    stack = [str(root)]
    while stack:
        folder = stack.pop()
        try:
            it = os.scandir(folder)
        except (FileNotFoundError, NotADirectoryError, PermissionError):
            continue
        with it:
            for e in it:
                try:
                    if e.is_dir(follow_symlinks=False):
                        stack.append(e.path)
                    elif e.name.endswith(suffix):
                        sizes[e.path] = e.stat(follow_symlinks=False).st_size
                except FileNotFoundError:  # moved by ETL meanwhile
                    continue
    return sizes


def disk_space(root: Path) -> tuple[int, int]:
    """(total, free) bytes of the file system holding ``root`` (or its nearest existing
    parent: a store folder is only created on the first write); raises OSError."""
    p = root
    while not p.exists() and p != p.parent:
        p = p.parent
    du = shutil.disk_usage(p)
    return du.total, du.free


def _disk(root: Path) -> tuple[int, int]:
    """:func:`disk_space`, (0, 0) with a warning when it cannot be read."""
    try:
        return disk_space(root)
    except OSError as e:
        log.warning("cannot get the disk usage of %s: %s", root, e)
        return 0, 0


def scan(stores: Sequence[PlainPBStore], pvs: Iterable[str]) -> Usage:
    """Walk every store once (worker thread)."""
    t0 = time.monotonic()
    names = list(pvs)
    out = []
    for store in stores:
        su = StoreUsage(store.name, store.root)
        su.total_bytes, su.available_bytes = _disk(store.root)
        # a parquet:// store's files end in .parquet (its `extension`); pb:// ones in .pb
        sizes = _walk_sizes(store.root, getattr(store, "extension", PB_SUFFIX))
        su.used_bytes = sum(sizes.values())
        su.files = len(sizes)
        for pv, files in store.files_for_pvs(names).items():
            n = sum(sizes.get(str(pf.path), 0) for pf in files)
            if n:
                su.pv_bytes[pv] = n
        out.append(su)
    return Usage(out, time.time(), time.monotonic() - t0)


class UsageCache:
    """The last scan, refreshed when older than the TTL; concurrent askers share one scan."""

    def __init__(
        self,
        stores: Sequence[PlainPBStore] | Callable[[], Sequence[PlainPBStore]],
        pvs: Callable[[], Iterable[str]],
        ttl: float,
    ) -> None:
        # a callable: the folders in use change as PVs get chains of their own
        self._stores = stores
        self.pvs = pvs
        self.ttl = ttl
        self._last: Usage | None = None
        self._lock = asyncio.Lock()

    @property
    def stores(self) -> Sequence[PlainPBStore]:
        """Each store folder in use once."""
        return self._stores() if callable(self._stores) else self._stores

    def invalidate(self) -> None:
        """Forget the last scan (after an operation that moved or removed files)."""
        self._last = None

    async def get(self) -> Usage:
        async with self._lock:
            last = self._last
            if last is None or time.time() - last.taken_epoch >= self.ttl:
                names = list(self.pvs())
                last = self._last = await asyncio.to_thread(scan, self.stores, names)
            return last
