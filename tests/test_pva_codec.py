"""PVA codec on bytes alone: sizes, BitSet, FieldDesc with the introspection cache, PVData
in both byte orders, partial updates, the pvRequest the AA sends, and the AA's
DBR_V4_GENERIC_BYTES layout. Bytes from real servers are checked in test_pva_protocol."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from pvarchiver.pva.codec import (
    ANY,
    STRUCT,
    UNION,
    VAR_ARRAY,
    DecodeError,
    FieldDesc,
    Reader,
    Writer,
    decode_bitset,
    decode_type,
    encode_bitset,
    encode_type,
    scalar,
    struct_desc,
)
from pvarchiver.pva.data import (
    Layout,
    Selected,
    ValueDecoder,
    Variant,
    encode_value,
    generic_bytes,
)
from pvarchiver.pva.request import AA_MONITOR_OPTIONS, encode_request, pv_request

TS = struct_desc(
    "time_t",
    [
        ("secondsPastEpoch", scalar("long")),
        ("nanoseconds", scalar("int")),
        ("userTag", scalar("int")),
    ],
)
ALARM = struct_desc(
    "alarm_t",
    [("severity", scalar("int")), ("status", scalar("int")), ("message", scalar("string"))],
)
NTSCALAR = struct_desc(
    "epics:nt/NTScalar:1.0", [("value", scalar("double")), ("alarm", ALARM), ("timeStamp", TS)]
)


@pytest.mark.parametrize("n", [0, 1, 253, 254, 255, 65536, 2**31 - 2])
@pytest.mark.parametrize("order", "<>")
def test_size_roundtrip(n: int, order: str) -> None:
    w = Writer(order)
    w.size(n)
    assert len(w.buf) == (1 if n < 254 else 5)
    assert Reader(bytes(w.buf), order).size() == n


def test_null_size_and_truncated_size() -> None:
    assert Reader(b"\xff").size() == -1
    with pytest.raises(DecodeError):
        Reader(b"\xfe\x00\x00").size()
    with pytest.raises(DecodeError):
        Reader(b"\x05abc").string()


@given(st.integers(min_value=0, max_value=2**200))
def test_bitset_roundtrip(bits: int) -> None:
    for order in "<>":
        assert decode_bitset(encode_bitset(bits, order), order) == bits


def test_bitset_word_layout() -> None:
    # bit 0 and bit 65: one whole word in the message's order, then one trailing byte
    bits = 1 | (1 << 65)
    assert encode_bitset(bits, "<") == b"\x01" + bytes(7) + b"\x02"
    assert encode_bitset(bits, ">") == bytes(7) + b"\x01" + b"\x02"
    assert encode_bitset(0b10, ">") == b"\x02"  # no whole word: bytes as they are


NESTED = struct_desc(
    "my:nested",
    [
        ("a", scalar("int")),
        ("sub", struct_desc("", [("x", scalar("double[]")), ("s", scalar("string[]"))])),
        ("u", FieldDesc(UNION, fields=[("i", scalar("int")), ("d", scalar("string"))])),
        ("v", FieldDesc(ANY)),
        ("sa", FieldDesc(STRUCT | VAR_ARRAY, element=struct_desc("el", [("k", scalar("ubyte"))]))),
        ("b", scalar("boolean")),
        ("l", scalar("ulong[]")),
    ],
)
NESTED_VALUE = {
    "a": -7,
    "sub": {"x": [1.5, -2.25], "s": ["ä", "", "x" * 300]},
    "u": Selected("d", "hello"),
    "v": Variant(scalar("short[]"), [1, -2, 3]),
    "sa": [{"k": 255}, None, {"k": 1}],
    "b": True,
    "l": [2**64 - 1, 0],
}


@pytest.mark.parametrize("order", "<>")
def test_type_and_value_roundtrip(order: str) -> None:
    w = Writer(order)
    encode_type(NESTED, w)
    encode_value(NESTED, NESTED_VALUE, w)
    r = Reader(bytes(w.buf), order)
    fd = decode_type(r, {})
    assert fd == NESTED
    dec = ValueDecoder(Layout(fd), order, {})
    flat, off = dec.decode_full(r.buf, r.off)
    assert off == len(w.buf)
    from pvarchiver.pva.data import Value

    got = Value(dec.layout, flat).todict()
    assert got == NESTED_VALUE


def test_introspection_cache_ids() -> None:
    registry: dict[int, FieldDesc] = {}
    w = Writer(">")
    w.u8(0xFD)
    w.pack("h", 7)
    encode_type(TS, w)
    w.u8(0xFE)
    w.pack("h", 7)
    r = Reader(bytes(w.buf))
    first = decode_type(r, registry)
    again = decode_type(r, registry)
    assert first == again == TS and first is not None and first.type_id == 7
    with pytest.raises(DecodeError, match="unknown introspection id"):
        decode_type(Reader(b"\xfe\x00\x09"), registry)


@pytest.mark.parametrize("code", [0x45, 0x44, 0x64, 0x84, 0xA0, 0xE3])
def test_unknown_type_codes_raise(code: int) -> None:
    with pytest.raises(DecodeError):
        decode_type(Reader(bytes([code, 0, 0, 0])), {})


def test_nesting_limit() -> None:
    deep = b"".join(b"\x80\x00\x01\x01a" for _ in range(100)) + b"\x22"
    with pytest.raises(DecodeError, match="too deep"):
        decode_type(Reader(deep), {})


def _partial(fd: FieldDesc, layout: Layout, values: dict[int, object], order: str) -> bytes:
    """BitSet + the marked fields, as a server writes a monitor update."""
    w = Writer(order)
    bits = 0
    for i in values:
        bits |= 1 << i
    w.bitset(bits)
    for i in sorted(values):
        encode_value(layout.descs[i], values[i], w)
    return bytes(w.buf)


@pytest.mark.parametrize("order", "<>")
def test_partial_update_onto_previous(order: str) -> None:
    layout = Layout(NTSCALAR)
    dec = ValueDecoder(layout, order, {})
    idx = layout.index
    full = {0: None}
    w = Writer(order)
    w.bitset(1)
    encode_value(
        NTSCALAR, {"value": 1.0, "alarm": {"message": "m"}, "timeStamp": {"userTag": 3}}, w
    )
    flat = layout.defaults()
    bits, off = dec.apply(bytes(w.buf), 0, flat)
    assert bits == 1 and off == len(w.buf)
    upd = _partial(
        NTSCALAR,
        layout,
        {
            idx["value"]: 2.5,
            idx["timeStamp.secondsPastEpoch"]: 1_700_000_000,
            idx["timeStamp.nanoseconds"]: 9,
        },
        order,
    )
    new = flat.copy()
    bits, off = dec.apply(upd, 0, new)
    assert off == len(upd)
    assert bits == (1 << idx["value"]) | layout.mask("timeStamp.secondsPastEpoch") | (
        1 << idx["timeStamp.nanoseconds"]
    )
    from pvarchiver.pva.data import Value

    v = Value(layout, new)
    assert v["value"] == 2.5 and v["timeStamp.nanoseconds"] == 9
    assert v["timeStamp.userTag"] == 3 and v["alarm.message"] == "m"  # kept from before
    assert Value(layout, flat)["value"] == 1.0  # the previous value is untouched
    # a whole sub-structure marked: its members follow, and are not repeated
    upd = _partial(
        NTSCALAR, layout, {idx["alarm"]: {"severity": 2, "status": 3, "message": "HIHI"}}, order
    )
    new2 = new.copy()
    dec.apply(upd, 0, new2)
    assert Value(layout, new2)["alarm"] == {"severity": 2, "status": 3, "message": "HIHI"}
    assert full


def test_partial_update_errors() -> None:
    layout = Layout(NTSCALAR)
    dec = ValueDecoder(layout, "<", {})
    with pytest.raises(DecodeError, match="beyond"):
        dec.apply(b"\x02\x00\x40", 0, layout.defaults())  # bit 14 of an 11-field structure
    upd = _partial(NTSCALAR, layout, {1: 1.0, layout.index["alarm.message"]: "xyz"}, "<")
    for cut in range(len(upd)):
        with pytest.raises(DecodeError):
            dec.apply(upd[:cut], 0, layout.defaults())


def test_masks_and_record_mask() -> None:
    layout = Layout(NTSCALAR)
    assert layout.names[:3] == ["", "value", "alarm"]
    ts = layout.index["timeStamp"]
    assert layout.mask("timeStamp") == 0b1111 << ts
    assert layout.record_mask() == 1 | (0b1111 << ts)
    assert layout.mask("nope") == 0


def test_aa_pvrequest_bytes() -> None:
    w = Writer(">")
    encode_request(w, pv_request((), AA_MONITOR_OPTIONS))
    expected = (
        b"\x80\x00\x02"  # structure, id "", 2 members
        b"\x05field\x80\x00\x00"
        b"\x06record\x80\x00\x01\x08_options\x80\x00\x01\x03DBE\x22"
        b"\x00\x00\x00\x02"  # the value: DBE = 2 (int)
    )
    assert bytes(w.buf) == expected
    w = Writer(">")
    encode_request(w, pv_request(("value", "timeStamp.nanoseconds"), {"pipeline": "false"}))
    fd = decode_type(Reader(bytes(w.buf)), {})
    assert fd is not None and fd.field("field.timeStamp.nanoseconds") is not None


def test_generic_bytes_keep_server_type_ids() -> None:
    """The AA's stored bytes: big-endian, 0xFD id on first use of a type the server gave an
    id to, 0xFE id on every later use in the same blob, then the full value."""
    point = struct_desc("pt", [("x", scalar("short"))]).with_type_id(2)
    top = struct_desc("my:t", [("a", point), ("b", point), ("n", scalar("int"))]).with_type_id(1)
    layout = Layout(top)
    flat = layout.defaults()
    flat[layout.index["a.x"]] = 1
    flat[layout.index["b.x"]] = -1
    flat[layout.index["n"]] = 5
    blob = generic_bytes(layout, flat)
    assert blob == (
        b"\xfd\x00\x01\x80\x04my:t\x03"
        b"\x01a\xfd\x00\x02\x80\x02pt\x01\x01x\x21"
        b"\x01b\xfe\x00\x02"
        b"\x01n\x22"
        b"\x00\x01\xff\xff\x00\x00\x00\x05"
    )
    # decodable with a fresh registry per blob, as the AA's own reader does
    r = Reader(blob)
    fd = decode_type(r, {})
    assert fd == top
    flat2, off = ValueDecoder(Layout(fd), ">", {}).decode_full(r.buf, r.off)
    assert off == len(blob) and flat2 == flat
    # without server ids the blob starts with the structure code itself
    plain = Layout(NTSCALAR)
    assert generic_bytes(plain, plain.defaults())[:1] == b"\x80"


def test_scalar_formats() -> None:
    for name, fmt in [
        ("double", "d"),
        ("float", "f"),
        ("int", "i"),
        ("ushort", "H"),
        ("byte", "b"),
    ]:
        fd = scalar(name)
        w = Writer("<")
        encode_value(fd, 3, w)
        assert bytes(w.buf) == struct.pack("<" + fmt, 3)
