"""archivePV of many PVs in one POST against a real IOC, through a real ``pvarchiver serve``.

Starts a softIoc with N ai records (SCAN 1 second), a server process with the default policy
(so each ai PV gets its six archive fields, as on the AA), POSTs all N names to
``/mgmt/bpl/archivePV`` and polls ``getPVStatus`` (POST, all N) until every PV is
``Being archived``. Prints: time of the POST, time until all are archived, time of one
getPVStatus for N PVs, and the server's CPU seconds.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_mgmt.py --pvs 10000 --window 3

Target (issue #5): 10,000 PVs all Being archived within 30 s; getPVStatus of 10,000 < 1 s.
Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.http_server import running_server
from tests.ioc import IOC


def make_db(n: int, rtyp: str) -> str:
    return "".join(
        f'record({rtyp}, "MB:{i:05d}") {{ field(SCAN, "1 second") }}\n' for i in range(n)
    )


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pvs", type=int, default=10000)
    ap.add_argument("--window", type=float, default=3.0, help="initial sampling seconds")
    ap.add_argument("--rtyp", default="ai", help="record type (ai: 6 archive fields per PV)")
    ap.add_argument("--timeout", type=float, default=180.0)
    args = ap.parse_args()
    names = [f"MB:{i:05d}" for i in range(args.pvs)]
    with tempfile.TemporaryDirectory() as tmp:
        tmpp = Path(tmp)
        with IOC(make_db(args.pvs, args.rtyp), tmpp / "ioc") as ioc:
            env = {
                "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ioc.port}",
                "EPICS_CA_AUTO_ADDR_LIST": "NO",
                "EPICS_CA_SERVER_PORT": str(ioc.port),
                "EPICS_CA_REPEATER_PORT": str(ioc.repeater_port),
                "PVARCHIVER_INITIAL_SAMPLING_SECONDS": str(args.window),
            }
            with running_server(tmpp / "storage", env) as base:
                url = base + "/mgmt/bpl/"
                cpu0 = cpu_seconds(base.pid)
                t0 = time.monotonic()
                r = httpx.post(url + "archivePV", json=[{"pv": n} for n in names], timeout=120)
                t_post = time.monotonic() - t0
                rows = r.json()
                submitted = sum(1 for x in rows if x["status"] == "Archive request submitted")
                print(f"POST archivePV {args.pvs} PVs: {t_post:.2f} s, {submitted} submitted")
                counts: dict[str, int] = {}
                t_status = 0.0
                while time.monotonic() - t0 < args.timeout:
                    ts = time.monotonic()
                    st = httpx.post(url + "getPVStatus", json=names, timeout=120).json()
                    t_status = time.monotonic() - ts
                    counts = {}
                    for row in st:
                        counts[row["status"]] = counts.get(row["status"], 0) + 1
                    if counts.get("Being archived", 0) == args.pvs:
                        break
                    time.sleep(1.0)  # each poll costs the server a getPVStatus of all N
                t_all = time.monotonic() - t0
                print(f"all Being archived after {t_all:.1f} s (window {args.window} s): {counts}")
                print(f"getPVStatus of {args.pvs} PVs: {t_status:.3f} s")
                ts = time.monotonic()
                httpx.get(url + "getAllPVs", params={"limit": "-1"}, timeout=60)
                print(f"getAllPVs limit=-1: {time.monotonic() - ts:.3f} s")
                print(f"server CPU: {cpu_seconds(base.pid) - cpu0:.1f} s; load {os.getloadavg()}")
                for log in tmpp.glob("server-*.log"):
                    for line in log.read_text().splitlines():
                        if "archive workflow" in line:
                            print("  server:", line)


if __name__ == "__main__":
    main()
