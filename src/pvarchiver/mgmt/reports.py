"""The AA's per-PV reports as pure functions: engine snapshots + typeinfos in, rows out.

Kept free of HTTP and of the clock (``now`` is a parameter) so that sorting, formatting and
limits can be tested without a server; :mod:`report_actions` only fetches the inputs.
Every value in a row is a string, as the AA's json-simple output; rows are sorted the way
the AA's reports sort (biggest first, newest first, silent-longest first), ties by name so
that the order is stable between calls.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from ..engine.metrics import DropReason
from .engine_link import EngineStatus
from .typeinfo import PVTypeInfo, report_time

#: the AA's three dropped-event reports, by the engine's drop reasons they count
TIMESTAMP_DROPS = frozenset(
    {
        DropReason.BEFORE_1991,
        DropReason.IN_FUTURE,
        DropReason.NOT_INCREASING,
        DropReason.TOO_OLD,
    }
)
BUFFER_DROPS = frozenset({DropReason.BUFFER_FULL})
TYPE_CHANGE_DROPS = frozenset({DropReason.TYPE_CHANGE})

#: bytes of one stored scalar event when the typeinfo has no measured size (a PB line of a
#: double with its timestamp is 15-25 bytes)
DEFAULT_BYTES_PER_EVENT = 20

Row = dict[str, str]


def apply_limit(rows: list[Row], limit: int) -> list[Row]:
    """``limit`` < 0 means all rows (the AA: "if unspecified, no limit")."""
    return rows if limit < 0 else rows[:limit]


def fmt_number(x: float, digits: int = 2) -> str:
    """The AA's ``DecimalFormat("###,###.##")``: thousands separators, at most ``digits``
    decimals, no trailing zeros (``1,234.5``, ``0``)."""
    text = f"{x:,.{digits}f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return "0" if text in ("-0", "") else text


# ---------------------------------------------------------------------- rates
@dataclass(frozen=True)
class Rates:
    """A PV's event and storage rate since it first connected in this process."""

    events_per_sec: float
    bytes_per_sec: float


def pv_rates(snap: EngineStatus, info: PVTypeInfo | None, now: float) -> Rates:
    """Rates as the AA's engine computes them: counts divided by the seconds since the
    connection was first established (0 before that). Bytes use the typeinfo's measured
    bytes per event, because the engine counts events, not bytes, per PV."""
    start = snap.first_connected_epoch
    if not start or now <= start:
        return Rates(0.0, 0.0)
    secs = now - start
    per_event = info.computedBytesPerEvent if info is not None else 0
    per_event = per_event if per_event > 0 else DEFAULT_BYTES_PER_EVENT
    return Rates(snap.events_received / secs, snap.events_stored * per_event / secs)


def _by_value_desc(rows: list[tuple[float, str, Row]]) -> list[Row]:
    rows.sort(key=lambda t: (-t[0], t[1]))
    return [r for _, _, r in rows]


def event_rate_report(
    snaps: Mapping[str, EngineStatus], infos: Mapping[str, PVTypeInfo], now: float
) -> list[Row]:
    """getEventRateReport: ``pvName, eventRate`` (events/s), fastest first."""
    rows = []
    for name, s in snaps.items():
        r = pv_rates(s, infos.get(name), now).events_per_sec
        rows.append((r, name, {"pvName": name, "eventRate": fmt_number(r)}))
    return _by_value_desc(rows)


def storage_rate_report(
    snaps: Mapping[str, EngineStatus], infos: Mapping[str, PVTypeInfo], now: float
) -> list[Row]:
    """getStorageRateReport: KB/hour, MB/day, GB/year, biggest first."""
    rows = []
    for name, s in snaps.items():
        bps = pv_rates(s, infos.get(name), now).bytes_per_sec
        row = {
            "pvName": name,
            "storageRate_KBperHour": fmt_number(bps * 3600 / 1024),
            "storageRate_MBperDay": fmt_number(bps * 86400 / (1024 * 1024)),
            "storageRate_GBperYear": fmt_number(bps * 86400 * 365 / (1024**3)),
        }
        rows.append((bps, name, row))
    return _by_value_desc(rows)


# ---------------------------------------------------------------------- registry
def recently_added(infos: Iterable[PVTypeInfo], identity: str) -> list[Row]:
    """getRecentlyAddedPVs: ``pvName, instance, creationTime``, newest first."""
    ordered = sorted(infos, key=lambda i: (-i.creationTime.timestamp(), i.pvName))
    return [
        {
            "pvName": i.pvName,
            "instance": identity,
            "creationTime": report_time(i.creationTime.timestamp()),
        }
        for i in ordered
    ]


def recently_modified(infos: Iterable[PVTypeInfo], identity: str) -> list[Row]:
    """getRecentlyModifiedPVs: ``pvName, instance, modificationTime``, newest first."""
    ordered = sorted(infos, key=lambda i: (-i.modificationTime.timestamp(), i.pvName))
    return [
        {
            "pvName": i.pvName,
            "instance": identity,
            "modificationTime": report_time(i.modificationTime.timestamp()),
        }
        for i in ordered
    ]


# ---------------------------------------------------------------------- connections
def lost_connections(snaps: Mapping[str, EngineStatus], identity: str) -> list[Row]:
    """getLostConnectionsReport: most lost/regained connections first."""
    rows = [
        (
            float(s.connection_loss_regain_count),
            name,
            {
                "pvName": name,
                "instance": identity,
                "lostConnections": str(s.connection_loss_regain_count),
                "currentlyConnected": "Yes" if s.connected else "No",
            },
        )
        for name, s in snaps.items()
    ]
    return _by_value_desc(rows)


def silent_pvs(snaps: Mapping[str, EngineStatus], identity: str) -> list[Row]:
    """getSilentPVsReport ("PVs by last known timestamp"): the longest silent first, PVs
    that never sent an event before all others."""
    ordered = sorted(snaps.items(), key=lambda kv: (kv[1].last_event_epoch, kv[0]))
    return [
        {"pvName": name, "instance": identity, "lastKnownEvent": report_time(s.last_event_epoch)}
        for name, s in ordered
    ]


# ---------------------------------------------------------------------- drops
def dropped_events(
    snaps: Mapping[str, EngineStatus], identity: str, reasons: frozenset[DropReason]
) -> list[Row]:
    """One of the dropped-events reports: PVs that dropped events for one of ``reasons``,
    most drops first, with the count per reason (``eventsDropped`` is their sum)."""
    wanted = {str(r) for r in reasons}
    rows = []
    for name, s in snaps.items():
        counts = {k: v for k, v in s.drops.items() if k in wanted and v}
        total = sum(counts.values())
        if not total:
            continue
        row = {"pvName": name, "instance": identity, "eventsDropped": str(total)}
        for k, v in sorted(counts.items()):
            row[f"dropped ({k})"] = str(v)
        rows.append((float(total), name, row))
    return _by_value_desc(rows)


# ---------------------------------------------------------------------- storage
def storage_consumed(per_pv: Mapping[str, int], identity: str) -> list[Row]:
    """getPVsByStorageConsumed: bytes over all stores per PV, biggest first (the AA's keys:
    ``storageConsumed`` in bytes, ``storageConsumedInMB`` formatted)."""
    rows = [
        (
            float(n),
            name,
            {
                "pvName": name,
                "instance": identity,
                "storageConsumed": str(n),
                "storageConsumedInMB": fmt_number(n / (1024 * 1024)),
            },
        )
        for name, n in per_pv.items()
    ]
    return _by_value_desc(rows)
