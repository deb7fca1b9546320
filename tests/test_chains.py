"""Per-PV store chains (issue 16): the engine writes each PV to its own first store, ETL moves
it along its own chain (a blackhole at the end deletes), retrieval reads its own chain, and
the named flags steer ETL and retrieval. Real files, a clock the test controls."""

from __future__ import annotations

import calendar
import os
from pathlib import Path

import pytest

from pvarchiver.engine.writer import Engine
from pvarchiver.mgmt.default_policies import BLACKHOLE, STS
from pvarchiver.mgmt.default_policies import MTS_3_DAYS as MTS3
from pvarchiver.pb import PayloadType, Sample
from pvarchiver.retrieval.reduce import REDUCER
from pvarchiver.retrieval.service import Retrieval
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.chains import BlackholeStore, ChainError, StoreChains
from pvarchiver.storage.schedule import ETLScheduler
from pvarchiver.storage.store import PlainPBStore
from pvarchiver.storage.url import default_store_urls, parse_store_url

from .helpers.clock import Clock

D = PayloadType.SCALAR_DOUBLE
S = PayloadType.SCALAR_STRING
HOUR = 3600
DAY = 86400
T0 = calendar.timegm((2024, 3, 10, 0, 0, 0))  # a midnight, UTC

DEFAULT_PV = "CH:DEFAULT"
SHORT_PV = "CH:3DAYS"


def macros(root: Path) -> dict[str, str]:
    return {
        "ARCHAPPL_SHORT_TERM_FOLDER": str(root / "sts"),
        "ARCHAPPL_MEDIUM_TERM_FOLDER": str(root / "mts"),
        "ARCHAPPL_LONG_TERM_FOLDER": str(root / "lts"),
    }


def chains_for(root: Path, typeinfos: dict[str, list[str]]) -> StoreChains:
    """The appliance's default chain under ``root`` and ``typeinfos`` as the registry."""
    default = [PlainPBStore(parse_store_url(u)) for u in default_store_urls(root)]
    chains = StoreChains(default, macros(root))
    chains.bind(typeinfos.get, lambda: list(typeinfos.items()))
    return chains


def samples(t_begin: int, t_end: int, step: int, v: float = 1.0) -> list[Sample]:
    return [Sample(t, 0, v + i) for i, t in enumerate(range(t_begin, t_end, step))]


def times(store: PlainPBStore, pv: str) -> list[int]:
    return [s.secs for s in store.read_all(pv)]


# ---------------------------------------------------------------------- chain resolution
def test_typeinfo_urls_with_macros_resolve_to_the_default_stores(tmp_path: Path) -> None:
    chains = chains_for(tmp_path, {SHORT_PV: [STS, MTS3, BLACKHOLE]})
    sts, mts, lts = chains.default
    short = chains.chain(SHORT_PV)
    assert short[0] is sts  # one STS object for both chains: one lock, one cache
    assert short[1] is not mts and short[1].root == mts.root  # MTS with hold=3: same folder
    assert isinstance(short[2], BlackholeStore)
    assert chains.chain("NOT:IN:REGISTRY") == chains.default
    # the two MTS objects guard the same files with the same locks
    assert short[1].lock(SHORT_PV) is mts.lock(SHORT_PV)
    assert {str(s.root) for s in chains.stores()} == {str(s.root) for s in (sts, mts, lts)}


@pytest.mark.parametrize(
    ("urls", "why"),
    [
        ([], "at least one"),
        ([STS, BLACKHOLE, MTS3], "must be the last"),
        ([STS, STS.replace("HOUR", "DAY")], "two data stores are named STS"),
        ([STS, "tar://localhost?name=LTS&rootFolder=/x"], "unsupported store scheme"),
        ([STS, "parquet://localhost?name=LTS&rootFolder=/x&compress=zstd"], "is not one of"),
        (["parquet://localhost?name=STS&rootFolder=/x"], "cannot be a PV's first store"),
        (["pb://localhost?name=X"], "no rootFolder"),
    ],
)
def test_chains_that_cannot_be_are_refused_with_the_reason(
    tmp_path: Path, urls: list[str], why: str
) -> None:
    chains = chains_for(tmp_path, {})
    with pytest.raises(ChainError, match=why):
        chains.validate(urls)


