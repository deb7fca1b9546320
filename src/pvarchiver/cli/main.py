"""``pvarchiver`` entry point: argument parsing only; work happens in the subpackages."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="pvarchiver", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    from . import gateway, pbtool, registry, serve

    serve.add_parser(sub)
    pbtool.add_parser(sub)
    gateway.add_parser(sub)
    registry.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    # Windows consoles and redirected output may use a code page without the private-use
    # characters of portable file names: print them escaped rather than fail half-way
    for stream in (sys.stdout, sys.stderr):
        reconfigure = getattr(stream, "reconfigure", None)
        if reconfigure is not None:
            reconfigure(errors="backslashreplace")
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:
        # `pvarchiver pb dump FILE | head` closes the pipe early; that is not an error
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
