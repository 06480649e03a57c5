"""Shared pytest fixtures.

Every test runs with ``BRAINVIZ_CACHE`` and ``BRAINVIZ_MODELS`` pointing at its own temporary
folders, so nothing is written into the repository's ``data_cache/`` or ``models/``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("store")
    monkeypatch.setenv("BRAINVIZ_CACHE", str(root / "data_cache"))
    monkeypatch.setenv("BRAINVIZ_MODELS", str(root / "models"))


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    """``../shared`` beside the repository; tests that need it skip when it is absent."""
    if not (SHARED / "data").is_dir():
        pytest.skip("../shared/data is absent (real atlas/metadata files are only beside the repo in CI and dev)")
    return SHARED


@pytest.fixture(scope="session")
def small_sim(tmp_path_factory) -> dict[str, Path]:
    """The ``small`` simulated preset (seed 0): {"reading": Path, "listening": Path}."""
    from brainviz.data.simulate import SimulationConfig, simulate

    out = tmp_path_factory.mktemp("small-sim")
    return simulate(out / "sim", SimulationConfig(preset="small", seed=0))
