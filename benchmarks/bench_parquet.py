"""Parquet benchmark (issue 19): bytes per sample, getData.raw from Parquet against PlainPB,
and the ETL conversion rate, on one core.

    .venv/bin/python benchmarks/bench_parquet.py [--days 365] [--wave-seconds 600] [--dir DIR]

Data: a 1 Hz double (``--days`` of it, a year by default, realistic values: a slow sine with
noise, quantised as an ADC gives them) and a 10 Hz 1,000-element double waveform for
``--wave-seconds`` (a year of it would be 2.5 TB of PlainPB; its bytes per sample do not
depend on the length, so a shorter span is measured and scaled). Targets: at most 4 bytes per
sample for the 1 Hz double with ZSTD; a full-year getData.raw from Parquet no slower than from
PlainPB, a one-day one at most 2x; ETL PlainPB -> Parquet at least 1 M samples/s. getData.raw
is the retrieval path in process (merge + the .raw encoder), without HTTP. Numbers are
printed, never asserted.
"""

from __future__ import annotations

import argparse
import calendar
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.retrieval.formats.raw import render_raw
from pvarchiver.retrieval.model import PVStream
from pvarchiver.retrieval.sources import merged_chunks
from pvarchiver.storage.batch import Batch, append_samples
from pvarchiver.storage.etl import run_etl
from pvarchiver.storage.parquet_store import ParquetStore
from pvarchiver.storage.store import PlainPBStore
from pvarchiver.storage.url import parse_store_url

PV = "BENCH:PQ:AI"
WPV = "BENCH:PQ:WF"
T0 = calendar.timegm((2025, 1, 1, 0, 0, 0))
DAY = 86400


def pb(root: Path, gran: str) -> PlainPBStore:
    return PlainPBStore(
        parse_store_url(f"pb://localhost?name=P&rootFolder={root}&partitionGranularity={gran}")
    )


def pqs(root: Path, gran: str = "PARTITION_YEAR") -> ParquetStore:
    return ParquetStore(
        parse_store_url(
            f"parquet://localhost?name=Q&rootFolder={root}&partitionGranularity={gran}&compress=ZSTD"
        )
    )


def size(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file())


def raw_bytes(
    store: PlainPBStore | ParquetStore, pv: str, start: int, end: int
) -> tuple[float, int]:
    t = time.perf_counter()
    chunks = merged_chunks([store], pv, (start, 0), (end, 0))
    n = sum(
        len(piece) for piece in render_raw([PVStream(pv, {}, chunks, PayloadType.SCALAR_DOUBLE)])
    )
    return time.perf_counter() - t, n


