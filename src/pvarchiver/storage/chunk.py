"""A chunk: samples of one PV, one type and one UTC year, as blocks of columns.

Shared by everything that hands samples on: stores and the engine's buffers produce chunks,
retrieval merges, post-processes and encodes them. It lives here, below both, so that the
engine never imports retrieval.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..pb import PayloadInfo
from .columns import SampleBlock

__all__ = ["Chunk"]


@dataclass
class Chunk:
    """Samples of one PV, one PayloadType and one year (``header.year``).

    ``raw``, when not None, is exactly the escaped, LF-terminated PlainPB lines of the block's
    samples as stored; ``.raw`` responses send it as it is instead of re-encoding. Anything that
    changes the samples (a post-processor, a filter) must drop it.
    """

    header: PayloadInfo
    block: SampleBlock
    raw: bytes | None = None

    def __len__(self) -> int:
        return len(self.block)

    def last_ns(self) -> int:
        """Timestamp of the last sample in nanoseconds since the epoch."""
        return int(self.block.secs[-1]) * 1_000_000_000 + int(self.block.nanos[-1])
