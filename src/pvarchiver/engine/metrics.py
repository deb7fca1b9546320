"""Per-PV counters the AA reports (getPVStatus, drop reports) and a few it lacks."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass, field
from enum import StrEnum


class DropReason(StrEnum):
    """Why an event was not archived; each is counted per PV and shown in reports."""

    BEFORE_1991 = "timestamp before 1991"
    IN_FUTURE = "timestamp too far in the future"
    NOT_INCREASING = "timestamp not after the previous sample"
    TOO_OLD = "timestamp too old after connect"
    BUFFER_FULL = "engine buffer memory bound reached"
    TYPE_CHANGE = "PV changed type"
    BAD_VALUE = "value does not fit the PV's type"


@dataclass(slots=True)
class PVMetrics:
    events_received: int = 0
    events_stored: int = 0
    samples_written: int = 0
    drops: Counter[DropReason] = field(default_factory=Counter)
    connected: bool = False
    connection_loss_regain_count: int = 0
    last_connection_lost_epoch: int = 0
    last_connection_regained_epoch: int = 0
    first_connected_epoch: int = 0
    last_event_epoch: int = 0
    write_errors: int = 0
    last_write_error: str = ""

    def dropped(self, reason: DropReason, n: int = 1) -> None:
        self.drops[reason] += n


class WriteTimer:
    """Wall time of the engine's write cycles (only cycles that had something to write)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.cycles = 0
        self.seconds = 0.0
        self.last_seconds = 0.0
        self.max_seconds = 0.0
        self.samples = 0

    def record(self, seconds: float, samples: int) -> None:
        with self._lock:
            self.cycles += 1
            self.seconds += seconds
            self.last_seconds = seconds
            self.max_seconds = max(self.max_seconds, seconds)
            self.samples += samples
