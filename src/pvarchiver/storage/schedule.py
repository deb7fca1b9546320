"""When ETL runs: one stage per adjacent pair of stores of the PVs' chains, on the AA's
aligned schedule, subject to the named flags.

Kept free of threads and clocks so it can be tested deterministically: the caller (the server's
event loop or a test) asks :meth:`ETLScheduler.due` with the current time and runs what is due,
preferably in a worker thread so that ingest is not starved.

Named flags (the AA's, see ``docs/mgmt.md``): a stage does not run while
``SKIP_<dest>_FOR_ETL`` is true or while its source's ``etlOutofStoreIf=<flag>`` is false
(data then accumulates in the source); while the destination's ``etlIntoStoreIf=<flag>`` is
false the stage deletes what is due instead of moving it, as the AA does.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from .chains import StageSpec, Store, StoreChains
from .etl import ETLStats, Reducer, run_etl
from .partitions import next_etl_time
from .store import PlainPBStore

log = logging.getLogger(__name__)

#: a named flag's value (unknown names are false)
FlagLookup = Callable[[str], bool]


def flag_value(flags: FlagLookup, name: str) -> bool:
    """The AA's ``getNamedFlag``: the names ``true`` and ``false`` are literal values."""
    low = name.strip().lower()
    if low in ("true", "false"):
        return low == "true"
    return flags(name)


@dataclass
class ETLStage:
    source: PlainPBStore
    dest: Store
    next_run: float
    spec: StageSpec | None = None
    last: ETLStats | None = None
    history: list[ETLStats] = field(default_factory=list)


class ETLScheduler:
    """The ETL stages of every PV's chain (STS -> MTS -> LTS for the default one)."""

    def __init__(
        self,
        stores: Sequence[PlainPBStore],
        now: float,
        chains: StoreChains | None = None,
        flags: FlagLookup | None = None,
        reducer: Reducer | None = None,
        first_run: float | None = None,
    ) -> None:
        self.stores = list(stores)
        #: a new stage's first pass this many seconds after it appears (None: aligned)
        self.first_run = first_run
        self.chains = chains or StoreChains.fixed(self.stores)
        self.flags: FlagLookup = flags or (lambda _name: False)
        self.reducer = reducer
        self._by_key: dict[tuple[str, str], ETLStage] = {}
        self.stages: list[ETLStage] = []
        self.refresh(now)

    def refresh(self, now: float) -> None:
        """Stages for the chains as they are now; a stage keeps its schedule and history
        while some PV still needs it. Cheap enough to call before every pass."""
        stages = []
        keep: dict[tuple[str, str], ETLStage] = {}
        for spec in self.chains.stages():
            stage = self._by_key.get(spec.key)
            if stage is None:
                first = (
                    next_etl_time(now, spec.source.granularity)
                    if self.first_run is None
                    else now + self.first_run
                )
                stage = ETLStage(spec.source, spec.dest, first)
            stage.spec = spec
            keep[spec.key] = stage
            stages.append(stage)
        self._by_key = keep
        self.stages = stages

    def due(self, now: float) -> list[ETLStage]:
        return [s for s in self.stages if s.next_run <= now]

    def skipped_by_flags(self, stage: ETLStage) -> str | None:
        """Why a named flag stops ``stage`` now, or None."""
        if flag_value(self.flags, f"SKIP_{stage.dest.name}_FOR_ETL"):
            return f"SKIP_{stage.dest.name}_FOR_ETL is set"
        out_if = stage.source.config.extra.get("etlOutofStoreIf")
        if out_if and not flag_value(self.flags, out_if):
            return f"etlOutofStoreIf={out_if} is false"
        return None

    def run_stage(self, stage: ETLStage, now: float, everything: bool = False) -> ETLStats:
        """One pass of ``stage`` (flags applied), recorded in its history."""
        spec = stage.spec
        into_if = stage.dest.config.extra.get("etlIntoStoreIf")
        stats = run_etl(
            stage.source,
            stage.dest,  # type: ignore[arg-type]
            now=now,
            pvs=spec.pvs if spec is not None else None,
            everything=everything,
            exclude=spec.exclude if spec is not None else frozenset(),
            discard=bool(into_if) and not flag_value(self.flags, into_if or ""),
            reducer=self.reducer,
        )
        stage.last = stats
        stage.history = [*stage.history[-99:], stats]
        return stats

    def run_due(self, now: float) -> list[ETLStats]:
        """Run every stage whose time has come, oldest store first, and reschedule it."""
        self.refresh(now)
        out = []
        for stage in self.due(now):
            stage.next_run = next_etl_time(now, stage.source.granularity)
            why = self.skipped_by_flags(stage)
            if why is not None:
                log.info("ETL %s->%s skipped: %s", stage.source.name, stage.dest.name, why)
                continue
            stats = self.run_stage(stage, now)
            if stats.errors:
                log.error(
                    "ETL %s->%s: %d file(s) skipped", stats.source, stats.dest, stats.files_skipped
                )
            out.append(stats)
        return out

    def consolidate(
        self, chain: Sequence[Store], upto: str, pv: str, at: float | None = None
    ) -> list[ETLStats]:
        """``consolidateDataForPV``: run ``pv``'s stages from its first store up to the store
        named ``upto``: everything, the current partition included (``at`` None: the caller
        has made sure nothing writes the PV), or as a pass at time ``at`` would (hold and
        gather apply). Named flags apply as to every ETL pass; ValueError for an unknown
        store."""
        names = [s.name for s in chain]
        if upto not in names:
            raise ValueError(f"no store named {upto!r}; stores: {', '.join(names)}")
        out = []
        for a, b in itertools.pairwise(chain[: names.index(upto) + 1]):
            if a.is_blackhole:
                continue
            stage = ETLStage(a, b, 0.0, StageSpec(a, b, (pv,)))
            why = self.skipped_by_flags(stage)
            if why is not None:
                log.info("consolidate %s %s->%s skipped: %s", pv, a.name, b.name, why)
                continue
            now = time.time() if at is None else at
            out.append(self.run_stage(stage, now, everything=at is None))
        return out

    def seconds_until_next(self, now: float) -> float:
        return max(0.0, min((s.next_run for s in self.stages), default=3600.0) - now)

    def on_shutdown(self, now: float | None = None) -> list[ETLStats]:
        """``consolidateOnShutdown``: push everything out of the stores that ask for it.

        The caller must have stopped writing (the engine flushed and closed) first, because the
        current partition moves too.
        """
        now = time.time() if now is None else now
        self.refresh(now)
        out = []
        for stage in self.stages:
            if stage.source.config.consolidate_on_shutdown and self.skipped_by_flags(stage) is None:
                out.append(self.run_stage(stage, now, everything=True))
        return out
