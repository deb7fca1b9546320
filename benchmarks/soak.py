"""Soak: a real ``pvarchiver serve`` under churn for a long time; is it leaking? (issue 15)

N calc records (1 Hz by default) in a real IOC are archived. For ``--minutes`` the script
keeps doing what a facility does to an archiver: the IOC is killed and restarted every few
minutes; PVs are paused, resumed, deleted (with their data) and archived again; retrieval
clients read recent data and whole days. Every minute it prints the server's RSS, open file
descriptors and threads (from ``/proc``, outside the process) and asyncio tasks (from
``/metrics`` where the server reports them). At the end: growth after the warm-up.

    PYTHONPATH=src .venv/bin/python benchmarks/soak.py --pvs 1000 --minutes 30

Target: after warm-up, RSS grows under 5 %, file descriptors and tasks stay flat. Prints
numbers, asserts nothing.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.http_server import running_server
from tests.ioc import IOC, counter_db


def proc_sample(pid: int) -> dict[str, float]:
    status = Path(f"/proc/{pid}/status").read_text()
    rss = int(re.search(r"VmRSS:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    threads = int(re.search(r"Threads:\s+(\d+)", status).group(1))  # type: ignore[union-attr]
    fds = len(os.listdir(f"/proc/{pid}/fd"))
    return {"rss_kib": rss, "fds": fds, "threads": threads}


def tasks_from_metrics(base: str) -> float | None:
    try:
        text = httpx.get(base + "/metrics", timeout=10).text
    except httpx.HTTPError:
        return None
    m = re.search(r"^pvarchiver_asyncio_tasks (\d+)", text, flags=re.M)
    return float(m.group(1)) if m else None


def bpl(base: str, action: str, **params: str) -> httpx.Response:
    return httpx.get(f"{base}/mgmt/bpl/{action}", params=params, timeout=60)


def churn(base: str, names: list[str], rng: random.Random) -> str:
    """One management action on a random PV, as operators and scripts do."""
    pv = rng.choice(names)
    what = rng.choice(["pause-resume", "delete-archive", "read-recent", "read-day"])
    if what == "pause-resume":
        bpl(base, "pauseArchivingPV", pv=pv)
        bpl(base, "resumeArchivingPV", pv=pv)
    elif what == "delete-archive":
        bpl(base, "pauseArchivingPV", pv=pv)
        bpl(base, "deletePV", pv=pv, deleteData="true")
        bpl(base, "archivePV", pv=pv)
    else:
        span = 600 if what == "read-recent" else 86400
        now = time.time()
        httpx.get(
            base + "/retrieval/data/getData.raw",
            params={
                "pv": pv,
                "from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now - span)),
                "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(now)),
            },
            timeout=60,
        )
    return what


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pvs", type=int, default=1000)
    ap.add_argument("--scan", default="1 second")
    ap.add_argument("--minutes", type=float, default=30.0)
    ap.add_argument("--warmup", type=float, default=5.0, help="minutes before growth counts")
    ap.add_argument("--ioc-restart", type=float, default=4.0, help="minutes between IOC kills")
    ap.add_argument("--actions-per-second", type=float, default=2.0)
    args = ap.parse_args()
    rng = random.Random(7)
    names = [f"SOAK:C{i:05d}" for i in range(args.pvs)]
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "storage"
        ioc = IOC(counter_db("SOAK:C", args.pvs, args.scan), Path(tmp) / "ioc")
        ioc.start(timeout=120)
        env = {
            "EPICS_CA_ADDR_LIST": f"127.0.0.1:{ioc.port}",
            "EPICS_CA_SERVER_PORT": str(ioc.port),
            "EPICS_CA_REPEATER_PORT": str(ioc.repeater_port),
            "PVARCHIVER_INITIAL_SAMPLING_SECONDS": "1",
        }
        try:
            with running_server(root, env) as base:
                httpx.post(base + "/mgmt/bpl/archivePV", json=[{"pv": n} for n in names])
                t0 = time.monotonic()
                end = t0 + 60 * args.minutes
                next_print = t0
                next_restart = t0 + 60 * args.ioc_restart
                rows: list[tuple[float, dict[str, float], float | None]] = []
                actions: dict[str, int] = {}
                print("minute   RSS MiB   fds  threads  tasks  actions", flush=True)
                while time.monotonic() < end:
                    now = time.monotonic()
                    if now >= next_print:
                        s = proc_sample(base.pid)
                        tasks = tasks_from_metrics(base)
                        rows.append(((now - t0) / 60, s, tasks))
                        print(
                            f"{(now - t0) / 60:6.1f} {s['rss_kib'] / 1024:9.1f} {s['fds']:5.0f} "
                            f"{s['threads']:8.0f} {tasks if tasks is not None else '-':>6} "
                            f"{sum(actions.values()):8d}",
                            flush=True,
                        )
                        next_print += 60
                    if now >= next_restart:
                        ioc.kill()
                        time.sleep(rng.uniform(2, 10))
                        ioc.start(timeout=120)
                        next_restart += 60 * args.ioc_restart
                    what = churn(base, names, rng)
                    actions[what] = actions.get(what, 0) + 1
                    time.sleep(1 / args.actions_per_second)
        finally:
            ioc.kill()
    warm = [r for r in rows if r[0] >= args.warmup]
    if len(warm) >= 2:
        first, last = warm[0][1], warm[-1][1]
        growth = 100 * (last["rss_kib"] - first["rss_kib"]) / first["rss_kib"]
        print(
            f"after {args.warmup:.0f} min of warm-up: RSS {growth:+.1f} % "
            f"({first['rss_kib'] / 1024:.0f} -> {last['rss_kib'] / 1024:.0f} MiB; target < 5 %), "
            f"fds {first['fds']:.0f} -> {last['fds']:.0f}, threads {first['threads']:.0f} -> "
            f"{last['threads']:.0f}, tasks {warm[0][2]} -> {warm[-1][2]}; actions {actions}"
        )


if __name__ == "__main__":
    main()
