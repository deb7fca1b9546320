"""Gateway fan-out: 1,000 PVs x 10 Hz from one IOC to 10 clients (100,000 events/s out).

Processes: the C IOC, the gateway (``python -m pvarchiver gateway``, its own
process so its CPU can be read from /proc), a load process with 9 of the 10
downstream clients (counting only), and this process with the 10th client and
one *direct* client on the IOC, which measure latency side by side.  Reported:

* gateway CPU per forwarded event (gateway process CPU / events delivered to
  the 10 clients during the window);
* added latency: receive time minus the IOC's record timestamp, through the
  gateway versus direct, p50 and p99 (both measured in this one process, so
  its own scheduling delay is in both and cancels in the difference);
* gateway memory per PV: RSS growth from idle to 1,000 PVs with 10 clients.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_gateway.py --pvs 1000 --clients 10
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ca import make_db, proc_cpu
from tests.ioc import IOC, free_port

from pvarchiver.ca import CAClient, CAConfig


def _gateway_code(profile: str) -> str:
    """Code the gateway process runs; with ``--profile`` under cProfile (stats dumped at exit)."""
    main = "from pvarchiver.cli.main import main; import sys; "
    if not profile:
        return main + "sys.exit(main())"
    return (
        main + "import cProfile; pr = cProfile.Profile(); pr.enable(); rc = main(); "
        f"pr.disable(); pr.dump_stats({str(Path(profile).resolve())!r}); sys.exit(rc)"
    )


def sys_cpu(pid: int) -> float:
    """Kernel-mode CPU seconds of a process (socket writes on loopback land here)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[12]) / os.sysconf("SC_CLK_TCK")


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] if values else float("nan")


def client_config(port: int) -> CAConfig:
    return CAConfig(addr_list=[("127.0.0.1", port)], auto_addr_list=False,
                    server_port=port, repeater_port=free_port())  # fmt: skip


async def subscribe_all(ca: CAClient, names: list[str], cb: object) -> None:
    await ca.start()
    chans = [ca.create_channel(n) for n in names]
    for ch in chans:
        await ca.wait_connected(ch, 60)
    for ch in chans:
        ca.subscribe(ch, cb)  # type: ignore[arg-type]


async def load_role(args: argparse.Namespace) -> None:
    """Child process: ``--clients`` counting clients; prints the count for each stdin line."""
    names = [f"B:C{i:05d}" for i in range(args.pvs)]
    count = 0

    def cb(*_a: object) -> None:
        nonlocal count
        count += 1

    clients = [CAClient(client_config(args.port)) for _ in range(args.clients)]
    for ca in clients:
        await subscribe_all(ca, names, cb)
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    while await loop.run_in_executor(None, sys.stdin.readline):
        print(count, flush=True)
    for ca in clients:
        await ca.close()


