"""Response formats: golden bodies for every extension, an independent ``.raw`` reader, strict
JSON, agreement of the vectorised paths with per-sample references, flat memory."""

from __future__ import annotations

import calendar
import io
import json
import math
import struct
import time
import tracemalloc
from collections.abc import Callable, Iterator

import numpy as np
import pytest
import scipy.io

from pvarchiver.pb import (
    PayloadInfo,
    PayloadType,
    Sample,
    decode_header,
    decode_line,
    sample_line,
    unescape,
    year_of,
    year_start,
)
from pvarchiver.pb.fast import encode_scalar_lines
from pvarchiver.retrieval.formats import (
    FORMATS,
    render_csv,
    render_json,
    render_mat,
    render_qw,
    render_raw,
    render_txt,
)
from pvarchiver.retrieval.model import Chunk, PVStream, SampleBlock, block_from_samples

T = PayloadType
T0 = calendar.timegm((2024, 12, 31, 23, 59, 58))  # 1735689598; 2025 starts at T0 + 2


def chunk(pv: str, ptype: PayloadType, year: int, samples: list[Sample]) -> Chunk:
    return Chunk(PayloadInfo(ptype, pv, year), block_from_samples(samples, ptype))


def golden_streams() -> list[PVStream]:
    """Three PVs: a double crossing into 2025 (NaN, -inf, fields, alarms), a string, a waveform."""
    fields = {"cnxlostepsecs": "1735680000", "startup": "true"}
    dbl = [
        chunk(
            "TEST:DBL",
            T.SCALAR_DOUBLE,
            2024,
            [Sample(T0, 5, 1.0), Sample(T0 + 1, 500_000_000, math.nan, 2, 3, fields=fields)],
        ),
        chunk(
            "TEST:DBL",
            T.SCALAR_DOUBLE,
            2025,
            [
                Sample(T0 + 2, 0, 0.1),
                Sample(T0 + 3, 999_999_999, -math.inf, 1, 7),
                Sample(T0 + 4, 10, 1e-07),
                Sample(T0 + 5, 20, -12345678.9),
            ],
        ),
    ]
    text = [chunk("TEST:STR", T.SCALAR_STRING, 2025, [Sample(T0 + 2, 0, 'a "q"\n\t\u00e4')])]
    wave = [chunk("TEST:WF", T.WAVEFORM_DOUBLE, 2025, [Sample(T0 + 3, 1, [1.5, math.nan, -0.0])])]
    return [
        PVStream(
            "TEST:DBL",
            {"name": "TEST:DBL", "EGU": 'deg"C', "PREC": "3"},
            iter(dbl),
            T.SCALAR_DOUBLE,
        ),
        PVStream("TEST:STR", {"name": "TEST:STR", "DESC": ""}, iter(text), T.SCALAR_STRING),
        PVStream("TEST:WF", {"name": "TEST:WF", "PREC": "0"}, iter(wave), T.WAVEFORM_DOUBLE),
    ]


def body(renderer: Callable[[list[PVStream]], Iterator[bytes]], streams: list[PVStream]) -> bytes:
    return b"".join(renderer(streams))


# ----------------------------------------------------------------------------- golden bodies
# "␣" stands for a space that ends a line: the AA writes '[ ' and '"data": [ ' that way.

GOLDEN_JSON = """[␣
{ "meta": { "name": "TEST:DBL" , "EGU": "deg\\"C" , "PREC": "3" },
"data": [␣
{ "secs": 1735689598, "val": 1.0, "nanos": 5, "severity":0, "status":0 },
{ "secs": 1735689599, "val": null, "nanos": 500000000, "severity":2, "status":3, \
"fields": { "cnxlostepsecs": "1735680000","startup": "true"} },
{ "secs": 1735689600, "val": 0.1, "nanos": 0, "severity":0, "status":0 },
{ "secs": 1735689601, "val": null, "nanos": 999999999, "severity":1, "status":7 },
{ "secs": 1735689602, "val": 1e-07, "nanos": 10, "severity":0, "status":0 },
{ "secs": 1735689603, "val": -12345678.9, "nanos": 20, "severity":0, "status":0 }] },
{ "meta": { "name": "TEST:STR" },
"data": [␣
{ "secs": 1735689600, "val": "a \\"q\\"\\n\\t\\u00e4", "nanos": 0, "severity":0, "status":0 }] },
{ "meta": { "name": "TEST:WF" , "PREC": "0" },
"data": [␣
{ "secs": 1735689601, "val": [1.5,null,-0.0], "nanos": 1, "severity":0, "status":0 }] }
 ]
"""

