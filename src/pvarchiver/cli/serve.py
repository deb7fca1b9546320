"""``pvarchiver serve``: the archiver process (HTTP retrieval and ETL; the engine comes later)."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path


def cmd_serve(args: argparse.Namespace) -> int:
    from ..properties import PropertiesError, archappl_properties
    from ..storage.naming import NamingSettings
    from ..storage.probe import StoreFolderError
    from ..storage.store import open_store
    from ..storage.url import StoreURLError, default_store_urls, parse_store_url
    from ..web.server import run

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    root = Path(args.storage).resolve()
    print(f"pvarchiver storage root: {root}")
    try:
        props, props_file = archappl_properties()
        naming = NamingSettings.from_properties(props, props_file or "archappl.properties")
        # every store is probed before anything starts: one that cannot hold its files
        # stops the archiver here, with the reason, instead of losing every sample later
        for url in default_store_urls(root):
            st = open_store(parse_store_url(url), naming)
            print(f"  {st.name}: {st.config.to_url()} ({st.naming.describe()})")
    except (PropertiesError, StoreFolderError, StoreURLError, ValueError) as e:
        print(f"pvarchiver serve: {e}", file=sys.stderr)
        return 2
    print(
        f"Serving the AA retrieval API on http://{args.host}:{args.port}/retrieval and the "
        f"management API on http://{args.host}:{args.port}/mgmt/bpl "
        "(ETL runs on the AA's schedule); PVs registered in "
        f"{root / 'registry.sqlite'} are archived again; new requests: "
        + (", ".join(args.archive) if args.archive else "none (use archivePV or --archive NAME)")
    )
    if args.check:
        return 0
    demo = None
    if args.demo:  # a demo IOC beside the archiver, its PVs archived like --archive ones
        from ..demo import DemoUnavailable, start_demo

        try:
            demo = start_demo(args.port)
        except DemoUnavailable as e:
            print(f"pvarchiver serve --demo: {e}", file=sys.stderr)
            return 2
        args.archive = [*args.archive, *demo.pv_names]
    from ..mgmt.registry import RegistryError

    try:
        run(root, args.host, args.port, args.archive, args.initial_sampling, naming)
    except (RegistryError, StoreFolderError) as e:  # the user decides (restore a backup, move it)
        print(f"pvarchiver serve: {e}", file=sys.stderr)
        return 2
    finally:
        if demo is not None:
            demo.stop()
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
    p.add_argument(
        "--demo",
        action="store_true",
        help="also start a small demo IOC (needs pvarchiver[demo]) and archive its PVs",
    )
    p.add_argument(
        "--archive",
        action="append",
        default=[],
        metavar="PV",
        help="archive this PV over Channel Access (an archivePV request: measured, then "
        "the policy decides); repeat for more PVs",
    )
    p.add_argument(
        "--initial-sampling",
        type=float,
        default=None,
        metavar="SECONDS",
        help="how long a newly requested PV is measured before the policy runs (the AA's "
        "60 s 'Initial sampling'; default $PVARCHIVER_INITIAL_SAMPLING_SECONDS or 3)",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="create the storage folders, print the configuration and exit",
    )
    p.set_defaults(func=cmd_serve)
