"""Fixtures of the speech tests (issue 15): imported by tests/test_audio.py and tests/test_speech.py.

Not a conftest: pytest collects these fixtures only in the test modules that import them.
"""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def listening_small(tmp_path_factory) -> Path:
    """The ``small`` preset's listening dataset alone (seed 0), with simulated audio."""
    from brainviz.data.simulate.build import _run
    from brainviz.data.simulate.config import SimulationConfig

    out = tmp_path_factory.mktemp("speech-sim")
    return _run(out / "sim", SimulationConfig(preset="small", seed=0), ("listening",), None, False)["listening"]


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Tiny random wav2vec2 / HuBERT / Whisper folders (safetensors)."""
    from brainviz.models.speech import tiny_speech_model

    root = tmp_path_factory.mktemp("tiny-speech")
    return {fam: tiny_speech_model(root / fam, fam) for fam in ("wav2vec2", "hubert", "whisper")}