GOLDEN_QW = """[␣
{ "meta": { "name": "TEST:DBL" , "waveform": false , "EGU": "deg\\"C" , "PREC": "3" },
"data": [␣
{ "millis": 1735689598000, "val": 1.0 },
{ "millis": 1735689599500, "val": null, \
"fields": { "cnxlostepsecs": "1735680000","startup": "true"} },
{ "millis": 1735689600000, "val": 0.1 },
{ "millis": 1735689601999, "val": null },
{ "millis": 1735689602000, "val": 1e-07 },
{ "millis": 1735689603000, "val": -12345678.9 }] },
{ "meta": { "name": "TEST:STR" , "waveform": false },
"data": [␣
{ "millis": 1735689600000, "val": "a \\"q\\"\\n\\t\\u00e4" }] },
{ "meta": { "name": "TEST:WF" , "waveform": true , "PREC": "0" },
"data": [␣
{ "millis": 1735689601000, "val": [1.5,null,-0.0] }] }
 ]
"""

GOLDEN_CSV = """1735689598,1.0,0,0,5
1735689599,NaN,2,3,500000000
1735689600,0.1,0,0,0
1735689601,-Infinity,1,7,999999999
1735689602,1e-07,0,0,10
1735689603,-12345678.9,0,0,20
1735689600,"a \\"q\\"\\n\\t\\u00e4",0,0,0
1735689601,[1.5,NaN,-0.0],0,0,1

"""

GOLDEN_TXT = """Beginning data for TEST:DBL
Dec/31/2024 23:59:58 UTC\t1.0\t0\t0\t5
Dec/31/2024 23:59:59 UTC\tNaN\t2\t3\t500000000
Jan/01/2025 00:00:00 UTC\t0.1\t0\t0\t0
Jan/01/2025 00:00:01 UTC\t-Infinity\t1\t7\t999999999
Jan/01/2025 00:00:02 UTC\t1e-07\t0\t0\t10
Jan/01/2025 00:00:03 UTC\t-12345678.9\t0\t0\t20
Beginning data for TEST:STR
Jan/01/2025 00:00:00 UTC\t"a \\"q\\"\\n\\t\\u00e4"\t0\t0\t0
Beginning data for TEST:WF
Jan/01/2025 00:00:01 UTC\t[1.5,NaN,-0.0]\t0\t0\t1
"""


@pytest.mark.parametrize(
    ("renderer", "golden"),
    [
        (render_json, GOLDEN_JSON),
        (render_qw, GOLDEN_QW),
        (render_csv, GOLDEN_CSV),
        (render_txt, GOLDEN_TXT),
    ],
)
def test_golden_text_bodies(renderer: Callable, golden: str) -> None:
    assert body(renderer, golden_streams()).decode() == golden.replace("␣", " ")


def test_json_is_strict_and_means_what_it_says() -> None:
    def no_constants(name: str) -> None:
        raise AssertionError(f"bare {name} in JSON")

    for renderer in (render_json, render_qw):
        doc = json.loads(body(renderer, golden_streams()), parse_constant=no_constants)
        assert [p["meta"]["name"] for p in doc] == ["TEST:DBL", "TEST:STR", "TEST:WF"]
    doc = json.loads(body(render_json, golden_streams()))
    assert doc[0]["meta"] == {"name": "TEST:DBL", "EGU": 'deg"C', "PREC": "3"}
    assert [d["val"] for d in doc[0]["data"]] == [1.0, None, 0.1, None, 1e-07, -12345678.9]
    assert doc[0]["data"][1]["fields"] == {"cnxlostepsecs": "1735680000", "startup": "true"}
    assert list(doc[0]["data"][0]) == ["secs", "val", "nanos", "severity", "status"]
    assert doc[1]["data"][0]["val"] == 'a "q"\n\t\u00e4'
    assert doc[2]["data"][0]["val"] == [1.5, None, -0.0]


