"""PVA client settings from the ``EPICS_PVA_*`` environment variables.

Read from a mapping handed in (``PVAConfig.from_env(env)``), never from ``os.environ``
anywhere else, so a test or an engine can aim a client at its own servers.
"""

from __future__ import annotations

import getpass
import os
import socket
from collections.abc import Mapping
from dataclasses import dataclass, field

from ..ca.env import addr_list, yes

__all__ = ["PVAConfig"]


@dataclass
class PVAConfig:
    """Where to search and how long to wait.

    ``addr_list`` entries are ``host[:port]`` (port default: the broadcast port);
    ``name_servers`` are searched over TCP (port default: the server port).
    """

    addr_list: list[tuple[str, int]] = field(default_factory=list)
    auto_addr_list: bool = True
    broadcast_port: int = 5076
    server_port: int = 5075
    name_servers: list[tuple[str, int]] = field(default_factory=list)
    conn_tmo: float = 30.0  #: no byte from a server for 4/3 of this: the connection is dead
    validation_timeout: float = 10.0  #: a server that does not validate by then is dropped
    max_search_period: float = 30.0
    user: str = ""
    host: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> PVAConfig:
        """Settings from ``env`` (default ``os.environ``), with EPICS' defaults."""
        env = os.environ if env is None else env
        bport = int(env.get("EPICS_PVA_BROADCAST_PORT", "") or 5076)
        sport = int(env.get("EPICS_PVA_SERVER_PORT", "") or 5075)
        try:
            user = getpass.getuser()
        except Exception:
            user = "unknown"
        return cls(
            addr_list=addr_list(env.get("EPICS_PVA_ADDR_LIST", ""), bport, what="PVA address list"),
            auto_addr_list=yes(env.get("EPICS_PVA_AUTO_ADDR_LIST", "YES")),
            broadcast_port=bport,
            server_port=sport,
            name_servers=addr_list(
                env.get("EPICS_PVA_NAME_SERVERS", ""), sport, what="PVA name servers"
            ),
            conn_tmo=float(env.get("EPICS_PVA_CONN_TMO", "") or 30.0),
            user=user,
            host=socket.gethostname(),
        )

    def search_targets(self) -> list[tuple[str, int]]:
        """Where UDP searches go: the list, plus the limited broadcast with AUTO."""
        out = list(self.addr_list)
        if self.auto_addr_list and ("255.255.255.255", self.broadcast_port) not in out:
            out.append(("255.255.255.255", self.broadcast_port))
        return out
