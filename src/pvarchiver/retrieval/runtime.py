"""What retrieval keeps about itself while it runs: request counts per PV (the AA's
``RetrievalMetrics``) and the site's retrieval options from ``archappl.properties``.

The AA shows the counts in its retrieval BPL (getPVDetails, getApplianceMetrics...); they live
in memory only, as in the AA, and start from zero at each start. (Process samples for
getProcessMetrics are the process's own, :data:`pvarchiver.mgmt.process_metrics.PROCESS`.)
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# the AA's RetrievalMetrics row names
NUMBER_OF_REQUESTS = "Number of Retrieval Requests"
LAST_REQUEST = "Time of last Retrieval Request"
UNIQUE_USERS = "Number of unique users"


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


@dataclass
class RetrievalRuntime:
    """Everything above, one per web application."""

    options: RetrievalOptions = field(default_factory=RetrievalOptions)
    metrics: RetrievalMetrics = field(default_factory=RetrievalMetrics)
