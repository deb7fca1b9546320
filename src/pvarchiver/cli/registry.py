"""``pvarchiver registry migrate``: copy a PV registry (an appliance's ``registry.sqlite``)
into another, typically the PostgreSQL registry several appliances share.

Exit codes: 0 copied and verified; 1 conflicts kept or a row that does not read back the
same; 2 a bad URL or a registry that cannot be opened (one line on stderr, nothing copied).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _url(text: str) -> str:
    """A registry URL; a plain file path is taken as a SQLite registry."""
    from ..mgmt.registry_backend import sqlite_url

    if "://" not in text:
        path = Path(text)
        if not path.is_file():
            raise ValueError(f"{text}: no such registry file")
        return sqlite_url(path)
    return text


def cmd_migrate(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from ..mgmt.registry_backend import (
        RegistryError,
        check_url,
        one_line,
        open_backend,
        redact,
        sqlite_path,
    )
    from ..mgmt.registry_migrate import migrate

    try:
        src_url, dest_url = check_url(_url(args.src)), check_url(_url(args.dest))
        if src_url == dest_url:
            raise ValueError("--from and --to are the same registry")
        if src_url.startswith("sqlite:") and not sqlite_path(src_url).is_file():
            raise ValueError(f"{sqlite_path(src_url)}: no such registry file")
        src = open_backend(src_url)
    except (ValueError, RegistryError) as e:
        print(f"pvarchiver registry migrate: {one_line(e)}", file=sys.stderr)
        return 2
    try:
        dest = open_backend(dest_url)
    except (ValueError, RegistryError) as e:
        src.close()
        print(f"pvarchiver registry migrate: {one_line(e)}", file=sys.stderr)
        return 2
    out = Console()
    try:
        with Progress(
            TextColumn("{task.description:<20}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=Console(stderr=True),
            transient=not sys.stderr.isatty(),
        ) as bar:
            tasks: dict[str, object] = {}

            def on_progress(table: str, done: int, total: int) -> None:
                if table not in tasks:
                    tasks[table] = bar.add_task(table, total=total or 1)
                bar.update(tasks[table], completed=done if total else 1)  # type: ignore[arg-type]

            res = migrate(src, dest, overwrite=args.overwrite, on_progress=on_progress)
    except RegistryError as e:
        print(f"pvarchiver registry migrate: {one_line(e)}", file=sys.stderr)
        return 2
    finally:
        src.close()
        dest.close()
    table = Table(title=f"{redact(src_url)} -> {redact(dest_url)}")
    for col in ("table", "source", "copied", "already there", "conflicts", "destination", "check"):
        table.add_column(col, justify="left" if col == "table" else "right")
    for t in res.tables:
        check = "same" if not t.mismatched else f"{len(t.mismatched)} differ"
        table.add_row(
            t.table,
            str(t.source_rows),
            str(t.copied) + (f" ({t.overwritten} overwritten)" if t.overwritten else ""),
            str(t.already),
            str(len(t.conflicts)),
            str(t.dest_rows),
            check,
        )
    out.print(table)
    for t in res.tables:
        for key in t.conflicts[:20]:
            print(f"conflict kept: {t.table} {key}: the destination's value differs")
        for key in t.mismatched[:20]:
            print(f"NOT VERIFIED: {t.table} {key}: missing or different after copying")
    if res.ok:
        print("verified: every row of the source is in the destination with the same value")
        return 0
    if res.verified:
        print(
            "conflicts kept: those rows differ in the destination and were not overwritten "
            "(--overwrite replaces them with the source's)"
        )
    return 1


def add_parser(sub: argparse._SubParsersAction) -> None:
    reg = sub.add_parser("registry", help="manage the PV registry (SQLite or PostgreSQL)")
    regsub = reg.add_subparsers(dest="registry_command", required=True)
    m = regsub.add_parser(
        "migrate",
        help="copy a registry into another (e.g. registry.sqlite into PostgreSQL), verified",
    )
    m.add_argument(
        "--from",
        dest="src",
        required=True,
        metavar="URL",
        help="the registry to copy: sqlite:///path/registry.sqlite (or a file path)",
    )
    m.add_argument(
        "--to",
        dest="dest",
        required=True,
        metavar="URL",
        help="where to: postgresql://user@host:port/database (or another sqlite:/// file)",
    )
    m.add_argument(
        "--overwrite",
        action="store_true",
        help="replace rows whose value differs in the destination (default: keep them)",
    )
    m.set_defaults(func=cmd_migrate)
