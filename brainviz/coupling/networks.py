"""Biological neurons (BNs): functional brain networks from the fMRI of all participants and stories.

Two decompositions with the same outputs (a :class:`BrainNetworks`): spatial maps
``(n_networks, n_units)`` shared by all stories and, per story, time courses
``(n_trs, n_networks)`` averaged over participants.

Data: for every participant and story, the story's TRs with every unit (vertex) z-scored over
them (constant units are 0). Training samples (``group="concat"``, the paper's choice) are the
TRs of all participants and stories. ``group="average"`` trains on the participant-averaged
TRs of each story instead (z-scored again), which keeps the stimulus-locked signal shared by
participants and cancels their idiosyncratic noise; on the simulation it recovers the
planted networks far better (see ``docs/coupling.md``). Either way, a network's time course
in a story is the average over participants of its response to each participant's data.

VS-DBN (Dong et al. 2019, as used by Liu et al. 2023)
    Three stacked RBMs trained layer by layer with CD-1, Gaussian visible units (unit
    variance) and Bernoulli hidden units, an L1 penalty on the weights, Gaussian
    initialisation (sigma 0.01), minibatch SGD. "Batch normalisation": the input of each RBM
    is standardised per unit (layer 1 gets z-scored fMRI; layers 2 and 3 get the previous
    RBM's hidden pre-activations standardised over all training samples), which keeps the
    Gaussian-visible assumption of unit variance valid for every layer. Spatial maps are the
    columns of ``W1 @ W2 @ W3`` (one map per third-layer hidden unit); a BN's temporal
    activation is the third RBM's hidden response (pre-sigmoid input, which is monotone in the
    hidden probability and does not saturate) per TR, computed per participant and story and
    averaged over participants. Preset ``paper``: 512/256/128 hidden, lr 0.001/0.0005/0.0005,
    batch 20, L1 0.001/0.00005/0.00005, 100 epochs. Preset ``quick`` (CPU): smaller layers and
    fewer epochs (see :data:`VSDBN_PRESETS`). Runs on the GPU when torch sees one.

ICA (fast alternative)
    Spatial group ICA on the temporally concatenated data (the standard choice for fMRI
    networks: independent, sparse spatial maps, like VS-DBN's maps): a randomized PCA of the
    (all TRs x units) matrix to ``n_networks`` spatial components, then scikit-learn FastICA
    on the units (samples = units). Maps are the independent components, sign-flipped to
    positive skew; time courses are the least-squares projection of every participant's
    story data onto the maps (dual-regression stage 1), averaged over participants.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from brainviz._io import json_default
from brainviz.coupling.neurons import CouplingError, story_grid
from brainviz.data.dataset import Dataset

METHODS = ("vsdbn", "ica")
PRESETS = ("quick", "paper")
GROUPINGS = ("concat", "average")

VSDBN_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {
        "hidden": (512, 256, 128),
        "lr": (0.001, 0.0005, 0.0005),
        "l1": (0.001, 0.00005, 0.00005),
        "batch_size": 20,
        "epochs": 100,
        "init_std": 0.01,
        "min_updates": 0,
    },
    "quick": {
        "hidden": (64, 32, 32),
        "lr": (0.01, 0.005, 0.005),
        "l1": (0.001, 0.00005, 0.00005),
        "batch_size": 50,
        "epochs": 10,
        "init_std": 0.01,
        "min_updates": 300,
    },
}
ICA_PRESETS: dict[str, dict[str, Any]] = {
    "paper": {"n_networks": 128, "max_iter": 1000, "tol": 1e-4},
    "quick": {"n_networks": 32, "max_iter": 400, "tol": 1e-3},
}


def default_n_networks(method: str, preset: str) -> int:
    """Networks when none is asked for: the preset's third-layer size / ICA components."""
    _check(method, preset)
    return int(VSDBN_PRESETS[preset]["hidden"][-1] if method == "vsdbn" else ICA_PRESETS[preset]["n_networks"])


def _check(method: str, preset: str) -> None:
    if method not in METHODS:
        raise CouplingError(f"unknown BN method {method!r}; expected one of {METHODS}")
    if preset not in PRESETS:
        raise CouplingError(f"unknown preset {preset!r}; expected one of {PRESETS}")


