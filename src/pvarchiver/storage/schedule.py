"""When ETL runs: one stage per adjacent pair of stores, on the AA's aligned schedule.

Kept free of threads and clocks so it can be tested deterministically: the caller (the server's
event loop or a test) asks :meth:`ETLScheduler.due` with the current time and runs what is due,
preferably in a worker thread so that ingest is not starved.
"""

from __future__ import annotations

import itertools
import logging
from dataclasses import dataclass, field

from .etl import ETLStats, run_etl
from .partitions import next_etl_time
from .store import PlainPBStore

log = logging.getLogger(__name__)


@dataclass
class ETLStage:
    source: PlainPBStore
    dest: PlainPBStore
    next_run: float
    last: ETLStats | None = None
    history: list[ETLStats] = field(default_factory=list)


class ETLScheduler:
    """ETL stages for a chain of stores such as STS -> MTS -> LTS."""

    def __init__(self, stores: list[PlainPBStore], now: float) -> None:
        self.stores = stores
        self.stages = [
            ETLStage(a, b, next_etl_time(now, a.granularity)) for a, b in itertools.pairwise(stores)
        ]

    def due(self, now: float) -> list[ETLStage]:
        return [s for s in self.stages if s.next_run <= now]

    def run_due(self, now: float) -> list[ETLStats]:
        """Run every stage whose time has come, oldest store first, and reschedule it."""
        out = []
        for stage in self.due(now):
            stats = run_etl(stage.source, stage.dest, now=now)
            stage.last = stats
            stage.history = [*stage.history[-99:], stats]
            stage.next_run = next_etl_time(now, stage.source.granularity)
            if stats.errors:
                log.error(
                    "ETL %s->%s: %d file(s) skipped", stats.source, stats.dest, stats.files_skipped
                )
            out.append(stats)
        return out

    def seconds_until_next(self, now: float) -> float:
        return max(0.0, min((s.next_run for s in self.stages), default=3600.0) - now)

    def on_shutdown(self) -> list[ETLStats]:
        """``consolidateOnShutdown``: push everything out of the stores that ask for it.

        The caller must have stopped writing (the engine flushed and closed) first, because the
        current partition moves too.
        """
        out = []
        for stage in self.stages:
            if stage.source.config.consolidate_on_shutdown:
                out.append(run_etl(stage.source, stage.dest, everything=True))
        return out
