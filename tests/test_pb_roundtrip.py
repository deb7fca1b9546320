"""Property tests: every one of the 15 sample types survives encode -> decode -> encode.

Also checks wire-level details against a small independent protobuf walker (severity/status
omitted when zero, packed numeric waveforms, unpacked VectorString), the timestamp helpers,
decode errors, header round trips and 1,000,000-element waveforms.
"""

from __future__ import annotations

import math
import random
import struct
from calendar import timegm
from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvarchiver.pb import (
    EPICS_EPOCH_OFFSET,
    PayloadInfo,
    PayloadType,
    PBDecodeError,
    Sample,
    decode_header,
    decode_line,
    decode_sample,
    encode_header,
    encode_sample,
    epics_to_epoch,
    epoch_to_epics,
    from_year_seconds,
    header_line,
    sample_line,
    to_year_seconds,
    unescape,
    year_of,
    year_start,
)

PT = PayloadType
INT16 = (-(2**15), 2**15 - 1)
INT32 = (-(2**31), 2**31 - 1)
UINT32 = (0, 2**32 - 1)
ALL_TYPES = list(PayloadType)

# ----------------------------------------------------------------------------- wire walker


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        b = buf[i]
        i += 1
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value, i
        shift += 7


def _wire_fields(raw: bytes) -> list[tuple[int, int, bytes]]:
    """Top-level (field number, wire type, payload bytes) of a serialized message."""
    out = []
    i = 0
    while i < len(raw):
        key, i = _varint(raw, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            _, j = _varint(raw, i)
        elif wt == 1:
            j = i + 8
        elif wt == 5:
            j = i + 4
        elif wt == 2:
            n, i = _varint(raw, i)
            j = i + n
        else:
            raise AssertionError(f"unexpected wire type {wt}")
        out.append((num, wt, raw[i:j]))
        i = j
    assert i == len(raw)
    return out


def _zigzag_varints(payload: bytes) -> list[int]:
    vals = []
    i = 0
    while i < len(payload):
        v, i = _varint(payload, i)
        vals.append((v >> 1) ^ -(v & 1))
    return vals


# ----------------------------------------------------------------------------- strategies

_NASTY_STRINGS = [
    "",
    "\n",
    "\r\n",
    "\x1b",
    "a\x1b\x01\x02\x03b",
    "\x00",
    "é",
    "日本語",
    "🙂 emoji",
    "x" * 10240,
    "λ\n\r\x1b" * 2560,
]
_short_text = st.one_of(
    st.text(max_size=30),
    st.text(alphabet=st.sampled_from("\n\r\x1b\x00aé🙂"), max_size=30),
)
_scalar_text = st.one_of(_short_text, st.sampled_from(_NASTY_STRINGS))
_bytes = st.one_of(
    st.binary(max_size=200),
    st.lists(st.sampled_from([0x0A, 0x0D, 0x1B, 0x00, 0xFF]), max_size=50).map(bytes),
)
_f32 = st.one_of(
    st.floats(width=32),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 0.0, 3.4028234663852886e38]),
)
_f64 = st.one_of(
    st.floats(),
    st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 5e-324, 1.7976931348623157e308]),
)
_i16 = st.integers(*INT16)
_i32 = st.integers(*INT32)


def _vec(elems: st.SearchStrategy) -> st.SearchStrategy:
    return st.lists(elems, max_size=40)


VALUE_STRATEGY: dict[PayloadType, st.SearchStrategy] = {
    PT.SCALAR_STRING: _scalar_text,
    PT.SCALAR_SHORT: _i16,
    PT.SCALAR_FLOAT: _f32,
    PT.SCALAR_ENUM: _i32,
    PT.SCALAR_BYTE: st.binary(min_size=1, max_size=1),
    PT.SCALAR_INT: _i32,
    PT.SCALAR_DOUBLE: _f64,
    PT.WAVEFORM_STRING: _vec(_short_text),
    PT.WAVEFORM_SHORT: _vec(_i16),
    PT.WAVEFORM_FLOAT: _vec(_f32),
    PT.WAVEFORM_ENUM: _vec(_i32),
    PT.WAVEFORM_BYTE: _bytes,
    PT.WAVEFORM_INT: _vec(_i32),
    PT.WAVEFORM_DOUBLE: _vec(_f64),
    PT.V4_GENERIC_BYTES: _bytes,
}
assert set(VALUE_STRATEGY) == set(PayloadType)

