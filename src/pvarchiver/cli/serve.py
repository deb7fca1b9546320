"""``pvarchiver serve``: for now prepares the storage root and reports what is not built yet."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from ..storage.url import default_store_urls, parse_store_url


def cmd_serve(args: argparse.Namespace) -> int:
    root = Path(args.storage).resolve()
    stores = [parse_store_url(u) for u in default_store_urls(root)]
    for st in stores:
        st.root_folder.mkdir(parents=True, exist_ok=True)
    print(f"pvarchiver storage root: {root}")
    for st in stores:
        print(f"  {st.name}: {st.to_url()}")
    print(
        "Not available yet in this build: the CA engine, the HTTP server "
        f"(would listen on {args.host}:{args.port}), retrieval, management and the web UI.\n"
        "What works today: the PlainPB codec and stores (`pvarchiver pb dump|validate|repair`)."
    )
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
    p.set_defaults(func=cmd_serve)
