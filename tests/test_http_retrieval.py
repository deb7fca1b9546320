"""The retrieval API over real HTTP against a real ``pvarchiver serve`` process."""

from __future__ import annotations

import calendar
import json
import math
from collections.abc import Iterator

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvarchiver.pb import PayloadType, Sample, decode_header, decode_line, unescape
from pvarchiver.storage import (
    default_store_urls,
    open_store,
    parse_store_url,
    run_etl,
)
from pvarchiver.storage.batch import append_samples

from .http_server import running_server

T0 = calendar.timegm((2024, 12, 31, 22, 0, 0))  # data crosses a year boundary
D = PayloadType.SCALAR_DOUBLE
PV = "TEST:RET-1:AI"


def iso(t: float) -> str:
    import time

    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(t))) + f".{int(t % 1 * 1000):03d}Z"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("http") / "storage"
    env = {
        "ARCHAPPL_SHORT_TERM_FOLDER": str(root / "sts"),
        "ARCHAPPL_MEDIUM_TERM_FOLDER": str(root / "mts"),
        "ARCHAPPL_LONG_TERM_FOLDER": str(root / "lts"),
    }
    sts, mts, lts = (open_store(parse_store_url(u, env=env)) for u in default_store_urls(root))
    # 4 h of 1 Hz data; the first 2 h moved to MTS/LTS, so a query spans all three stores
    append_samples(sts, PV, D, [Sample(T0 + i, 0, float(i)) for i in range(4 * 3600)])
    run_etl(sts, mts, now=T0 + 2 * 3600 + 1)
    run_etl(mts, lts, now=T0 + 5 * 86400)
    append_samples(
        sts,
        "TEST:NAN",
        D,
        [Sample(T0, 0, math.nan), Sample(T0 + 1, 0, 1.0), Sample(T0 + 2, 0, math.inf)],
    )
    append_samples(
        sts,
        "TEST:STR",
        PayloadType.SCALAR_STRING,
        [Sample(T0, 0, 'a "q"\n'), Sample(T0 + 5, 0, "b")],
    )
    with running_server(root) as url:
        yield url


def get(base: str, path: str, **params: object) -> httpx.Response:
    return httpx.get(base + path, params=params, timeout=30)  # type: ignore[arg-type]


def test_ping_and_version(base: str) -> None:
    assert get(base, "/retrieval/ping").status_code == 200
    r = get(base, "/retrieval/bpl/getVersion")
    assert r.status_code == 200 and "version" in r.json()


def test_json_across_three_stores_starts_with_the_sample_before_from(base: str) -> None:
    r = get(
        base,
        "/retrieval/data/getData.json",
        pv=PV,
        **{"from": iso(T0 + 100.5), "to": iso(T0 + 3 * 3600)},
    )
    assert r.status_code == 200
    body = r.json()
    assert body[0]["meta"]["name"] == PV and isinstance(body[0]["meta"]["PREC"], str)
    data = body[0]["data"]
    assert [d["secs"] - T0 for d in data] == list(range(100, 3 * 3600 + 1))
    assert list(data[0]) == ["secs", "val", "nanos", "severity", "status"]
    assert data[0]["val"] == 100.0


def test_from_equal_to_returns_the_last_sample_at_or_before(base: str) -> None:
    for t, want in ((T0 + 50, 50), (T0 + 50.5, 50), (T0 + 99999, 4 * 3600 - 1)):
        r = get(base, "/retrieval/data/getData.json", pv=PV, **{"from": iso(t), "to": iso(t)})
        assert [d["secs"] - T0 for d in r.json()[0]["data"]] == [want]


def parse_raw(body: bytes) -> list[tuple[object, list[Sample]]]:
    """A .raw reader written from aa.md 3.5: an empty line announces a new header."""
    chunks: list[tuple[object, list[Sample]]] = []
    lines = body.split(b"\n")
    assert lines[-1] == b""
    expect_header = True
    for line in lines[:-1]:
        if expect_header:
            chunks.append((decode_header(unescape(line)), []))
            expect_header = False
        elif len(line) == 0:
            expect_header = True
        else:
            h = chunks[-1][0]
            chunks[-1][1].append(decode_line(h.type, h.year, line))  # type: ignore[attr-defined]
    return chunks