# leap years (1972, 2000, 2016, 2024), a non-leap century (2100), the EPICS epoch, and others
_years = st.one_of(
    st.sampled_from([1970, 1972, 1990, 1999, 2000, 2014, 2015, 2016, 2024, 2038, 2100]),
    st.integers(1970, 2400),
)


def _year_length(year: int) -> int:
    return year_start(year + 1) - year_start(year)


@st.composite
def _timestamps(draw: st.DrawFn) -> tuple[int, int, int]:
    """(year, epoch secs inside that year, nanos), with the first and last second favoured."""
    year = draw(_years)
    last = _year_length(year) - 1
    soy = draw(st.one_of(st.sampled_from([0, 1, last - 1, last]), st.integers(0, last)))
    nanos = draw(st.one_of(st.sampled_from([0, 999_999_999]), st.integers(0, 999_999_999)))
    return year, year_start(year) + soy, nanos


_alarm = st.one_of(st.just(0), st.integers(-5, 20), st.integers(*INT32))


@st.composite
def _samples(draw: st.DrawFn, ptype: PayloadType) -> tuple[int, Sample]:
    year, secs, nanos = draw(_timestamps())
    s = Sample(
        secs=secs,
        nanos=nanos,
        val=draw(VALUE_STRATEGY[ptype]),
        severity=draw(_alarm),
        status=draw(_alarm),
        fields=draw(
            st.one_of(st.none(), st.dictionaries(_short_text, _short_text, min_size=1, max_size=4))
        ),
        fieldactualchange=draw(st.one_of(st.none(), st.booleans())),
        repeatcount=draw(st.one_of(st.none(), st.sampled_from([0, 1]), st.integers(*UINT32))),
        user_tag=(
            draw(st.one_of(st.none(), st.sampled_from([0]), st.integers(*UINT32)))
            if ptype is PT.V4_GENERIC_BYTES
            else None
        ),
    )
    return year, s


# ----------------------------------------------------------------------------- comparison


def _f64_key(x: float) -> bytes:
    return struct.pack("<d", x)


def _f32_key(x: float) -> Any:
    # float32 NaN payloads may be quietened by the double<->float conversion: any NaN is fine
    return "nan" if math.isnan(x) else struct.pack("<f", x)


def _val_key(ptype: PayloadType, val: Any) -> Any:
    if ptype is PT.SCALAR_DOUBLE:
        return _f64_key(val)
    if ptype is PT.SCALAR_FLOAT:
        return _f32_key(val)
    if ptype is PT.WAVEFORM_DOUBLE:
        return [_f64_key(v) for v in val]
    if ptype is PT.WAVEFORM_FLOAT:
        return [_f32_key(v) for v in val]
    return val


def _python_type(ptype: PayloadType) -> type:
    if ptype.is_vector and ptype is not PT.WAVEFORM_BYTE:
        return list
    return {
        PT.SCALAR_STRING: str,
        PT.SCALAR_SHORT: int,
        PT.SCALAR_FLOAT: float,
        PT.SCALAR_ENUM: int,
        PT.SCALAR_BYTE: bytes,
        PT.SCALAR_INT: int,
        PT.SCALAR_DOUBLE: float,
        PT.WAVEFORM_BYTE: bytes,
        PT.V4_GENERIC_BYTES: bytes,
    }[ptype]


