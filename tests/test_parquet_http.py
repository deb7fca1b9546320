"""A real ``pvarchiver serve`` with PVs whose chain ends in a ``parquet://`` LTS (issue 19):
getData.json/raw read Parquet merged with the PlainPB STS, getData.parquet and
getDataForPVs.parquet are read by pandas and polars, and every docs/howto.md recipe of the
Parquet section runs against this server and this LTS folder."""

from __future__ import annotations

import calendar
import contextlib
import io
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pvarchiver.mgmt.default_policies import STS
from pvarchiver.pb import PayloadType, Sample, decode_header, decode_line, unescape
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.parquet_store import ParquetStore
from pvarchiver.storage.store import PlainPBStore
from pvarchiver.storage.url import default_store_urls, parse_store_url

from .helpers.mgmt import bpl
from .http_server import Server, running_server

pd = pytest.importorskip("pandas")
pl = pytest.importorskip("polars")
duckdb = pytest.importorskip("duckdb")

ROOT = Path(__file__).resolve().parents[1]
D = PayloadType.SCALAR_DOUBLE
SINE, COSINE = "PQ:DEMO:sine", "PQ:DEMO:cosine"
T0 = calendar.timegm((2024, 3, 10, 0, 0, 0))
DAY = 86400
LTS_END = T0 + 2 * DAY  # the LTS holds [T0, LTS_END), the STS the hour after
FROM, TO = "2024-03-10T12:00:00Z", "2024-03-12T00:10:00Z"
T_FROM, T_TO = T0 + DAY // 2, T0 + 2 * DAY + 600


def series(pv: str, t0: int, t1: int) -> list[Sample]:
    k = 1.0 if pv == SINE else -1.0
    return [Sample(t, 250_000_000, k * (t - T0) / 60.0, 0, 0) for t in range(t0, t1, 60)]


def everything(pv: str) -> list[Sample]:
    return series(pv, T0, LTS_END + 3600)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    root = tmp_path_factory.mktemp("pqhttp")
    storage = root / "storage"
    lts_dir = storage / "lts_parquet"
    lts_url = (
        f"parquet://localhost?name=LTS&rootFolder={lts_dir}"
        "&partitionGranularity=PARTITION_DAY&compress=ZSTD"
    )
    sts = PlainPBStore(parse_store_url(default_store_urls(storage)[0]))
    lts = ParquetStore(parse_store_url(lts_url))
    for pv in (SINE, COSINE):
        append_samples(lts, pv, D, series(pv, T0, LTS_END))
        append_samples(sts, pv, D, series(pv, LTS_END, LTS_END + 3600))
    with running_server(storage) as server:
        for pv in (SINE, COSINE):
            ti = {"pvName": pv, "DBRType": "DBR_SCALAR_DOUBLE", "paused": "true"}
            ti["dataStores"] = [STS, lts_url]  # type: ignore[assignment]
            r = bpl(
                str(server),
                "putPVTypeInfo",
                "POST",
                params={"pv": pv, "createnew": "true"},
                json=ti,
            )
            assert r.status_code == 200, r.text
        yield server, lts_dir


def expected(pv: str) -> list[Sample]:
    """[from, to] plus the one sample before ``from``."""
    xs = everything(pv)
    inside = [s for s in xs if T_FROM <= s.secs and (s.secs, s.nanos) <= (T_TO, 0)]
    before = [s for s in xs if (s.secs, s.nanos) < (T_FROM, 0)]
    return before[-1:] + inside


def get(base: str, ext: str, pvs: list[str], multi: bool = False) -> httpx.Response:
    what = "getDataForPVs" if multi else "getData"
    params = [("pv", p) for p in pvs] + [("from", FROM), ("to", TO)]
    r = httpx.get(f"{base}/retrieval/data/{what}.{ext}", params=params, timeout=60)
    assert r.status_code == 200, r.text
    return r