# --------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class GroupData:
    """z-scored fMRI of every (participant, story) block stacked: ``data`` (n_samples x n_units)."""

    data: np.ndarray
    blocks: list[tuple[str, str, int, int]]  # participant, story, start row, stop row
    stories: list[str]
    n_trs: dict[str, int]

    def rows(self, participant: str, story: str) -> slice:
        for p, s, a, b in self.blocks:
            if p == participant and s == story:
                return slice(a, b)
        raise KeyError((participant, story))


def zscore_units(x: np.ndarray) -> np.ndarray:
    """Every column centred and scaled to unit variance over rows; constant columns become 0."""
    x = np.asarray(x, dtype=np.float32)
    mean = x.mean(axis=0, dtype=np.float64).astype(np.float32)
    std = x.std(axis=0, dtype=np.float64).astype(np.float32)
    out = x - mean
    ok = std > 1e-8
    out[:, ok] /= std[ok]
    out[:, ~ok] = 0.0
    return out


def group_data(dataset: Dataset, stories: list[str] | None = None, participants: list[str] | None = None,
               trim: bool = True, progress: Callable[[float, str], None] | None = None) -> GroupData:
    """Stack the z-scored story data of all participants (see module docstring).

    ``trim``: only the TRs from each story's first to its last word (:func:`story_grid`).
    ``progress(fraction, message)`` is called after each participant is loaded.
    """
    stories = list(stories) if stories is not None else [s for s in dataset.stories]
    participants = list(participants) if participants is not None else dataset.participants
    if not participants:
        raise CouplingError(f"dataset {dataset.name!r} has no fMRI participants")
    grids = {s: story_grid(dataset, s, trim) for s in stories}
    n_units = {dataset.fmri[p].n_units for p in participants}
    if len(n_units) != 1:
        raise CouplingError(f"participants have different numbers of units {sorted(n_units)}; networks need one space")
    v = n_units.pop()
    blocks_data, blocks = [], []
    row = 0
    for i_p, p in enumerate(participants):
        if progress:
            progress(i_p / len(participants), f"loading fMRI of {p} ({i_p + 1}/{len(participants)})")
        rec = dataset.fmri_of(p)
        offsets = {}
        start = 0
        for r in rec.runs:
            offsets[r.name] = (start, r.n_trs)
            start += r.n_trs
        for s in stories:
            parts = []
            g = grids[s]
            for run, first, n_keep in zip(g.runs, g.first_trs, g.n_trs_per_run):
                if run not in offsets:
                    break
                a, n = offsets[run]
                parts.append(np.asarray(rec.data[a + first:a + first + n_keep], dtype=np.float32))
            else:
                x = zscore_units(np.concatenate(parts, axis=0))
                blocks_data.append(x)
                blocks.append((p, s, row, row + len(x)))
                row += len(x)
    if not blocks:
        raise CouplingError(f"no participant of dataset {dataset.name!r} has fMRI for stories {stories}")
    data = np.concatenate(blocks_data, axis=0) if len(blocks_data) > 1 else blocks_data[0]
    assert data.shape[1] == v
    return GroupData(data, blocks, stories, {s: grids[s].n_trs for s in stories})


@dataclasses.dataclass
class BrainNetworks:
    """BNs: ``maps`` float32 (n_networks x n_units); ``timecourses[story]`` float32 (n_trs x n_networks).

    ``info`` holds the method, its settings and training curves.
    """

    method: str
    maps: np.ndarray
    timecourses: dict[str, np.ndarray]
    info: dict[str, Any]

    @property
    def n_networks(self) -> int:
        return int(self.maps.shape[0])

    def to_arrays(self) -> dict[str, np.ndarray]:
        import json

        stories = list(self.timecourses)
        out = {"maps": self.maps, "stories": np.array(stories, dtype=str),
               "info": np.array(json.dumps({"method": self.method, **self.info}, default=json_default))}
        for i, s in enumerate(stories):
            out[f"tc_{i}"] = self.timecourses[s]
        return out

    @classmethod
    def from_arrays(cls, arrays: dict[str, np.ndarray]) -> "BrainNetworks":
        import json

        info = json.loads(str(arrays["info"]))
        method = info.pop("method")
        stories = [str(s) for s in arrays["stories"]]
        tcs = {s: arrays[f"tc_{i}"] for i, s in enumerate(stories)}
        return cls(method, arrays["maps"], tcs, info)


