"""The appliance's numbers for ``GET /metrics``, in the Prometheus text exposition format (0.0.4).

Written by hand (a dozen families do not justify a dependency). Every family has HELP and
TYPE lines and a ``pvarchiver_`` prefix. Counters come from the engine's per-PV counters, so
they reset when the process restarts or a PV is deleted, which Prometheus' ``rate()``
handles as a counter reset. Store sizes come from the cached storage scan
(:mod:`storage_usage`), so a scrape never walks the disk more often than that cache allows.

ETL stage timings are exported when the caller passes the appliance's ``ETLScheduler``;
consolidateDataForPV runs are always exported. No HTTP here: ``pvarchiver.web.metrics_routes``
serves the text at ``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from ..engine.metrics import DropReason
from ..storage.etl import ETLStats
from ..storage.schedule import ETLScheduler, ETLStage
from .appliance_metrics import Summary, WriteTimer, summarize
from .health import UNHEALTHY, HealthReport
from .registry_backend import RegistryState
from .service import Mgmt
from .storage_usage import Usage

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
Labels = dict[str, str]


@dataclass
class Family:
    name: str
    kind: str  # counter, gauge, summary
    help: str
    samples: list[tuple[str, Labels, float]] = field(default_factory=list)

    def add(self, value: float, labels: Labels | None = None, suffix: str = "") -> Family:
        self.samples.append((suffix, labels or {}, value))
        return self


def _escape_label(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _escape_help(v: str) -> str:
    return v.replace("\\", "\\\\").replace("\n", "\\n")


def _number(x: float) -> str:
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if float(x).is_integer() and abs(x) < 1e15:
        return str(int(x))
    return repr(float(x))


def render(families: Iterable[Family]) -> str:
    """The exposition text: HELP, TYPE, then the samples of each family."""
    out: list[str] = []
    for f in families:
        out.append(f"# HELP {f.name} {_escape_help(f.help)}")
        out.append(f"# TYPE {f.name} {f.kind}")
        for suffix, labels, value in f.samples:
            lab = ""
            if labels:
                lab = "{" + ",".join(f'{k}="{_escape_label(v)}"' for k, v in labels.items()) + "}"
            out.append(f"{f.name}{suffix}{lab} {_number(value)}")
    return "\n".join(out) + "\n"


def _task_count() -> int:
    try:
        return len(asyncio.all_tasks())
    except RuntimeError:  # no running loop (a report made outside the server)
        return 0


# ---------------------------------------------------------------------- families
def appliance_families(s: Summary, timer: WriteTimer | None) -> list[Family]:
    pvs = Family("pvarchiver_pvs", "gauge", "PVs of this appliance by state")
    pvs.add(s.pv_count, {"state": "total"})
    pvs.add(s.connected, {"state": "connected"})
    pvs.add(s.disconnected, {"state": "disconnected"})
    pvs.add(s.paused, {"state": "paused"})
    drops = Family("pvarchiver_events_dropped_total", "counter", "Events not archived, by reason")
    for reason in DropReason:
        drops.add(s.drops.get(str(reason), 0), {"reason": str(reason)})
    fams = [
        Family("pvarchiver_uptime_seconds", "gauge", "Seconds since the archiver started").add(
            s.uptime_seconds
        ),
        Family(
            "pvarchiver_asyncio_tasks",
            "gauge",
            "Tasks on the event loop (flat over time: nothing leaks; see benchmarks/soak.py)",
        ).add(_task_count()),
        pvs,
        Family(
            "pvarchiver_archive_requests_pending",
            "gauge",
            "archivePV requests still in the workflow (initial sampling or failed)",
        ).add(s.pending_requests),
        Family(
            "pvarchiver_events_per_second",
            "gauge",
            "Event rate summed over connected PVs (events since first connect / seconds)",
        ).add(s.event_rate),
        Family(
            "pvarchiver_data_rate_bytes_per_second",
            "gauge",
            "Estimated storage rate summed over PVs (stored events x bytes per event)",
        ).add(s.data_rate),
        Family("pvarchiver_events_received_total", "counter", "Events received from the PVs").add(
            s.events_received
        ),
        Family(
            "pvarchiver_events_stored_total", "counter", "Events accepted into the engine buffers"
        ).add(s.events_stored),
        Family(
            "pvarchiver_samples_written_total", "counter", "Samples written to the first store"
        ).add(s.samples_written),
        Family(
            "pvarchiver_write_errors_total", "counter", "Failed writes of a PV's buffer (retried)"
        ).add(s.write_errors),
        drops,
        Family(
            "pvarchiver_engine_buffer_bytes", "gauge", "Memory held by the engine's buffers"
        ).add(s.buffer_bytes),
        Family(
            "pvarchiver_engine_buffer_limit_bytes", "gauge", "Memory bound of the engine buffers"
        ).add(s.buffer_limit_bytes),
        Family(
            "pvarchiver_engine_buffer_peak_bytes", "gauge", "Highest engine buffer memory so far"
        ).add(s.buffer_peak_bytes),
    ]
    if timer is not None:
        fams += [
            Family(
                "pvarchiver_write_cycle_seconds",
                "summary",
                "Wall time of the engine's write cycles that had samples to write",
            )
            .add(timer.seconds, suffix="_sum")
            .add(timer.cycles, suffix="_count"),
            Family(
                "pvarchiver_write_cycle_last_seconds", "gauge", "Wall time of the last write cycle"
            ).add(timer.last_seconds),
            Family("pvarchiver_write_cycle_max_seconds", "gauge", "Longest write cycle so far").add(
                timer.max_seconds
            ),
        ]
    return fams


def store_families(usage: Usage, now: float) -> list[Family]:
    used = Family("pvarchiver_store_used_bytes", "gauge", "Bytes of .pb files in the store")
    total = Family("pvarchiver_store_total_bytes", "gauge", "Size of the store's file system")
    avail = Family(
        "pvarchiver_store_available_bytes", "gauge", "Free space of the store's file system"
    )
    files = Family("pvarchiver_store_files", "gauge", "Number of .pb files in the store")
    npvs = Family("pvarchiver_store_pvs", "gauge", "Archived PVs with data in the store")
    for st in usage.stores:
        lab = {"store": st.name}
        used.add(st.used_bytes, lab)
        total.add(st.total_bytes, lab)
        avail.add(st.available_bytes, lab)
        files.add(st.files, lab)
        npvs.add(st.pv_count, lab)
    return [
        used,
        total,
        avail,
        files,
        npvs,
        Family(
            "pvarchiver_storage_scan_age_seconds",
            "gauge",
            "Age of the store numbers (they come from a cached scan)",
        ).add(max(0.0, now - usage.taken_epoch)),
        Family(
            "pvarchiver_storage_scan_seconds", "gauge", "Wall time of the last storage scan"
        ).add(usage.scan_seconds),
    ]


def health_families(report: HealthReport) -> list[Family]:
    """Failing stores, free space against the low-space threshold, the health verdict."""
    failing = {f.store: f for f in report.failures}
    n_failing = Family(
        "pvarchiver_stores_write_failing",
        "gauge",
        "Stores whose writes have failed for more than one write period",
    ).add(len(report.failures))
    fail = Family(
        "pvarchiver_store_write_failing",
        "gauge",
        "1 while the engine's writes into the store fail (samples kept and retried)",
    )
    fail_secs = Family(
        "pvarchiver_store_write_failing_seconds",
        "gauge",
        "How long the store's writes have been failing (0: they succeed)",
    )
    fail_pvs = Family(
        "pvarchiver_store_write_failing_pvs", "gauge", "PVs whose writes into the store fail"
    )
    for store in report.written_stores:
        f = failing.get(store)
        lab = {"store": store}
        fail.add(1 if f else 0, lab)
        fail_secs.add(f.seconds(report.now) if f else 0, lab)
        fail_pvs.add(f.pvs if f else 0, lab)
    n_low = Family(
        "pvarchiver_stores_low_space",
        "gauge",
        "Store (and journal) file systems with less free space than the threshold",
    ).add(sum(1 for sp in report.space if sp.low))
    low = Family(
        "pvarchiver_store_low_space", "gauge", "1 while the folder's file system is low on space"
    )
    free = Family(
        "pvarchiver_store_free_bytes",
        "gauge",
        "Free space of the folder's file system (checked every few seconds)",
    )
    threshold = Family(
        "pvarchiver_store_low_space_threshold_bytes",
        "gauge",
        "Free space under which the folder counts as low",
    )
    for sp in report.space:
        lab = {"store": sp.name}
        low.add(1 if sp.low else 0, lab)
        free.add(sp.free, lab)
        threshold.add(sp.threshold, lab)
    fams = [n_failing, fail, fail_secs, fail_pvs, n_low, low, free, threshold]
    fams.append(
        Family(
            "pvarchiver_unhealthy",
            "gauge",
            "1 while getApplianceHealth answers 503 (a store failing for too long)",
        ).add(1 if report.status == UNHEALTHY else 0)
    )
    if report.registry is not None:
        fams += registry_families(report.registry, report.now)
    if report.journal_errors is not None:
        fams.append(
            Family(
                "pvarchiver_journal_write_errors_total",
                "counter",
                "Failed writes and fsyncs of the write-ahead journal",
            ).add(report.journal_errors)
        )
    return fams


def registry_families(reg: RegistryState, now: float) -> list[Family]:
    """Whether the PV registry's database answers, and what that cost."""
    lab = {"backend": reg.backend}
    return [
        Family(
            "pvarchiver_registry_connected",
            "gauge",
            "1 while the PV registry's database answers (0: registry changes are refused)",
        ).add(1 if reg.connected else 0, lab),
        Family(
            "pvarchiver_registry_unreachable_seconds",
            "gauge",
            "How long the PV registry's database has been unreachable (0: it answers)",
        ).add(now - reg.since if reg.since else 0, lab),
        Family(
            "pvarchiver_registry_refused_changes_total",
            "counter",
            "Registry changes refused because its database was unreachable",
        ).add(reg.refused, lab),
        Family(
            "pvarchiver_registry_remote_changes_total",
            "counter",
            "Registry rows read after other appliances' change notifications",
        ).add(reg.remote_changes, lab),
        Family(
            "pvarchiver_registry_reconnects_total",
            "counter",
            "Times the PV registry's database came back after being lost",
        ).add(reg.reconnects, lab),
    ]


