"""What a store appends (:class:`Batch`) and what it answers (:class:`BatchResult`).

Both stores (``pb://`` and ``parquet://``) have one entry point, ``append(batch)``. Why one
type with several forms rather than one method per form: the engine, the journal replay, ETL,
the management actions and the tools each hold their rows differently (Sample objects,
numpy columns of thousands of PVs, a stream of blocks read from another store), and every
caller used to pick among five methods with five result shapes. A batch says what it holds;
the store picks its fastest path for it and always answers with per-PV counts and failures.

A batch holds rows of one :class:`PayloadType` for one or many PVs, in one of three forms:

- **samples**: one PV's rows as :class:`Sample` objects (any type, may be a lazy iterable);
- **columns**: typed numpy columns of one or many PVs, ``counts[i]`` consecutive rows of
  ``names[i]``; ``special`` maps a row index to the whole Sample for the few rows that carry
  more than the columns (fieldvalues, repeat counts): they are encoded from that Sample;
- **blocks**: one PV's rows as a stream of :class:`~.columns.SampleBlock`, for moves between
  stores where the whole stream must not be held in memory.

Rows of each PV must be in time order; rows not after the PV's stored data (or after the
previous row) are dropped and counted, as the AA drops them.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..pb import PayloadType, Sample

if TYPE_CHECKING:
    from .columns import SampleBlock

__all__ = ["AppendResult", "Appendable", "Batch", "BatchResult", "append_samples"]


@dataclass(slots=True)
class AppendResult:
    """What was appended for one PV (a view of one row of a :class:`BatchResult`, and the
    unit a store's partition writes add up)."""

    written: int = 0
    dropped_not_increasing: int = 0
    bytes_written: int = 0
    files: list[Path] = field(default_factory=list)

    def add(self, other: AppendResult) -> None:
        self.written += other.written
        self.dropped_not_increasing += other.dropped_not_increasing
        self.bytes_written += other.bytes_written
        # partitions arrive in time order, so a repeat can only be the last one
        for p in other.files:
            if not self.files or self.files[-1] != p:
                self.files.append(p)


@dataclass(slots=True)
class Batch:
    """Rows of one PayloadType for one or many PVs; build it with a ``Batch.of_*`` method."""

    ptype: PayloadType
    names: Sequence[str]
    counts: Sequence[int] = ()
    samples: Iterable[Sample] | None = None
    secs: np.ndarray | None = None
    nanos: np.ndarray | None = None
    vals: np.ndarray | None = None
    severity: np.ndarray | None = None
    status: np.ndarray | None = None
    special: dict[int, Sample] = field(default_factory=dict)
    blocks: Iterable[SampleBlock] | None = None

    @classmethod
    def of_samples(cls, pvname: str, ptype: PayloadType, samples: Iterable[Sample]) -> Batch:
        """One PV's rows as Sample objects (any PayloadType)."""
        return cls(ptype, (pvname,), samples=samples)

    @classmethod
    def of_columns(
        cls,
        pvname: str,
        ptype: PayloadType,
        secs: np.ndarray,
        nanos: np.ndarray,
        vals: np.ndarray,
        severity: np.ndarray | None = None,
        status: np.ndarray | None = None,
        special: dict[int, Sample] | None = None,
    ) -> Batch:
        """One PV's rows as columns (severity and status default to 0)."""
        return cls(
            ptype, (pvname,), (len(secs),), None, secs, nanos, vals, severity, status,
            special or {},
        )  # fmt: skip

    @classmethod
    def of_many(
        cls,
        ptype: PayloadType,
        names: Sequence[str],
        counts: Sequence[int],
        secs: np.ndarray,
        nanos: np.ndarray,
        vals: np.ndarray,
        severity: np.ndarray,
        status: np.ndarray,
        special: dict[int, Sample] | None = None,
    ) -> Batch:
        """Columns of many PVs: ``counts[i]`` consecutive rows of ``names[i]``."""
        return cls(ptype, names, counts, None, secs, nanos, vals, severity, status, special or {})

    @classmethod
    def of_blocks(cls, pvname: str, ptype: PayloadType, blocks: Iterable[SampleBlock]) -> Batch:
        """One PV's rows as a stream of blocks (read as the store writes them)."""
        return cls(ptype, (pvname,), blocks=blocks)

    @property
    def is_columns(self) -> bool:
        return self.samples is None and self.blocks is None

    def pv_samples(self, i: int) -> Iterator[Sample]:
        """PV ``i``'s rows as Samples, whatever the form (the general path of every store)."""
        if self.samples is not None:
            yield from self.samples
            return
        if self.blocks is not None:
            for b in self.blocks:
                for r in range(len(b)):
                    yield b.sample(r)
            return
        a = sum(self.counts[:i])
        yield from self.rows(a, a + self.counts[i])

    def rows(self, a: int, b: int) -> Iterator[Sample]:
        """Column rows ``a..b`` as Samples (the special ones as given)."""
        secs, nanos, vals, special = self.secs, self.nanos, self.vals, self.special
        sev, stat = self.severity, self.status
        assert secs is not None and nanos is not None and vals is not None
        for i in range(a, b):
            s = special.get(i)
            if s is None:
                v = vals[i]
                s = Sample(
                    int(secs[i]),
                    int(nanos[i]),
                    v.item() if hasattr(v, "item") else v,
                    0 if sev is None else int(sev[i]),
                    0 if stat is None else int(stat[i]),
                )
            yield s

    def pv_blocks(self) -> Iterator[tuple[int, str, Iterable[SampleBlock]]]:
        """Each PV's rows as blocks: (index, name, blocks), for stores that write columns."""
        from .columns import SampleBlock, block_from_samples

        if self.blocks is not None:
            yield 0, self.names[0], self.blocks
            return
        if self.samples is not None:
            samples = list(self.samples)
            yield 0, self.names[0], [block_from_samples(samples, self.ptype)] if samples else []
            return
        assert self.secs is not None and self.nanos is not None and self.vals is not None
        n_all = len(self.secs)
        sev = np.zeros(n_all, np.int32) if self.severity is None else self.severity
        stat = np.zeros(n_all, np.int32) if self.status is None else self.status
        a = 0
        for i, (name, n) in enumerate(zip(self.names, self.counts, strict=True)):
            b = a + n
            extras = {r - a: s for r, s in self.special.items() if a <= r < b}
            block = SampleBlock(
                np.asarray(self.secs[a:b], dtype=np.int64),
                np.asarray(self.nanos[a:b], dtype=np.int64),
                np.asarray(self.vals[a:b]),
                np.asarray(sev[a:b], dtype=np.int32),
                np.asarray(stat[a:b], dtype=np.int32),
                extras,
            )
            yield i, name, [block] if n else []
            a = b


@dataclass(slots=True)
class BatchResult:
    """The answer to every append: per PV (lists aligned with the batch's ``names``) the
    samples written, dropped as not after the stored data, and bytes written; the partition
    files written (in order); and the PVs that failed, with why. A failed PV may have had
    some partitions written before the failure; its counts say how much."""

    names: Sequence[str]
    written: list[int]
    dropped_not_increasing: list[int]
    bytes_written: list[int]
    files: list[Path] = field(default_factory=list)
    failures: dict[str, Exception] = field(default_factory=dict)

    @classmethod
    def for_batch(cls, batch: Batch) -> BatchResult:
        n = len(batch.names)
        return cls(batch.names, [0] * n, [0] * n, [0] * n)

    def add(self, i: int, r: AppendResult) -> None:
        """Add one PV's (partial) result."""
        self.written[i] += r.written
        self.dropped_not_increasing[i] += r.dropped_not_increasing
        self.bytes_written[i] += r.bytes_written
        for p in r.files:
            if not self.files or self.files[-1] != p:
                self.files.append(p)

    @property
    def total_written(self) -> int:
        return sum(self.written)

    def one(self) -> AppendResult:
        """The result of a one-PV batch; raises that PV's failure, as a direct call would."""
        if len(self.names) != 1:
            raise ValueError(f"one() of a batch of {len(self.names)} PVs")
        e = self.failures.get(self.names[0])
        if e is not None:
            raise e
        return AppendResult(
            self.written[0], self.dropped_not_increasing[0], self.bytes_written[0], self.files
        )


class Appendable(Protocol):
    """Anything with the stores' one entry point."""

    def append(self, batch: Batch) -> BatchResult: ...


def append_samples(
    store: Appendable, pvname: str, ptype: PayloadType, samples: Iterable[Sample]
) -> AppendResult:
    """Convenience for tests, tools and small callers: append one PV's Samples and return its
    result, raising its failure. Exactly ``store.append(Batch.of_samples(...)).one()``."""
    return store.append(Batch.of_samples(pvname, ptype, samples)).one()
