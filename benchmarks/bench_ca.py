"""Monitor throughput of pvarchiver.ca against a real C IOC (epicscorelibs RSRV).

N calc records counting at 100 Hz ('.01 second' scan, via a copied dbd with an
extra menuScan choice), one DBR_TIME_DOUBLE monitor each, callback = counter.
Reports events/s received and the client's CPU time per event (process CPU of
this Python process only; the IOC is a separate process and reported apart).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_ca.py --pvs 1000 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.ioc import IOC, counter_db

from pvarchiver.ca import CAClient

CLK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    """utime + stime of another process, in seconds (for the IOC's share)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK


def make_db(n: int, scan: str) -> str:
    return counter_db("B:C", n, scan, 'field(MDEL, "-1") ')


async def measure(ioc: IOC, n: int, warmup: float, seconds: float) -> dict[str, float]:
    count = 0

    def cb(secs: int, nanos: int, sev: int, status: int, value: float) -> None:
        nonlocal count
        count += 1

    async with CAClient(ioc.client_config()) as ca:
        t0 = time.monotonic()
        chans = [ca.create_channel(f"B:C{i:05d}") for i in range(n)]
        for ch in chans:
            await ca.wait_connected(ch, 60)
        t_conn = time.monotonic() - t0
        search = ca.search_stats
        for ch in chans:
            ca.subscribe(ch, cb)
        await asyncio.sleep(warmup)
        assert ioc.proc is not None
        c0, w0, p0, i0 = count, time.monotonic(), time.process_time(), proc_cpu(ioc.proc.pid)
        await asyncio.sleep(seconds)
        c1, w1, p1, i1 = count, time.monotonic(), time.process_time(), proc_cpu(ioc.proc.pid)
        offs = ca.flow_control_offs
    events = c1 - c0
    wall = w1 - w0
    return {
        "connect_s": t_conn,
        "datagrams": search.datagrams,
        "flow_offs": offs,
        "events": events,
        "events_per_s": events / wall,
        "client_cpu_pct": 100 * (p1 - p0) / wall,
        "client_us_per_event": 1e6 * (p1 - p0) / max(events, 1),
        "ioc_cpu_pct": 100 * (i1 - i0) / wall,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pvs", type=int, default=1000)
    ap.add_argument("--scan", default=".01 second", help="record SCAN ('.01 second' = 100 Hz)")
    ap.add_argument("--warmup", type=float, default=2.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        ioc = IOC(make_db(args.pvs, args.scan), Path(tmp), fast_scan=True)
        ioc.start(timeout=120)
        try:
            res = asyncio.run(measure(ioc, args.pvs, args.warmup, args.seconds))
        finally:
            ioc.kill()
    print(f"PVs {args.pvs}, SCAN '{args.scan}', {args.seconds:.0f} s window")
    print(f"  connect all          {res['connect_s']:.2f} s")
    print(f"  search datagrams     {res['datagrams']:,} for {args.pvs:,} names")
    print(f"  received             {res['events_per_s']:,.0f} events/s ({res['events']:,})")
    print(f"  client CPU           {res['client_cpu_pct']:.1f} %")
    print(f"  client CPU per event {res['client_us_per_event']:.2f} us")
    print(f"  IOC CPU              {res['ioc_cpu_pct']:.1f} %")
    print(f"  EVENTS_OFF sent      {res['flow_offs']}")


if __name__ == "__main__":
    main()