# ---------------------------------------------------------------------- engine
def test_the_engine_writes_each_pv_to_its_own_first_store(tmp_path: Path) -> None:
    other_sts = STS.replace("${ARCHAPPL_SHORT_TERM_FOLDER}", str(tmp_path / "fast"))
    other_sts = other_sts.replace("name=STS", "name=FAST")
    chains = chains_for(
        tmp_path,
        {SHORT_PV: [other_sts, MTS3, BLACKHOLE], "CH:GONE": [BLACKHOLE]},
    )
    clock = Clock(T0 + 100)
    engine = Engine(chains.default[0], clock=clock, chains=chains)  # type: ignore[arg-type]
    for name in (DEFAULT_PV, SHORT_PV, "CH:GONE"):
        pv = engine.add_pv(name, D)
        for i in range(5):
            pv.on_event(T0 + i, 0, 0, 0, float(i))
    assert engine.write_all() == 15
    sts = chains.default[0]
    fast = chains.chain(SHORT_PV)[0]
    assert isinstance(sts, PlainPBStore) and isinstance(fast, PlainPBStore)
    assert times(sts, DEFAULT_PV) == [T0 + i for i in range(5)]
    assert times(fast, SHORT_PV) == [T0 + i for i in range(5)]
    assert not sts.files_for_pv(SHORT_PV)
    assert not sts.files_for_pv("CH:GONE") and engine.unwritten() == 0  # discarded


def test_a_pv_whose_chain_cannot_be_opened_keeps_its_samples_and_says_why(
    tmp_path: Path,
) -> None:
    chains = chains_for(tmp_path, {SHORT_PV: ["tar://localhost?name=X&rootFolder=/x"]})
    engine = Engine(chains.default[0], clock=Clock(T0 + 100), chains=chains)  # type: ignore[arg-type]
    pv = engine.add_pv(SHORT_PV, D)
    pv.on_event(T0, 0, 0, 0, 1.0)
    assert engine.write_all() == 0
    assert engine.unwritten() == 1
    assert "unsupported store scheme" in pv.metrics.last_write_error


# ---------------------------------------------------------------------- ETL and retention
def seed(chains: StoreChains, now: int) -> None:
    """Both PVs: one sample an hour for the 10 days before ``now``, in the STS (the last
    2 hours) and the MTS (the rest), as ETL would have left them."""
    sts, mts, _lts = chains.default
    assert isinstance(sts, PlainPBStore) and isinstance(mts, PlainPBStore)
    for pv in (DEFAULT_PV, SHORT_PV):
        old = samples(now - 10 * DAY, now - 2 * HOUR, HOUR)
        append_samples(mts, pv, D, old)
        append_samples(sts, pv, D, samples(now - 2 * HOUR, now, 600, 1000.0))


def test_a_chain_ending_in_a_blackhole_deletes_what_its_last_store_no_longer_holds(
    tmp_path: Path,
) -> None:
    chains = chains_for(tmp_path, {SHORT_PV: [STS, MTS3, BLACKHOLE], DEFAULT_PV: []})
    now = T0 + 12 * HOUR
    seed(chains, now)
    _sts, mts, lts = chains.default
    assert isinstance(lts, PlainPBStore) and isinstance(mts, PlainPBStore)
    sched = ETLScheduler(list(chains.default), now, chains)  # type: ignore[arg-type]
    # two days of ETL passes, every hour, with the clock moving on
    for t in range(now + HOUR, now + 2 * DAY, HOUR):
        sched.run_due(t)
    end = now + 2 * DAY
    # the default PV: old days went on to the LTS, nothing lost
    assert len(times(lts, DEFAULT_PV)) + len(times(mts, DEFAULT_PV)) == 10 * 24 - 2 + 12
    assert times(lts, DEFAULT_PV)
    # the 3-day PV never reaches the LTS, and the MTS keeps no day older than its hold
    assert not lts.files_for_pv(SHORT_PV)
    kept = times(mts, SHORT_PV)
    assert kept and min(kept) >= end - 4 * DAY
    assert min(times(mts, DEFAULT_PV) + times(lts, DEFAULT_PV)) == now - 10 * DAY
    stats = [s for st in sched.stages for s in st.history if s.dest == "BlackHole"]
    assert sum(s.files_discarded for s in stats) >= 6


