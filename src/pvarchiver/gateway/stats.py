"""The gateway's statistics and control PVs (``<prefix>:vctotal`` ... ``<prefix>:quitFlag``).

Names, descriptions and semantics follow ca-gateway's ``initStats``
(gateway.md §3.2): every PV is a DBR_DOUBLE with a ``.DESC`` string PV; rates
are recomputed every ``interval`` seconds (10 s in ca-gateway); a write of a
value > 0 to a flag PV triggers its action, after which the value returns to
0 (ISIS and PCDS tooling writes ``newAsFlag`` 1 and polls until it reads 0).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ..ca import dbr
from ..ca.dbr_encode import PVState, default_meta
from ..ca.server_pv import ServedPV

if TYPE_CHECKING:
    from ..ca.server import ServerChannel

__all__ = ["COUNTERS", "FLAGS", "RATES", "GatewayStats", "StatPV"]

# name -> .DESC text
COUNTERS = {
    "vctotal": "Total VCs",
    "pvtotal": "Total PVs",
    "connected": "Connected PVs",
    "active": "Active PVs",
    "inactive": "Inactive PVs",
    "unconnected": "Unconnected PVs",
    "connecting": "Connecting PVs",
    "dead": "Dead PVs",
    "disconnected": "Disconnected PVs",
}
RATES = {
    "clientEventRate": "Client Event Rate",
    "clientPostRate": "Client Post Rate",
    "existTestRate": "Exist Test Rate",
    "loopRate": "Loop Rate",
    "cpuFract": "CPU Fraction",
    "load": "Load",
    "serverEventRate": "Server Event Rate",
    "serverPostRate": "Server Post Rate",
}
FLAGS = {
    "commandFlag": "Command Flag",
    "report1Flag": "Report 1 Flag",
    "report2Flag": "Report 2 Flag",
    "report3Flag": "Report 3 Flag",
    "newAsFlag": "New Access Security Flag",
    "quitFlag": "Quit Flag",
    "quitServerFlag": "Quit Server Flag",
}


class StatPV(ServedPV):
    """A DOUBLE statistics PV; flag PVs run ``action`` on a write > 0."""

    def __init__(self, name: str, precision: int, action: Callable[[], Any] | None = None):
        meta = default_meta(precision=precision)
        super().__init__(name, PVState.from_value(dbr.DOUBLE, 0.0, meta=meta))
        self.action = action
        self.writable = action is not None

    def set(self, value: float) -> None:
        assert self.state is not None
        if self.state.value() != value:
            self.update(PVState.from_value(dbr.DOUBLE, value, meta=self.state.meta))

    def write(self, dbr_type: int, count: int, payload: bytes, channel: ServerChannel) -> None:
        super().write(dbr_type, count, payload, channel)
        assert self.state is not None
        if self.action is not None and float(self.state.value()) > 0:
            self.action()


class DescPV(ServedPV):
    """The read-only ``.DESC`` string of a statistics PV."""

    def __init__(self, name: str, text: str) -> None:
        super().__init__(name, PVState.from_value(dbr.STRING, text), writable=False)


class GatewayStats:
    """Owns the statistics PVs and refreshes them from the gateway's counters."""

    def __init__(self, prefix: str, actions: dict[str, Callable[[], Any]]) -> None:
        self.prefix = prefix
        self.pvs: dict[str, ServedPV] = {}
        self.values: dict[str, StatPV] = {}
        for group, prec in ((COUNTERS, 0), (RATES, 2), (FLAGS, 0)):
            for key, desc in group.items():
                p = 3 if key in ("cpuFract", "load") else prec
                pv = StatPV(f"{prefix}:{key}", p, actions.get(key) if group is FLAGS else None)
                self.values[key] = pv
                self.pvs[pv.name] = pv
                self.pvs[pv.name + ".DESC"] = DescPV(pv.name + ".DESC", desc)
        self._last: dict[str, float] = {}
        self._last_t = time.monotonic()
        self._last_cpu = time.process_time()

    def get(self, real_name: str) -> ServedPV | None:
        return self.pvs.get(real_name)

    def reset_flag(self, key: str) -> None:
        self.values[key].set(0.0)

    def set_counts(self, counts: dict[str, int]) -> None:
        for key, value in counts.items():
            self.values[key].set(float(value))

    def update_rates(self, totals: dict[str, float]) -> None:
        """``totals``: monotonically growing counters keyed like RATES (except cpu/load)."""
        now = time.monotonic()
        cpu = time.process_time()
        dt = max(1e-6, now - self._last_t)
        for key, total in totals.items():
            prev = self._last.get(key, total)
            self.values[key].set(round((total - prev) / dt, 2))
            self._last[key] = total
        self.values["cpuFract"].set(round((cpu - self._last_cpu) / dt, 3))
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
        self.values["load"].set(round(load, 3))
        self._last_t, self._last_cpu = now, cpu
