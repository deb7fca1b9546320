"""Facility scale on one appliance, measured as users run it (issue 21).

A real IOC serves ``--pvs`` calc records counting at 1 Hz (``--idle``: records that never
change); a real ``pvarchiver serve`` is driven only through its HTTP API and measured from
outside through ``/proc``. Printed, against the issue's targets:

* archivePV of all names in one POST until all are "Being archived" (target 60 s at 100k);
* CPU per archived event at 1 Hz, and of the idle appliance (target < 2 % of a core);
* RSS per PV (target 4 KiB with fields);
* getPVStatus of every PV in one POST (target 2 s at 100k);
* a restart: time until every PV is archived again (target 30 s at 100k) and until the
  UI's first page answers meanwhile (target 1 s).

    PYTHONPATH=src .venv/bin/python benchmarks/bench_scale.py --pvs 10000

Fields: ``--fields`` gives the records the default policy's archive fields (HIHI, ...), so
each PV has its field channels as in the AA's default. Prints numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ca import proc_cpu
from tests.http_server import running_server
from tests.ioc import IOC, counter_db

PREFIX = "SCALE:C"


def rss_kib(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]


def metric(text: str, name: str) -> float:
    return sum(
        float(m.group(1))
        for m in re.finditer(rf"^{name}(?:{{[^}}]*}})? ([0-9.e+]+)$", text, flags=re.M)
    )


def all_archived(base: str, names: list[str], timeout: float) -> float | None:
    """Seconds until getPVStatus says Being archived for all (None: not within timeout)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        rows = httpx.post(f"{base}/mgmt/bpl/getPVStatus", json=names, timeout=120).json()
        if all(r["status"] == "Being archived" for r in rows):
            return time.monotonic() - t0
        time.sleep(1.0)
    return None


def cpu_window(base: str, seconds: float) -> tuple[float, float]:
    """(share of one core, events received per second) over ``seconds``."""
    m0 = httpx.get(f"{base}/metrics", timeout=60).text
    c0, w0 = proc_cpu(base.pid), time.monotonic()  # type: ignore[attr-defined]
    time.sleep(seconds)
    c1, w1 = proc_cpu(base.pid), time.monotonic()  # type: ignore[attr-defined]
    m1 = httpx.get(f"{base}/metrics", timeout=60).text
    ev = metric(m1, "pvarchiver_events_received_total") - metric(
        m0, "pvarchiver_events_received_total"
    )
    return (c1 - c0) / (w1 - w0), ev / (w1 - w0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pvs", type=int, default=10_000)
    ap.add_argument("--seconds", type=float, default=40.0, help="each CPU window")
    ap.add_argument("--fields", action="store_true", help="records with archive fields")
    args = ap.parse_args()
    n = args.pvs
    names = [f"{PREFIX}{i:05d}" for i in range(n)]
    fields = 'field(HIHI, "10") field(HIGH, "5") field(LOW, "-5") field(LOLO, "-10") '
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "storage"
        db = counter_db(PREFIX, n, "1 second", fields if args.fields else "")
        idle_db = counter_db(PREFIX, n, "Passive", fields if args.fields else "")
        out: dict[str, str] = {}
        for phase, records in (("1 Hz", db), ("idle", idle_db)):
            ioc = IOC(records, Path(tmp) / f"ioc-{phase[:2]}")
            ioc.start(timeout=300)
            try:
                env = {
                    "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ioc.port}",
                    "EPICS_CA_SERVER_PORT": str(ioc.port),
                    "EPICS_CA_REPEATER_PORT": str(ioc.repeater_port),
                    "PVARCHIVER_INITIAL_SAMPLING_SECONDS": "2",
                }
                with running_server(root, env) as base:
                    if phase == "1 Hz":
                        t0 = time.monotonic()
                        httpx.post(
                            f"{base}/mgmt/bpl/archivePV",
                            json=[{"pv": x} for x in names],
                            timeout=600,
                        )
                        took = all_archived(base, names, 600)
                        out["archivePV to Being archived"] = (
                            f"{time.monotonic() - t0:.1f} s" if took is not None else "> 600 s"
                        )
                    else:
                        took = all_archived(base, names, 600)  # a restart: archived again
                        out["restart: all archived again"] = (
                            f"{took:.1f} s after ready" if took is not None else "> 600 s"
                        )
                    time.sleep(12)  # past the first write cycle
                    core, rate = cpu_window(base, args.seconds)
                    if phase == "1 Hz":
                        per = core / rate * 1e6 if rate else float("nan")
                        out["CPU at 1 Hz"] = (
                            f"{100 * core:.1f} % of a core, {rate:,.0f} events/s, "
                            f"{per:.2f} us/event (target 3)"
                        )
                        out["RSS per PV"] = f"{rss_kib(base.pid) * 1024 / n / 1024:.1f} KiB"
                        t0 = time.monotonic()
                        httpx.post(f"{base}/mgmt/bpl/getPVStatus", json=names, timeout=600)
                        out["getPVStatus of all"] = f"{time.monotonic() - t0:.2f} s"
                    else:
                        out["idle appliance"] = f"{100 * core:.2f} % of a core (target < 2 %)"
            finally:
                ioc.kill()
    print(f"{n:,} PVs{' with archive fields' if args.fields else ''}:")
    for k, v in out.items():
        print(f"  {k:32} {v}")


if __name__ == "__main__":
    main()
