"""PVData values: decode, encode, and apply partial (BitSet) updates, sans I/O.

Why values are kept flat: a PVA monitor update carries a BitSet of changed fields, indexed
depth-first over the whole structure (0 = the top, then each member, a sub-structure's
members right after it), and only those fields' bytes. Keeping the value as a list indexed
the same way makes applying an update one list copy plus a store per changed field, with
no tree walk. The decoding of each distinct BitSet is compiled once (a :class:`_Plan`:
runs of fixed-size fields become one ``struct.unpack_from``), so an NTScalar double update
costs a couple of microseconds. :class:`Value` turns the list back into names on demand.

Representation of leaves: numbers and booleans as Python scalars, strings as ``str``,
scalar arrays as lists, a structure inside a union / variant / structure array as a dict,
a union as :class:`Selected` (or None), a variant (``any``) as :class:`Variant` (or None),
a structure array as a list of dicts (None for a null element).
"""

from __future__ import annotations

import struct
from bisect import bisect_left
from collections.abc import Callable
from typing import Any, NamedTuple

from .codec import (
    ANY,
    ARRAY_MASK,
    BSTRING,
    SCALAR_FMT,
    STRING,
    STRUCT,
    UNION,
    DecodeError,
    FieldDesc,
    Reader,
    Writer,
    decode_bitset,
    decode_type,
    encode_type,
)

__all__ = [
    "Layout",
    "Selected",
    "Value",
    "ValueDecoder",
    "Variant",
    "encode_value",
    "generic_bytes",
]

Decoder = Callable[[bytes, int], tuple[Any, int]]
#: distinct BitSets compiled per decoder at most (a hostile peer must not grow it forever)
MAX_PLANS = 256


class Selected(NamedTuple):
    """The value of a regular union: which member is selected, and its value."""

    name: str
    value: Any


class Variant(NamedTuple):
    """The value of a variant union (``any``): its type as sent, and its value."""

    type: FieldDesc
    value: Any


class Layout:
    """The depth-first field numbering of one top-level structure type."""

    def __init__(self, top: FieldDesc) -> None:
        if top.code != STRUCT:
            raise DecodeError(f"top-level type is not a structure: {top!r}")
        self.top = top
        self.descs: list[FieldDesc] = []
        self.names: list[str] = []
        self.ends: list[int] = []
        self._walk(top, "")
        self.index = {name: i for i, name in enumerate(self.names)}
        self.leaves = [i for i, fd in enumerate(self.descs) if fd.code != STRUCT]

    def _walk(self, fd: FieldDesc, name: str) -> None:
        i = len(self.descs)
        self.descs.append(fd)
        self.names.append(name)
        self.ends.append(0)
        if fd.code == STRUCT:
            for sub, sfd in fd.fields:
                self._walk(sfd, f"{name}.{sub}" if name else sub)
        self.ends[i] = len(self.descs)

    def __len__(self) -> int:
        return len(self.descs)

    def mask(self, name: str) -> int:
        """Bits of field ``name`` and everything under it (0 if there is no such field)."""
        i = self.index.get(name)
        if i is None:
            return 0
        return ((1 << self.ends[i]) - 1) ^ ((1 << i) - 1)

    def record_mask(self) -> int:
        """The AA's test for a record-processing update: bit 0 or any ``timeStamp*`` field
        (an update touching none of them is property-only and the AA drops it)."""
        bits = 1
        for i, name in enumerate(self.names):
            if name.startswith("timeStamp"):
                bits |= 1 << i
        return bits

    def defaults(self) -> list[Any]:
        """A flat value with every leaf at its zero value (structure slots hold None)."""
        return [None if fd.code == STRUCT else default_value(fd) for fd in self.descs]


