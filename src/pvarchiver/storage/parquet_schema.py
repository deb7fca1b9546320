"""The AA's Parquet layout: schema, footer keys and writer settings, and the conversions
between Arrow tables and the columns (:class:`SampleBlock`) the rest of pvarchiver uses.

The Java AA derives its schema with parquet-protobuf from ``EPICSEvent.proto``: one column
per proto field, the proto field numbers as Parquet field ids, every integer kind as plain
INT32, ``severity``/``status`` optional (null means 0). This module writes that with
pyarrow. Two things pyarrow cannot spell (see docs/parquet.md): the root is named
``schema`` instead of ``EPICS.<Message>``, and repeated columns (a waveform's ``val``,
``fieldvalues``) are written as required 3-level LIST groups instead of parquet-protobuf's
legacy bare ``repeated`` fields; their definition and repetition levels are the same, and
both Java and pyarrow read either form.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
from google.protobuf import text_format

from ..pb import PayloadType, Sample, year_start
from ..pb.schema import MESSAGE_CLASS
from .columns import NUMPY_DTYPE, SampleBlock

#: footer key-value metadata written by the AA's EpicsWriteSupport / ProtoWriteSupport
KEY_PV = "pvName"
KEY_YEAR = "year"
KEY_TYPE = "ArchDBRType"
KEY_PROTO_CLASS = "parquet.proto.class"
KEY_PROTO_DESCRIPTOR = "parquet.proto.descriptor"
KEY_SPECS = "parquet.proto.writeSpecsCompliant"
KEY_UNWRAP = "parquet.proto.unwrapProtoWrappers"
REQUIRED_KEYS = (KEY_PV, KEY_YEAR, KEY_TYPE, KEY_PROTO_CLASS)

#: the Java class name of each message (java_package + outer class of EPICSEvent.proto)
JAVA_PACKAGE = "edu.stanford.slac.archiverappliance.PB.EPICSEvent$"

#: ``compress=`` values (parquet-java's CompressionCodecName, case-sensitive as there) and
#: the pyarrow codec each one is
CODECS = {
    "UNCOMPRESSED": "NONE",
    "SNAPPY": "SNAPPY",
    "GZIP": "GZIP",
    "ZSTD": "ZSTD",
    "LZ4_RAW": "LZ4",
    "BROTLI": "BROTLI",
}

#: pages as parquet-java's default (1 MiB)
PAGE_BYTES = 1 << 20
#: a row group holds about this many uncompressed bytes (~36,000 rows of a scalar double):
#: small enough that a one-day read of a yearly file decodes little more than its day
#: (row-group statistics skip the rest), large enough that a yearly file of a 1 Hz PV has
#: hundreds of groups, not tens of thousands. Measured (bench_parquet.py, 1 Hz double): 8 MB
#: groups 3.25 bytes/sample and a one-day read 4.4x PlainPB's; 1 MB 3.47 and under 2x
ROW_GROUP_BYTES = 1 << 20

_INT = pa.int32()


def _f(name: str, typ: pa.DataType, fid: int, nullable: bool) -> pa.Field:
    return pa.field(name, typ, nullable=nullable, metadata={b"PARQUET:field_id": str(fid).encode()})


_SCALAR_VAL: dict[PayloadType, pa.DataType] = {
    PayloadType.SCALAR_STRING: pa.string(),
    PayloadType.SCALAR_SHORT: _INT,
    PayloadType.SCALAR_INT: _INT,
    PayloadType.SCALAR_ENUM: _INT,
    PayloadType.SCALAR_FLOAT: pa.float32(),
    PayloadType.SCALAR_DOUBLE: pa.float64(),
    PayloadType.SCALAR_BYTE: pa.binary(),
    PayloadType.WAVEFORM_BYTE: pa.binary(),
    PayloadType.V4_GENERIC_BYTES: pa.binary(),
}
_VECTOR_ITEM: dict[PayloadType, pa.DataType] = {
    PayloadType.WAVEFORM_STRING: pa.string(),
    PayloadType.WAVEFORM_SHORT: _INT,
    PayloadType.WAVEFORM_INT: _INT,
    PayloadType.WAVEFORM_ENUM: _INT,
    PayloadType.WAVEFORM_FLOAT: pa.float32(),
    PayloadType.WAVEFORM_DOUBLE: pa.float64(),
}
_FIELDVALUE = pa.struct([_f("name", pa.string(), 1, False), _f("val", pa.string(), 2, False)])


def is_list_type(ptype: PayloadType) -> bool:
    """Whether ``val`` is a repeated column (one row per waveform, its elements a list)."""
    return ptype in _VECTOR_ITEM


def val_type(ptype: PayloadType) -> pa.DataType:
    """The Arrow type of ``val`` for a PayloadType."""
    item = _VECTOR_ITEM.get(ptype)
    if item is not None:
        return pa.list_(pa.field("element", item, nullable=False))
    return _SCALAR_VAL[ptype]


def arrow_schema(ptype: PayloadType) -> pa.Schema:
    """The schema of a ``ptype`` file: the proto message's fields, in proto order."""
    fields = [
        _f("secondsintoyear", _INT, 1, False),
        _f("nano", _INT, 2, False),
        _f("val", val_type(ptype), 3, False),
        _f("severity", _INT, 4, True),
        _f("status", _INT, 5, True),
        _f("repeatcount", _INT, 6, True),
        _f("fieldvalues", pa.list_(pa.field("element", _FIELDVALUE, nullable=False)), 7, False),
        _f("fieldactualchange", pa.bool_(), 8, True),
    ]
    if ptype == PayloadType.V4_GENERIC_BYTES:
        fields.append(_f("userTag", _INT, 9, True))
    return pa.schema(fields)


