"""``pvarchiver pb dump|validate|repair FILE``: the AA's pbutils, for one PlainPB (or
``.parquet``) file; ``pvarchiver pb rekey SRC DST``: copy a store tree to the other file
naming (AA <-> Windows); ``pvarchiver pb convert SRC DST --to parquet|pb``: a store tree in
the other format.

``dump`` writes JSON lines: ``{"header": {...}}`` first, then one object per sample. NaN and
infinities are written as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` so that every
standard JSON parser accepts the output and no information is lost.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..pb import PayloadType, PBDecodeError, Sample
from ..pb.escape import EscapeError
from ..storage.pbfile import PBFile, PBFileError
from ..storage.rekey import RekeyError, RekeyReport, rekey
from ..storage.validate import repair_file, validate_file


def json_number(v: float) -> float | str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    return v


def json_value(ptype: PayloadType, val: Any) -> Any:
    if ptype is PayloadType.SCALAR_BYTE:
        return val[0] if isinstance(val, bytes) and len(val) == 1 else list(val)
    if ptype is PayloadType.WAVEFORM_BYTE:
        return list(val)
    if ptype is PayloadType.V4_GENERIC_BYTES:
        return base64.b64encode(val).decode()
    if isinstance(val, float):
        return json_number(val)
    if isinstance(val, list) and val and isinstance(val[0], float):
        return [json_number(x) for x in val]
    return val


def sample_json(ptype: PayloadType, s: Sample) -> dict[str, Any]:
    d: dict[str, Any] = {
        "secs": s.secs,
        "nanos": s.nanos,
        "val": json_value(ptype, s.val),
        "severity": s.severity,
        "status": s.status,
    }
    if s.fields:
        d["fields"] = s.fields
    return d


def _dump_parquet(path: Path) -> int:
    from ..storage.parquet_convert import ConvertError, read_blocks

    try:
        info, blocks = read_blocks(path)
        sys.stdout.write(
            json.dumps(
                {"header": {"type": info.type.name, "pvname": info.pvname, "year": info.year}}
            )
            + "\n"
        )
        for b in blocks:
            for i in range(len(b)):
                line = json.dumps(sample_json(info.type, b.sample(i)), allow_nan=False)
                sys.stdout.write(line + "\n")
    except ConvertError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    return 0


def cmd_dump(args: argparse.Namespace) -> int:
    if args.file.endswith(".parquet"):
        return _dump_parquet(Path(args.file))
    try:
        f = PBFile.open(Path(args.file))
    except (PBFileError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    bad = 0
    out = sys.stdout
    with f:
        h = f.header
        header = {
            "type": h.type.name,
            "pvname": h.pvname,
            "year": h.year,
        }
        if h.element_count is not None:
            header["elementCount"] = h.element_count
        if h.headers:
            header["headers"] = h.headers
        out.write(json.dumps({"header": header}) + "\n")
        for off, line in f.iter_lines(f.header_end):
            try:
                s = f.decode(line)
            except (PBDecodeError, EscapeError) as e:
                bad += 1
                print(f"error: corrupt line at offset {off}: {e}", file=sys.stderr)
                continue
            out.write(json.dumps(sample_json(h.type, s), allow_nan=False) + "\n")
        if f.data_end != f.size:
            print(
                f"warning: {f.size - f.data_end} bytes of a partial last line ignored",
                file=sys.stderr,
            )
    return 1 if bad else 0


def cmd_validate(args: argparse.Namespace) -> int:
    status = 0
    for name in args.files:
        rep = validate_file(Path(name))
        if rep.ok:
            print(
                f"{name}: OK: {rep.pvname} {rep.type_name} year {rep.year}, {rep.samples} samples"
            )
            continue
        status = 1
        print(f"{name}: {len(rep.problems)} problem(s), {rep.samples} readable samples")
        for p in rep.problems[: args.max_problems]:
            print(f"  {p}")
        if len(rep.problems) > args.max_problems:
            print(f"  ... {len(rep.problems) - args.max_problems} more")
    return status


def cmd_repair(args: argparse.Namespace) -> int:
    status = 0
    for name in args.files:
        rep = repair_file(Path(name))
        if rep.unrepairable:
            print(f"{name}: cannot repair: {rep.unrepairable}")
            status = 1
            continue
        if not rep.changed:
            print(f"{name}: nothing to repair")
            continue
        if rep.removed_empty:
            print(f"{name}: removed an empty (zero-byte) file")
            continue
        if rep.truncated_bytes:
            print(f"{name}: cut {rep.truncated_bytes} bytes of a partially written last line")
        for p in rep.dropped:
            print(f"{name}: dropped {p}")
        if rep.backup:
            print(f"{name}: original kept as {rep.backup}")
        after = validate_file(Path(name))
        remaining = [p for p in after.problems if p.kind != "outside-partition"]
        if remaining:
            status = 1
            print(f"{name}: still has problems: {remaining[0]}")
    return status


def _size(n: int) -> str:
    if n < 1000:
        return f"{n} bytes"
    x = float(n)
    for unit in ("kB", "MB", "GB", "TB"):
        x /= 1000
        if x < 1000 or unit == "TB":
            break
    return f"{x:.1f} {unit}"


def _show(rel: str | None) -> str:
    """A store path for the terminal: portable characters (U+F000 block) as ``\\uf03a``, so
    that any console encoding can print them and the user can tell them from ASCII."""
    if rel is None:
        return "-"
    return "".join(f"\\u{ord(c):04x}" if "\uf000" <= c <= "\uf0ff" else c for c in rel)


def _print_rekey(rep: RekeyReport) -> None:
    print(f"{rep.src} -> {rep.dst}: {rep.describe_naming()}")
    if rep.source_terminator is not None:
        print(f"source terminator '{_show(rep.source_terminator)}'")
    for note in rep.notes:
        print(f"note: {_show(note)}")
    if rep.temps_removed:
        verb = "would remove" if rep.dry_run else "removed"
        print(f"{verb} {rep.temps_removed} temporary file(s) left by an interrupted run")
    for it in rep.skipped:
        print(f"skipped: {_show(it.src)}: {it.reason}")
    for it in rep.conflicts:
        print(f"CONFLICT: {_show(it.src)} -> {_show(it.dst)}: {_show(it.reason)}")
    for it in rep.errors:
        print(f"ERROR: {_show(it.src)}: {_show(it.reason)}")
    verb = "would copy" if rep.dry_run else "copied and verified"
    print(
        f"{verb} {len(rep.copied)} file(s) ({_size(rep.bytes_copied)}), "
        f"already there {len(rep.already)}, skipped {len(rep.skipped)}, "
        f"conflicts {len(rep.conflicts)}, errors {len(rep.errors)}"
    )
    if not rep.ok:
        print(
            "not complete: nothing in DST was overwritten; resolve the conflicts and errors "
            "above and run the same command again (files already copied are kept)"
        )


def cmd_rekey(args: argparse.Namespace) -> int:
    names = "portable" if args.portable else "aa" if args.aa_names else "auto"
    progress = None
    if sys.stderr.isatty() and not args.dry_run:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

        progress = Progress(
            TextColumn("rekey"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=True,
        )
    task = None

    def on_progress(done: int, total: int, nbytes: int) -> None:
        nonlocal task
        if progress is None:
            return
        if task is None:
            task = progress.add_task("rekey", total=total)
        progress.update(task, completed=done)

    try:
        with progress if progress is not None else contextlib.nullcontext():
            rep = rekey(
                Path(args.src),
                Path(args.dst),
                terminator=args.terminator,
                from_terminator=args.from_terminator,
                names=names,
                dry_run=args.dry_run,
                on_progress=on_progress,
            )
    except RekeyError as e:
        print(f"error: {_show(str(e))}", file=sys.stderr)
        return 2
    _print_rekey(rep)
    return 0 if rep.ok else 1


def cmd_convert(args: argparse.Namespace) -> int:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn

    from ..storage.parquet_convert import convert_tree

    src, dst = Path(args.src), Path(args.dst)
    if not src.is_dir():
        print(f"error: {src} is not a folder", file=sys.stderr)
        return 2
    with Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        "{task.fields[size]}",
        TimeRemainingColumn(),
        transient=not sys.stderr.isatty(),
        console=None,
    ) as bar:
        task = bar.add_task(f"to {args.to}", total=None, size="")

        def on_progress(done: int, total: int, nbytes: int) -> None:
            bar.update(task, completed=done, total=total, size=_size(nbytes))

        level = args.level
        rep = convert_tree(src, dst, args.to, args.compress, level, on_progress)
    print(
        f"{rep.converted} files converted ({_size(rep.bytes_in)} -> {_size(rep.bytes_out)}), "
        f"{rep.already} already there, {len(rep.conflicts)} conflicts, {len(rep.errors)} errors"
    )
    for e in rep.conflicts + rep.errors:
        print(f"  {e}")
    return 0 if rep.ok else 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    pb = sub.add_parser("pb", help="inspect, check and repair PlainPB (.pb) files")
    pbsub = pb.add_subparsers(dest="pb_command", required=True)
    d = pbsub.add_parser("dump", help="print the header and samples as JSON lines")
    d.add_argument("file")
    d.set_defaults(func=cmd_dump)
    v = pbsub.add_parser("validate", help="check a file; exit status 1 if it has problems")
    v.add_argument("files", nargs="+")
    v.add_argument("--max-problems", type=int, default=20)
    v.set_defaults(func=cmd_validate)
    r = pbsub.add_parser("repair", help="fix what can be fixed and report what was dropped")
    r.add_argument("files", nargs="+")
    r.set_defaults(func=cmd_repair)
    k = pbsub.add_parser(
        "rekey",
        help="copy a store tree to another file naming (Java AA names <-> Windows names)",
        description=(
            "Copy the store tree SRC (e.g. a Java AA's lts/ folder) to DST, renaming every "
            "data file to DST's naming: the terminator before the partition name becomes "
            "--terminator, and where DST needs it (Windows, or a folder that refuses ':') "
            "the characters Windows forbids are written as U+F000+c, as WSL and Cygwin do. "
            "Every copy is read back and compared with the source (size and SHA-256); .pb "
            "copies must have a readable header. SRC is only read. Existing files in DST are "
            "never overwritten: identical ones count as already there, different ones as "
            "conflicts. Safe to interrupt and run again."
        ),
        epilog=(
            "Exit status: 0 when every data file is in DST, 1 on conflicts or errors, "
            "2 when the copy could not start."
        ),
    )
    k.add_argument("src", metavar="SRC", help="the store tree to copy (not modified)")
    k.add_argument("dst", metavar="DST", help="where to copy it (created if missing)")
    k.add_argument(
        "--terminator",
        default=":",
        metavar="C",
        help="key terminator of the copies (default ':', the AA's; written as U+F03A where "
        "names are portable)",
    )
    k.add_argument(
        "--from-terminator",
        metavar="C",
        help="key terminator of SRC's files (default: read from the file names)",
    )
    form = k.add_mutually_exclusive_group()
    form.add_argument(
        "--portable",
        action="store_true",
        help="write portable (Windows) names even if DST accepts AA names",
    )
    form.add_argument(
        "--aa-names",
        action="store_true",
        help="write the AA's names as they are; fail if DST refuses them",
    )
    k.add_argument(
        "--dry-run", action="store_true", help="report what would be done, write nothing"
    )
    k.set_defaults(func=cmd_rekey)
    c = pbsub.add_parser(
        "convert",
        help="copy a store tree into the other format (.pb <-> .parquet)",
        description=(
            "Convert every .pb file under SRC into a .parquet file of the same key and "
            "partition under DST (--to parquet), or every .parquet file into a .pb file "
            "(--to pb). Each copy is read back and compared with its source (samples and a "
            "SHA-256 over all their fields) before it is renamed into place. SRC is only "
            "read; files already in DST are never overwritten (equal ones count as done). "
            "Safe to interrupt and run again."
        ),
        epilog="Exit status: 0 when every file is converted, 1 on conflicts or errors.",
    )
    c.add_argument("src", metavar="SRC")
    c.add_argument("dst", metavar="DST")
    c.add_argument("--to", choices=("parquet", "pb"), required=True)
    c.add_argument(
        "--compress",
        default="ZSTD",
        choices=("UNCOMPRESSED", "SNAPPY", "GZIP", "ZSTD", "LZ4_RAW", "BROTLI"),
        help="codec of the Parquet files written (default ZSTD)",
    )
    c.add_argument("--level", type=int, default=None, help="compression level (ZSTD 1..22)")
    c.set_defaults(func=cmd_convert)