def test_raw_has_one_chunk_per_year(base: str) -> None:
    r = get(
        base, "/retrieval/data/getData.raw", pv=PV, **{"from": iso(T0), "to": iso(T0 + 4 * 3600)}
    )
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-protobuf")
    chunks = parse_raw(r.content)
    assert [(h.year, h.pvname) for h, _ in chunks] == [(2024, PV), (2025, PV)]
    secs = [s.secs for _, ss in chunks for s in ss]
    assert secs == list(range(T0, T0 + 4 * 3600))


def test_nan_is_valid_json_and_strings_are_escaped(base: str) -> None:
    r = get(
        base,
        "/retrieval/data/getData.json",
        pv="TEST:NAN",
        **{"from": iso(T0 - 10), "to": iso(T0 + 10)},
    )
    data = json.loads(r.text, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    assert [d["val"] for d in data[0]["data"]] == [None, 1.0, None]
    r = get(
        base,
        "/retrieval/data/getData.json",
        pv="TEST:STR",
        **{"from": iso(T0 - 10), "to": iso(T0 + 10)},
    )
    assert [d["val"] for d in r.json()[0]["data"]] == ['a "q"\n', "b"]


def test_postprocessor_in_function_syntax_and_pp_param(base: str) -> None:
    params = {"from": iso(T0), "to": iso(T0 + 3600 - 1)}
    r = get(base, "/retrieval/data/getData.json", pv=f"mean_600({PV})", **params)
    assert r.status_code == 200, r.text
    data = r.json()[0]["data"]
    means = {d["secs"] - T0: d["val"] for d in data}
    assert means[300] == pytest.approx(sum(range(600)) / 600)
    r2 = get(base, "/retrieval/data/getData.json", pv=PV, pp="mean_600", **params)
    assert r2.json()[0]["data"] == data


def test_ca_prefix_and_val_suffix_are_stripped(base: str) -> None:
    params = {"from": iso(T0 + 10), "to": iso(T0 + 12)}
    plain = get(base, "/retrieval/data/getData.json", pv=PV, **params).json()[0]["data"]
    for name in (f"ca://{PV}", f"pva://{PV}.VAL", f"{PV}.VAL"):
        assert (
            get(base, "/retrieval/data/getData.json", pv=name, **params).json()[0]["data"] == plain
        )


@pytest.mark.parametrize(
    ("params", "status", "text"),
    [
        ({}, 400, "PV name is null."),
        ({"pv": "NO:SUCH:PV"}, 404, "Unable to find typeinfo for pv NO:SUCH:PV"),
        ({"pv": PV, "from": "yesterday"}, 400, "Cannot parse time"),
        ({"pv": PV, "from": "2025-01-02T00:00:00Z", "to": "2025-01-01T00:00:00Z"}, 400, "before"),
        ({"pv": PV, "pp": "nosuchop_600"}, 400, ""),
        ({"pv": "bogus_5(" + PV + ")"}, 400, ""),
        ({"pv": "../../etc/passwd"}, 404, ""),
        ({"pv": PV, "from": "2024-02-30T00:00:00Z"}, 400, "not a valid date"),
    ],
)
def test_bad_requests_get_a_4xx_with_a_message(
    base: str, params: dict, status: int, text: str
) -> None:
    r = get(base, "/retrieval/data/getData.json", **params)
    assert r.status_code == status, r.text
    assert text in r.text and "Traceback" not in r.text


def test_unknown_format_and_bpl(base: str) -> None:
    assert get(base, "/retrieval/data/getData.xyz", pv=PV).status_code == 400
    r = get(base, "/retrieval/bpl/noSuchThing")
    assert r.status_code == 400 and '"noSuchThing" is not a valid API method.' in r.text


def test_get_data_for_pvs_post_forms(base: str) -> None:
    params = {"from": iso(T0 + 10), "to": iso(T0 + 12)}
    for body, ctype in (
        (json.dumps([PV, "TEST:NAN"]), "application/json"),
        (f"{PV}\nTEST:NAN\n", "text/plain"),
        (f"pv={PV},TEST:NAN", "application/x-www-form-urlencoded"),
    ):
        r = httpx.post(
            base + "/retrieval/data/getDataForPVs.json",
            params=params,
            content=body,
            headers={"content-type": ctype},
            timeout=30,
        )
        assert r.status_code == 200, r.text
        assert [p["meta"]["name"] for p in r.json()] == [PV, "TEST:NAN"]


def test_get_data_at_time(base: str) -> None:
    r = httpx.post(
        base + "/retrieval/data/getDataAtTime",
        params={"at": iso(T0 + 3600.5)},
        json=[PV, "TEST:NAN", "NO:SUCH"],
        timeout=30,
    )
    assert r.status_code == 200
    got = r.json()
    assert got[PV]["secs"] == T0 + 3600 and got[PV]["val"] == 3600.0
    assert got["TEST:NAN"]["val"] is None  # +Inf as null: strict JSON
    assert "NO:SUCH" not in got
    r = httpx.post(
        base + "/retrieval/data/getDataAtTime",
        params={"at": iso(T0 + 86400 * 3), "searchPeriod": "PT1H"},
        json=[PV],
    )
    assert r.json() == {}


def test_matching_pvs(base: str) -> None:
    assert get(base, "/retrieval/bpl/getMatchingPVs", pv="TEST:*").json() == sorted(
        [PV, "TEST:NAN", "TEST:STR"]
    )
    assert get(base, "/retrieval/bpl/getMatchingPVs", regex="TEST:N.*").json() == ["TEST:NAN"]
    r = get(base, "/retrieval/bpl/searchForPVsRegex", regex=".*RET.*")
    assert r.text == PV + "\n"
    assert get(base, "/retrieval/bpl/getMatchingPVs", regex="(").status_code == 400


def test_ping_pv_and_donotchunk(base: str) -> None:
    r = get(base, "/retrieval/data/getData.raw", pv="ArchApplPingPV", donotchunk="true")
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)
    ((h, samples),) = parse_raw(r.content)
    assert h.pvname == "ArchApplPingPV" and len(samples) == 10


