"""Conditional archiving: a PV is archived only while its controlling PV is non-zero.

The AA's ``controllingPV`` (archivePV parameter, PVTypeInfo key): the engine watches the
controlling PV and stores the controlled PVs' samples only while its value is not 0. One
CA channel per controlling PV serves every PV it controls, so a beam-on flag gating 5,000
PVs costs one subscription.

Choices where the AA is silent or where losing data would be the worse error:

* until the controlling PV has sent a value (it has not connected yet, or never does), the
  controlled PVs are archived: a mistyped controlling PV must not silently stop archiving;
* when the controlling PV disconnects, the last value it sent keeps applying;
* the value is read as a double (enums by index), as a calc or bo record gives it; arrays by
  their first element; NaN counts as non-zero.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from ..ca import dbr
from ..ca.protocol import DBE_ALARM, DBE_VALUE

if TYPE_CHECKING:
    from ..ca.client import CAClient, Channel
    from .writer import Engine


def is_on(value: Any) -> bool:
    """Does this controlling-PV value switch archiving on? (non-zero, as the AA)."""
    if isinstance(value, str | bytes):
        text = value.decode(errors="replace") if isinstance(value, bytes) else value
        text = text.strip("\x00 ")
        try:
            return float(text) != 0.0
        except ValueError:
            return bool(text)
    if hasattr(value, "__len__"):
        return len(value) > 0 and is_on(value[0])
    try:
        f = float(value)
    except (TypeError, ValueError):
        return True
    return f != 0.0 or math.isnan(f)


class ControllingPVs:
    """Which PV controls which, and whether each controlling PV currently allows archiving."""

    def __init__(self, engine: Engine, client: CAClient) -> None:
        self.engine = engine
        self.client = client
        self.controller_of: dict[str, str] = {}  # controlled PV -> controlling PV
        self._controlled: dict[str, set[str]] = {}  # controlling PV -> controlled PVs
        self._on: dict[str, bool] = {}  # controlling PV -> last value's verdict
        self._channels: dict[str, Channel] = {}

    def set(self, name: str, controlling: str | None) -> None:
        """Make ``controlling`` (None: nothing) the controlling PV of ``name``."""
        old = self.controller_of.get(name)
        if old == (controlling or None):
            return
        if old is not None:
            self._drop(name, old)
        if not controlling:
            self.apply(name)
            return
        self.controller_of[name] = controlling
        self._controlled.setdefault(controlling, set()).add(name)
        if controlling not in self._channels:
            ch = self.client.create_channel(controlling)
            self._channels[controlling] = ch

            def on_value(
                secs: int, nanos: int, sev: int, stat: int, value: Any, ctl: str = controlling
            ) -> None:
                self._changed(ctl, is_on(value))

            self.client.subscribe(
                ch,
                on_value,
                dbr_type=dbr.time_type(dbr.DOUBLE),
                count=1,
                mask=DBE_VALUE | DBE_ALARM,
            )
        self.apply(name)

    def _drop(self, name: str, controlling: str) -> None:
        del self.controller_of[name]
        users = self._controlled.get(controlling)
        if users is not None:
            users.discard(name)
            if not users:  # nobody left: close its channel
                del self._controlled[controlling]
                self._on.pop(controlling, None)
                ch = self._channels.pop(controlling, None)
                if ch is not None:
                    self.client.clear_channel(ch)

    def _changed(self, controlling: str, on: bool) -> None:
        if self._on.get(controlling) == on:
            return
        self._on[controlling] = on
        for name in self._controlled.get(controlling, ()):
            self.apply(name)

    def off_reason(self, name: str) -> str:
        """Why ``name`` is not stored now ("" when it is)."""
        controlling = self.controller_of.get(name)
        if controlling is None or self._on.get(controlling, True):
            return ""
        return f"conditional archiving: controlling PV {controlling} is 0"

    def apply(self, name: str) -> None:
        """Bring the engine's PV in line (also called when its ArchivedPV is created)."""
        pv = self.engine.pvs.get(name)
        if pv is not None:
            pv.set_control(self.off_reason(name))