def proto_class(ptype: PayloadType) -> str:
    return JAVA_PACKAGE + ptype.message_name


def proto_descriptor(ptype: PayloadType) -> str:
    """The message's DescriptorProto in protobuf text format (what Java's
    ``Descriptor.toProto().toString()`` gives ProtoWriteSupport)."""
    from google.protobuf import descriptor_pb2

    proto = descriptor_pb2.DescriptorProto()
    MESSAGE_CLASS[ptype].DESCRIPTOR.CopyToProto(proto)
    return text_format.MessageToString(proto)


def footer_metadata(pvname: str, year: int, ptype: PayloadType) -> dict[str, str]:
    """Every key-value pair of the AA's footer for one file."""
    return {
        KEY_PV: pvname,
        KEY_YEAR: str(year),
        KEY_TYPE: "DBR_" + ptype.name,
        KEY_PROTO_CLASS: proto_class(ptype),
        KEY_PROTO_DESCRIPTOR: proto_descriptor(ptype),
        KEY_SPECS: "false",
        KEY_UNWRAP: "false",
    }


class ParquetFormatError(ValueError):
    """A ``.parquet`` file that is not one of the AA's (foreign schema, missing footer key)."""


@dataclass(frozen=True, slots=True)
class FileInfo:
    """What the footer of one of our files says."""

    pvname: str
    year: int
    type: PayloadType


def parse_footer(meta: dict[bytes, bytes] | None, schema: pa.Schema, where: object) -> FileInfo:
    """The PV, year and type of a file, checked against its schema; ParquetFormatError
    (naming ``where``) for a file that is not an AA Parquet file."""
    meta = meta or {}
    got = {k.decode("utf-8", "replace"): v.decode("utf-8", "replace") for k, v in meta.items()}
    missing = [k for k in REQUIRED_KEYS if k not in got]
    if missing:
        raise ParquetFormatError(f"{where}: not an archiver Parquet file: no {', '.join(missing)}")
    tname = got[KEY_TYPE].removeprefix("DBR_")
    try:
        ptype = PayloadType[tname]
        year = int(got[KEY_YEAR])
    except (KeyError, ValueError):
        raise ParquetFormatError(
            f"{where}: footer has ArchDBRType={got[KEY_TYPE]!r}, year={got[KEY_YEAR]!r}"
        ) from None
    want = arrow_schema(ptype)
    for name in ("secondsintoyear", "nano", "val"):
        idx = schema.get_field_index(name)
        if idx < 0:
            raise ParquetFormatError(f"{where}: foreign schema: no column {name!r}")
        got_t = schema.field(idx).type
        want_t = want.field(name).type
        if not _compatible(got_t, want_t):
            raise ParquetFormatError(
                f"{where}: foreign schema: column {name!r} is {got_t}, {ptype.name} needs {want_t}"
            )
    return FileInfo(got[KEY_PV], year, ptype)