def test_empty_responses() -> None:
    assert body(render_json, []) == b"[ \n ]\n"
    assert body(render_qw, []) == b"[ \n ]\n"
    assert body(render_raw, []) == b""
    assert body(render_csv, []) == b"\n"
    assert body(render_txt, []) == b""
    empty = PVStream("X", {"name": "X"}, iter([]))
    assert body(render_json, [empty]) == b'[ \n{ "meta": { "name": "X" },\n"data": [ \n] }\n ]\n'
    assert json.loads(body(render_qw, [PVStream("X", {"name": "X"}, iter([]))])) == [
        {"meta": {"name": "X"}, "data": []}
    ]
    assert body(render_txt, [PVStream("X", {}, iter([]))]) == b"Beginning data for X\n"


def test_formats_table() -> None:
    assert {k: v[1] for k, v in FORMATS.items()} == {
        "json": "application/json",
        "qw": "application/json",
        "csv": "text/csv",
        "txt": "text/plain",
        "raw": "application/x-protobuf",
        "mat": "application/matlab",
        "jplot": "application/json",
        "flx": "text/xml",
        "svg": "image/svg+xml",
        "parquet": "application/vnd.apache.parquet",
    }


# ----------------------------------------------------------------------------- .raw


def _varint(n: int) -> bytes:
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _key(field: int, wire: int) -> bytes:
    return _varint(field << 3 | wire)


def _len_field(field: int, data: bytes) -> bytes:
    return _key(field, 2) + _varint(len(data)) + data


def _fv(field: int, name: str, val: str) -> bytes:
    return _len_field(field, _len_field(1, name.encode()) + _len_field(2, val.encode()))


def _esc(line: bytes) -> bytes:
    return (
        line.replace(b"\x1b", b"\x1b\x01").replace(b"\n", b"\x1b\x02").replace(b"\r", b"\x1b\x03")
    )


def _header(ptype: int, pv: str, year: int, count: int, headers: dict[str, str]) -> bytes:
    msg = _key(1, 0) + _varint(ptype) + _len_field(2, pv.encode()) + _key(3, 0) + _varint(year)
    msg += _key(4, 0) + _varint(count) + b"".join(_fv(15, k, v) for k, v in headers.items())
    return _esc(msg) + b"\n"


def _double(secs: int, nanos: int, val: float, sev: int = 0, stat: int = 0, **fields: str) -> bytes:
    soy = secs - calendar.timegm((time.gmtime(secs).tm_year, 1, 1, 0, 0, 0))
    msg = _key(1, 0) + _varint(soy) + _key(2, 0) + _varint(nanos)
    msg += _key(3, 1) + struct.pack("<d", val)
    if sev:
        msg += _key(4, 0) + _varint(sev)
    if stat:
        msg += _key(5, 0) + _varint(stat)
    msg += b"".join(_fv(7, k, v) for k, v in fields.items())
    return _esc(msg) + b"\n"


def test_golden_raw_bytes() -> None:
    """Expected bytes built with a ten-line protobuf writer of the test's own."""
    dbl_headers = {"EGU": 'deg"C', "PREC": "3"}
    fields = {"cnxlostepsecs": "1735680000", "startup": "true"}
    soy = T0 - calendar.timegm((2024, 1, 1, 0, 0, 0))
    expected = (
        _header(6, "TEST:DBL", 2024, 1, dbl_headers)
        + _double(T0, 5, 1.0)
        + _double(T0 + 1, 500_000_000, math.nan, 2, 3, **fields)
        + b"\n"
        + _header(6, "TEST:DBL", 2025, 1, dbl_headers)
        + _double(T0 + 2, 0, 0.1)
        + _double(T0 + 3, 999_999_999, -math.inf, 1, 7)
        + _double(T0 + 4, 10, 1e-07)
        + _double(T0 + 5, 20, -12345678.9)
        + b"\n"
        + _header(0, "TEST:STR", 2025, 1, {})
        + _esc(b"\x08\x00\x10\x00" + _len_field(3, 'a "q"\n\t\u00e4'.encode()))
        + b"\n\n"
        + _header(13, "TEST:WF", 2025, 3, {"PREC": "0"})
        + _esc(b"\x08\x01\x10\x01" + _len_field(3, struct.pack("<3d", 1.5, math.nan, -0.0)))
        + b"\n"
    )
    got = body(render_raw, golden_streams())
    assert got == expected
    # and one line spelled out in full: 2024-12-31T23:59:58.000000005, value 1.0
    assert soy == 31622398
    first_sample = got.split(b"\n")[1]
    assert first_sample.hex(" ") == "08 fe 89 8a 0f 10 05 19 00 00 00 00 00 00 f0 3f"


