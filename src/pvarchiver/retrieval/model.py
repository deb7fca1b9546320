"""What flows from the stores through post-processors to the response encoders.

A response is a sequence of :class:`PVStream` (one per requested PV), each a lazy iterator of
:class:`Chunk`. A chunk holds at most a block's worth of samples (about 1 MB of file), all of
one PV, one type and one UTC year, so memory stays flat whatever the time range.
:class:`Chunk` itself lives in :mod:`pvarchiver.storage.chunk`: the engine's buffered samples
are chunks too, and the engine must not depend on retrieval.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from ..pb import PayloadType, Sample
from ..storage.chunk import Chunk
from ..storage.columns import SampleBlock, block_from_samples

__all__ = ["Chunk", "PVStream", "SampleBlock", "block_from_samples", "block_samples"]


@dataclass
class PVStream:
    """One PV of a response: the requested name, its ``meta`` (all values strings, as the
    AA's JSON) and its chunks."""

    name: str
    meta: dict[str, str]
    chunks: Iterator[Chunk]
    type: PayloadType | None = None
    extra: dict[str, object] = field(default_factory=dict)


def block_samples(block: SampleBlock) -> Iterator[Sample]:
    """Sample objects of a block (slow path, for code that needs one object per sample)."""
    return (block.sample(i) for i in range(len(block)))
