"""``pvarchiver gateway``: a Channel Access gateway with ca-gateway's command line.

Options are ca-gateway's single-dash words (``-pvlist FILE -access FILE -cip
ADDRS -sport PORT -ro ...``, parsed by ``gateway.options``), so existing start
scripts work unchanged.  argparse only hands the words through (its
prefix character is set to ``+`` for this sub-command so ``-pvlist`` is not
taken for an argparse option).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

log = logging.getLogger("pvarchiver.gateway")


def add_parser(sub: Any) -> None:
    p = sub.add_parser(
        "gateway",
        prefix_chars="+",
        add_help=False,
        help="CA gateway (ca-gateway options: -pvlist -access -cip -sip -sport -ro ...; -help)",
        description=__doc__,
    )
    p.add_argument("words", nargs="*", help="ca-gateway options")
    p.set_defaults(func=cmd_gateway)


def _settings(opts: Any) -> Any:
    from ..gateway.core import GatewaySettings

    prefix = opts.prefix or socket.gethostname() or "gateway"
    return GatewaySettings(
        connect_timeout=float(opts.connect_timeout),
        inactive_timeout=float(opts.inactive_timeout),
        dead_timeout=float(opts.dead_timeout),
        disconnect_timeout=float(opts.disconnect_timeout),
        reconnect_inhibit=float(opts.reconnect_inhibit),
        read_only=bool(opts.read_only),
        cache=bool(opts.cache),
        archive=bool(opts.archive),
        mask=int(opts.mask),
        prefix=prefix,
        putlog=opts.putlog,
        caputlog=opts.caputlog,
        report=opts.report or "gateway.report",
        command=opts.command,
        pvlist=opts.pvlist,
        access=opts.access,
    )


def cmd_gateway(args: argparse.Namespace) -> int:
    from ..ca.client import CAConfig
    from ..ca.server_config import ServerConfig
    from ..gateway.access import GatewayAccess
    from ..gateway.options import HELP_TEXT, OptionsError, parse_args

    try:
        opts = parse_args(list(args.words))
    except OptionsError as exc:
        print(f"pvarchiver gateway: {exc}", file=sys.stderr)
        return 2
    if opts.help:
        print(HELP_TEXT)
        return 0
    if opts.home:
        os.chdir(opts.home)
    home = Path(opts.home or os.environ.get("GATEWAY_HOME") or ".")
    with contextlib.suppress(AttributeError):
        opts.resolve_files(home)
    if opts.log:
        handle = open(opts.log, "a", buffering=1, encoding="utf-8")  # lives with the process
        sys.stdout = sys.stderr = handle
    level = logging.DEBUG if opts.debug and opts.debug > 1 else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    env = dict(os.environ)
    env.update(opts.environment(os.environ))
    client_cfg = CAConfig.from_env(env)
    server_cfg = ServerConfig.from_env(env)
    access = GatewayAccess.load(
        pvlist_path=opts.pvlist,
        access_path=opts.access,
        flavour=opts.regex_flavour,
        read_only=opts.read_only,
    )
    for warning in access.warnings:
        log.warning("%s", warning)
    settings = _settings(opts)
    try:
        asyncio.run(_run(settings, client_cfg, server_cfg, access))
    except KeyboardInterrupt:
        return 0
    return 0


async def _run(settings: Any, client_cfg: Any, server_cfg: Any, access: Any) -> None:
    from ..gateway.core import Gateway

    gw = Gateway(settings, client_cfg, server_cfg, access)
    await gw.start()
    print(
        f"pvarchiver gateway: serving on port {gw.server.port} "
        f"({', '.join(server_cfg.interfaces)}), prefix {settings.prefix}",
        flush=True,
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        # add_signal_handler does not exist on Windows' proactor loop: Ctrl-C then
        # raises KeyboardInterrupt out of asyncio.run, which the caller handles
        with contextlib.suppress(NotImplementedError, AttributeError, ValueError):
            loop.add_signal_handler(sig, gw.quit)
    try:
        await gw.wait_quit()
    finally:
        await gw.close()