def parse_pbraw(data: bytes) -> list[tuple[PayloadInfo, list[Sample]]]:
    """A ``.raw`` reader written from aa.md 3.5 alone: LF-framed lines; the first line is a
    header; a line of length <= 1 means the next line is a header; samples decode against the
    current header's type and year. Checks the framing rules on the way."""
    assert data.endswith(b"\n"), "every line ends with LF"
    lines = data[:-1].split(b"\n")
    chunks: list[tuple[PayloadInfo, list[Sample]]] = []
    next_is_header = True
    for line in lines:
        if next_is_header:
            assert len(line) > 1, "a header where an empty line was (two empty lines in a row?)"
            chunks.append((decode_header(unescape(line)), []))
            next_is_header = False
        elif len(line) <= 1:
            assert line == b"", "a one-byte line"
            next_is_header = True
        else:
            header, samples = chunks[-1]
            s = decode_line(header.type, header.year, line)
            assert year_of(s.secs) == header.year, "sample outside its chunk's year"
            samples.append(s)
    assert not next_is_header, "body ends with an empty line"
    return chunks


def test_raw_framing_and_year_chunks() -> None:
    chunks = parse_pbraw(body(render_raw, golden_streams()))
    assert [(h.pvname, h.year, h.type) for h, _ in chunks] == [
        ("TEST:DBL", 2024, T.SCALAR_DOUBLE),
        ("TEST:DBL", 2025, T.SCALAR_DOUBLE),
        ("TEST:STR", 2025, T.SCALAR_STRING),
        ("TEST:WF", 2025, T.WAVEFORM_DOUBLE),
    ]
    dbl = [s for h, ss in chunks[:2] for s in ss]
    assert [s.secs for s in dbl] == list(range(T0, T0 + 6))
    assert dbl[1].fields == {"cnxlostepsecs": "1735680000", "startup": "true"}
    assert (dbl[1].severity, dbl[1].status) == (2, 3)
    assert chunks[0][0].headers == {"EGU": 'deg"C', "PREC": "3"}
    assert chunks[3][0].element_count == 3


def test_raw_passes_stored_lines_through_and_splits_header_changes() -> None:
    """``chunk.raw`` goes out as it is; consecutive chunks with the same header share it; a
    new PV always gets its own header, an empty chunk still announces its header."""
    ys = year_start(2024)
    secs = np.arange(ys + 10, ys + 20, dtype=np.int64)
    block = SampleBlock(
        secs,
        np.zeros(10, np.int64),
        np.arange(10.0),
        np.zeros(10, np.int32),
        np.zeros(10, np.int32),
    )
    raw = encode_scalar_lines(T.SCALAR_DOUBLE, secs - ys, block.nanos, block.vals)
    marked = raw[:-1] + b"\n"  # the same lines, as a distinct object
    empty = SampleBlock(*(np.zeros(0, t) for t in (np.int64, np.int64, float, np.int32, np.int32)))
    h = PayloadInfo(T.SCALAR_DOUBLE, "A", 2024)
    streams = [
        PVStream("A", {"name": "A"}, iter([Chunk(h, block, raw), Chunk(h, block, marked)])),
        PVStream("A", {"name": "A"}, iter([Chunk(h, block, raw)])),
        PVStream(
            "B",
            {"name": "B", "PREC": "1"},
            iter([Chunk(PayloadInfo(T.SCALAR_DOUBLE, "B", 2024, None, {"x": "1"}), empty)]),
        ),
    ]
    got = body(render_raw, streams)
    hdr = _header(6, "A", 2024, 1, {})
    assert got == hdr + raw + marked + b"\n" + hdr + raw + b"\n" + _header(
        6, "B", 2024, 1, {"x": "1", "PREC": "1"}
    )


