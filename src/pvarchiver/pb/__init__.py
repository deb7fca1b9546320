"""Pure codec for the AA's PlainPB format: no file or socket I/O in here."""

from .escape import EscapeError, escape, unescape
from .sample import (
    PayloadInfo,
    PBDecodeError,
    Sample,
    decode_header,
    decode_line,
    decode_sample,
    encode_header,
    encode_sample,
    header_line,
    sample_line,
)
from .schema import PayloadType
from .timestamps import (
    EPICS_EPOCH_OFFSET,
    epics_to_epoch,
    epoch_to_epics,
    from_year_seconds,
    to_year_seconds,
    year_of,
    year_start,
)

__all__ = [
    "EPICS_EPOCH_OFFSET",
    "EscapeError",
    "PBDecodeError",
    "PayloadInfo",
    "PayloadType",
    "Sample",
    "decode_header",
    "decode_line",
    "decode_sample",
    "encode_header",
    "encode_sample",
    "epics_to_epoch",
    "epoch_to_epics",
    "escape",
    "from_year_seconds",
    "header_line",
    "sample_line",
    "to_year_seconds",
    "unescape",
    "year_of",
    "year_start",
]