def average_participants(gd: GroupData) -> GroupData:
    """One block per story: the participant average of its z-scored data, z-scored again."""
    blocks, parts, row = [], [], 0
    for s in gd.stories:
        members = [gd.data[a:b] for _, st, a, b in gd.blocks if st == s]
        if not members:
            continue
        x = zscore_units(np.mean(members, axis=0, dtype=np.float64).astype(np.float32))
        parts.append(x)
        blocks.append(("average", s, row, row + len(x)))
        row += len(x)
    return GroupData(np.concatenate(parts, axis=0), blocks, gd.stories, gd.n_trs)


def _average_timecourses(gd: GroupData, responses: np.ndarray) -> dict[str, np.ndarray]:
    out = {}
    for s in gd.stories:
        blocks = [responses[a:b] for p, st, a, b in gd.blocks if st == s]
        if blocks:
            out[s] = np.mean(blocks, axis=0).astype(np.float32)
    return out


# --------------------------------------------------------------------------------------
# RBM / VS-DBN
# --------------------------------------------------------------------------------------


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


class GaussianBernoulliRBM:
    """RBM with unit-variance Gaussian visible and Bernoulli hidden units, CD-1 and L1 weight penalty.

    Energy ``E(v, h) = |v - b|^2 / 2 - c.h - v.W h``; ``p(h = 1 | v) = sigmoid(v W + c)``,
    ``E[v | h] = h W^T + b``. One update on a minibatch ``v0``::

        h0 = sigmoid(v0 W + c);  h0s ~ Bernoulli(h0)
        v1 = h0s W^T + b          (mean-field reconstruction)
        h1 = sigmoid(v1 W + c)
        W += lr * ((v0^T h0 - v1^T h1) / B - l1 * sign(W))
        b += lr * mean(v0 - v1);  c += lr * mean(h0 - h1)
    """

    def __init__(self, n_visible: int, n_hidden: int, lr: float = 0.001, l1: float = 0.001,
                 batch_size: int = 20, epochs: int = 10, init_std: float = 0.01, seed: int = 0,
                 device: str | None = None, min_updates: int = 0):
        import torch

        self.n_visible, self.n_hidden = int(n_visible), int(n_hidden)
        self.lr, self.l1 = float(lr), float(l1)
        self.batch_size, self.epochs, self.min_updates = int(batch_size), int(epochs), int(min_updates)
        self.device = device or default_device()
        self.gen = torch.Generator(device=self.device).manual_seed(int(seed))
        self.W = (torch.randn(self.n_visible, self.n_hidden, generator=self.gen, device=self.device) * float(init_std))
        self.b = torch.zeros(self.n_visible, device=self.device)
        self.c = torch.zeros(self.n_hidden, device=self.device)
        self.errors: list[float] = []

    def _step(self, v0):
        import torch

        w, b, c = self.W, self.b, self.c
        h0 = torch.sigmoid(torch.addmm(c, v0, w))
        h0s = torch.bernoulli(h0, generator=self.gen)
        v1 = torch.addmm(b, h0s, w.T)
        h1 = torch.sigmoid(torch.addmm(c, v1, w))
        n = v0.shape[0]
        penalty = torch.sign(w)
        # W += lr * ((v0^T h0 - v1^T h1) / n - l1 * sign(W)), in place
        w.addmm_(v0.T, h0, alpha=self.lr / n).addmm_(v1.T, h1, alpha=-self.lr / n).add_(penalty, alpha=-self.lr * self.l1)
        diff = v0 - v1
        b.add_(diff.mean(0), alpha=self.lr)
        c.add_((h0 - h1).mean(0), alpha=self.lr)
        return float((diff * diff).mean())

    def reconstruction_error(self, data: np.ndarray) -> float:
        """Mean squared error of the mean-field reconstruction ``sigmoid(vW + c) W^T + b``."""
        import torch

        with torch.no_grad():
            v = torch.as_tensor(np.asarray(data, dtype=np.float32), device=self.device)
            rec = torch.sigmoid(v @ self.W + self.c) @ self.W.T + self.b
            return float(((v - rec) ** 2).mean())

    def fit(self, data: np.ndarray, progress: Callable[[float, str], None] | None = None, label: str = "RBM") -> "GaussianBernoulliRBM":
        """Train on rows of ``data`` (shuffled every epoch); ``errors`` gets the mean batch error per epoch.

        Runs ``epochs`` epochs, or more when that is needed to make ``min_updates`` updates.
        """
        import math

        import torch

        x = torch.as_tensor(np.asarray(data, dtype=np.float32), device=self.device)
        n = x.shape[0]
        bs = max(1, min(self.batch_size, n))
        epochs = max(self.epochs, math.ceil(self.min_updates / math.ceil(n / bs)))
        self.epochs_run = epochs
        with torch.no_grad():
            for epoch in range(epochs):
                order = torch.randperm(n, generator=self.gen, device=self.device)
                total, count = 0.0, 0
                for a in range(0, n, bs):
                    total += self._step(x[order[a:a + bs]])
                    count += 1
                self.errors.append(total / max(count, 1))
                if progress:
                    progress((epoch + 1) / epochs, f"{label} epoch {epoch + 1}/{epochs} error {self.errors[-1]:.4f}")
        return self

    def hidden_input(self, data: np.ndarray) -> np.ndarray:
        """Pre-sigmoid hidden input ``v W + c`` (n_samples x n_hidden)."""
        import torch

        with torch.no_grad():
            v = torch.as_tensor(np.asarray(data, dtype=np.float32), device=self.device)
            return (v @ self.W + self.c).cpu().numpy()

    def hidden_probabilities(self, data: np.ndarray) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self.hidden_input(data)))

    @property
    def weights(self) -> np.ndarray:
        return self.W.cpu().numpy()


