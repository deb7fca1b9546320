"""PVA client throughput: N calc records from a pvxs QSRV IOC, our client vs p4p's raw client.

Both clients run in this process, one after the other, against the same IOC (its own
process): updates received, drops (gaps in each counter), CPU per update from
/proc/self/stat (our client: asyncio + decoding + a callback reading value and
timeStamp; p4p: its worker threads + a handler popping and reading the same fields), and
the decode cost alone of one NTScalar double update through our protocol machine.

    .venv/bin/python benchmarks/bench_pva_client.py              # 1,000 PVs x 10 Hz
    .venv/bin/python benchmarks/bench_pva_client.py --hz 100     # 1,000 PVs x 100 Hz
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.pva_peers import QsrvIOC, client_config, p4p_client_conf

from pvarchiver.pva.client import PVAClient
from pvarchiver.pva.connection import MonitorUpdate

TICK = os.sysconf("SC_CLK_TCK")


def cpu() -> float:
    """CPU seconds (user + system) of this process, from /proc."""
    with open("/proc/self/stat") as f:
        parts = f.read().rsplit(")", 1)[1].split()
    return (int(parts[11]) + int(parts[12])) / TICK


class Counter:
    """Updates and gaps (a counter that did not step by one) per PV."""

    def __init__(self, n: int) -> None:
        self.last = [None] * n
        self.updates = 0
        self.drops = 0
        self.lock = threading.Lock()

    def see(self, i: int, value: float) -> None:
        last = self.last[i]
        if last is not None and value - last > 1:
            self.drops += int(value - last - 1)
        self.last[i] = value
        self.updates += 1


def db(n: int, scan: str) -> str:
    return "".join(
        f'record(calc, "BP:{i:05d}") {{ field(SCAN, "{scan}") field(CALC, "A+1") '
        f'field(INPA, "BP:{i:05d}") }}\n'
        for i in range(n)
    )


async def run_ours(n: int, bport: int, warm: float, secs: float) -> dict[str, float]:
    client = PVAClient(client_config(bport))
    await client.start()
    c = Counter(n)
    stamps = [0]

    def make(i: int):
        def cb(u: MonitorUpdate) -> None:
            v = u.value.flat
            stamps[0] = v[ts_idx]  # what an archiver reads: value and timeStamp
            c.see(i, v[val_idx])

        return cb

    chans = [client.channel(f"BP:{i:05d}") for i in range(n)]
    first = await chans[0].get(30)
    val_idx = first.layout.index["value"]
    ts_idx = first.layout.index["timeStamp.secondsPastEpoch"]
    for i, ch in enumerate(chans):
        ch.monitor(make(i))
    t_end = time.monotonic() + 60
    while sum(ch.connected for ch in chans) < n and time.monotonic() < t_end:
        await asyncio.sleep(0.1)
    await asyncio.sleep(warm)
    u0, d0, c0, t0 = c.updates, c.drops, cpu(), time.monotonic()
    await asyncio.sleep(secs)
    u1, d1, c1, t1 = c.updates, c.drops, cpu(), time.monotonic()
    await client.close()
    return {"updates": u1 - u0, "drops": d1 - d0, "cpu": c1 - c0, "wall": t1 - t0}


def run_p4p(n: int, bport: int, warm: float, secs: float) -> dict[str, float]:
    from p4p.client.raw import Context

    ctx = Context("pva", conf=p4p_client_conf(bport), useenv=False, nt=False)
    c = Counter(n)
    subs: list = []

    def make(i: int):
        def handler(*_: object) -> None:
            sub = subs[i]
            while True:
                v = sub.pop()
                if v is None:
                    return
                if hasattr(v, "get"):
                    v.get("timeStamp.secondsPastEpoch")
                    with c.lock:
                        c.see(i, v["value"])

        return handler

    for i in range(n):
        subs.append(None)
        subs[i] = ctx.monitor(f"BP:{i:05d}", make(i))
    time.sleep(warm + 2)
    u0, d0, c0, t0 = c.updates, c.drops, cpu(), time.monotonic()
    time.sleep(secs)
    u1, d1, c1, t1 = c.updates, c.drops, cpu(), time.monotonic()
    for s in subs:
        s.close()
    ctx.close()
    return {"updates": u1 - u0, "drops": d1 - d0, "cpu": c1 - c0, "wall": t1 - t0}


def decode_cost() -> float:
    """µs to decode one NTScalar double update (BitSet, value, timeStamp, alarm) in ours."""
    from tests.test_pva_codec import NTSCALAR

    from pvarchiver.pva.codec import Writer, encode_type
    from pvarchiver.pva.connection import ClientConnection
    from pvarchiver.pva.protocol import Status, build_control, build_message, write_status
    from pvarchiver.pva.request import pv_request

    c = ClientConnection()
    w = Writer("<")
    w.pack("IH", 0x10000, 0x7FFF)
    w.size(1)
    w.string("anonymous")
    ok = Writer("<")
    write_status(ok, Status())
    c.receive(build_control(2, 0, "<", True) + build_message(1, w.buf, "<", True))
    c.receive(build_message(9, ok.buf, "<", True))
    c.monitor(1, 1, pv_request())
    w = Writer("<")
    w.pack("IB", 1, 8)
    write_status(w, Status())
    encode_type(NTSCALAR, w)
    c.receive(build_message(13, w.buf, "<", True))
    w = Writer("<")
    w.pack("IB", 1, 0)
    # value, alarm.severity, alarm.status, timeStamp.secondsPastEpoch, .nanoseconds
    w.bitset(0b110011010)
    w.pack("diiqi", 1.0, 0, 0, 1_700_000_000, 5)
    w.bitset(0)
    msg = build_message(13, w.buf, "<", True)
    k = 100_000
    t = time.process_time()
    for _ in range(k):
        c.receive(msg)
    return (time.process_time() - t) / k * 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pvs", type=int, default=1000)
    ap.add_argument("--hz", type=int, choices=(10, 100), default=10)
    ap.add_argument("--secs", type=float, default=10.0)
    ap.add_argument("--warm", type=float, default=3.0)
    ap.add_argument("--skip-p4p", action="store_true")
    args = ap.parse_args()
    scan = ".1 second" if args.hz == 10 else ".01 second"
    print(f"decode only, NTScalar double update: {decode_cost():.2f} µs")
    with tempfile.TemporaryDirectory() as tmp:
        ioc = QsrvIOC(db(args.pvs, scan), Path(tmp), fast_scan=args.hz == 100)
        ioc.start()
        try:
            sent = args.pvs * args.hz
            rows = [
                ("ours (asyncio)", asyncio.run(run_ours(args.pvs, ioc.bport, args.warm, args.secs)))
            ]
            if not args.skip_p4p:
                rows.append(("p4p raw", run_p4p(args.pvs, ioc.bport, args.warm, args.secs)))
        finally:
            ioc.kill()
    print(f"{args.pvs} PVs x {args.hz} Hz = {sent} updates/s sent, {args.secs:g} s measured")
    print(f"{'client':16} {'updates/s':>10} {'drops':>7} {'µs CPU/update':>14} {'cores':>6}")
    for name, r in rows:
        rate = r["updates"] / r["wall"]
        per = r["cpu"] / max(1, r["updates"]) * 1e6
        print(f"{name:16} {rate:10.0f} {r['drops']:7.0f} {per:14.1f} {r['cpu'] / r['wall']:6.2f}")


if __name__ == "__main__":
    main()
