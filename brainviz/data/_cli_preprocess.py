"""Command-line options generated from :class:`brainviz.data.preprocess.PreprocessConfig`.

One helper registers the preprocessing options of ``train``, ``evaluate`` and ``encode``, so
they are identical everywhere and follow the dataclass (no hand-copied argparse lists): an
``int``/``float``/``str`` field ``trim_start`` becomes ``--trim-start N``, a ``bool`` field
``detrend`` becomes ``--detrend/--no-detrend``. Help texts come from the class docstring.
Options left unset keep the config's default (or the model card's value where a command reads
one), so :func:`preprocess_overrides` returns only what the user typed.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
from typing import Any

DEST_PREFIX = "pre_"
_HELP_RE = re.compile(r"^\s{4}(\w+(?:, \w+)*) : [^\n]*\n((?:\s{8}[^\n]*\n?)+)", re.M)


def _field_help() -> dict[str, str]:
    from brainviz.data.preprocess import PreprocessConfig

    out: dict[str, str] = {}
    for m in _HELP_RE.finditer(PreprocessConfig.__doc__ or ""):
        text = " ".join(line.strip() for line in m.group(2).splitlines()).replace("``", "")
        text = re.sub(r":\w+:`([^`]*)`", r"\1", text)
        for name in m.group(1).split(", "):
            out[name] = text
    return out


def add_preprocess_arguments(parser: argparse.ArgumentParser, *, title: str = "preprocessing") -> None:
    """Add one option per :class:`PreprocessConfig` field to ``parser`` (defaults: unset).

    The values land in ``args.pre_<field>`` (``None`` when not given); read them with
    :func:`preprocess_overrides` or :func:`preprocess_config_from_args`.
    """
    from brainviz.data.preprocess import PreprocessConfig

    helps = _field_help()
    group = parser.add_argument_group(title, "defaults: the 2019 paper's preprocessing (shown in brackets)")
    for f in dataclasses.fields(PreprocessConfig):
        flag = "--" + f.name.replace("_", "-")
        dest = DEST_PREFIX + f.name
        default = f.default
        help_text = f"{helps.get(f.name, f.name)} [{default}]"
        if f.type in (bool, "bool"):
            group.add_argument(flag, dest=dest, action=argparse.BooleanOptionalAction, default=None, help=help_text)
        else:
            kind = {"int": int, "float": float, "str": str}.get(f.type if isinstance(f.type, str) else f.type.__name__, str)
            group.add_argument(flag, dest=dest, type=kind, default=None, metavar=f.name.split("_")[-1].upper(),
                               help=help_text)


def preprocess_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The preprocessing fields given on the command line (for ``TrainConfig.preprocess`` etc.)."""
    from brainviz.data.preprocess import PreprocessConfig

    out = {}
    for f in dataclasses.fields(PreprocessConfig):
        v = getattr(args, DEST_PREFIX + f.name, None)
        if v is not None:
            out[f.name] = v
    return out


def preprocess_config_from_args(args: argparse.Namespace, base: dict[str, Any] | None = None):
    """A :class:`PreprocessConfig` from ``base`` (e.g. a model card's ``preprocess``) updated with
    the options given on the command line."""
    from brainviz.data.preprocess import PreprocessConfig

    return PreprocessConfig.from_dict({**dict(base or {}), **preprocess_overrides(args)})