def fit_vsdbn(
    data: np.ndarray,
    hidden: tuple[int, ...] = (128, 64, 32),
    lr: tuple[float, ...] = (0.001, 0.0005, 0.0005),
    l1: tuple[float, ...] = (0.001, 0.00005, 0.00005),
    batch_size: int = 20,
    epochs: int = 10,
    init_std: float = 0.01,
    seed: int = 0,
    device: str | None = None,
    progress: Callable[[float, str], None] | None = None,
    min_updates: int = 0,
) -> tuple[list[GaussianBernoulliRBM], list[tuple[np.ndarray, np.ndarray]]]:
    """Train the stacked RBMs layer by layer.

    Returns the RBMs and, per layer, the (mean, std) used to standardise its input (layer 1's
    is (0, 1): the data are already z-scored).
    """
    if not (len(hidden) == len(lr) == len(l1)):
        raise CouplingError(f"VS-DBN needs one learning rate and L1 rate per layer: hidden={hidden}, lr={lr}, l1={l1}")
    rbms, norms = [], []
    x = np.asarray(data, dtype=np.float32)
    n_layers = len(hidden)
    for i, (h, rate, pen) in enumerate(zip(hidden, lr, l1)):
        if i == 0:
            mean = np.zeros(x.shape[1], np.float32)
            std = np.ones(x.shape[1], np.float32)
        else:
            mean = x.mean(0)
            std = x.std(0)
            std[std < 1e-8] = 1.0
            x = (x - mean) / std
        norms.append((mean, std))
        rbm = GaussianBernoulliRBM(x.shape[1], h, rate, pen, batch_size, epochs, init_std, seed + i, device, min_updates)

        def sub(frac: float, msg: str, i: int = i) -> None:
            if progress:
                progress((i + frac) / n_layers, msg)

        rbm.fit(x, sub, label=f"RBM {i + 1}/{n_layers}")
        rbms.append(rbm)
        x = rbm.hidden_input(x)
    return rbms, norms


def vsdbn_responses(rbms: list[GaussianBernoulliRBM], norms: list[tuple[np.ndarray, np.ndarray]], data: np.ndarray) -> np.ndarray:
    """Third-layer (last-layer) hidden responses (pre-sigmoid) of rows of ``data``."""
    x = np.asarray(data, dtype=np.float32)
    for i, (rbm, (mean, std)) in enumerate(zip(rbms, norms)):
        if i > 0:
            x = (x - mean) / std
        x = rbm.hidden_input(x)
    return x


def vsdbn_networks(gd: GroupData, n_networks: int | None = None, preset: str = "quick", seed: int = 0,
                   device: str | None = None, progress: Callable[[float, str], None] | None = None,
                   group: str = "concat", **overrides: Any) -> BrainNetworks:
    """VS-DBN BNs of the group data (see module docstring)."""
    train = _training_data(gd, group)
    _check("vsdbn", preset)
    settings = {**VSDBN_PRESETS[preset], **overrides}
    hidden = list(settings["hidden"])
    if n_networks is not None:
        hidden[-1] = int(n_networks)
    settings["hidden"] = tuple(hidden)
    rbms, norms = fit_vsdbn(train.data, seed=seed, device=device, progress=progress, **settings)
    w = rbms[0].weights.astype(np.float64)
    for rbm in rbms[1:]:
        w = w @ rbm.weights.astype(np.float64)
    responses = vsdbn_responses(rbms, norms, gd.data)  # every participant's data, averaged below
    info = {"preset": preset, "seed": seed, "group": group,
            **{k: list(v) if isinstance(v, tuple) else v for k, v in settings.items()},
            "errors": [r.errors for r in rbms], "epochs_run": [r.epochs_run for r in rbms],
            "device": rbms[0].device, "n_samples": int(train.data.shape[0])}
    return BrainNetworks("vsdbn", w.T.astype(np.float32), _average_timecourses(gd, responses), info)