def test_json_reads_parquet_merged_with_pb(site: tuple[Server, Path]) -> None:
    server, _ = site
    got = get(str(server), "json", [SINE]).json()[0]["data"]
    want = expected(SINE)
    assert [(d["secs"], d["nanos"], d["val"]) for d in got] == [
        (s.secs, s.nanos, s.val) for s in want
    ]
    assert got[0]["secs"] < T_FROM  # the sample before `from`, from the Parquet LTS
    assert any(d["secs"] >= LTS_END for d in got)  # and the PlainPB STS after it


def test_raw_reads_parquet_merged_with_pb(site: tuple[Server, Path]) -> None:
    server, _ = site
    body = get(str(server), "raw", [SINE]).content
    got: list[Sample] = []
    header = None
    for line in body.split(b"\n")[:-1]:
        if not line:
            header = None
            continue
        if header is None:
            header = decode_header(unescape(line))
            assert header.pvname == SINE and header.type == D
            continue
        got.append(decode_line(header.type, header.year, line))
    assert got == expected(SINE)


def test_parquet_answer_is_read_by_pandas_and_polars(site: tuple[Server, Path]) -> None:
    server, _ = site
    url = f"{server!s}/retrieval/data/getData.parquet?pv={SINE}&from={FROM}&to={TO}"
    df = pd.read_parquet(url)
    want = expected(SINE)
    assert list(df.columns) == ["pv", "timestamp", "value", "severity", "status"]
    assert len(df) == len(want)
    assert [t.value for t in df["timestamp"]] == [s.secs * 10**9 + s.nanos for s in want]
    assert df["value"].tolist() == [s.val for s in want] and set(df["pv"]) == {SINE}
    both = pl.read_parquet(
        io.BytesIO(get(str(server), "parquet", [SINE, COSINE], multi=True).content)
    )
    counts = dict(both.group_by("pv").len().iter_rows())
    assert counts == {SINE: len(want), COSINE: len(expected(COSINE))}


def test_parquet_format_refuses_bad_input_with_4xx(site: tuple[Server, Path]) -> None:
    server, _ = site
    r = httpx.get(
        f"{server!s}/retrieval/data/getData.parquet",
        params={"pv": SINE, "from": "yesterday-ish"},
    )
    assert 400 <= r.status_code < 500


def howto_recipes() -> list[str]:
    text = (ROOT / "docs" / "howto.md").read_text(encoding="utf-8")
    section = text.split("## Read archived data with pandas, polars and DuckDB", 1)[1]
    section = section.split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, flags=re.S)


def test_the_howto_has_six_recipes() -> None:
    assert len(howto_recipes()) == 6


@pytest.mark.parametrize("index", range(6))
def test_each_howto_recipe_runs(
    site: tuple[Server, Path], tmp_path: Path, index: int, capsys: pytest.CaptureFixture[str]
) -> None:
    server, lts_dir = site
    code = howto_recipes()[index]
    code = code.replace("http://localhost:17665", str(server)).replace(
        "/srv/archiver/lts", str(lts_dir)
    )
    scope: dict[str, object] = {}
    with contextlib.chdir(tmp_path):
        exec(compile(code, f"howto recipe {index}", "exec"), scope)
    df = scope["df"]
    out = capsys.readouterr().out
    stored = len(series(SINE, T0, LTS_END))
    if index == 0:  # pandas, the HTTP answer
        assert len(df) == len(expected(SINE))  # type: ignore[arg-type]
    elif index == 1:  # polars, two PVs
        assert len(df) == len(expected(SINE)) + len(expected(COSINE))  # type: ignore[arg-type]
        assert SINE in out and COSINE in out
    elif index == 2:  # DuckDB, hourly means of the saved answer
        assert int(df["n"].sum()) == len(expected(SINE))  # type: ignore[index]
    else:  # the LTS folder, read three ways: both PVs, every stored sample
        assert len(df) == 2 * stored  # type: ignore[arg-type]
        assert SINE in out and COSINE in out
