from pathlib import Path

import pytest

from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.paths import partition_path, pv_name_to_key
from pvarchiver.storage.url import StoreURLError, default_store_urls, parse_store_url


def test_pv_name_to_key_as_the_aa() -> None:
    assert pv_name_to_key("EIOC:LI30:MP01:HEARTBEAT") == "EIOC/LI30/MP01/HEARTBEAT:"
    assert pv_name_to_key("TST-CT{}Sig:1-I") == "TST/CT{}Sig/1/I:"
    assert pv_name_to_key("ca://X:Y") == "X/Y:"
    assert pv_name_to_key("pva://X-Y") == "X/Y:"
    # the terminator keeps one PV's files from matching another PV's file-name prefix
    assert not pv_name_to_key("X:CTRD_V_BOOK").startswith(pv_name_to_key("X:CTRD_V"))


def test_full_path_example_from_the_aa_docs() -> None:
    p = partition_path(Path("/arch"), pv_name_to_key("EIOC:LI30:MP01:HEARTBEAT"), "2012_08_24_16")
    assert p.as_posix() == "/arch/EIOC/LI30/MP01/HEARTBEAT:2012_08_24_16.pb"


@pytest.mark.parametrize("bad", ["", "a/b", "..", "x:..:y", "a\\b", "a\x00b", "ca://"])
def test_names_that_would_escape_the_store_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        pv_name_to_key(bad)


def test_store_url_with_macros_and_all_keys() -> None:
    url = (
        "pb://localhost?name=MTS&rootFolder=${ARCHAPPL_MEDIUM_TERM_FOLDER}"
        "&partitionGranularity=PARTITION_DAY&hold=2&gather=1&consolidateOnShutdown=true"
        "&pp=firstSample&pp=firstSample_3600"
    )
    c = parse_store_url(url, env={"ARCHAPPL_MEDIUM_TERM_FOLDER": "/data/mts"})
    assert c.name == "MTS" and c.root_folder == Path("/data/mts")
    assert c.granularity.name == "PARTITION_DAY" and (c.hold, c.gather) == (2, 1)
    assert c.consolidate_on_shutdown and c.post_processors == ["firstSample", "firstSample_3600"]
    again = parse_store_url(c.to_url())
    assert (again.name, again.root_folder, again.granularity, again.hold, again.gather) == (
        c.name,
        c.root_folder,
        c.granularity,
        c.hold,
        c.gather,
    )


def test_default_granularity_is_year_and_errors_are_clear() -> None:
    assert (
        parse_store_url("pb://localhost?name=X&rootFolder=/x").granularity.name == "PARTITION_YEAR"
    )
    with pytest.raises(StoreURLError, match="undefined macro"):
        parse_store_url("pb://localhost?name=X&rootFolder=${NOPE_NOT_SET}", env={})
    with pytest.raises(StoreURLError, match="no rootFolder"):
        parse_store_url("pb://localhost?name=X")
    with pytest.raises(StoreURLError, match="unknown partition granularity"):
        parse_store_url("pb://localhost?name=X&rootFolder=/x&partitionGranularity=WEEKLY")
    with pytest.raises(StoreURLError, match="unsupported store scheme"):
        parse_store_url("tar://localhost?name=X&rootFolder=/x")
    with pytest.raises(StoreURLError, match="compress='zstd' is not one of"):
        parse_store_url("parquet://localhost?name=X&rootFolder=/x&compress=zstd")
    with pytest.raises(StoreURLError, match="zstdLevel"):
        parse_store_url("parquet://localhost?name=X&rootFolder=/x&compress=ZSTD&zstdLevel=x")
    with pytest.raises(StoreURLError):
        parse_store_url("pb://localhost?name=X&rootFolder=/x&hold=two")


def test_default_stores_under_one_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for v in (
        "ARCHAPPL_SHORT_TERM_FOLDER",
        "ARCHAPPL_MEDIUM_TERM_FOLDER",
        "ARCHAPPL_LONG_TERM_FOLDER",
    ):
        monkeypatch.delenv(v, raising=False)
    cs = [parse_store_url(u) for u in default_store_urls(tmp_path)]
    assert [(c.name, c.root_folder, c.granularity.name) for c in cs] == [
        ("STS", tmp_path / "sts", "PARTITION_HOUR"),
        ("MTS", tmp_path / "mts", "PARTITION_DAY"),
        ("LTS", tmp_path / "lts", "PARTITION_YEAR"),
    ]
    assert cs[0].consolidate_on_shutdown and (cs[1].hold, cs[1].gather) == (2, 1)


def test_portable_names_map_ntfs_reserved_characters() -> None:
    key = pv_name_to_key("EIOC:LI30:MP01:HEART?BEAT", portable=True)
    assert key == "EIOC/LI30/MP01/HEART\uf03fBEAT\uf03a"
    assert not any(c in key for c in ':"*<>?|')
    assert pv_name_to_key("A:B", portable=False) == "A/B:"


def test_store_and_etl_work_with_windows_names(tmp_path, monkeypatch) -> None:
    """The whole store path (append, list, read, ETL) with the NTFS-safe names."""
    from pvarchiver.pb import PayloadType, Sample
    from pvarchiver.storage.etl import run_etl
    from pvarchiver.storage.naming import KeyNaming
    from pvarchiver.storage.store import PlainPBStore

    def store(name: str, gran: str) -> PlainPBStore:
        url = f"pb://localhost?name={name}&rootFolder={tmp_path / name.lower()}"
        return PlainPBStore(
            parse_store_url(url + f"&partitionGranularity={gran}"),
            naming=KeyNaming(portable=True),
        )

    sts = store("STS", "PARTITION_HOUR")
    mts = store("MTS", "PARTITION_DAY")
    t0 = 1_700_000_000
    samples = [Sample(t0 + i * 600, 0, float(i)) for i in range(12)]
    append_samples(sts, "X:Y-Z", PayloadType.SCALAR_DOUBLE, samples)
    names = [p.name for p in (tmp_path / "sts").rglob("*.pb")]
    assert names and all(":" not in n and "\uf03a" in n for n in names)
    assert [s.val for s in sts.read_all("X:Y-Z")] == [float(i) for i in range(12)]
    run_etl(sts, mts, now=t0 + 10 * 86400)
    assert [s.val for s in mts.read_all("X:Y-Z")] == [float(i) for i in range(12)]
    assert not list((tmp_path / "sts").rglob("*.pb"))
