"""Gateway fan-out: 1,000 PVs x 10 Hz from one IOC to 10 clients (100,000 events/s out).

Processes: the C IOC, the gateway (``python -m pvarchiver gateway``, its own
process so its CPU can be read from /proc), and this process, which holds the
10 downstream circuits and one *direct* circuit on the IOC as bare CA clients
(``ca_recorder.py``: they subscribe, then only read and timestamp, decoding
after the window, so 100,000 events/s of client decoding do not compete with
the gateway for this machine's cores).  Reported:

* gateway CPU per forwarded event (gateway process CPU / events delivered to
  the 10 clients during the window);
* latency: kernel receive time (SO_TIMESTAMPNS) minus the IOC's record
  timestamp, direct and through the gateway (the last of the 10 circuits the
  gateway serves), p50 and p99;
* added latency per update: for every update (PV, IOC timestamp) seen on both
  circuits, receive time through the gateway minus receive time direct;
  p50/p99/p99.9/max of those;
* gateway memory per PV: RSS growth from idle to 1,000 PVs with 10 clients.

``--pin`` gives the gateway a CPU of its own (the last one) and puts the IOC
and the clients on the others, as on a gateway host; without it all share
every CPU.  ``--dump FILE`` writes each matched update's times.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_gateway.py --pvs 1000 --clients 10 [--pin]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ca import make_db, proc_cpu
from benchmarks.ca_recorder import RecordingCircuit, arrivals, latencies, pump
from tests.ioc import IOC, free_port

EVENT_BYTES = 40  # one DBR_TIME_DOUBLE monitor update: 16-byte header + 24-byte payload


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


def added(
    gw: dict[tuple[int, int, int], float], direct: dict[tuple[int, int, int], float]
) -> list[float]:
    """Per event: receive time through the gateway minus receive time of the same
    update (PV, IOC timestamp) on the direct circuit."""
    return [t - direct[k] for k, t in gw.items() if k in direct]


def _threads(pid: int) -> list[int]:
    """Every thread of a process (affinity is per thread; the IOC's already run)."""
    return [int(t) for t in os.listdir(f"/proc/{pid}/task")]


def run(args: argparse.Namespace) -> None:
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
    circuits: list[RecordingCircuit] = []
    if args.pin:  # the gateway alone on the last CPU; the IOC, the clients and us on the others
        cpus = sorted(os.sched_getaffinity(0))
        if len(cpus) < 2:
            raise SystemExit("--pin needs at least 2 CPUs")
        os.sched_setaffinity(gw.pid, {cpus[-1]})
        for pid in [*_threads(ioc.proc.pid), os.getpid()]:  # type: ignore[union-attr]
            os.sched_setaffinity(pid, set(cpus[:-1]))
    try:
        assert gw.stdout is not None
        gw.stdout.readline()
        rss0 = rss_kib(gw.pid)
        names = [f"B:C{i:05d}" for i in range(args.pvs)]
        t0 = time.monotonic()
        # the 9 load clients first, so the measured one is the last circuit the gateway serves;
        # one after the other, as clients start in practice (a storm of 10,000 simultaneous
        # channel creations raises the gateway's RSS high-water mark, not its memory per PV)
        circuits = []
        for port, keep in [*[(sport, False)] * (args.clients - 1), (sport, True), (ioc.port, True)]:
            circuits.append(RecordingCircuit(("127.0.0.1", port), names, keep))
            circuits[-1].subscribe()
        *load, mine, direct = circuits
        t_conn = time.monotonic() - t0
        pump(circuits, args.warmup, record=False)
        rss1 = rss_kib(gw.pid)
        cpu0, ioc0, w0 = proc_cpu(gw.pid), proc_cpu(ioc.proc.pid), time.monotonic()  # type: ignore[union-attr]
        sys0 = sys_cpu(gw.pid)
        me0 = time.process_time()
        pump(circuits, args.seconds, record=True)
        wall = time.monotonic() - w0
        me = time.process_time() - me0
        cpu = proc_cpu(gw.pid) - cpu0
        kernel = sys_cpu(gw.pid) - sys0
        ioc_cpu = proc_cpu(ioc.proc.pid) - ioc0  # type: ignore[union-attr]
        n = sum(c.nbytes for c in (*load, mine)) / EVENT_BYTES
        got_gw, got_direct = arrivals(mine.chunks), arrivals(direct.chunks)
        lat_gw, lat_direct = latencies(got_gw), latencies(got_direct)
        extra = added(got_gw, got_direct)
        if args.dump:  # per update: subscription, IOC timestamp, receive via gateway and direct
            Path(args.dump).write_text("".join(
                f"{k[0]} {k[1] + k[2] * 1e-9:.9f} {t:.6f} {got_direct[k]:.6f}\n"
                for k, t in got_gw.items() if k in got_direct
            ))  # fmt: skip
        print(f"PVs {args.pvs} x 10 Hz, {args.clients} clients; connect+subscribe {t_conn:.1f} s")
        print(f"events delivered by the gateway: {n / wall:,.0f}/s "
              f"(expected {args.pvs * 10 * args.clients:,}/s)")  # fmt: skip
        in_kernel = 100 * kernel / max(cpu, 1e-9)
        print(f"gateway CPU: {100 * cpu / wall:.1f} % of a core = {1e6 * cpu / max(n, 1):.2f} "
              f"us per forwarded event ({in_kernel:.0f} % of it in the kernel)")  # fmt: skip
        print(f"IOC CPU {100 * ioc_cpu / wall:.1f} %; the {len(circuits)} recording clients "
              f"{100 * me / wall:.1f} %")  # fmt: skip
        p50g, p99g = pct(lat_gw, 0.5) * 1e3, pct(lat_gw, 0.99) * 1e3
        p50d, p99d = pct(lat_direct, 0.5) * 1e3, pct(lat_direct, 0.99) * 1e3
        print(f"latency (receive - IOC timestamp) direct p50 {p50d:.2f} ms p99 {p99d:.2f} ms; "
              f"via gateway p50 {p50g:.2f} ms p99 {p99g:.2f} ms")  # fmt: skip
        q = {k: pct(extra, k) * 1e3 for k in (0.5, 0.99, 0.999)}
        print(f"added latency per update ({len(extra):,} matched): p50 {q[0.5]:.2f} ms "
              f"p99 {q[0.99]:.2f} ms p99.9 {q[0.999]:.2f} ms "
              f"max {max(extra, default=float('nan')) * 1e3:.2f} ms")  # fmt: skip
        print(f"gateway RSS idle {rss0 / 1024:.1f} MiB, loaded {rss1 / 1024:.1f} MiB: "
              f"{(rss1 - rss0) / args.pvs:.1f} KiB per PV "
              f"(with {args.clients} clients)")  # fmt: skip
    finally:
        for c in circuits:
            c.sock.close()
        gw.terminate()
        try:
            gw.wait(10)
        except subprocess.TimeoutExpired:
            gw.kill()
        ioc.kill()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--pvs", type=int, default=1000)
    p.add_argument("--clients", type=int, default=10)
    p.add_argument("--warmup", type=float, default=3.0)
    p.add_argument("--seconds", type=float, default=10.0)
    p.add_argument("--profile", default="", help="cProfile the gateway, stats to this file")
    p.add_argument("--pin", action="store_true",
                   help="give the gateway a CPU of its own, as on a gateway host")  # fmt: skip
    p.add_argument("--dump", default="", help="write every matched update's times to this file")
    run(p.parse_args())


if __name__ == "__main__":
    main()
