"""Initial sampling of a requested PV: connect, read its metadata, count events for a while.

The AA's engine does this "meta get" for 60 s (4-5 minutes end to end); we use a short
configurable window (default 3 s), which is enough to tell a 10 Hz PV from a slow one and is
what makes ``archivePV`` feel immediate. The event rate and storage rate measured here, plus
RTYP/MDEL/ADEL/SCAN and the record's real name (``.NAME``, for aliases), are the inputs of
``determinePolicy``; the DBR_CTRL read gives the limits, precision and units of the typeinfo.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..ca import CAClient, dbr
from ..ca.client import Channel
from ..ca.protocol import DBE_ALARM, DBE_LOG
from ..pb import PayloadType

log = logging.getLogger(__name__)

#: Approximate PB line bytes per event by native type (header-less sample of the AA types).
_SCALAR_BYTES = {0: 14, 1: 16, 2: 17, 3: 16, 4: 16, 5: 17, 6: 21}
_ELEMENT_BYTES = {0: 40, 1: 2, 2: 4, 3: 2, 4: 1, 5: 4, 6: 8}


def event_bytes(native: int, count: int, value: Any) -> int:
    """Storage estimate for one event (for the storage rate the policy sees)."""
    if native == 0 and count == 1:
        return _SCALAR_BYTES[0] + len(str(value))
    if count == 1:
        return _SCALAR_BYTES.get(native, 21)
    return 14 + count * _ELEMENT_BYTES.get(native, 8)


@dataclass
class Measurement:
    """What the initial sampling found out about one PV."""

    name: str
    connected_epoch: float = 0.0
    native_type: int = -1
    count: int = 0
    host: str = ""
    events: int = 0
    bytes: int = 0
    seconds: float = 0.0
    requested_epoch: float = field(default_factory=time.time)
    reads_done_epoch: float = 0.0
    ctrl: dbr.Reading | None = None
    fields: dict[str, str] = field(default_factory=dict)
    #: the type derived from a PVA structure (``pva://`` PVs have no CA native type)
    ptype: PayloadType | None = None

    @property
    def payload_type(self) -> PayloadType | None:
        """The AA type of the PV (None until its type is known)."""
        if self.ptype is not None:
            return self.ptype
        return dbr.payload_type(self.native_type, self.count) if self.native_type >= 0 else None

    @property
    def connected(self) -> bool:
        return self.connected_epoch > 0

    @property
    def event_rate(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0

    @property
    def storage_rate(self) -> float:
        return self.bytes / self.seconds if self.seconds > 0 else 0.0


class MetaGet:
    """Measures one PV; ``on_done(metaget)`` runs once the window has passed after connect."""

    def __init__(
        self,
        client: CAClient,
        name: str,
        window: float,
        extra_fields: list[str],
        on_done: Callable[[MetaGet], None],
    ) -> None:
        self.client = client
        self.name = name
        self.window = max(0.0, window)
        self.extra_fields = extra_fields
        self.on_done = on_done
        self.result = Measurement(name)
        self.done = False
        self._channel: Channel | None = None
        self._task: asyncio.Task[None] | None = None
        self._field_channels: list[Channel] = []

    def start(self) -> None:
        """Search for the PV; its fields follow it (created on its circuit when it connects,
        never searched: 5 fields per PV would multiply the searches by 6, and a field the
        record type lacks fails at once instead of being searched)."""
        main = self._channel = self.client.create_channel(self.name, self._on_connection)
        self._field_channels = [
            self.client.create_channel(f"{self.name}.{f}", follow=main) for f in self.extra_fields
        ]

    def _on_connection(self, ch: Channel, up: bool) -> None:
        if not up or self._task is not None or self.done:
            return
        r = self.result
        r.connected_epoch = time.time()
        r.native_type, r.count = ch.native_type, ch.count
        if ch.server is not None:
            r.host = f"{ch.server[0]}:{ch.server[1]}"

        def on_event(secs: int, nanos: int, sev: int, stat: int, value: Any) -> None:
            r.events += 1
            r.bytes += event_bytes(r.native_type, r.count, value)

        self.client.subscribe(ch, on_event, count=None, mask=DBE_LOG | DBE_ALARM)
        self._task = asyncio.ensure_future(self._gather(ch))

    async def _gather(self, ch: Channel) -> None:
        r = self.result
        try:
            fields = zip(self.extra_fields, self._field_channels, strict=True)
            reads = [self._read_ctrl(ch)] + [self._read_field(f, fch) for f, fch in fields]
            await asyncio.gather(*reads)
            r.reads_done_epoch = time.time()
            await asyncio.sleep(max(0.0, r.connected_epoch + self.window - time.time()))
            r.seconds = max(time.time() - r.connected_epoch, 1e-3)
        except asyncio.CancelledError:
            raise
        except Exception:  # never leave a request hanging on a failed read
            log.exception("%s: initial sampling failed", self.name)
        self.close()
        self.done = True
        self.on_done(self)

    async def _read_ctrl(self, ch: Channel) -> None:
        try:
            self.result.ctrl = await self.client.get(ch, dbr.ctrl_type(ch.native_type), count=1)
        except Exception as e:
            log.info("%s: no DBR_CTRL metadata: %s", self.name, e)

    async def _read_field(self, fname: str, ch: Channel) -> None:
        try:
            await self.client.wait_connected(ch, timeout=max(self.window, 1.0))
            got = await self.client.get(ch, dbr_type=0, count=1, timeout=max(self.window, 1.0))
        except Exception:
            return  # the record type has no such field (or it did not answer): not known
        value = got.value
        if isinstance(value, list | tuple):
            value = value[0] if value else ""
        self.result.fields[fname] = str(value).strip()

    def close(self) -> None:
        """Release the channels (the engine opens its own for archiving)."""
        for ch in [self._channel, *self._field_channels]:
            if ch is not None:
                with contextlib.suppress(Exception):
                    self.client.clear_channel(ch)
        self._channel = None
        self._field_channels = []

    def cancel(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
        self.close()
        self.done = True
