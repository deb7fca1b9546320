"""Convert a PV's stored samples to another sample type (``changeTypeForPV``).

Why: when a PV's type changes at the IOC (a ``float`` that became a ``double``, the AA's
issue #438) its old files hold the old type and a store refuses to append the new type to
them. The AA's answer is to rewrite every file of the PV in the new type; this module does
that for one PV's chain of stores, file by file, each file replaced atomically
(:mod:`.rewrite`), so a crash leaves each file either wholly old or wholly new. The type of
each file is read from its own header, and files already of the new type are left alone, so
running the conversion again after a crash finishes the job.

Values convert as the AA's ``ThruNumberAndStringConversion`` does for scalars (numbers to
numbers, numbers to strings, strings to numbers where they parse), and further: waveforms to
waveforms of another element type, a scalar to a one-element waveform and a waveform of one
element to a scalar. Unlike the AA, a conversion that would lose data (a fraction cut off, a
double not representable as a float, a string that is not a number, a waveform of several
elements made a scalar) is refused, before any file is touched, unless ``force`` is given.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..pb import PayloadType, Sample
from ..pb.escape import EscapeError
from ..pb.sample import PBDecodeError
from .batch import Batch
from .pbfile import PBFile, PBFileError
from .rewrite import commit, remove_stale_temps, sample_lines, write_temp
from .store import PartitionFile, PlainPBStore

P = PayloadType

#: integer element types and their ranges (ENUM is a 16-bit short in the AA's files)
_INT_RANGE = {
    P.SCALAR_SHORT: (-(2**15), 2**15 - 1),
    P.SCALAR_ENUM: (-(2**15), 2**15 - 1),
    P.SCALAR_BYTE: (-128, 127),
    P.SCALAR_INT: (-(2**31), 2**31 - 1),
}
_ELEMENT = {
    P.WAVEFORM_STRING: P.SCALAR_STRING,
    P.WAVEFORM_SHORT: P.SCALAR_SHORT,
    P.WAVEFORM_FLOAT: P.SCALAR_FLOAT,
    P.WAVEFORM_ENUM: P.SCALAR_ENUM,
    P.WAVEFORM_BYTE: P.SCALAR_BYTE,
    P.WAVEFORM_INT: P.SCALAR_INT,
    P.WAVEFORM_DOUBLE: P.SCALAR_DOUBLE,
}
#: element conversions that never lose anything (everything converts to a string exactly)
_EXACT = {
    (P.SCALAR_SHORT, P.SCALAR_INT),
    (P.SCALAR_SHORT, P.SCALAR_FLOAT),
    (P.SCALAR_SHORT, P.SCALAR_DOUBLE),
    (P.SCALAR_SHORT, P.SCALAR_ENUM),
    (P.SCALAR_ENUM, P.SCALAR_SHORT),
    (P.SCALAR_ENUM, P.SCALAR_INT),
    (P.SCALAR_ENUM, P.SCALAR_FLOAT),
    (P.SCALAR_ENUM, P.SCALAR_DOUBLE),
    (P.SCALAR_BYTE, P.SCALAR_SHORT),
    (P.SCALAR_BYTE, P.SCALAR_ENUM),
    (P.SCALAR_BYTE, P.SCALAR_INT),
    (P.SCALAR_BYTE, P.SCALAR_FLOAT),
    (P.SCALAR_BYTE, P.SCALAR_DOUBLE),
    (P.SCALAR_INT, P.SCALAR_DOUBLE),
    (P.SCALAR_FLOAT, P.SCALAR_DOUBLE),
}


class ConversionError(ValueError):
    """A type change that cannot be done (a type that has no conversion, or, without
    ``force``, a value that would be lost); the message says which and why."""


class _Drop(Exception):
    """A value that cannot be converted at all (only with ``force``: the sample goes)."""


def parse_type(name: str) -> PayloadType:
    """An ArchDBRTypes name (``DBR_SCALAR_DOUBLE``) as a PayloadType; ConversionError if
    it is not one."""
    for t in PayloadType:
        if t.arch_dbr_name == name.strip():
            return t
    names = ", ".join(t.arch_dbr_name for t in PayloadType)
    raise ConversionError(f"Unknown type {name!r}; one of {names}")


# ---------------------------------------------------------------------- one element
def _number(v: Any) -> float | int:
    """A stored element as a Python number (a ScalarByte is one signed byte)."""
    if isinstance(v, bytes | bytearray):
        if len(v) != 1:
            raise _Drop(f"{len(v)} bytes are not one byte")
        return int.from_bytes(v, "little", signed=True)
    if isinstance(v, str):
        try:
            return float(v.strip())
        except ValueError:
            raise _Drop(f"{v!r} is not a number") from None
    return v


def _as_string(v: Any, src: PayloadType) -> str:
    if isinstance(v, str):
        return v
    n = _number(v)
    if src is P.SCALAR_FLOAT:
        return str(np.float32(n))  # the shortest text of the 32-bit value
    if isinstance(n, float) and n.is_integer() and src is not P.SCALAR_DOUBLE:
        return str(int(n))
    return repr(n)


def _element(src: PayloadType, dst: PayloadType, force: bool) -> Callable[[Any], Any]:
    """The conversion of one element from scalar type ``src`` to scalar type ``dst``;
    it raises :class:`_Drop` for a value it cannot convert, and (without ``force``)
    :class:`ConversionError` for a value it would change."""
    if dst is P.SCALAR_STRING:
        return lambda v: _as_string(v, src)
    if dst is P.SCALAR_DOUBLE:

        def to_double(v: Any) -> float:
            return float(_number(v))

        return to_double
    if dst is P.SCALAR_FLOAT:

        def to_float(v: Any) -> float:
            x = float(_number(v))
            with np.errstate(over="ignore"):
                y = float(np.float32(x))
            if not force and y != x and not (math.isnan(x) and math.isnan(y)):
                raise ConversionError(f"{v!r} is not exactly a 32-bit float ({y!r})")
            return y

        return to_float
    lo, hi = _INT_RANGE[dst]

    def to_int(v: Any) -> Any:
        x = _number(v)
        if isinstance(x, float) and (math.isnan(x) or math.isinf(x)):
            if not force:
                raise ConversionError(f"{v!r} is not an integer")
            i = 0
        else:
            i = int(x)  # towards zero, as Java's intValue()
            if not force and (i != x or not lo <= i <= hi):
                why = "is not an integer" if i != x else f"is outside {lo}..{hi}"
                raise ConversionError(f"{v!r} {why}")
            i = min(max(i, lo), hi)
        if dst is P.SCALAR_BYTE:
            return i.to_bytes(1, "little", signed=True)
        return i

    return to_int


# ---------------------------------------------------------------------- one value
def value_converter(src: PayloadType, dst: PayloadType, force: bool) -> Callable[[Any], Any]:
    """The conversion of one sample's ``val`` from ``src`` to ``dst`` (see :func:`_element`
    for its errors); ConversionError at once for types that have none."""
    if P.V4_GENERIC_BYTES in (src, dst):
        raise ConversionError("V4 generic bytes cannot be converted to or from another type")
    es, ed = _ELEMENT.get(src, src), _ELEMENT.get(dst, dst)
    one = _element(es, ed, force)
    if not src.is_vector and not dst.is_vector:
        return one

    def elements(v: Any) -> list[Any]:
        if not src.is_vector:
            return [v]
        if src is P.WAVEFORM_BYTE:  # VectorChar: one bytes object, a signed byte each
            return [bytes([b]) for b in v]
        return list(v)

    def convert(v: Any) -> Any:
        out = [one(e) for e in elements(v)]
        if dst is P.WAVEFORM_BYTE:
            return b"".join(out)
        if dst.is_vector:
            return out
        if len(out) != 1:
            if not force:
                raise ConversionError(f"a waveform of {len(out)} elements is not a scalar")
            if not out:
                raise _Drop("an empty waveform has no scalar value")
        return out[0]

    return convert


def lossless(src: PayloadType, dst: PayloadType) -> bool:
    """Whether every value of ``src`` converts to ``dst`` unchanged (no check needed)."""
    if src == dst:
        return True
    if src.is_vector and not dst.is_vector:
        return False
    es, ed = _ELEMENT.get(src, src), _ELEMENT.get(dst, dst)
    if P.V4_GENERIC_BYTES in (es, ed):
        return False
    return es == ed or ed is P.SCALAR_STRING or (es, ed) in _EXACT


def convert_samples(
    samples: Iterable[Sample], src: PayloadType, dst: PayloadType, force: bool, dropped: list[int]
) -> Iterator[Sample]:
    """``samples`` of type ``src`` as samples of ``dst`` (all other fields kept). A value
    that cannot be converted raises ConversionError, or with ``force`` is left out and
    counted in ``dropped[0]``."""
    conv = value_converter(src, dst, force)
    for s in samples:
        try:
            val = conv(s.val)
        except _Drop as e:
            if not force:
                raise ConversionError(f"sample at {s.secs}.{s.nanos:09d}: {e}") from None
            dropped[0] += 1
            continue
        except ConversionError as e:
            raise ConversionError(f"sample at {s.secs}.{s.nanos:09d}: {e}") from None
        yield Sample(
            s.secs,
            s.nanos,
            val,
            s.severity,
            s.status,
            s.fields,
            s.fieldactualchange,
            s.repeatcount,
            None,
        )


# ---------------------------------------------------------------------- files
def _file_samples(f: PBFile) -> Iterator[Sample]:
    """Every readable sample of an open file; a corrupt line (already unreadable for any
    reader) is skipped."""
    for _off, line in f.iter_lines(f.header_end):
        try:
            yield f.decode(line)
        except (PBDecodeError, EscapeError):
            continue


@dataclass
class ConvertReport:
    """What one conversion did, per PV."""

    files_converted: int = 0
    files_already: int = 0
    samples: int = 0
    dropped: int = 0
    #: samples handed in by the caller (the engine's unwritten ones) that were appended
    extra_written: int = 0
    stores: list[str] = field(default_factory=list)


def _pv_files(stores: Sequence[PlainPBStore], pv: str) -> list[tuple[PlainPBStore, PartitionFile]]:
    return [(st, pf) for st in stores for pf in st.files_for_pv(pv)]


def check_pv(
    stores: Sequence[PlainPBStore],
    pv: str,
    dst: PayloadType,
    force: bool,
    extra: tuple[PayloadType, Sequence[Sample]] | None = None,
) -> None:
    """Raise ConversionError (naming the file and sample) if converting ``pv``'s files, and
    ``extra`` samples, to ``dst`` would lose data and ``force`` is not given. Reads only;
    types whose conversion is exact are not read at all."""
    for st, pf in _pv_files(stores, pv):
        try:
            f = PBFile.open(pf.path)
        except (PBFileError, OSError) as e:
            raise ConversionError(f"{st.name}: cannot read {pf.path}: {e}") from None
        with f:
            src = f.header.type
            if force and src != dst:
                value_converter(src, dst, force)  # types without any conversion
                continue
            if lossless(src, dst):
                continue
            try:
                for _ in convert_samples(_file_samples(f), src, dst, force, [0]):
                    pass
            except ConversionError as e:
                raise ConversionError(f"{st.name}: {pf.path.name}: {e}") from None
    if extra is not None and extra[1] and not lossless(extra[0], dst):
        try:
            for _ in convert_samples(extra[1], extra[0], dst, force, [0]):
                pass
        except ConversionError as e:
            raise ConversionError(f"unwritten samples in memory: {e}") from None


def convert_pv(
    stores: Sequence[PlainPBStore],
    pv: str,
    dst: PayloadType,
    force: bool = False,
    extra: tuple[PayloadType, Sequence[Sample]] | None = None,
) -> ConvertReport:
    """Rewrite every file of ``pv`` in ``stores`` that is not of type ``dst`` in that type,
    each file atomically, after :func:`check_pv` found nothing that would be lost; then
    append ``extra`` (samples of another type not yet stored, e.g. the engine's), converted,
    to the first store. The caller holds the PV's lock in every store
    (:func:`~.chains.locked_chain`)."""
    check_pv(stores, pv, dst, force, extra)
    rep = ConvertReport(stores=[st.name for st in stores])
    for st in stores:
        remove_stale_temps(st, pv)
    for st, pf in _pv_files(stores, pv):
        with PBFile.open(pf.path) as f:
            header = f.header
            if header.type == dst:
                rep.files_already += 1
                continue
            src = header.type
            dropped, count = [0], [0]
            new_header = type(header)(dst, header.pvname, header.year, None, header.headers)
            if src.is_vector == dst.is_vector:
                new_header.element_count = header.element_count
            converted = convert_samples(_file_samples(f), src, dst, force, dropped)
            tmp = write_temp(pf.path, sample_lines(new_header, converted, count))
        commit(tmp, pf.path)
        st.forget(pv)
        rep.samples += count[0]
        rep.dropped += dropped[0]
        rep.files_converted += 1
    if extra is not None and extra[1] and stores:
        dropped = [0]
        samples = list(convert_samples(extra[1], extra[0], dst, force, dropped))
        rep.dropped += dropped[0]
        rep.extra_written = stores[0].append(Batch.of_samples(pv, dst, samples)).one().written
    return rep