class Value:
    """A decoded top-level structure: ``v["value"]``, ``v["timeStamp.nanoseconds"]``,
    ``v.todict()``. ``flat`` is the list indexed by field number (see :class:`Layout`)."""

    __slots__ = ("flat", "layout")

    def __init__(self, layout: Layout, flat: list[Any]) -> None:
        self.layout = layout
        self.flat = flat

    def __getitem__(self, name: str) -> Any:
        i = self.layout.index[name]
        if self.layout.descs[i].code != STRUCT:
            return self.flat[i]
        return self._build(i)

    def get(self, name: str, default: Any = None) -> Any:
        return self[name] if name in self.layout.index else default

    def __contains__(self, name: str) -> bool:
        return name in self.layout.index

    def _build(self, i: int) -> dict[str, Any]:
        out: dict[str, Any] = {}
        j = i + 1
        names, descs, ends, flat = self.layout.names, self.layout.descs, self.layout.ends, self.flat
        while j < ends[i]:
            key = names[j].rpartition(".")[2]
            if descs[j].code == STRUCT:
                out[key] = self._build(j)
            else:
                out[key] = flat[j]
            j = ends[j]
        return out

    def todict(self) -> dict[str, Any]:
        """The whole value as nested dicts."""
        return self._build(0)

    def generic_bytes(self) -> bytes:
        """The AA's ``DBR_V4_GENERIC_BYTES`` payload for this value (see :func:`generic_bytes`)."""
        return generic_bytes(self.layout, self.flat)


def default_value(fd: FieldDesc) -> Any:
    """The zero value of a type (what a field holds before the server sent it)."""
    code = fd.code
    if code & ARRAY_MASK and code != BSTRING:
        return []
    if code in (STRING, BSTRING):
        return ""
    fmt = SCALAR_FMT.get(code)
    if fmt is not None:
        return False if fmt == "?" else (0.0 if fmt in "fd" else 0)
    if code == STRUCT:
        return {name: default_value(sub) for name, sub in fd.fields}
    return None


# ---------------------------------------------------------------- decoding


def make_decoder(fd: FieldDesc, order: str, registry: dict[int, FieldDesc]) -> Decoder:
    """A function ``(buf, off) -> (value, new_off)`` for one field of type ``fd``."""
    code = fd.code
    fmt = SCALAR_FMT.get(code)
    if fmt is not None:
        st = struct.Struct(order + fmt)
        unpack, size = st.unpack_from, st.size

        def scalar(buf: bytes, off: int) -> tuple[Any, int]:
            return unpack(buf, off)[0], off + size

        return scalar
    if code in (STRING, BSTRING):
        return _make_string(order)
    if code == STRUCT:
        members = [(name, make_decoder(sub, order, registry)) for name, sub in fd.fields]

        def structure(buf: bytes, off: int) -> tuple[Any, int]:
            out = {}
            for name, dec in members:
                out[name], off = dec(buf, off)
            return out, off

        return structure
    if code == UNION:
        return _make_union(fd, order, registry)
    if code == ANY:
        return _make_any(order, registry)
    if code & ARRAY_MASK:
        return _make_array(fd, order, registry)
    raise DecodeError(f"cannot decode type 0x{code:02x}")


def _make_string(order: str) -> Decoder:
    def string(buf: bytes, off: int) -> tuple[Any, int]:
        n = buf[off]
        if n < 254:
            end = off + 1 + n
            if end > len(buf):
                raise DecodeError("truncated string")
            try:
                return buf[off + 1 : end].decode(), end
            except UnicodeDecodeError as exc:
                raise DecodeError(f"invalid UTF-8 string: {exc}") from None
        r = Reader(buf, order, off)
        return r.string(), r.off

    return string


def _size(buf: bytes, off: int, order: str, item: int) -> tuple[int, int]:
    """A count (not null) whose items of ``item`` bytes fit in the buffer."""
    r = Reader(buf, order, off)
    n = r.count(item)
    return n, r.off


