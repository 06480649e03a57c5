"""Command-line interface: ``python -m brainviz <command> ...``.

Each command lives in the module of the subpackage it belongs to; this file only maps
command names to modules so that ``--help`` stays fast (heavy imports happen inside each
command's ``run``). A command module exposes ``add_parser(subparsers)`` which registers its
parser and sets ``func`` to a callable ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import sys
from typing import Sequence

from brainviz.errors import BrainvizError, is_disk_full

# command name -> module providing add_parser(subparsers)
COMMANDS: dict[str, str] = {
    "simulate": "brainviz.data._cli_simulate",
    "info": "brainviz.data._cli_info",
    "import": "brainviz.data.importers._cli",
    "fetch": "brainviz.data.fetch",
    "models": "brainviz.models._cli",
    "train": "brainviz.tuning._cli",
    "evaluate": "brainviz.evaluation._cli_evaluate",
    "compare": "brainviz.evaluation._cli_compare",
    "encode": "brainviz.evaluation._cli_encode",
    "couple": "brainviz.coupling._cli",
    "sweep": "brainviz.sweep._cli",
}


class CLIError(BrainvizError):
    """A user-facing error of a command's options: printed without a traceback, exit code 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m brainviz",
        description="Brain-tuning and brain alignment of language models.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name, module_name in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                continue  # command not built yet
            raise
        module.add_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; return its exit code.

    User errors (:class:`~brainviz.errors.BrainvizError`: bad input, bad option, existing
    output, busy lock, full disk) print one ``error: ...`` line and return 2, as argparse does
    for bad arguments; so do a full disk and a permission-denied path. Any other exception is a
    bug and propagates with its traceback.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrainvizError as exc:
        # messages name the file and field at fault
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        # the environment, not a bug: a full disk, a folder the user may not write to
        where = f"{exc.filename}: " if getattr(exc, "filename", None) else ""
        if is_disk_full(exc):
            print(f"error: {where}no space left on the device ({exc.strerror or exc}); free some space or choose "
                  "another output folder, then run the command again", file=sys.stderr)
            return 2
        if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS) and exc.filename:
            print(f"error: {where}{exc.strerror} (choose a folder you can write to)", file=sys.stderr)
            return 2
        raise
