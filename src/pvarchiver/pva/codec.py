"""PV Access primitive encodings and the type introspection (FieldDesc), sans I/O.

Pure code: bytes in, Python values out, and back. What lives here is what every PVA message
shares: sizes (one byte below 254, else 0xFE and a 32-bit count), UTF-8 strings, the
changed/overrun BitSet, and the type description (FieldDesc) with the connection's
introspection cache (``0xFD id desc`` defines, ``0xFE id`` refers back).

Why the server's type ids are kept on each decoded type: the AA stores a generic structure
as ``DBR_V4_GENERIC_BYTES``, the core-pva re-serialization of the whole value, and core-pva
writes every structure, union or structure array that carried a server id as ``0xFD id``
the first time and ``0xFE id`` after that. Keeping the id lets :func:`encode_type`
reproduce those bytes exactly (see ``data.generic_bytes``).

Every decoder raises :class:`DecodeError` (a ``ValueError``) on truncated or malformed
input; nothing returns a half-decoded result.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

__all__ = [
    "ANY",
    "BOOL",
    "DOUBLE",
    "STRING",
    "STRUCT",
    "UNION",
    "DecodeError",
    "FieldDesc",
    "Reader",
    "Writer",
    "decode_bitset",
    "decode_type",
    "encode_bitset",
    "encode_type",
    "scalar",
    "struct_desc",
    "type_name",
]

# type codes: bits 7-5 kind, bits 4-3 array form, bits 2-0 size/signedness
BOOL, BYTE, SHORT, INT, LONG = 0x00, 0x20, 0x21, 0x22, 0x23
UBYTE, USHORT, UINT, ULONG = 0x24, 0x25, 0x26, 0x27
FLOAT, DOUBLE, STRING = 0x42, 0x43, 0x60
STRUCT, UNION, ANY, BSTRING = 0x80, 0x81, 0x82, 0x83
ARRAY_MASK, VAR_ARRAY, BOUNDED_ARRAY, FIXED_ARRAY = 0x18, 0x08, 0x10, 0x18

NULL_TYPE, ONLY_ID, FULL_WITH_ID, FULL_TAGGED = 0xFF, 0xFE, 0xFD, 0xFC
#: nesting limit for type descriptions (a hostile peer must not exhaust the stack)
MAX_DEPTH = 64

#: struct format letter of each fixed-size scalar
SCALAR_FMT = {
    BOOL: "?",
    BYTE: "b",
    SHORT: "h",
    INT: "i",
    LONG: "q",
    UBYTE: "B",
    USHORT: "H",
    UINT: "I",
    ULONG: "Q",
    FLOAT: "f",
    DOUBLE: "d",
}
_NAMES = {
    BOOL: "boolean",
    BYTE: "byte",
    SHORT: "short",
    INT: "int",
    LONG: "long",
    UBYTE: "ubyte",
    USHORT: "ushort",
    UINT: "uint",
    ULONG: "ulong",
    FLOAT: "float",
    DOUBLE: "double",
    STRING: "string",
    STRUCT: "structure",
    UNION: "union",
    ANY: "any",
    BSTRING: "string",
}


class DecodeError(ValueError):
    """Malformed or truncated PVA bytes (the message must be dropped, and its connection
    closed: the stream position can no longer be trusted)."""


class FieldDesc:
    """One PVA type: a scalar, an array, a structure, a union or a variant (``any``).

    ``code`` is the wire type code (array bits included); ``id`` the structure or union
    id (``epics:nt/NTScalar:1.0``); ``fields`` the (name, type) members of a structure or
    union; ``element`` the element type of a structure or union array; ``bound`` the size
    of a bounded string or bounded/fixed array; ``type_id`` the id the server gave this
    type in its introspection cache (None if it sent the type in full).
    """

    __slots__ = ("bound", "code", "element", "fields", "id", "type_id")

    def __init__(
        self,
        code: int,
        *,
        id: str = "",
        fields: Iterable[tuple[str, FieldDesc]] = (),
        element: FieldDesc | None = None,
        bound: int | None = None,
        type_id: int | None = None,
    ) -> None:
        self.code = code
        self.id = id
        self.fields: tuple[tuple[str, FieldDesc], ...] = tuple(fields)
        self.element = element
        self.bound = bound
        self.type_id = type_id

    @property
    def base(self) -> int:
        """The type code without array bits (``double[]`` -> ``double``)."""
        return self.code & ~ARRAY_MASK & 0xFF

    @property
    def is_array(self) -> bool:
        return bool(self.code & ARRAY_MASK) and self.code != BSTRING

    def field(self, name: str) -> FieldDesc | None:
        """The member ``name`` of a structure (dotted names descend), or None."""
        fd: FieldDesc | None = self
        for part in name.split("."):
            if fd is None:
                return None
            fd = dict(fd.fields).get(part)
        return fd

    def with_type_id(self, type_id: int | None) -> FieldDesc:
        """The same type carrying another cache id (ids do not take part in equality)."""
        return FieldDesc(
            self.code,
            id=self.id,
            fields=self.fields,
            element=self.element,
            bound=self.bound,
            type_id=type_id,
        )

    def _key(self) -> tuple[object, ...]:
        return (self.code, self.id, self.fields, self.element, self.bound)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FieldDesc) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash((self.code, self.id, len(self.fields)))

    def __repr__(self) -> str:
        return f"FieldDesc({type_name(self)})"


def type_name(fd: FieldDesc | None) -> str:
    """The pvData type string (``double[]``, ``structure``, ``enum_t``-style ids are not
    invented: a structure is ``structure`` and its id is separate)."""
    if fd is None:
        return "null"
    if fd.code in (STRUCT | VAR_ARRAY, UNION | VAR_ARRAY, ANY | VAR_ARRAY):
        return _NAMES[fd.base] + "[]"
    name = _NAMES.get(fd.base, f"0x{fd.code:02x}")
    return name + "[]" if fd.is_array else name


def scalar(name: str) -> FieldDesc:
    """A FieldDesc from a pvData type string: ``double``, ``int[]``, ``string``..."""
    arr = name.endswith("[]")
    base = name[:-2] if arr else name
    for code, text in _NAMES.items():
        if text == base and code not in (BSTRING,):
            return FieldDesc(code | (VAR_ARRAY if arr else 0))
    raise ValueError(f"unknown pvData type {name!r}")


def struct_desc(id: str, fields: Iterable[tuple[str, FieldDesc]]) -> FieldDesc:
    """A structure type (for requests and tests)."""
    return FieldDesc(STRUCT, id=id, fields=fields)


_INTS = {o: tuple(struct.Struct(o + c) for c in "hiq") for o in "<>"}


class Reader:
    """A cursor over one message's bytes in one byte order (``"<"`` or ``">"``)."""

    __slots__ = ("_i16", "_i32", "_i64", "buf", "end", "off", "order")

    def __init__(self, buf: bytes, order: str = ">", off: int = 0, end: int | None = None) -> None:
        self.buf = buf
        self.off = off
        self.end = len(buf) if end is None else end
        self.order = order
        self._i16, self._i32, self._i64 = _INTS[order]

    def need(self, n: int) -> None:
        if n < 0 or self.off + n > self.end:
            have = self.end - self.off
            raise DecodeError(f"truncated: need {n} bytes at {self.off}, have {have}")

    def remaining(self) -> int:
        return self.end - self.off

    def u8(self) -> int:
        self.need(1)
        self.off += 1
        return self.buf[self.off - 1]

    def unpack(self, st: struct.Struct) -> tuple[object, ...]:
        self.need(st.size)
        vals = st.unpack_from(self.buf, self.off)
        self.off += st.size
        return vals

    def i16(self) -> int:
        return self.unpack(self._i16)[0]  # type: ignore[return-value]

    def i32(self) -> int:
        return self.unpack(self._i32)[0]  # type: ignore[return-value]

    def u16(self) -> int:
        return self.i16() & 0xFFFF

    def u32(self) -> int:
        return self.i32() & 0xFFFFFFFF

    def take(self, n: int) -> bytes:
        self.need(n)
        self.off += n
        return bytes(self.buf[self.off - n : self.off])

    def size(self) -> int:
        """A PVA size: -1 for null (0xFF), else a non-negative count."""
        b = self.u8()
        if b < 254:
            return b
        if b == 255:
            return -1
        n = self.i32()
        if n == 0x7FFFFFFF:
            n = self.unpack(self._i64)[0]  # type: ignore[assignment]
        if n < 0:
            raise DecodeError(f"negative size {n}")
        return n

    def count(self, item_size: int = 1) -> int:
        """A size that must be a real count whose items fit in the rest of the message."""
        n = self.size()
        if n < 0:
            raise DecodeError("null size where a count is required")
        if n * item_size > self.end - self.off:
            raise DecodeError(f"count {n} larger than the message")
        return n

    def string(self) -> str:
        n = self.size()
        if n <= 0:
            return ""
        try:
            return self.take(n).decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"invalid UTF-8 string: {exc}") from None

    def bitset(self) -> int:
        n = self.count()
        return decode_bitset(self.take(n), self.order)


