"""Archiving throughput, socket to PB bytes on disk, with a real C IOC.

N calc records at 100 Hz (or any SCAN), archived by ``CAArchiver`` (MONITOR, DBE_LOG|DBE_ALARM,
no archive-field channels), written to an STS every ``--write`` seconds. Reports archived
events/s, CPU µs per archived event for this process (CA receive + engine + encoding + disk
write), dropped events, and memory per PV.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_engine.py --pvs 1000 --seconds 20

Targets (issue #3): <= 5 µs CPU per archived event, >= 200,000 events/s on one core, zero
drops, <= 5 KB per scalar PV at 1 Hz. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ca import make_db, proc_cpu
from tests.ioc import IOC

from pvarchiver.ca import CAClient
from pvarchiver.engine.channels import CAArchiver
from pvarchiver.engine.writer import Engine
from pvarchiver.storage import PlainPBStore, parse_store_url


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


async def measure(ioc: IOC, n: int, root: Path, seconds: float, write: float) -> dict[str, float]:
    sts = PlainPBStore(
        parse_store_url(
            f"pb://localhost?name=STS&rootFolder={root}&partitionGranularity=PARTITION_HOUR"
        )
    )
    engine = Engine(sts, seconds_to_buffer=write)
    rss0 = rss_kib()
    async with CAClient(ioc.client_config()) as ca:
        arch = CAArchiver(engine, ca)
        t0 = time.monotonic()
        for i in range(n):
            arch.archive(f"B:C{i:05d}", fields=())
        while len(engine.pvs) < n or not all(p.metrics.connected for p in engine.pvs.values()):
            await asyncio.sleep(0.05)
        t_conn = time.monotonic() - t0
        stop = asyncio.Event()
        writer = asyncio.create_task(engine.run(stop))
        await asyncio.sleep(2.0)
        # warm-up: the first write creates the files and reads each PV's last stored sample
        # (a one-time folder listing per PV); measure the steady state after it
        t_first = time.monotonic()
        await asyncio.to_thread(engine.write_all)
        first_write_s = time.monotonic() - t_first
        assert ioc.proc is not None
        stored0 = sum(p.metrics.samples_written for p in engine.pvs.values())
        stored0 += sum(len(p.buffer) for p in engine.pvs.values())
        w0, c0, i0 = time.monotonic(), time.process_time(), proc_cpu(ioc.proc.pid)
        await asyncio.sleep(seconds)
        stop.set()
        await writer
        w1, c1, i1 = time.monotonic(), time.process_time(), proc_cpu(ioc.proc.pid)
        rss1 = rss_kib()
    written = sum(p.metrics.samples_written for p in engine.pvs.values()) - stored0
    drops = sum(sum(p.metrics.drops.values()) for p in engine.pvs.values())
    wall = w1 - w0
    return {
        "connect_s": t_conn,
        "events_per_s": written / wall,
        "us_per_event": 1e6 * (c1 - c0) / max(written, 1),
        "cpu_pct": 100 * (c1 - c0) / wall,
        "ioc_cpu_pct": 100 * (i1 - i0) / wall,
        "drops": drops,
        "kib_per_pv": (rss1 - rss0) / n,
        "written": written,
        "first_write_s": first_write_s,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pvs", type=int, default=1000)
    ap.add_argument("--scan", default=".01 second")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--write", type=float, default=10.0, help="secondsToBuffer")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ioc = IOC(make_db(args.pvs, args.scan), Path(tmp) / "ioc", fast_scan=True)
        ioc.start(timeout=120)
        try:
            res = asyncio.run(measure(ioc, args.pvs, Path(tmp) / "sts", args.seconds, args.write))
        finally:
            ioc.kill()
    print(f"PVs {args.pvs}, SCAN '{args.scan}', {args.seconds:.0f} s, write every {args.write} s")
    print(f"  connect all                {res['connect_s']:.2f} s")
    print(f"  first write (files made)   {res['first_write_s']:.2f} s")
    print(f"  archived (on disk)         {res['events_per_s']:,.0f} events/s ({res['written']:,})")
    print(f"  CPU per archived event     {res['us_per_event']:.2f} us (target <= 5)")
    print(f"  archiver CPU               {res['cpu_pct']:.1f} % of one core")
    print(f"  IOC CPU                    {res['ioc_cpu_pct']:.1f} %")
    print(f"  dropped events             {res['drops']:,.0f}")
    print(f"  RSS growth per PV          {res['kib_per_pv']:.1f} KiB (includes buffers)")
    print(
        f"  max RSS                    {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss:,} KiB"
    )


if __name__ == "__main__":
    main()
