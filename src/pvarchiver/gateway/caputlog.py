"""``-caputlog``: put logging in the EPICS caPutLog "standard" line layout.

Why this format: sites running ca-gateway with ``-caputlog`` feed an
iocLogServer and parse its file with tools written for caPutLog, so the
gateway writes the same line an IOC's caPutLog module writes::

    <date> <time> <host> <user> <pv> new=<value> old=<value>

``<date> <time>`` is the time of the put as ``%d-%b-%y %H:%M:%S`` (English
month names, local time), ``<host> <user>`` are what the CA client sent in
HOST_NAME/CLIENT_NAME, ``<pv>`` is the real (upstream) PV name, strings are
double-quoted with backslash escapes (caPutLog R4), numbers use ``%.15g``,
arrays ``[a,b,...]`` (at most 400 characters, as caPutLog's JSON logger).
Every allowed put is logged (caPutLog's "log all puts, no filter" setting);
``old`` is the gateway's cached value when the put was received.

The destination decides the transport:

* ``host:port`` (numeric port) or a bare IPv4 address (port 7011, caPutLog's
  default): a TCP connection to an iocLogServer, as ca-gateway does; it is
  made on demand and re-made after errors, lines are queued meanwhile (at
  most :data:`MAX_QUEUE`, the oldest dropped first), so a missing log server
  never blocks or breaks puts;
* anything else: a file the lines are appended to.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import math
import time
from collections import deque
from collections.abc import Sequence
from typing import Any

__all__ = ["DEFAULT_PORT", "CaPutLog", "format_line", "format_value", "parse_target"]

log = logging.getLogger(__name__)

DEFAULT_PORT = 7011
MAX_QUEUE = 10_000
MAX_VALUE_CHARS = 400
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}


def parse_target(text: str) -> tuple[str, int] | str:
    """``(host, port)`` for a log server, or the text itself as a file path."""
    host, sep, port = text.rpartition(":")
    if sep and host and port.isdigit() and "/" not in host and "\\" not in host:
        return host, int(port)
    with contextlib.suppress(ValueError):
        ipaddress.IPv4Address(text)
        return text, DEFAULT_PORT
    return text


def _scalar(value: Any) -> str:
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    if isinstance(value, str):
        body = "".join(_ESCAPES.get(c, c if c.isprintable() else f"\\x{ord(c):02x}") for c in value)
        return f'"{body}"'
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        return format(value, ".15g")
    if hasattr(value, "item"):  # numpy scalar
        return _scalar(value.item())
    return str(value)


def format_value(value: Any) -> str:
    """One value as caPutLog writes it (see the module docstring)."""
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        if len(value) == 1:
            return _scalar(value[0])
        text = "[" + ",".join(_scalar(v) for v in value) + "]"
        if len(text) > MAX_VALUE_CHARS:
            text = text[: MAX_VALUE_CHARS - 4] + "...]"
        return text
    return _scalar(value)


def format_line(when: float, host: str, user: str, pv: str, new: Any, old: Any) -> str:
    """The caPutLog standard line (without the iocLogServer's own prefix)."""
    t = time.localtime(when)
    stamp = f"{t.tm_mday:02d}-{_MONTHS[t.tm_mon - 1]}-{t.tm_year % 100:02d} " + time.strftime(
        "%H:%M:%S", t
    )
    return (
        f"{stamp} {host or '-'} {user or '-'} {pv} "
        f"new={format_value(new)} old={format_value(old)}\n"
    )


class CaPutLog:
    """Writes caPutLog lines to a file or an iocLogServer; ``log()`` never blocks."""

    def __init__(self, target: str) -> None:
        self.target = parse_target(target)
        self.lines = 0  # lines written (file) or sent (server)
        self.dropped = 0
        self._queue: deque[str] = deque()
        self._writer: asyncio.StreamWriter | None = None
        self._task: asyncio.Task[None] | None = None
        self._wake = asyncio.Event()

    def log(self, host: str, user: str, pv: str, new: Any, old: Any) -> None:
        line = format_line(time.time(), host, user, pv, new, old)
        if isinstance(self.target, str):
            try:
                with open(self.target, "a", encoding="utf-8") as fh:
                    fh.write(line)
                self.lines += 1
            except OSError as exc:
                log.warning("cannot write caputlog %s: %s", self.target, exc)
            return
        if len(self._queue) >= MAX_QUEUE:
            self._queue.popleft()
            self.dropped += 1
        self._queue.append(line)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._sender())
        self._wake.set()

    async def _sender(self) -> None:
        """Connect on demand, send queued lines, reconnect after errors (1 s apart)."""
        assert not isinstance(self.target, str)
        host, port = self.target
        while True:
            if self._writer is None:
                try:
                    _reader, self._writer = await asyncio.open_connection(host, port)
                except OSError as exc:
                    log.warning("caputlog server %s:%d unreachable: %s", host, port, exc)
                    await asyncio.sleep(1.0)
                    continue
            while self._queue:
                line = self._queue[0]
                try:
                    self._writer.write(line.encode("utf-8", "replace"))
                    await self._writer.drain()
                except OSError as exc:
                    log.warning("caputlog server %s:%d: %s", host, port, exc)
                    self._writer = None
                    break
                self._queue.popleft()
                self.lines += 1
            if self._writer is None:
                await asyncio.sleep(1.0)
                continue
            self._wake.clear()
            await self._wake.wait()

    async def close(self) -> None:
        """Send what is queued (briefly), then drop the connection."""
        if self._task is not None:
            if self._queue and self._writer is not None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._drain_queue(), 2.0)
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(OSError):
                await self._writer.wait_closed()
            self._writer = None

    async def _drain_queue(self) -> None:
        while self._queue:
            await asyncio.sleep(0.01)
