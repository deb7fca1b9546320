"""A fake downstream circuit for the gateway's fan-out tests (test_gw_batch, test_gw_runs)."""

from __future__ import annotations

from pvarchiver.ca.server_pv import Subscriber


class FakeCircuit:
    """What ServedPV.post and fan_send use of a ServerCircuit (same hold semantics)."""

    def __init__(self, hold: bool = False) -> None:
        self.out: list[bytes] = []
        self.hold = hold
        self.flush_pending = False
        self.flushes = 0
        self._held: dict[int, tuple[Subscriber, tuple[bytes, bytes]]] = {}
        self.dropped = 0

    def schedule_flush(self) -> None:
        self.flush_pending = True
        self.flushes += 1

    def send_events(self, data: bytes, flush: bool = True) -> None:
        self.out.append(data)
        if not self.flush_pending:
            if flush:
                self.schedule_flush()
            else:
                self.flush_pending = True

    def hold_event(self, sub: Subscriber, parts: tuple[bytes, bytes]) -> None:
        if self._held.pop(sub.subid, None) is not None:
            self.dropped += 1
        self._held[sub.subid] = (sub, parts)

    def result(self) -> tuple[bytes, dict[int, bytes], int]:
        held = {k: sub.idb + parts[0] + parts[1] for k, (sub, parts) in self._held.items()}
        return b"".join(self.out), held, self.dropped
