"""Socket set-up shared by the CA client and server.

Why a function of its own: on Windows a UDP socket that sent to a port where nothing listens
gets the ICMP "port unreachable" back as a WSAECONNRESET on its *next receive*, and Python's
Proactor loop (before 3.13, gh-91227) stops reading the socket for good after it. One search
sent to an ``EPICS_CA_ADDR_LIST`` host without a CA server would then stop every later
connect and reconnect, silently. ``SIO_UDP_CONNRESET`` off makes Windows drop those reports,
as Linux does for unconnected sockets.
"""

from __future__ import annotations

import contextlib
import socket


def udp_ignore_connreset(sock: socket.socket) -> None:
    """Windows: ignore ICMP port-unreachable on this UDP socket (no-op elsewhere)."""
    if hasattr(socket, "SIO_UDP_CONNRESET"):
        with contextlib.suppress(OSError):
            sock.ioctl(socket.SIO_UDP_CONNRESET, False)  # type: ignore[attr-defined]