def _compatible(got: pa.DataType, want: pa.DataType) -> bool:
    if pa.types.is_list(want):
        return (pa.types.is_list(got) or pa.types.is_large_list(got)) and _compatible(
            got.value_type, want.value_type
        )
    if pa.types.is_string(want):
        return pa.types.is_string(got) or pa.types.is_large_string(got)
    if pa.types.is_binary(want):
        return pa.types.is_binary(got) or pa.types.is_large_binary(got)
    return got == want


# ---------------------------------------------------------------------------- conversions
def _val_array(ptype: PayloadType, vals: np.ndarray) -> pa.Array:
    typ = val_type(ptype)
    if ptype in NUMPY_DTYPE:
        return pa.array(np.asarray(vals).astype(typ.to_pandas_dtype(), copy=False), type=typ)
    if ptype.is_vector and ptype != PayloadType.WAVEFORM_BYTE:
        return pa.array([list(v) for v in vals], type=typ)
    return pa.array(list(vals), type=typ)


def block_to_table(ptype: PayloadType, year: int, block: SampleBlock) -> pa.Table:
    """A block of samples, all in ``year``, as rows of the AA's schema."""
    n = len(block)
    soy = (np.asarray(block.secs, dtype=np.int64) - year_start(year)).astype(np.int32)
    sev = np.asarray(block.severity, dtype=np.int32)
    stat = np.asarray(block.status, dtype=np.int32)
    repeat: list[int | None] = [None] * n
    fields: list[list[dict[str, str]]] = [[] for _ in range(n)]
    change: list[bool | None] = [None] * n
    tag: list[int | None] = [None] * n
    for i, s in block.extras.items():
        repeat[i] = s.repeatcount
        if s.fields:
            fields[i] = [{"name": k, "val": v} for k, v in s.fields.items()]
        change[i] = s.fieldactualchange
        tag[i] = s.user_tag
    cols: list[pa.Array] = [
        pa.array(soy, type=_INT),
        pa.array(np.asarray(block.nanos).astype(np.int32), type=_INT),
        _val_array(ptype, block.vals),
        pa.array(sev, type=_INT, mask=sev == 0),  # written only when not 0, as proto does
        pa.array(stat, type=_INT, mask=stat == 0),
        pa.array(repeat, type=_INT),
        pa.array(fields, type=arrow_schema(ptype).field("fieldvalues").type),
        pa.array(change, type=pa.bool_()),
    ]
    if ptype == PayloadType.V4_GENERIC_BYTES:
        cols.append(pa.array(tag, type=_INT))
    return pa.Table.from_arrays(cols, schema=arrow_schema(ptype))


def table_to_block(ptype: PayloadType, year: int, table: pa.Table) -> SampleBlock:
    """Rows of one file (year ``year``) as a SampleBlock; rows with metadata, a repeat
    count or a user tag become ``extras`` so that nothing is lost on the way to PlainPB."""
    n = table.num_rows
    secs = table.column("secondsintoyear").to_numpy().astype(np.int64) + year_start(year)
    nanos = table.column("nano").to_numpy().astype(np.int64)
    sev = table.column("severity").fill_null(0).to_numpy().astype(np.int32)
    stat = table.column("status").fill_null(0).to_numpy().astype(np.int32)
    valcol = table.column("val")
    dtype = NUMPY_DTYPE.get(ptype)
    if dtype is not None:
        vals = valcol.to_numpy().astype(dtype, copy=False)
    else:
        vals = np.empty(n, dtype=object)
        vals[:] = valcol.to_pylist() if n else []
    block = SampleBlock(secs, nanos, vals, sev, stat)
    names = table.column_names
    special = np.zeros(n, dtype=bool)
    for col in ("repeatcount", "fieldactualchange", "userTag"):
        if col in names:
            special |= table.column(col).is_valid().to_numpy(zero_copy_only=False)
    if "fieldvalues" in names:
        lens = table.column("fieldvalues").combine_chunks().value_lengths()
        special |= lens.fill_null(0).to_numpy(zero_copy_only=False) > 0
    for i in np.flatnonzero(special).tolist():
        row = table.slice(i, 1).to_pylist()[0]
        fv = row.get("fieldvalues") or []
        block.extras[i] = Sample(
            int(secs[i]),
            int(nanos[i]),
            block.sample(i).val,
            int(sev[i]),
            int(stat[i]),
            fields={d["name"]: d["val"] for d in fv} if fv else None,
            fieldactualchange=row.get("fieldactualchange"),
            repeatcount=row.get("repeatcount"),
            user_tag=row.get("userTag"),
        )
    return block