def test_raw_reencodes_like_the_reference_codec() -> None:
    """Chunks without stored lines: every row equals ``sample_line``, fields rows included."""
    rng = np.random.default_rng(5)
    n = 5000
    ys = year_start(2023)
    samples = [
        Sample(
            ys + 100 + i,
            int(rng.integers(0, 10**9)),
            float(rng.normal()),
            int(rng.integers(0, 3)),
            int(rng.integers(0, 20)),
            fields={"DESC": f"d{i}\n"} if i % 997 == 0 else None,
        )
        for i in range(n)
    ]
    for ptype in (T.SCALAR_DOUBLE, T.SCALAR_FLOAT, T.SCALAR_INT, T.SCALAR_SHORT):
        typed = [
            Sample(s.secs, s.nanos, s.val if "FLOAT" in ptype.name or "DOUBLE" in ptype.name
                   else int(s.val * 1000), s.severity, s.status, s.fields)
            for s in samples
        ]  # fmt: skip
        if ptype is T.SCALAR_FLOAT:
            typed = [Sample(s.secs, s.nanos, float(np.float32(s.val)), s.severity, s.status,
                            s.fields) for s in typed]  # fmt: skip
        c = chunk("P", ptype, 2023, typed)
        assert c.block.extras, "some rows carry fields"
        got = body(render_raw, [PVStream("P", {"name": "P"}, iter([c]))])
        want = b"".join(sample_line(ptype, 2023, s) for s in typed)
        assert got.split(b"\n", 1)[1] == want


def test_raw_other_types_roundtrip() -> None:
    ys = year_start(2025)
    cases = {
        T.SCALAR_STRING: ["x", "", "\n\r\x1b"],
        T.SCALAR_BYTE: [b"\x00", b"\xff", b"\n"],
        T.SCALAR_ENUM: [0, 3, -1],
        T.WAVEFORM_STRING: [["a", ""], [], ["\n"]],
        T.WAVEFORM_SHORT: [[1, -2], [3], []],
        T.WAVEFORM_FLOAT: [[0.5, 1.5], [2.0], [3.0]],
        T.WAVEFORM_ENUM: [[1], [2], [3]],
        T.WAVEFORM_BYTE: [b"ab\n", b"", b"\x1b"],
        T.WAVEFORM_INT: [[2**31 - 1], [-(2**31)], [0]],
        T.WAVEFORM_DOUBLE: [[1e300], [math.inf], [0.0]],
        T.V4_GENERIC_BYTES: [b"\x01\x02", b"\n", b""],
    }
    for ptype, vals in cases.items():
        samples = [Sample(ys + i, i, v) for i, v in enumerate(vals)]
        got = parse_pbraw(
            body(render_raw, [PVStream("V", {}, iter([chunk("V", ptype, 2025, samples)]))])
        )
        ((h, back),) = got
        assert h.type is ptype and [s.val for s in back] == vals, ptype


# ----------------------------------------------------------------------------- value texts


def one_pv(ptype: PayloadType, vals: list, year: int = 2025) -> list[PVStream]:
    ys = year_start(year)
    samples = [Sample(ys + i, 0, v) for i, v in enumerate(vals)]
    return [PVStream("P", {"name": "P"}, iter([chunk("P", ptype, year, samples)]), ptype)]


