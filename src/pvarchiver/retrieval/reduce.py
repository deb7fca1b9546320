"""``reducedata=<post-processor>``: ETL's reduction of one source file, done by retrieval's
post-processors.

Storage's ETL cannot import retrieval (it sits below it), so the appliance hands it this
function (:data:`pvarchiver.storage.etl.Reducer`). The operator sees one source file at a
time, as in the AA, so bins never span two ETL batches.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from itertools import groupby

from ..pb import PayloadInfo, PayloadType, Sample, year_of
from ..storage.chunk import Chunk
from ..storage.columns import block_from_samples
from .postprocessors import REGISTERED, PostProcessorError, parse_post_processor


def _chunks(pv: str, ptype: PayloadType, samples: Iterable[Sample]) -> Iterator[Chunk]:
    """Samples as chunks of one year each (a chunk's samples share its header's year)."""
    for year, group in groupby(samples, key=lambda s: year_of(s.secs)):
        rows = list(group)
        yield Chunk(PayloadInfo(ptype, pv, year), block_from_samples(rows, ptype))


def reduce_samples(
    op: str, pv: str, ptype: PayloadType, samples: Iterator[Sample], start: int, end: int
) -> tuple[PayloadType, list[Sample]]:
    """``samples`` of one partition ``[start, end)`` through the post-processor ``op``.

    Raises :class:`PostProcessorError` for an unknown operator or one that does not apply to
    ``ptype`` (e.g. ``mean`` of a string PV): ETL then keeps the source file.
    """
    pp = parse_post_processor(op)
    out_type = pp.output_type(ptype)
    out: list[Sample] = []
    last = (end - 1, 999_999_999)  # the partition's end is exclusive: no bin after it
    for chunk in pp.process(_chunks(pv, ptype, samples), (start, 0), last):
        block = chunk.block
        out.extend(block.sample(i) for i in range(len(block)))
    return out_type, out


def extension(op: str) -> str:
    """The AA's getExtension of ``op``: its identity, with a no-fill variant's ``Sample``
    dropped (``meanSample_600`` -> ``mean_600``), so caches the AA wrote are found."""
    ident = parse_post_processor(op).identity
    for key in REGISTERED:
        base = key[: -len("Sample")]
        if key.endswith("Sample") and base in REGISTERED and ident.startswith(key):
            return base + ident[len(key) :]
    return ident


class PostProcessorReducer:
    """:class:`pvarchiver.storage.etl.Reducer` made of retrieval's post-processors."""

    def reduce(
        self, op: str, pv: str, ptype: PayloadType, samples: Iterator[Sample], start: int, end: int
    ) -> tuple[PayloadType, list[Sample]]:
        return reduce_samples(op, pv, ptype, samples, start, end)

    def extension(self, op: str) -> str:
        return extension(op)


#: the one the appliance hands to ETL
REDUCER = PostProcessorReducer()

__all__ = ["REDUCER", "PostProcessorError", "extension", "reduce_samples"]
