"""``pvarchiver pb convert SRC DST --to parquet|pb``: a store tree in the other format.

Each data file becomes the file of the same key and partition in the other format (the
AA's ``ConvertFile``, for a whole tree). A copy is written to a temporary name, read back
and compared with its source (sample count and a SHA-256 over every timestamp, value,
severity, status and metadata field), and only then renamed into place. SRC is only read.
An existing file in DST is never overwritten: one that compares equal counts as already
converted, which is what makes an interrupted run safe to start again; one that differs
is a conflict.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..pb import fast, header_line, sample_line, year_start
from ..pb.sample import PayloadInfo
from .columns import SampleBlock, decode_block
from .parquet_schema import CODECS, block_to_table
from .parquet_store import PARQUET_EXTENSION, TEMP_PREFIX, GroupWriter, ParquetReadError
from .parquet_store import file_blocks as parquet_blocks
from .paths import PB_EXTENSION
from .pbfile import PBFile, PBFileError
from .store import fsync_dir


class ConvertError(RuntimeError):
    """A file that cannot be converted (unreadable, corrupt, or its copy differs)."""


@dataclass
class ConvertReport:
    converted: int = 0
    already: int = 0
    samples: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    conflicts: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.conflicts or self.errors)


def read_blocks(path: Path) -> tuple[PayloadInfo, Iterator[SampleBlock]]:
    """The header and blocks of a ``.pb`` or ``.parquet`` file; ConvertError if unreadable
    (a ``.pb`` line that does not decode is an error here: a conversion must be whole)."""
    if path.name.endswith(PARQUET_EXTENSION):
        try:
            gen = parquet_blocks(path)
            info, first = next(gen, (None, None))  # type: ignore[call-overload]
        except ParquetReadError as e:
            raise ConvertError(str(e)) from None
        if info is None:
            from .parquet_store import open_file

            f, info = open_file(path)
            f.close()
            return PayloadInfo(info.type, info.pvname, info.year), iter(())

        def rest() -> Iterator[SampleBlock]:
            yield first
            try:
                for _i, b in gen:
                    yield b
            except ParquetReadError as e:
                raise ConvertError(str(e)) from None

        return PayloadInfo(info.type, info.pvname, info.year), rest()
    try:
        f = PBFile.open(path)
    except (PBFileError, OSError) as e:
        raise ConvertError(f"{path}: {e}") from None

    def pb() -> Iterator[SampleBlock]:
        with f:
            for off, data in f.iter_blocks(f.header_end):
                block, clean = decode_block(f.header, data, path)
                if not clean:
                    raise ConvertError(f"{path}: corrupt line in the block at offset {off}")
                yield block
            if f.data_end != f.size:
                raise ConvertError(f"{path}: partial last line; run 'pvarchiver pb repair'")

    h = f.header
    return PayloadInfo(h.type, h.pvname, h.year), pb()


def digest(blocks: Iterator[SampleBlock]) -> tuple[int, str]:
    """(samples, SHA-256) of everything a sample holds, the same for either format."""
    h = hashlib.sha256()
    n = 0
    for b in blocks:
        n += len(b)
        for a in (b.secs, b.nanos, b.severity, b.status):
            h.update(np.ascontiguousarray(a, dtype=np.int64).tobytes())
        if b.vals.dtype != object:
            h.update(np.ascontiguousarray(b.vals).tobytes())
        else:
            h.update(repr(b.vals.tolist()).encode())
        for i in sorted(b.extras):
            s = b.extras[i]
            h.update(repr((i, s.fields, s.fieldactualchange, s.repeatcount, s.user_tag)).encode())
    return n, h.hexdigest()


def _write_pb(path: Path, info: PayloadInfo, blocks: Iterator[SampleBlock]) -> None:
    with open(path, "wb") as out:
        out.write(header_line(info))
        for b in blocks:
            if info.type in fast.SUPPORTED and not b.extras:
                soy = b.secs - year_start(info.year)
                out.write(
                    fast.encode_scalar_lines(info.type, soy, b.nanos, b.vals, b.severity, b.status)
                )
            else:
                out.write(
                    b"".join(sample_line(info.type, info.year, b.sample(i)) for i in range(len(b)))
                )
        out.flush()
        os.fsync(out.fileno())


def convert_file(src: Path, dst: Path, compress: str = "ZSTD", level: int | None = None) -> str:
    """Convert one file; returns "converted" or "already" (ConvertError otherwise)."""
    info, blocks = read_blocks(src)
    if dst.exists():
        if digest(read_blocks(dst)[1]) == digest(read_blocks(src)[1]):
            return "already"
        raise ConvertError(f"{dst} exists and differs from {src}; not overwritten")
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(TEMP_PREFIX + dst.name)
    try:
        if dst.name.endswith(PARQUET_EXTENSION):
            with GroupWriter(tmp, info.pvname, info.year, info.type, CODECS[compress], level) as w:
                for b in blocks:
                    w.write(block_to_table(info.type, info.year, b))
        else:
            _write_pb(tmp, info, blocks)
        got = digest(read_blocks(tmp)[1])
        want = digest(read_blocks(src)[1])
        if got != want:
            raise ConvertError(f"{tmp}: read back {got[0]} samples that differ from {src}")
        os.replace(tmp, dst)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(dst.parent)
    return "converted"


def data_files(root: Path, ext: str) -> list[Path]:
    out = []
    for dirpath, _dirs, files in os.walk(root):
        out += [
            Path(dirpath) / n for n in files if n.endswith(ext) and not n.startswith(TEMP_PREFIX)
        ]
    return sorted(out)


def convert_tree(
    src: Path,
    dst: Path,
    to: str,
    compress: str = "ZSTD",
    level: int | None = None,
    progress: Callable[[int, int, int], None] | None = None,
) -> ConvertReport:
    """Convert every data file of the other format under ``src`` into ``dst`` (see the
    module docstring); ``progress(done, total, bytes)`` after each file."""
    src_ext, dst_ext = (
        (PB_EXTENSION, PARQUET_EXTENSION) if to == "parquet" else (PARQUET_EXTENSION, PB_EXTENSION)
    )
    files = data_files(src, src_ext)
    rep = ConvertReport()
    for k, path in enumerate(files, start=1):
        rel = path.relative_to(src)
        target = dst / rel.with_name(rel.name[: -len(src_ext)] + dst_ext)
        try:
            what = convert_file(path, target, compress, level)
        except ConvertError as e:
            (rep.conflicts if "not overwritten" in str(e) else rep.errors).append(str(e))
        except OSError as e:
            rep.errors.append(f"{path}: {e}")
        else:
            if what == "already":
                rep.already += 1
            else:
                rep.converted += 1
                rep.bytes_in += path.stat().st_size
                rep.bytes_out += target.stat().st_size
        if progress is not None:
            progress(k, len(files), rep.bytes_in)
    return rep
