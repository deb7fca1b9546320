"""``pvarchiver serve``: the archiver process (HTTP retrieval and ETL; the engine comes later)."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    from ..storage.url import default_store_urls, parse_store_url
    from ..web.server import run

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    root = Path(args.storage).resolve()
    print(f"pvarchiver storage root: {root}")
    for url in default_store_urls(root):
        st = parse_store_url(url)
        print(f"  {st.name}: {st.to_url()}")
    print(
        f"Serving the AA retrieval API on http://{args.host}:{args.port}/retrieval "
        "(ETL runs on the AA's schedule); archiving over CA: "
        + (", ".join(args.archive) if args.archive else "no PVs (use --archive NAME)")
        + ". Not built yet: the management API and web UI."
    )
    if args.check:
        for url in default_store_urls(root):
            parse_store_url(url).root_folder.mkdir(parents=True, exist_ok=True)
        return 0
    run(root, args.host, args.port, args.archive)
    return 0


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the archiver")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=17665)
    p.add_argument(
        "--storage",
        default=os.environ.get("PVARCHIVER_STORAGE", "storage"),
        help="storage root holding sts/ mts/ lts/ (default ./storage or $PVARCHIVER_STORAGE)",
    )
    p.add_argument("--demo", action="store_true", help="also start a demo IOC (not yet)")
    p.add_argument(
        "--archive",
        action="append",
        default=[],
        metavar="PV",
        help="archive this PV over Channel Access (MONITOR); repeat for more PVs. "
        "The management API (archivePV) will replace this.",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="create the storage folders, print the configuration and exit",
    )
    p.set_defaults(func=cmd_serve)