def test_named_flags_stop_etl_or_turn_a_store_into_a_blackhole(tmp_path: Path) -> None:
    into_if = STS.replace("${ARCHAPPL_SHORT_TERM_FOLDER}", str(tmp_path / "a")) + ""
    into_if = into_if.replace("name=STS", "name=A")
    dest = (
        f"pb://localhost?name=B&rootFolder={tmp_path / 'b'}&partitionGranularity=PARTITION_DAY"
        "&etlIntoStoreIf=B_OPEN"
    )
    chains = chains_for(tmp_path, {SHORT_PV: [into_if, dest]})
    flags: dict[str, bool] = {"SKIP_B_FOR_ETL": True, "B_OPEN": True}
    now = T0 + 12 * HOUR
    a = chains.chain(SHORT_PV)[0]
    b = chains.chain(SHORT_PV)[1]
    assert isinstance(a, PlainPBStore) and isinstance(b, PlainPBStore)
    append_samples(a, SHORT_PV, D, samples(T0, T0 + 6 * HOUR, 600))
    sched = ETLScheduler(list(chains.default), now, chains, lambda n: flags.get(n, False))  # type: ignore[arg-type]
    sched.run_due(now + DAY)
    assert len(times(a, SHORT_PV)) == 36 and not b.files_for_pv(SHORT_PV)  # skipped
    flags["SKIP_B_FOR_ETL"] = False
    sched.run_due(now + 2 * DAY)
    assert len(times(b, SHORT_PV)) == 36 and not a.files_for_pv(SHORT_PV)  # moved
    append_samples(a, SHORT_PV, D, samples(now + 3 * DAY, now + 3 * DAY + HOUR, 600))
    flags["B_OPEN"] = False  # etlIntoStoreIf false: the AA drops the data; so do we
    sched.run_due(now + 5 * DAY)
    assert not a.files_for_pv(SHORT_PV) and len(times(b, SHORT_PV)) == 36


def test_etl_out_of_store_if_false_lets_data_accumulate(tmp_path: Path) -> None:
    src = (
        f"pb://localhost?name=A&rootFolder={tmp_path / 'a'}&partitionGranularity=PARTITION_HOUR"
        "&etlOutofStoreIf=A_OUT"
    )
    dst = f"pb://localhost?name=B&rootFolder={tmp_path / 'b'}&partitionGranularity=PARTITION_DAY"
    chains = chains_for(tmp_path, {SHORT_PV: [src, dst]})
    a, b = chains.chain(SHORT_PV)
    assert isinstance(a, PlainPBStore) and isinstance(b, PlainPBStore)
    append_samples(a, SHORT_PV, D, samples(T0, T0 + 3 * HOUR, 600))
    flags = {"A_OUT": False}
    sched = ETLScheduler(list(chains.default), T0, chains, lambda n: flags.get(n, False))  # type: ignore[arg-type]
    sched.run_due(T0 + DAY)
    assert len(times(a, SHORT_PV)) == 18 and not b.files_for_pv(SHORT_PV)
    flags["A_OUT"] = True
    sched.run_due(T0 + 2 * DAY)
    assert len(times(b, SHORT_PV)) == 18


