"""Channel Access: the wire protocol, a client (engine, gateway, tools) and a server (gateway).

Pure modules, bytes in and values out: ``protocol`` (headers, message builders,
the stream framer), ``dbr`` (payload layouts and decoders), ``dbr_encode``
(payloads a server sends), ``search`` (the search scheduler), the client's state
machines ``lifecycle`` (channel states), ``keepalive``, ``flow`` (flow control) and
``beacons`` (anomaly detection), ``names``, ``env`` (``EPICS_*`` variable parsing).
The asyncio layers: ``client`` (``CAClient``) and ``server`` with ``server_circuit``,
``server_pv`` and ``server_config`` (``CAServer``, ``ServedPV``); ``sockets`` and ``tasks``
serve both.  See docs/ca.md for the client and docs/gateway.md for the server.
"""

from . import dbr, protocol
from .client import CAClient, CAConfig, CAError, Channel, DisconnectedError, Subscription
from .dbr import Reading, payload_type

__all__ = [
    "CAClient",
    "CAConfig",
    "CAError",
    "Channel",
    "DisconnectedError",
    "Reading",
    "Subscription",
    "dbr",
    "payload_type",
    "protocol",
]
