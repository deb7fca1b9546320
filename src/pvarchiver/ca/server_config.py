"""CA server settings (``EPICS_CAS_*`` variables) and the ECA status codes a server sends.

Kept apart from the asyncio server so the gateway's command line can build a
config (``-sip``, ``-sport``, ``-signore``) without touching sockets.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from .env import addr_list, yes
from .protocol import (  # the status codes a server sends, defined with the protocol
    ECA_BADCHID,
    ECA_BADCOUNT,
    ECA_BADTYPE,
    ECA_DISCONN,
    ECA_GETFAIL,
    ECA_NORDACCESS,
    ECA_NORMAL,
    ECA_NOWTACCESS,
    ECA_PUTFAIL,
    ECA_TIMEOUT,
    ECA_TOLARGE,
)

__all__ = [
    "ECA_BADCHID",
    "ECA_BADCOUNT",
    "ECA_BADTYPE",
    "ECA_DISCONN",
    "ECA_GETFAIL",
    "ECA_NORDACCESS",
    "ECA_NORMAL",
    "ECA_NOWTACCESS",
    "ECA_PUTFAIL",
    "ECA_TIMEOUT",
    "ECA_TOLARGE",
    "RIGHT_READ",
    "RIGHT_WRITE",
    "ServerConfig",
]

RIGHT_READ = 1
RIGHT_WRITE = 2


@dataclass
class ServerConfig:
    """Where the server listens, where beacons go, and the array limit it enforces.

    ``advertise_port`` (default: the bound TCP port) is what search replies
    and beacons announce; set it when a port mapping exposes the server under
    another port number.
    """

    interfaces: list[str] = field(default_factory=lambda: ["0.0.0.0"])
    port: int = 5064
    beacon_addrs: list[tuple[str, int]] = field(default_factory=list)
    beacon_period: float = 15.0
    ignore_addrs: set[str] = field(default_factory=set)
    max_array_bytes: int = 16384
    advertise_port: int | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServerConfig:
        """Read the server variables with CONFIG_ENV fallbacks.

        The beacon list is ``EPICS_CAS_BEACON_ADDR_LIST`` or, when unset,
        ``EPICS_CA_ADDR_LIST`` (as rsrv); with auto beacons on (the default
        follows ``EPICS_CA_AUTO_ADDR_LIST``) the limited broadcast is added
        unless the server is bound to loopback only.  The array limit is
        ``EPICS_CAS_MAX_ARRAY_BYTES`` or ``EPICS_CA_MAX_ARRAY_BYTES``, never
        below 16384 (ca-gateway's rule).
        """
        env = os.environ if env is None else env
        ca_port = int(env.get("EPICS_CA_SERVER_PORT") or 5064)
        port = int(env.get("EPICS_CAS_SERVER_PORT") or ca_port)
        beacon_port = int(
            env.get("EPICS_CAS_BEACON_PORT") or env.get("EPICS_CA_REPEATER_PORT") or 5065
        )
        intf = [a for a in env.get("EPICS_CAS_INTF_ADDR_LIST", "").replace(",", " ").split()]
        interfaces = [socket.gethostbyname(a.partition(":")[0]) for a in intf] or ["0.0.0.0"]
        beacon_text = env.get("EPICS_CAS_BEACON_ADDR_LIST")
        if beacon_text is None:  # rsrv's fallback; ports there are search ports, not beacon
            hosts = env.get("EPICS_CA_ADDR_LIST", "").replace(",", " ").split()
            beacon_text = " ".join(h.partition(":")[0] for h in hosts)
        beacons = addr_list(beacon_text, beacon_port, commas=True, what="CA server address list")
        auto = yes(
            env.get("EPICS_CAS_AUTO_BEACON_ADDR_LIST")
            or env.get("EPICS_CA_AUTO_ADDR_LIST")
            or "YES"
        )
        loopback_only = all(a.startswith("127.") for a in interfaces)
        if auto and not loopback_only and ("255.255.255.255", beacon_port) not in beacons:
            beacons.append(("255.255.255.255", beacon_port))
        period = float(
            env.get("EPICS_CAS_BEACON_PERIOD") or env.get("EPICS_CA_BEACON_PERIOD") or 15.0
        )
        max_bytes = int(
            env.get("EPICS_CAS_MAX_ARRAY_BYTES") or env.get("EPICS_CA_MAX_ARRAY_BYTES") or 16384
        )
        ignore = {
            socket.gethostbyname(a)
            for a in env.get("EPICS_CAS_IGNORE_ADDR_LIST", "").replace(",", " ").split()
        }
        return cls(
            interfaces=interfaces,
            port=port,
            beacon_addrs=beacons,
            beacon_period=max(0.1, period),
            ignore_addrs=ignore,
            max_array_bytes=max(16384, max_bytes),
        )