@pytest.mark.parametrize(
    ("ptype", "vals", "json_vals", "csv_vals"),
    [
        (T.SCALAR_FLOAT, [0.1, 1.0, math.nan], [0.1, 1.0, None], ["0.1", "1.0", "NaN"]),
        (T.SCALAR_SHORT, [-5, 32767], [-5, 32767], ["-5", "32767"]),
        (T.SCALAR_INT, [-(2**31), 7], [-(2**31), 7], ["-2147483648", "7"]),
        (T.SCALAR_ENUM, [0, 2], [0, 2], ["0", "2"]),
        (T.SCALAR_BYTE, [b"\x05", b"\xff"], [5, -1], ["5", "-1"]),
        (T.WAVEFORM_BYTE, [b"\x01\xfe"], [[1, -2]], ["[1,-2]"]),
        (T.WAVEFORM_STRING, [["a", "", "b,c"]], [["a", "", "b,c"]], ['["a","","b,c"]']),
        (T.WAVEFORM_INT, [[1, -2, 3]], [[1, -2, 3]], ["[1,-2,3]"]),
        (T.WAVEFORM_FLOAT, [[0.1, math.inf]], [[0.1, None]], ["[0.1,Infinity]"]),
        (T.V4_GENERIC_BYTES, [b"\x00\x80"], [[0, -128]], ["[0,-128]"]),
    ],
)
def test_value_text_per_type(
    ptype: PayloadType, vals: list, json_vals: list, csv_vals: list
) -> None:
    doc = json.loads(body(render_json, one_pv(ptype, vals)))
    assert [d["val"] for d in doc[0]["data"]] == json_vals
    lines = body(render_csv, one_pv(ptype, vals)).decode().splitlines()
    assert [line.split(",", 1)[1].rsplit(",", 3)[0] for line in lines[:-1]] == csv_vals
    qw = json.loads(body(render_qw, one_pv(ptype, vals)))
    assert qw[0]["meta"]["waveform"] is ptype.is_vector


def naive_json(streams: list[PVStream]) -> str:
    """Per-sample reference of the AA's JSON layout, using Python's repr for numbers."""

    def num(v: float, f32: bool) -> str:
        if not math.isfinite(v):
            return "null"
        return (
            repr(float(np.format_float_scientific(np.float32(v), unique=True))) if f32 else repr(v)
        )

    parts = ["[ \n"]
    for k, s in enumerate(streams):
        if k:
            parts.append("] },\n")
        parts.append('{ "meta": { "name": ' + json.dumps(s.meta["name"]) + ' },\n"data": [ \n')
        lines = []
        for c in s.chunks:
            f32 = c.header.type is T.SCALAR_FLOAT
            b = c.block
            for i in range(len(b)):
                v = b.vals[i].item()
                val = num(v, f32) if isinstance(v, float) else str(v)
                extra = b.extras.get(i)
                fields = ""
                if extra is not None and extra.fields:
                    fields = (
                        ', "fields": { '
                        + ",".join(
                            f"{json.dumps(a)}: {json.dumps(z)}" for a, z in extra.fields.items()
                        )
                        + "}"
                    )
                lines.append(
                    f'{{ "secs": {b.secs[i]}, "val": {val}, "nanos": {b.nanos[i]}, '
                    f'"severity":{b.severity[i]}, "status":{b.status[i]}{fields} }}'
                )
        parts.append(",\n".join(lines))
    if streams:
        parts.append("] }\n")
    parts.append(" ]\n")
    return "".join(parts)


def random_stream(name: str, ptype: PayloadType, n: int, seed: int, chunks: int = 3) -> PVStream:
    rng = np.random.default_rng(seed)
    out = []
    t = year_start(2024) + 1000
    for _ in range(chunks):
        secs = t + np.arange(n, dtype=np.int64) * 3
        t = int(secs[-1]) + 1
        if ptype is T.SCALAR_DOUBLE:
            vals = rng.normal(size=n) * 10.0 ** rng.integers(-12, 20, n)
            vals[rng.random(n) < 0.01] = np.nan
            vals[rng.random(n) < 0.01] = -np.inf
            vals[rng.random(n) < 0.05] = 0.0
        elif ptype is T.SCALAR_FLOAT:
            vals = (rng.normal(size=n) * 100).astype(np.float32)
        else:
            vals = rng.integers(-(2**31), 2**31, n).astype(np.int32)
        block = SampleBlock(
            secs,
            rng.integers(0, 10**9, n),
            vals,
            rng.integers(0, 4, n).astype(np.int32),
            rng.integers(0, 22, n).astype(np.int32),
        )
        for i in rng.choice(n, 3, replace=False).tolist():  # a few rows with fields
            v = vals[i].item()
            block.extras[i] = Sample(
                int(secs[i]), int(block.nanos[i]), v, int(block.severity[i]),
                int(block.status[i]), fields={"DESC": f"row {i}", "q": '"'},
            )  # fmt: skip
        out.append(Chunk(PayloadInfo(ptype, name, 2024), block))
    return PVStream(name, {"name": name}, iter(out), ptype)


