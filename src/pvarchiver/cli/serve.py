"""``pvarchiver serve``: the archiver process (CA engine, management, retrieval, ETL, HTTP).

The command line, the environment and ``archappl.properties`` become one
:class:`~pvarchiver.settings.Settings` here (:func:`~pvarchiver.settings.load_settings`);
:func:`~pvarchiver.appliance.build_appliance` builds the process from it.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from ..settings import Settings

if TYPE_CHECKING:
    from ..storage.store import PlainPBStore


def _fail(message: object, what: str = "pvarchiver serve") -> int:
    print(f"{what}: {message}", file=sys.stderr)
    return 2


def _describe(settings: Settings) -> str:
    from ..mgmt.registry_backend import redact

    http = settings.http
    archive = settings.archive
    return (
        f"Serving the AA retrieval API on http://{http.host}:{http.port}/retrieval and the "
        f"management API on http://{http.host}:{http.port}/mgmt/bpl "
        "(ETL runs on the AA's schedule); PVs registered in "
        f"{redact(settings.mgmt.registry)} are archived again; new requests: "
        + (", ".join(archive) if archive else "none (use archivePV or --archive NAME)")
    )


@contextmanager
def _demo(settings: Settings) -> Iterator[Settings]:
    """With ``--demo``: the demo IOC running, and settings that find and archive its PVs.
    Raises :class:`~pvarchiver.demo.DemoUnavailable`."""
    from ..demo import demo_count, start_demo, with_demo_address

    demo = start_demo(settings.http.port, demo_count(os.environ))
    try:
        ca = with_demo_address(settings.ca.env, demo.port)
        yield settings.with_ca_env(ca).with_archive(demo.pv_names)
    finally:
        demo.stop()


def _run(settings: Settings, stores: Sequence[PlainPBStore]) -> int:
    from ..appliance import build_appliance
    from ..mgmt.registry import RegistryError
    from ..storage.probe import StoreFolderError
    from ..web.server import run

    try:
        appliance = build_appliance(settings, stores)
    except (RegistryError, StoreFolderError, ValueError) as e:
        # the user decides (restore a backup, move it, fix the setting, start PostgreSQL);
        # one line: a database driver's message may span several
        return _fail(" ".join(str(e).split()))
    run(appliance.app, settings.http)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from ..appliance import describe_store, open_stores
    from ..properties import PropertiesError
    from ..settings import load_settings
    from ..storage.probe import StoreFolderError
    from ..storage.url import StoreURLError

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = load_settings(
            os.environ,
            storage=args.storage,
            host=args.host,
            port=args.port,
            initial_sampling=args.initial_sampling,
            archive=args.archive,
            journal=args.journal,
            journal_fsync=args.journal_fsync,
            registry=args.registry,
        )
        print(f"pvarchiver storage root: {settings.storage.root}")
        # every store is probed before anything starts: one that cannot hold its files
        # stops the archiver here, with the reason, instead of losing every sample later
        stores = open_stores(settings.storage)
        for st in stores:
            print(f"  {st.name}: {st.config.to_url()} ({describe_store(st)})")
    except (PropertiesError, StoreFolderError, StoreURLError, ValueError) as e:
        return _fail(e)
    print(_describe(settings))
    if args.check:
        return 0
    if not args.demo:
        return _run(settings, stores)
    from ..demo import DemoUnavailable

    try:
        with _demo(settings) as with_demo:
            return _run(with_demo, stores)
    except DemoUnavailable as e:
        return _fail(e, "pvarchiver serve --demo")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("serve", help="run the archiver")
    p.add_argument("--host", default="0.0.0.0")
    p.add_argument("--port", type=int, default=17665)
    p.add_argument(
        "--storage",
        default=None,
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
        "--journal",
        default=None,
        metavar="DIR|off",
        help="the write-ahead journal's folder: every sample is on disk within 0.1 s, and a "
        "killed archiver replays it at start (default <storage>/journal or "
        "$PVARCHIVER_JOURNAL; 'off' switches it off)",
    )
    p.add_argument(
        "--journal-fsync",
        type=float,
        default=None,
        metavar="SECONDS",
        help="seconds between fsyncs of the journal, what a power cut can lose (0: every "
        "0.1 s write; default $PVARCHIVER_JOURNAL_FSYNC_SECONDS or 1)",
    )
    p.add_argument(
        "--registry",
        default=None,
        metavar="URL",
        help="the PV registry: sqlite:///path/registry.sqlite (default: registry.sqlite in "
        "the storage root, or $PVARCHIVER_REGISTRY) or postgresql://user@host:port/db, "
        "shared by several appliances (needs pvarchiver[postgres])",
    )
    p.add_argument(
        "--check",
        action="store_true",
        help="create the storage folders, print the configuration and exit",
    )
    p.set_defaults(func=cmd_serve)