def assert_same_sample(ptype: PayloadType, got: Sample, want: Sample) -> None:
    assert (got.secs, got.nanos) == (want.secs, want.nanos)
    assert type(got.val) is _python_type(ptype)
    assert _val_key(ptype, got.val) == _val_key(ptype, want.val)
    if ptype is PT.WAVEFORM_STRING:
        assert all(type(v) is str for v in got.val)
    assert (got.severity, got.status) == (want.severity, want.status)
    assert got.fields == want.fields
    if got.fields is not None:
        assert list(got.fields.items()) == list(want.fields.items())  # file order kept
    assert got.fieldactualchange == want.fieldactualchange
    assert got.repeatcount == want.repeatcount
    assert got.user_tag == want.user_tag


def check_wire(ptype: PayloadType, year: int, s: Sample, raw: bytes) -> None:
    """What the serialized bytes must look like, by field number."""
    fields = _wire_fields(raw)
    nums = [f[0] for f in fields]
    assert nums == sorted(nums), "fields are written in field-number order"
    by_num: dict[int, list[tuple[int, bytes]]] = {}
    for num, wt, payload in fields:
        by_num.setdefault(num, []).append((wt, payload))
    assert by_num[1] == [(0, by_num[1][0][1])]
    assert _varint(by_num[1][0][1], 0)[0] == s.secs - year_start(year)
    assert _varint(by_num[2][0][1], 0)[0] == s.nanos
    # severity/status: written only when non-zero
    assert (4 in by_num) == (s.severity != 0)
    assert (5 in by_num) == (s.status != 0)
    assert (6 in by_num) == (s.repeatcount is not None)
    assert len(by_num.get(7, [])) == len(s.fields or {})
    assert (8 in by_num) == (s.fieldactualchange is not None)
    assert (9 in by_num) == (s.user_tag is not None)
    assert set(by_num) <= {1, 2, 3, 4, 5, 6, 7, 8, 9}

    val_fields = by_num.get(3, [])
    if ptype is PT.WAVEFORM_STRING:
        # repeated string is never packed: one field-3 entry per element
        assert val_fields == [(2, v.encode()) for v in s.val]
    elif ptype.is_vector and ptype is not PT.WAVEFORM_BYTE:
        if not s.val:
            assert val_fields == []
            return
        assert len(val_fields) == 1, "numeric waveforms are packed into one field"
        wt, payload = val_fields[0]
        assert wt == 2
        n = len(s.val)
        if ptype is PT.WAVEFORM_DOUBLE:
            assert len(payload) == 8 * n
        elif ptype in (PT.WAVEFORM_FLOAT, PT.WAVEFORM_INT):
            assert len(payload) == 4 * n
            if ptype is PT.WAVEFORM_INT:
                assert list(struct.unpack(f"<{n}i", payload)) == s.val
        else:  # sint32, zigzag varints
            assert _zigzag_varints(payload) == s.val
    else:
        assert len(val_fields) == 1, "a scalar's val is always present"
        wt, payload = val_fields[0]
        expected_wt = {
            PT.SCALAR_SHORT: 0,
            PT.SCALAR_ENUM: 0,
            PT.SCALAR_FLOAT: 5,
            PT.SCALAR_INT: 5,
            PT.SCALAR_DOUBLE: 1,
        }.get(ptype, 2)
        assert wt == expected_wt
        if ptype is PT.SCALAR_DOUBLE:
            assert payload == struct.pack("<d", s.val)
        elif ptype is PT.SCALAR_INT:
            assert payload == struct.pack("<i", s.val)
        elif ptype in (PT.SCALAR_SHORT, PT.SCALAR_ENUM):
            assert _zigzag_varints(payload) == [s.val]
        elif ptype is PT.SCALAR_STRING:
            assert payload == s.val.encode()
        elif ptype is not PT.SCALAR_FLOAT:
            assert payload == s.val


