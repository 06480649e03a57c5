"""Command-line interface: ``python -m brainviz <command> ...``.

Each command lives in the module of the subpackage it belongs to; this file only maps
command names to modules so that ``--help`` stays fast (heavy imports happen inside each
command's ``run``). A command module exposes ``add_parser(subparsers)`` which registers its
parser and sets ``func`` to a callable ``run(args) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

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
    "couple": "brainviz.coupling._cli",
}


class CLIError(Exception):
    """A user-facing error: printed without a traceback, exit code 2."""


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
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (CLIError, ValueError, FileNotFoundError, FileExistsError, RuntimeError) as exc:
        # ValueError covers DatasetError/ConfigError/CheckpointError: messages name file + field.
        print(f"error: {exc}", file=sys.stderr)
        return 2