def best(f: object, repeat: int = 3) -> tuple[float, int]:
    runs = [f() for _ in range(repeat)]  # type: ignore[operator]
    return min(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=365)
    ap.add_argument("--wave-seconds", type=int, default=600)
    ap.add_argument("--dir", type=Path, default=None)
    ap.add_argument("--noisy", action="store_true", help="random µs jitter and value noise")
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_parquet_", dir=a.dir))
    try:
        rng = np.random.default_rng(19)
        # ---------------------------------------------------------------- 1 Hz double
        src = pb(work / "pb_day", "PARTITION_DAY")
        n_total = 0
        for d in range(a.days):
            secs = T0 + d * DAY + np.arange(DAY, dtype=np.int64)
            if a.noisy:  # µs jitter in every time stamp, noise in every value
                nanos = rng.integers(0, 1_000_000, DAY)
                vals = np.round(10 * np.sin(secs / 3600.0) + rng.normal(0, 0.01, DAY), 4)
            else:  # a 1 Hz scan: the IOC's fixed phase; a slow signal at 1 mV resolution
                nanos = np.full(DAY, 123_456_789, dtype=np.int64)
                vals = np.round(10 * np.sin(secs / 3600.0), 3)
            src.append(Batch.of_columns(PV, PayloadType.SCALAR_DOUBLE, secs, nanos, vals)).one()
            n_total += DAY
        pb_bytes = size(work / "pb_day")
        print(f"1 Hz double, {a.days} days, {n_total:,} samples")
        print(f"  PlainPB:            {pb_bytes / n_total:6.2f} bytes/sample")
        # ETL: daily PlainPB -> yearly Parquet (ZSTD), the whole span in one pass
        lts = pqs(work / "pq_year")
        t = time.perf_counter()
        s = run_etl(src, lts, now=T0 + 2 * 366 * DAY)
        dt = time.perf_counter() - t
        assert s.errors == [] and s.samples_moved == n_total, s
        print(f"  ETL PlainPB -> Parquet: {n_total / dt / 1e6:5.2f} M samples/s ({dt:.1f} s)")
        pq_bytes = size(work / "pq_year")
        print(f"  Parquet ZSTD:       {pq_bytes / n_total:6.2f} bytes/sample  (target <= 4)")
        # the same data as one yearly PlainPB file, for retrieval (ETL Parquet -> PlainPB
        # of a copy, so the Parquet files stay)
        shutil.copytree(work / "pq_year", work / "pq_copy")
        ypb = pb(work / "pb_year", "PARTITION_YEAR")
        t = time.perf_counter()
        s2 = run_etl(pqs(work / "pq_copy"), ypb, now=T0, everything=True)
        dt = time.perf_counter() - t
        assert s2.errors == [] and s2.samples_moved == n_total, s2
        print(f"  ETL Parquet -> PlainPB: {n_total / dt / 1e6:5.2f} M samples/s ({dt:.1f} s)")
        lts = pqs(work / "pq_year")
        mid = T0 + (a.days // 2) * DAY
        for label, start, end in [
            ("one day", mid, mid + DAY),
            ("whole span", T0, T0 + a.days * DAY),
        ]:
            tp, npb = best(lambda s=start, e=end: raw_bytes(ypb, PV, s, e))
            tq, nq = best(lambda s=start, e=end: raw_bytes(lts, PV, s, e))
            assert npb == nq, (npb, nq)
            goal = "<= 2x" if label == "one day" else "<= 1x"
            print(
                f"  getData.raw {label:10s}: PlainPB {tp * 1e3:8.1f} ms, "
                f"Parquet {tq * 1e3:8.1f} ms ({tq / tp:4.2f}x; target {goal})"
            )
        # ---------------------------------------------------------------- waveform
        n = a.wave_seconds * 10
        wsrc = pb(work / "wpb", "PARTITION_HOUR")
        base = np.sin(np.linspace(0, 20, 1000))
        t0 = T0
        samples_done = 0
        batch = []
        for k in range(n):
            v = np.round(base * (1 + 0.001 * k) + rng.normal(0, 0.001, 1000), 4)
            batch.append(Sample(t0 + k // 10, (k % 10) * 100_000_000, v.tolist()))
            if len(batch) == 1000:
                append_samples(wsrc, WPV, PayloadType.WAVEFORM_DOUBLE, batch)
                samples_done += len(batch)
                batch = []
        if batch:
            append_samples(wsrc, WPV, PayloadType.WAVEFORM_DOUBLE, batch)
            samples_done += len(batch)
        wpb_bytes = size(work / "wpb")
        wlts = pqs(work / "wpq", "PARTITION_DAY")
        t = time.perf_counter()
        ws = run_etl(wsrc, wlts, now=T0 + 10 * DAY)
        dt = time.perf_counter() - t
        assert ws.errors == [], ws
        wpq_bytes = size(work / "wpq")
        year = 365 * DAY * 10
        print(f"10 Hz 1,000-element double waveform, {samples_done:,} samples ({a.wave_seconds} s)")
        for label, nbytes in (("PlainPB:     ", wpb_bytes), ("Parquet ZSTD:", wpq_bytes)):
            per = nbytes / samples_done
            print(f"  {label} {per:9.1f} bytes/sample, a year {per * year / 1e12:6.2f} TB")
        rate = samples_done / dt
        print(f"  ETL PlainPB -> Parquet: {rate:,.0f} waveforms/s ({rate / 1e3:.1f} M elements/s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
