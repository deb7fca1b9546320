"""Retrieval load while archiving, on the product as users run it (issue 15, item 7).

A real IOC serves N calc records counting at 100 Hz; a real ``pvarchiver serve`` archives
them. Its LTS already holds a year of one PV at one sample a minute (525,600 samples, written
before the server starts). During the window, C concurrent clients pull that year as
``getData.raw`` over and over, while one more client asks ``getPVStatus`` for one PV every
50 ms. Printed: events received and dropped by the engine (from ``/metrics``), how many
samples were stored per PV against what the IOC produced, the retrieval throughput, the
getPVStatus latency percentiles and the server's CPU (from ``/proc``, outside the process).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_load.py --pvs 1000 --clients 20

Targets: 0 dropped events, getPVStatus p99 < 100 ms. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import calendar
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ca import proc_cpu
from tests.http_server import running_server
from tests.ioc import IOC, counter_db

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage import default_store_urls, open_store, parse_store_url
from pvarchiver.storage.batch import append_samples

YEAR_PV = "LOAD:YEAR"


def write_year(root: Path, year: int) -> int:
    lts = open_store(parse_store_url(default_store_urls(root)[2]))
    t0 = calendar.timegm((year, 1, 1, 0, 0, 0))
    samples = [Sample(t0 + 60 * i, 0, float(i)) for i in range(525_600)]
    append_samples(lts, YEAR_PV, PayloadType.SCALAR_DOUBLE, samples)
    return len(samples)


def metric(text: str, name: str) -> float:
    total = 0.0
    for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, flags=re.M):
        total += float(m.group(1))
    return total


async def pull_year(base: str, year: int, stop: float, out: list[tuple[float, int]]) -> None:
    params = {"pv": YEAR_PV, "from": f"{year}-01-01T00:00:00Z", "to": f"{year}-12-31T23:59:59Z"}
    async with httpx.AsyncClient(timeout=120) as c:
        while time.monotonic() < stop:
            t = time.monotonic()
            n = 0
            async with c.stream("GET", base + "/retrieval/data/getData.raw", params=params) as r:
                async for chunk in r.aiter_bytes():
                    n += len(chunk)
            out.append((time.monotonic() - t, n))


async def poll_status(base: str, pv: str, stop: float, lat: list[float]) -> None:
    async with httpx.AsyncClient(timeout=30) as c:
        while time.monotonic() < stop:
            t = time.monotonic()
            r = await c.get(base + "/mgmt/bpl/getPVStatus", params={"pv": pv})
            lat.append(time.monotonic() - t)
            assert r.status_code == 200
            await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - t)))


async def window(base: str, clients: int, seconds: float, year: int) -> dict[str, object]:
    stop = time.monotonic() + seconds
    pulls: list[tuple[float, int]] = []
    lat: list[float] = []
    await asyncio.gather(
        *(pull_year(base, year, stop, pulls) for _ in range(clients)),
        poll_status(base, "LOAD:C00000", stop, lat),
    )
    return {"pulls": pulls, "lat": lat}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pvs", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=30.0)
    args = ap.parse_args()
    year = time.gmtime().tm_year - 1
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "storage"
        print(f"writing a year of {YEAR_PV} into the LTS ...", flush=True)
        write_year(root, year)
        ioc = IOC(counter_db("LOAD:C", args.pvs, ".01 second"), Path(tmp) / "ioc", fast_scan=True)
        ioc.start(timeout=120)
        try:
            env = {
                "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ioc.port}",
                "EPICS_CA_SERVER_PORT": str(ioc.port),
                "EPICS_CA_REPEATER_PORT": str(ioc.repeater_port),
                "PVARCHIVER_INITIAL_SAMPLING_SECONDS": "1",
            }
            with running_server(root, env) as base:
                names = [f"LOAD:C{i:05d}" for i in range(args.pvs)]
                httpx.post(base + "/mgmt/bpl/archivePV", json=[{"pv": n} for n in names])
                deadline = time.monotonic() + 120
                while time.monotonic() < deadline:
                    rows = httpx.post(base + "/mgmt/bpl/getPVStatus", json=names).json()
                    if all(r["status"] == "Being archived" for r in rows):
                        break
                    time.sleep(1)
                time.sleep(12)  # past the first write cycle
                m0 = httpx.get(base + "/metrics").text
                cpu0, w0 = proc_cpu(base.pid), time.monotonic()
                res = asyncio.run(window(base, args.clients, args.seconds, year))
                cpu1, w1 = proc_cpu(base.pid), time.monotonic()
                m1 = httpx.get(base + "/metrics").text
        finally:
            ioc.kill()
    received = metric(m1, "pvarchiver_events_received_total") - metric(
        m0, "pvarchiver_events_received_total"
    )
    dropped = metric(m1, "pvarchiver_events_dropped_total") - metric(
        m0, "pvarchiver_events_dropped_total"
    )
    wall = w1 - w0
    pulls: list[tuple[float, int]] = res["pulls"]  # type: ignore[assignment]
    lat = sorted(res["lat"])  # type: ignore[arg-type]
    mb = sum(n for _, n in pulls) / 1e6
    print(f"{args.pvs} PVs x 100 Hz archived, {args.clients} clients pulling a year, {wall:.0f} s")
    print(f"  events received            {received / wall:,.0f}/s ({args.pvs * 100:,}/s sent)")
    print(f"  events dropped             {dropped:,.0f} (target 0)")
    print(
        f"  year pulls                 {len(pulls)} done, {mb / wall:.1f} MB/s, "
        f"median {statistics.median(t for t, _ in pulls) if pulls else 0:.2f} s each"
    )
    if lat:
        p = [lat[min(len(lat) - 1, int(q * len(lat)))] * 1e3 for q in (0.5, 0.9, 0.99)]
        print(
            f"  getPVStatus latency        p50 {p[0]:.1f} ms, p90 {p[1]:.1f} ms, "
            f"p99 {p[2]:.1f} ms, max {lat[-1] * 1e3:.1f} ms ({len(lat)} calls; target p99 < 100)"
        )
    print(f"  server CPU                 {100 * (cpu1 - cpu0) / wall:.0f} % of one core")


if __name__ == "__main__":
    main()
