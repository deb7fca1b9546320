"""Storage benchmark: PlainPB append, read/decode and time search, ScalarDouble on one core.

    .venv/bin/python benchmarks/bench_storage.py [--samples N] [--year-file] [--dir DIR]

Targets (issue #2, one core of the 2-core CI machine): append >= 2,000,000 samples/s to a
partition (batch API, bytes on disk), read/decode >= 3,000,000 samples/s, find a one-minute
window in a one-year file of 1 Hz data in < 5 ms, about 21 bytes/sample like the Java AA.
Numbers are printed, never asserted: machines are noisy.
"""

from __future__ import annotations

import argparse
import calendar
import os
import random
import shutil
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage import PlainPBStore, parse_store_url
from pvarchiver.storage.batch import Batch, append_samples
from pvarchiver.storage.columns import read_columns

PV = "BENCH:SIG-1:AI"
D = PayloadType.SCALAR_DOUBLE
T0 = calendar.timegm((2025, 1, 1, 0, 0, 0))


def store(root: Path, gran: str = "PARTITION_YEAR") -> PlainPBStore:
    return PlainPBStore(
        parse_store_url(f"pb://localhost?name=B&rootFolder={root}&partitionGranularity={gran}")
    )


def data(n: int, start: int = T0, rate_hz: float = 1.0) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(1)
    t = start + np.arange(n) / rate_hz
    secs = np.floor(t).astype(np.int64)
    nanos = (
        rng.integers(0, 1_000_000_000, n)
        if rate_hz <= 1
        else np.round((t - secs) * 1e9).astype(np.int64)
    )
    vals = np.cumsum(rng.normal(0, 1, n))
    sev = np.where(rng.random(n) < 0.1, 1, 0).astype(np.int32)  # 10 % in alarm, as in env notes
    return secs, nanos, vals, sev, sev * 3


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def rate(n: int, seconds: float) -> str:
    return f"{n / seconds / 1e6:6.2f} M samples/s ({seconds * 1e9 / n:5.0f} ns/sample)"


def bench_append_read(root: Path, n: int) -> None:
    secs, nanos, vals, sev, stat = data(n)
    print(f"\n== append + read, {n:,} ScalarDouble samples, 1 Hz, one PARTITION_YEAR file ==")
    for batch in (1_000_000, 10_000):
        st = store(root / f"append{batch}")
        t = time.perf_counter()
        for i in range(0, n, batch):
            st.append(
                Batch.of_columns(
                    PV,
                    D,
                    secs[i : i + batch],
                    nanos[i : i + batch],
                    vals[i : i + batch],
                    sev[i : i + batch],
                    stat[i : i + batch],
                )
            ).one()
        dt = time.perf_counter() - t
        path = st.files_for_pv(PV)[0].path
        size = path.stat().st_size
        print(f"append (columns), batches of {batch:>9,}: {rate(n, dt)}  target >= 2.00 M/s")
    print(f"bytes/sample on disk: {size / n:.2f} (the AA documents ~21 for a double)")

    m = min(n, 200_000)
    st = store(root / "generic")
    samples = [
        Sample(int(secs[i]), int(nanos[i]), float(vals[i]), int(sev[i]), int(stat[i]))
        for i in range(m)
    ]
    t = time.perf_counter()
    append_samples(st, PV, D, samples)
    print(f"append (Sample objects, protobuf upb), {m:,}: {rate(m, time.perf_counter() - t)}")

    st = store(root / "append1000000")
    for label, cold in (("warm page cache", False), ("cold page cache", True)):
        if cold:
            drop_cache(path)
        t = time.perf_counter()
        got = sum(len(b) for b in read_columns(st, PV, (0, 0), (2**40, 0)))
        dt = time.perf_counter() - t
        assert got == n, (got, n)
        print(f"read_columns, whole file, {label}: {rate(n, dt)}  target >= 3.00 M/s")
    t = time.perf_counter()
    got = sum(1 for _ in st.read(PV, (0, 0), (int(secs[m - 1]), 0)))
    print(f"read (Sample objects, protobuf upb), {got:,}: {rate(got, time.perf_counter() - t)}")


def bench_search(root: Path, full_year: bool) -> None:
    st = store(root / "year")
    n = 365 * 86400 if full_year else 30 * 86400
    label = "one year" if full_year else "30 days (use --year-file for a full year)"
    print(f"\n== time search in {label} of 1 Hz data ({n:,} samples) ==")
    t = time.perf_counter()
    for i in range(0, n, 2_000_000):
        secs, nanos, vals, sev, stat = data(min(2_000_000, n - i), T0 + i)
        st.append(Batch.of_columns(PV, D, secs, nanos, vals, sev, stat)).one()
    path = st.files_for_pv(PV)[0].path
    print(f"wrote {path.stat().st_size / 1e6:.0f} MB in {time.perf_counter() - t:.1f} s")
    rng = random.Random(2)
    for label, cold in (("warm", False), ("cold page cache", True)):
        times = []
        for _ in range(50 if cold else 200):
            if cold:
                drop_cache(path)
            a = T0 + rng.randrange(n - 60)
            t = time.perf_counter()
            got = list(st.read(PV, (a, 0), (a + 60, 0)))
            times.append(time.perf_counter() - t)
            assert 59 <= len(got) <= 62, len(got)
        times.sort()
        print(
            f"one-minute query ({label}): median {statistics.median(times) * 1e3:.2f} ms, "
            f"p95 {times[int(len(times) * 0.95)] * 1e3:.2f} ms  target < 5 ms"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--samples", type=int, default=5_000_000)
    ap.add_argument(
        "--year-file",
        action="store_true",
        help="search a full year of 1 Hz data (660 MB file, ~1 min to write)",
    )
    ap.add_argument("--dir", help="where to write (default: a temporary folder)")
    args = ap.parse_args()
    root = Path(args.dir or tempfile.mkdtemp(prefix="pvarchiver-bench-"))
    print(f"writing under {root}; numpy {np.__version__}; one process, one thread")
    try:
        bench_append_read(root, args.samples)
        bench_search(root, args.year_file)
    finally:
        if not args.dir:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