class Writer:
    """An output buffer in one byte order (``"<"`` or ``">"``)."""

    __slots__ = ("buf", "order")

    def __init__(self, order: str = ">") -> None:
        self.buf = bytearray()
        self.order = order

    def pack(self, fmt: str, *vals: object) -> None:
        self.buf += struct.pack(self.order + fmt, *vals)

    def u8(self, v: int) -> None:
        self.buf.append(v & 0xFF)

    def size(self, n: int) -> None:
        if n < 0:
            self.buf.append(0xFF)
        elif n < 254:
            self.buf.append(n)
        elif n < 0x7FFFFFFF:
            self.buf.append(0xFE)
            self.pack("i", n)
        else:
            self.buf.append(0xFE)
            self.pack("iq", 0x7FFFFFFF, n)

    def string(self, s: str) -> None:
        raw = s.encode()
        self.size(len(raw))
        self.buf += raw

    def bitset(self, bits: int) -> None:
        raw = encode_bitset(bits, self.order)
        self.size(len(raw))
        self.buf += raw


def decode_bitset(raw: bytes, order: str) -> int:
    """BitSet bytes to an int (bit i set = field i changed). Whole 64-bit words come in the
    message's byte order, trailing bytes least significant first."""
    if order == "<":
        return int.from_bytes(raw, "little")
    nwords = len(raw) // 8
    val = int.from_bytes(raw[nwords * 8 :], "little") << (64 * nwords)
    for i in range(nwords):
        val |= int.from_bytes(raw[i * 8 : i * 8 + 8], "big") << (64 * i)
    return val


