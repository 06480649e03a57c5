"""Where brainviz keeps derived data and checkpoints.

Both default to folders in the current working directory (the project root when the app is
started as documented) and can be moved with environment variables, which the tests use.
"""

from __future__ import annotations

import os
from pathlib import Path

CACHE_ENV = "BRAINVIZ_CACHE"
MODELS_ENV = "BRAINVIZ_MODELS"


def cache_dir() -> Path:
    """Folder for derived data and results (``$BRAINVIZ_CACHE`` or ``./data_cache``)."""
    return Path(os.environ.get(CACHE_ENV) or Path.cwd() / "data_cache")


def models_dir() -> Path:
    """Checkpoint store (``$BRAINVIZ_MODELS`` or ``./models``)."""
    return Path(os.environ.get(MODELS_ENV) or Path.cwd() / "models")


def default_dataset_dir() -> Path:
    """Folder holding the simulated default experiment (``reading/`` and ``listening/``)."""
    return cache_dir() / "datasets" / "simulated-default"