def test_reducedata_reduces_during_etl_and_a_failed_reduction_keeps_the_source(
    tmp_path: Path,
) -> None:
    src = f"pb://localhost?name=A&rootFolder={tmp_path / 'a'}&partitionGranularity=PARTITION_HOUR"
    dst = (
        f"pb://localhost?name=B&rootFolder={tmp_path / 'b'}&partitionGranularity=PARTITION_DAY"
        "&reducedata=mean_600"
    )
    chains = chains_for(tmp_path, {SHORT_PV: [src, dst], "CH:TEXT": [src, dst]})
    a, b = chains.chain(SHORT_PV)
    assert isinstance(a, PlainPBStore) and isinstance(b, PlainPBStore)
    append_samples(a, SHORT_PV, D, [Sample(T0 + i * 10, 0, float(i)) for i in range(360)])  # 1 hour
    append_samples(a, "CH:TEXT", S, [Sample(T0 + i * 60, 0, f"t{i}") for i in range(60)])
    sched = ETLScheduler(list(chains.default), T0, chains, reducer=REDUCER)  # type: ignore[arg-type]
    sched.run_due(T0 + DAY)
    reduced = list(b.read_all(SHORT_PV))
    assert [s.secs for s in reduced] == [T0 + k * 600 + 300 for k in range(6)]  # bin centres
    assert [s.val for s in reduced] == [sum(range(k * 60, k * 60 + 60)) / 60 for k in range(6)]
    assert not a.files_for_pv(SHORT_PV)
    # mean of strings cannot be: the AA would delete the source anyway, here it stays
    assert len(list(a.read_all("CH:TEXT"))) == 60 and not b.files_for_pv("CH:TEXT")
    errors = [e for st in sched.stages for s in st.history for e in s.errors]
    assert any("CH:TEXT" in e or "mean" in e for e in errors)
    # a second pass after a kill between append and delete would not double anything
    sched.run_due(T0 + 2 * DAY)
    assert len(list(b.read_all(SHORT_PV))) == 6


# ---------------------------------------------------------------------- retrieval
def test_retrieval_reads_each_pvs_own_chain_and_skips_flagged_stores(tmp_path: Path) -> None:
    other = (
        f"pb://localhost?name=OWN&rootFolder={tmp_path / 'own'}&partitionGranularity=PARTITION_DAY"
    )
    chains = chains_for(tmp_path, {SHORT_PV: [STS, other]})
    sts = chains.default[0]
    own = chains.chain(SHORT_PV)[1]
    assert isinstance(sts, PlainPBStore) and isinstance(own, PlainPBStore)
    append_samples(own, SHORT_PV, D, samples(T0, T0 + 5 * HOUR, HOUR))
    append_samples(sts, SHORT_PV, D, samples(T0 + 5 * HOUR, T0 + 6 * HOUR, 600, 100.0))
    flags: dict[str, bool] = {}
    r = Retrieval(list(chains.default), chains=chains, flags=lambda n: flags.get(n, False))  # type: ignore[arg-type]

    def got() -> list[int]:
        st = r.stream(SHORT_PV, (T0, 0), (T0 + DAY, 0))
        return [int(t) for c in st.chunks for t in c.block.secs]

    assert got() == [T0 + h * HOUR for h in range(5)] + [T0 + 5 * HOUR + k * 600 for k in range(6)]
    flags["SKIP_STS_FOR_RETRIEVAL"] = True
    assert got() == [T0 + h * HOUR for h in range(5)]


