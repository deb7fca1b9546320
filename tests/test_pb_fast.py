"""The vectorised scalar codec must agree byte for byte with the protobuf reference path.

Files written by one path are read by the other (and by the Java AA), so "close" is not good
enough: every test here compares against ``sample_line`` / ``decode_line`` rather than against
expectations of our own.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pvarchiver.pb import (
    PayloadType,
    PBDecodeError,
    Sample,
    decode_header,
    decode_line,
    sample_line,
    unescape,
    year_start,
)
from pvarchiver.pb.escape import EscapeError
from pvarchiver.pb.fast import (
    SUPPORTED,
    ScalarColumns,
    decode_scalar_lines,
    encode_scalar_lines,
)

YEAR = 2024  # a leap year, so secondsintoyear may reach 366 * 86400 - 1
YS = year_start(YEAR)
VECTORS = Path("/work/shared/vectors/aa-upstream")

D, F, S, E, INT = (
    PayloadType.SCALAR_DOUBLE,
    PayloadType.SCALAR_FLOAT,
    PayloadType.SCALAR_SHORT,
    PayloadType.SCALAR_ENUM,
    PayloadType.SCALAR_INT,
)
ALL_TYPES = sorted(SUPPORTED)
I32_MIN, I32_MAX = -(2**31), 2**31 - 1

# ----------------------------------------------------------------------------- strategies

_DOUBLE_SPECIALS = [
    0x0000_0000_0000_0000,  # 0.0
    0x8000_0000_0000_0000,  # -0.0
    0x7FF0_0000_0000_0000,  # +inf
    0xFFF0_0000_0000_0000,  # -inf
    0x7FF8_0000_0000_0000,  # canonical quiet NaN
    0xFFF8_0000_0000_0001,  # negative quiet NaN with payload
    0x7FF0_0000_0000_0001,  # signalling NaN: protobuf keeps double bits as they are
    0x7FEF_FFFF_FFFF_FFFF,  # max
    0x0000_0000_0000_0001,  # smallest subnormal
    0x0A0D_1B0A_0D1B_0A0D,  # every byte needs escaping
]
_FLOAT_SPECIALS = [
    0,
    0x8000_0000,
    0x7F80_0000,
    0xFF80_0000,
    0x7FC0_0000,
    0xFFC1_2345,
    0x7F7F_FFFF,
    0x0000_0001,
    0x0A0D_1B0A,
]
_INT_SPECIALS = [0, -1, 1, I32_MIN, I32_MAX, -32768, 32767, 10, 13, 27, -6, 5, 0x0A0D1B0A]


def _float32_bits() -> st.SearchStrategy[int]:
    """float32 bit patterns; NaNs get their quiet bit set because the reference path takes a
    Python float, and widening a signalling float32 NaN to double quiets it (CPU behaviour),
    so a signalling float32 NaN cannot reach protobuf unchanged."""

    def quiet(bits: int) -> int:
        if (bits & 0x7F80_0000) == 0x7F80_0000 and bits & 0x007F_FFFF:
            bits |= 0x0040_0000
        return bits

    return st.one_of(st.sampled_from(_FLOAT_SPECIALS), st.integers(0, 2**32 - 1)).map(quiet)


def _value_column(ptype: PayloadType, n: int) -> st.SearchStrategy[np.ndarray]:
    if ptype is D:
        bits = st.one_of(st.sampled_from(_DOUBLE_SPECIALS), st.integers(0, 2**64 - 1))
        return st.lists(bits, min_size=n, max_size=n).map(
            lambda b: np.array(b, dtype=np.uint64).view(np.float64)
        )
    if ptype is F:
        return st.lists(_float32_bits(), min_size=n, max_size=n).map(
            lambda b: np.array(b, dtype=np.uint32).view(np.float32)
        )
    ints = st.one_of(st.sampled_from(_INT_SPECIALS), st.integers(I32_MIN, I32_MAX))
    if ptype is not INT:  # shorts and enums are int16 in practice, but sint32 on the wire
        ints = st.one_of(st.integers(-32768, 32767), ints)
    return st.lists(ints, min_size=n, max_size=n).map(lambda v: np.array(v, dtype=np.int32))


_severities = st.one_of(
    st.just(0),
    st.just(0),
    st.sampled_from([1, 2, 3, -1, 10, 13, 27, I32_MIN, I32_MAX]),
    st.integers(I32_MIN, I32_MAX),
)


@st.composite
def columns(
    draw: st.DrawFn, ptype: PayloadType, max_size: int = 40, min_size: int = 0
) -> dict[str, np.ndarray]:
    n = draw(st.integers(min_size, max_size))
    uints = st.lists(
        st.integers(0, 366 * 86400 - 1) | st.sampled_from([0, 10, 13, 27, 127, 128]),
        min_size=n,
        max_size=n,
    )
    nanos = st.lists(
        st.integers(0, 999_999_999) | st.sampled_from([0, 10, 13, 27, 999_999_999]),
        min_size=n,
        max_size=n,
    )
    cols = {
        "secondsintoyear": np.array(draw(uints), dtype=np.uint32),
        "nanos": np.array(draw(nanos), dtype=np.uint32),
        "vals": draw(_value_column(ptype, n)),
    }
    for name in ("severity", "status"):
        kind = draw(st.sampled_from(["none", "zeros", "random"]))
        if kind == "zeros":
            cols[name] = np.zeros(n, dtype=np.int32)
        elif kind == "random":
            cols[name] = np.array(draw(st.lists(_severities, min_size=n, max_size=n)), np.int32)
    return cols


# ----------------------------------------------------------------------------- helpers


def _py(ptype: PayloadType, v: np.generic) -> float | int:
    return float(v) if ptype in (D, F) else int(v)


def reference_lines(ptype: PayloadType, cols: dict[str, np.ndarray]) -> bytes:
    n = cols["secondsintoyear"].shape[0]
    sev = cols.get("severity", np.zeros(n, np.int32))
    sta = cols.get("status", np.zeros(n, np.int32))
    return b"".join(
        sample_line(ptype, YEAR, Sample(YS + int(s), int(ns), _py(ptype, v), int(sv), int(stt)))
        for s, ns, v, sv, stt in zip(
            cols["secondsintoyear"], cols["nanos"], cols["vals"], sev, sta, strict=True
        )
    )


def same_value(ptype: PayloadType, fast: np.generic, ref: float | int) -> bool:
    """Bit equality for doubles; for floats protobuf hands out a widened Python float, which
    has quietened any signalling NaN, so NaN-for-NaN is accepted there."""
    if ptype is D:
        return bool(np.float64(fast).view(np.uint64) == np.float64(ref).view(np.uint64))
    if ptype is F:
        f, r = np.float32(fast), np.float32(ref)
        return bool(f.view(np.uint32) == r.view(np.uint32) or (np.isnan(f) and np.isnan(r)))
    return int(fast) == ref


def check_against_reference(ptype: PayloadType, year: int, buf: bytes, cols: ScalarColumns) -> None:
    """Every line not flagged fallback must decode, through protobuf, to exactly the columns."""
    assert len(cols) == buf.count(b"\n")
    ys = year_start(year)
    for i in np.flatnonzero(~cols.fallback):
        line = buf[cols.line_starts[i] : cols.line_ends[i]]
        ref = decode_line(ptype, year, line)
        assert ref.secs - ys == cols.secondsintoyear[i]
        assert ref.nanos == cols.nanos[i]
        assert same_value(ptype, cols.vals[i], ref.val)
        assert ref.severity == cols.severity[i]
        assert ref.status == cols.status[i]
        assert ref.fields is None and ref.repeatcount is None and ref.fieldactualchange is None


def assert_columns_equal(ptype: PayloadType, cols: ScalarColumns, want: dict[str, np.ndarray]):
    n = want["secondsintoyear"].shape[0]
    assert len(cols) == n
    assert not cols.fallback.any()
    assert cols.secondsintoyear.dtype == np.uint32 and cols.nanos.dtype == np.uint32
    np.testing.assert_array_equal(cols.secondsintoyear, want["secondsintoyear"])
    np.testing.assert_array_equal(cols.nanos, want["nanos"])
    assert cols.vals.dtype == want["vals"].dtype
    # compare bit patterns: NaN payloads and -0.0 must survive
    assert cols.vals.tobytes() == want["vals"].tobytes()
    np.testing.assert_array_equal(cols.severity, want.get("severity", np.zeros(n, np.int32)))
    np.testing.assert_array_equal(cols.status, want.get("status", np.zeros(n, np.int32)))


_hyp = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# ----------------------------------------------------------------------------- encode


@pytest.mark.parametrize("ptype", ALL_TYPES, ids=lambda p: p.name)
@_hyp
@given(data=st.data())
def test_encode_is_byte_identical_and_round_trips(ptype: PayloadType, data: st.DataObject) -> None:
    cols = data.draw(columns(ptype))
    buf = encode_scalar_lines(ptype, **cols)
    assert buf == reference_lines(ptype, cols)
    dec = decode_scalar_lines(ptype, buf)
    assert_columns_equal(ptype, dec, cols)
    check_against_reference(ptype, YEAR, buf, dec)


@pytest.mark.parametrize("ptype", ALL_TYPES, ids=lambda p: p.name)
def test_bulk_random_streams(ptype: PayloadType) -> None:
    """A few thousand samples at once, so that vector paths with mixed varint widths, escapes
    in some rows only and sparse severities are exercised together."""
    rng = np.random.default_rng(int(ptype))
    n = 5000
    cols = {
        "secondsintoyear": np.sort(rng.integers(0, 366 * 86400, n)).astype(np.uint32),
        "nanos": rng.integers(0, 10**9, n).astype(np.uint32),
        "severity": np.where(rng.random(n) < 0.9, 0, rng.integers(-3, 4, n)).astype(np.int32),
        "status": np.where(rng.random(n) < 0.95, 0, rng.integers(I32_MIN, I32_MAX, n)).astype(
            np.int32
        ),
    }
    if ptype is D:
        cols["vals"] = rng.integers(0, 2**64, n, dtype=np.uint64).view(np.float64)
    elif ptype is F:
        cols["vals"] = rng.standard_normal(n).astype(np.float32) * 1e3
    else:
        cols["vals"] = rng.integers(I32_MIN, I32_MAX, n, endpoint=True).astype(np.int32)
    buf = encode_scalar_lines(ptype, **cols)
    assert buf == reference_lines(ptype, cols)
    assert_columns_equal(ptype, decode_scalar_lines(ptype, buf), cols)


def test_encode_without_any_escape_and_with_escapes_everywhere() -> None:
    n = 300
    plain = {
        "secondsintoyear": np.arange(1_000_000, 1_000_000 + n, dtype=np.uint32),
        "nanos": np.full(n, 500_000_000, dtype=np.uint32),
        "vals": np.arange(n) + 0.5,
    }
    buf = encode_scalar_lines(D, **plain)
    assert b"\x1b" not in buf and buf.count(b"\n") == n
    assert buf == reference_lines(D, plain)

    nasty = {  # every field of every line contains bytes that must be escaped
        "secondsintoyear": np.full(n, 10, dtype=np.uint32),
        "nanos": np.full(n, 13, dtype=np.uint32),
        "vals": np.full(n, np.frombuffer(b"\n\r\x1b\n\r\x1b\n\r", "<f8")[0]),
        "severity": np.full(n, 27, dtype=np.int32),
        "status": np.full(n, 10, dtype=np.int32),
    }
    buf = encode_scalar_lines(D, **nasty)
    assert buf == reference_lines(D, nasty)
    assert buf.count(b"\n") == n and buf.count(b"\x1b") == 12 * n
    assert_columns_equal(D, decode_scalar_lines(D, buf), nasty)


def test_accepts_other_integer_and_float_dtypes() -> None:
    soy = np.array([5, 600_000], dtype=np.int64)
    ns = [7, 999_999_999]
    got = encode_scalar_lines(F, soy, np.array(ns), np.array([0.1, 1e40]))  # float64 -> float32
    want = reference_lines(
        F, {"secondsintoyear": soy, "nanos": np.array(ns), "vals": np.array([0.1, 1e40])}
    )
    assert got == want
    got = encode_scalar_lines(S, soy, np.array(ns), np.array([-32768, 32767], dtype=np.int16))
    want = reference_lines(
        S, {"secondsintoyear": soy, "nanos": np.array(ns), "vals": np.array([-32768, 32767])}
    )
    assert got == want


def test_empty_input() -> None:
    empty = np.zeros(0, dtype=np.uint32)
    for ptype in ALL_TYPES:
        assert encode_scalar_lines(ptype, empty, empty, np.zeros(0), empty, empty) == b""
        for buf in (b"", bytearray(), memoryview(b""), b"no line feed"):
            cols = decode_scalar_lines(ptype, buf)
            assert len(cols) == 0 and cols.vals.shape == (0,)


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"secondsintoyear": [-1]}, ValueError),
        ({"secondsintoyear": [2**32]}, ValueError),
        ({"nanos": [2**32]}, ValueError),
        ({"severity": [2**31]}, ValueError),
        ({"status": [-(2**31) - 1]}, ValueError),
        ({"secondsintoyear": [1.5]}, TypeError),
        ({"nanos": [1, 2]}, ValueError),
    ],
)
def test_encode_rejects_what_protobuf_rejects(kwargs: dict, exc: type[Exception]) -> None:
    args = {"secondsintoyear": [1], "nanos": [2], "vals": [3.0]}
    args.update({k: np.array(v) for k, v in kwargs.items()})
    with pytest.raises(exc):
        encode_scalar_lines(D, **args)


def test_int_types_reject_out_of_range_and_floats() -> None:
    with pytest.raises(ValueError):
        encode_scalar_lines(INT, np.array([1]), np.array([2]), np.array([2**31]))
    with pytest.raises(TypeError):
        encode_scalar_lines(S, np.array([1]), np.array([2]), np.array([1.5]))


def test_unsupported_type() -> None:
    assert PayloadType.SCALAR_STRING not in SUPPORTED
    one = np.array([1], dtype=np.uint32)
    with pytest.raises(ValueError):
        encode_scalar_lines(PayloadType.SCALAR_STRING, one, one, one)
    with pytest.raises(ValueError):
        decode_scalar_lines(PayloadType.WAVEFORM_DOUBLE, b"\n")


# ----------------------------------------------------------------------------- decode


@pytest.mark.parametrize("ptype", ALL_TYPES, ids=lambda p: p.name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_lines_with_extra_fields_are_fallback(ptype: PayloadType, data: st.DataObject) -> None:
    base = data.draw(columns(ptype, min_size=1, max_size=25))
    n = len(base["vals"])
    samples, expect = [], []
    for i in range(n):
        extra = data.draw(st.sampled_from(["none", "none", "fields", "repeat", "change", "all"]))
        s = Sample(
            YS + int(base["secondsintoyear"][i]),
            int(base["nanos"][i]),
            _py(ptype, base["vals"][i]),
            severity=int(base.get("severity", np.zeros(n, np.int32))[i]),
        )
        if extra in ("fields", "all"):
            s.fields = {"cnxlostepsecs": "1418238772", "DESC": data.draw(st.text(max_size=5))}
        if extra in ("repeat", "all"):
            s.repeatcount = data.draw(st.integers(0, 2**32 - 1))
        if extra in ("change", "all"):
            s.fieldactualchange = data.draw(st.booleans())
        samples.append(s)
        expect.append(extra != "none")
    buf = b"".join(sample_line(ptype, YEAR, s) for s in samples)
    cols = decode_scalar_lines(ptype, buf)
    assert cols.fallback.tolist() == expect
    check_against_reference(ptype, YEAR, buf, cols)
    # the fallback lines are exactly where the caller will find them
    for i in np.flatnonzero(cols.fallback):
        line = buf[cols.line_starts[i] : cols.line_ends[i]]
        got, want = decode_line(ptype, YEAR, line), samples[i]
        assert same_value(ptype, got.val, want.val)  # (NaN != NaN for Sample.__eq__)
        got.val = want.val
        assert got == want


@pytest.mark.parametrize("name", ["sig1-wo-adel.pb", "sig2-w-adel.pb", "lrm01_raw.pb"])
def test_java_aa_files(name: str) -> None:
    path = VECTORS / name
    if not path.exists():
        pytest.skip(f"test vector {path} not available")
    data = path.read_bytes()
    header, _, body = data.partition(b"\n")
    info = decode_header(unescape(header))
    cols = decode_scalar_lines(info.type, body)
    assert len(cols) == body.count(b"\n")
    check_against_reference(info.type, info.year, body, cols)
    if name == "sig1-wo-adel.pb":
        # 37 samples; only the last one carries fieldvalues (cnxlostepsecs, ...)
        assert len(cols) == 37
        assert np.flatnonzero(cols.fallback).tolist() == [36]
        assert cols.secondsintoyear[0] == 29704233 and cols.nanos[0] == 256370038
        assert cols.vals[0] == 1.0
        last = decode_line(info.type, info.year, body[cols.line_starts[36] : cols.line_ends[36]])
        assert last.fields is not None and "cnxlostepsecs" in last.fields
        # the canonical lines re-encode to the very bytes the Java AA wrote
        ok = np.flatnonzero(~cols.fallback)
        again = encode_scalar_lines(
            info.type,
            cols.secondsintoyear[ok],
            cols.nanos[ok],
            cols.vals[ok],
            cols.severity[ok],
            cols.status[ok],
        )
        assert again == body[: cols.line_ends[35] + 1]


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"", "empty line"),
        (b"\x08\x05\x10\x07", "no value"),
        (b"\x10\x07\x08\x05\x19" + bytes(8), "fields out of order"),
        (b"\x08\x05\x10\x07\x19" + bytes(7), "truncated double"),
        (b"\x08\x05\x10\x07\x19" + bytes(8) + b"\x28\x01\x20\x01", "status before severity"),
        (b"\x08\x05\x10\x07\x19" + bytes(8) + b"\x20", "lone tag at end"),
        (b"\x08\x05\x10\x07\x19" + bytes(8) + b"\x30\x01", "repeatcount"),
        (b"\x08\x05\x10\x07\x19" + bytes(8) + b"\x19" + bytes(8), "value twice"),
        (b"\x08\xff\xff\xff\xff\x1f\x10\x07\x19" + bytes(8), "secondsintoyear > 32 bits"),
        (b"\x08\x85\x80\x80\x80\x80\x00\x10\x07\x19" + bytes(8), "6-byte varint"),
        (b"\x08\x05\x10\x07\x19" + bytes(7) + b"\x1b", "lone ESC at line end"),
        (b"\x08\x1b\x05\x10\x07\x19" + bytes(8), "unknown escape code"),
        (b"\x08\x1b\x1b\x01\x10\x07\x19" + bytes(8), "ESC ESC"),
        (b"\x08\x05\x10\x07\x19" + bytes(8) + b"\x20" + b"\xff" * 9 + b"\x02", "overlong int32"),
        (b"\r", "CR only"),
    ],
)
def test_malformed_lines_are_fallback(line: bytes, why: str) -> None:
    good = sample_line(D, YEAR, Sample(YS + 1, 2, 3.0))
    buf = good + line + b"\n" + good
    cols = decode_scalar_lines(D, buf)
    assert cols.fallback.tolist() == [False, True, False], why
    assert cols.vals[0] == cols.vals[2] == 3.0
    assert buf[cols.line_starts[1] : cols.line_ends[1]] == line


def test_lenient_but_valid_forms_match_protobuf() -> None:
    """Encodings protobuf never writes but accepts (overlong varints, 5-byte and 10-byte
    int32s, explicit zero severity) may be decoded fast, provided the values agree."""
    head = b"\x08\x05\x10\x07\x19" + bytes(8)
    lines = [
        b"\x08\x85\x80\x80\x80\x00\x10\x07\x19" + bytes(8),
        head + b"\x20\x00",
        head + b"\x20\xff\xff\xff\xff\x0f",
        head + b"\x20\xff\xff\xff\xff\x1f\x28\x01",
        head + b"\x28" + b"\xfe" + b"\xff" * 8 + b"\x01",
    ]
    buf = b"".join(line + b"\n" for line in lines)
    cols = decode_scalar_lines(D, buf)
    check_against_reference(D, YEAR, buf, cols)
    assert cols.severity[2] == -1 and cols.status[4] == -2


def test_trailing_partial_line_is_ignored() -> None:
    good = sample_line(D, YEAR, Sample(YS + 1, 2, 3.0))
    cols = decode_scalar_lines(D, good + good[:5])
    assert len(cols) == 1 and not cols.fallback[0]


def _decode_never_raises(ptype: PayloadType, buf: bytes) -> None:
    cols = decode_scalar_lines(ptype, buf)
    check_against_reference(ptype, YEAR, buf, cols)
    for i in np.flatnonzero(cols.fallback):  # the reference may reject these, but must not differ
        line = buf[cols.line_starts[i] : cols.line_ends[i]]
        try:
            decode_line(ptype, YEAR, line)
        except (PBDecodeError, EscapeError):
            pass


@pytest.mark.parametrize("ptype", ALL_TYPES, ids=lambda p: p.name)
@settings(max_examples=150, deadline=None)
@given(buf=st.binary(max_size=200))
def test_garbage_never_raises(ptype: PayloadType, buf: bytes) -> None:
    _decode_never_raises(ptype, buf)


@pytest.mark.parametrize("ptype", ALL_TYPES, ids=lambda p: p.name)
@_hyp
@given(data=st.data())
def test_mutated_streams_never_disagree(ptype: PayloadType, data: st.DataObject) -> None:
    """Corrupt a valid stream (byte flips, insertions, deletions, truncation) and check that
    whatever is still decoded fast is exactly what protobuf reads from the same line."""
    cols = data.draw(columns(ptype, max_size=8))
    buf = bytearray(encode_scalar_lines(ptype, **cols))
    for _ in range(data.draw(st.integers(1, 4))):
        if not buf:
            break
        i = data.draw(st.integers(0, len(buf) - 1))
        op = data.draw(st.sampled_from(["set", "insert", "delete", "truncate"]))
        byte = data.draw(
            st.sampled_from([0x0A, 0x0D, 0x1B, 0x01, 0x02, 0x03, 0x80, 0xFF]) | st.integers(0, 255)
        )
        if op == "set":
            buf[i] = byte
        elif op == "insert":
            buf.insert(i, byte)
        elif op == "delete":
            del buf[i]
        else:
            del buf[i:]
    _decode_never_raises(ptype, bytes(buf))


def test_decode_accepts_bytearray_and_memoryview() -> None:
    buf = encode_scalar_lines(D, np.array([1, 2]), np.array([3, 4]), np.array([5.0, 6.0]))
    for b in (bytearray(buf), memoryview(buf)):
        cols = decode_scalar_lines(D, b)
        assert cols.vals.tolist() == [5.0, 6.0]
        assert cols.line_starts.dtype == np.int64 and cols.line_ends.dtype == np.int64


def test_sparse_and_dense_unescaping_agree(monkeypatch: pytest.MonkeyPatch) -> None:
    """Unescaping switches strategy with the density of escapes; force each strategy on the
    same (partly corrupted) buffers and require identical results."""
    from pvarchiver.pb import fast

    rng = np.random.default_rng(99)
    for trial in range(60):
        ptype = ALL_TYPES[trial % len(ALL_TYPES)]
        n = int(rng.integers(1, 30))
        cols = {
            "secondsintoyear": rng.choice([10, 13, 27, 300, 2**20], n).astype(np.uint32),
            "nanos": rng.choice([10, 13, 27, 5, 999_999_999], n).astype(np.uint32),
            "severity": rng.choice([0, 10, -1], n).astype(np.int32),
        }
        if ptype in (D, F):
            raw = rng.choice(np.array([0x0A, 0x0D, 0x1B, 0x40, 0x00], np.uint8), (n, 8))
            cols["vals"] = raw.view("<f8" if ptype is D else "<f4")[:, 0].copy()
        else:
            cols["vals"] = rng.choice([10, 13, 27, -14, 0x0A0D1B0A], n).astype(np.int32)
        buf = bytearray(encode_scalar_lines(ptype, **cols))
        if trial % 2:
            for _ in range(3):
                buf[int(rng.integers(len(buf)))] = int(rng.choice([0x1B, 0x0A, 0x05, 0x80]))
        results = []
        for threshold in (0, 10**9):  # 0: never dense; huge: dense whenever there is an ESC
            monkeypatch.setattr(fast, "_DENSE_ESCAPES", threshold)
            got = decode_scalar_lines(ptype, bytes(buf))
            check_against_reference(ptype, YEAR, bytes(buf), got)
            results.append(got)
        sparse, dense = results
        np.testing.assert_array_equal(sparse.fallback, dense.fallback)
        ok = ~sparse.fallback
        for name in ("secondsintoyear", "nanos", "severity", "status"):
            np.testing.assert_array_equal(getattr(sparse, name)[ok], getattr(dense, name)[ok])
        assert sparse.vals[ok].tobytes() == dense.vals[ok].tobytes()
        if trial % 2 == 0:
            assert_columns_equal(ptype, sparse, cols)
