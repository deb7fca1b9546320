"""Which PV owns which data files: refuse a new PV whose files would be another PV's.

Two PV names can lead to the same files: in a folder that ignores case (NTFS, macOS's APFS
by default) ``SR:Bpm1`` and ``SR:BPM1`` are one file; under the AA's key mapping ``A:B``,
``A-B`` and ``A::B`` are all ``A/B:`` everywhere. The AA archives both and mixes their
samples in one file. Here the second one is refused by ``archivePV`` (and ``renamePV``) with
both names in the message, so nothing is ever written into another PV's file.

The index is built from the registry on first use and kept as PVs are added; a PV that was
deleted since is noticed when its entry is hit (the owner check asks ``exists``), so deletes
need no bookkeeping here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from ..storage.chains import keeps_data
from ..storage.naming import UnmappableName
from ..storage.store import PlainPBStore


class FileKeyConflict(ValueError):
    """A PV name whose files would be another PV's, or that has no file name at all."""


class FileKeyIndex:
    """Per store: the key as the folder compares names -> the PV that owns it."""

    def __init__(self, stores: Sequence[PlainPBStore], exists: Callable[[str], bool]) -> None:
        self.stores = [st for st in stores if keeps_data(st)]  # a blackhole has no files
        self.exists = exists
        self._owners: list[dict[str, str]] | None = None

    def _keys(self, pv: str) -> list[str]:
        """The PV's key in each store, as that store's folder compares names."""
        out = []
        for st in self.stores:
            try:
                out.append(st.naming.match_key(st.key(pv)))
            except UnmappableName as e:
                raise FileKeyConflict(f"{e} (store {st.name})") from None
        return out

    def load(self, names: Iterable[str]) -> None:
        owners: list[dict[str, str]] = [{} for _ in self.stores]
        for pv in names:
            try:
                keys = self._keys(pv)
            except FileKeyConflict:
                continue  # archived before this check existed; it keeps what it has
            for owner, k in zip(owners, keys, strict=True):
                owner.setdefault(k, pv)
        self._owners = owners

    def check(self, pv: str, names: Callable[[], Iterable[str]]) -> None:
        """Raise :class:`FileKeyConflict` if ``pv`` has no file key or would share files
        with a PV that exists. ``names`` gives every existing PV (read on first use only)."""
        if self._owners is None:
            self.load(names())
        assert self._owners is not None
        for st, owner, k in zip(self.stores, self._owners, self._keys(pv), strict=True):
            other = owner.get(k)
            if other is None or other == pv:
                continue
            if not self.exists(other):
                del owner[k]
                continue
            why = (
                f"the folder of store {st.name} ({st.root}) ignores case"
                if st.naming.case_insensitive and st.key(other) != st.key(pv)
                else f"both map to the file key {st.key(pv)!r}"
            )
            raise FileKeyConflict(
                f"PV {pv!r} would write into the data files of PV {other!r}: {why}"
            )

    def add(self, pv: str) -> None:
        if self._owners is None:
            return  # loaded from the registry on first use
        for owner, k in zip(self._owners, self._keys(pv), strict=True):
            owner.setdefault(k, pv)