def _make_array(fd: FieldDesc, order: str, registry: dict[int, FieldDesc]) -> Decoder:
    base = fd.code & ~ARRAY_MASK & 0xFF
    fmt = SCALAR_FMT.get(base)
    if fmt is not None:
        item = struct.calcsize(fmt)

        def numbers(buf: bytes, off: int) -> tuple[Any, int]:
            n, off = _size(buf, off, order, item)
            return list(struct.unpack_from(f"{order}{n}{fmt}", buf, off)), off + n * item

        return numbers
    if base in (STRUCT, UNION, ANY):
        elem = (
            make_decoder(fd.element, order, registry)
            if fd.element is not None
            else _make_any(order, registry)
        )

        def complex_array(buf: bytes, off: int) -> tuple[Any, int]:
            n, off = _size(buf, off, order, 1)
            out: list[Any] = []
            for _ in range(n):
                present = buf[off]
                off += 1
                if present:
                    val, off = elem(buf, off)
                    out.append(val)
                else:
                    out.append(None)
            return out, off

        return complex_array
    one = _make_string(order)

    def strings(buf: bytes, off: int) -> tuple[Any, int]:
        n, off = _size(buf, off, order, 1)
        out = []
        for _ in range(n):
            s, off = one(buf, off)
            out.append(s)
        return out, off

    return strings


def _make_union(fd: FieldDesc, order: str, registry: dict[int, FieldDesc]) -> Decoder:
    members = [(name, make_decoder(sub, order, registry)) for name, sub in fd.fields]

    def union(buf: bytes, off: int) -> tuple[Any, int]:
        r = Reader(buf, order, off)
        sel = r.size()
        if sel < 0:
            return None, r.off
        if sel >= len(members):
            raise DecodeError(f"union selector {sel} out of range")
        name, dec = members[sel]
        val, off = dec(buf, r.off)
        return Selected(name, val), off

    return union


def _make_any(order: str, registry: dict[int, FieldDesc]) -> Decoder:
    def variant(buf: bytes, off: int) -> tuple[Any, int]:
        r = Reader(buf, order, off)
        fd = decode_type(r, registry)
        if fd is None:
            return None, r.off
        val, off = make_decoder(fd, order, registry)(buf, r.off)
        return Variant(fd, val), off

    return variant


class _Plan(NamedTuple):
    #: (struct for a run of fixed-size leaves or None, leaf indices, decoder for one leaf)
    steps: tuple[tuple[struct.Struct | None, tuple[int, ...], Decoder | None], ...]


class ValueDecoder:
    """Decodes BitSet + partial data of one operation's structure into a flat value."""

    def __init__(self, layout: Layout, order: str, registry: dict[int, FieldDesc]) -> None:
        self.layout = layout
        self.order = order
        self._fmt = [SCALAR_FMT.get(fd.code) for fd in layout.descs]
        self._dec: dict[int, Decoder] = {
            i: make_decoder(layout.descs[i], order, registry) for i in layout.leaves
        }
        self._plans: dict[bytes, _Plan] = {}
        self._full: _Plan | None = None

    def _compile(self, bits: int) -> _Plan:
        lay = self.layout
        if bits >> len(lay):
            raise DecodeError(f"changed bit {bits.bit_length() - 1} beyond {len(lay)} fields")
        chosen: list[int] = []
        covered = 0
        while bits:
            low = bits & -bits
            b = low.bit_length() - 1
            bits ^= low
            if b < covered:
                continue
            covered = lay.ends[b]
            lo = bisect_left(lay.leaves, b)
            hi = bisect_left(lay.leaves, covered)
            chosen.extend(lay.leaves[lo:hi])
        steps: list[tuple[struct.Struct | None, tuple[int, ...], Decoder | None]] = []
        run: list[int] = []

        def flush() -> None:
            if run:
                fmt = self.order + "".join(self._fmt[i] or "" for i in run)
                steps.append((struct.Struct(fmt), tuple(run), None))
                run.clear()

        for i in chosen:
            if self._fmt[i] is not None:
                run.append(i)
            else:
                flush()
                steps.append((None, (i,), self._dec[i]))
        flush()
        return _Plan(tuple(steps))

    def read_bitset(self, buf: bytes, off: int) -> tuple[bytes, int]:
        """The raw BitSet bytes at ``off`` (the key of the plan cache) and the offset after."""
        if off >= len(buf):
            raise DecodeError("truncated: no bitset")
        n = buf[off]
        if n >= 254:
            r = Reader(buf, self.order, off)
            n = r.count()
            off = r.off
        else:
            off += 1
        end = off + n
        if end > len(buf):
            raise DecodeError("truncated bitset")
        return buf[off:end], end

    def apply(self, buf: bytes, off: int, flat: list[Any]) -> tuple[int, int]:
        """Read a BitSet and the fields it marks from ``buf[off:]`` into ``flat`` (in
        place); returns (changed bits, offset after the data). On error ``flat`` may be
        partly written: callers decode into a copy and keep it only on success."""
        raw, off = self.read_bitset(buf, off)
        plan = self._plans.get(raw)
        bits = int.from_bytes(raw, "little") if self.order == "<" else decode_bitset(raw, ">")
        if plan is None:
            plan = self._compile(bits)
            if len(self._plans) < MAX_PLANS:
                self._plans[raw] = plan
        return bits, _run(plan, buf, off, flat)

    def decode_full(self, buf: bytes, off: int) -> tuple[list[Any], int]:
        """A full value with no BitSet in front (as in a variant or a request)."""
        flat = self.layout.defaults()
        plan = self._full
        if plan is None:
            plan = self._full = self._compile(1)
        return flat, _run(plan, buf, off, flat)


