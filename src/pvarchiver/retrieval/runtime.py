"""What retrieval keeps about itself while it runs: request counts per PV (the AA's
``RetrievalMetrics``), process samples (its ``ProcessMetrics``) and the site's retrieval
options from ``archappl.properties``.

The AA shows these in its retrieval BPL (getPVDetails, getApplianceMetrics...,
getProcessMetrics); they live in memory only, as in the AA, and start from zero at each start.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

# the AA's RetrievalMetrics row names
NUMBER_OF_REQUESTS = "Number of Retrieval Requests"
LAST_REQUEST = "Time of last Retrieval Request"
UNIQUE_USERS = "Number of unique users"

#: the AA keeps a day of one-a-minute process samples
_PROCESS_SAMPLES = 24 * 60
_SAMPLE_PERIOD = 60.0


@dataclass(frozen=True)
class RetrievalOptions:
    """The site's retrieval settings (:class:`pvarchiver.settings.RetrievalSettings`)."""

    #: the post-processor class ``usereduced=true`` means when no ``pp`` is given; the AA's
    #: shipped archappl.properties sets TwoWeekRaw (its code's fallback is FirstSamplePP)
    use_reduced: str = "org.epics.archiverappliance.retrieval.postprocessors.TwoWeekRaw"
    #: where getClientConfig finds ``configFile`` (None: not configured, every call 404)
    client_config_root: Path | None = None


@dataclass
class _PVCounts:
    requests: int = 0
    last: float | None = None
    users: set[str] = field(default_factory=set)


def _human(epoch: float | None) -> str:
    """The AA's ``convertToHumanReadableString``: ``Jan/02/2025 10:00:00 UTC``, or Never."""
    if not epoch:
        return "Never"
    lt = time.localtime(epoch)
    return time.strftime("%b/%d/%Y %H:%M:%S ", lt) + (lt.tm_zone or "UTC")


class RetrievalMetrics:
    """Requests per PV: how many, the last one's time and how many distinct clients (the
    client's address, as the AA's ``req.getRemoteAddr()``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._pvs: dict[str, _PVCounts] = {}

    def record(self, pv: str, user: str, now: float | None = None) -> None:
        with self._lock:
            c = self._pvs.setdefault(pv, _PVCounts())
            c.requests += 1
            c.last = time.time() if now is None else now
            c.users.add(user)

    def _rows(self, c: _PVCounts) -> list[tuple[str, str]]:
        return [
            (NUMBER_OF_REQUESTS, str(c.requests)),
            (LAST_REQUEST, _human(c.last)),
            (UNIQUE_USERS, str(len(c.users))),
        ]

    def _summed(self) -> _PVCounts:
        total = _PVCounts()
        with self._lock:
            for c in self._pvs.values():
                total.requests += c.requests
                total.users |= c.users
                if c.last is not None and (total.last is None or c.last > total.last):
                    total.last = c.last
        return total

    def pv_details(self, pv: str) -> list[dict[str, str]]:
        """getPVDetails rows (zeros and "Never" for a PV nobody asked for, as the AA)."""
        with self._lock:
            c = self._pvs.get(pv)
            snapshot = _PVCounts(c.requests, c.last, set(c.users)) if c else _PVCounts()
        return [detail(n, v) for n, v in self._rows(snapshot)]

    def summary(self) -> dict[str, str]:
        """getApplianceMetrics: the three numbers over all PVs."""
        return dict(self._rows(self._summed()))

    def details(self) -> list[dict[str, str]]:
        """getApplianceMetricsForAppliance / getInstanceMetricsForAppliance rows."""
        return [detail(n, v) for n, v in self._rows(self._summed())]


def detail(name: str, value: str) -> dict[str, str]:
    """One ``{name, value, source}`` row of the AA's details tables (source ``retrieval``)."""
    return {"name": name, "value": value, "source": "retrieval"}


def _load_average() -> float:
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):  # Windows has none; Java answers -1 there too
        return -1.0


def _memory_percent() -> float:
    """Resident memory as a share of physical memory (Python has no heap maximum to divide
    by, which the AA's ``heapUsedPercent`` uses); -1 where the system does not tell."""
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            rss_pages = int(f.read().split()[1])
        total = os.sysconf("SC_PHYS_PAGES")
        return rss_pages * 100.0 / total if total > 0 else -1.0
    except (OSError, ValueError, IndexError, AttributeError):
        return -1.0


class ProcessMetrics:
    """One sample a minute (time, load average, memory %) for the last day, taken by a
    daemon thread started with the first request (so an idle test app starts none)."""

    def __init__(self, started: float | None = None) -> None:
        self.started = time.time() if started is None else started
        self.samples: deque[dict[str, str]] = deque(maxlen=_PROCESS_SAMPLES)
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def measure(self) -> None:
        self.samples.append(
            {
                "timeInEpochSeconds": str(int(time.time())),
                "systemLoadAverage": str(_load_average()),
                "heapUsedPercent": str(_memory_percent()),
            }
        )

    def ensure_sampling(self) -> None:
        """Take the first sample now and start the one-a-minute thread (once)."""
        with self._lock:
            if self._thread is not None:
                return
            self.measure()
            self._thread = threading.Thread(
                target=self._loop, name="retrieval-process-metrics", daemon=True
            )
            self._thread.start()

    def _loop(self) -> None:
        tick = threading.Event()  # never set: a sleep that is not a bare time.sleep
        while True:
            tick.wait(_SAMPLE_PERIOD)
            self.measure()

    def as_json(self, prefix: str = "RETRIEVAL_") -> dict[str, object]:
        """The AA's getProcessMetricsJSON(prefix): uptime (s), start time, the samples."""
        return {
            prefix + "uptime": int(time.time() - self.started),
            prefix + "start": _human(self.started),
            prefix + "metrics": list(self.samples),
        }


@dataclass
class RetrievalRuntime:
    """Everything above, one per web application."""

    options: RetrievalOptions = field(default_factory=RetrievalOptions)
    metrics: RetrievalMetrics = field(default_factory=RetrievalMetrics)
    process: ProcessMetrics = field(default_factory=ProcessMetrics)