def test_vectorised_json_matches_per_sample_reference() -> None:
    def make() -> list[PVStream]:
        return [
            random_stream("D", T.SCALAR_DOUBLE, 30_000, 1),
            random_stream("F", T.SCALAR_FLOAT, 20_000, 2),
            random_stream("I", T.SCALAR_INT, 20_000, 3),
        ]

    assert body(render_json, make()).decode() == naive_json(make())


def test_vectorised_csv_and_txt_match_per_sample_reference() -> None:
    def make() -> list[PVStream]:
        return [random_stream("D", T.SCALAR_DOUBLE, 20_000, 7, chunks=2)]

    want_csv, want_txt = [], ["Beginning data for D\n"]
    for c in make()[0].chunks:
        b = c.block
        for i in range(len(b)):
            v = b.vals[i].item()
            text = repr(v) if math.isfinite(v) else {"nan": "NaN", "-inf": "-Infinity"}[str(v)]
            tail = f"{text},{b.severity[i]},{b.status[i]},{b.nanos[i]}\n"
            want_csv.append(f"{b.secs[i]},{tail}")
            stamp = time.strftime("%b/%d/%Y %H:%M:%S UTC", time.gmtime(int(b.secs[i])))
            want_txt.append(stamp + "\t" + tail.replace(",", "\t"))
    assert body(render_csv, make()).decode() == "".join(want_csv) + "\n"
    assert body(render_txt, make()).decode() == "".join(want_txt)


def test_pieces_are_large() -> None:
    stream = random_stream("D", T.SCALAR_DOUBLE, 50_000, 9, chunks=4)
    pieces = list(render_json([stream]))
    assert len(pieces) > 1
    assert all(len(p) >= 64 * 1024 for p in pieces[:-1])


# ----------------------------------------------------------------------------- .mat


def test_mat_scalar_layout() -> None:
    streams = golden_streams()
    streams[0].extra["from"] = (T0 - 60, 0)
    streams[0].extra["to"] = "2025-01-01T00:10:00.000Z"
    m = scipy.io.loadmat(io.BytesIO(body(render_mat, streams)))
    header, data = m["header"][0, 0], m["data"][0, 0]
    assert header.dtype.names == ("source", "pvName", "from", "to")
    assert header["source"][0] == "Archiver appliance"
    assert header["pvName"][0] == "TEST:DBL"
    assert header["from"][0] == "2024-12-31T23:58:58.000Z"
    assert header["to"][0] == "2025-01-01T00:10:00.000Z"
    assert data.dtype.names == ("epochSeconds", "values", "nanos", "isDST")
    assert data["epochSeconds"].dtype == np.uint64 and data["epochSeconds"].shape == (6, 1)
    assert data["epochSeconds"][:, 0].tolist() == list(range(T0, T0 + 6))
    assert data["nanos"].dtype == np.uint64
    assert data["nanos"][:, 0].tolist() == [5, 500_000_000, 0, 999_999_999, 10, 20]
    values = data["values"]
    assert values.dtype == np.float64 and values.shape == (6, 1)
    np.testing.assert_array_equal(values[:, 0], [1.0, np.nan, 0.1, -np.inf, 1e-07, -12345678.9])
    assert data["isDST"].dtype == np.uint8


def test_mat_waveform_matrix_is_row_per_sample() -> None:
    ys = year_start(2025)
    rows = [[1.0, 2.0, 3.0], [4.0, 5.0], [7.0, 8.0, 9.0, 10.0]]
    samples = [Sample(ys + i, 0, r) for i, r in enumerate(rows)]
    c = chunk("W", T.WAVEFORM_DOUBLE, 2025, samples)
    m = scipy.io.loadmat(io.BytesIO(body(render_mat, [PVStream("W", {"name": "W"}, iter([c]))])))
    values = m["data"][0, 0]["values"]
    np.testing.assert_array_equal(values, [[1, 2, 3], [4, 5, np.nan], [7, 8, 9]])
    # header from/to fall back to the first and last sample
    assert m["header"][0, 0]["to"][0] == "2025-01-01T00:00:02.000Z"


