"""``pvarchiver pb dump|validate|repair FILE``: the AA's pbutils, for one PlainPB file.

``dump`` writes JSON lines: ``{"header": {...}}`` first, then one object per sample. NaN and
infinities are written as the strings ``"NaN"``, ``"Infinity"``, ``"-Infinity"`` so that every
standard JSON parser accepts the output and no information is lost.
"""

from __future__ import annotations

import argparse
import base64
import json
import math
import sys
from pathlib import Path
from typing import Any

from ..pb import PayloadType, PBDecodeError, Sample
from ..pb.escape import EscapeError
from ..storage.pbfile import PBFile, PBFileError
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


def cmd_dump(args: argparse.Namespace) -> int:
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
