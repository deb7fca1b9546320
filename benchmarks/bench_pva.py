"""Archiving PVA PVs through ``pvarchiver serve``: N calc records of a pvxs QSRV IOC, requested
with archivePV ``pva://`` over HTTP, measured from outside the server process.

Reported, for the measured window after every PV is "Being archived" and a warm-up:
events/s stored by the engine (``/metrics``), CPU µs per archived event of the serve process
(``/proc/<pid>/stat``: PVA receive + decode + engine + PlainPB encoding + disk writes +
journal), the engine's drop counters, lost updates (gaps in the stored counter values of
a sample of PVs, read back with getData.json), RSS per PV (serve's VmRSS after archiving
minus before, over N) and the IOC's CPU; then p4p's raw client in this process against the
same IOC for comparison (updates/s, gaps, µs CPU per update).

    .venv/bin/python benchmarks/bench_pva.py                 # 1,000 PVs x 10 Hz
    .venv/bin/python benchmarks/bench_pva.py --hz 100        # 1,000 PVs x 100 Hz

Target (issue 17): <= 5 µs CPU per archived event, 0 drops.
"""

from __future__ import annotations

import argparse
import itertools
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_pva_client import db, run_p4p
from tests.http_server import running_server
from tests.pva_peers import QsrvIOC

TICK = 100


def proc_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process, from /proc."""
    parts = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


def rss(pid: int) -> int:
    """Resident bytes of a process."""
    m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text())
    return int(m.group(1)) * 1024 if m else 0


def metrics(base: str) -> dict[str, float]:
    """The engine's counters from ``/metrics`` (drops summed over reasons)."""
    out: dict[str, float] = {"dropped": 0.0}
    for line in httpx.get(f"{base}/metrics", timeout=60).text.splitlines():
        if line.startswith("pvarchiver_events_stored_total "):
            out["stored"] = float(line.split()[1])
        elif line.startswith("pvarchiver_events_received_total "):
            out["received"] = float(line.split()[1])
        elif line.startswith("pvarchiver_events_dropped_total{"):
            out["dropped"] += float(line.rsplit(" ", 1)[1])
    return out


def gaps(base: str, names: list[str], start: float, end: float) -> tuple[int, int]:
    """(samples, missing counter steps) in the stored data of ``names`` over [start, end]."""
    iso = "%Y-%m-%dT%H:%M:%S.000Z"
    n = missing = 0
    for name in names:
        r = httpx.get(
            f"{base}/retrieval/data/getData.json",
            params={
                "pv": name,
                "from": time.strftime(iso, time.gmtime(start)),
                "to": time.strftime(iso, time.gmtime(end)),
            },
            timeout=60,
        )
        vals = [d["val"] for d in r.json()[0]["data"]] if r.json() else []
        n += len(vals)
        missing += sum(int(b - a - 1) for a, b in itertools.pairwise(vals) if b - a > 1)
    return n, missing


def wait_archived(base: str, names: list[str], timeout: float) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        rows = httpx.post(f"{base}/mgmt/bpl/getPVStatus", json=names, timeout=120).json()
        if all(r["status"] == "Being archived" for r in rows):
            return time.monotonic() - t0
        time.sleep(1.0)
    raise SystemExit("not every PV reached Being archived")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pvs", type=int, default=1000)
    ap.add_argument("--hz", type=int, choices=(10, 100), default=10)
    ap.add_argument("--secs", type=float, default=20.0)
    ap.add_argument("--warm", type=float, default=5.0)
    ap.add_argument("--skip-p4p", action="store_true")
    args = ap.parse_args()
    scan = ".1 second" if args.hz == 10 else ".01 second"
    names = [f"BP:{i:05d}" for i in range(args.pvs)]
    with tempfile.TemporaryDirectory() as tmp:
        ioc = QsrvIOC(db(args.pvs, scan), Path(tmp) / "ioc", fast_scan=args.hz == 100)
        ioc.start()
        try:
            env = {
                "EPICS_PVA_ADDR_LIST": f"127.0.0.1:{ioc.bport}",
                "EPICS_PVA_AUTO_ADDR_LIST": "NO",
                "PVARCHIVER_INITIAL_SAMPLING_SECONDS": "2",
            }
            with running_server(Path(tmp) / "storage", env) as base:
                pid = base.pid
                rss0 = rss(pid)
                r = httpx.post(
                    f"{base}/mgmt/bpl/archivePV",
                    json=[{"pv": f"pva://{n}"} for n in names],
                    timeout=120,
                )
                r.raise_for_status()
                took = wait_archived(base, names, 300)
                time.sleep(args.warm)
                assert ioc.proc is not None
                m0, c0, i0 = metrics(base), proc_cpu(pid), proc_cpu(ioc.proc.pid)
                t0 = time.time()
                time.sleep(args.secs)
                m1, c1, i1 = metrics(base), proc_cpu(pid), proc_cpu(ioc.proc.pid)
                t1 = time.time()
                rss1 = rss(pid)
                time.sleep(2.0)  # the write cycle after the window
                sample = names[:: max(1, args.pvs // 20)]
                n_read, missing = gaps(base, sample, t0, t1)
            p4p = None if args.skip_p4p else run_p4p(args.pvs, ioc.bport, 2.0, args.secs / 2)
        finally:
            ioc.kill()
    wall = t1 - t0
    stored = m1["stored"] - m0["stored"]
    sent = args.pvs * args.hz
    print(f"{args.pvs} PVs x {args.hz} Hz ({sent} updates/s asked of the IOC), {wall:.1f} s")
    print(f"all Being archived {took:.1f} s after archivePV")
    print(f"pvarchiver serve: {stored / wall:10.0f} events/s stored")
    print(f"  CPU per archived event: {(c1 - c0) / max(stored, 1) * 1e6:6.2f} µs (target <= 5)")
    print(f"  cores used: {(c1 - c0) / wall:.2f}; IOC cores: {(i1 - i0) / wall:.2f}")
    print(f"  engine drops: {m1['dropped'] - m0['dropped']:.0f}")
    print(f"  lost updates in {len(sample)} PVs' stored data: {missing} of {n_read + missing}")
    print(f"  RSS per PV: {(rss1 - rss0) / args.pvs:.0f} bytes")
    if p4p is not None:
        rate = p4p["updates"] / p4p["wall"]
        per = p4p["cpu"] / max(1, p4p["updates"]) * 1e6
        print(
            f"p4p raw client, same IOC: {rate:10.0f} updates/s, {p4p['drops']:.0f} lost, "
            f"{per:.1f} µs CPU/update (receive only, no storage)"
        )


if __name__ == "__main__":
    main()
