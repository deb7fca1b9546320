"""Throughput of the PlainPB sample codec for SCALAR_DOUBLE: vectorised path vs protobuf.

Run with ``.venv/bin/python benchmarks/bench_codec.py [n_samples]``. The storage layer's append
(2 M samples/s) and read (3 M samples/s) budgets include disk I/O, so the pure codec has to be
comfortably faster than those; this script shows by how much, and checks on the way that the
fast path still produces the reference bytes.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "src"))

from pvarchiver.pb import PayloadType, Sample, decode_line, sample_line, year_start
from pvarchiver.pb.fast import decode_scalar_lines, encode_scalar_lines

YEAR = 2024
PTYPE = PayloadType.SCALAR_DOUBLE


def best_of(repeats: int, fn: Callable[[], object]) -> tuple[float, object]:
    """Fastest of a few runs, so that a noisy neighbour does not decide the number."""
    best, result = float("inf"), None
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - t0)
    return best, result


def make_samples(n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A realistic stream: ~10 Hz over part of the year, a noisy analogue value."""
    rng = np.random.default_rng(42)
    t = 3_000_000 + np.cumsum(rng.exponential(0.1, n))
    soy = t.astype(np.uint32)
    nanos = ((t - soy) * 1e9).astype(np.uint32)
    vals = np.round(20.0 + rng.standard_normal(n), 3)
    return soy, nanos, vals


def report(label: str, n: int, seconds: float) -> None:
    print(f"{label:<34} {n / seconds / 1e6:7.2f} M samples/s  ({seconds * 1e3:8.1f} ms)")


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    soy, nanos, vals = make_samples(n)
    print(f"{n:,} {PTYPE.name} samples")

    t_enc, encoded = best_of(5, lambda: encode_scalar_lines(PTYPE, soy, nanos, vals))
    assert isinstance(encoded, bytes)
    report("fast encode", n, t_enc)
    t_dec, cols = best_of(5, lambda: decode_scalar_lines(PTYPE, encoded))
    report("fast decode", n, t_dec)
    assert not cols.fallback.any()  # type: ignore[attr-defined]
    print(f"{'bytes/sample (incl. escapes, LF)':<34} {len(encoded) / n:7.2f}")

    # A stream in which every line needs escaping exercises the slow part of both directions.
    soy_esc = np.full(n, 10, dtype=np.uint32)  # 0x0A
    nanos_esc = np.full(n, 27, dtype=np.uint32)  # 0x1B
    vals_esc = np.full(n, np.frombuffer(b"\r\n\x1b\r\n\x1b\r\n", "<f8")[0])
    t_enc_e, esc_buf = best_of(3, lambda: encode_scalar_lines(PTYPE, soy_esc, nanos_esc, vals_esc))
    report("fast encode (all lines escaped)", n, t_enc_e)
    t_dec_e, _ = best_of(3, lambda: decode_scalar_lines(PTYPE, esc_buf))  # type: ignore[arg-type]
    report("fast decode (all lines escaped)", n, t_dec_e)

    # The protobuf reference path, on a subset (it is slow) and extrapolated per sample.
    m = min(n, 200_000)
    ys = year_start(YEAR)
    samples = [
        Sample(ys + int(s), int(ns), float(v))
        for s, ns, v in zip(soy[:m].tolist(), nanos[:m].tolist(), vals[:m].tolist(), strict=True)
    ]
    t_ref, ref = best_of(1, lambda: b"".join(sample_line(PTYPE, YEAR, s) for s in samples))
    report(f"protobuf encode ({m:,})", m, t_ref)
    assert ref == encoded[: len(ref)], "fast encode is not byte-identical to protobuf"
    lines = ref.split(b"\n")[:-1]  # type: ignore[union-attr]
    t_ref_d, _ = best_of(1, lambda: [decode_line(PTYPE, YEAR, ln) for ln in lines])
    report(f"protobuf decode ({m:,})", m, t_ref_d)


if __name__ == "__main__":
    main()
