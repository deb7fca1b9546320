"""Free ports for the servers the tests start."""

from __future__ import annotations

import socket

# the CA server and repeater defaults, and pvarchiver's default HTTP port
RESERVED = (5064, 5065, 17665)


def free_port() -> int:
    """A port free for both TCP and UDP on 127.0.0.1 (CA servers need both), and not one of
    the default ports a real service on this machine may take later."""
    for _ in range(100):
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.1", 0))
            port = int(tcp.getsockname()[1])
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
                try:
                    udp.bind(("0.0.0.0", port))
                except OSError:
                    continue
            if port not in RESERVED:
                return port
    raise RuntimeError("no free port")
