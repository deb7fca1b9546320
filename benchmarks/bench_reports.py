"""The reports, metrics and exportConfig with many PVs, through a real ``pvarchiver serve``.

Starts a softIoc with N ai records (SCAN 1 second), archives all of them in one POST, waits
until every PV is ``Being archived`` and the engine has written to the STS once, then times
each report call (``limit=100``, as the UI's "Top 100"), getApplianceMetrics,
getStorageMetrics and ``/metrics`` (the storage scan uncached: scan TTL 0, the worst case),
and exportConfig of all N typeinfos.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_reports.py --pvs 10000

Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.http_server import running_server
from tests.ioc import IOC

REPORTS = [
    "getEventRateReport",
    "getStorageRateReport",
    "getRecentlyAddedPVs",
    "getRecentlyModifiedPVs",
    "getLostConnectionsReport",
    "getSilentPVsReport",
    "getPVsByStorageConsumed",
    "getPVsByDroppedEventsTimestamp",
    "getPVsByDroppedEventsBuffer",
    "getPVsByDroppedEventsTypeChange",
    "getApplianceMetrics",
    "getStorageMetrics",
]


def timed(client: httpx.Client, url: str, **params: str) -> tuple[float, int]:
    t0 = time.perf_counter()
    r = client.get(url, params=params)
    r.raise_for_status()
    return time.perf_counter() - t0, len(r.content)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pvs", type=int, default=10000)
    ap.add_argument("--window", type=float, default=3.0)
    args = ap.parse_args()
    n = args.pvs
    names = [f"BR:{i:05d}" for i in range(n)]
    db = "".join(f'record(ai, "{pv}") {{ field(SCAN, "1 second") }}\n' for pv in names)
    with tempfile.TemporaryDirectory() as tmp, IOC(db, Path(tmp) / "ioc") as ioc:
        env = {
            "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ioc.port}",
            "EPICS_CA_AUTO_ADDR_LIST": "NO",
            "EPICS_CA_SERVER_PORT": str(ioc.port),
            "EPICS_CA_REPEATER_PORT": str(ioc.repeater_port),
            "PVARCHIVER_INITIAL_SAMPLING_SECONDS": str(args.window),
            "PVARCHIVER_STORAGE_SCAN_SECONDS": "0",
        }
        root = Path(tmp) / "storage"
        with running_server(root, env) as base, httpx.Client(timeout=300) as c:
            c.post(f"{base}/mgmt/bpl/archivePV", json=[{"pv": p} for p in names])
            t0 = time.monotonic()
            while True:
                rows = c.post(f"{base}/mgmt/bpl/getPVStatus", json=names).json()
                if all(r["status"] == "Being archived" for r in rows):
                    break
                time.sleep(1)
            print(f"{n} PVs Being archived after {time.monotonic() - t0:.1f} s")
            while len(list((root / "sts").rglob("*.pb"))) < n:
                time.sleep(1)
            print(f"all {n} PVs have STS files after {time.monotonic() - t0:.1f} s")
            for action in REPORTS:
                params = {} if action.endswith("Metrics") else {"limit": "100"}
                secs, size = timed(c, f"{base}/mgmt/bpl/{action}", **params)
                print(f"{action:34s} {secs * 1000:8.1f} ms  {size:9d} bytes")
            secs, size = timed(c, f"{base}/metrics")
            print(f"{'/metrics':34s} {secs * 1000:8.1f} ms  {size:9d} bytes")
            secs, size = timed(c, f"{base}/mgmt/bpl/exportConfig")
            print(f"{'exportConfig':34s} {secs * 1000:8.1f} ms  {size:9d} bytes")


if __name__ == "__main__":
    main()
