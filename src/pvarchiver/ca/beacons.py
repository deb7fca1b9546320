"""Beacon anomaly detection for a CA client (pure: no sockets, time is passed in).

A CA server sends beacons (RSRV_IS_UP) with an id that grows by one each time. A beacon
from a server not heard before, or whose id is not the previous one + 1, means a server
appeared or restarted: channels still being searched for may be there now, so the client
searches them again at once with the backoff restarted instead of waiting minutes for
the next try (libca does the same). The same beacon reaching us twice (through two
interfaces, or forwarded by a repeater as well) is not an anomaly.

:class:`BeaconMonitor` makes that decision; the asyncio layer parses datagrams and acts
on it (``SearchScheduler.reset`` when channels are unresolved).
"""

from __future__ import annotations

__all__ = ["BeaconMonitor"]

Server = tuple[str, int]


class BeaconMonitor:
    """The latest beacon id of every server seen, and how many anomalies there were."""

    __slots__ = ("_last", "_seen", "anomalies")

    def __init__(self) -> None:
        self._last: dict[Server, int] = {}
        self._seen: dict[Server, float] = {}
        self.anomalies = 0  #: beacons from a new or restarted server

    def beacon(self, server: Server, beacon_id: int, now: float) -> bool:
        """A beacon from ``server`` (host, CA port) arrived at ``now``.

        Returns True if it is an anomaly: unresolved names should be searched again now,
        with their backoff restarted.
        """
        last = self._last.get(server)
        self._last[server] = beacon_id
        self._seen[server] = now
        if last is not None and (beacon_id == (last + 1) & 0xFFFFFFFF or beacon_id == last):
            return False  # the next beacon, or the same one via a second path
        self.anomalies += 1
        return True

    def last_seen(self, server: Server) -> float | None:
        """When the latest beacon of ``server`` arrived (None: never)."""
        return self._seen.get(server)

    def __len__(self) -> int:
        return len(self._last)
