"""Appliance-wide numbers shared by getApplianceMetrics, getStorageMetrics and ``/metrics``.

One place computes them so that the UI's metrics page and a Prometheus scraper never
disagree. The AA's ``secondsConsumedByWritter`` and the write-latency metric come from the
engine's own :class:`~pvarchiver.engine.metrics.WriteTimer`.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass

from ..engine.metrics import WriteTimer
from .engine_link import EngineStatus
from .health import HealthReport
from .reports import fmt_number, pv_rates
from .service import Mgmt
from .storage_usage import StoreUsage, Usage

GB = 1024**3


# ---------------------------------------------------------------------- the numbers
@dataclass
class Summary:
    """What the engine and registry say right now (no disk access)."""

    pv_count: int
    paused: int
    connected: int
    disconnected: int
    pending_requests: int
    event_rate: float
    data_rate: float  # bytes/s
    events_received: int
    events_stored: int
    samples_written: int
    write_errors: int
    drops: Counter[str]
    buffer_bytes: int
    buffer_limit_bytes: int
    buffer_peak_bytes: int
    uptime_seconds: float


def summarize(mgmt: Mgmt, snaps: Mapping[str, EngineStatus], now: float) -> Summary:
    infos = mgmt.registry.typeinfos()
    by_name = {i.pvName: i for i in infos}
    paused = sum(1 for i in infos if i.paused)
    connected = sum(1 for n, s in snaps.items() if s.connected and n in by_name)
    ev = dr = 0.0
    received = stored = written = errors = 0
    drops: Counter[str] = Counter()
    for name, s in snaps.items():
        r = pv_rates(s, by_name.get(name), now)
        ev += r.events_per_sec
        dr += r.bytes_per_sec
    # counters over every PV the engine holds (paused ones too), so that pausing a PV does
    # not make a Prometheus counter go down; only deleting a PV does
    for pv in list(mgmt.link.engine.pvs.values()):
        pm = pv.metrics
        received += pm.events_received
        stored += pm.events_stored
        written += pm.samples_written
        errors += pm.write_errors
        for reason, n in pm.drops.items():
            drops[str(reason)] += n
    budget = mgmt.link.engine.budget
    return Summary(
        pv_count=len(infos),
        paused=paused,
        connected=connected,
        disconnected=max(0, len(infos) - paused - connected),
        pending_requests=len(mgmt.manager.pending),
        event_rate=ev,
        data_rate=dr,
        events_received=received,
        events_stored=stored,
        samples_written=written,
        write_errors=errors,
        drops=drops,
        buffer_bytes=budget.used,
        buffer_limit_bytes=budget.limit,
        buffer_peak_bytes=budget.peak,
        uptime_seconds=max(0.0, now - mgmt.manager.started_epoch),
    )


def uptime_text(seconds: float) -> str:
    """``2d 3h 4m 5s`` (the AA's MGMT_uptime style), leading zero units left out."""
    s = int(seconds)
    parts = []
    for unit, n in (("d", 86400), ("h", 3600), ("m", 60)):
        if s >= n or parts:
            parts.append(f"{s // n}{unit}")
            s %= n
    parts.append(f"{s}s")
    return " ".join(parts)


def appliance_row(mgmt: Mgmt, s: Summary, timer: WriteTimer | None) -> dict[str, str]:
    """One getApplianceMetrics object (AA keys, all strings)."""
    write_secs = timer.seconds if timer is not None else 0.0
    utilized = write_secs * 100 / s.uptime_seconds if s.uptime_seconds > 0 else 0.0
    return {
        "instance": mgmt.config.identity,
        "status": "Working",
        "MGMT_uptime": uptime_text(s.uptime_seconds),
        "pvCount": str(s.pv_count),
        "connectedPVCount": str(s.connected),
        "disconnectedPVCount": str(s.disconnected),
        "pausedPVCount": str(s.paused),
        "pendingArchiveRequests": str(s.pending_requests),
        "eventRate": fmt_number(s.event_rate),
        "dataRate": fmt_number(s.data_rate),
        "dataRateGBPerDay": fmt_number(s.data_rate * 86400 / GB),
        "dataRateGBPerYear": fmt_number(s.data_rate * 86400 * 365 / GB),
        "secondsConsumedByWritter": fmt_number(write_secs),
        "capacityUtilized": fmt_number(utilized),
    }


def appliance_details(mgmt: Mgmt, s: Summary, timer: WriteTimer | None) -> list[dict[str, str]]:
    """getApplianceMetricsForAppliance: ``{name, value, source}`` rows for the detail table."""
    rows: list[tuple[str, str, str]] = [
        ("Appliance identity", mgmt.config.identity, "mgmt"),
        ("Uptime", uptime_text(s.uptime_seconds), "mgmt"),
        ("Total PV count", str(s.pv_count), "mgmt"),
        ("Paused PV count", str(s.paused), "mgmt"),
        ("Connected PV count", str(s.connected), "engine"),
        ("Disconnected PV count", str(s.disconnected), "engine"),
        ("Archive requests in the workflow", str(s.pending_requests), "mgmt"),
        ("Event rate (events/sec)", fmt_number(s.event_rate), "engine"),
        ("Data rate (bytes/sec)", fmt_number(s.data_rate), "engine"),
        ("Data rate (GB/day)", fmt_number(s.data_rate * 86400 / GB), "engine"),
        ("Events received", str(s.events_received), "engine"),
        ("Events stored", str(s.events_stored), "engine"),
        ("Samples written to the STS", str(s.samples_written), "engine"),
        ("Write errors", str(s.write_errors), "engine"),
        ("Engine buffer memory (MB)", fmt_number(s.buffer_bytes / 2**20), "engine"),
        ("Engine buffer memory limit (MB)", fmt_number(s.buffer_limit_bytes / 2**20), "engine"),
        ("Engine buffer memory peak (MB)", fmt_number(s.buffer_peak_bytes / 2**20), "engine"),
    ]
    for reason, n in sorted(s.drops.items()):
        rows.append((f"Dropped events ({reason})", str(n), "engine"))
    if timer is not None:
        rows += [
            ("Write cycles", str(timer.cycles), "engine"),
            ("Seconds consumed by the writer", fmt_number(timer.seconds, 3), "engine"),
            ("Last write cycle (s)", fmt_number(timer.last_seconds, 3), "engine"),
            ("Longest write cycle (s)", fmt_number(timer.max_seconds, 3), "engine"),
        ]
    return [{"name": n, "value": v, "source": src} for n, v, src in rows]


def storage_rows(usage: Usage, health: HealthReport | None = None) -> list[dict[str, str]]:
    """getStorageMetrics: one object per store, the AA's GB strings plus our own use and,
    with ``health``, the store's low-space and write-failure state."""
    rows = [_store_row(st, usage.taken_epoch) for st in usage.stores]
    if health is not None:
        states = {r["name"]: r for r in health.as_json("")["stores"]}
        for row in rows:
            state = states.get(row["name"], {})
            for key in STORE_HEALTH_KEYS:
                if key in state:
                    row[key] = state[key]
    return rows


#: getApplianceHealth's per-store keys that getStorageMetrics repeats
STORE_HEALTH_KEYS = (
    "lowSpace",
    "lowSpaceThresholdBytes",
    "writeFailing",
    "writeFailingSince",
    "writeError",
)


def _store_row(st: StoreUsage, taken: float) -> dict[str, str]:
    pct = st.available_bytes * 100 / st.total_bytes if st.total_bytes else 0.0
    return {
        "name": st.name,
        "total_space": fmt_number(st.total_bytes / GB),
        "available_space": fmt_number(st.available_bytes / GB),
        "available_space_percent": fmt_number(pct),
        "pvarchiver_space_used_bytes": str(st.used_bytes),
        "pvarchiver_space_used_MB": fmt_number(st.used_bytes / 2**20),
        "pvCount": str(st.pv_count),
        "fileCount": str(st.files),
        "rootFolder": str(st.root),
        "measuredAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(taken)),
    }
