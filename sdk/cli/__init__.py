"""The ``synthmed`` command line: a thin layer over the library.

Each concern registers its sub-commands from its own module; handlers parse flags,
call library functions and print. Only the CLI (and the daemon) configure logging.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Sequence

from synthmed.registry.errors import SynthmedError

from . import (audit_cmds, cache_cmds, contribute_cmds, dataset_cmds, eval_cmds, index_cmds, package_cmds, run_cmds, serve_cmds,
               site_cmds, store_cmds, test_cmds)

MODULES = (site_cmds, index_cmds, store_cmds, run_cmds, test_cmds, eval_cmds, audit_cmds, package_cmds, contribute_cmds,
           serve_cmds, cache_cmds, dataset_cmds)


def setup_logging(level: str) -> None:
    logging.basicConfig(
        level=getattr(logging, level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="synthmed",
        description="synthmed: find, mirror, test and generate from medical generative models.",
    )
    parser.add_argument("--site", metavar="DIR", help="site folder (default: $SYNTHMED_HOME or the user data dir)")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors")
    parser.add_argument("--version", action=_VersionAction)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for mod in MODULES:
        mod.register(sub)
    _global_flags_after(sub)
    return parser


class _VersionAction(argparse.Action):
    """``--version``: the installed version, read only when asked (importlib.metadata is slow
    to import, and every other command would pay for it)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS, help: str = "show program's version number and exit") -> None:
        super().__init__(option_strings=option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: object,
                 option_string: str | None = None) -> None:
        print(f"synthmed {_version()}")  # on stdout, as argparse's own version action
        parser.exit()


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("synthmed")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree that is not installed
        return "unknown (not installed)"


def _global_flags_after(sub: "argparse._SubParsersAction[argparse.ArgumentParser]") -> None:
    """``--site``, ``-v`` and ``-q`` after the sub-command too (``synthmed status --site S -q``).
    Their defaults are SUPPRESS, so a flag given after the sub-command wins and one given
    only before it is kept."""
    for p in set(sub.choices.values()):
        p.add_argument("--site", metavar="DIR", default=argparse.SUPPRESS, help="site folder (as before the command)")
        p.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS, help="more log output")
        p.add_argument("-q", "--quiet", action="store_true", default=argparse.SUPPRESS, help="only warnings and errors")
        for action in p._actions:  # nested sub-commands: `daemon run`, `catalog rebuild`, `index check`, ...
            if isinstance(action, argparse._SubParsersAction):
                _global_flags_after(action)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    level = "WARNING" if args.quiet else ("DEBUG" if args.verbose > 1 else ("INFO" if args.verbose else "WARNING"))
    setup_logging(level)
    try:
        rc: int = args.func(args)
        return rc
    except SynthmedError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except BrokenPipeError:
        # the reader went away (`synthmed search --json | head`): stop quietly, as Unix tools do
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        except (OSError, ValueError):  # pragma: no cover - stdout is not a real file
            pass
        return 141
    except KeyboardInterrupt:
        if args.command == "generate":
            print("interrupted: the samples written so far are kept; run the same command again to resume",
                  file=sys.stderr)
        else:
            print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
