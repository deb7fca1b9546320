"""Throughput of the response renderers on ScalarDouble data, one core.

Run with ``.venv/bin/python benchmarks/bench_formats.py [n_samples]`` (default 1 M). The data is
split into chunks of 50,000 samples, as the stores deliver it; every renderer is drained
completely and the fastest of three runs is reported, with the body size per sample.

Two value sets, because the cost of JSON and CSV is mostly printing floats: "full" values
(a noisy analogue signal, 16-17 significant digits, the usual case for a calculated double)
and "3-dec" values (rounded to three decimals, e.g. from a device with fixed resolution).
``.raw`` is measured with the stored lines passed through (what a plain query does; the pieces
are the stored bytes themselves, so that figure only says the renderer adds nothing: the
socket is the limit) and re-encoded (what a post-processed query does). The "naive json" line
is a straightforward per-sample f-string renderer using ``repr``, for comparison.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pvarchiver.pb import PayloadInfo, PayloadType, year_start
from pvarchiver.pb.fast import encode_scalar_lines
from pvarchiver.retrieval.formats import FORMATS
from pvarchiver.retrieval.model import Chunk, PVStream, SampleBlock

CHUNK = 50_000
YEAR = 2024


def make_chunks(n: int, rounded: bool, with_raw: bool) -> list[Chunk]:
    """~10 Hz samples of a noisy signal, cut into store-sized chunks."""
    rng = np.random.default_rng(42)
    base = year_start(YEAR)
    t = 3_000_000 + np.cumsum(rng.exponential(0.1, n))
    secs = base + t.astype(np.int64)
    nanos = ((t - np.floor(t)) * 1e9).astype(np.int64)
    vals = 20.0 + rng.standard_normal(n)
    if rounded:
        vals = np.round(vals, 3)
    sev = np.zeros(n, dtype=np.int32)
    chunks = []
    for i in range(0, n, CHUNK):
        rows = slice(i, i + CHUNK)
        block = SampleBlock(secs[rows], nanos[rows], vals[rows], sev[rows], sev[rows])
        raw = None
        if with_raw:
            raw = encode_scalar_lines(
                PayloadType.SCALAR_DOUBLE, block.secs - base, block.nanos, block.vals
            )
        chunks.append(Chunk(PayloadInfo(PayloadType.SCALAR_DOUBLE, "BENCH:AI", YEAR), block, raw))
    return chunks


def streams(chunks: list[Chunk]) -> list[PVStream]:
    meta = {"name": "BENCH:AI", "EGU": "degC", "PREC": "3"}
    return [PVStream("BENCH:AI", meta, iter(chunks), PayloadType.SCALAR_DOUBLE)]


def naive_json(pvs: Iterable[PVStream]) -> Iterator[bytes]:
    """The obvious implementation: one f-string and one repr per sample."""
    yield b"[ \n"
    for k, pv in enumerate(pvs):
        yield (b"] },\n" if k else b"") + b'{ "meta": { "name": "BENCH:AI" },\n"data": [ \n'
        first = True
        for c in pv.chunks:
            b = c.block
            lines = [
                f'{{ "secs": {s}, "val": {repr(v) if math.isfinite(v) else "null"}, '
                f'"nanos": {ns}, "severity":{sv}, "status":{st} }}'
                for s, v, ns, sv, st in zip(
                    b.secs.tolist(),
                    b.vals.tolist(),
                    b.nanos.tolist(),
                    b.severity.tolist(),
                    b.status.tolist(),
                    strict=True,
                )
            ]
            yield ("" if first else ",\n").encode() + ",\n".join(lines).encode()
            first = False
    yield b"] }\n ]\n"


def drain(render: Callable[[list[PVStream]], Iterator[bytes]], chunks: list[Chunk]) -> int:
    return sum(len(p) for p in render(streams(chunks)))


def measure(label: str, render: Callable, chunks: list[Chunk], n: int) -> None:
    best, size = math.inf, 0
    for _ in range(3):
        t0 = time.perf_counter()
        size = drain(render, chunks)
        best = min(best, time.perf_counter() - t0)
    rate = n / best / 1e6
    print(f"{label:<24} {rate:8.2f} M samples/s   {size / n:6.1f} bytes/sample")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    print(f"{n:,} SCALAR_DOUBLE samples in chunks of {CHUNK:,}")
    for rounded in (False, True):
        tag = "3-dec" if rounded else "full"
        plain = make_chunks(n, rounded, with_raw=False)
        stored = make_chunks(n, rounded, with_raw=True)
        print(f"-- values: {tag}")
        for ext, (render, _ctype) in FORMATS.items():
            if ext == "raw":
                measure("raw (stored, zero-copy)", render, stored, n)
                measure("raw (re-encoded)", render, plain, n)
            else:
                measure(ext, render, plain, n)
        measure("naive json (reference)", naive_json, plain, n)


if __name__ == "__main__":
    main()