# --------------------------------------------------------------------------------------
# ICA
# --------------------------------------------------------------------------------------


def _training_data(gd: GroupData, group: str) -> GroupData:
    if group not in GROUPINGS:
        raise CouplingError(f"unknown grouping {group!r}; expected one of {GROUPINGS}")
    return gd if group == "concat" else average_participants(gd)


def ica_networks(gd: GroupData, n_networks: int | None = None, preset: str = "quick", seed: int = 0,
                 progress: Callable[[float, str], None] | None = None, group: str = "concat") -> BrainNetworks:
    """Spatial group ICA of the group data (see module docstring)."""
    import warnings

    from sklearn.decomposition import FastICA
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.utils.extmath import randomized_svd

    _check("ica", preset)
    settings = ICA_PRESETS[preset]
    k = int(n_networks or settings["n_networks"])
    x = _training_data(gd, group).data
    if k > min(x.shape):
        raise CouplingError(f"ICA: {k} networks but the data have only {min(x.shape)} samples/units")
    if progress:
        progress(0.0, f"ICA: PCA of {x.shape[0]} TRs x {x.shape[1]} units to {k} components")
    _, s, vt = randomized_svd(x, n_components=k, n_iter=4, random_state=seed)
    if progress:
        progress(0.5, "ICA: FastICA")
    ica = FastICA(n_components=k, whiten="unit-variance", max_iter=settings["max_iter"], tol=settings["tol"], random_state=seed)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ConvergenceWarning)
        maps = ica.fit_transform(vt.T.astype(np.float64)).T  # (k, V): independent spatial sources
    converged = not any(issubclass(w.category, ConvergenceWarning) for w in caught)
    skew = ((maps - maps.mean(1, keepdims=True)) ** 3).mean(1)
    maps *= np.where(skew < 0, -1.0, 1.0)[:, None]
    maps /= np.maximum(maps.std(1, keepdims=True), 1e-12)
    # time courses: least-squares projection of every TR onto the maps
    proj = np.linalg.pinv(maps.T)  # (k, V)
    responses = (gd.data @ proj.T.astype(np.float32)).astype(np.float32)
    var = _average_timecourses(gd, responses)
    var = np.concatenate(list(var.values())).var(0)
    order = np.argsort(-var)
    maps = maps[order]
    responses = responses[:, order]
    if progress:
        progress(1.0, "ICA done")
    info = {"preset": preset, "seed": seed, "group": group, "n_networks": k, "max_iter": settings["max_iter"], "tol": settings["tol"],
            "converged": bool(converged), "n_iter": int(getattr(ica, "n_iter_", 0)),
            "explained_variance": float((s ** 2).sum() / max(_sum_squares(x), 1e-12)),
            "n_samples": int(x.shape[0])}
    return BrainNetworks("ica", maps.astype(np.float32), _average_timecourses(gd, responses), info)


def _sum_squares(x: np.ndarray, rows: int = 1024) -> float:
    """Sum of squares in float64 without a float64 copy of ``x``."""
    return float(sum(np.einsum("ij,ij->", x[i:i + rows], x[i:i + rows], dtype=np.float64) for i in range(0, len(x), rows)))


def fit_networks(dataset: Dataset, method: str = "vsdbn", n_networks: int | None = None, preset: str = "quick",
                 seed: int = 0, device: str | None = None,
                 progress: Callable[[float, str], None] | None = None, trim: bool = True,
                 group: str = "concat") -> BrainNetworks:
    """BNs from the fMRI of all participants of all stories of ``dataset``."""
    _check(method, preset)
    load = (lambda f, m: progress(0.3 * f, m)) if progress else None
    gd = group_data(dataset, trim=trim, progress=load)
    fit = (lambda f, m: progress(0.3 + 0.7 * f, m)) if progress else None
    if method == "vsdbn":
        return vsdbn_networks(gd, n_networks, preset, seed, device, fit, group)
    return ica_networks(gd, n_networks, preset, seed, fit, group)