async def run(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="bench_gw_"))
    ioc = IOC(make_db(args.pvs, ".1 second"), work / "ioc")
    ioc.start()
    sport = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("EPICS_")}
    env.update(
        PYTHONPATH=str(Path(__file__).resolve().parents[1] / "src"),
        EPICS_CA_REPEATER_PORT=str(free_port()),
        EPICS_CAS_BEACON_ADDR_LIST="",
        EPICS_CAS_AUTO_BEACON_ADDR_LIST="NO",
    )
    gw = subprocess.Popen(
        [sys.executable, "-c",
         _gateway_code(args.profile),
         "gateway", "-sip", "127.0.0.1",
         "-sport", str(sport), "-cip", "127.0.0.1", "-cport", str(ioc.port), "-prefix", "bgw"],
        env=env, cwd=work, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    load: subprocess.Popen[str] | None = None
    try:
        assert gw.stdout is not None
        await asyncio.to_thread(gw.stdout.readline)
        rss0 = rss_kib(gw.pid)
        names = [f"B:C{i:05d}" for i in range(args.pvs)]
        lat_gw: list[float] = []
        lat_direct: list[float] = []
        counts = {"gw": 0}
        measuring = False

        def make_cb(sink: list[float], key: str | None) -> object:
            def cb(secs: int, nanos: int, sev: int, status: int, value: float) -> None:
                if measuring:
                    if key:
                        counts[key] += 1
                    sink.append(time.time() - (secs + nanos * 1e-9))

            return cb

        t0 = time.monotonic()
        if args.clients > 1:
            load = subprocess.Popen(
                [sys.executable, __file__, "--role", "load", "--port", str(sport),
                 "--pvs", str(args.pvs), "--clients", str(args.clients - 1)],
                env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
            )  # fmt: skip
            assert load.stdout is not None and load.stdin is not None
            assert (await asyncio.to_thread(load.stdout.readline)).strip() == "ready"
        mine = CAClient(client_config(sport))
        direct = CAClient(client_config(ioc.port))
        await subscribe_all(mine, names, make_cb(lat_gw, "gw"))
        await subscribe_all(direct, names, make_cb(lat_direct, None))
        t_conn = time.monotonic() - t0

        async def load_count() -> int:
            if load is None:
                return 0
            assert load.stdin is not None and load.stdout is not None
            load.stdin.write("mark\n")
            load.stdin.flush()
            return int(await asyncio.to_thread(load.stdout.readline))

        await asyncio.sleep(args.warmup)
        rss1 = rss_kib(gw.pid)
        c0 = await load_count()
        cpu0, ioc0, w0 = proc_cpu(gw.pid), proc_cpu(ioc.proc.pid), time.monotonic()  # type: ignore[union-attr]
        sys0 = sys_cpu(gw.pid)
        measuring = True
        await asyncio.sleep(args.seconds)
        measuring = False
        wall = time.monotonic() - w0
        cpu = proc_cpu(gw.pid) - cpu0
        kernel = sys_cpu(gw.pid) - sys0
        ioc_cpu = proc_cpu(ioc.proc.pid) - ioc0  # type: ignore[union-attr]
        n = counts["gw"] + await load_count() - c0
        print(f"PVs {args.pvs} x 10 Hz, {args.clients} clients; connect+subscribe {t_conn:.1f} s")
        print(f"events delivered by the gateway: {n / wall:,.0f}/s "
              f"(expected {args.pvs * 10 * args.clients:,}/s)")  # fmt: skip
        in_kernel = 100 * kernel / max(cpu, 1e-9)
        print(f"gateway CPU: {100 * cpu / wall:.1f} % of a core = {1e6 * cpu / max(n, 1):.2f} "
              f"us per forwarded event ({in_kernel:.0f} % of it in the kernel)")  # fmt: skip
        print(f"IOC CPU {100 * ioc_cpu / wall:.1f} %")
        p50g, p99g = pct(lat_gw, 0.5) * 1e3, pct(lat_gw, 0.99) * 1e3
        p50d, p99d = pct(lat_direct, 0.5) * 1e3, pct(lat_direct, 0.99) * 1e3
        print(f"latency direct p50 {p50d:.2f} ms p99 {p99d:.2f} ms; "
              f"via gateway p50 {p50g:.2f} ms p99 {p99g:.2f} ms; "
              f"added p50 {p50g - p50d:.2f} ms p99 {p99g - p99d:.2f} ms")  # fmt: skip
        print(f"gateway RSS idle {rss0 / 1024:.1f} MiB, loaded {rss1 / 1024:.1f} MiB: "
              f"{(rss1 - rss0) / args.pvs:.1f} KiB per PV "
              f"(with {args.clients} clients)")  # fmt: skip
        print(f"client flow control (EVENTS_OFF sent): via gateway {mine.flow_control_offs}, "
              f"direct {direct.flow_control_offs}")  # fmt: skip
        for ca in (mine, direct):
            await ca.close()
    finally:
        for proc in (load, gw):
            if proc is None:
                continue
            if proc.stdin:
                proc.stdin.close()
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
        ioc.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pvs", type=int, default=1000)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--profile", default="", help="cProfile the gateway, stats to this file")
    p.add_argument("--role", default="main", choices=["main", "load"], help=argparse.SUPPRESS)
    p.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = p.parse_args()
    asyncio.run(load_role(args) if args.role == "load" else run(args))


if __name__ == "__main__":
    main()
