"""Our ``.parquet`` files field by field against the AA's layout
(/work/shared/reference/aa-lifecycle-parquet.md §1.3; issue 19).

Each file written by a ``parquet://`` store is opened with pyarrow's low-level reader and its
Parquet schema (names, physical types, repetition, annotations, field ids), footer keys and
writer settings are compared with what parquet-protobuf derives from ``EPICSEvent.proto``.
The two places pyarrow cannot spell the AA's schema (the root's name, and 3-level LIST
groups for repeated fields) are pinned here too, so that a change is noticed; both are
described in docs/parquet.md. No Java AA runs here, so no file of the AA's own is compared.
"""

from __future__ import annotations

import calendar
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from google.protobuf import descriptor_pb2, text_format

from pvarchiver.pb import PayloadType, Sample
from pvarchiver.storage.batch import append_samples
from pvarchiver.storage.parquet_store import ParquetStore
from pvarchiver.storage.url import parse_store_url

T0 = calendar.timegm((2024, 3, 10, 0, 0, 0))
PV = "ArchUnitTest:sine"

#: §1.3: ArchDBRType -> (message, physical type of val, val is repeated, STRING annotation)
REFERENCE = {
    PayloadType.SCALAR_STRING: ("ScalarString", "BYTE_ARRAY", False, True),
    PayloadType.SCALAR_SHORT: ("ScalarShort", "INT32", False, False),
    PayloadType.SCALAR_FLOAT: ("ScalarFloat", "FLOAT", False, False),
    PayloadType.SCALAR_ENUM: ("ScalarEnum", "INT32", False, False),
    PayloadType.SCALAR_BYTE: ("ScalarByte", "BYTE_ARRAY", False, False),
    PayloadType.SCALAR_INT: ("ScalarInt", "INT32", False, False),
    PayloadType.SCALAR_DOUBLE: ("ScalarDouble", "DOUBLE", False, False),
    PayloadType.WAVEFORM_STRING: ("VectorString", "BYTE_ARRAY", True, True),
    PayloadType.WAVEFORM_SHORT: ("VectorShort", "INT32", True, False),
    PayloadType.WAVEFORM_FLOAT: ("VectorFloat", "FLOAT", True, False),
    PayloadType.WAVEFORM_ENUM: ("VectorEnum", "INT32", True, False),
    PayloadType.WAVEFORM_BYTE: ("VectorChar", "BYTE_ARRAY", False, False),
    PayloadType.WAVEFORM_INT: ("VectorInt", "INT32", True, False),
    PayloadType.WAVEFORM_DOUBLE: ("VectorDouble", "DOUBLE", True, False),
    PayloadType.V4_GENERIC_BYTES: ("V4GenericBytes", "BYTE_ARRAY", False, False),
}
VALUES = {
    "ScalarString": "x", "ScalarShort": 1, "ScalarFloat": 1.0, "ScalarEnum": 1,
    "ScalarByte": b"\x01", "ScalarInt": 1, "ScalarDouble": 1.0, "VectorString": ["a"],
    "VectorShort": [1], "VectorFloat": [1.0], "VectorEnum": [1], "VectorChar": b"ab",
    "VectorInt": [1], "VectorDouble": [1.0], "V4GenericBytes": b"g",
}  # fmt: skip


def written(tmp_path: Path, ptype: PayloadType, compress: str = "ZSTD") -> Path:
    url = (
        f"parquet://localhost?name=LTS&rootFolder={tmp_path}"
        f"&partitionGranularity=PARTITION_YEAR&compress={compress}"
    )
    st = ParquetStore(parse_store_url(url))
    val = VALUES[REFERENCE[ptype][0]]
    append_samples(
        st, PV, ptype, [Sample(T0, 5, val, fields={"EGU": "V"}), Sample(T0 + 1, 0, val, 1, 2)]
    )
    path = st.path_for(PV, T0)
    assert path == tmp_path / "ArchUnitTest" / "sine:2024.parquet"  # PVPathTest's layout
    return path


def columns(path: Path) -> dict[str, tuple[str, int, int, str, str]]:
    """path -> (physical type, max definition level, max repetition level, logical type,
    converted type) of every leaf column."""
    schema = pq.ParquetFile(path).schema
    out = {}
    for i in range(len(schema)):
        c = schema.column(i)
        out[c.path] = (
            c.physical_type,
            c.max_definition_level,
            c.max_repetition_level,
            str(c.logical_type),
            c.converted_type,
        )
    return out