def test_mat_single_element_waveform() -> None:
    m = scipy.io.loadmat(io.BytesIO(body(render_mat, one_pv(T.WAVEFORM_INT, [[4], [5, 6]]))))
    np.testing.assert_array_equal(m["data"][0, 0]["values"], [[4.0], [5.0]])


def test_mat_empty_and_non_numeric() -> None:
    m = scipy.io.loadmat(io.BytesIO(body(render_mat, [PVStream("X", {}, iter([]))])))
    assert m["data"][0, 0]["values"].shape == (0, 1)
    assert m["header"][0, 0]["pvName"][0] == "X"
    m = scipy.io.loadmat(io.BytesIO(body(render_mat, one_pv(T.SCALAR_STRING, ["a", "b"]))))
    assert np.isnan(m["data"][0, 0]["values"]).all()
    m = scipy.io.loadmat(io.BytesIO(body(render_mat, one_pv(T.SCALAR_BYTE, [b"\xff"]))))
    assert m["data"][0, 0]["values"][0, 0] == -1.0


def test_mat_isdst_follows_the_local_zone(monkeypatch: pytest.MonkeyPatch) -> None:
    if not hasattr(time, "tzset"):
        pytest.skip("time.tzset is not available on this platform")
    monkeypatch.setenv("TZ", "America/New_York")
    time.tzset()
    try:
        ys = year_start(2024)
        secs = np.arange(ys, ys + 366 * 86400, 3 * 3600, dtype=np.int64)
        block = SampleBlock(
            secs, np.zeros(len(secs), np.int64), np.zeros(len(secs)),
            np.zeros(len(secs), np.int32), np.zeros(len(secs), np.int32),
        )  # fmt: skip
        c = Chunk(PayloadInfo(T.SCALAR_DOUBLE, "Z", 2024), block)
        m = scipy.io.loadmat(io.BytesIO(body(render_mat, [PVStream("Z", {}, iter([c]))])))
        want = [time.localtime(int(s)).tm_isdst for s in secs]
        assert m["data"][0, 0]["isDST"][:, 0].tolist() == want
        assert 0 < sum(want) < len(want)
    finally:
        monkeypatch.delenv("TZ")
        time.tzset()


# ----------------------------------------------------------------------------- memory


def repeated(chunk_: Chunk, count: int) -> Iterator[Chunk]:
    """The same block over and over, as if a very long range were read."""
    for _ in range(count):
        yield Chunk(chunk_.header, chunk_.block, chunk_.raw)


def big_chunk(n: int, with_raw: bool) -> Chunk:
    ys = year_start(2024)
    secs = ys + np.arange(n, dtype=np.int64)
    rng = np.random.default_rng(0)
    block = SampleBlock(
        secs,
        rng.integers(0, 10**9, n),
        rng.normal(size=n) * 100,
        np.zeros(n, np.int32),
        np.zeros(n, np.int32),
    )
    raw = None
    if with_raw:
        raw = encode_scalar_lines(T.SCALAR_DOUBLE, secs - ys, block.nanos, block.vals)
    return Chunk(PayloadInfo(T.SCALAR_DOUBLE, "BIG", 2024), block, raw)


def peak_while_draining(pieces: Iterator[bytes]) -> tuple[int, int]:
    tracemalloc.start()
    try:
        total = 0
        for p in pieces:
            total += len(p)
        return total, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_raw_memory_is_flat_for_100m_samples() -> None:
    c = big_chunk(50_000, with_raw=True)
    assert c.raw is not None
    stream = PVStream("BIG", {"name": "BIG"}, repeated(c, 2000))
    total, peak = peak_while_draining(render_raw([stream]))
    assert total > 2000 * len(c.raw)
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.1f} MB"


@pytest.mark.slow
@pytest.mark.parametrize("renderer", [render_json, render_qw, render_csv, render_mat])
def test_text_memory_is_flat(renderer: Callable) -> None:
    c = big_chunk(50_000, with_raw=False)
    count = 200 if renderer is render_json else 20
    stream = PVStream("BIG", {"name": "BIG"}, repeated(c, count))
    total, peak = peak_while_draining(renderer([stream]))
    assert total > count * 50_000 * 8
    assert peak < 50 * 2**20, f"peak {peak / 2**20:.1f} MB"
