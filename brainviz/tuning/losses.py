"""Losses for brain-tuning, each returning one value per example (rows of ``pred``/``target``).

- ``mse``: mean over units of the squared error (the 2019 paper's loss, default);
- ``correlation``: 1 - Pearson r across units, per example (spatial correlation);
- ``cosine-huber``: (1 - cosine similarity) + Huber loss with delta 0.6, mean over units
  (what the multi-participant paper's code runs as its "cosine + L2" loss, see :func:`cosine_l2`);
- ``cosine-l2``: (1 - cosine similarity) + mean squared error over units, unweighted (the
  speech papers' cosine + L2 loss as named in their text).

:func:`combine` sums per-target losses with multi-task weights proportional to
1 / (number of training examples of the target).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable

if TYPE_CHECKING:  # torch is imported on first use, so the CLI's --help stays fast
    import torch

LOSSES = ("mse", "correlation", "cosine-huber", "cosine-l2")
HUBER_DELTA = 0.6
EPS = 1e-8


def mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return ((pred - target) ** 2).mean(dim=-1)


def correlation(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    p = pred - pred.mean(dim=-1, keepdim=True)
    t = target - target.mean(dim=-1, keepdim=True)
    r = (p * t).sum(-1) / (p.norm(dim=-1) * t.norm(dim=-1) + EPS)
    return 1.0 - r


def cosine_huber(pred: torch.Tensor, target: torch.Tensor, delta: float = HUBER_DELTA) -> torch.Tensor:
    import torch.nn.functional as F

    cos = F.cosine_similarity(pred, target, dim=-1, eps=EPS)
    huber = F.huber_loss(pred, target, reduction="none", delta=delta).mean(dim=-1)
    return (1.0 - cos) + huber


def cosine_l2(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Cosine + L2 loss per example: ``(1 - cos(pred, target)) + mean((pred - target) ** 2)``.

    The speech brain-tuning papers (Moussa & Toneva 2025, "Brain-tuning improves
    generalizability and efficiency of brain alignment in speech models") list L2,
    correlation and "cosine+L2" losses; the text available to us (a summary page) gives no
    weighting between the two terms, so they are summed with weight 1 each. The authors'
    released code (``cosl2_loss_function`` in github.com/bridge-ai-neuro/multi-brain-tuning,
    ``src/train_utils.py``) also sums the two terms unweighted, but its "L2" term is a Huber
    loss with delta 0.6 (that variant is :func:`cosine_huber`, ``--loss cosine-huber``).

    Parameters
    ----------
    pred, target : torch.Tensor
        ``(n_examples, n_units)``; rows are examples.

    Returns
    -------
    torch.Tensor
        ``(n_examples,)`` loss values (0 for a perfect prediction of a non-zero target).
    """
    import torch.nn.functional as F

    cos = F.cosine_similarity(pred, target, dim=-1, eps=EPS)
    return (1.0 - cos) + mse(pred, target)


_BY_NAME: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "mse": mse, "correlation": correlation, "cosine-huber": cosine_huber, "cosine-l2": cosine_l2,
}


def get_loss(name: str) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """Per-example loss function by name (one of :data:`LOSSES`)."""
    if name not in _BY_NAME:
        raise ValueError(f"unknown loss {name!r}; expected one of {LOSSES}")
    return _BY_NAME[name]


def task_weights(n_examples: dict[str, int], n_sequences: int) -> dict[str, float]:
    """Multi-task weights proportional to 1 / n_examples of each target.

    Scaled so that a single target present on every sequence gets weight 1 (the combined
    loss is then the plain batch mean), and each target contributes equally over an epoch.
    """
    targets = {k: n for k, n in n_examples.items() if n > 0}
    if not targets:
        raise ValueError("no training examples for any target")
    return {k: n_sequences / (len(targets) * n) for k, n in targets.items()}


def combine(per_target: dict[str, torch.Tensor], weights: dict[str, float], batch_size: int) -> torch.Tensor:
    """``sum_t w_t * sum_i loss_{t,i} / batch_size`` over the targets present in a batch."""
    total = None
    for name, values in per_target.items():
        if values.numel() == 0:
            continue
        term = weights[name] * values.sum()
        total = term if total is None else total + term
    if total is None:
        raise ValueError("batch without any target")
    return total / batch_size