def etl_families(stages: Sequence[ETLStage], consolidations: Sequence[ETLStats]) -> list[Family]:
    """ETL stage timings (from an ``ETLScheduler``'s stages) and consolidation runs."""
    fams: list[Family] = []
    if stages:
        last = Family(
            "pvarchiver_etl_last_run_seconds", "gauge", "Wall time of the stage's last ETL pass"
        )
        moved = Family(
            "pvarchiver_etl_last_files_moved", "gauge", "Files moved by the stage's last pass"
        )
        errs = Family(
            "pvarchiver_etl_last_errors", "gauge", "Files the stage's last pass could not move"
        )
        runs = Family(
            "pvarchiver_etl_recent_runs", "gauge", "ETL passes kept in the stage's history"
        )
        nxt = Family(
            "pvarchiver_etl_next_run_timestamp_seconds", "gauge", "When the stage runs next"
        )
        discarded = Family(
            "pvarchiver_etl_last_files_discarded",
            "gauge",
            "Files the stage's last pass deleted unmoved (a blackhole destination: retention)",
        )
        seen: dict[tuple[str, str], int] = {}
        for st in stages:
            lab = {"source": st.source.name, "dest": st.dest.name}
            pair = (st.source.name, st.dest.name)
            seen[pair] = seen.get(pair, 0) + 1
            if seen[pair] > 1:  # two chains with same-named stores (MTS with hold=2 and 3)
                lab["variant"] = str(seen[pair])
            if st.last is not None:
                last.add(st.last.seconds, lab)
                moved.add(st.last.files_moved, lab)
                discarded.add(st.last.files_discarded, lab)
                errs.add(len(st.last.errors), lab)
            runs.add(len(st.history), lab)
            nxt.add(st.next_run, lab)
        fams += [f for f in (last, moved, discarded, errs, runs, nxt) if f.samples]
    cons = Family(
        "pvarchiver_consolidation_seconds",
        "summary",
        "Wall time of consolidateDataForPV ETL steps (last 100)",
    )
    cons.add(sum(s.seconds for s in consolidations), suffix="_sum")
    cons.add(len(consolidations), suffix="_count")
    fams.append(cons)
    return fams


async def metrics_text(mgmt: Mgmt, scheduler: ETLScheduler | None) -> str:
    now = time.time()
    s = summarize(mgmt, mgmt.link.snapshots(), now)
    usage = await mgmt.usage.get()
    stages = scheduler.stages if scheduler is not None else []
    fams = appliance_families(s, mgmt.link.engine.write_timer)
    fams += store_families(usage, now)
    fams += health_families(mgmt.health.report(now))
    fams += etl_families(stages, mgmt.consolidations)
    return render(fams)
