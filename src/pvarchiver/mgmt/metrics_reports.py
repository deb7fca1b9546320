"""The rows of the AA's remaining reports and metrics calls, as pure functions (snapshots,
typeinfos, samples and ``now`` in; JSON-ready values out), for
:mod:`pvarchiver.web.mgmt_metrics_actions`.

Values are strings where the AA writes strings (json-simple maps, ``JSONEncoder`` beans);
numbers the AA formats with ``Double.toString`` go through :func:`java_double` and durations
with :func:`java_duration`, so a client that parses them gets what it would from the AA.
"""

from __future__ import annotations

import functools
import html
import json
import math
import re
import time
from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ..storage.partitions import Granularity
from .engine_link import EngineStatus
from .metaget import MetaGet
from .process_metrics import ProcessSample
from .reports import TIMESTAMP_DROPS, Row
from .typeinfo import PVTypeInfo, report_time


# ---------------------------------------------------------------------- Java's formats
def java_double(x: float) -> str:
    """``Double.toString``: ``5.0``, ``0.25``, ``1.0E7``, ``1.5E-4`` (shortest digits)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "Infinity" if x > 0 else "-Infinity"
    if x == 0:
        return "-0.0" if math.copysign(1.0, x) < 0 else "0.0"
    if 1e-3 <= abs(x) < 1e7:
        return repr(float(x))  # positional in this range, with the shortest digits
    sign, digits, exp = Decimal(repr(float(x))).normalize().as_tuple()
    assert isinstance(exp, int)
    text = "".join(map(str, digits))
    return f"{'-' if sign else ''}{text[0]}.{text[1:] or '0'}E{exp + len(text) - 1}"


def java_duration(seconds: float) -> str:
    """``java.time.Duration.toString`` at millisecond resolution: ``PT49H3M2.5S``."""
    ms = max(0, round(seconds * 1000))
    if ms == 0:
        return "PT0S"
    hours, rest = divmod(ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    out = "PT" + (f"{hours}H" if hours else "") + (f"{minutes}M" if minutes else "")
    if rest:
        secs, frac = divmod(rest, 1000)
        out += f"{secs}" + (f".{frac:03d}".rstrip("0") if frac else "") + "S"
    return out


def aa_uptime(duration: str) -> str:
    """getInstanceMetrics' ``MGMT_uptime`` made from the Duration text as the AA makes it:
    ``PT49H3M2.5S`` -> ``49h 3m 2.5s``."""
    return re.sub(r"(\d[HMS])(?!$)", r"\1 ", duration[2:]).lower()


# ---------------------------------------------------------------------- engine reports
def archived_waveforms(
    snaps: Mapping[str, EngineStatus], infos: Mapping[str, PVTypeInfo]
) -> list[Row]:
    """getArchivedWaveforms: PVs in the engine whose type is a waveform, by name. A PV not
    connected yet has its type and element count from its typeinfo (the AA's channel has
    them from there too)."""
    rows = []
    for name in sorted(snaps):
        s = snaps[name]
        info = infos.get(name)
        dbr = s.dbr_type or (info.DBRType if info is not None else "")
        if not dbr.startswith("DBR_WAVEFORM"):
            continue
        count = s.element_count or (info.elementCount if info is not None else 0)
        method = s.method if s.method in ("MONITOR", "SCAN") else "DONT_ARCHIVE"
        rows.append(
            {
                "pvName": name,
                "samplingmethod": method,
                "samplingperiod": java_double(s.period),
                "elementCount": str(count),
                "dbrtype": dbr,
            }
        )
    return rows


def slow_changing_dropped(
    snaps: Mapping[str, EngineStatus], infos: Mapping[str, PVTypeInfo]
) -> list[Row]:
    """getSlowChangingPVsWithDroppedEvents: PVs that dropped more events for a wrong
    timestamp than they archived (the AA's ``eventCounts`` are the events put in the
    buffer: our events stored), paused PVs left out; most drops first, then by name."""
    wanted = {str(r) for r in TIMESTAMP_DROPS}
    found = []
    for name, s in snaps.items():
        info = infos.get(name)
        if info is not None and info.paused:
            continue
        dropped = sum(v for k, v in s.drops.items() if k in wanted)
        if dropped > s.events_stored:
            found.append((dropped, name, s.events_stored))
    found.sort(key=lambda t: (-t[0], t[1]))
    return [
        {"pvName": n, "eventsDropped": str(d), "totalEvents": str(total)} for d, n, total in found
    ]


# ---------------------------------------------------------------------- creation / time span
def creation_report(infos: Iterable[PVTypeInfo], regex: re.Pattern[str] | None) -> list[Row]:
    """getCreationReportForAppliance: ``pvName, creationTS`` (epoch seconds of the
    typeinfo's creation) and ``paused``, for PVs whose name the regex matches whole."""
    rows = []
    for info in sorted(infos, key=lambda i: i.pvName):
        if regex is not None and not regex.fullmatch(info.pvName):
            continue
        rows.append(
            {
                "pvName": info.pvName,
                "creationTS": str(int(info.creationTime.timestamp())),
                "paused": "true" if info.paused else "false",
            }
        )
    return rows


def time_span_report(
    creation: list[Row], snaps: Mapping[str, EngineStatus], regex: re.Pattern[str] | None
) -> dict[str, Row]:
    """getTimeSpanReport: the creation rows by PV name (sorted), each with ``lastEvent``
    (epoch seconds, ``-1`` for none yet) when the engine holds the PV."""
    out = {r["pvName"]: dict(r) for r in creation}
    for name, s in snaps.items():
        if regex is not None and not regex.fullmatch(name):
            continue
        row = out.get(name)
        if row is not None:
            row["pvName"] = name
            row["lastEvent"] = str(s.last_event_epoch or -1)
    return dict(sorted(out.items()))


# ---------------------------------------------------------------------- meta gets
def metaget_rows(
    metagets: Mapping[str, MetaGet], pva: Mapping[str, bool], identity: str, now: float
) -> list[dict[str, str]]:
    """getMetaGets: the PVs in their initial sampling (METAINFO_REQUESTED), by name. The
    window starts when the PV connects (``isScheduled``); ``timerRemaining`` is the
    seconds left of it."""
    rows = []
    for name in sorted(metagets):
        mg = metagets[name]
        if mg.done:
            continue
        r = mg.result
        row = {
            "pvName": name,
            "appliance": identity,
            "isScheduled": "true" if r.connected else "false",
            "scheduleStart": report_time(r.connected_epoch),
            "usePVAccess": "true" if pva.get(name) else "false",
            "lowLevel": json.dumps(_low_level(mg)),
            "eventsSoFar": str(r.events),
            "storageSoFar": str(r.bytes),
            "mainMeta": _main_meta(mg),
        }
        if r.connected:
            left = r.connected_epoch + mg.window - now
            row["timerRemaining"] = str(max(0, math.ceil(left)))
            row["timerDone"] = "false"
        rows.append(row)
    return rows


def _low_level(mg: MetaGet) -> list[dict[str, str]]:
    r = mg.result

    def kv(k: str, v: object) -> dict[str, str]:
        return {"name": k, "value": str(v) if v not in (None, "") else "N/A", "source": "CA"}

    return [
        kv("Connected", "Yes" if r.connected else "No"),
        kv("Server", r.host),
        kv("Native type", r.native_type if r.native_type >= 0 else None),
        kv("Element count", r.count or None),
    ]


def _main_meta(mg: MetaGet) -> str:
    """The AA's HTML list of what is known about the PV so far."""
    r = mg.result
    items = [f"Events so far: {r.events}", f"Storage so far (bytes): {r.bytes}"]
    if r.connected:
        items.append(f"Element count: {r.count}")
    items += [f"{k}: {v}" for k, v in sorted(r.fields.items())]
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


# ---------------------------------------------------------------------- aggregate
@functools.lru_cache(maxsize=1024)  # most PVs share a few store URLs
def _name_and_seconds(url: str) -> tuple[str, int] | None:
    """A store URL's ``name`` and partition seconds, read from its query alone: typeinfos
    keep the AA's macros (``${ARCHAPPL_SHORT_TERM_FOLDER}``) in ``rootFolder``, which this
    does not need. None for a blackhole or a URL without a name or granularity (the AA
    logs those and leaves them out)."""
    parts = urlsplit(url)
    if parts.scheme == "blackhole":
        return None
    query = dict(parse_qsl(parts.query))
    name, gran = query.get("name"), query.get("partitionGranularity")
    if not name or not gran:
        return None
    try:
        return name, Granularity.parse(gran).approx_seconds
    except ValueError:
        return None


def aggregated_info(infos: Iterable[PVTypeInfo]) -> dict[str, Any]:
    """getAggregatedApplianceInfo over the typeinfos as they are now: rates summed from
    the typeinfos, and per store the storage rate times its partition's seconds (the AA's
    "storage impact"), truncated to whole bytes as the AA's ``long`` sum does."""
    storage_rate = event_rate = 0.0
    count = 0
    impact: dict[str, int] = {}
    for info in infos:
        storage_rate += info.computedStorageRate
        event_rate += info.computedEventRate
        count += 1
        for url in info.dataStores:
            store = _name_and_seconds(url)
            if store is not None:
                name, seconds = store
                impact[name] = int(impact.get(name, 0) + seconds * info.computedStorageRate)
    return {
        "totalStorageRate": java_double(storage_rate),
        "totalEventRate": java_double(event_rate),
        "totalPVCount": java_double(float(count)),
        "totalStorageImpact": {k: str(v) for k, v in sorted(impact.items())},
    }


# ---------------------------------------------------------------------- process
def process_sample_json(s: ProcessSample) -> dict[str, str]:
    """One sample as the AA's ``ProcessMetric`` bean (strings), plus our own figures."""
    out = {
        "timeInEpochSeconds": str(s.epoch),
        "systemLoadAverage": java_double(s.load_average),
    }
    pct = s.memory_percent
    if pct is not None:
        out["heapUsedPercent"] = java_double(pct)
    extra = {
        "rssBytes": s.rss_bytes,
        "physicalMemoryBytes": s.physical_bytes,
        "osThreads": s.os_threads,
        "pythonThreads": s.python_threads,
        "openFiles": s.open_files,
    }
    out.update({k: str(v) for k, v in extra.items() if v is not None})
    if s.cpu_percent is not None:
        out["cpuPercent"] = java_double(round(s.cpu_percent, 3))
    return out


#: the AA's web applications: here all four are this one process
PROCESS_PREFIXES = ("MGMT_", "ENGINE_", "ETL_", "RETRIEVAL_")


def process_metrics_json(
    samples: list[ProcessSample], uptime: float, started: float
) -> dict[str, Any]:
    """getProcessMetrics: ``<APP>_uptime`` (seconds, a JSON number), ``<APP>_start`` and
    ``<APP>_metrics`` for each of the AA's four applications, all this process's."""
    mets = [process_sample_json(s) for s in samples]
    out: dict[str, Any] = {}
    for p in PROCESS_PREFIXES:
        out[p + "uptime"] = int(uptime)
        out[p + "start"] = report_time(started)
        out[p + "metrics"] = mets
    return out


def local_epoch_millis(epoch: int) -> int:
    """The AA's ``convertToLocalEpochMillis``: UTC millis shifted by the local offset (the
    chart library it feeds draws UTC)."""
    if epoch == 0:
        return 0
    return (epoch + (time.localtime(epoch).tm_gmtoff or 0)) * 1000


def process_chart(samples: list[ProcessSample]) -> list[dict[str, Any]]:
    """getProcessMetricsDataForAppliance: the AA's chart series ``{label, data: [[ms, y]]}``;
    the three heap series are the one process's memory share (see the module docs of
    :mod:`.process_metrics`)."""
    load = [[local_epoch_millis(s.epoch), s.load_average] for s in samples]
    mem = [
        [local_epoch_millis(s.epoch), pct] for s in samples if (pct := s.memory_percent) is not None
    ]
    out: list[dict[str, Any]] = []
    if load:
        out.append({"label": "system_load (%)", "data": load})
    if mem:
        for label in ("engine_heap (%)", "etl_heap (%)", "retrieval_heap (%)"):
            out.append({"label": label, "data": mem})
    return out


def process_rows(s: ProcessSample, uptime: float) -> list[dict[str, str]]:
    """Detail rows (``{name, value, source}``) of one sample, for getInstanceMetricsForAppliance."""
    rows = [("Process uptime", java_duration(uptime))]
    if s.rss_bytes is not None:
        rows.append(("Process resident memory (MB)", f"{s.rss_bytes / 2**20:.1f}"))
    if s.memory_percent is not None:
        rows.append(("Process memory of physical memory (%)", f"{s.memory_percent:.2f}"))
    if s.cpu_percent is not None:
        rows.append(("Process CPU since the last sample (%)", f"{s.cpu_percent:.1f}"))
    if s.os_threads is not None:
        rows.append(("Process threads (OS)", str(s.os_threads)))
    rows.append(("Python threads", str(s.python_threads)))
    if s.open_files is not None:
        rows.append(("Open files and sockets", str(s.open_files)))
    rows.append(("System load average (1 min)", f"{s.load_average:.2f}"))
    return [{"name": n, "value": v, "source": "mgmt"} for n, v in rows]
