"""Retrieval benchmark over real HTTP: one PV, 1 Hz for a year, spread over STS/MTS/LTS.

    .venv/bin/python benchmarks/bench_retrieval.py [--days 365] [--dir DIR]

Targets (issue #4): one-day .raw <= 50 ms, one-day .json <= 200 ms, full-year .raw >= 5 M
samples/s, full-year .json >= 1 M samples/s, mean_3600 over a year <= 3 s. The AA's own design
goal was one day of raw data in <= 500 ms. Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import calendar
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.http_server import running_server

from pvarchiver.pb import PayloadType
from pvarchiver.storage import (
    PlainPBStore,
    default_store_urls,
    parse_store_url,
    run_etl,
)
from pvarchiver.storage.batch import Batch

PV = "BENCH:RET-1:AI"
T0 = calendar.timegm((2025, 1, 1, 0, 0, 0))


def iso(t: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(t))


def populate(root: Path, days: int) -> int:
    sts, mts, lts = (PlainPBStore(parse_store_url(u)) for u in default_store_urls(root))
    n = days * 86400
    rng = np.random.default_rng(3)
    for i in range(0, n, 2_000_000):
        m = min(2_000_000, n - i)
        secs = T0 + i + np.arange(m, dtype=np.int64)
        sts.append(
            Batch.of_columns(
                PV,
                PayloadType.SCALAR_DOUBLE,
                secs,
                rng.integers(0, 10**9, m),
                np.cumsum(rng.normal(0, 1, m)),
            )
        ).one()
    end = T0 + n
    run_etl(sts, mts, now=end)  # all but the last hour to MTS
    run_etl(mts, lts, now=end)  # all but the last two days to LTS
    return n


def timed(client: httpx.Client, url: str, params: dict[str, str]) -> tuple[float, int]:
    t = time.perf_counter()
    size = 0
    with client.stream("GET", url, params=params) as r:
        r.raise_for_status()
        for piece in r.iter_raw():
            size += len(piece)
    return time.perf_counter() - t, size


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--dir")
    args = ap.parse_args()
    tmp = Path(args.dir or tempfile.mkdtemp(prefix="pvarchiver-bench-ret-"))
    root = tmp / "storage"
    try:
        t = time.perf_counter()
        n = populate(root, args.days)
        print(f"{n:,} samples written over STS/MTS/LTS in {time.perf_counter() - t:.1f} s")
        with running_server(root) as base, httpx.Client(base_url=base, timeout=600) as client:
            url = "/retrieval/data/getData."
            end = T0 + n
            for fmt, target in (("raw", 0.050), ("json", 0.200)):
                times = []
                for k in range(20):
                    a = T0 + (k * 7919 % max(1, args.days - 1)) * 86400
                    dt, size = timed(
                        client, url + fmt, {"pv": PV, "from": iso(a), "to": iso(a + 86400)}
                    )
                    times.append(dt)
                print(
                    f"one day .{fmt}: median {statistics.median(times) * 1e3:.1f} ms, "
                    f"{size / 86400:.1f} bytes/sample (target <= {target * 1e3:.0f} ms)"
                )
            for fmt, target in (("raw", 5e6), ("json", 1e6), ("csv", None)):
                dt, size = timed(client, url + fmt, {"pv": PV, "from": iso(T0), "to": iso(end)})
                print(
                    f"{args.days} days .{fmt}: {n / dt / 1e6:.2f} M samples/s, "
                    f"{size / n:.1f} bytes/sample"
                    + (f" (target >= {target / 1e6:.0f} M/s)" if target else "")
                )
            dt, _ = timed(
                client, url + "json", {"pv": f"mean_3600({PV})", "from": iso(T0), "to": iso(end)}
            )
            print(f"mean_3600 over {args.days} days (.json): {dt:.2f} s (target <= 3 s)")
    finally:
        if not args.dir:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
