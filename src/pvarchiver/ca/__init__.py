"""Channel Access client for the archiver engine.

``protocol`` and ``dbr`` are pure (bytes in, values out); ``client`` is the
asyncio layer.  See docs/ca.md for the API and the measured throughput.
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