# ---------------------------------------------------------------------- pp= caches
def test_pp_caches_are_built_by_etl_and_answer_retrieval_while_fresh(tmp_path: Path) -> None:
    src = f"pb://localhost?name=A&rootFolder={tmp_path / 'a'}&partitionGranularity=PARTITION_HOUR"
    dst = (
        f"pb://localhost?name=B&rootFolder={tmp_path / 'b'}&partitionGranularity=PARTITION_DAY"
        "&pp=mean_600&pp=meanSample_1800&pp=nonsense_5"
    )
    chains = chains_for(tmp_path, {SHORT_PV: [src, dst]})
    a, b = chains.chain(SHORT_PV)
    assert isinstance(a, PlainPBStore) and isinstance(b, PlainPBStore)
    append_samples(
        a, SHORT_PV, D, [Sample(T0 + i * 10, 0, float(i)) for i in range(720)]
    )  # 2 hours
    sched = ETLScheduler(list(chains.default), T0, chains, reducer=REDUCER)  # type: ignore[arg-type]
    sched.run_due(T0 + DAY)
    (pf,) = b.files_for_pv(SHORT_PV)
    caches = sorted(p.name for p in pf.path.parent.iterdir() if p.name != pf.path.name)
    # the AA's extensions: a no-fill variant's "Sample" is dropped; an unknown pp is skipped
    assert caches == [pf.path.name[:-3] + ".mean_1800", pf.path.name[:-3] + ".mean_600"]
    r = Retrieval(list(chains.default), chains=chains)  # type: ignore[arg-type]

    def means() -> list[float]:
        st = r.stream(SHORT_PV, (T0, 0), (T0 + 2 * HOUR - 1, 0), "mean_600")
        return [float(v) for c in st.chunks for v in c.block.vals]

    want = [sum(range(k * 60, k * 60 + 60)) / 60 for k in range(12)]
    assert means() == want
    # the answer really comes from the cache: a (fresh) cache with other values is believed
    cache = pf.path.with_name(pf.path.name[:-3] + ".mean_600")
    from pvarchiver.pb import PayloadInfo, header_line, sample_line

    lines = [header_line(PayloadInfo(D, SHORT_PV, 2024))]
    lines += [sample_line(D, 2024, Sample(T0 + k * 600 + 300, 0, -1.0)) for k in range(12)]
    cache.write_bytes(b"".join(lines))
    assert means() == [-1.0] * 12
    # newer data than the cache (dated a second later: file times tick in jiffies)
    append_samples(b, SHORT_PV, D, [Sample(T0 + 7200 + 5, 0, 5.0)])
    later = cache.stat().st_mtime_ns + 1_000_000_000
    os.utime(pf.path, ns=(later, later))
    assert means() == want


@pytest.mark.parametrize("torn", [0, 7])
def test_a_reducing_etl_cut_short_by_a_crash_neither_loses_nor_doubles(
    tmp_path: Path, torn: int
) -> None:
    """A kill after the reduced samples reached the destination but before the source was
    deleted (``torn``: and with the destination's last line half written): the next pass
    finishes the move with every reduced sample exactly once."""
    src = f"pb://localhost?name=A&rootFolder={tmp_path / 'a'}&partitionGranularity=PARTITION_HOUR"
    dst = (
        f"pb://localhost?name=B&rootFolder={tmp_path / 'b'}&partitionGranularity=PARTITION_DAY"
        "&reducedata=mean_600"
    )
    chains = chains_for(tmp_path, {SHORT_PV: [src, dst]})
    a, b = chains.chain(SHORT_PV)
    assert isinstance(a, PlainPBStore) and isinstance(b, PlainPBStore)
    append_samples(a, SHORT_PV, D, [Sample(T0 + i * 10, 0, float(i)) for i in range(360)])
    (pf,) = a.files_for_pv(SHORT_PV)
    before_delete = pf.path.read_bytes()
    sched = ETLScheduler(list(chains.default), T0, chains, reducer=REDUCER)  # type: ignore[arg-type]
    sched.run_due(T0 + DAY)
    want = [(s.secs, s.val) for s in b.read_all(SHORT_PV)]
    assert len(want) == 6
    pf.path.write_bytes(before_delete)  # the source was never deleted
    if torn:
        (dpf,) = b.files_for_pv(SHORT_PV)
        os.truncate(dpf.path, dpf.path.stat().st_size - torn)
    b.forget(SHORT_PV)
    sched.run_due(T0 + 2 * DAY)
    assert [(s.secs, s.val) for s in b.read_all(SHORT_PV)] == want
    assert not a.files_for_pv(SHORT_PV)
