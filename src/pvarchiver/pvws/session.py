"""One PVWS websocket, sans-I/O: client messages in, requests to the hub and server messages
out, live updates in, throttled and coalesced messages out.

Nothing here touches a socket, a clock or the engine: the websocket layer
(:mod:`pvarchiver.pvws.web`) feeds :meth:`Session.on_text` with each text frame and sends
what :meth:`Session.take` returns; the hub feeds :meth:`Session.on_update`. Why coalescing
lives here: each PV keeps only its latest unsent value, so a client that reads slowly costs
one value per subscribed PV, never a queue that grows with the update rate.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .values import Meta, Sent, Update, encode

#: replies waiting to be sent, per socket (PVWS's queue holds 2048 messages)
MAX_OUT = 2048


@dataclass(frozen=True)
class Limits:
    """Per-socket settings (``pvws.*`` in ``docs/reference.md``)."""

    #: seconds between updates of a scalar PV (PVWS's PV_THROTTLE_MS; 0: every update)
    throttle: float = 1.0
    #: the same for arrays (PV_ARRAY_THROTTLE_MS)
    array_throttle: float = 10.0
    #: PVs one socket may subscribe to
    max_subscriptions: int = 10_000
    #: whether ``write`` may be used on this socket (PV_WRITE_SUPPORT and the mgmt access check)
    may_write: bool = False
    #: why writes are refused, for the error message
    write_refusal: str = "PV_WRITE_SUPPORT is disabled"


@dataclass
class Reply:
    """What the websocket layer does about one client message."""

    send: list[str] = field(default_factory=list)
    subscribe: list[str] = field(default_factory=list)
    clear: list[str] = field(default_factory=list)
    write: tuple[str, Any] | None = None
    ping: bool = False


def error(message: str) -> str:
    return json.dumps({"type": "error", "message": message})


class _PV:
    """One subscribed PV of a socket."""

    __slots__ = ("meta", "next_ok", "pending", "queued", "readonly", "sent")

    def __init__(self) -> None:
        self.meta: Meta | None = None
        self.readonly = True
        self.sent = Sent()
        self.pending: Update | None = None
        self.next_ok = 0.0  # not before this time (throttle)
        self.queued = False  # in the ready list or the timer heap


class Session:
    """The state of one socket. ``clock`` is only used through the ``now`` arguments."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.pvs: dict[str, _PV] = {}
        self._ready: list[str] = []
        self._timers: list[tuple[float, str]] = []
        self._out: list[str] = []
        #: called when something became ready to send (wakes the writer)
        self.wake: Callable[[], None] = lambda: None

    # ------------------------------------------------------------------ client messages
    def on_text(self, text: str) -> Reply:
        """One text frame from the client. Bad input gets an ``error`` message (PVWS only logs
        it) and changes nothing: the socket stays usable."""
        try:
            msg = json.loads(text)
        except (ValueError, RecursionError):
            return Reply(send=[error(f"Cannot parse message: {text[:200]!r}")])
        if not isinstance(msg, dict):
            return Reply(send=[error("A message must be a JSON object with a 'type'")])
        kind = msg.get("type")
        if kind in ("subscribe", "monitor"):
            return self._subscribe(msg.get("pvs"))
        if kind == "clear":
            names = _names(msg.get("pvs"))
            if names is None:
                return Reply(send=[error("'clear' needs 'pvs': a list of PV names")])
            gone = [n for n in names if self.pvs.pop(n, None) is not None]
            return Reply(clear=gone)
        if kind == "list":
            return Reply(send=[json.dumps({"type": "list", "pvs": list(self.pvs)})])
        if kind == "write":
            return self._write(msg)
        if kind == "echo":
            return Reply(send=[text])
        if kind == "ping":
            return Reply(ping=True)
        return Reply(send=[error(f"Unknown message type {kind!r}")])

    def _subscribe(self, pvs: object) -> Reply:
        names = _names(pvs)
        if names is None:
            return Reply(send=[error("'subscribe' needs 'pvs': a list of PV names")])
        new: list[str] = []
        refused = 0
        for name in dict.fromkeys(names):
            if name in self.pvs:
                continue  # as PVWS: subscribing again does nothing, metadata not re-sent
            if len(self.pvs) >= self.limits.max_subscriptions:
                refused += 1
                continue
            self.pvs[name] = _PV()
            new.append(name)
        reply = Reply(subscribe=new)
        if refused:
            reply.send.append(
                error(
                    f"Subscription limit of {self.limits.max_subscriptions} PVs per socket "
                    f"reached: {refused} PVs not subscribed"
                )
            )
        return reply

    def _write(self, msg: dict[str, Any]) -> Reply:
        pv, value = msg.get("pv"), msg.get("value")
        if not isinstance(pv, str) or "value" not in msg:
            return Reply(send=[error("'write' needs 'pv' and 'value'")])
        if pv not in self.pvs:
            return Reply(send=[error(f"Cannot write unknown PV {pv}")])
        if not self.limits.may_write:
            return Reply(send=[error(self.limits.write_refusal)])
        if isinstance(value, bool) or not isinstance(value, int | float | str):
            value = json.dumps(value)
        return Reply(write=(pv, value))

    # ------------------------------------------------------------------ hub events
    def set_meta(self, name: str, meta: Meta, readonly: bool) -> None:
        """The PV's kind and metadata, and whether this socket may write it."""
        p = self.pvs.get(name)
        if p is None:
            return
        p.meta = meta
        if readonly != p.readonly or p.sent.readonly is None:
            p.readonly = readonly
            self._queue(name, p, 0.0)

    def on_update(self, name: str, upd: Update, now: float) -> None:
        """A new value (or a disconnect); only the latest unsent one is kept."""
        p = self.pvs.get(name)
        if p is None:
            return
        p.pending = upd
        if not p.queued:
            self._queue(name, p, now)

    def _queue(self, name: str, p: _PV, now: float) -> None:
        if p.queued:
            return
        p.queued = True
        if now >= p.next_ok:
            if not self._ready:
                self.wake()
            self._ready.append(name)
        else:
            heapq.heappush(self._timers, (p.next_ok, name))
            # the writer sleeps until the earliest timer it knew of (or forever when there was
            # none): a new earliest one must wake it, or a throttled value is never sent
            if self._timers[0][1] == name and not self._ready and not self._out:
                self.wake()

    # ------------------------------------------------------------------ output
    def take(self, now: float, limit: int = 4096) -> list[str]:
        """Messages due now (at most ``limit``): each PV's latest value once its throttle
        period has passed since its last message (the first at once, as RxJava's
        throttleLatest)."""
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, name = heapq.heappop(timers)
            self._ready.append(name)
        out, self._out = self._out, []
        ready = self._ready
        n = min(len(ready), max(0, limit - len(out)))
        batch, self._ready = ready[:n], ready[n:]
        lim = self.limits
        for name in batch:
            p = self.pvs.get(name)
            if p is None:
                continue
            p.queued = False
            meta = p.meta
            if meta is None:  # nothing known yet: wait for the hub
                continue
            upd = p.pending
            if upd is None and p.sent.readonly == p.readonly:
                continue  # queued for an access change that is no change
            p.pending = None
            out.append(encode(name, meta, upd, p.sent, p.readonly, now))
            if upd is not None:
                period = lim.array_throttle if meta.is_array else lim.throttle
                p.next_ok = now + period
        return out

    def next_due(self) -> float | None:
        """When :meth:`take` has something again (None: only after the next event)."""
        if self._ready or self._out:
            return 0.0
        return self._timers[0][0] if self._timers else None

    def queued(self) -> int:
        """PVs with something waiting to be sent, and messages waiting (PVWS's ``queued``)."""
        return len(self._ready) + len(self._timers) + len(self._out)

    def push(self, message: str) -> None:
        """A message to send before the next updates (replies, errors from the hub). At most
        :data:`MAX_OUT` wait; more are dropped, as PVWS drops them when its queue is full: a
        client that sends echoes and never reads cannot grow memory."""
        if len(self._out) >= MAX_OUT:
            return
        if not self._ready and not self._out:
            self.wake()
        self._out.append(message)


def _names(pvs: object) -> list[str] | None:
    if not isinstance(pvs, list) or not all(isinstance(n, str) for n in pvs):
        return None
    return [n.strip() for n in pvs if n.strip()]