def encode_bitset(bits: int, order: str) -> bytes:
    """The inverse of :func:`decode_bitset`, without trailing zero bytes (as pvxs)."""
    if bits < 0:
        raise ValueError("negative bitset")
    raw = bits.to_bytes((bits.bit_length() + 7) // 8, "little")
    if order == "<":
        return raw
    nwords = len(raw) // 8
    out = bytearray()
    for i in range(nwords):
        out += raw[i * 8 : i * 8 + 8][::-1]
    return bytes(out + raw[nwords * 8 :])


def decode_type(r: Reader, registry: dict[int, FieldDesc], depth: int = 0) -> FieldDesc | None:
    """One FieldDesc (None for the null type), updating the connection's ``registry``."""
    if depth > MAX_DEPTH:
        raise DecodeError("type description nested too deep")
    code = r.u8()
    if code == NULL_TYPE:
        return None
    if code == ONLY_ID:
        tid = r.i16()
        known = registry.get(tid)
        if known is None:
            raise DecodeError(f"unknown introspection id {tid}")
        return known
    if code in (FULL_WITH_ID, FULL_TAGGED):
        tid = r.i16()
        if code == FULL_TAGGED:
            r.i32()  # tag: not used
        fd = decode_type(r, registry, depth + 1)
        if fd is None:
            raise DecodeError("introspection id defined as the null type")
        if _keeps_id(fd):
            fd = fd.with_type_id(tid)
        registry[tid] = fd
        return fd
    return _decode_full(code, r, registry, depth)


def _decode_full(code: int, r: Reader, registry: dict[int, FieldDesc], depth: int) -> FieldDesc:
    kind, form = code & 0xE0, code & ARRAY_MASK
    if code & 0xE0 > STRUCT:
        raise DecodeError(f"unknown type code 0x{code:02x}")
    if kind == STRUCT:
        base = code & 0xE7
        if base == BSTRING and form == 0:
            return FieldDesc(code, bound=r.size())
        if base not in (STRUCT, UNION, ANY):
            raise DecodeError(f"unknown type code 0x{code:02x}")
        if form == 0 and base in (STRUCT, UNION):
            return _decode_members(code, r, registry, depth)
        if form == VAR_ARRAY:
            if base == ANY:
                return FieldDesc(code)
            elem = decode_type(r, registry, depth + 1)
            if elem is None or elem.code != base:
                raise DecodeError(f"array of 0x{code:02x} with element {elem!r}")
            return FieldDesc(code, element=elem)
        if form == 0:  # ANY
            return FieldDesc(code)
        raise DecodeError(f"unsupported type code 0x{code:02x}")
    if (code & 0xE7) not in SCALAR_FMT and (code & 0xE7) != STRING:
        raise DecodeError(f"unknown type code 0x{code:02x}")
    bound = r.size() if form in (BOUNDED_ARRAY, FIXED_ARRAY) else None
    return FieldDesc(code, bound=bound)


def _decode_members(code: int, r: Reader, registry: dict[int, FieldDesc], depth: int) -> FieldDesc:
    tid = r.string()
    n = r.count(2)
    members = []
    for _ in range(n):
        name = r.string()
        fd = decode_type(r, registry, depth + 1)
        if fd is None:
            raise DecodeError(f"member {name!r} has the null type")
        members.append((name, fd))
    return FieldDesc(code, id=tid, fields=members)


def encode_type(fd: FieldDesc | None, w: Writer, described: set[int] | None = None) -> None:
    """Write a FieldDesc. With ``described`` (core-pva's way, used for the AA's stored
    bytes) a type with a non-zero cache id is written ``0xFD id`` + description the first
    time and ``0xFE id`` after that; without it every type is written in full."""
    if fd is None:
        w.u8(NULL_TYPE)
        return
    if described is not None and fd.type_id and _keeps_id(fd):
        tid = fd.type_id & 0xFFFF
        if tid in described:
            w.u8(ONLY_ID)
            w.pack("h", _signed16(tid))
            return
        w.u8(FULL_WITH_ID)
        w.pack("h", _signed16(tid))
        described.add(tid)
    w.u8(fd.code)
    if fd.code in (STRUCT, UNION):
        w.string(fd.id)
        w.size(len(fd.fields))
        for name, sub in fd.fields:
            w.string(name)
            encode_type(sub, w, described)
    elif fd.code in (STRUCT | VAR_ARRAY, UNION | VAR_ARRAY):
        encode_type(fd.element, w, described)
    elif fd.bound is not None:
        w.size(fd.bound)


def _keeps_id(fd: FieldDesc) -> bool:
    """Types that core-pva keeps a cache id on: structures, unions and their arrays, and
    variant arrays (never scalars, scalar arrays or a lone ``any``)."""
    return fd.base in (STRUCT, UNION) or fd.code == ANY | VAR_ARRAY


def _signed16(v: int) -> int:
    return v - 0x10000 if v >= 0x8000 else v
