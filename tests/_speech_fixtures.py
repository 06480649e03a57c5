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


def speech_page_app(dataset: Path, participants: list[str], monkeypatch):
    """AppTest of pages/speech.py on ``dataset`` as the router would run it (shared context set)."""
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("BV_TEST_DATASET", str(dataset))
    monkeypatch.setenv("BV_TEST_PAGE", str(Path(__file__).resolve().parents[1] / "pages" / "speech.py"))
    monkeypatch.setenv("BV_TEST_PARTICIPANTS", ",".join(participants))

    def script():
        import os
        import runpy

        import streamlit as st

        from brainviz.app_support import resources

        path = os.environ["BV_TEST_DATASET"]
        st.session_state["_in_router"] = True  # run the page as the router would
        st.session_state["_ctx"] = {"summary": resources.summary(path), "dataset_path": path,
                                    "participants": os.environ["BV_TEST_PARTICIPANTS"].split(",")}
        runpy.run_path(os.environ["BV_TEST_PAGE"])

    return AppTest.from_function(script, default_timeout=300)


def replay_predictions(ckpt, encoder, heads, dataset: Path, units, n_chunks: int, participant: str = "sub-01"):
    """Predictions of a reloaded speech encoder + heads for the held-out rows stored in ``ckpt``:
    ``(predicted, stored)`` arrays (n_rows, n_units)."""
    import numpy as np
    import torch

    from brainviz.data import load_dataset
    from brainviz.tuning.config import TrainConfig
    from brainviz.tuning.speech import build_audio_corpus

    ds = load_dataset(dataset)
    corpus = build_audio_corpus(ds, [participant], TrainConfig(dataset="x", out="y").preprocess_config(), n_chunks,
                                units=units)
    stored = ckpt.predictions(participant)
    t = corpus.fmri[participant]
    rows = np.searchsorted(t.tr_index, stored["tr_index"])
    with torch.no_grad():
        feats = encoder(**corpus.tokens.batch(t.seq[rows])).last_hidden_state[:, 0]
        pred = heads.fmri.block(heads.fmri(feats), participant).numpy()
    return pred, stored["predictions"].astype(np.float32)
