"""changeTypeForPV, mergeInData and importDataFromPlugin (issue 16 items 4 and 6).

The file work is tested on its own (storage.convert, storage.merge), then the actions end to
end against real ``pvarchiver serve`` processes: two of them for mergeInData, and one killed
with SIGKILL in the middle of a type change and restarted, after which the change is asked
again and every sample must be there exactly once, all of the new type.

Each PV here has its own one-store chain (a ``DATA`` store with daily partitions in a folder
of the test), registered paused with putPVTypeInfo, so no ETL stage moves its files and no
Channel Access is needed; the files are written before the server first opens that store.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pvarchiver.pb import PayloadInfo, Sample
from pvarchiver.pb import PayloadType as P
from pvarchiver.storage import PlainPBStore, parse_store_url
from pvarchiver.storage.batch import Batch, append_samples
from pvarchiver.storage.convert import ConversionError, convert_pv
from pvarchiver.storage.merge import merge_into
from pvarchiver.storage.pbfile import PBFile
from pvarchiver.storage.rewrite import TEMP_SUFFIX

from .helpers.mgmt import bpl, ca_env, statuses, wait_status
from .helpers.wait import wait_for
from .http_server import Server, running_server
from .ioc import counter_db, running_ioc

T0 = 1577836800  # 2020-01-01T00:00:00Z
DAY = 86400


def store_url(folder: Path, name: str = "DATA") -> str:
    return f"pb://localhost?name={name}&rootFolder={folder}&partitionGranularity=PARTITION_DAY"


def open_data(folder: Path, name: str = "DATA") -> PlainPBStore:
    return PlainPBStore(parse_store_url(store_url(folder, name)))


def seed(folder: Path, pv: str, ptype: P, samples: list[Sample]) -> PlainPBStore:
    st = open_data(folder)
    append_samples(st, pv, ptype, samples)
    return st


def everything(st: PlainPBStore, pv: str) -> list[tuple[int, int, object]]:
    return [(s.secs, s.nanos, s.val) for s in open_data(st.root).read_all(pv)]


def file_types(st: PlainPBStore, pv: str) -> list[P]:
    out = []
    for pf in st.files_for_pv(pv):
        with PBFile.open(pf.path) as f:
            out.append(f.header.type)
    return out


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


# ---------------------------------------------------------------------- storage.convert
def test_float_to_double_keeps_every_sample_and_field(tmp_path: Path) -> None:
    pv = "CV:F"
    samples = [Sample(T0 + i * 3600, i, i * 0.25, i % 3, i % 2) for i in range(72)]
    samples[5] = Sample(T0 + 5 * 3600, 5, 1.25, 1, 1, fields={"EGU": "mm"}, repeatcount=4)
    st = seed(tmp_path, pv, P.SCALAR_FLOAT, samples)
    rep = convert_pv([st], pv, P.SCALAR_DOUBLE)
    assert (rep.files_converted, rep.samples, rep.dropped) == (3, 72, 0)
    assert file_types(st, pv) == [P.SCALAR_DOUBLE] * 3
    got = list(open_data(tmp_path).read_all(pv))
    assert [(s.secs, s.nanos, s.val, s.severity, s.status) for s in got] == [
        (s.secs, s.nanos, s.val, s.severity, s.status) for s in samples
    ]
    assert got[5].fields == {"EGU": "mm"} and got[5].repeatcount == 4
    assert not list(tmp_path.rglob("*" + TEMP_SUFFIX))
    # a second run finds nothing to do
    again = convert_pv([st], pv, P.SCALAR_DOUBLE)
    assert (again.files_converted, again.files_already) == (0, 3)


def test_mixed_files_left_by_a_crash_are_finished(tmp_path: Path) -> None:
    """Some files already of the new type, a temporary file of an interrupted rewrite: the
    rerun converts the rest, removes the leftover and loses nothing."""
    pv = "CV:MIX"
    st = seed(tmp_path, pv, P.SCALAR_INT, [Sample(T0 + i * 7200, 0, i) for i in range(36)])
    files = st.files_for_pv(pv)
    # convert the first file only, as a killed run would have
    only_first = open_data(tmp_path)
    first = files[0].path
    stash = tmp_path / "stash"
    stash.mkdir()
    for pf in files[1:]:
        pf.path.rename(stash / pf.path.name)
    convert_pv([only_first], pv, P.SCALAR_DOUBLE)
    for pf in files[1:]:
        (stash / pf.path.name).rename(pf.path)
    (first.parent / (files[1].path.name + TEMP_SUFFIX)).write_bytes(b"half a file")
    assert file_types(st, pv) == [P.SCALAR_DOUBLE, P.SCALAR_INT, P.SCALAR_INT]
    rep = convert_pv([st], pv, P.SCALAR_DOUBLE)
    assert (rep.files_converted, rep.files_already) == (2, 1)
    assert [v for _s, _n, v in everything(st, pv)] == [float(i) for i in range(36)]
    assert not list(tmp_path.rglob("*" + TEMP_SUFFIX))


@pytest.mark.parametrize(
    ("src", "vals", "dst", "why"),
    [
        (P.SCALAR_DOUBLE, [1.0, 2.5], P.SCALAR_INT, "2.5 is not an integer"),
        (P.SCALAR_DOUBLE, [0.1], P.SCALAR_FLOAT, "not exactly a 32-bit float"),
        (P.SCALAR_INT, [70000], P.SCALAR_SHORT, "outside -32768..32767"),
        (P.SCALAR_STRING, ["1.5", "open"], P.SCALAR_DOUBLE, "'open' is not a number"),
        (P.WAVEFORM_DOUBLE, [[1.0, 2.0]], P.SCALAR_DOUBLE, "2 elements is not a scalar"),
        (P.SCALAR_DOUBLE, [1.0], P.V4_GENERIC_BYTES, "cannot be converted"),
    ],
)
def test_lossy_conversion_is_refused_and_nothing_changes(
    tmp_path: Path, src: P, vals: list[object], dst: P, why: str
) -> None:
    pv = "CV:LOSSY"
    st = seed(tmp_path, pv, src, [Sample(T0 + i * DAY, 0, v) for i, v in enumerate(vals)])
    before = snapshot(tmp_path)
    with pytest.raises(ConversionError, match=why):
        convert_pv([st], pv, dst)
    assert snapshot(tmp_path) == before


def test_force_truncates_and_drops_what_cannot_convert(tmp_path: Path) -> None:
    pv = "CV:FORCE"
    vals = ["1.5", "open", "-2.75", "1e12"]
    st = seed(tmp_path, pv, P.SCALAR_STRING, [Sample(T0 + i, 0, v) for i, v in enumerate(vals)])
    rep = convert_pv([st], pv, P.SCALAR_INT, force=True)
    assert rep.dropped == 1
    assert [v for _s, _n, v in everything(st, pv)] == [1, -2, 2**31 - 1]


@pytest.mark.parametrize(
    ("src", "vals", "dst", "want"),
    [
        (P.SCALAR_DOUBLE, [1.5, -3.0], P.SCALAR_STRING, ["1.5", "-3.0"]),
        (P.SCALAR_FLOAT, [0.10000000149011612], P.SCALAR_STRING, ["0.1"]),
        (P.SCALAR_STRING, [" 42 ", "-7"], P.SCALAR_SHORT, [42, -7]),
        (P.SCALAR_SHORT, [3, -4], P.SCALAR_BYTE, [b"\x03", b"\xfc"]),
        (P.SCALAR_BYTE, [b"\xfc"], P.SCALAR_DOUBLE, [-4.0]),
        (P.WAVEFORM_INT, [[1, 2, 3], []], P.WAVEFORM_DOUBLE, [[1.0, 2.0, 3.0], []]),
        (P.WAVEFORM_SHORT, [[1, -1]], P.WAVEFORM_STRING, [["1", "-1"]]),
        (P.WAVEFORM_BYTE, [b"\x01\xff"], P.WAVEFORM_INT, [[1, -1]]),
        (P.SCALAR_DOUBLE, [2.5], P.WAVEFORM_DOUBLE, [[2.5]]),
        (P.WAVEFORM_FLOAT, [[4.5]], P.SCALAR_DOUBLE, [4.5]),
    ],
)
def test_conversions(
    tmp_path: Path, src: P, vals: list[object], dst: P, want: list[object]
) -> None:
    pv = "CV:ONE"
    st = seed(tmp_path, pv, src, [Sample(T0 + i, 0, v) for i, v in enumerate(vals)])
    convert_pv([st], pv, dst)
    assert file_types(st, pv) == [dst]
    assert [v for _s, _n, v in everything(st, pv)] == want


def test_unwritten_samples_are_converted_and_appended(tmp_path: Path) -> None:
    """The engine's samples that its store refused (``extra``): converted and appended after
    the files, only those newer than what is stored."""
    pv = "CV:HELD"
    st = seed(tmp_path, pv, P.SCALAR_FLOAT, [Sample(T0 + i, 0, float(i)) for i in range(5)])
    held = [Sample(T0 + i, 0, float(i)) for i in range(3, 8)]  # 3 and 4 are stored already
    rep = convert_pv([st], pv, P.SCALAR_DOUBLE, extra=(P.SCALAR_FLOAT, held))
    assert rep.extra_written == 3
    assert [v for _s, _n, v in everything(st, pv)] == [float(i) for i in range(8)]


# ---------------------------------------------------------------------- storage.merge
def test_merge_sorts_dedups_and_creates_remote_only_partitions(tmp_path: Path) -> None:
    pv = "MG:UNIT"
    local = [Sample(T0 + i * 600, 0, float(i)) for i in range(0, 144, 2)]  # day 1, even
    st = seed(tmp_path, pv, P.SCALAR_DOUBLE, local)
    remote = [Sample(T0 + i * 600, 0, -1.0 if i % 2 == 0 else float(i)) for i in range(288)]

    hdr = PayloadInfo(P.SCALAR_DOUBLE, pv, 2020)
    rep = merge_into(st, pv, P.SCALAR_DOUBLE, ((hdr, s) for s in remote))
    assert (rep.partitions, rep.created, rep.remote_samples) == (2, 1, 288)
    assert rep.added == 288 - 72
    got = everything(st, pv)
    # local values win where both have a timestamp; every timestamp once, in order
    want = [float(i) if i < 144 or i % 2 else -1.0 for i in range(288)]
    assert [v for _s, _n, v in got] == want
    again = merge_into(st, pv, P.SCALAR_DOUBLE, ((hdr, s) for s in remote))
    assert again.added == 0 and everything(st, pv) == got


# ---------------------------------------------------------------------- the real server
def put_paused(base: str, pv: str, dbr: str, stores: list[str], paused: bool = True) -> None:
    ti = {
        "pvName": pv,
        "DBRType": dbr,
        "samplingPeriod": "1.0",
        "paused": "true" if paused else "false",
        "dataStores": stores,
    }
    r = bpl(base, "putPVTypeInfo", "POST", params={"pv": pv, "createnew": "true"}, json=ti)
    assert r.status_code == 200, r.text


def refused(r: httpx.Response, status: int, text: str) -> None:
    assert r.status_code == status, (r.request.url, r.status_code, r.text)
    assert text in r.json()["validation"], r.json()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Server, Path]]:
    tmp = tmp_path_factory.mktemp("data-actions")
    with running_server(tmp / "storage") as base:
        yield base, tmp


def test_change_type_over_http(server: tuple[Server, Path]) -> None:
    base, tmp = server
    folder = tmp / "ct"
    pv = "CT:FLOAT"
    st = seed(folder, pv, P.SCALAR_FLOAT, [Sample(T0 + i * 3600, 0, i * 0.5) for i in range(60)])
    put_paused(base, pv, "DBR_SCALAR_FLOAT", [store_url(folder)])
    put_paused(base, "CT:LIVE", "DBR_SCALAR_FLOAT", [store_url(folder)], paused=False)

    refused(
        bpl(base, "changeTypeForPV", params={"pv": "CT:LIVE", "newtype": "DBR_SCALAR_DOUBLE"}),
        400,
        "Need to pause PV before changing type for CT:LIVE",
    )
    refused(
        bpl(base, "changeTypeForPV", params={"pv": pv, "newtype": "DOUBLE"}), 400, "Unknown type"
    )
    refused(bpl(base, "changeTypeForPV", params={"pv": pv}), 400, "Missing parameter newtype")
    refused(
        bpl(base, "changeTypeForPV", params={"pv": "CT:NONE", "newtype": "DBR_SCALAR_DOUBLE"}),
        404,
        "not being archived",
    )
    before = snapshot(folder)
    r = bpl(base, "changeTypeForPV", params={"pv": pv, "newtype": "DBR_SCALAR_INT"})
    refused(r, 400, "0.5 is not an integer")
    assert "force=true" in r.json()["validation"]
    assert snapshot(folder) == before
    assert bpl(base, "getPVTypeInfo", params={"pv": pv}).json()["DBRType"] == "DBR_SCALAR_FLOAT"

    r = bpl(base, "changeTypeForPV", params={"pv": pv, "newtype": "DBR_SCALAR_DOUBLE"})
    assert r.status_code == 200 and r.json()["status"] == "ok", r.text
    assert file_types(st, pv) == [P.SCALAR_DOUBLE] * 3
    assert bpl(base, "getPVTypeInfo", params={"pv": pv}).json()["DBRType"] == "DBR_SCALAR_DOUBLE"
    data = httpx.get(
        f"{base}/retrieval/data/getData.json",
        params={"pv": pv, "from": "2020-01-01T00:00:00Z", "to": "2020-01-04T00:00:00Z"},
        timeout=30,
    ).json()
    assert [s["val"] for s in data[0]["data"]] == [i * 0.5 for i in range(60)]
    assert data[0]["meta"].get("DBRType", "DBR_SCALAR_DOUBLE") == "DBR_SCALAR_DOUBLE"

    r = bpl(
        base, "changeTypeForPV", params={"pv": pv, "newtype": "DBR_SCALAR_INT", "force": "true"}
    )
    assert r.status_code == 200, r.text
    assert [v for _s, _n, v in everything(st, pv)] == [int(i * 0.5) for i in range(60)]


def test_merge_in_data_from_another_server(server: tuple[Server, Path]) -> None:
    base, tmp = server
    pv = "MG:PV"
    here, there = tmp / "mg-here", tmp / "mg-there"
    # here: day 1 and 2, every 20 min; there: day 2 and 3, every 10 min, its own values
    seed(here, pv, P.SCALAR_DOUBLE, [Sample(T0 + i * 1200, 0, 1.0) for i in range(144)])
    other_samples = [Sample(T0 + DAY + i * 600, 0, 2.0) for i in range(288)]
    seed(there, pv, P.SCALAR_DOUBLE, other_samples)
    put_paused(base, pv, "DBR_SCALAR_DOUBLE", [store_url(here)])
    with running_server(tmp / "other-storage") as other:
        put_paused(other, pv, "DBR_SCALAR_DOUBLE", [store_url(there)])
        refused(
            bpl(
                base,
                "mergeInData",
                params={"pv": pv, "other": f"{other}/retrieval", "storage": "NOPE"},
            ),
            400,
            "Cannot find storage with name NOPE",
        )
        refused(
            bpl(base, "mergeInData", params={"pv": pv, "other": "ftp://x", "storage": "DATA"}),
            400,
            "data retrieval URL",
        )
        r = bpl(
            base, "mergeInData", params={"pv": pv, "other": f"{other}/retrieval", "storage": "DATA"}
        )
        assert r.status_code == 200 and r.json()["status"] == "ok", r.text
        want_ts = sorted({T0 + i * 1200 for i in range(144)} | {s.secs for s in other_samples})
        got = everything(open_data(here), pv)
        assert [s for s, _n, _v in got] == want_ts
        # ours where both have the timestamp, theirs elsewhere; day 3 is new here
        assert {v for s, _n, v in got if s < T0 + DAY} == {1.0}
        assert [v for s, _n, v in got if s >= T0 + 2 * DAY] == [2.0] * 144
        assert len(open_data(here).files_for_pv(pv)) == 3
        r = bpl(
            base, "mergeInData", params={"pv": pv, "other": f"{other}/retrieval", "storage": "DATA"}
        )
        assert r.status_code == 200, r.text
        assert everything(open_data(here), pv) == got
    port = other.rsplit(":", 1)[1]
    refused(
        bpl(
            base,
            "mergeInData",
            params={"pv": pv, "other": f"http://127.0.0.1:{port}/retrieval", "storage": "DATA"},
        ),
        400,
        "cannot read",
    )


def test_import_data_from_plugin(server: tuple[Server, Path]) -> None:
    base, tmp = server
    pv = "IM:PV"
    dest, src = tmp / "im-dest", tmp / "im-src"
    seed(dest, pv, P.SCALAR_DOUBLE, [Sample(T0 + i * 60, 0, 1.0) for i in range(10)])
    seed(src, pv, P.SCALAR_DOUBLE, [Sample(T0 + i * 60, 0, 2.0) for i in range(30)])
    put_paused(base, pv, "DBR_SCALAR_DOUBLE", [store_url(dest)])
    params = {
        "pv": pv,
        "from": "2020-01-01T00:00:00Z",
        "to": "2020-01-01T00:25:00Z",
        "src": store_url(src, "SRC"),
        "dest": "DATA",
    }
    refused(
        bpl(base, "importDataFromPlugin", params={**params, "dest": "LTS"}),
        400,
        "Cannot find storage",
    )
    refused(
        bpl(base, "importDataFromPlugin", params={**params, "src": "s3://b/x"}),
        400,
        "unsupported store scheme",
    )
    refused(
        bpl(base, "importDataFromPlugin", params={**params, "from": "yesterday"}),
        400,
        "Cannot parse time",
    )
    refused(
        bpl(base, "importDataFromPlugin", params={**params, "pv": "IM:NONE"}),
        404,
        "not being archived",
    )
    refused(
        bpl(base, "importDataFromPlugin", params={**params, "src": store_url(tmp / "nowhere")}),
        400,
        "does not exist",
    )
    before = snapshot(dest)
    r = bpl(base, "importDataFromPlugin", params=params)
    assert r.status_code == 200, r.text
    assert r.json() == {"status": "ok", "pvName": pv}
    got = everything(open_data(dest), pv)
    assert [v for _s, _n, v in got] == [1.0] * 10 + [2.0] * 16  # newer than dest's last, to 00:25
    assert [s for s, _n, _v in got] == [T0 + i * 60 for i in range(26)]
    assert snapshot(dest) != before
    r = bpl(base, "importDataFromPlugin", params=params)  # again: nothing newer to add
    assert r.status_code == 200 and everything(open_data(dest), pv) == got


# ---------------------------------------------------------------------- crash safety
N_FILES = 600
PER_FILE = 400


def test_sigkill_during_change_type_then_rerun(tmp_path: Path) -> None:
    """Killed while converting: each file wholly old or wholly new; asking again after the
    restart converts the rest; every sample there once, of the new type."""
    pv = "KILL:CT"
    folder = tmp_path / "data"
    st = open_data(folder)
    import numpy as np

    n = N_FILES * PER_FILE
    secs = T0 + np.arange(n, dtype=np.int64) * (DAY // PER_FILE)
    st.append(
        Batch.of_columns(pv, P.SCALAR_FLOAT, secs, np.zeros(n, np.int64), np.arange(n) * 0.25)
    ).one()
    assert len(st.files_for_pv(pv)) == N_FILES
    storage = tmp_path / "storage"
    with running_server(storage) as base:
        put_paused(base, pv, "DBR_SCALAR_FLOAT", [store_url(folder)])
        params = {"pv": pv, "newtype": "DBR_SCALAR_DOUBLE"}

        def ask() -> None:
            try:
                bpl(base, "changeTypeForPV", params=params)
            except httpx.HTTPError:
                pass  # the server is killed under the request

        threading.Thread(target=ask, daemon=True).start()
        converted = lambda: file_types(st, pv).count(P.SCALAR_DOUBLE)  # noqa: E731
        assert wait_for(lambda: converted() >= 5, timeout=60), "conversion did not start"
        os.kill(base.pid, signal.SIGKILL)
    types = file_types(st, pv)
    done = types.count(P.SCALAR_DOUBLE)
    assert 0 < done < N_FILES, f"{done} of {N_FILES} converted at the kill"
    assert set(types) == {P.SCALAR_FLOAT, P.SCALAR_DOUBLE}
    with running_server(storage) as base:
        info = bpl(base, "getPVTypeInfo", params={"pv": pv}).json()
        assert info["DBRType"] == "DBR_SCALAR_FLOAT"  # set only once every file is converted
        r = httpx.get(f"{base}/mgmt/bpl/changeTypeForPV", params=params, timeout=300)
        assert r.status_code == 200, r.text
        info = bpl(base, "getPVTypeInfo", params={"pv": pv}).json()
        assert info["DBRType"] == "DBR_SCALAR_DOUBLE"
    assert file_types(st, pv) == [P.SCALAR_DOUBLE] * N_FILES
    got = list(open_data(folder).read_all(pv))
    assert [s.secs for s in got] == secs.tolist()
    assert [s.val for s in got] == [i * 0.25 for i in range(n)]
    assert not list(folder.rglob("*" + TEMP_SUFFIX))


# ---------------------------------------------------------------------- the engine's samples
def _detail(base: str, pv: str, label: str) -> int:
    rows = bpl(base, "getPVDetails", params={"pv": pv}).json()
    return int(next((r["value"] for r in rows if r["name"] == label), 0))


def test_samples_the_engine_still_buffers_are_converted_too(tmp_path: Path) -> None:
    """A PV archived from a real IOC, paused while the engine still holds its last seconds
    (it writes every 10 s): after the type change every stored sample, those included, is
    of the new type, and none is missing."""
    pv = "ENG:CNT00000"
    with running_ioc(counter_db("ENG:CNT", 1, ".1 second"), tmp_path / "ioc") as ioc:
        with running_server(tmp_path / "storage", ca_env(ioc)) as base:
            bpl(base, "archivePV", params={"pv": pv})
            wait_status(base, [pv], "Being archived")
            assert wait_for(lambda: _detail(base, pv, "Samples buffered in memory") >= 5, 30)
            # the engine's count before the pause (its rows go with the channel): at least
            # these, and those that came until the pause, must be in the files
            stored = _detail(base, pv, "How many events stored?")
            assert bpl(base, "pauseArchivingPV", params={"pv": pv}).json()["status"] == "ok"
            r = bpl(base, "changeTypeForPV", params={"pv": pv, "newtype": "DBR_SCALAR_STRING"})
            assert r.status_code == 200, r.text
            data = httpx.get(
                f"{base}/retrieval/data/getData.json",
                params={"pv": pv, "from": "2000-01-01T00:00:00Z", "to": "2100-01-01T00:00:00Z"},
                timeout=30,
            ).json()[0]["data"]
            vals = [s["val"] for s in data]
            assert all(isinstance(v, str) for v in vals), vals[:5]
            numbers = [float(v) for v in vals]
            assert len(numbers) >= stored >= 5
            assert numbers == [numbers[0] + i for i in range(len(numbers))]  # no gap
            assert statuses(base, [pv])[pv] == "Paused"
