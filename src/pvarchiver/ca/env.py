"""Parsing of EPICS' environment variables, shared by the client and server configs.

``CAConfig.from_env`` (``EPICS_CA_*``) and ``ServerConfig.from_env``
(``EPICS_CAS_*``) read the same kinds of values: yes/no switches and lists of
``host[:port]`` entries.
"""

from __future__ import annotations

import logging
import socket

__all__ = ["addr_list", "yes"]

log = logging.getLogger(__name__)


def yes(value: str) -> bool:
    """An EPICS yes/no switch: anything but NO, N, FALSE or 0 (any case) means yes."""
    return value.strip().upper() not in ("NO", "N", "FALSE", "0")


def addr_list(
    text: str, default_port: int, *, commas: bool = False, what: str = "CA address list"
) -> list[tuple[str, int]]:
    """``host[:port]`` entries separated by white space (and commas if ``commas``), resolved
    to IPv4 addresses, without duplicates; a host that cannot be resolved is logged (as
    ``what``) and left out."""
    if commas:
        text = text.replace(",", " ")
    out: list[tuple[str, int]] = []
    for item in text.split():
        host, _, port = item.partition(":")
        try:
            addr = socket.gethostbyname(host)
        except OSError:
            log.warning("%s: cannot resolve %r, ignored", what, host)
            continue
        entry = (addr, int(port) if port else default_port)
        if entry not in out:
            out.append(entry)
    return out
