"""The error types of brainviz: one base, :class:`BrainvizError`, for every user-facing error.

Anything a user can cause (a bad file, a bad field, a bad option, a full disk, a folder that
another job is writing) raises a subclass of :class:`BrainvizError` whose message names the
file and the field at fault. The CLI prints those as one ``error: ...`` line with exit code 2
and the app shows them as a message; any other exception is a bug and keeps its traceback.

Each subclass also derives from the built-in exception it refines (``ValueError``,
``FileExistsError``, ...), so code that catches the built-in keeps working.

Examples
--------
>>> from brainviz.errors import BrainvizError, DatasetError
>>> try:
...     raise DatasetError("must be a number", file="d/dataset.json", field="tr")
... except BrainvizError as exc:
...     print(exc)
d/dataset.json: field 'tr': must be a number
"""

from __future__ import annotations

import errno
import os
from typing import Any

__all__ = [
    "BrainvizError", "DatasetError", "CheckpointError", "ConfigError", "HeldOutError", "ModelNotFoundError",
    "UsageError", "OutputExistsError", "InputNotFoundError", "ResourceLimitError", "BusyError", "DiskFullError",
    "disk_full_error", "is_disk_full",
]


class BrainvizError(Exception):
    """Base of every user-facing brainviz error.

    Parameters
    ----------
    message : str
        What is wrong and, where possible, how to fix it.
    file : path, optional
        The file (or folder) at fault; prefixed to the message.
    field : str, optional
        The field, column, option or array at fault; prefixed to the message.
    """

    def __init__(self, message: Any = "", *, file: str | os.PathLike | None = None, field: str | None = None):
        self.file = str(file) if file is not None else None
        self.field = field
        self.message = str(message)
        where = ": ".join(p for p in (self.file, f"field '{field}'" if field else None) if p)
        super().__init__(f"{where}: {message}" if where else str(message))


class DatasetError(BrainvizError, ValueError):
    """Invalid dataset content; the message names the file and field at fault."""


class CheckpointError(BrainvizError, ValueError):
    """A checkpoint is corrupt, incomplete or unsafe; the message names the file and field."""


class ConfigError(BrainvizError, ValueError):
    """A config field (or the command-line option that sets it) has an invalid value."""


class HeldOutError(BrainvizError, ValueError):
    """Unreadable or inconsistent held-out predictions or targets; the message names the file."""


class ModelNotFoundError(BrainvizError, ValueError):
    """A model name resolves to nothing usable (or to weights brainviz refuses to load)."""


class UsageError(BrainvizError, ValueError):
    """A command-line option has an invalid value."""


class OutputExistsError(BrainvizError, FileExistsError):
    """The output already exists and overwriting was not asked for."""


class InputNotFoundError(BrainvizError, FileNotFoundError):
    """An input file or folder does not exist."""


class ResourceLimitError(BrainvizError, ValueError):
    """A request would need more memory or time than brainviz allows (sizes checked before allocating)."""


class BusyError(BrainvizError, RuntimeError):
    """Another process is writing the same output (a file lock is held)."""


class DiskFullError(BrainvizError, OSError):
    """No space left on the device while writing."""


_DISK_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is an :class:`OSError` saying the disk (or quota) is full."""
    return isinstance(exc, OSError) and getattr(exc, "errno", None) in _DISK_FULL


def disk_full_error(exc: OSError, where: str | os.PathLike | None = None) -> DiskFullError:
    """One clear :class:`DiskFullError` for an ``ENOSPC``/``EDQUOT`` :class:`OSError`."""
    target = where if where is not None else (exc.filename or None)
    err = DiskFullError(
        f"no space left on the device ({exc.strerror or exc}); nothing was half-written: free some space "
        "(or choose an output folder on another disk) and run the command again",
        file=target,
    )
    err.errno = exc.errno
    return err
