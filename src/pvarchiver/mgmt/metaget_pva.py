"""Initial sampling of a ``pva://`` PV: the same measurement as :class:`~.metaget.MetaGet`,
over PV Access.

What is measured: the type (from the structure, as the engine will derive it), the element
count, the limits/units/precision/enum labels (``display``, ``control``, ``valueAlarm``,
NTEnum ``choices``: the typeinfo's metadata), and the rate of record-processing updates
(those the engine will store) over the window. Like the AA's MetaGet, the record's
``.NAME`` is read over PVA too (QSRV serves record fields), so that an alias is archived
under its real name; a server without record fields simply never answers it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

from ..engine.pva_types import PVAMapping, reading
from ..pb import PayloadType
from ..pva.client import Channel, PVAClient, Subscription
from ..pva.connection import MonitorUpdate
from .metaget import Measurement

log = logging.getLogger(__name__)

#: fields read over PVA during initial sampling (the AA reads NAME and NAME$)
PVA_META_FIELDS = ("NAME",)


def sample_bytes(ptype: PayloadType, count: int, stored: object) -> int:
    """Storage estimate of one sample (for the storage rate the policy sees)."""
    if isinstance(stored, bytes | str):
        return 14 + len(stored)
    if ptype.is_vector:
        return 14 + count * 8
    return 16


class PVAMetaGet:
    """Measures one PVA PV; ``on_done(metaget)`` runs once the window has passed after
    connect (the interface of :class:`~.metaget.MetaGet`)."""

    def __init__(
        self,
        client: PVAClient,
        name: str,
        window: float,
        on_done: Callable[[PVAMetaGet], None],
    ) -> None:
        self.client = client
        self.name = name
        self.window = max(0.0, window)
        self.on_done = on_done
        self.result = Measurement(name)
        self.done = False
        self._channel: Channel | None = None
        self._sub: Subscription | None = None
        self._task: asyncio.Task[None] | None = None
        self._field_channels: list[tuple[str, Channel]] = []

    def start(self) -> None:
        ch = self._channel = self.client.channel(self.name, on_state=self._on_state)
        self._field_channels = [
            (f, self.client.channel(f"{self.name}.{f}")) for f in PVA_META_FIELDS
        ]
        if ch.connected:
            self._on_state(ch, True)

    def _on_state(self, ch: Channel, up: bool) -> None:
        if not up or self._task is not None or self.done or ch is not self._channel:
            return
        r = self.result
        r.connected_epoch = time.time()
        if ch.server is not None:
            r.host = f"{ch.server[0]}:{ch.server[1]}"
        self._task = asyncio.ensure_future(self._gather(ch))

    async def _gather(self, ch: Channel) -> None:
        r = self.result
        try:
            value = await ch.get(timeout=max(self.window, 5.0))
            m = PVAMapping(value.layout)
            r.ptype = m.ptype
            first = m.sample(value)
            v = value.flat[m.value_index] if m.value_index >= 0 else None
            r.count = len(v) if isinstance(v, list) and m.ptype.is_vector else 1
            r.ctrl = reading(value)
            per_sample = sample_bytes(m.ptype, r.count, first[4] if first else b"")

            def on_update(ev: MonitorUpdate) -> None:
                if ev.changed & m.record_mask:
                    r.events += 1
                    r.bytes += per_sample

            self._sub = ch.monitor(on_update)
            await asyncio.gather(*(self._read_field(f, fch) for f, fch in self._field_channels))
            r.reads_done_epoch = time.time()
            await asyncio.sleep(max(0.0, r.connected_epoch + self.window - time.time()))
            r.seconds = max(time.time() - r.connected_epoch, 1e-3)
            if r.events:
                r.events -= 1  # the monitor's first update repeats the current value
                r.bytes -= per_sample
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # never leave a request hanging on a failed read
            log.warning("%s: initial sampling over PVA failed: %s", self.name, exc)
        self.close()
        self.done = True
        self.on_done(self)

    async def _read_field(self, fname: str, ch: Channel) -> None:
        try:
            got = await ch.get(timeout=max(self.window, 1.0))
        except Exception:
            return  # not a record field this server serves
        value = got.get("value")
        if isinstance(value, dict):  # an NTEnum
            value = value.get("index", "")
        self.result.fields[fname] = str(value).strip()

    def close(self) -> None:
        """Release the channels (the engine opens its own for archiving)."""
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        for ch in [self._channel, *(c for _, c in self._field_channels)]:
            if ch is not None:
                with contextlib.suppress(Exception):
                    ch.close()
        self._channel = None
        self._field_channels = []

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self.close()
        self.done = True