# ----------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("ptype", ALL_TYPES, ids=lambda p: p.name)
def test_round_trip_every_type(ptype: PayloadType) -> None:
    @settings(
        max_examples=100,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(_samples(ptype))
    def check(ys: tuple[int, Sample]) -> None:
        year, s = ys
        raw = encode_sample(ptype, year, s)
        check_wire(ptype, year, s, raw)
        back = decode_sample(ptype, year, raw)
        assert_same_sample(ptype, back, s)
        assert encode_sample(ptype, year, back) == raw
        # the same through escaping and line framing
        line = sample_line(ptype, year, s)
        assert line.endswith(b"\n")
        assert b"\n" not in line[:-1] and b"\r" not in line
        assert unescape(line[:-1]) == raw
        assert_same_sample(ptype, decode_line(ptype, year, line[:-1]), s)

    check()


@pytest.mark.parametrize("ptype", ALL_TYPES, ids=lambda p: p.name)
def test_decode_never_raises_anything_but_pbdecodeerror(ptype: PayloadType) -> None:
    @settings(max_examples=40, deadline=None)
    @given(st.binary(max_size=60))
    def check(raw: bytes) -> None:
        try:
            decode_sample(ptype, 2014, raw)
        except PBDecodeError:
            pass

    check()


# ----------------------------------------------------------------------------- fixed bytes

SOY1 = year_start(2014) + 1  # secondsintoyear = 1 in a 2014 file
HEAD = bytes.fromhex("08 01 10 02")  # secondsintoyear=1, nano=2


def _enc(ptype: PayloadType, val: Any, **kw: Any) -> bytes:
    return encode_sample(ptype, 2014, Sample(secs=SOY1, nanos=2, val=val, **kw))


def test_scalar_double_without_alarm_has_no_severity_or_status_bytes() -> None:
    raw = _enc(PT.SCALAR_DOUBLE, 1.0, severity=0, status=0)
    assert raw == bytes.fromhex("08 01 10 02 19 00 00 00 00 00 00 f0 3f")
    assert 4 not in [f[0] for f in _wire_fields(raw)]
    assert 5 not in [f[0] for f in _wire_fields(raw)]


@pytest.mark.parametrize(
    ("kw", "tail"),
    [
        ({"severity": 3, "status": 17}, "20 03 28 11"),
        ({"severity": 2}, "20 02"),
        ({"status": 7}, "28 07"),
        # int32 negatives are 10-byte varints
        ({"severity": -1}, "20 ff ff ff ff ff ff ff ff ff 01"),
        ({"repeatcount": 0}, "30 00"),
        ({"repeatcount": 300}, "30 ac 02"),
        ({"fieldactualchange": False}, "40 00"),
        ({"fieldactualchange": True}, "40 01"),
        ({"fields": {"a": "b"}}, "3a 06 0a 01 61 12 01 62"),
    ],
)
def test_scalar_double_optional_fields_bytes(kw: dict, tail: str) -> None:
    val = "19 00 00 00 00 00 00 f0 3f"
    raw = _enc(PT.SCALAR_DOUBLE, 1.0, **kw)
    assert raw == HEAD + bytes.fromhex(val + " " + tail)
    assert_same_sample(
        PT.SCALAR_DOUBLE,
        decode_sample(PT.SCALAR_DOUBLE, 2014, raw),
        Sample(secs=SOY1, nanos=2, val=1.0, **kw),
    )


@pytest.mark.parametrize(
    ("ptype", "val", "val_hex"),
    [
        (PT.SCALAR_STRING, "hi", "1a 02 68 69"),
        (PT.SCALAR_STRING, "", "1a 00"),
        (PT.SCALAR_SHORT, -1, "18 01"),
        (PT.SCALAR_SHORT, 1, "18 02"),
        (PT.SCALAR_FLOAT, 1.0, "1d 00 00 80 3f"),
        (PT.SCALAR_ENUM, 3, "18 06"),
        (PT.SCALAR_BYTE, b"\x7f", "1a 01 7f"),
        (PT.SCALAR_INT, -1, "1d ff ff ff ff"),
        (PT.SCALAR_DOUBLE, -0.0, "19 00 00 00 00 00 00 00 80"),
        (PT.WAVEFORM_BYTE, b"\x00\n", "1a 02 00 0a"),
        (PT.WAVEFORM_BYTE, b"", "1a 00"),
        (PT.V4_GENERIC_BYTES, b"\x01", "1a 01 01"),
    ],
)
def test_scalar_value_bytes(ptype: PayloadType, val: Any, val_hex: str) -> None:
    raw = _enc(ptype, val)
    assert raw == HEAD + bytes.fromhex(val_hex)
    assert_same_sample(ptype, decode_sample(ptype, 2014, raw), Sample(SOY1, 2, val))


def test_scalar_byte_accepts_an_int() -> None:
    assert _enc(PT.SCALAR_BYTE, 0x41) == _enc(PT.SCALAR_BYTE, b"A")
    assert _enc(PT.SCALAR_BYTE, -1) == _enc(PT.SCALAR_BYTE, b"\xff")


def test_v4_user_tag_bytes() -> None:
    assert _enc(PT.V4_GENERIC_BYTES, b"", user_tag=5) == HEAD + bytes.fromhex("1a 00 48 05")


@pytest.mark.parametrize(
    ("ptype", "val", "val_hex"),
    [
        (PT.WAVEFORM_DOUBLE, [1.0, 2.0], "1a 10 00 00 00 00 00 00 f0 3f 00 00 00 00 00 00 00 40"),
        (PT.WAVEFORM_FLOAT, [1.0], "1a 04 00 00 80 3f"),
        (PT.WAVEFORM_INT, [1, -1], "1a 08 01 00 00 00 ff ff ff ff"),
        (PT.WAVEFORM_SHORT, [1, -1, 0], "1a 03 02 01 00"),
        (PT.WAVEFORM_ENUM, [2, 64], "1a 03 04 80 01"),
    ],
)
def test_numeric_waveforms_are_packed(ptype: PayloadType, val: list, val_hex: str) -> None:
    raw = _enc(ptype, val)
    assert raw == HEAD + bytes.fromhex(val_hex)
    assert decode_sample(ptype, 2014, raw).val == val


def test_vector_string_is_not_packed() -> None:
    raw = _enc(PT.WAVEFORM_STRING, ["a", "bc", ""])
    assert raw == HEAD + bytes.fromhex("1a 01 61 1a 02 62 63 1a 00")
    assert decode_sample(PT.WAVEFORM_STRING, 2014, raw).val == ["a", "bc", ""]


@pytest.mark.parametrize(
    "ptype",
    [p for p in ALL_TYPES if p.is_vector and p is not PT.WAVEFORM_BYTE],
    ids=lambda p: p.name,
)
def test_empty_waveform_writes_no_val(ptype: PayloadType) -> None:
    raw = _enc(ptype, [])
    assert raw == HEAD
    assert decode_sample(ptype, 2014, raw).val == []


# ----------------------------------------------------------------------------- large waveforms


def test_million_element_waveforms() -> None:
    n = 1_000_000
    rng = random.Random(1234)
    doubles = [rng.uniform(-1e6, 1e6) for _ in range(n)]
    doubles[:4] = [math.inf, -math.inf, -0.0, 5e-324]
    ints = [rng.randint(*INT32) for _ in range(n)]
    chars = bytes(rng.getrandbits(8) for _ in range(n))
    for ptype, val, payload_len in [
        (PT.WAVEFORM_DOUBLE, doubles, 8 * n),
        (PT.WAVEFORM_INT, ints, 4 * n),
        (PT.WAVEFORM_BYTE, chars, n),
    ]:
        s = Sample(secs=SOY1, nanos=2, val=val)
        raw = encode_sample(ptype, 2014, s)
        (num, wt, payload) = _wire_fields(raw)[2]
        assert (num, wt, len(payload)) == (3, 2, payload_len)
        back = decode_sample(ptype, 2014, raw)
        assert len(back.val) == n
        assert back.val == val  # no NaN in here, so == is exact apart from the sign of zero
        if ptype is PT.WAVEFORM_DOUBLE:
            assert math.copysign(1.0, back.val[2]) == -1.0
        line = sample_line(ptype, 2014, s)
        assert line.count(b"\n") == 1
        assert decode_line(ptype, 2014, line[:-1]).val == val
        assert encode_sample(ptype, 2014, back) == raw


# ----------------------------------------------------------------------------- timestamps


_SIMPLE_VALUE: dict[PayloadType, Any] = {
    PT.SCALAR_STRING: "s",
    PT.SCALAR_SHORT: -2,
    PT.SCALAR_FLOAT: 0.5,
    PT.SCALAR_ENUM: 1,
    PT.SCALAR_BYTE: b"x",
    PT.SCALAR_INT: 7,
    PT.SCALAR_DOUBLE: 1.5,
    PT.WAVEFORM_STRING: ["a"],
    PT.WAVEFORM_SHORT: [1],
    PT.WAVEFORM_FLOAT: [0.25],
    PT.WAVEFORM_ENUM: [3],
    PT.WAVEFORM_BYTE: b"xy",
    PT.WAVEFORM_INT: [-9],
    PT.WAVEFORM_DOUBLE: [2.5],
    PT.V4_GENERIC_BYTES: b"\x00",
}


def test_epics_epoch_offset() -> None:
    assert EPICS_EPOCH_OFFSET == 631152000
    assert year_start(1990) == EPICS_EPOCH_OFFSET
    assert epics_to_epoch(0) == 631152000
    assert epoch_to_epics(631152000) == 0
    assert epoch_to_epics(epics_to_epoch(123456789)) == 123456789


@pytest.mark.parametrize(
    ("year", "days"),
    [
        (1970, 365),
        (1972, 366),
        (1990, 365),
        (2000, 366),
        (2014, 365),
        (2016, 366),
        (2023, 365),
        (2024, 366),
        (2100, 365),
        (2400, 366),
    ],
)
def test_year_start_and_length(year: int, days: int) -> None:
    assert year_start(year) == int(datetime(year, 1, 1, tzinfo=UTC).timestamp())
    assert _year_length(year) == days * 86400
    last = year_start(year + 1) - 1
    assert to_year_seconds(last) == (year, days * 86400 - 1)
    assert to_year_seconds(last + 1) == (year + 1, 0)
    assert year_of(last) == year
    assert year_of(last + 1) == year + 1


def test_known_year_starts() -> None:
    assert year_start(1970) == 0
    assert year_start(2014) == 1388534400
    assert year_start(2015) == 1420070400
    assert from_year_seconds(2014, 29704233) == timegm((2014, 12, 10, 19, 10, 33, 0, 0, 0))


@settings(max_examples=300)
@given(st.integers(0, year_start(2401) - 1))
def test_year_seconds_round_trip(secs: int) -> None:
    year, soy = to_year_seconds(secs)
    assert year == datetime.fromtimestamp(secs, tz=UTC).year == year_of(secs)
    assert 0 <= soy < _year_length(year)
    assert from_year_seconds(year, soy) == secs


@settings(max_examples=100, deadline=None)
@given(_timestamps(), st.sampled_from(ALL_TYPES))
def test_timestamps_across_years_round_trip(ts: tuple[int, int, int], ptype: PayloadType) -> None:
    year, secs, nanos = ts
    s = Sample(secs=secs, nanos=nanos, val=_SIMPLE_VALUE[ptype])
    assert to_year_seconds(secs)[0] == year
    back = decode_sample(ptype, year, encode_sample(ptype, year, s))
    assert (back.secs, back.nanos) == (secs, nanos)


def test_sample_before_its_year_is_rejected() -> None:
    with pytest.raises(ValueError):
        encode_sample(PT.SCALAR_DOUBLE, 2015, Sample(secs=year_start(2015) - 1, nanos=0, val=0.0))


# ----------------------------------------------------------------------------- decode errors


@pytest.mark.parametrize(
    "raw",
    [b"\xff\xff\xff", b"garbage", b"\x08", b"\x19\x00", b"\x0f", b"\x08\x01\x10"],
)
def test_garbage_sample_raises(raw: bytes) -> None:
    with pytest.raises(PBDecodeError):
        decode_sample(PT.SCALAR_DOUBLE, 2014, raw)


@pytest.mark.parametrize("raw", [b"\xff\xff\xff", b"garbage", b"\x08", b"\x7a\x05"])
def test_garbage_header_raises(raw: bytes) -> None:
    with pytest.raises(PBDecodeError):
        decode_header(raw)


def test_header_missing_pvname_raises() -> None:
    # type=6, year=2014, no field 2
    with pytest.raises(PBDecodeError):
        decode_header(bytes.fromhex("08 06 18 de 0f"))


@pytest.mark.parametrize(
    "raw",
    [
        bytes.fromhex("10 02 19 00 00 00 00 00 00 f0 3f"),  # no secondsintoyear
        bytes.fromhex("08 01 19 00 00 00 00 00 00 f0 3f"),  # no nano
        # a record cut off right before its val (e.g. a partially written trailing line)
        bytes.fromhex("08 a9 80 95 0e 10 f6 ca 9f 7a"),
        # a FieldValue without its required val
        bytes.fromhex("08 01 10 02 19 00 00 00 00 00 00 f0 3f 3a 03 0a 01 61"),
    ],
)
def test_sample_missing_required_field_raises(raw: bytes) -> None:
    with pytest.raises(PBDecodeError):
        decode_sample(PT.SCALAR_DOUBLE, 2014, raw)


def test_header_missing_type_year_or_header_val_raises() -> None:
    for raw in [
        b"\x12\x01a\x18\xde\x0f",  # no type
        b"\x08\x06\x12\x01a",  # no year
        b"\x08\x06\x12\x01a\x18\xde\x0f\x7a\x03\x0a\x01E",  # header FieldValue without val
        b"\x08\x63\x12\x01a\x18\xde\x0f",  # PayloadType 99 does not exist
    ]:
        with pytest.raises(PBDecodeError):
            decode_header(raw)


@pytest.mark.parametrize(
    "ptype",
    [p for p in ALL_TYPES if not p.is_vector or p is PT.WAVEFORM_BYTE],
    ids=lambda p: p.name,
)
def test_missing_scalar_val_raises(ptype: PayloadType) -> None:
    with pytest.raises(PBDecodeError):
        decode_sample(ptype, 2014, HEAD)


# ----------------------------------------------------------------------------- header


def test_header_bytes_with_element_count_and_headers() -> None:
    info = PayloadInfo(
        PT.SCALAR_DOUBLE, "TST-CT{}Sig:1-I", 2014, element_count=1, headers={"PREC": "0"}
    )
    raw = encode_header(info)
    assert raw == (
        b"\x08\x06\x12\x0fTST-CT{}Sig:1-I\x18\xde\x0f\x20\x01\x7a\x09\x0a\x04PREC\x12\x010"
    )
    assert header_line(info) == (
        b"\x08\x06\x12\x0fTST-CT{}Sig:1-I\x18\xde\x0f\x20\x01\x7a\x09\x1b\x02\x04PREC\x12\x010\n"
    )
    assert decode_header(raw) == info


def test_minimal_header_has_only_type_pvname_year() -> None:
    info = PayloadInfo(PT.WAVEFORM_INT, "a:b", 2024)
    raw = encode_header(info)
    assert raw == b"\x08\x0c\x12\x03a:b\x18\xe8\x0f"
    back = decode_header(raw)
    assert back == info
    assert back.element_count is None and back.headers == {}


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from(ALL_TYPES),
    _short_text,
    st.one_of(_years, st.integers(*INT32)),
    st.one_of(st.none(), st.sampled_from([0, 1, 1_000_000]), st.integers(*INT32)),
    st.dictionaries(_short_text, _short_text, max_size=5),
)
def test_header_round_trip(
    ptype: PayloadType, pvname: str, year: int, element_count: int | None, headers: dict[str, str]
) -> None:
    info = PayloadInfo(ptype, pvname, year, element_count=element_count, headers=headers)
    raw = encode_header(info)
    back = decode_header(raw)
    assert back == info
    assert type(back.type) is PayloadType
    assert list(back.headers.items()) == list(headers.items())
    assert encode_header(back) == raw
    line = header_line(info)
    assert line.count(b"\n") == 1 and line.endswith(b"\n") and b"\r" not in line
    assert decode_header(unescape(line[:-1])) == info
