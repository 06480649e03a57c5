"""keyword_probe (issue 15): a speech model on a labelled audio task, here an in-memory stand-in
for Speech Commands (simulated 1-s clips of two tones), scored with a tiny random wav2vec2.

``datasets`` is optional and not installed in CI: the download path is checked only for its
error message."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from brainviz.data.dataset import DatasetError

SR = 16000


@pytest.fixture(scope="module")
def tiny_w2v(tmp_path_factory):
    from brainviz.models.speech import tiny_speech_model

    return str(tiny_speech_model(tmp_path_factory.mktemp("tiny") / "w2v", "wav2vec2"))


def tone_split(n_per_class: int, rng: np.random.Generator, rate: int = SR) -> dict:
    """Simulated 1-s clips: class 0 a 300 Hz tone, class 1 a 1,500 Hz tone (random amplitude,
    phase, onset and a noise floor), as ``datasets`` decodes its Audio column."""
    audio, label = [], []
    t = np.arange(rate) / rate
    for i in range(2 * n_per_class):
        c = i % 2
        x = 0.01 * rng.standard_normal(rate)
        start = rng.integers(0, rate // 4)
        env = (t >= start / rate) & (t < start / rate + 0.5)
        x += rng.uniform(0.2, 0.6) * env * np.sin(2 * np.pi * (300.0 if c == 0 else 1500.0) * t + rng.uniform(0, 2 * np.pi))
        audio.append({"array": x.astype(np.float32), "sampling_rate": rate, "path": None})
        label.append(c)
    return {"audio": audio, "label": label}


@pytest.fixture(scope="module")
def tones() -> dict:
    rng = np.random.default_rng(0)
    # validation stored at 22.05 kHz: resampled to 16 kHz like any other rate (a rate below 16 kHz
    # would leave the top band empty in one split only: a shift the bands baseline does not survive)
    return {"train": tone_split(12, rng), "validation": tone_split(8, rng, rate=22050)}


def test_keyword_probe_separates_tones(tiny_w2v, tones):
    from brainviz.evaluation.probe import keyword_probe

    res = keyword_probe(tiny_w2v, tones, max_per_class=10, n_permutations=99, source="simulated: two tones, 16 kHz")
    t = res.table
    assert set(t["layer"]) == {0, 1, 2, "bands"} and set(t["test_split"]) == {"validation"}
    assert (t["chance"] == 0.5).all() and (t["n_test"] == 16).all()
    assert t["accuracy"].between(0, 1).all() and t["p"].between(1 / 100, 1).all()
    assert res.meta["n_train"] == 20 and res.meta["n_test"] == 16 and res.meta["classes"] == [0, 1]
    assert res.meta["simulated"] is True
    # the task is trivially separable: the low-level bands baseline gets it, and so does at least
    # one layer of the random encoder (its conv stem keeps the pitch)
    bands = t[t["layer"] == "bands"].iloc[0]
    assert bands["accuracy"] >= 0.9 and bands["p"] <= 0.02
    assert res.by_layer().max() >= 0.8 and len(res.by_layer()) == 3
    # seeded: the same call gives the same table
    again = keyword_probe(tiny_w2v, tones, max_per_class=10, n_permutations=99, source="simulated: two tones, 16 kHz")
    assert again.table.equals(t)


def test_keyword_probe_errors(tiny_w2v, tones, monkeypatch):
    from brainviz.evaluation.probe import keyword_probe

    with pytest.raises(DatasetError, match=r"field 'test'.*no split 'test'"):
        keyword_probe(tiny_w2v, tones, test_split="test", n_permutations=0)
    with pytest.raises(DatasetError, match=r"field 'intent'.*no column 'intent'"):
        keyword_probe(tiny_w2v, tones, label_column="intent", n_permutations=0)
    with pytest.raises(DatasetError, match=r"field 'label'.*1 of the probed classes"):
        keyword_probe(tiny_w2v, tones, classes=[1], n_permutations=0)
    bad = {"train": {**tones["train"], "audio": ["not audio"] * 24}, "validation": tones["validation"]}
    with pytest.raises(DatasetError, match=r"field 'train\[0\].audio'.*cannot read audio"):
        keyword_probe(tiny_w2v, bad, n_permutations=0)
    with pytest.raises(ValueError, match="max_per_class"):
        keyword_probe(tiny_w2v, tones, max_per_class=0)
    # no `datasets` library: a clear message for the download path and for a saved folder
    monkeypatch.setitem(sys.modules, "datasets", None)
    for data in (None, "/nonexistent/speech_commands"):
        with pytest.raises(ImportError, match=r"pip install datasets.*internet"):
            keyword_probe(tiny_w2v, data)