def test_csv_and_txt(base: str) -> None:
    params = {"pv": PV, "from": iso(T0 + 10), "to": iso(T0 + 11)}
    r = get(base, "/retrieval/data/getData.csv", **params)
    assert r.status_code == 200
    first = r.text.splitlines()[0].split(",")
    assert first[0] == str(T0 + 10) and float(first[1]) == 10.0
    assert get(base, "/retrieval/data/getData.txt", **params).status_code == 200
    assert get(base, "/retrieval/data/getData.qw", **params).status_code == 200
    assert get(base, "/retrieval/data/getData.mat", **params).status_code == 200


_text = st.text(
    alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40
) | st.sampled_from(["", PV, f"mean_600({PV})", "2025-01-01T00:00:00Z", "-1", "P1D", "(", "*"])


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    path=st.sampled_from(
        [
            "/retrieval/data/getData.json",
            "/retrieval/data/getData.raw",
            "/retrieval/data/getData.csv",
            "/retrieval/data/getData.mat",
            "/retrieval/data/getDataForPVs.json",
            "/retrieval/data/getDataAtTime",
            "/retrieval/bpl/getMatchingPVs",
            "/retrieval/bpl/getMetadata",
        ]
    ),
    params=st.dictionaries(
        st.sampled_from(
            [
                "pv",
                "from",
                "to",
                "pp",
                "at",
                "searchPeriod",
                "limit",
                "regex",
                "timeranges",
                "donotchunk",
            ]
        ),
        _text,
        max_size=5,
    ),
)
def test_no_input_gives_a_500(base: str, path: str, params: dict[str, str]) -> None:
    r = httpx.get(base + path, params=params, timeout=30)
    assert r.status_code < 500, (path, params, r.text)
    assert "Traceback" not in r.text


@pytest.mark.parametrize("bad", ["..", "a/../b", "a/b", "x\\y"])
def test_names_that_cannot_be_files_are_4xx_everywhere(base: str, bad: str) -> None:
    for path, method in (
        ("/retrieval/data/getData.json", "GET"),
        ("/retrieval/data/getDataAtTime", "POST"),
        ("/retrieval/bpl/getMetadata", "GET"),
        ("/retrieval/bpl/areWeArchivingPV", "GET"),
    ):
        if method == "POST":
            r = httpx.post(base + path, params={"at": iso(T0 + 3600)}, json=[bad, PV], timeout=30)
            assert r.status_code == 200 and bad not in r.json() and PV in r.json()
        else:
            r = httpx.get(base + path, params={"pv": bad}, timeout=30)
            assert r.status_code < 500, (path, bad, r.text)