@pytest.mark.parametrize("ptype", list(PayloadType), ids=lambda t: t.name)
def test_schema_column_by_column(tmp_path: Path, ptype: PayloadType) -> None:
    _message, phys, repeated, string = REFERENCE[ptype]
    cols = columns(written(tmp_path, ptype))
    # required int32, no logical annotation (every proto int kind is plain INT32)
    assert cols["secondsintoyear"] == ("INT32", 0, 0, "None", "NONE")
    assert cols["nano"] == ("INT32", 0, 0, "None", "NONE")
    for name in ("severity", "status", "repeatcount"):
        assert cols[name] == ("INT32", 1, 0, "None", "NONE")  # optional int32
    assert cols["fieldactualchange"] == ("BOOLEAN", 1, 0, "None", "NONE")
    # repeated group fieldvalues { required binary name (STRING); required binary val
    # (STRING) }: levels (1, 1) as the AA's 2-level form; pyarrow nests it in LIST groups
    for leaf in ("name", "val"):
        got = cols[f"fieldvalues.list.element.{leaf}"]
        assert got == ("BYTE_ARRAY", 1, 1, "String", "UTF8")
    val_path = "val.list.element" if repeated else "val"
    v = cols[val_path]
    assert v[0] == phys
    assert (v[1], v[2]) == ((1, 1) if repeated else (0, 0))  # repeated / required
    assert (v[3] == "String") is string
    assert ("userTag" in cols) is (ptype == PayloadType.V4_GENERIC_BYTES)
    if "userTag" in cols:
        assert cols["userTag"] == ("INT32", 1, 0, "None", "NONE")


def _field_ids(path: Path) -> dict[str, int]:
    """Top-level field ids as written (pyarrow reads them back into field metadata)."""
    schema = pq.ParquetFile(path).schema_arrow
    return {f.name: int(f.metadata[b"PARQUET:field_id"]) for f in schema}


@pytest.mark.parametrize("ptype", [PayloadType.SCALAR_DOUBLE, PayloadType.V4_GENERIC_BYTES])
def test_field_ids_are_the_proto_field_numbers(tmp_path: Path, ptype: PayloadType) -> None:
    ids = _field_ids(written(tmp_path, ptype))
    want = {
        "secondsintoyear": 1, "nano": 2, "val": 3, "severity": 4, "status": 5,
        "repeatcount": 6, "fieldvalues": 7, "fieldactualchange": 8,
    }  # fmt: skip
    if ptype == PayloadType.V4_GENERIC_BYTES:
        want["userTag"] = 9
    assert ids == want
    assert list(ids) == list(want)  # proto order


@pytest.mark.parametrize("ptype", list(PayloadType), ids=lambda t: t.name)
def test_footer_keys(tmp_path: Path, ptype: PayloadType) -> None:
    message = REFERENCE[ptype][0]
    meta = {
        k.decode(): v.decode()
        for k, v in (pq.ParquetFile(written(tmp_path, ptype)).metadata.metadata or {}).items()
    }
    assert meta["pvName"] == PV
    assert meta["year"] == "2024"
    assert meta["ArchDBRType"] == "DBR_" + ptype.name
    assert (
        meta["parquet.proto.class"]
        == f"edu.stanford.slac.archiverappliance.PB.EPICSEvent${message}"
    )
    assert meta["parquet.proto.writeSpecsCompliant"] == "false"
    assert meta["parquet.proto.unwrapProtoWrappers"] == "false"
    assert "ARROW:schema" not in meta  # only the AA's keys
    desc = text_format.Parse(meta["parquet.proto.descriptor"], descriptor_pb2.DescriptorProto())
    assert desc.name == message
    fields = [(f.name, f.number, f.label) for f in desc.field]
    F = descriptor_pb2.FieldDescriptorProto
    assert fields[:2] == [("secondsintoyear", 1, F.LABEL_REQUIRED), ("nano", 2, F.LABEL_REQUIRED)]
    assert [f[0] for f in fields][2:8] == [
        "val", "severity", "status", "repeatcount", "fieldvalues", "fieldactualchange",
    ]  # fmt: skip
    assert desc.field[6].type_name == ".EPICS.FieldValue"


@pytest.mark.parametrize(
    ("compress", "codec"),
    [("UNCOMPRESSED", "UNCOMPRESSED"), ("SNAPPY", "SNAPPY"), ("ZSTD", "ZSTD"), ("GZIP", "GZIP")],
)
def test_writer_settings(tmp_path: Path, compress: str, codec: str) -> None:
    f = pq.ParquetFile(written(tmp_path, PayloadType.SCALAR_DOUBLE, compress))
    md = f.metadata
    assert md.format_version == "2.6"  # PARQUET_2_0 writer
    rg = md.row_group(0)
    for i in range(rg.num_columns):
        assert rg.column(i).compression == codec
    st = rg.column(0).statistics  # secondsintoyear: the AA finds the last event with these
    assert st.has_min_max and (st.min, st.max) == (T0 - 1704067200, T0 - 1704067200 + 1)


def test_known_differences_from_the_aa_are_pinned(tmp_path: Path) -> None:
    """The root is ``schema`` (AA: ``EPICS.VectorDouble``) and a waveform's ``val`` a LIST
    group (AA: ``repeated double val = 3``); see docs/parquet.md."""
    text = str(pq.ParquetFile(written(tmp_path, PayloadType.WAVEFORM_DOUBLE)).schema)
    assert "required group field_id=-1 schema {" in text
    assert "required group field_id=3 val (List)" in text
