"""Tiny models and datasets for tests and benchmarks (built locally, no download).

``make_tiny_bert(folder)`` writes a 2-layer random BERT (hidden 32, 4 heads) with a small
WordPiece vocabulary and a ``BertTokenizerFast`` in Hugging Face format.
``make_tiny_dataset(folder)`` writes a dataset with 3 runs, fMRI participants in an
``rois`` space and (optionally) MEG participants; the stimulus is pre-annotated so that no
spaCy model is needed. Its fMRI carries a planted signal: a fixed random projection of a
per-word embedding, convolved over the preceding seconds, plus noise.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

WORDS = (
    "the a boy girl dog cat ran saw house tree big small red blue quickly slowly he she it they "
    "walked jumped over under and but then happy sad green old young window door table chair "
    "read wrote book letter night day sun moon water fire"
).split()
CONTENT = set("boy girl dog cat ran saw house tree big small red blue quickly slowly he she it they walked "
              "jumped happy sad green old young window door table chair read wrote book letter night day sun "
              "moon water fire".split())
TINY_PREPROCESS = {"trim_start": 2, "trim_end": 1, "window": 4.0}


def make_tiny_bert(folder: str | Path, seed: int = 0, hidden: int = 32, layers: int = 2, heads: int = 4) -> Path:
    """Write a tiny random BERT + fast tokenizer to ``folder``; return it."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    pieces = ["##s", "##ed", "##ing", "##ly", "##er"]
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS + pieces
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = BertTokenizerFast(vocab_file=str(folder / "vocab.txt"), do_lower_case=True)
    tok.save_pretrained(str(folder))
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                     intermediate_size=2 * hidden, max_position_embeddings=128, type_vocab_size=2)
    torch.manual_seed(seed)
    BertModel(cfg).save_pretrained(str(folder), safe_serialization=True)
    return folder


def make_tiny_dataset(
    folder: str | Path,
    n_fmri: int = 2,
    n_meg: int = 2,
    n_runs: int = 3,
    trs_per_run: int = 24,
    n_units: int = 12,
    tr: float = 2.0,
    seed: int = 0,
    signal: float = 1.0,
) -> Path:
    """Write a small random dataset folder (see module docstring); return it."""
    from brainviz.data.dataset import Dataset, DatasetMeta, FMRIRecording, MEGRecording, Run, Space

    rng = np.random.default_rng(seed)
    rows = []
    for r in range(n_runs):
        t = 0.5
        while t < trs_per_run * tr - 0.5:
            w = str(rng.choice(WORDS))
            rows.append({"onset": round(t, 3), "duration": 0.4, "word": w, "run": f"run-{r + 1}", "story": "tiny",
                         "pos": "NOUN" if w in CONTENT else "DET", "is_content": w in CONTENT,
                         "length": float(len(w)), "log_freq": -5.0 - len(w) / 2})
            t += 0.5
    stim = pd.DataFrame(rows)
    emb = {w: rng.standard_normal(6) for w in WORDS}
    proj = rng.standard_normal((6, n_units))
    runs = [Run(f"run-{r + 1}", trs_per_run) for r in range(n_runs)]
    space = Space("rois", roi_names=[f"roi{i}" for i in range(n_units)])
    fmri = {}
    for p in range(n_fmri):
        blocks = []
        for r in range(n_runs):
            sub = stim[stim["run"] == f"run-{r + 1}"]
            drive = np.zeros((trs_per_run, 6))
            for i in range(trs_per_run):
                t = i * tr
                win = sub[(sub["onset"] >= t - 6) & (sub["onset"] < t)]
                if len(win):
                    drive[i] = np.mean([emb[w] for w in win["word"]], axis=0)
            blocks.append(signal * drive @ proj + rng.standard_normal((trs_per_run, n_units)))
        data = np.concatenate(blocks).astype(np.float32)
        fmri[f"P{p + 1}"] = FMRIRecording(f"P{p + 1}", data, tr, runs, space)
    meg = {}
    for m in range(n_meg):
        data = rng.standard_normal((len(stim), 3, 4)).astype(np.float32)
        meg[f"M{m + 1}"] = MEGRecording(f"M{m + 1}", data, 0.025, ["s1", "s2", "s3"], np.arange(len(stim)))
    ds = Dataset(DatasetMeta("tiny", simulated=True), stim, fmri, meg)
    return ds.save(folder)
