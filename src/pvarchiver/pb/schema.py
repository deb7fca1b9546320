"""The AA's ``EPICSEvent.proto`` (proto2, package ``EPICS``), built at import time.

The descriptor is assembled with ``descriptor_pb2`` instead of shipping protoc output, because
generated ``_pb2`` modules are tied to the protobuf runtime version that generated them; this
works on every protobuf >= 5 and needs no build step.
"""

from __future__ import annotations

from enum import IntEnum
from typing import Any

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

_F = descriptor_pb2.FieldDescriptorProto


class PayloadType(IntEnum):
    """PayloadType of the header; the number equals the AA's ArchDBRTypes integer."""

    SCALAR_STRING = 0
    SCALAR_SHORT = 1
    SCALAR_FLOAT = 2
    SCALAR_ENUM = 3
    SCALAR_BYTE = 4
    SCALAR_INT = 5
    SCALAR_DOUBLE = 6
    WAVEFORM_STRING = 7
    WAVEFORM_SHORT = 8
    WAVEFORM_FLOAT = 9
    WAVEFORM_ENUM = 10
    WAVEFORM_BYTE = 11
    WAVEFORM_INT = 12
    WAVEFORM_DOUBLE = 13
    V4_GENERIC_BYTES = 14

    @property
    def message_name(self) -> str:
        return _MESSAGE_FOR_TYPE[self][0]

    @property
    def is_vector(self) -> bool:
        return 7 <= self.value <= 13

    @property
    def arch_dbr_name(self) -> str:
        """The AA's ArchDBRTypes constant name, e.g. ``DBR_SCALAR_DOUBLE``."""
        return "DBR_" + self.name


# PayloadType -> (message name, val field type, val label, packed)
_MESSAGE_FOR_TYPE: dict[PayloadType, tuple[str, int, int, bool]] = {
    PayloadType.SCALAR_STRING: ("ScalarString", _F.TYPE_STRING, _F.LABEL_REQUIRED, False),
    PayloadType.SCALAR_SHORT: ("ScalarShort", _F.TYPE_SINT32, _F.LABEL_REQUIRED, False),
    PayloadType.SCALAR_FLOAT: ("ScalarFloat", _F.TYPE_FLOAT, _F.LABEL_REQUIRED, False),
    PayloadType.SCALAR_ENUM: ("ScalarEnum", _F.TYPE_SINT32, _F.LABEL_REQUIRED, False),
    PayloadType.SCALAR_BYTE: ("ScalarByte", _F.TYPE_BYTES, _F.LABEL_REQUIRED, False),
    PayloadType.SCALAR_INT: ("ScalarInt", _F.TYPE_SFIXED32, _F.LABEL_REQUIRED, False),
    PayloadType.SCALAR_DOUBLE: ("ScalarDouble", _F.TYPE_DOUBLE, _F.LABEL_REQUIRED, False),
    PayloadType.WAVEFORM_STRING: ("VectorString", _F.TYPE_STRING, _F.LABEL_REPEATED, False),
    PayloadType.WAVEFORM_SHORT: ("VectorShort", _F.TYPE_SINT32, _F.LABEL_REPEATED, True),
    PayloadType.WAVEFORM_FLOAT: ("VectorFloat", _F.TYPE_FLOAT, _F.LABEL_REPEATED, True),
    PayloadType.WAVEFORM_ENUM: ("VectorEnum", _F.TYPE_SINT32, _F.LABEL_REPEATED, True),
    PayloadType.WAVEFORM_BYTE: ("VectorChar", _F.TYPE_BYTES, _F.LABEL_REQUIRED, False),
    PayloadType.WAVEFORM_INT: ("VectorInt", _F.TYPE_SFIXED32, _F.LABEL_REPEATED, True),
    PayloadType.WAVEFORM_DOUBLE: ("VectorDouble", _F.TYPE_DOUBLE, _F.LABEL_REPEATED, True),
    PayloadType.V4_GENERIC_BYTES: ("V4GenericBytes", _F.TYPE_BYTES, _F.LABEL_REQUIRED, False),
}


def _field(
    msg: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    ftype: int,
    label: int,
    type_name: str | None = None,
    packed: bool = False,
    default: str | None = None,
) -> None:
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name:
        f.type_name = type_name
    if packed:
        f.options.packed = True
    if default is not None:
        f.default_value = default


def _build_file() -> descriptor_pb2.FileDescriptorProto:
    fdp = descriptor_pb2.FileDescriptorProto(
        name="pvarchiver/EPICSEvent.proto", package="EPICS", syntax="proto2"
    )
    enum = fdp.enum_type.add(name="PayloadType")
    for pt in PayloadType:
        enum.value.add(name=pt.name, number=pt.value)

    fv = fdp.message_type.add(name="FieldValue")
    _field(fv, "name", 1, _F.TYPE_STRING, _F.LABEL_REQUIRED)
    _field(fv, "val", 2, _F.TYPE_STRING, _F.LABEL_REQUIRED)

    for name, vtype, vlabel, packed in _MESSAGE_FOR_TYPE.values():
        m = fdp.message_type.add(name=name)
        _field(m, "secondsintoyear", 1, _F.TYPE_UINT32, _F.LABEL_REQUIRED)
        _field(m, "nano", 2, _F.TYPE_UINT32, _F.LABEL_REQUIRED)
        _field(m, "val", 3, vtype, vlabel, packed=packed)
        _field(m, "severity", 4, _F.TYPE_INT32, _F.LABEL_OPTIONAL, default="0")
        _field(m, "status", 5, _F.TYPE_INT32, _F.LABEL_OPTIONAL, default="0")
        _field(m, "repeatcount", 6, _F.TYPE_UINT32, _F.LABEL_OPTIONAL)
        _field(m, "fieldvalues", 7, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".EPICS.FieldValue")
        _field(m, "fieldactualchange", 8, _F.TYPE_BOOL, _F.LABEL_OPTIONAL)
        if name == "V4GenericBytes":
            _field(m, "userTag", 9, _F.TYPE_UINT32, _F.LABEL_OPTIONAL)

    pi = fdp.message_type.add(name="PayloadInfo")
    _field(pi, "type", 1, _F.TYPE_ENUM, _F.LABEL_REQUIRED, ".EPICS.PayloadType")
    _field(pi, "pvname", 2, _F.TYPE_STRING, _F.LABEL_REQUIRED)
    _field(pi, "year", 3, _F.TYPE_INT32, _F.LABEL_REQUIRED)
    _field(pi, "elementCount", 4, _F.TYPE_INT32, _F.LABEL_OPTIONAL)
    for i in range(9):  # legacy fields, kept only so that old files round-trip
        _field(pi, f"unused0{i}", 5 + i, _F.TYPE_DOUBLE, _F.LABEL_OPTIONAL)
    _field(pi, "unused09", 14, _F.TYPE_STRING, _F.LABEL_OPTIONAL)
    _field(pi, "headers", 15, _F.TYPE_MESSAGE, _F.LABEL_REPEATED, ".EPICS.FieldValue")
    return fdp


_pool = descriptor_pool.DescriptorPool()
_file = _pool.Add(_build_file())


def _cls(name: str) -> Any:
    return message_factory.GetMessageClass(_pool.FindMessageTypeByName("EPICS." + name))


FieldValueMsg = _cls("FieldValue")
PayloadInfoMsg = _cls("PayloadInfo")
MESSAGE_CLASS: dict[PayloadType, Any] = {
    pt: _cls(spec[0]) for pt, spec in _MESSAGE_FOR_TYPE.items()
}
