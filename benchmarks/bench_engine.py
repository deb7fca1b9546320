"""Archiving throughput, socket to PB bytes on disk, with a real C IOC.

Scenarios (``--scenario``):

* ``1000x100`` / ``2000x100``: N calc records counting at 100 Hz, MONITOR;
* ``10000x1``: 10,000 records at 1 Hz (memory per PV is measured here);
* ``wave``: 100 waveforms of 10,000 doubles at 10 Hz;
* ``connect``: 10,000 PVs with the default archive fields: time from the request until every
  PV has stored a sample, and the search datagrams sent.

The archiver (``CAArchiver`` + ``Engine``, written every ``--write`` seconds to an hourly STS)
runs in this process; the IOC in another. Reported: archived events/s (on disk), CPU µs per
archived event for this process (CA receive + engine + encoding + disk write), dropped
events, RSS per PV. The steady state is measured after a first write cycle.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_engine.py --scenario 1000x100

Targets (issue #3): <= 5 µs CPU per archived event, >= 200,000 events/s on one core, zero
drops, <= 5 KB per scalar PV at 1 Hz, 10,000 PVs archiving in < 10 s. Prints, asserts nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import os
import pstats
import resource
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_ca import proc_cpu
from tests.ioc import IOC

from pvarchiver.ca import CAClient
from pvarchiver.engine.channels import DEFAULT_ARCHIVE_FIELDS, CAArchiver
from pvarchiver.engine.journal import Journal, run_journal
from pvarchiver.engine.writer import Engine
from pvarchiver.storage import PlainPBStore, parse_store_url

SCENARIOS = {
    "1000x100": (1000, ".01 second", "calc"),
    "2000x100": (2000, ".01 second", "calc"),
    "10000x1": (10000, "1 second", "calc"),
    "wave": (100, ".1 second", "wave"),
    "connect": (10000, "1 second", "calc"),
}
WAVE_ELEMENTS = 10_000


def make_db(n: int, scan: str, kind: str) -> str:
    if kind == "wave":
        # MPST defaults to "Always": every scan posts an update even with unchanged values
        rec = (
            'record(waveform, "B:W{i:05d}") {{ field(SCAN, "{scan}") field(FTVL, "DOUBLE") '
            'field(NELM, "{nelm}") field(NORD, "{nelm}") }}\n'
        )
        return "".join(rec.format(i=i, scan=scan, nelm=WAVE_ELEMENTS) for i in range(n))
    else:
        rec = (
            'record(calc, "B:C{i:05d}") {{ field(SCAN, "{scan}") field(CALC, "A+1") '
            'field(INPA, "B:C{i:05d}") field(MDEL, "-1") }}\n'
        )
    return "".join(rec.format(i=i, scan=scan) for i in range(n))


def rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def names(n: int, kind: str) -> list[str]:
    return [f"B:W{i:05d}" if kind == "wave" else f"B:C{i:05d}" for i in range(n)]


async def measure(
    ioc: IOC,
    pvs: list[str],
    root: Path,
    seconds: float,
    write: float,
    fields: bool,
    memory_mb: int,
    trace: bool = False,
    profile: bool = False,
    journal_dir: Path | None = None,
) -> dict[str, Any]:
    sts = PlainPBStore(
        parse_store_url(
            f"pb://localhost?name=STS&rootFolder={root}&partitionGranularity=PARTITION_HOUR"
        )
    )
    journal = Journal(journal_dir, fsync_seconds=1.0) if journal_dir is not None else None
    engine = Engine(
        sts, seconds_to_buffer=write, memory_limit_bytes=memory_mb << 20, journal=journal
    )
    n = len(pvs)
    gc.collect()
    rss0 = rss_kib()
    if trace:
        tracemalloc.start()
    # time spent in the cyclic garbage collector (all threads), per generation
    gc_time = [0.0, 0.0, 0.0]
    gc_count = [0, 0, 0]
    gc_t0 = [0.0]

    def on_gc(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            gc_t0[0] = time.perf_counter()
        else:
            gc_time[info["generation"]] += time.perf_counter() - gc_t0[0]
            gc_count[info["generation"]] += 1

    async with CAClient(ioc.client_config()) as ca:
        arch = CAArchiver(engine, ca)
        t0 = time.monotonic()
        for name in pvs:
            arch.archive(name, fields=DEFAULT_ARCHIVE_FIELDS if fields else ())
        while len(engine.pvs) < n or not all(p.metrics.connected for p in engine.pvs.values()):
            await asyncio.sleep(0.02)
        t_conn = time.monotonic() - t0
        while not all(p.metrics.events_stored for p in engine.pvs.values()):
            await asyncio.sleep(0.02)
        t_arch = time.monotonic() - t0
        stats = ca.search_stats
        stop = asyncio.Event()
        writer = asyncio.create_task(engine.run(stop))
        journaling = (
            asyncio.create_task(run_journal(journal, stop)) if journal is not None else None
        )
        await asyncio.sleep(2.0)
        # the first write creates the files and looks for earlier data once per folder;
        # measure the steady state after it
        t_first = time.monotonic()
        await asyncio.to_thread(engine.write_all)
        first_write_s = time.monotonic() - t_first
        assert ioc.proc is not None
        stored0 = sum(p.metrics.samples_written + len(p.buffer) for p in engine.pvs.values())
        gc.callbacks.append(on_gc)
        prof = cProfile.Profile() if profile else None
        if prof is not None:
            prof.enable()  # the event-loop thread only (CA receive, on_event, take/finish)
        w0, c0, i0 = time.monotonic(), time.process_time(), proc_cpu(ioc.proc.pid)
        await asyncio.sleep(seconds)
        if trace:
            # steady state with one cycle's buffers filled: what each archived PV costs
            snap = tracemalloc.take_snapshot()
            traced = tracemalloc.get_traced_memory()[0]
        stop.set()
        await writer
        if journaling is not None:
            await journaling
        w1, c1, i1 = time.monotonic(), time.process_time(), proc_cpu(ioc.proc.pid)
        gc.callbacks.remove(on_gc)
        if prof is not None:
            prof.disable()
            pstats.Stats(prof).sort_stats("tottime").print_stats(25)
        rss1 = rss_kib()
        tracked = len(gc.get_objects())
        offs = ca.flow_control_offs
    written = sum(p.metrics.samples_written for p in engine.pvs.values()) - stored0
    reasons: Counter[str] = Counter()
    for p in engine.pvs.values():
        reasons.update({str(k): v for k, v in p.metrics.drops.items()})
    drops = sum(reasons.values())
    wall = w1 - w0
    top: list[str] = []
    traced_per_pv = 0.0
    if trace:
        tracemalloc.stop()
        traced_per_pv = traced / n
        for st in snap.statistics("lineno")[:20]:
            frame = st.traceback[0]
            where = f"{Path(frame.filename).name}:{frame.lineno}"
            top.append(f"{st.size / n:8.1f} B/PV {st.count / n:6.2f} blocks/PV  {where}")
    return {
        "gc_us_per_event": 1e6 * sum(gc_time) / max(written, 1),
        "gc_count": gc_count,
        "gc_ms": [round(1e3 * t) for t in gc_time],
        "tracked_per_pv": tracked / n,
        "traced_per_pv": traced_per_pv,
        "trace_top": top,
        "connect_s": t_conn,
        "archiving_s": t_arch,
        "datagrams": stats.datagrams,
        "requests": stats.requests,
        "events_per_s": written / wall,
        "us_per_event": 1e6 * (c1 - c0) / max(written, 1),
        "cpu_pct": 100 * (c1 - c0) / wall,
        "ioc_cpu_pct": 100 * (i1 - i0) / wall,
        "drops": drops,
        "drop_reasons": dict(reasons),  # type: ignore[dict-item]
        "flow_offs": offs,
        "kib_per_pv": (rss1 - rss0) / n,
        "written": written,
        "first_write_s": first_write_s,
        "journal_bytes": journal.stats.bytes_written if journal is not None else 0,
        "journal_fsyncs": journal.stats.fsyncs if journal is not None else 0,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="1000x100")
    ap.add_argument("--pvs", type=int, help="override the scenario's PV count")
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--write", type=float, default=10.0, help="secondsToBuffer")
    ap.add_argument("--fields", action="store_true", help="watch the default archive fields")
    ap.add_argument(
        "--memory-mb",
        type=int,
        help="engine buffer bound (default 512; 4096 for 'wave': 80 MB/s for 10 s + in flight)",
    )
    ap.add_argument(
        "--trace-memory",
        action="store_true",
        help="tracemalloc the archiver: bytes per PV and the top lines (CPU figures invalid)",
    )
    ap.add_argument(
        "--profile",
        action="store_true",
        help="cProfile the event-loop thread during the window (CPU figures invalid)",
    )
    ap.add_argument(
        "--journal",
        choices=("off", "on", "both"),
        default="both",
        help="the write-ahead journal (both: a run without, then one with, same IOC)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="runs of each journal mode")
    args = ap.parse_args()
    n, scan, kind = SCENARIOS[args.scenario]
    n = args.pvs or n
    fields = args.fields or args.scenario == "connect"
    seconds = 3.0 if args.scenario == "connect" else args.seconds
    mab = 2_000_000 if kind == "wave" else 16384
    memory_mb = args.memory_mb or (4096 if kind == "wave" else 512)
    modes = {"off": [False], "on": [True], "both": [False, True]}[args.journal]
    results: list[tuple[bool, dict[str, Any]]] = []
    with tempfile.TemporaryDirectory() as tmp:
        ioc = IOC(make_db(n, scan, kind), Path(tmp) / "ioc", fast_scan=True, max_array_bytes=mab)
        ioc.start(timeout=120)
        try:
            for k in range(args.repeat):
                for journal in modes:
                    run = Path(tmp) / f"run{k}-{'journal' if journal else 'plain'}"
                    res = asyncio.run(
                        measure(
                            ioc,
                            names(n, kind),
                            run / "sts",
                            seconds,
                            args.write,
                            fields,
                            memory_mb,
                            args.trace_memory,
                            args.profile,
                            run / "journal" if journal else None,
                        )
                    )
                    results.append((journal, res))
                    report(args, n, scan, seconds, fields, memory_mb, journal, res)
        finally:
            ioc.kill()
    if len(modes) == 2:
        off = [r["us_per_event"] for j, r in results if not j]
        on = [r["us_per_event"] for j, r in results if j]
        extra = [b - a for a, b in zip(off, on, strict=True)]

        def fmt(xs: list[float], sign: str = "") -> str:
            return ", ".join(f"{x:{sign}.2f}" for x in xs)

        print(
            f"journal cost per archived event: {fmt(extra, '+')} us "
            f"(off {fmt(off)}; on {fmt(on)}; target <= +0.5 us)"
        )


def report(
    args: argparse.Namespace,
    n: int,
    scan: str,
    seconds: float,
    fields: bool,
    memory_mb: int,
    journal: bool,
    res: dict[str, Any],
) -> None:
    load = os.getloadavg()
    print(
        f"scenario {args.scenario}: {n} PVs, SCAN '{scan}', {seconds:.0f} s, "
        f"write every {args.write} s, fields {'on' if fields else 'off'}, "
        f"buffer bound {memory_mb} MB, journal {'on' if journal else 'off'}"
    )
    print(f"  load average before/after  {load[0]:.2f} (1 min), {load[1]:.2f} (5 min)")
    print(f"  connect all                {res['connect_s']:.2f} s")
    print(f"  all archiving              {res['archiving_s']:.2f} s")
    print(f"  search datagrams           {res['datagrams']:,} for {res['requests']:,} names")
    print(f"  first write (files made)   {res['first_write_s']:.2f} s")
    print(f"  archived (on disk)         {res['events_per_s']:,.0f} events/s ({res['written']:,})")
    print(f"  CPU per archived event     {res['us_per_event']:.2f} us (target <= 5)")
    print(f"  archiver CPU               {res['cpu_pct']:.1f} % of one core")
    print(
        f"  of which cyclic GC         {res['gc_us_per_event']:.2f} us/event "
        f"(collections per generation {res['gc_count']}, ms {res['gc_ms']}; "
        f"{res['tracked_per_pv']:.1f} GC-tracked objects per PV at the end)"
    )
    print(f"  IOC CPU                    {res['ioc_cpu_pct']:.1f} %")
    print(f"  dropped events             {res['drops']:,.0f} {res['drop_reasons'] or ''}")
    print(f"  EVENTS_OFF sent            {res['flow_offs']}")
    print(f"  RSS growth per PV          {res['kib_per_pv']:.2f} KiB (includes buffers)")
    if journal:
        print(
            f"  journal                    {res['journal_bytes'] / max(res['written'], 1):.1f} "
            f"B/event written, {res['journal_fsyncs']} fsyncs"
        )
    print(
        f"  max RSS                    {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss:,} KiB"
    )
    if args.trace_memory:
        print(f"  traced memory per PV       {res['traced_per_pv']:,.0f} B (CPU figures invalid)")
        for line in res["trace_top"]:
            print(f"    {line}")


if __name__ == "__main__":
    main()
