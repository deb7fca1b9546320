"""PVWS fan-out cost: a real IOC of 1,000 counters at 10 Hz, a real ``pvarchiver serve``
archiving them, and 20 websocket clients (in 4 client processes) each subscribed to 500 of
them with throttling off (``PVARCHIVER_PVWS_THROTTLE_MS=0``).

Reported: the serve process's CPU (from /proc) per delivered update, over the same window
without clients subtracted; the p99 of receive time minus the IOC's timestamp (IOC -> engine
-> websocket -> client); and whether archiving lost anything (every counter's archived values
are consecutive over the window). Targets (issue 20): <= 5 us CPU per delivered update,
p99 <= 20 ms, no archiving loss. Prints, asserts nothing.

    .venv/bin/python benchmarks/bench_pvws.py --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
from tests.helpers.mgmt import bpl, ca_env, wait_status
from tests.http_server import running_server
from tests.ioc import counter_db, running_ioc

PREFIX = "PVWSB:"
TICK = os.sysconf("SC_CLK_TCK")


def proc_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def client_proc(url: str, names: list[list[str]], seconds: float, q: mp.Queue) -> None:
    """Several websocket clients in one process: counts and latencies (ms) of updates."""
    from websockets.asyncio.client import connect

    async def one(pvs: list[str]) -> tuple[int, list[float]]:
        n, lat = 0, []
        async with connect(url, max_size=None) as ws:
            await ws.send(json.dumps({"type": "subscribe", "pvs": pvs}))
            end = time.time() + seconds
            while time.time() < end:
                try:
                    m = json.loads(await asyncio.wait_for(ws.recv(), 1.0))
                except TimeoutError:
                    continue
                if "value" in m:
                    now = time.time()
                    n += 1
                    if n % 10 == 0:
                        lat.append((now - m["seconds"] - m["nanos"] * 1e-9) * 1000)
        return n, lat

    async def main() -> list[tuple[int, list[float]]]:
        return await asyncio.gather(*(one(p) for p in names))

    q.put(asyncio.run(main()))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pvs", type=int, default=1000)
    ap.add_argument("--clients", type=int, default=20)
    ap.add_argument("--per-client", type=int, default=500)
    ap.add_argument("--procs", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=10.0)
    a = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_pvws"))
    names = [f"{PREFIX}{i:05d}" for i in range(a.pvs)]
    with running_ioc(counter_db(PREFIX, a.pvs, ".1 second"), work / "ioc") as ioc:
        env = ca_env(ioc, PVARCHIVER_PVWS_THROTTLE_MS="0", PVARCHIVER_PVWS_ARRAY_THROTTLE_MS="0")
        with running_server(work / "storage", env) as base:
            r = bpl(base, "archivePV", "POST", json=[{"pv": n} for n in names])
            assert r.status_code == 200, r.text
            wait_status(base, names, "Being archived", timeout=120)
            time.sleep(2)  # past the first connects
            c0, t0 = proc_cpu(base.pid), time.monotonic()
            time.sleep(a.seconds)
            idle = (proc_cpu(base.pid) - c0) / (time.monotonic() - t0)
            subs = [
                [names[(c * a.per_client // 2 + k) % a.pvs] for k in range(a.per_client)]
                for c in range(a.clients)
            ]
            url = base.replace("http://", "ws://") + "/pvws/pv"
            q: mp.Queue = mp.Queue()
            groups = [subs[i :: a.procs] for i in range(a.procs)]
            procs = [
                mp.Process(target=client_proc, args=(url, g, a.seconds + 3, q)) for g in groups
            ]
            start_wall = time.time()
            for p in procs:
                p.start()
            time.sleep(3)  # subscribed, first updates sent
            c1, t1 = proc_cpu(base.pid), time.monotonic()
            time.sleep(a.seconds)
            busy = (proc_cpu(base.pid) - c1) / (time.monotonic() - t1)
            results = [r for _ in procs for r in q.get(timeout=120)]
            for p in procs:
                p.join()
            end_wall = time.time()
            delivered = sum(n for n, _ in results) / (a.seconds + 3)
            lats = sorted(x for _, lat in results for x in lat)
            p99 = lats[int(len(lats) * 0.99)] if lats else float("nan")
            p50 = lats[len(lats) // 2] if lats else float("nan")
            # archiving: each sampled counter's archived values are consecutive
            time.sleep(12)  # one write cycle
            gaps = 0
            for n in names[:: max(1, a.pvs // 50)]:
                rr = httpx.get(
                    base + "/retrieval/data/getData.json",
                    params={
                        "pv": n,
                        "from": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start_wall)),
                        "to": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(end_wall)),
                    },
                    timeout=60,
                )
                vals = [d["val"] for d in rr.json()[0]["data"]]
                gaps += sum(1 for x, y in itertools.pairwise(vals) if y != x + 1)
    per_update = (busy - idle) / delivered * 1e6 if delivered else float("nan")
    print(
        f"pvws fan-out: {a.pvs} PVs x 10 Hz, {a.clients} clients x {a.per_client} PVs, "
        f"throttling off, {a.seconds:.0f} s"
    )
    print(
        f"  delivered updates          {delivered:,.0f}/s "
        f"(offered {a.clients * a.per_client * 10:,}/s)"
    )
    print(f"  serve CPU idle / with ws   {idle * 100:.1f} % / {busy * 100:.1f} % of one core")
    print(f"  CPU per delivered update   {per_update:.2f} us (target <= 5)")
    print(f"  latency IOC->client p50    {p50:.1f} ms, p99 {p99:.1f} ms (target p99 <= 20)")
    print(
        f"  archiving gaps             {gaps} in {len(names[:: max(1, a.pvs // 50)])} "
        "PVs checked (target 0)"
    )


if __name__ == "__main__":
    main()
