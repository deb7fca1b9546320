"""Throughput of the post-processors on a year of 1 Hz ScalarDouble data (31.5 M samples).

Run with ``.venv/bin/python benchmarks/bench_postprocessors.py [spec ...]`` (default:
``mean_3600 optimized_1000 firstSample_3600``). The samples are made in memory, 50 000 per
chunk, from a few pre-computed templates shifted in time, so no disk is involved; the time
to produce the chunks alone is measured first and subtracted, leaving the post-processing
itself. The goal for ``mean_3600`` is well under 3 s, i.e. at least 20 M samples/s.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pvarchiver.pb import PayloadInfo, PayloadType, year_start
from pvarchiver.retrieval.model import Chunk, SampleBlock
from pvarchiver.retrieval.postprocessors import parse_post_processor

YEAR = 2023
CHUNK = 50_000
N = year_start(YEAR + 1) - year_start(YEAR)  # 31 536 000 seconds, one sample each
DEFAULT_SPECS = ["mean_3600", "optimized_1000", "firstSample_3600"]


def make_chunks() -> Iterator[Chunk]:
    """1 Hz for the whole year: a noisy analogue value, an occasional alarm."""
    rng = np.random.default_rng(1)
    base = np.arange(CHUNK, dtype=np.int64)
    templates = [20 + np.sin(base / 600.0 + k) + rng.normal(0, 0.05, CHUNK) for k in range(4)]
    severity = np.zeros(CHUNK, dtype=np.int32)
    severity[::9973] = 1
    status = np.zeros(CHUNK, dtype=np.int32)
    nanos = np.zeros(CHUNK, dtype=np.int64)
    header = PayloadInfo(PayloadType.SCALAR_DOUBLE, "BENCH:PV", YEAR, 1, {"EGU": "degC"})
    t0 = year_start(YEAR)
    for i, lo in enumerate(range(0, N, CHUNK)):
        n = min(CHUNK, N - lo)
        block = SampleBlock(
            base[:n] + (t0 + lo),
            nanos[:n],
            templates[i % 4][:n],
            severity[:n],
            status[:n],
        )
        yield Chunk(header, block, None)


def timed(spec: str | None) -> tuple[float, int, int]:
    """Seconds to drain the stream (through ``spec`` if given), samples in, samples out."""
    start = (year_start(YEAR), 0)
    end = (year_start(YEAR + 1) - 1, 0)
    t = time.perf_counter()
    chunks = make_chunks()
    out = 0
    if spec is None:
        for c in chunks:
            out += len(c)
    else:
        for c in parse_post_processor(spec).process(chunks, start, end):
            out += len(c)
    return time.perf_counter() - t, N, out


def main() -> None:
    specs = sys.argv[1:] or DEFAULT_SPECS
    gen = min(timed(None)[0] for _ in range(3))
    print(f"{N / 1e6:.1f} M samples of ScalarDouble, chunks of {CHUNK}")
    print(f"making the chunks alone: {gen:.3f} s (subtracted below)")
    for spec in specs:
        best = min(timed(spec)[0] for _ in range(3))
        _t, n_in, n_out = timed(spec)
        net = max(best - gen, 1e-9)
        print(
            f"{spec:>18}: {net:6.3f} s  {n_in / net / 1e6:7.1f} M samples/s  ({n_out} samples out)"
        )


if __name__ == "__main__":
    main()