# ---------------------------------------------------------------- encoding


def encode_value(fd: FieldDesc, value: Any, w: Writer) -> None:
    """Write one full value of type ``fd`` (no BitSet)."""
    code = fd.code
    fmt = SCALAR_FMT.get(code)
    if fmt is not None:
        w.pack(fmt, value)
    elif code in (STRING, BSTRING):
        w.string(value or "")
    elif code == STRUCT:
        value = value or {}
        for name, sub in fd.fields:
            encode_value(sub, value.get(name, default_value(sub)), w)
    elif code == UNION:
        if value is None:
            w.size(-1)
        else:
            names = [name for name, _ in fd.fields]
            sel = names.index(value[0])
            w.size(sel)
            encode_value(fd.fields[sel][1], value[1], w)
    elif code == ANY:
        if value is None:
            w.u8(0xFF)
        else:
            encode_type(value[0], w, set())
            encode_value(value[0], value[1], w)
    elif code & ARRAY_MASK:
        _encode_array(fd, list(value or ()), w)
    else:
        raise ValueError(f"cannot encode type 0x{code:02x}")


def _encode_array(fd: FieldDesc, items: list[Any], w: Writer) -> None:
    base = fd.code & ~ARRAY_MASK & 0xFF
    w.size(len(items))
    fmt = SCALAR_FMT.get(base)
    if fmt is not None:
        w.pack(f"{len(items)}{fmt}", *items)
    elif base == STRING:
        for s in items:
            w.string(s)
    else:
        elem = fd.element if fd.element is not None else FieldDesc(ANY)
        for item in items:
            if item is None:
                w.u8(0)
            else:
                w.u8(1)
                encode_value(elem, item, w)


def encode_flat(layout: Layout, flat: list[Any], w: Writer) -> None:
    """Write the whole value held in ``flat`` (every leaf, depth-first)."""
    for i in layout.leaves:
        v = flat[i]
        encode_value(layout.descs[i], default_value(layout.descs[i]) if v is None else v, w)


def generic_bytes(layout: Layout, flat: list[Any]) -> bytes:
    """The bytes the AA stores for ``DBR_V4_GENERIC_BYTES``: the full type description of
    the top structure (server cache ids as ``0xFD``/``0xFE``, one shared set for the blob)
    then the full value, big-endian, as core-pva writes them."""
    w = Writer(">")
    encode_type(layout.top, w, set())
    encode_flat(layout, flat, w)
    return bytes(w.buf)


def _run(plan: _Plan, buf: bytes, off: int, flat: list[Any]) -> int:
    """Apply a compiled decode plan at ``off`` into ``flat``; the offset after it. A value
    cut short raises :class:`DecodeError` (never a half-decoded update)."""
    try:
        for st, idx, dec in plan.steps:
            if st is not None:
                vals = st.unpack_from(buf, off)
                off += st.size
                for i, v in zip(idx, vals, strict=True):
                    flat[i] = v
            else:
                flat[idx[0]], off = dec(buf, off)
    except (struct.error, IndexError) as exc:
        raise DecodeError(f"truncated value: {exc}") from None
    return off
