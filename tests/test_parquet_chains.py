"""Parquet stores in the default chain and in ETL (issue 19 follow-ups): ``open_stores``
takes a ``parquet://`` MTS/LTS (never a first store), the default chain's stages move
PlainPB data into it, folder-wide work sees its folder, ``reducedata=`` into a Parquet store
reduces through the post-processors, and ``pp=`` on a Parquet store is refused with the
reason."""

from __future__ import annotations

import calendar
from collections.abc import Sequence
from pathlib import Path

import pytest

from pvarchiver.appliance import open_stores
from pvarchiver.pb import PayloadType, Sample
from pvarchiver.retrieval.reduce import REDUCER
from pvarchiver.settings import StorageSettings
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.chains import BlackholeStore, ChainError, StoreChains, check_chain
from pvarchiver.storage.etl import run_etl
from pvarchiver.storage.parquet_store import ParquetStore
from pvarchiver.storage.store import PlainPBStore
from pvarchiver.storage.url import StoreURLError, parse_store_url

D = PayloadType.SCALAR_DOUBLE
T0 = calendar.timegm((2020, 3, 1, 0, 0, 0))
DAY = 86400


def write(store: PlainPBStore | ParquetStore, pv: str, samples: Sequence[Sample]) -> None:
    """Seed a store."""
    append_samples(store, pv, D, list(samples))


def urls(tmp: Path, lts: str) -> tuple[str, ...]:
    return (
        f"pb://localhost?name=STS&rootFolder={tmp / 'sts'}&partitionGranularity=PARTITION_HOUR",
        f"pb://localhost?name=MTS&rootFolder={tmp / 'mts'}&partitionGranularity=PARTITION_DAY",
        lts,
    )


def pq_lts(tmp: Path, extra: str = "") -> str:
    return (
        f"parquet://localhost?name=LTS&rootFolder={tmp / 'lts'}"
        f"&partitionGranularity=PARTITION_YEAR&compress=ZSTD{extra}"
    )


def test_open_stores_takes_a_parquet_lts_and_its_stage_moves_pb_data_into_it(
    tmp_path: Path,
) -> None:
    opened = open_stores(StorageSettings(tmp_path, urls(tmp_path, pq_lts(tmp_path))))
    assert [type(s) for s in opened] == [PlainPBStore, PlainPBStore, ParquetStore]
    chains = StoreChains(opened)
    assert {(type(s), s.root) for s in chains.stores()} == {
        (type(s), s.root) for s in opened
    }  # folder-wide work (space, health, a PV's files) sees the Parquet folder
    pv = "DEF:PQ"
    write(opened[1], pv, [Sample(T0 + i * 600, 0, float(i)) for i in range(6 * 24 * 3)])
    (mts_lts,) = [s for s in chains.stages() if s.source is opened[1]]
    assert mts_lts.dest is opened[2]
    stats = run_etl(mts_lts.source, mts_lts.dest, now=T0 + 400 * DAY)
    assert stats.errors == [] and stats.samples_moved == 6 * 24 * 3
    assert not opened[1].files_for_pv(pv)
    assert [pf.path.name for pf in opened[2].files_for_pv(pv)] == ["PQ:2020.parquet"]
    assert [s.val for s in opened[2].read_all(pv)] == [float(i) for i in range(6 * 24 * 3)]


def test_open_stores_refuses_a_parquet_first_store_and_takes_a_blackhole_last(
    tmp_path: Path,
) -> None:
    first = (pq_lts(tmp_path).replace("name=LTS", "name=STS"), *urls(tmp_path, "")[1:2])
    with pytest.raises(StoreURLError, match="cannot be a PV's first store"):
        open_stores(StorageSettings(tmp_path, first))
    opened = open_stores(StorageSettings(tmp_path, urls(tmp_path, "blackhole://localhost?name=BH")))
    assert isinstance(opened[2], BlackholeStore)
    assert len(StoreChains(opened).stores()) == 2


def test_pp_on_a_parquet_store_is_refused_with_the_reason(tmp_path: Path) -> None:
    configs = [parse_store_url(u) for u in urls(tmp_path, pq_lts(tmp_path, "&pp=mean_3600"))]
    with pytest.raises(ChainError, match="cannot keep pp= caches"):
        check_chain(configs)


@pytest.mark.parametrize("into_parquet", [True, False])
def test_reducedata_with_a_parquet_store_at_either_end(tmp_path: Path, into_parquet: bool) -> None:
    pv = "RED:PQ"
    src_url = (
        f"pb://localhost?name=MTS&rootFolder={tmp_path / 'mts'}&partitionGranularity=PARTITION_DAY"
        if into_parquet
        else f"parquet://localhost?name=MTS&rootFolder={tmp_path / 'mts'}"
        "&partitionGranularity=PARTITION_DAY"
    )
    dst_url = (
        pq_lts(tmp_path, "&reducedata=mean_3600")
        if into_parquet
        else f"pb://localhost?name=LTS&rootFolder={tmp_path / 'lts'}"
        "&partitionGranularity=PARTITION_YEAR&reducedata=mean_3600"
    )
    src = (ParquetStore if not into_parquet else PlainPBStore)(parse_store_url(src_url))
    dst = (ParquetStore if into_parquet else PlainPBStore)(parse_store_url(dst_url))
    # two days at one sample a minute, value = the hour of the day
    write(src, pv, [Sample(T0 + i * 60, 0, float(i // 60 % 24)) for i in range(2 * 1440)])
    no_reducer = run_etl(src, dst, now=T0 + 30 * DAY)
    assert no_reducer.files_moved == 0 and "needs post-processors" in no_reducer.errors[0]
    assert len(src.files_for_pv(pv)) == 2
    stats = run_etl(src, dst, now=T0 + 30 * DAY, reducer=REDUCER)
    assert stats.errors == [] and stats.files_moved == 2
    assert not src.files_for_pv(pv)
    got = list(dst.read_all(pv))
    assert [s.secs for s in got] == [T0 + h * 3600 + 1800 for h in range(48)]  # bin middles
    assert [s.val for s in got] == [float(h % 24) for h in range(48)]
    # a rerun finds nothing to move and doubles nothing
    assert run_etl(src, dst, now=T0 + 30 * DAY, reducer=REDUCER).files_moved == 0
    assert len(list(dst.read_all(pv))) == 48
